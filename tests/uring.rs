//! FUSE over io_uring through a real mount: with the fuse module's
//! `enable_uring` parameter on, veilfs serves its requests over io_uring
//! (checked by the daemon's own count of requests received on the rings,
//! and its ring threads), with the same results as over /dev/fuse; with it
//! off, veilfs says why and serves over /dev/fuse.
//!
//! Both tests need to set the parameter (root, Linux 6.14+ with
//! CONFIG_FUSE_IO_URING); where they cannot, they print why and return.
//! They put the parameter back as they found it, also when they fail.

mod common;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Mutex;
use std::time::Duration;

use common::{TestMount, pattern, wait_until};

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// The parameter is global: the two tests take turns.
static PARAM_LOCK: Mutex<()> = Mutex::new(());

/// Sets `enable_uring` and puts the old value back on drop; holds
/// `PARAM_LOCK` meanwhile (the fields drop after `drop` has restored it).
struct EnableUring {
    old: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl EnableUring {
    /// `None` (after printing why) when the parameter cannot be set here.
    fn set(on: bool) -> Option<EnableUring> {
        let turn = PARAM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let old = match fs::read_to_string(PARAM) {
            Ok(v) => v.trim().to_string(),
            Err(e) => {
                eprintln!("skipping: {PARAM}: {e} (this kernel has no FUSE over io_uring)");
                return None;
            }
        };
        if let Err(e) = fs::write(PARAM, if on { "Y" } else { "N" }) {
            eprintln!("skipping: cannot write {PARAM}: {e} (needs root)");
            return None;
        }
        Some(EnableUring { old, _turn: turn })
    }
}

impl Drop for EnableUring {
    fn drop(&mut self) {
        if let Err(e) = fs::write(PARAM, &self.old) {
            eprintln!("cannot restore {PARAM} to {}: {e}", self.old);
        }
    }
}

/// Waits for the daemon's log line about the transport and returns it.
fn transport_line(m: &TestMount) -> String {
    let mut line = String::new();
    let found = wait_until(Duration::from_secs(10), || {
        line = m
            .log_text()
            .lines()
            .find(|l| l.contains("FUSE requests travel over"))
            .unwrap_or_default()
            .to_string();
        !line.is_empty()
    });
    assert!(found, "no transport line in the log:\n{}", m.log_text());
    line
}

/// Whether the kernel offered io_uring but this process may not create
/// rings (the `kernel.io_uring_disabled` sysctl, a seccomp filter in a
/// container): then the mount rightly falls back, and the test says why
/// it checks nothing more.
fn ring_blocked(line: &str) -> bool {
    let blocked = line.contains("cannot set up io_uring");
    if blocked {
        eprintln!("skipped: io_uring rings cannot be created here: {line}");
    }
    blocked
}

/// A mount with `--io-uring` (enable_uring on), checked to serve over
/// io_uring; `None`, after printing why, where rings cannot be created.
fn mount_over_io_uring() -> Option<TestMount> {
    let m = TestMount::with_args(&["--io-uring"]);
    let line = transport_line(&m);
    if ring_blocked(&line) {
        return None;
    }
    assert!(
        line.contains("travel over io_uring"),
        "with enable_uring on and --io-uring, veilfs must use io_uring: {line}\n{}",
        m.log_text()
    );
    Some(m)
}

/// Create, write, read back, overwrite in the middle, rename, readdir,
/// unlink, and a file several times max_write (1 MiB): the results must
/// be the same over either transport.
fn mixed_workload(m: &TestMount) {
    let dir = m.path("d");
    fs::create_dir(&dir).unwrap();
    for i in 0..300u64 {
        fs::write(
            dir.join(format!("f{i:03}")),
            pattern(100 + i as usize * 13, i),
        )
        .unwrap();
    }
    for i in (0..300u64).step_by(7) {
        let want = pattern(100 + i as usize * 13, i);
        assert_eq!(
            fs::read(dir.join(format!("f{i:03}"))).unwrap(),
            want,
            "f{i:03}"
        );
    }
    for i in 0..100u64 {
        fs::rename(dir.join(format!("f{i:03}")), dir.join(format!("r{i:03}"))).unwrap();
    }
    for i in 100..150u64 {
        fs::remove_file(dir.join(format!("f{i:03}"))).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..100)
        .map(|i| format!("r{i:03}"))
        .chain((150..300).map(|i| format!("f{i:03}")))
        .collect();
    want.sort();
    assert_eq!(names, want, "directory listing after renames and unlinks");
    assert_eq!(
        fs::read(dir.join("r042")).unwrap(),
        pattern(100 + 42 * 13, 42),
        "renamed file keeps its content"
    );

    // Larger than max_write and the ring's payload buffer (1 MiB): the
    // kernel splits it into several requests each way.
    let big = m.path("big.bin");
    let mut data = pattern((5 << 20) + 12345, 77);
    fs::write(&big, &data).unwrap();
    let patch = pattern(300_000, 78);
    let at = (1 << 20) - 1000;
    {
        let mut f = fs::OpenOptions::new().write(true).open(&big).unwrap();
        f.seek(SeekFrom::Start(at as u64)).unwrap();
        f.write_all(&patch).unwrap();
        f.sync_all().unwrap();
    }
    data[at..at + patch.len()].copy_from_slice(&patch);
    assert_eq!(fs::metadata(&big).unwrap().len(), data.len() as u64);
    assert!(fs::read(&big).unwrap() == data, "big file content");
}

/// The number in the daemon's "served N requests over io_uring" line.
fn served_over_uring(log: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.split("served ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn serves_over_io_uring_when_enabled() {
    let Some(_param) = EnableUring::set(true) else {
        return;
    };
    let Some(mut m) = mount_over_io_uring() else {
        return;
    };
    // One ring thread per possible CPU, next to the /dev/fuse thread.
    let threads: Vec<String> = fs::read_dir(format!("/proc/{}/task", m.pid()))
        .unwrap()
        .filter_map(|t| fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    assert!(
        threads.iter().any(|t| t == "fuser-ring-0"),
        "no io_uring queue thread: {threads:?}"
    );

    mixed_workload(&m);
    m.unmount();
    let log = m.log_text();
    let served = served_over_uring(&log)
        .unwrap_or_else(|| panic!("no count of io_uring requests in the log:\n{log}"));
    // 300 creates alone are well over 600 requests (LOOKUP, CREATE, WRITE,
    // FLUSH, RELEASE...). Over /dev/fuse the count would be 0.
    assert!(
        served > 1000,
        "only {served} requests came over io_uring:\n{log}"
    );
    m.assert_fsck_clean("the io_uring workload");
}

#[test]
fn falls_back_to_dev_fuse_when_disabled() {
    let Some(_param) = EnableUring::set(false) else {
        return;
    };
    let mut m = TestMount::with_args(&["--io-uring"]);
    let line = transport_line(&m);
    assert!(
        line.contains("travel over /dev/fuse") && line.contains("enable_uring"),
        "with enable_uring off, veilfs must say it serves over /dev/fuse and why: {line}"
    );
    mixed_workload(&m);
    m.unmount();
    let log = m.log_text();
    assert_eq!(
        served_over_uring(&log),
        None,
        "no io_uring count over /dev/fuse:\n{log}"
    );
    m.assert_fsck_clean("the /dev/fuse workload");
}

/// io_uring is opt-in: without `--io-uring` the mount stays on /dev/fuse
/// even where the kernel offers io_uring (sequential and random writes
/// lose 7-12 % over it, docs/PERFORMANCE.md), and says so.
#[test]
fn stays_on_dev_fuse_unless_asked() {
    let Some(_param) = EnableUring::set(true) else {
        return;
    };
    let mut m = TestMount::new();
    let line = transport_line(&m);
    assert!(
        line.contains("travel over /dev/fuse"),
        "without --io-uring, veilfs must stay on /dev/fuse: {line}"
    );
    fs::write(m.path("f"), b"x").unwrap();
    m.unmount();
    assert_eq!(served_over_uring(&m.log_text()), None);
}

/// A daemon killed while serving over io_uring leaves no dead mount:
/// fusermount3's auto_unmount must find the connection aborted when it
/// sees the daemon gone (the rings hold its socket until they are torn
/// down; without that the mount stayed behind, dead).
#[test]
fn sigkill_over_io_uring_leaves_no_dead_mount() {
    let Some(_param) = EnableUring::set(true) else {
        return;
    };
    let Some(mut m) = mount_over_io_uring() else {
        return;
    };
    fs::write(m.path("f"), b"durable").unwrap();
    fs::File::open(m.path("f")).unwrap().sync_all().unwrap();
    m.kill_expecting_auto_unmount();
    m.mount();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"durable");
}
