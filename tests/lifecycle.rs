//! Mount lifecycle: unmount idle and busy, SIGTERM, SIGKILL, daemon mode,
//! remount and read back.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{BIN, TestMount, is_mounted, run_ok, wait_until};

#[test]
fn fusermount_unmount_idle_and_remount_reads_back() {
    let mut m = TestMount::new();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/f"), b"persisted").unwrap();
    m.unmount();
    assert!(!is_mounted(&m.mnt));
    m.mount();
    assert_eq!(fs::read(m.path("d/f")).unwrap(), b"persisted");
}

#[test]
fn unmount_while_a_file_is_open_is_busy() {
    let mut m = TestMount::new();
    fs::write(m.path("open"), b"x").unwrap();
    let held = fs::File::open(m.path("open")).unwrap();
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "unmount of a busy mount must fail (EBUSY)"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("busy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&m.mnt));
    drop(held);
    m.unmount();
}

#[test]
fn sigterm_in_foreground_unmounts_cleanly() {
    let mut m = TestMount::new();
    fs::write(m.path("f"), b"before sigterm").unwrap();
    let pid = m.pid() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = m.wait_child(Duration::from_secs(15)).expect("daemon exits");
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    assert!(!is_mounted(&m.mnt), "no mount left behind");
    m.mount();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"before sigterm");
}

#[test]
fn sigkill_leaves_no_dead_mount() {
    let mut m = TestMount::new();
    fs::write(m.path("f"), b"durable").unwrap();
    fs::File::open(m.path("f")).unwrap().sync_all().unwrap();
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    m.wait_child(Duration::from_secs(10));
    let mnt = m.mnt.clone();
    assert!(
        wait_until(Duration::from_secs(10), || !is_mounted(&mnt)),
        "auto_unmount removed the dead mount"
    );
    m.mount();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"durable");
}

#[test]
fn daemon_mode_returns_when_ready_and_veilfs_unmount_works() {
    let m = TestMount::new();
    let mnt2 = m.tmp.path().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    // The first mount stays; mount the same vault read-only elsewhere in
    // daemon mode and use it on the very next line.
    run_ok(
        Command::new(BIN)
            .args(["mount", "--ro", "--key-file"])
            .arg(&m.keyfile)
            .arg(&m.cipher)
            .arg(&mnt2),
    );
    struct Guard(std::path::PathBuf);
    impl Drop for Guard {
        fn drop(&mut self) {
            if is_mounted(&self.0) {
                let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
            }
        }
    }
    let _g = Guard(mnt2.clone());
    assert!(is_mounted(&mnt2), "mounted when the command returns");
    fs::write(m.path("seen"), b"through both").unwrap();
    assert!(wait_until(Duration::from_secs(5), || fs::read(
        mnt2.join("seen")
    )
    .map(|d| d == b"through both")
    .unwrap_or(false)));
    run_ok(Command::new(BIN).arg("unmount").arg(&mnt2));
    assert!(wait_until(Duration::from_secs(5), || !is_mounted(&mnt2)));
    let out = Command::new(BIN)
        .arg("unmount")
        .arg(&mnt2)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn wrong_key_does_not_mount() {
    let m = TestMount::new();
    let bad = m.tmp.path().join("badkey");
    fs::write(&bad, "1111".repeat(16)).unwrap();
    let mnt2 = m.tmp.path().join("mnt3");
    fs::create_dir(&mnt2).unwrap();
    let out = Command::new(BIN)
        .args(["mount", "--key-file"])
        .arg(&bad)
        .arg(&m.cipher)
        .arg(&mnt2)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong key"));
    assert!(!is_mounted(&mnt2));
}
