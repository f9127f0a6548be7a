#!/usr/bin/env python3
"""Turn the raw per-run results of scripts/bench.sh into a markdown table.

usage: report.py RAW.tsv "SYSTEMS" "FAILED SYSTEMS"
Sizes are read from the BENCH_* environment variables that bench.sh exports.
"""
import csv
import os
import statistics
import sys


def env(name: str) -> str:
    return os.environ.get(name, "?")


# (key, label, unit, True if higher is better)
WORKLOADS = [
    ("seq_write", f"seq_write ({env('BENCH_SEQ_MIB')} MiB, 1 MiB blocks, fsync)", "MiB/s", True),
    ("seq_read_cold", "seq_read_cold (1 MiB blocks)", "MiB/s", True),
    ("rand_read_4k", f"rand_read_4k ({env('BENCH_RAND_MIB')} MiB file, QD1, {env('BENCH_FIO_SECONDS')} s, cold)", "IOPS", True),
    ("rand_write_4k", f"rand_write_4k ({env('BENCH_RAND_MIB')} MiB file, QD1, {env('BENCH_FIO_SECONDS')} s)", "IOPS", True),
    ("small_files_create", f"small_files_create (untar {env('BENCH_FILES')} files, 1-16 KiB, {env('BENCH_DIRS')} dirs)", "s", False),
    ("metadata_scan", "metadata_scan (ls -lR, cold)", "s", False),
    ("read_tree", "read_tree (read all files, cold)", "s", False),
    ("rm_tree", "rm_tree (rm -rf)", "s", False),
    ("sqlite_insert", f"sqlite_chat insert ({env('BENCH_SQL_ROWS')} rows, {env('BENCH_SQL_BATCH')}/txn, WAL)", "rows/s", True),
    ("sqlite_query", f"sqlite_chat query ({env('BENCH_SQL_QUERIES')} x LIMIT 50)", "queries/s", True),
    ("peak_rss", "daemon peak RSS (VmHWM)", "MiB", False),
    ("wall_time", "wall time of the system's whole run", "s", False),
]


def fmt(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main() -> None:
    raw, systems, failed = sys.argv[1], sys.argv[2].split(), set(sys.argv[3].split())
    values: dict[tuple[str, str], list[float]] = {}
    with open(raw, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            values.setdefault((row["system"], row["workload"]), []).append(float(row["value"]))
    med = {k: statistics.median(v) for k, v in values.items()}

    others = [s for s in ("gocryptfs", "securefs") if s in systems] if "veilfs" in systems else []
    head = ["workload", "unit"] + systems + [f"veilfs vs {o}" for o in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|")
    for key, label, unit, higher in WORKLOADS:
        cells = [label, unit]
        for s in systems:
            if (s, key) in med:
                cells.append(fmt(med[(s, key)]))
            else:
                cells.append("FAILED" if s in failed else "n/a")
        for o in others:
            v, w = med.get(("veilfs", key)), med.get((o, key))
            if v and w and key != "wall_time":
                ratio = v / w if higher else w / v
                cells.append(f"{ratio:.2f}x")
            else:
                cells.append("")
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        "Ratios are oriented so that **> 1 means veilfs is better**: "
        "veilfs/other for throughput (MiB/s, IOPS, rows/s, queries/s), "
        "other/veilfs for times (s) and memory (MiB). "
        "`plain` is the backing filesystem without any FUSE layer (physical reference). "
        "Cold steps run after `sync; echo 3 > /proc/sys/vm/drop_caches`."
    )
    print()
    print(
        f"Caveats: the {env('BENCH_RAND_MIB')} MiB file of the 4k workloads fits in the page cache, so after the "
        "first pass random reads are mostly kernel page-cache hits (also through FUSE); the "
        "figure mixes cold misses and cached reads. `plain` random writes land in the page "
        "cache; veilfs (by default) also lets the kernel cache writes (FUSE writeback cache, "
        "write-back at fsync/close), while gocryptfs and securefs send every write to their "
        "daemon. Times of creates and deletes (small_files_create, rm_tree) depend on the "
        "backing filesystem (ext4 `discard`, and inode allocation skipping recently deleted "
        "inodes after the previous run's rm) and vary a lot between runs."
    )
    if failed:
        print()
        print(f"**Failed or skipped:** {', '.join(sorted(failed))} (see the bench log).")


if __name__ == "__main__":
    main()
