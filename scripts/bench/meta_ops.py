#!/usr/bin/env python3
"""Metadata round-trip workload for comparing FUSE transports (/dev/fuse vs io_uring).

usage: meta_ops.py DIR [NFILES] [NSTAT]

In DIR (a FUSE mount), one process:
  create   NFILES files of 100 bytes (open O_CREAT|O_EXCL, write, close)
  stat     lstat of every file
  ls_l     listdir + lstat + getxattr(security.selinux-like) per entry, as `ls -l` does
  statloop NSTAT lstat of one file (per-request latency when attributes are not cached)
  rm       unlink every file
Prints one line per phase: PHASE SECONDS USEC_PER_OP.
Python's own cost per call is about 1 us and the same on both transports.
"""
import os
import sys
import time


def phase(name: str, n: int, fn) -> None:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(f"{name} {dt:.3f} {dt / n * 1e6:.1f}", flush=True)


def main() -> None:
    d = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    nstat = int(sys.argv[3]) if len(sys.argv) > 3 else 50000
    base = os.path.join(d, "meta")
    os.mkdir(base)
    names = [os.path.join(base, f"f{i:06d}") for i in range(n)]
    payload = b"x" * 100

    def create() -> None:
        for p in names:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, payload)
            os.close(fd)

    def stat_all() -> None:
        for p in names:
            os.lstat(p)

    def ls_l() -> None:
        for e in os.listdir(base):
            p = os.path.join(base, e)
            os.lstat(p)
            try:
                os.getxattr(p, "security.selinux", follow_symlinks=False)
            except OSError:
                pass

    def statloop() -> None:
        p = names[0]
        for _ in range(nstat):
            os.lstat(p)

    def rm() -> None:
        for p in names:
            os.unlink(p)

    phase("create", n, create)
    phase("stat", n, stat_all)
    phase("ls_l", n, ls_l)
    phase("statloop", nstat, statloop)
    phase("rm", n, rm)
    os.rmdir(base)


if __name__ == "__main__":
    main()
