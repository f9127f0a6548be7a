#!/usr/bin/env python3
"""Per-request breakdown of the workloads scripts/bench.sh traced (BENCH_TRACE=1).

For every SYSTEM.WORKLOAD in TRACE_DIR, bench.sh left:
  .data  perf record of the kernel's fuse:fuse_request_send / _end tracepoints
  .stat  perf stat -x, of the daemon (task-clock, context-switches)
  .dev   the mount's st_dev, to keep only that connection's requests

Prints markdown: per workload, each system's request count, the daemon's CPU
time per request and its context switches (wake-ups) per request, then the
requests by opcode with the mean time from send to reply (kernel queueing,
daemon and reply together).

usage: breakdown.py TRACE_DIR SYSTEMS...
"""
import collections
import os
import re
import subprocess
import sys

LINE = re.compile(
    r"^\s*(?P<time>\d+\.\d+):\s+fuse:fuse_request_(?P<what>send|end):\s+"
    r"connection (?P<conn>\d+) req (?P<req>\d+)(?: opcode \d+ \((?P<op>\w+)\))?"
)


def kernel_dev(st_dev: int) -> int:
    """The kernel's dev_t encoding (major << 20 | minor) of a user st_dev."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def requests(data: str, conn: int):
    """{opcode: [count, total seconds from send to end]} of one connection."""
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "time,event,trace"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sent = {}
    ops = collections.defaultdict(lambda: [0, 0.0])
    for line in out.splitlines():
        m = LINE.match(line)
        if not m or int(m["conn"]) != conn:
            continue
        req, t = int(m["req"]), float(m["time"])
        if m["what"] == "send":
            sent[req] = (m["op"] or "?", t)
        elif req in sent:
            op, t0 = sent.pop(req)
            ops[op][0] += 1
            ops[op][1] += t - t0
    for op, _ in sent.values():  # no reply seen (FORGET has none)
        ops[op][0] += 1
    return ops


def daemon_stat(path: str):
    """(task-clock ms, context switches) from perf stat -x, output."""
    ms = switches = None
    for line in open(path):
        f = line.strip().split(",")
        if len(f) < 3 or not f[0] or f[0].startswith("<"):
            continue
        if f[2] == "task-clock":
            ms = float(f[0])
        elif f[2] == "context-switches":
            switches = float(f[0])
    return ms, switches


def main() -> None:
    tdir, systems = sys.argv[1], sys.argv[2:]
    workloads = []
    for name in sorted(os.listdir(tdir)):
        if name.endswith(".data"):
            sysname, work = name[: -len(".data")].split(".", 1)
            if work not in workloads:
                workloads.append(work)
    for work in workloads:
        print(f"### {work}\n")
        print("| system | requests | daemon CPU ms | CPU µs / request | wake-ups / request |")
        print("| --- | ---: | ---: | ---: | ---: |")
        per_sys = {}
        for s in systems:
            base = os.path.join(tdir, f"{s}.{work}")
            if not os.path.exists(base + ".data"):
                continue
            conn = kernel_dev(int(open(base + ".dev").read().split()[0]))
            ops = requests(base + ".data", conn)
            per_sys[s] = ops
            total = sum(c for c, _ in ops.values())
            ms, sw = daemon_stat(base + ".stat")
            cpu = f"{ms:.0f}" if ms is not None else "?"
            per = f"{ms * 1000 / total:.1f}" if ms and total else "?"
            wake = f"{sw / total:.2f}" if sw is not None and total else "?"
            print(f"| {s} | {total:,} | {cpu} | {per} | {wake} |")
        print()
        names = sorted(
            {op for ops in per_sys.values() for op in ops},
            key=lambda op: -max(ops.get(op, [0])[0] for ops in per_sys.values()),
        )
        head = " | ".join(f"{s} count | {s} µs" for s in per_sys)
        print(f"| opcode | {head} |")
        print("| --- |" + " ---: | ---: |" * len(per_sys))
        for op in names:
            cells = []
            for ops in per_sys.values():
                c, t = ops.get(op, [0, 0.0])
                cells.append(f"{c:,}")
                cells.append(f"{t * 1e6 / c:.1f}" if c and t else "-")
            print(f"| {op.removeprefix('FUSE_')} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
