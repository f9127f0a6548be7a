#!/usr/bin/env bash
# scripts/scale.sh - how veilfs's costs grow with the work (issue 17).
#
#   scripts/scale.sh                         # veilfs and plain, ~5 min on 2 cores
#   SCALE_SYSTEMS="veilfs gocryptfs plain" scripts/scale.sh
#
# Prints (and writes to SCALE_OUT, default target/bench/scale.md) one markdown
# table per dimension, with the cost per unit of work next to each figure so
# that growth worse than linear shows as a rising per-unit cost:
#   - files in one directory: 1k, 10k, 100k (create, ls -l, stat all, rm)
#   - file size: 1 MiB to 8 GiB (write + fsync, read after dropping caches)
#   - 1, 2, 4, 8 processes writing 4 KiB at random, to their own files and
#     to one shared file (fio, psync)
#   - the daemon's resident memory after 100k lookups and with 1,000 files open
#
# Must run as root (drops the kernel caches, mounts FUSE). Environment:
#   SCALE_SYSTEMS  (veilfs plain)    SCALE_DIR  work dir parent (/var/tmp)
#   SCALE_FILES    (1000 10000 100000)
#   SCALE_SIZES_MIB (1 16 256 1024 8192)
#   SCALE_JOBS     (1 2 4 8)         SCALE_FIO_SECONDS (3)
#   VEILFS_BIN     veilfs binary (default: cargo build --release)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SCALE_SYSTEMS=${SCALE_SYSTEMS:-"veilfs plain"}
SCALE_DIR=${SCALE_DIR:-/var/tmp}
SCALE_FILES=${SCALE_FILES:-"1000 10000 100000"}
SCALE_SIZES_MIB=${SCALE_SIZES_MIB:-"1 16 256 1024 8192"}
SCALE_JOBS=${SCALE_JOBS:-"1 2 4 8"}
SCALE_FIO_SECONDS=${SCALE_FIO_SECONDS:-3}
SCALE_OUT=${SCALE_OUT:-$REPO/target/bench/scale.md}

WORK="" MNT="" DAEMON_PID=""
TIMED_IO="" # python helper: write N MiB + fsync, or read N MiB; prints seconds
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
per() { awk -v t="$1" -v n="$2" -v k="$3" 'BEGIN { printf "%.1f", t * k / n }'; }

is_mounted() {
    D=${1// /\\040} awk '$2 == ENVIRON["D"] { found = 1 } END { exit !found }' /proc/self/mounts
}

unmount_all() {
    local d
    for d in "$WORK"/*/mnt; do
        [[ -d $d ]] || continue
        is_mounted "$d" || continue
        fusermount3 -u "$d" 2>/dev/null || umount -l "$d"
    done
}

cleanup() {
    local rc=$?
    set +e
    if [[ -n $WORK ]]; then
        unmount_all
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}

mount_system() { # mount_system SYSTEM: fresh instance; sets MNT and DAEMON_PID
    local sys=$1 dir=$WORK/$1 deadline
    mkdir -p "$dir/mnt"
    DAEMON_PID=""
    case $sys in
        veilfs)
            "$VEILFS_BIN" init --passfile "$WORK/pass" "$dir/cipher" >/dev/null 2>&1
            VEILFS_STATE_DIR=$dir/state "$VEILFS_BIN" mount --passfile "$WORK/pass" \
                "$dir/cipher" "$dir/mnt" >&2
            ;;
        gocryptfs)
            mkdir -p "$dir/cipher"
            gocryptfs -q -init -passfile "$WORK/pass" "$dir/cipher" >&2
            gocryptfs -q -nosyslog -passfile "$WORK/pass" "$dir/cipher" "$dir/mnt" >&2
            ;;
        plain) MNT=$dir/mnt; return ;;
        *) die "unknown system $sys (veilfs gocryptfs plain)" ;;
    esac
    deadline=$((SECONDS + 10))
    until mountpoint -q "$dir/mnt"; do
        ((SECONDS < deadline)) || die "$sys: $dir/mnt not mounted after 10 s"
        sleep 0.1
    done
    MNT=$dir/mnt
    local p
    for p in $(pgrep -x "$sys"); do
        tr '\0' '\n' <"/proc/$p/cmdline" | grep -qxF "$MNT" && DAEMON_PID=$p
    done
}

unmount_system() { # unmount_system SYSTEM
    local dir=$WORK/$1
    if is_mounted "$dir/mnt"; then
        fusermount3 -u "$dir/mnt" || umount -l "$dir/mnt"
    fi
    rm -rf --one-file-system "$dir"
}

rss_mib() { # resident memory of the daemon, MiB
    [[ -n $DAEMON_PID ]] || { echo "-"; return; }
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$DAEMON_PID/status"
}

dir_rows() { # dir_rows SYSTEM: files in one directory
    local sys=$1 n t0 tc tl ts tr
    for n in $SCALE_FILES; do
        mkdir "$MNT/d"
        drop_caches
        tc=$(python3 - "$MNT/d" "$n" <<'EOF'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
for i in range(n):
    fd = os.open(os.path.join(d, f"file-{i:07d}.jpg"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"x" * 100)
    os.close(fd)
print("%.3f" % (time.perf_counter() - t0))
EOF
)
        drop_caches
        t0=$(now)
        ls -l "$MNT/d" >/dev/null
        tl=$(since "$t0")
        drop_caches
        t0=$(now)
        find "$MNT/d" -type f -print0 | xargs -0 stat -c %s >/dev/null
        ts=$(since "$t0")
        t0=$(now)
        rm -rf "$MNT/d"
        tr=$(since "$t0")
        echo "| $sys | $n | $tc ($(per "$tc" "$n" 1e6) µs/file) | $tl ($(per "$tl" "$n" 1e6)) | $ts ($(per "$ts" "$n" 1e6)) | $tr ($(per "$tr" "$n" 1e6)) |"
    done
}

size_rows() { # size_rows SYSTEM: one file of each size, written then read cold
    local sys=$1 m tw tr
    for m in $SCALE_SIZES_MIB; do
        tw=$(python3 "$TIMED_IO" write "$MNT/big" "$m")
        drop_caches
        tr=$(python3 "$TIMED_IO" read "$MNT/big" "$m")
        rm -f "$MNT/big"
        echo "| $sys | $m | $tw ($(per "$tw" "$m" 1e3) ms/MiB) | $tr ($(per "$tr" "$m" 1e3) ms/MiB) |"
    done
}

fio_iops() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"]; print("%.0f" % sum(x["write"]["iops"] for x in j))' "$1"; }

jobs_rows() { # jobs_rows SYSTEM: N writers, own files and one shared file; the same
    # 128 MiB in all, so that only the number of writers changes (a FUSE mount may
    # hold only so much dirty data: past it, writers wait for the daemon)
    local sys=$1 n own shared
    for n in $SCALE_JOBS; do
        fio --name=own --directory="$MNT" --rw=randwrite --bs=4k --size=$((128 / n))M --numjobs="$n" \
            --ioengine=psync --time_based --runtime="$SCALE_FIO_SECONDS" --fallocate=none \
            --group_reporting=0 --output-format=json --output="$WORK/own.json" >&2
        own=$(fio_iops "$WORK/own.json")
        rm -f "$MNT"/own.*
        fio --name=shared --filename="$MNT/shared" --rw=randwrite --bs=4k --size=128M \
            --numjobs="$n" --ioengine=psync --time_based --runtime="$SCALE_FIO_SECONDS" \
            --fallocate=none --group_reporting=0 --output-format=json \
            --output="$WORK/shared.json" >&2
        shared=$(fio_iops "$WORK/shared.json")
        rm -f "$MNT/shared"
        echo "| $sys | $n | $own ($((own / n)) per process) | $shared ($((shared / n)) per process) |"
    done
}

rss_rows() { # rss_rows SYSTEM: resident memory of a fresh mount, after 100k lookups,
    # with 1,000 files open
    local sys=$1 before looked open_
    [[ -n $DAEMON_PID ]] || return 0
    before=$(rss_mib)
    mkdir "$MNT/r"
    python3 - "$MNT/r" <<'EOF'
import os, sys
d = sys.argv[1]
for i in range(100_000):
    os.close(os.open(os.path.join(d, f"f{i:06d}"), os.O_CREAT | os.O_WRONLY, 0o644))
EOF
    drop_caches
    find "$MNT/r" -type f -print0 | xargs -0 stat -c %s >/dev/null
    looked=$(rss_mib)
    python3 - "$MNT/r" "$DAEMON_PID" <<'EOF' >"$WORK/open_rss"
import os, sys
d, pid = sys.argv[1], sys.argv[2]
fds = [os.open(os.path.join(d, f"f{i:06d}"), os.O_RDWR) for i in range(1000)]
for fd in fds:
    os.write(fd, b"y" * 100)
rss = "-"
if pid:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = "%.1f" % (int(line.split()[1]) / 1024)
print(rss)
for fd in fds:
    os.close(fd)
EOF
    open_=$(<"$WORK/open_rss")
    rm -rf "$MNT/r"
    echo "| $sys | $before | $looked | $open_ |"
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root (drops kernel caches, mounts FUSE)"
    command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio >&2; }
    command -v fusermount3 >/dev/null || { apt-get update -qq && apt-get install -y -qq fuse3 >&2; }
    if [[ " $SCALE_SYSTEMS " == *" veilfs "* && -z ${VEILFS_BIN:-} ]]; then
        (cd "$REPO" && cargo build --release >&2)
        VEILFS_BIN=$REPO/target/release/veilfs
    fi
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORK=$(mktemp -d "$SCALE_DIR/veilfs-scale.XXXXXX")
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$WORK/pass"
    TIMED_IO=$WORK/timed_io.py
    cat >"$TIMED_IO" <<'EOF'
import os, sys, time
what, path, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
block = bytearray(os.urandom(1 << 20))
t0 = time.perf_counter()
if what == "write":
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for i in range(mib):
        block[:8] = i.to_bytes(8, "little")  # no two blocks alike
        os.write(fd, block)
    os.fsync(fd)
else:
    fd = os.open(path, os.O_RDONLY)
    while os.read(fd, 1 << 20):
        pass
os.close(fd)
print("%.3f" % (time.perf_counter() - t0))
EOF
    local sys v dirs="" sizes="" jobs="" rss=""
    for sys in $SCALE_SYSTEMS; do
        log "=== $sys"
        mount_system "$sys"
        log "files in one directory"; dirs+=$(dir_rows "$sys")$'\n'
        log "file sizes"; sizes+=$(size_rows "$sys")$'\n'
        log "concurrent writers"; jobs+=$(jobs_rows "$sys")$'\n'
        unmount_system "$sys"
        mount_system "$sys"
        log "resident memory"
        v=$(rss_rows "$sys")
        [[ -z $v ]] || rss+=$v$'\n'
        unmount_system "$sys"
    done
    mkdir -p "$(dirname "$SCALE_OUT")"
    {
        echo "## Scaling, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, Linux $(uname -r), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
        echo
        echo "### Files in one directory (seconds; per file in µs)"
        echo
        echo "| system | files | create | ls -l (cold) | stat all (cold) | rm -rf |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: |"
        printf '%s' "$dirs"
        echo
        echo "### File size (seconds; per MiB in ms)"
        echo
        echo "| system | MiB | write + fsync | read (cold) |"
        echo "| --- | ---: | ---: | ---: |"
        printf '%s' "$sizes"
        echo
        echo "### Concurrent writers, 4 KiB random writes, 128 MiB in all (IOPS, all processes)"
        echo
        echo "| system | processes | own files | one shared file |"
        echo "| --- | ---: | ---: | ---: |"
        printf '%s' "$jobs"
        echo
        echo "### Daemon resident memory (MiB)"
        echo
        echo "| system | freshly mounted | after 100k files created and looked up | with 1,000 files open and written |"
        echo "| --- | ---: | ---: | ---: |"
        printf '%s' "$rss"
    } >"$SCALE_OUT"
    cat "$SCALE_OUT"
}

main "$@"
