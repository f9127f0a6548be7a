#!/usr/bin/env python3
"""Fails if two top-level modules of src/ import each other, directly or
around a loop (docs/ARCHITECTURE.md: no import runs both ways).

A module is a file src/X.rs or a folder src/X/; an import is any
`crate::Y` outside comments and outside test code (tests.rs,
crash_points.rs, `#[cfg(test)] mod tests { ... }` at the end of a file).

usage: scripts/check_modules.py [SRC_DIR]   (default: src next to scripts/)
"""
import os
import re
import sys


def imports(src: str) -> dict:
    mods = {}
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        mod = name[:-3] if name.endswith(".rs") else name
        if mod in ("main", "lib") or not (name.endswith(".rs") or os.path.isdir(path)):
            continue
        files = [path]
        if os.path.isdir(path):
            files = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if f.endswith(".rs")]
        deps = {}
        for f in files:
            if os.path.basename(f) in ("tests.rs", "crash_points.rs"):
                continue
            text = open(f, encoding="utf-8").read()
            cut = text.find("#[cfg(test)]\nmod tests {")
            if cut >= 0:
                text = text[:cut]
            for n, line in enumerate(text.split("\n"), 1):
                if line.strip().startswith("//"):
                    continue
                for dep in re.findall(r"crate::([a-z_]+)", line):
                    if dep != mod:
                        deps.setdefault(dep, f"{f}:{n}")
        mods[mod] = deps
    return mods


def cycles(mods: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in mods[v]:
            if w not in mods:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in mods:
        if v not in index:
            visit(v)
    return out


def main() -> int:
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    mods = imports(src)
    found = cycles(mods)
    if not found:
        print(f"check_modules: {len(mods)} modules of {os.path.normpath(src)}, no import cycle")
        return 0
    for comp in found:
        print("check_modules: these modules import each other: " + ", ".join(comp))
        for a in comp:
            for b in comp:
                if b in mods[a]:
                    print(f"  {a} -> {b}  ({mods[a][b]})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
