#!/usr/bin/env bash
# scripts/bench/uring_veilfs.sh VEILFS_BIN [PASSES] - veilfs over /dev/fuse and over
# io_uring, side by side: the same build, the fuse module's enable_uring parameter
# N for one mount and Y for the next (mounted with --io-uring, so veilfs uses
# io_uring whenever the kernel offers it), alternating, each on a fresh vault in BENCH_DIR (default /var/tmp).
# Workloads per mount:
#   scripts/bench/meta_ops.py with 10k files (create, stat, ls -l, lstat loop, rm)
#   a tree of 10k files in 100 directories: create, then with cold caches
#   (drop_caches) ls -lR, then rm -rf
#   fio 4 KiB random writes over a 256 MiB file (bench.sh's rand_write_4k job)
# Root only. Puts enable_uring back as it found it. Prints one line per
# measurement: TRANSPORT WORKLOAD VALUE [UNIT], and the daemon's count of
# requests served over io_uring.
set -euo pipefail
BIN=$1 PASSES=${2:-3}
WHAT=${WHAT:-meta,tree,fio} # which workloads, comma-separated
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${BENCH_DIR:-/var/tmp}
# shellcheck source=scripts/bench/lib.sh
. "$HERE/lib.sh"
uring_param_guard

secs() { # secs CMD... - wall seconds of CMD
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }'
}

mktree() { # mktree DIR - 10k files of 1-4 KiB in 100 directories
    python3 - "$1" <<'EOF'
import os, sys
root = sys.argv[1]
for d in range(100):
    p = os.path.join(root, f"d{d:02d}")
    os.mkdir(p)
    for f in range(100):
        with open(os.path.join(p, f"f{f:03d}"), "wb") as fh:
            fh.write(os.urandom(1024 + (d * 100 + f) % 3072))
EOF
}

one() { # one devfuse|uring
    local t=$1 i
    if [[ $t == uring ]]; then echo Y >"$PARAM"; else echo N >"$PARAM"; fi
    W=$(mktemp -d "$DIR/veilfs-uring.XXXXXX")
    M=$W/m
    mkdir "$M"
    "$BIN" init --key-only "$W/c" >"$W/init.out" 2>&1
    grep -oE "([0-9a-f]{4}-){15}[0-9a-f]{4}" "$W/init.out" >"$W/key"
    # shellcheck disable=SC2086 # MOUNT_ARGS: extra mount options, split on spaces
    VEILFS_STATE_DIR=$W/state RUST_LOG=veilfs=info "$BIN" mount --foreground --io-uring ${MOUNT_ARGS:-} \
        --key-file "$W/key" "$W/c" "$M" 2>"$W/log" &
    PID=$!
    for i in $(seq 100); do mountpoint -q "$M" && break; sleep 0.1; done
    mountpoint -q "$M" || { echo "$t: mount failed" >&2; cat "$W/log" >&2; exit 1; }
    for i in $(seq 100); do grep -q "travel over" "$W/log" && break; sleep 0.1; done
    local want="/dev/fuse"
    [[ $t == uring ]] && want="io_uring"
    grep -q "travel over $want" "$W/log" || { echo "$t: not over $want" >&2; cat "$W/log" >&2; exit 1; }

    [[ ,$WHAT, == *,meta,* ]] && python3 "$HERE/meta_ops.py" "$M" 10000 50000 | awk -v t="$t" '{ print t, "meta_" $1, $3, "us/op" }'

    if [[ ,$WHAT, == *,tree,* ]]; then
        mkdir "$M/tree"
        echo "$t tree_create $(secs mktree "$M/tree") s"
        sync; echo 3 >/proc/sys/vm/drop_caches
        echo "$t ls_lR_cold $(secs ls -lR "$M/tree") s"
        echo "$t ls_lR_warm $(secs ls -lR "$M/tree") s"
        echo "$t rm_tree $(secs rm -rf "$M/tree") s"
    fi
    if [[ ,$WHAT, == *,fio,* ]] && command -v fio >/dev/null; then
        rand_write_4k_runs "$M" "$t" | sed "s/$/ iops/"
    fi
    fusermount3 -u "$M"
    wait "$PID" || true
    grep -o "served [0-9]* requests over io_uring" "$W/log" | sed "s/^/$t /" || true
    rm -rf --one-file-system "$W"
    W="" M="" PID=""
}

for pass in $(seq "$PASSES"); do
    one devfuse
    one uring
done
