# scripts/bench/lib.sh - sourced by the scripts in scripts/bench/ (not run).

# rand_write_4k_runs MNT LABEL: bench.sh's rand_write_4k fio job on MNT three
# times, caches dropped before each; prints "LABEL rand_write_4k IOPS" per run.
rand_write_4k_runs() {
    local mnt=$1 label=$2 i
    fio --name=layout --filename="$mnt/rand.bin" --rw=write --bs=1M --size=256M \
        --end_fsync=1 --ioengine=psync --fallocate=none --output=/dev/null
    for i in 1 2 3; do
        sync; echo 3 >/proc/sys/vm/drop_caches
        fio --name=w --filename="$mnt/rand.bin" --rw=randwrite --bs=4k --size=256M \
            --runtime=4 --time_based --end_fsync=1 --ioengine=psync --fallocate=none \
            --output-format=json |
            python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))' |
            sed "s/^/$label rand_write_4k /"
    done
}

# uring_param_guard: remembers the fuse module's enable_uring parameter and
# installs an EXIT trap that unmounts $M, waits for $PID, removes $W and puts
# the parameter back. Callers set W, M and PID as they go.
PARAM=/sys/module/fuse/parameters/enable_uring
uring_param_guard() {
    OLD=$(cat "$PARAM")
    W="" M="" PID=""
    trap 'uring_cleanup' EXIT
}
uring_cleanup() {
    [[ -n $M ]] && mountpoint -q "$M" && fusermount3 -u "$M"
    [[ -n $PID ]] && wait "$PID" 2>/dev/null
    [[ -n $W ]] && rm -rf --one-file-system "$W"
    echo "$OLD" >"$PARAM"
    return 0
}
