#!/usr/bin/env bash
# scripts/bench/uring_probe.sh PASSTHROUGH_HP [PASSES] - does FUSE over io_uring pay on
# this kernel? Mounts libfuse's example/passthrough_hp (libfuse >= 3.18 built with
# liburing: meson setup build -Dexamples=true && ninja -C build) over a scratch
# directory, once on /dev/fuse and once with -o io_uring, alternating, and runs the
# same workloads on each: scripts/bench/meta_ops.py (10k files create / stat / ls -l /
# rm, and a loop of uncached lstat = one round trip each) and a 4 KiB random-write
# fio job (one FUSE_WRITE per 4 KiB, since passthrough_hp does not ask for the
# writeback cache). passthrough_hp runs with --nocache (every stat is a request)
# --nopassthrough --nosplice (every byte goes through the transport).
# Root only: it sets /sys/module/fuse/parameters/enable_uring to Y for the run and
# puts the old value back on exit. Checks that the ring really carries the
# requests (FUSE_INIT status line "io_uring=on"). Prints: TRANSPORT PHASE SECONDS USEC_PER_OP
# and for fio: TRANSPORT randwrite4k IOPS CLAT_USEC.
set -euo pipefail
PHP=$1 PASSES=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${BENCH_DIR:-/var/tmp}
# shellcheck source=scripts/bench/lib.sh
. "$HERE/lib.sh"
uring_param_guard
echo Y >"$PARAM"

one() { # one TRANSPORT(devfuse|uring)
    local t=$1 i opt=()
    [[ $t == uring ]] && opt=(-o io_uring)
    W=$(mktemp -d "$DIR/uring-probe.XXXXXX")
    M=$W/m
    mkdir "$W/src" "$M"
    FUSE_INIT_STATUS=1 "$PHP" --foreground --nocache --nopassthrough --nosplice "${opt[@]}" \
        "$W/src" "$M" >"$W/log" 2>&1 &
    PID=$!
    for i in $(seq 100); do mountpoint -q "$M" && break; sleep 0.1; done
    mountpoint -q "$M" || { echo "$t: mount failed" >&2; cat "$W/log" >&2; exit 1; }
    stat "$M" >/dev/null # INIT is answered before the first request returns
    local want=off
    [[ $t == uring ]] && want=on
    grep -q "FUSE_INIT: io_uring=$want" "$W/log" ||
        { echo "$t: expected io_uring=$want" >&2; cat "$W/log" >&2; exit 1; }
    python3 "$HERE/meta_ops.py" "$M" 10000 50000 | sed "s/^/$t /"
    if command -v fio >/dev/null; then
        fio --name=layout --filename="$M/rand.bin" --rw=write --bs=1M --size=64M \
            --ioengine=psync --fallocate=none --output=/dev/null
        fio --name=w --filename="$M/rand.bin" --rw=randwrite --bs=4k --size=64M \
            --runtime=5 --time_based --ioengine=psync --fallocate=none --output-format=json |
            python3 -c 'import json,sys; w=json.load(sys.stdin)["jobs"][0]["write"]; print(round(w["iops"]), round(w["clat_ns"]["mean"]/1000,1))' |
            sed "s/^/$t randwrite4k /"
    fi
    fusermount3 -u "$M"
    wait "$PID" || true
    rm -rf --one-file-system "$W"
    W="" M="" PID=""
}

for pass in $(seq "$PASSES"); do
    one devfuse
    one uring
done
