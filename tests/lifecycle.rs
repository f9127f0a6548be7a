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
    m.kill_expecting_auto_unmount();
    m.mount();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"durable");
}

#[test]
fn daemon_mode_returns_when_ready_and_veilfs_unmount_works() {
    let m = TestMount::new();
    let mnt2 = m.tmp.path().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    fs::write(m.path("seen"), b"through both").unwrap();
    // One live mount per vault: a second one, in daemon mode too, is
    // refused and names the first.
    let out = Command::new(BIN)
        .args(["mount", "--ro", "--key-file"])
        .arg(&m.keyfile)
        .arg(&m.cipher)
        .arg(&mnt2)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(!is_mounted(&mnt2));
    let mut m = m;
    m.unmount();
    // Mount read-only elsewhere in daemon mode and use it on the very
    // next line.
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
    assert_eq!(fs::read(mnt2.join("seen")).unwrap(), b"through both");
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
    let mut m = TestMount::new();
    m.unmount();
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

/// The error of a command refused because the vault is mounted: exit 5,
/// naming the mount point.
fn assert_refused_as_mounted(out: &std::process::Output, mnt: &std::path::Path) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "exit code; stderr: {err}");
    let want = format!("is mounted on {}", mnt.canonicalize().unwrap().display());
    assert!(err.contains(&want), "stderr names the mount point: {err}");
    assert!(err.contains("veilfs unmount"), "says what to do: {err}");
}

#[test]
fn a_vault_has_one_live_mount_by_any_path() {
    let m = TestMount::new();
    fs::write(m.path("f"), b"one").unwrap();
    let second = m.tmp.path().join("second");
    fs::create_dir(&second).unwrap();
    let link = m.tmp.path().join("link-to-cipher");
    std::os::unix::fs::symlink(&m.cipher, &link).unwrap();
    let bind = m.tmp.path().join("bind-of-cipher");
    fs::create_dir(&bind).unwrap();
    run_ok(
        Command::new("mount")
            .arg("--bind")
            .arg(&m.cipher)
            .arg(&bind),
    );
    struct Unbind(std::path::PathBuf);
    impl Drop for Unbind {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unbind = Unbind(bind.clone());
    for dir in [&m.cipher, &link, &bind] {
        for fg in [true, false] {
            let mut cmd = Command::new(BIN);
            cmd.arg("mount");
            if fg {
                cmd.arg("--foreground");
            }
            let out = cmd
                .arg("--key-file")
                .arg(&m.keyfile)
                .arg(dir)
                .arg(&second)
                .output()
                .unwrap();
            assert_refused_as_mounted(&out, &m.mnt);
            assert!(!is_mounted(&second), "{} mounted twice", dir.display());
        }
    }
    // A copy is another vault and mounts.
    let copy = m.tmp.path().join("copy");
    run_ok(Command::new("cp").arg("-a").arg(&m.cipher).arg(&copy));
    run_ok(
        Command::new(BIN)
            .args(["mount", "--key-file"])
            .arg(&m.keyfile)
            .arg(&copy)
            .arg(&second),
    );
    let copy_mounted = scopeguard_unmount(second.clone());
    assert_eq!(fs::read(second.join("f")).unwrap(), b"one");
    drop(copy_mounted);
}

/// Unmounts `mnt` when dropped, so a failing test leaves no mount.
fn scopeguard_unmount(mnt: std::path::PathBuf) -> impl Drop {
    struct G(std::path::PathBuf);
    impl Drop for G {
        fn drop(&mut self) {
            common::unmount_and_reap(&self.0, None, Duration::from_secs(5));
        }
    }
    G(mnt)
}

#[test]
fn offline_commands_refuse_a_mounted_vault_and_run_after_unmount() {
    let mut m = TestMount::new();
    fs::write(m.path("f"), vec![7u8; 100_000]).unwrap();
    let key = m.keyfile.clone();
    let newpw = m.tmp.path().join("newpw");
    fs::write(&newpw, "a new password\n").unwrap();
    let cmds: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["fsck".into()],
        vec!["fsck".into(), "--json".into()],
        vec!["fsck".into(), "--repair".into()],
        vec![
            "passwd".into(),
            "--new-passfile".into(),
            newpw.clone().into(),
        ],
        vec!["recover-config".into(), "--force".into()],
    ];
    let conf_before = fs::read(m.cipher.join("veilfs.conf")).unwrap();
    for args in &cmds {
        let out = Command::new(BIN)
            .args(args)
            .arg("--key-file")
            .arg(&key)
            .arg(&m.cipher)
            .output()
            .unwrap();
        assert_refused_as_mounted(&out, &m.mnt);
        assert!(out.stdout.is_empty(), "{args:?} printed a report");
    }
    assert_eq!(
        fs::read(m.cipher.join("veilfs.conf")).unwrap(),
        conf_before,
        "nothing rewrote the config behind the mount"
    );
    let names: Vec<_> = fs::read_dir(&m.cipher)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.to_string_lossy().starts_with("veilfs.conf.")),
        "no backup config written: {names:?}"
    );
    // The lock is the daemon's: once it is gone every command runs.
    m.unmount();
    for args in &cmds {
        run_ok(
            Command::new(BIN)
                .args(args)
                .arg("--key-file")
                .arg(&key)
                .arg(&m.cipher),
        );
    }
}

/// `fusermount3 -u` returns while the daemon is still finishing (write-back,
/// the journal emptied) and holding the vault. A command run right after
/// it waits for that process instead of calling the vault "in use".
#[test]
fn a_command_right_after_unmount_waits_for_the_daemon_to_finish() {
    let mut m = TestMount::new();
    m.unmount();
    // A holder with no mount of the vault, as such a daemon is.
    let cipher = m.cipher.clone();
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&cipher)
        .args(["sleep", "1.5"])
        .spawn()
        .unwrap();
    let held = || {
        !Command::new("flock")
            .args(["-n", "-s"])
            .arg(&cipher)
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    assert!(
        wait_until(Duration::from_secs(5), held),
        "flock(1) took the lock"
    );
    run_ok(
        Command::new(BIN)
            .args(["fsck", "--key-file"])
            .arg(&m.keyfile)
            .arg(&m.cipher),
    );
    assert!(holder.wait().unwrap().success());

    // The real sequence: a background mount written to, unmounted and
    // mounted again at once, several times.
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if is_mounted(&self.0) {
                let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
            }
        }
    }
    let _guard = Unmount(m.mnt.clone());
    for round in 0..5 {
        run_ok(
            Command::new(BIN)
                .args(["mount", "--key-file"])
                .arg(&m.keyfile)
                .arg(&m.cipher)
                .arg(&m.mnt),
        );
        fs::write(m.mnt.join(format!("f{round}")), vec![round as u8; 8 << 20]).unwrap();
        run_ok(Command::new("fusermount3").arg("-u").arg(&m.mnt));
    }
    m.mount();
    for round in 0..5u8 {
        assert_eq!(
            fs::read(m.path(&format!("f{round}"))).unwrap(),
            vec![round; 8 << 20]
        );
    }
}

#[test]
fn a_killed_daemon_leaves_no_lock_behind() {
    let mut m = TestMount::new();
    fs::write(m.path("f"), b"x").unwrap();
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    m.wait_child(Duration::from_secs(10));
    let mnt = m.mnt.clone();
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&mnt)));
    run_ok(
        Command::new(BIN)
            .args(["fsck", "--key-file"])
            .arg(&m.keyfile)
            .arg(&m.cipher),
    );
    m.mount();
}

#[test]
fn a_non_empty_mount_point_is_refused_unless_nonempty() {
    let mut m = TestMount::new();
    fs::write(m.path("in-vault"), b"v").unwrap();
    m.unmount();
    fs::write(m.mnt.join("left-here"), b"mine").unwrap();
    for fg in [true, false] {
        let mut cmd = Command::new(BIN);
        cmd.arg("mount");
        if fg {
            cmd.arg("--foreground");
        }
        let out = cmd
            .arg("--key-file")
            .arg(&m.keyfile)
            .arg(&m.cipher)
            .arg(&m.mnt)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("is not empty") && err.contains("left-here") && err.contains("--nonempty"),
            "{err}"
        );
        assert!(!is_mounted(&m.mnt));
    }
    m.extra_args.push("--nonempty".into());
    m.mount();
    assert_eq!(fs::read(m.path("in-vault")).unwrap(), b"v");
    assert!(!m.path("left-here").exists(), "hidden under the mount");
    m.unmount();
    assert_eq!(fs::read(m.mnt.join("left-here")).unwrap(), b"mine");
}

#[test]
fn out_of_range_mount_options_are_refused_with_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    for (opt, value, range) in [
        ("--threads", "0", "1 to 64"),
        ("--threads", "100000", "1 to 64"),
        ("--threads", "many", "1 to 64"),
        ("--linger-us", "1001", "0 to 1000"),
        ("--linger-us", "-1", "0 to 1000"),
        ("--attr-timeout", "-0.5", "0 to 3600"),
        ("--attr-timeout", "NaN", "0 to 3600"),
        ("--attr-timeout", "86400", "0 to 3600"),
    ] {
        let out = Command::new(BIN)
            .arg("mount")
            .arg(format!("{opt}={value}"))
            .arg(tmp.path())
            .arg(tmp.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{opt} {value}: {err}");
        assert!(
            err.contains(opt) && err.contains(range),
            "{opt} {value}: {err}"
        );
    }
    let help = run_ok(Command::new(BIN).args(["mount", "--help"]));
    for range in ["1 to 64", "0 to 3600", "0 to 1000"] {
        assert!(help.contains(range), "--help states {range}:\n{help}");
    }
}
