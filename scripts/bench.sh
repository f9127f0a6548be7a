#!/usr/bin/env bash
# scripts/bench.sh - compare veilfs with gocryptfs, securefs (lite format) and
# the plain backing filesystem, in one run, on the same disk.
#
#   scripts/bench.sh                                   # full run, ~10 min on 2 cores
#   BENCH_QUICK=1 scripts/bench.sh                     # smoke test, ~1-2 min
#   BENCH_SYSTEMS="gocryptfs securefs plain" scripts/bench.sh
#
# Must run as root (installs packages, drops the kernel caches, mounts FUSE).
# Environment (all optional):
#   BENCH_SYSTEMS      systems to measure, in order   (veilfs gocryptfs securefs plain)
#   BENCH_DIR          parent of the temporary work dir; must be a real disk,
#                      not tmpfs                       (/var/tmp)
#   BENCH_OUT          markdown result file            (target/bench/results.md);
#                      per-run raw values go next to it as .tsv
#   BENCH_RUNS         runs per workload; the median is reported (3; 1 if quick)
#   BENCH_QUICK=1      smoke test: BENCH_SCALE=1/16, BENCH_RUNS=1, 3 s fio runs
#   BENCH_SCALE        multiplies every size and count (1; 0.0625 if quick)
#   BENCH_FIO_SECONDS  duration of each time-based 4k fio run (4; 3 if quick)
#   BENCH_SEQ_MIB BENCH_RAND_MIB BENCH_FILES BENCH_DIRS BENCH_SQL_ROWS
#   BENCH_SQL_QUERIES  override single sizes (defaults: 1024 256 20000 300 50000 2000)
#   BENCH_KEEP=1       keep the work dir (unmounted) for inspection
#   VEILFS_BIN         use this veilfs binary instead of `cargo build --release`
#   VEILFS_INIT_ARGS   extra args for `veilfs init`  (e.g. "--chunk-size 16384")
#   VEILFS_MOUNT_ARGS  extra args for `veilfs mount`
#   BENCH_TRACE=1      per-request breakdown: the first run of each workload
#                      records the kernel's FUSE request tracepoints and the
#                      daemon's CPU time and wake-ups (perf); the report gets
#                      requests by opcode, time per request and CPU per request
#                      (tracing slows that run; the median of 3 hides it)
set -Eeuo pipefail
shopt -s inherit_errexit
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -E/{/^set -E/d; s/^# \{0,1\}//; p}' "${BASH_SOURCE[0]}"
    exit 0
fi
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPERS=$REPO/scripts/bench

# ---------------------------------------------------------------- configuration
BENCH_SYSTEMS=${BENCH_SYSTEMS:-"veilfs gocryptfs securefs plain"}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
BENCH_OUT=${BENCH_OUT:-$REPO/target/bench/results.md}
BENCH_QUICK=${BENCH_QUICK:-0}
if [[ $BENCH_QUICK == 1 ]]; then
    BENCH_RUNS=${BENCH_RUNS:-1}
    BENCH_SCALE=${BENCH_SCALE:-0.0625}
    BENCH_FIO_SECONDS=${BENCH_FIO_SECONDS:-3}
fi
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_SCALE=${BENCH_SCALE:-1}
BENCH_FIO_SECONDS=${BENCH_FIO_SECONDS:-4}
BENCH_KEEP=${BENCH_KEEP:-0}

scaled() { # scaled DEFAULT MINIMUM -> DEFAULT*BENCH_SCALE, at least MINIMUM
    awk -v d="$1" -v m="$2" -v s="$BENCH_SCALE" 'BEGIN { v = int(d * s + 0.5); print (v < m ? m : v) }'
}
BENCH_SEQ_MIB=${BENCH_SEQ_MIB:-$(scaled 1024 16)}
BENCH_RAND_MIB=${BENCH_RAND_MIB:-$(scaled 256 16)}
BENCH_FILES=${BENCH_FILES:-$(scaled 20000 500)}
BENCH_DIRS=${BENCH_DIRS:-$(scaled 300 20)}
BENCH_SQL_ROWS=${BENCH_SQL_ROWS:-$(scaled 50000 2000)}
BENCH_SQL_QUERIES=${BENCH_SQL_QUERIES:-$(scaled 2000 200)}
BENCH_SQL_BATCH=100
read -r -a VEILFS_INIT_EXTRA <<<"${VEILFS_INIT_ARGS:-}"
read -r -a VEILFS_MOUNT_EXTRA <<<"${VEILFS_MOUNT_ARGS:-}"
export BENCH_RUNS BENCH_FIO_SECONDS BENCH_SEQ_MIB BENCH_RAND_MIB BENCH_FILES \
    BENCH_DIRS BENCH_SQL_ROWS BENCH_SQL_QUERIES BENCH_SQL_BATCH

WORK=""      # temporary work dir, set in main
RAW=""       # per-run raw results (tsv)
MNT=""       # mount point (or plain dir) of the system under test
DAEMON=""    # process name of the FUSE daemon of the system under test

# ---------------------------------------------------------------- helpers
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

elapsed_since() { # elapsed_since T0 -> seconds since T0 (an $EPOCHREALTIME value)
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}
mib_per_s() { awk -v m="$1" -v s="$2" 'BEGIN { printf "%.1f", m / s }'; }

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

record() { # record SYSTEM WORKLOAD RUN VALUE UNIT
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"
    log "  $1 $2 run $3: $4 $5"
}

fio_json() { # fio_json NAME ARGS... ; runs fio, leaves its json report in $WORK/fio.json
    local name=$1; shift
    fio --name="$name" --ioengine=psync --iodepth=1 --fallocate=none \
        --output-format=json --output="$WORK/fio.json" "$@" >&2
}
fio_iops() { # fio_iops read|write
    python3 -c 'import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
print("%.0f" % job[sys.argv[2]]["iops"])' "$WORK/fio.json" "$1"
}

is_mounted() { # is_mounted DIR: listed in the mount table (also true for a dead FUSE mount,
    # where `mountpoint` fails with ENOTCONN)
    D=${1// /\\040} awk '$2 == ENVIRON["D"] { found = 1 } END { exit !found }' /proc/self/mounts
}

wait_mounted() { # wait_mounted DIR [TIMEOUT_S]: poll until DIR is a mount point
    local deadline=$((SECONDS + ${2:-10}))
    until mountpoint -q "$1"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

unmount_fs() { # unmount_fs DIR: fusermount3 -u with a few retries, then umount -l
    local dir=$1 _
    is_mounted "$dir" || return 0
    for _ in 1 2 3 4 5; do
        fusermount3 -u "$dir" 2>/dev/null && return 0
        is_mounted "$dir" || return 0
        sleep 0.5 # busy: give the last users a moment to close their files
    done
    log "fusermount3 -u $dir failed; lazy unmount"
    umount -l "$dir" || fusermount3 -uz "$dir"
}

wait_pid_exit() { # wait_pid_exit PID [TIMEOUT_S]
    local deadline=$((SECONDS + ${2:-10}))
    while [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || { log "daemon $1 still running after unmount"; return 0; }
        sleep 0.1
    done
}

daemon_pid() { # daemon_pid NAME DIR -> pid of the FUSE daemon NAME serving DIR
    # Candidates name DIR exactly in their arguments (other instances of the same
    # program may run on this machine); the daemon is the one holding /dev/fuse
    # (a launcher process that has not exited yet does not).
    local name=$1 dir=$2 pid first=""
    for pid in $(pgrep -x "$name" || true); do
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$dir" || continue
        if find "/proc/$pid/fd" -maxdepth 1 -lname /dev/fuse 2>/dev/null | grep -q .; then
            echo "$pid"; return 0
        fi
        first=${first:-$pid}
    done
    [[ -z $first ]] || echo "$first"
}

cleanup() {
    local rc=$? dir
    set +e
    trap - EXIT INT TERM ERR
    if [[ -n $WORK && -d $WORK ]]; then
        for dir in "$WORK"/*/mnt; do
            [[ -d $dir ]] && unmount_fs "$dir"
        done
        if [[ $BENCH_KEEP == 1 ]]; then
            log "work dir kept: $WORK"
        else
            rm -rf --one-file-system "$WORK"
        fi
    fi
    exit "$rc"
}

# ---------------------------------------------------------------- preparation
ensure_packages() {
    local -A need=([fusermount3]=fuse3 [fio]=fio [sqlite3]=sqlite3)
    local sys cmd missing=()
    for sys in $BENCH_SYSTEMS; do
        case $sys in gocryptfs | securefs) need[$sys]=$sys ;; esac
    done
    for cmd in "${!need[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("${need[$cmd]}")
    done
    command -v python3 >/dev/null || missing+=(python3)
    [[ ${BENCH_TRACE:-0} != 1 ]] || command -v perf >/dev/null || missing+=(linux-perf)
    if ((${#missing[@]})); then
        log "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
    python3 -c 'import sqlite3' || die "python3 lacks the sqlite3 module"
}

preflight() {
    [[ $(id -u) == 0 ]] || die "run as root (drops kernel caches, mounts FUSE, installs packages)"
    [[ -c /dev/fuse ]] || modprobe fuse 2>/dev/null || true
    [[ -c /dev/fuse ]] || die "/dev/fuse is missing"
    [[ -w /proc/sys/vm/drop_caches ]] || die "/proc/sys/vm/drop_caches is not writable"
    local sys
    for sys in $BENCH_SYSTEMS; do
        case $sys in veilfs | gocryptfs | securefs | plain) ;;
            *) die "unknown system '$sys' in BENCH_SYSTEMS (known: veilfs gocryptfs securefs plain)" ;;
        esac
    done
    mkdir -p "$BENCH_DIR"
    local fstype avail_mib need_mib
    fstype=$(stat -f -c %T "$BENCH_DIR")
    if [[ $fstype == tmpfs || $fstype == ramfs ]]; then
        die "BENCH_DIR=$BENCH_DIR is on $fstype; point it at a real disk (e.g. BENCH_DIR=/var/tmp)"
    fi
    avail_mib=$(df -Pm "$BENCH_DIR" | awk 'NR == 2 { print $4 }')
    need_mib=$((BENCH_SEQ_MIB + BENCH_RAND_MIB + BENCH_FILES * 30 / 1024 + 512))
    ((avail_mib > need_mib)) || die "need ~${need_mib} MiB free in $BENCH_DIR, have ${avail_mib} MiB"
}

build_veilfs() {
    if [[ -n ${VEILFS_BIN:-} ]]; then
        [[ -x $VEILFS_BIN ]] || { log "VEILFS_BIN=$VEILFS_BIN is not executable"; return 1; }
        return 0
    fi
    [[ -d $HOME/.cargo/bin ]] && PATH=$HOME/.cargo/bin:$PATH
    log "building veilfs (cargo build --release)"
    (cd "$REPO" && cargo build --release >&2) || return 1
    VEILFS_BIN=$REPO/target/release/veilfs
    [[ -x $VEILFS_BIN ]]
}

make_tree_tar() {
    log "generating $BENCH_FILES files in $BENCH_DIRS directories as $WORK/tree.tar"
    python3 "$HELPERS/gentree.py" "$WORK/tree.tar" "$BENCH_FILES" "$BENCH_DIRS"
}

# ---------------------------------------------------------------- systems
# setup_SYSTEM DIR: create a fresh instance under DIR and mount it on DIR/mnt;
# sets MNT and DAEMON. Every mount point is DIR/mnt so that cleanup finds it.
setup_veilfs() {
    local dir=$1
    mkdir -p "$dir/cipher" "$dir/mnt"
    "$VEILFS_BIN" init --passfile "$WORK/passfile" "${VEILFS_INIT_EXTRA[@]}" "$dir/cipher" \
        >"$dir/init.log" 2>&1 || { cat "$dir/init.log" >&2; die "veilfs init failed"; }
    local rc=0
    timeout 60 "$VEILFS_BIN" mount --passfile "$WORK/passfile" "${VEILFS_MOUNT_EXTRA[@]}" \
        "$dir/cipher" "$dir/mnt" >&2 || rc=$?
    if ((rc == 124)) && is_mounted "$dir/mnt"; then
        die "veilfs mount mounted $dir/mnt but did not return within 60 s (daemonizing bug?)"
    fi
    ((rc == 0)) || die "veilfs mount failed (exit $rc)"
    wait_mounted "$dir/mnt" 10 || die "veilfs: $dir/mnt not mounted after 10 s"
    MNT=$dir/mnt DAEMON=veilfs
}

setup_gocryptfs() { # default settings
    local dir=$1
    mkdir -p "$dir/cipher" "$dir/mnt"
    gocryptfs -q -init -passfile "$WORK/passfile" "$dir/cipher" >&2
    # -nosyslog only keeps the daemon's messages off syslog (absent here)
    timeout 60 gocryptfs -q -nosyslog -passfile "$WORK/passfile" "$dir/cipher" "$dir/mnt" >&2
    wait_mounted "$dir/mnt" 10 || die "gocryptfs: $dir/mnt not mounted after 10 s"
    MNT=$dir/mnt DAEMON=gocryptfs
}

setup_securefs() { # lite format (--format 4), otherwise default settings
    local dir=$1 pass
    pass=$(<"$WORK/passfile")
    mkdir -p "$dir/cipher" "$dir/mnt"
    securefs create --format 4 --pass "$pass" "$dir/cipher" >&2
    timeout 60 securefs mount -b --log "$dir/securefs.log" --pass "$pass" \
        "$dir/cipher" "$dir/mnt" >&2
    wait_mounted "$dir/mnt" 10 || die "securefs: $dir/mnt not mounted after 10 s"
    MNT=$dir/mnt DAEMON=securefs
}

setup_plain() { # the backing filesystem itself, as the physical reference
    local dir=$1
    mkdir -p "$dir/plain"
    MNT=$dir/plain DAEMON=""
}

teardown_system() { # teardown_system DIR: unmount (if mounted) and delete DIR
    local dir=$1 pid=""
    if is_mounted "$dir/mnt"; then
        [[ -n $DAEMON ]] && pid=$(daemon_pid "$DAEMON" "$dir/mnt")
        unmount_fs "$dir/mnt"
        wait_pid_exit "$pid" 10
    fi
    [[ $BENCH_KEEP == 1 ]] || rm -rf --one-file-system "$dir"
}

# ---------------------------------------------------------------- workloads
# Each prints its figure on stdout; progress and tool output go to stderr.

traced() { # traced RUN WORKLOAD: runs the workload function; with BENCH_TRACE=1, in
    # run 1, records its FUSE requests and the daemon's CPU time (for breakdown.py)
    local run=$1 fn=$2
    if [[ ${BENCH_TRACE:-0} != 1 || $run != 1 || -z $DAEMON ]]; then
        "$fn"
        return
    fi
    local out=$WORK/trace/$sys.$fn pid rec counter rc=0 deadline=$((SECONDS + 10))
    mkdir -p "$WORK/trace"
    pid=$(daemon_pid "$DAEMON" "$MNT")
    stat -c %d "$MNT" >"$out.dev"
    perf record -q -a -e fuse:fuse_request_send -e fuse:fuse_request_end \
        -o "$out.data" >/dev/null 2>&1 &
    rec=$!
    perf stat -x, -e task-clock,context-switches -p "$pid" -o "$out.stat" >/dev/null 2>&1 &
    counter=$!
    until [[ -s $out.data && -e $out.stat ]]; do # both attached
        ((SECONDS < deadline)) || { log "perf did not start"; break; }
        sleep 0.05
    done
    "$fn" || rc=$?
    kill -INT "$rec" "$counter" 2>/dev/null || true
    wait "$rec" "$counter" 2>/dev/null || true
    return "$rc"
}

seq_write() { # BENCH_SEQ_MIB in 1 MiB blocks + fsync; MiB/s over the wall time incl. fsync
    rm -f "$MNT/seq.bin"
    drop_caches
    local t0=$EPOCHREALTIME
    # fio fills its buffers with random data and scrambles them per write
    # (scramble_buffers=1 is the default), so neither zeros nor repeats.
    fio_json seq_write --filename="$MNT/seq.bin" --rw=write --bs=1M \
        --size="${BENCH_SEQ_MIB}M" --end_fsync=1
    mib_per_s "$BENCH_SEQ_MIB" "$(elapsed_since "$t0")"
}

seq_read_cold() { # read seq.bin back after dropping the caches; MiB/s
    drop_caches
    local t0=$EPOCHREALTIME
    fio_json seq_read_cold --filename="$MNT/seq.bin" --rw=read --bs=1M --size="${BENCH_SEQ_MIB}M"
    mib_per_s "$BENCH_SEQ_MIB" "$(elapsed_since "$t0")"
}

rand_prepare() { # lay out the file for the 4k random workloads (not timed)
    fio_json rand_layout --filename="$MNT/rand.bin" --rw=write --bs=1M \
        --size="${BENCH_RAND_MIB}M" --end_fsync=1
}

rand_read_4k() { # IOPS, psync, iodepth 1, cold start
    drop_caches
    fio_json rand_read_4k --filename="$MNT/rand.bin" --rw=randread --bs=4k \
        --size="${BENCH_RAND_MIB}M" --runtime="$BENCH_FIO_SECONDS" --time_based
    fio_iops read
}

rand_write_4k() { # IOPS, psync, iodepth 1, cold start; fsync at the end (not counted)
    drop_caches
    fio_json rand_write_4k --filename="$MNT/rand.bin" --rw=randwrite --bs=4k \
        --size="${BENCH_RAND_MIB}M" --runtime="$BENCH_FIO_SECONDS" --time_based --end_fsync=1
    fio_iops write
}

small_files_create() { # extract the generated tar into the mount; seconds
    drop_caches
    cat "$WORK/tree.tar" >/dev/null # source in page cache: measure the target only
    local t0=$EPOCHREALTIME
    tar -xf "$WORK/tree.tar" -C "$MNT" --no-same-owner
    elapsed_since "$t0"
}

metadata_scan() { # ls -lR of the tree, cold; seconds
    drop_caches
    local t0=$EPOCHREALTIME t files
    ls -lR "$MNT/tree" >"$WORK/ls.out"
    t=$(elapsed_since "$t0")
    files=$(grep -c '^-' "$WORK/ls.out" || true)
    [[ $files == "$BENCH_FILES" ]] || die "metadata_scan: saw $files files, expected $BENCH_FILES"
    echo "$t"
}

read_tree() { # read every file of the tree, cold; seconds
    drop_caches
    local t0=$EPOCHREALTIME t
    # not `tar cf /dev/null`: GNU tar does not read the files then
    (cd "$MNT/tree" && tar -cf - .) | cat >/dev/null
    elapsed_since "$t0"
}

rm_tree() { # rm -rf of the tree; seconds
    local t0=$EPOCHREALTIME t
    rm -rf "$MNT/tree"
    t=$(elapsed_since "$t0")
    [[ ! -e $MNT/tree ]] || die "rm_tree: $MNT/tree still exists"
    echo "$t"
}

sqlite_chat() { # prints "<inserts/s> <queries/s>"
    drop_caches
    python3 "$HELPERS/sqlite_chat.py" "$MNT/chat.db" \
        "$BENCH_SQL_ROWS" "$BENCH_SQL_BATCH" "$BENCH_SQL_QUERIES"
}

peak_rss() { # VmHWM of the FUSE daemon, in MiB (the daemon lives for the whole system run)
    [[ -n $DAEMON ]] || return 0
    local pid kib
    pid=$(daemon_pid "$DAEMON" "$MNT")
    [[ -n $pid ]] || { log "no $DAEMON daemon found for $MNT"; return 0; }
    kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
    awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }'
}

# ---------------------------------------------------------------- driver
bench_system() { # bench_system SYSTEM: the whole sequence for one system
    local sys=$1 dir=$WORK/$1 r v ins q t0=$EPOCHREALTIME
    log "=== $sys: setup"
    "setup_$sys" "$dir"

    for ((r = 1; r <= BENCH_RUNS; r++)); do
        v=$(traced "$r" seq_write); record "$sys" seq_write "$r" "$v" MiB/s
        v=$(traced "$r" seq_read_cold); record "$sys" seq_read_cold "$r" "$v" MiB/s
    done
    rm -f "$MNT/seq.bin"

    rand_prepare
    for ((r = 1; r <= BENCH_RUNS; r++)); do
        v=$(traced "$r" rand_read_4k); record "$sys" rand_read_4k "$r" "$v" IOPS
    done
    for ((r = 1; r <= BENCH_RUNS; r++)); do
        v=$(traced "$r" rand_write_4k); record "$sys" rand_write_4k "$r" "$v" IOPS
    done
    rm -f "$MNT/rand.bin"

    for ((r = 1; r <= BENCH_RUNS; r++)); do
        v=$(traced "$r" small_files_create); record "$sys" small_files_create "$r" "$v" s
        v=$(traced "$r" metadata_scan); record "$sys" metadata_scan "$r" "$v" s
        v=$(traced "$r" read_tree); record "$sys" read_tree "$r" "$v" s
        v=$(traced "$r" rm_tree); record "$sys" rm_tree "$r" "$v" s
    done

    for ((r = 1; r <= BENCH_RUNS; r++)); do
        v=$(traced "$r" sqlite_chat)
        read -r ins q <<<"$v"
        record "$sys" sqlite_insert "$r" "$ins" rows/s
        record "$sys" sqlite_query "$r" "$q" queries/s
    done
    rm -f "$MNT"/chat.db*

    v=$(peak_rss)
    [[ -z $v ]] || record "$sys" peak_rss 1 "$v" MiB
    record "$sys" wall_time 1 "$(elapsed_since "$t0")" s
    teardown_system "$dir"
}

write_report() { # write_report FAILED_SYSTEMS TOTAL_SECONDS LOADS
    local failed=$1 total=$2 loads=$3 rev
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    git -C "$REPO" diff --quiet HEAD 2>/dev/null || rev="$rev (dirty tree)"
    mkdir -p "$(dirname "$BENCH_OUT")"
    {
        echo "## veilfs benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "- host: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
        echo "- backing filesystem: $(df -PT "$BENCH_DIR" | awk 'NR == 2 { print $2 " on " $1 }') ($BENCH_DIR)"
        echo "- repo: veilfs $rev${VEILFS_INIT_ARGS:+, init args: $VEILFS_INIT_ARGS}${VEILFS_MOUNT_ARGS:+, mount args: $VEILFS_MOUNT_ARGS}"
        echo "- gocryptfs $(dpkg-query -W -f '${Version}' gocryptfs 2>/dev/null || echo '?') (defaults), securefs $(dpkg-query -W -f '${Version}' securefs 2>/dev/null || echo '?') (lite format, --format 4), fio $(fio --version | sed 's/^fio-//'), SQLite $(python3 -c 'import sqlite3; print(sqlite3.sqlite_version)')"
        echo "- median of $BENCH_RUNS run(s); 4k fio runs: ${BENCH_FIO_SECONDS} s each; total wall time: ${total} s"
        echo "- load average (1 min) when each system started:$loads (other work on the machine skews the figures)"
        echo
        python3 "$HELPERS/report.py" "$RAW" "$BENCH_SYSTEMS" "$failed"
        if [[ -d $WORK/trace ]]; then
            echo
            echo "## Per-request breakdown (run 1 of each workload, traced)"
            echo
            python3 "$HELPERS/breakdown.py" "$WORK/trace" $BENCH_SYSTEMS
        fi
    } >"$BENCH_OUT"
}

main() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

    preflight
    ensure_packages

    local sys failed="" loads="" load t_start=$EPOCHREALTIME rc
    local -a systems=()
    for sys in $BENCH_SYSTEMS; do
        if [[ $sys == veilfs ]] && ! build_veilfs; then
            log "ERROR: veilfs failed to build (or target/release/veilfs is missing); skipping it." \
                "Measure the others with BENCH_SYSTEMS=\"gocryptfs securefs plain\"."
            failed+=" veilfs"
            continue
        fi
        systems+=("$sys")
    done

    WORK=$(mktemp -d "$BENCH_DIR/veilfs-bench.XXXXXX")
    RAW=${BENCH_OUT%.md}.tsv
    mkdir -p "$(dirname "$RAW")"
    printf 'system\tworkload\trun\tvalue\tunit\n' >"$RAW"
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$WORK/passfile"
    log "work dir $WORK; systems: ${systems[*]:-none}; runs: $BENCH_RUNS;" \
        "seq ${BENCH_SEQ_MIB} MiB, rand ${BENCH_RAND_MIB} MiB x ${BENCH_FIO_SECONDS} s," \
        "$BENCH_FILES files, $BENCH_SQL_ROWS rows"
    make_tree_tar

    for sys in "${systems[@]}"; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        loads+=" $sys $load"
        if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
            log "WARNING: load average is $load before $sys; other work on this machine will skew the figures"
        fi
        set +e
        (
            set -e
            bench_system "$sys"
        )
        rc=$?
        set -e
        if ((rc != 0)); then
            ((rc < 128)) || exit "$rc" # interrupted
            log "ERROR: $sys failed (exit $rc); its results are incomplete"
            failed+=" $sys"
            teardown_system "$WORK/$sys"
        fi
    done

    write_report "${failed# }" "$(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')" "$loads"
    echo
    cat "$BENCH_OUT"
    echo
    log "results: $BENCH_OUT (raw per-run values: $RAW)"
    [[ -z $failed ]] || die "failed:$failed"
}

main "$@"
