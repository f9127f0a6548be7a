#!/usr/bin/env bash
# scripts/bench/pair.sh OLD_BIN NEW_BIN [PASSES] - two veilfs builds side by side
# on the two rows a change to the write path risks: 4 KiB random overwrites
# (the fio job of bench.sh's rand_write_4k) and SQLite inserts (bench.sh's
# sqlite_chat.py). Each pass mounts a fresh vault per build, OLD then NEW,
# with the journal (state dir) on the same disk, and runs each workload three
# times on that mount. Used for docs/PERFORMANCE.md, "The rewrite journal".
# Root only (drops caches). Prints one line per run: BUILD WORKLOAD VALUE.
set -euo pipefail
OLD=$1 NEW=$2 PASSES=${3:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/bench/lib.sh
. "$HERE/lib.sh"
DIR=${BENCH_DIR:-/var/tmp}
W="" M=""
cleanup() {
    [[ -n $M ]] && mountpoint -q "$M" && fusermount3 -u "$M"
    [[ -n $W ]] && rm -rf --one-file-system "$W"
    return 0
}
trap cleanup EXIT

one() { # one LABEL BIN WORKLOAD
    local label=$1 bin=$2 what=$3 i
    W=$(mktemp -d "$DIR/veilfs-pair.XXXXXX")
    M=$W/m
    head -c 24 /dev/urandom | base64 >"$W/pass"
    "$bin" init --passfile "$W/pass" "$W/c" >/dev/null 2>&1
    mkdir "$M"
    VEILFS_STATE_DIR=$W/state "$bin" mount --passfile "$W/pass" "$W/c" "$M" >/dev/null 2>&1
    for i in $(seq 100); do mountpoint -q "$M" && break; sleep 0.1; done
    mountpoint -q "$M" || { echo "$label: mount failed" >&2; exit 1; }
    if [[ $what == rand_write_4k ]]; then
        rand_write_4k_runs "$M" "$label"
    else
        for i in 1 2 3; do
            python3 "$HERE/sqlite_chat.py" "$M/chat.db" 50000 100 200 | awk -v l="$label" '{ print l, "sqlite_insert", $1 }'
        done
    fi
    fusermount3 -u "$M"
    rm -rf --one-file-system "$W"
    W="" M=""
}

for pass in $(seq "$PASSES"); do
    for what in rand_write_4k sqlite_insert; do
        one old "$OLD" "$what"
        one new "$NEW" "$what"
    done
done
