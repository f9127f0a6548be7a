//! Issue 14: the Linux habits users already have. Scriptable output
//! (`info --json`, `init --key-out`, `--passfile -`, `-q`), the man page and
//! completions, mount(8)/fstab, `--idle`, systemd units, `path` and
//! `export`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::run::{Run, veilfs, veilfs_in};
use common::{BIN, FAST_KDF, is_mounted, wait_until};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("veilfs-habits")
        .tempdir_in(common::test_root())
        .unwrap()
}

/// A password vault (password "pw") in `dir/cipher`; returns its path.
fn password_vault(dir: &Path) -> PathBuf {
    let cipher = dir.join("cipher");
    let mut args = vec!["init", "-q", "--passfile", "-"];
    args.extend_from_slice(&FAST_KDF);
    args.push(s(&cipher));
    veilfs_in(&args, Some(b"pw\n")).ok();
    cipher
}

/// A key-only vault in `dir/cipher` with its key in `dir/key`.
fn key_vault(dir: &Path) -> (PathBuf, PathBuf) {
    let cipher = dir.join("cipher");
    let key = dir.join("key");
    veilfs(&["init", "-q", "--key-only", "--key-out", s(&key), s(&cipher)]).ok();
    (cipher, key)
}

/// Unmounts `mnt` when dropped, even when the test failed.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        common::unmount_and_reap(&self.0, None, Duration::from_secs(5));
        // A background daemon exits once unmounted.
        wait_until(Duration::from_secs(5), || !is_mounted(&self.0));
    }
}

// ---- bugs ---------------------------------------------------------------

#[test]
fn non_ascii_mount_point_is_recognised() {
    let t = tmp();
    let (cipher, key) = key_vault(t.path());
    let mnt = t.path().join("Chats").join("Müller");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    veilfs(&["mount", "--key-file", s(&key), s(&cipher), s(&mnt)]).ok();
    assert!(is_mounted(&mnt));
    fs::write(mnt.join("a"), "x").unwrap();
    // The already-mounted check sees it.
    veilfs(&["mount", "--key-file", s(&key), s(&cipher), s(&mnt)])
        .fails(1, "already a mount point");
    // And `veilfs unmount` finds it.
    veilfs(&["unmount", s(&mnt)]).ok();
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&mnt)));
    veilfs(&["unmount", s(&mnt)]).fails(1, "not mounted");
}

// ---- scriptable output ------------------------------------------------

#[test]
fn info_json_has_the_documented_fields() {
    let t = tmp();
    let cipher = password_vault(t.path());
    let run = veilfs(&["info", "--json", s(&cipher)]).ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("info --json is JSON");
    assert_eq!(v["vault"], s(&cipher));
    assert_eq!(v["format"], "veilfs");
    assert_eq!(v["version"], 1);
    assert_eq!(v["cipher"], "AES-256-GCM-SIV");
    assert_eq!(v["chunk_size"], 4096);
    assert_eq!(v["long_name_threshold"], 175);
    assert!(v["feature_flags"].is_array());
    assert!(v["created"].as_str().unwrap().ends_with('Z'));
    assert!(!v["key_id"].as_str().unwrap().is_empty());
    assert_eq!(v["has_password"], true);
    let slot = &v["password_slots"][0];
    assert_eq!(slot["kdf"], "argon2id");
    assert_eq!(slot["m_kib"], 32768);
    assert_eq!(slot["t"], 2);
    assert_eq!(slot["p"], 1);
    assert_eq!(slot["argon2_version"], 19);
    assert!(slot.get("salt").is_none() && slot.get("wrapped_key").is_none());
    assert!(v["backup"].is_null());
    // Every field README.md documents is present, and no other.
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for key in v.as_object().unwrap().keys() {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README.md does not document info --json field {key}"
        );
    }
}

#[test]
fn init_key_out_writes_a_private_new_file_and_never_overwrites() {
    let t = tmp();
    let cipher = t.path().join("cipher");
    let key = t.path().join("vault.key");
    let run = veilfs(&["init", "--key-only", "--key-out", s(&key), s(&cipher)]).ok();
    let text = fs::read_to_string(&key).unwrap();
    let digits = text.trim();
    assert_eq!(digits.len(), 79, "{text:?}");
    assert!(
        !run.stdout.contains(digits),
        "the key was shown:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains(s(&key)));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The file opens the vault.
    veilfs(&["ls", "--key-file", s(&key), s(&cipher)]).ok();

    // An existing file is never replaced, and no vault is created.
    let other = t.path().join("other");
    veilfs(&["init", "--key-only", "--key-out", s(&key), s(&other)]).fails(2, "already exists");
    assert_eq!(fs::read_to_string(&key).unwrap(), text);
    assert!(!other.join("veilfs.conf").exists());
}

#[test]
fn passfile_dash_reads_stdin_everywhere() {
    let t = tmp();
    let cipher = password_vault(t.path());
    veilfs_in(&["ls", "--passfile", "-", s(&cipher)], Some(b"pw\n")).ok();
    veilfs_in(&["ls", "--passfile", "-", s(&cipher)], Some(b"wrong\n")).fails(3, "");
    // passwd: the new password on stdin, the old one in a file.
    let old = t.path().join("old");
    fs::write(&old, "pw\n").unwrap();
    let mut args = vec!["passwd", "-q", "--passfile", s(&old), "--new-passfile", "-"];
    args.extend_from_slice(&FAST_KDF);
    args.push(s(&cipher));
    veilfs_in(&args, Some(b"new\n")).ok();
    veilfs_in(&["ls", "--passfile", "-", s(&cipher)], Some(b"new\n")).ok();
    // Both from stdin cannot work: said before anything is read.
    veilfs_in(
        &[
            "passwd",
            "--passfile",
            "-",
            "--new-passfile",
            "-",
            s(&cipher),
        ],
        Some(b"new\nnewer\n"),
    )
    .fails(2, "only one secret");
    // A key on stdin.
    let (kc, key) = key_vault(&t.path().join("k").tap_mkdir());
    let digits = fs::read(&key).unwrap();
    veilfs_in(&["ls", "--key-file", "-", s(&kc)], Some(&digits)).ok();
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn quiet_silences_status_lines_but_not_data() {
    let t = tmp();
    let cipher = t.path().join("cipher");
    // init -q prints the key alone.
    let run = veilfs(&["init", "-q", "--key-only", s(&cipher)]).ok();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert_eq!(run.stdout.trim().len(), 79);
    assert!(run.stderr.is_empty());
    let key = t.path().join("key");
    fs::write(&key, &run.stdout).unwrap();
    // Status-only commands print nothing.
    let pw = t.path().join("pw");
    fs::write(&pw, "pw\n").unwrap();
    let mut args = vec!["passwd", "--key-file", s(&key), "--new-passfile", s(&pw)];
    args.extend_from_slice(&FAST_KDF);
    args.push(s(&cipher));
    let loud = veilfs(&args).ok();
    assert!(!loud.stdout.is_empty());
    args.insert(1, "--quiet");
    let quiet = veilfs(&args).ok();
    assert_eq!(quiet.stdout, "");
    assert_eq!(quiet.stderr, "");
    let fsck = veilfs(&["fsck", "-q", "--key-file", s(&key), s(&cipher)]).ok();
    assert_eq!(fsck.stdout, "");
    // Data asked for still comes out.
    let info = veilfs(&["-q", "info", s(&cipher)]).ok();
    assert!(info.stdout.contains("chunk size"));
    // Every subcommand takes -q.
    let help = veilfs(&["--help"]).ok();
    for sub in subcommands(&help.stdout) {
        let h = veilfs(&[&sub, "--help"]).ok();
        assert!(h.stdout.contains("-q, --quiet"), "{sub} has no -q");
    }
}

/// The subcommand names `veilfs --help` lists.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

// ---- man page and completions -----------------------------------------

#[test]
fn man_page_names_every_subcommand() {
    let man = veilfs(&["man"]).ok();
    assert!(man.stdout.contains(".TH veilfs 1"));
    let help = veilfs(&["--help"]).ok();
    let subs = subcommands(&help.stdout);
    assert!(subs.len() >= 11, "{subs:?}");
    for sub in &subs {
        assert!(
            man.stdout
                .contains(&format!(".SH \"VEILFS {}\"", sub.to_uppercase())),
            "the man page has no section for {sub}"
        );
    }
    assert!(man.stdout.contains("EXIT STATUS"));
    // Nested subcommands get their own sections, not references to pages
    // that do not exist.
    assert!(man.stdout.contains(".SH \"VEILFS PATH ENCRYPT\""));
    assert!(man.stdout.contains(".SH \"VEILFS PATH DECRYPT\""));
    assert!(!man.stdout.contains("veilfs\\-path\\-encrypt(1)"));
    // man(1) renders it without warnings, where man is installed.
    if common::have("man") {
        let t = tmp();
        let page = t.path().join("veilfs.1");
        fs::write(&page, &man.stdout).unwrap();
        let out = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_STDERR", "1")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("VEILFS MOUNT"));
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let help = veilfs(&["--help"]).ok();
    let subs = subcommands(&help.stdout);
    for shell in ["bash", "zsh", "fish"] {
        let run = veilfs(&["completions", shell]).ok();
        for sub in &subs {
            assert!(run.stdout.contains(sub.as_str()), "{shell}: no {sub}");
        }
        assert!(run.stdout.contains("passfile"), "{shell}: no --passfile");
    }
    // bash accepts the script.
    if common::have("bash") {
        let run = veilfs(&["completions", "bash"]).ok();
        let t = tmp();
        let f = t.path().join("veilfs.bash");
        fs::write(&f, run.stdout).unwrap();
        let st = Command::new("bash")
            .arg("-c")
            .arg(format!(". {} && complete -p veilfs", s(&f)))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    veilfs(&["completions", "tcsh"]).fails(2, "invalid value");
}

// ---- mount(8) and fstab ---------------------------------------------------

/// Runs `script` with sh in a private mount namespace, where a directory
/// holding a `veilfs` symlink to the built binary is bound over
/// /usr/local/sbin. mount(8) starts mount.fuse3 with PATH removed from the
/// environment, so its `sh -c veilfs ...` searches only the default PATH
/// (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin): a temp
/// directory put first on the test's PATH is never seen. The namespace
/// keeps the bind (and every mount the script makes) away from the rest of
/// the machine; the script's EXIT trap unmounts what it mounted.
fn in_mount_namespace(dir: &Path, script: &str) -> Run {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let link = bin.join("veilfs");
    if !link.exists() {
        std::os::unix::fs::symlink(BIN, &link).unwrap();
    }
    let full = format!(
        "set -eu\nmount --bind {} /usr/local/sbin\n{script}",
        s(&bin)
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &full])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether the tests run as root (mount namespaces, bind mounts, chown).
fn root(what: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root {
        eprintln!("SKIPPED: {what} needs root (a private mount namespace with bind mounts)");
    }
    is_root
}

fn can_test_mount8() -> bool {
    if !root("mount(8) through mount.fuse3") {
        return false;
    }
    let ok = common::have("mount.fuse3") && common::have("unshare") && common::have("mount");
    if ok && !Path::new("/usr/local/sbin").is_dir() {
        eprintln!("SKIPPED: /usr/local/sbin does not exist, nowhere to put veilfs for mount(8)");
        return false;
    }
    ok
}

#[test]
fn fstab_line_mounts_with_mount_and_umount_unmounts() {
    if !can_test_mount8() {
        return;
    }
    let t = tmp();
    let cipher = password_vault(t.path());
    let pw = t.path().join("pw");
    fs::write(&pw, "pw\n").unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let fstab = t.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# a test fstab\n{} {} fuse.veilfs passfile={},nofail,x-systemd.automount,x-systemd.idle-timeout=5min,_netdev,allow_other,idle=1h 0 0\n",
            s(&cipher),
            s(&mnt),
            s(&pw)
        ),
    )
    .unwrap();
    let m = s(&mnt);
    let run = in_mount_namespace(
        t.path(),
        &format!(
            "trap 'umount {m} 2>/dev/null || true' EXIT\n\
             mount -T {fstab} {m}\n\
             grep ' {m} ' /proc/self/mountinfo\n\
             echo 'hello from fstab' > {m}/hello.txt\n\
             cat {m}/hello.txt\n\
             umount {m}\n\
             if grep -q ' {m} ' /proc/self/mountinfo; then echo STILL-MOUNTED; exit 1; fi\n\
             echo UNMOUNTED\n",
            fstab = s(&fstab),
        ),
    );
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let mountinfo_line = run
        .stdout
        .lines()
        .find(|l| l.contains(&format!(" {} ", s(&mnt))))
        .expect("the mountinfo line");
    assert!(mountinfo_line.contains("fuse.veilfs"), "{mountinfo_line}");
    assert!(mountinfo_line.contains("allow_other"), "{mountinfo_line}");
    assert!(run.stdout.contains("hello from fstab"));
    assert!(run.stdout.contains("UNMOUNTED"));
    // Written through the mount: encrypted in CIPHERDIR, readable offline.
    assert!(
        !fs::read_dir(&cipher)
            .unwrap()
            .any(|e| e.unwrap().file_name() == "hello.txt")
    );
    let cat = veilfs_in(
        &["cat", "--passfile", "-", s(&cipher), "/hello.txt"],
        Some(b"pw\n"),
    )
    .ok();
    assert_eq!(cat.stdout, "hello from fstab\n");
    assert!(!is_mounted(&mnt));
}

#[test]
fn mount_t_fuse_veilfs_with_options_and_unknown_ones() {
    if !can_test_mount8() {
        return;
    }
    let t = tmp();
    let (cipher, key) = key_vault(t.path());
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let (c, m, k) = (s(&cipher), s(&mnt), s(&key));
    let run = in_mount_namespace(
        t.path(),
        &format!(
            "trap 'umount {m} 2>/dev/null || true' EXIT\n\
             mount -t fuse.veilfs {c} {m} -o keyfile={k},ro,nosuid,nodev,noexec\n\
             grep ' {m} ' /proc/self/mountinfo\n\
             if touch {m}/x 2>/dev/null; then echo WRITABLE; exit 1; fi\n\
             umount {m}\n\
             if mount -t fuse.veilfs {c} {m} -o keyfile={k},frobnicate,uid=7 2>{e}; then echo ACCEPTED; exit 1; fi\n\
             cat {e} >&2\n",
            e = s(&t.path().join("mount.err")),
        ),
    );
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(&format!(" {m} ")))
        .expect("the mountinfo line");
    assert!(line.contains(" ro,") && line.contains("noexec"), "{line}");
    assert!(
        run.stderr
            .contains("unknown mount options frobnicate, uid=7"),
        "{}",
        run.stderr
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn mount_helper_form_runs_without_mount8() {
    // What mount.fuse3 runs, typed by hand: the same code path.
    let t = tmp();
    let (cipher, key) = key_vault(t.path());
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    let opts = format!("rw,keyfile={},dev,suid,nofail", s(&key));
    veilfs(&[s(&cipher), s(&mnt), "-o", &opts]).ok();
    assert!(is_mounted(&mnt));
    veilfs(&["unmount", s(&mnt)]).ok();
    veilfs(&[s(&cipher), s(&mnt), "-o", "keyfile=/k,bogus"]).fails(2, "unknown mount option bogus");
    assert!(!is_mounted(&mnt));
}

// ---- --idle -----------------------------------------------------------------

#[test]
fn idle_unmounts_after_the_idle_time_and_not_before() {
    let mut m = common::TestMount::with_args(&["--idle", "2s"]);
    fs::write(m.path("f"), "x").unwrap();
    // Busy for longer than the idle time: a listing every 300 ms (readdir
    // always reaches the daemon).
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert!(is_mounted(&m.mnt), "unmounted while in use");
        assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 1);
        std::thread::sleep(Duration::from_millis(300));
    }
    let quiet_since = std::time::Instant::now();
    // statfs (df, desktop disk monitors) is no use of the mount: it does
    // not keep it mounted.
    let mnt = m.mnt.clone();
    let df = std::thread::spawn(move || {
        while is_mounted(&mnt) {
            let _ = Command::new("stat")
                .args(["-f", "-c", "%b"])
                .arg(&mnt)
                .output();
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(
        wait_until(Duration::from_secs(15), || !is_mounted(&m.mnt)),
        "still mounted 15 s after the last request; log:\n{}",
        m.log_text()
    );
    let idle = quiet_since.elapsed();
    assert!(
        idle >= Duration::from_millis(1500),
        "unmounted after only {idle:?}"
    );
    df.join().unwrap();
    let status = m
        .wait_child(Duration::from_secs(10))
        .expect("the daemon exits");
    assert!(status.success(), "{status:?}; log:\n{}", m.log_text());
    assert!(
        m.log_text().contains("idle for 2s; unmounting"),
        "{}",
        m.log_text()
    );
}

/// Asserts `mnt` stays mounted for `d`, checking every 100 ms.
fn stays_mounted(mnt: &Path, d: Duration, why: &str) {
    let start = std::time::Instant::now();
    while start.elapsed() < d {
        assert!(is_mounted(mnt), "unmounted although {why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idle_never_unmounts_while_a_file_or_directory_is_open() {
    let mut m = common::TestMount::with_args(&["--idle", "1s"]);
    fs::create_dir(m.path("d")).unwrap();
    let file = fs::File::create(m.path("open.txt")).unwrap();
    stays_mounted(&m.mnt, Duration::from_secs(3), "a file is open");
    drop(file);
    let dir = fs::File::open(m.path("d")).unwrap(); // opendir
    stays_mounted(&m.mnt, Duration::from_secs(3), "a directory is open");
    drop(dir);
    // A working directory inside holds nothing open, but the kernel says
    // busy: the unmount is refused, never done lazily.
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .current_dir(m.path("d"))
        .spawn()
        .unwrap();
    stays_mounted(&m.mnt, Duration::from_secs(3), "a process works inside");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || !is_mounted(&m.mnt)),
        "not unmounted once unused; log:\n{}",
        m.log_text()
    );
    assert!(m.wait_child(Duration::from_secs(10)).unwrap().success());
    assert!(m.log_text().contains("busy"), "{}", m.log_text());
}

#[test]
fn idle_as_a_mount_option() {
    let t = tmp();
    let (cipher, key) = key_vault(t.path());
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    let opts = format!("keyfile={},idle=1s", s(&key));
    veilfs(&["mount", "-o", &opts, s(&cipher), s(&mnt)]).ok();
    assert!(is_mounted(&mnt));
    assert!(wait_until(Duration::from_secs(15), || !is_mounted(&mnt)));
}

// ---- systemd ----------------------------------------------------------------

#[test]
fn foreground_mount_tells_systemd_when_ready() {
    use std::os::unix::net::UnixDatagram;
    let t = tmp();
    let (cipher, key) = key_vault(t.path());
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let sock_path = t.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let child = Command::new(BIN)
        .args([
            "mount",
            "--foreground",
            "--key-file",
            s(&key),
            s(&cipher),
            s(&mnt),
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Reap(PathBuf, Option<std::process::Child>);
    impl Drop for Reap {
        fn drop(&mut self) {
            common::unmount_and_reap(&self.0, self.1.take(), Duration::from_secs(5));
        }
    }
    let mut guard = Reap(mnt.clone(), Some(child));
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification within 20 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    // Ready means usable: the mount is there when systemd hears it.
    assert!(is_mounted(&mnt));
    fs::write(mnt.join("x"), "y").unwrap();
    common::run_ok(Command::new("fusermount3").arg("-u").arg(&mnt));
    let n = sock.recv(&mut buf).expect("STOPPING=1 on unmount");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let mut child = guard.1.take().unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn background_mount_sends_nothing_to_systemd() {
    // Only the process systemd started may notify (NotifyAccess=main):
    // the background daemon must not claim readiness for a unit.
    use std::os::unix::net::UnixDatagram;
    let t = tmp();
    let (cipher, key) = key_vault(t.path());
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    let sock_path = t.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let out = Command::new(BIN)
        .args(["mount", "--key-file", s(&key), s(&cipher), s(&mnt)])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(is_mounted(&mnt));
    let mut buf = [0u8; 512];
    let notified = wait_until(Duration::from_millis(500), || sock.recv(&mut buf).is_ok());
    assert!(!notified, "the daemon notified");
}

#[test]
fn unprivileged_mount_failure_shows_fusermount3s_message() {
    // A non-root user whose /dev/fuse is unusable: fusermount3 says why,
    // the retry without auto_unmount only "Permission denied".
    if !(root("replacing /dev/fuse for an unprivileged user")
        && common::have("setpriv")
        && common::have("unshare")
        && common::have("fusermount3"))
    {
        return;
    }
    let t = tmp();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (cipher, key) = key_vault(t.path());
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let fake = t.path().join("fake-fuse");
    fs::write(&fake, "").unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o600)).unwrap();
    let chown = |p: &Path| {
        common::run_ok(Command::new("chown").args(["-R", "65534:65534"]).arg(p));
    };
    chown(&cipher);
    chown(&mnt);
    chown(&key);
    // nobody's own home, where the rewrite journal lives.
    let home = t.path().join("home");
    fs::create_dir(&home).unwrap();
    chown(&home);
    let _guard = Unmount(mnt.clone());
    let script = format!(
        "mount --bind {} /dev/fuse && exec setpriv --reuid=65534 --regid=65534 --clear-groups {BIN} mount --key-file {} {} {}",
        s(&fake),
        s(&key),
        s(&cipher),
        s(&mnt)
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_remove("RUST_LOG")
        .env("HOME", &home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("fusermount3: failed to open /dev/fuse: Permission denied"),
        "{stderr}"
    );
    assert!(stderr.contains("crw-rw-rw-"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `systemd-analyze verify` with the veilfs man page installed in a
/// temporary MANPATH (verify runs man for `Documentation=man:veilfs(1)`,
/// unless `check_man` is false). Fails
/// on any complaint, not only on errors: unknown keys are warnings only.
fn systemd_verify(dir: &Path, user: bool, check_man: bool, units: &[PathBuf]) {
    let man1 = dir.join("man").join("man1");
    fs::create_dir_all(&man1).unwrap();
    fs::write(man1.join("veilfs.1"), veilfs(&["man"]).ok().stdout).unwrap();
    let run_dir = dir.join("run");
    fs::create_dir_all(&run_dir).unwrap();
    fs::set_permissions(&run_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify");
    if user {
        cmd.arg("--user");
    }
    if !check_man {
        cmd.arg("--man=no");
    }
    let out = cmd
        .args(units)
        .env("MANPATH", dir.join("man"))
        .env("XDG_RUNTIME_DIR", &run_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {units:?}: {}\n{stderr}",
        out.status
    );
}

#[test]
fn contrib_systemd_units_verify() {
    if !common::have("systemd-analyze") {
        return;
    }
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    let t = tmp();
    // The user template, as an instance. ExecStart names the installed
    // binary (/usr/local/bin/veilfs), which verify requires to exist: point
    // it at the binary under test.
    let unit = fs::read_to_string(contrib.join("veilfs@.service")).unwrap();
    assert!(unit.contains("Type=notify"));
    assert!(unit.contains("ExecStart=/usr/local/bin/veilfs mount --foreground"));
    let units = t.path().join("units");
    fs::create_dir(&units).unwrap();
    fs::write(
        units.join("veilfs@.service"),
        unit.replace("/usr/local/bin/veilfs", BIN),
    )
    .unwrap();
    systemd_verify(t.path(), true, true, &[units.join("veilfs@chats.service")]);
    systemd_verify(t.path(), false, true, &[units.join("veilfs@chats.service")]);

    // The fstab example, through systemd's own fstab generator.
    let generator = [
        "/usr/lib/systemd/system-generators/systemd-fstab-generator",
        "/lib/systemd/system-generators/systemd-fstab-generator",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    let Some(generator) = generator else {
        eprintln!("SKIPPED (fstab part): systemd-fstab-generator is not installed");
        return;
    };
    let out_dir = t.path().join("generated");
    fs::create_dir(&out_dir).unwrap();
    let fstab = contrib.join("fstab.example");
    common::run_ok(
        Command::new(&generator)
            .args([&out_dir, &out_dir, &out_dir])
            .env("SYSTEMD_FSTAB", &fstab),
    );
    let automount = out_dir.join("home-alice-chats.automount");
    let auto_text = fs::read_to_string(&automount).expect("an automount unit");
    assert!(auto_text.contains("TimeoutIdleSec=15min"), "{auto_text}");
    let mount = fs::read_to_string(out_dir.join("home-alice-chats.mount")).unwrap();
    assert!(mount.contains("Type=fuse.veilfs"), "{mount}");
    // Every option the example gives is one veilfs accepts.
    let opts = mount
        .lines()
        .find_map(|l| l.strip_prefix("Options="))
        .unwrap()
        .to_string();
    let parsed = veilfs(&[
        "mount",
        "-o",
        &opts,
        "/nonexistent-vault",
        "/nonexistent-mnt",
    ]);
    assert!(
        !parsed.stderr.contains("unknown mount option"),
        "{}",
        parsed.stderr
    );
    // Their Documentation= names systemd's own man pages, which a machine
    // without the man-db pages lacks: only the units are checked.
    systemd_verify(
        t.path(),
        false,
        false,
        &[
            automount,
            out_dir.join("home-alice-chats.mount"),
            out_dir.join("srv-chats.mount"),
        ],
    );
}

// ---- path encrypt / decrypt -------------------------------------------------

#[test]
fn path_encrypt_and_decrypt_both_ways_offline() {
    let mut m = common::TestMount::new();
    let long = "L".repeat(200);
    fs::create_dir_all(m.path("Chats/Müller")).unwrap();
    fs::write(m.path("Chats/Müller/msgstore.db"), "db").unwrap();
    fs::create_dir(m.path(&long)).unwrap();
    fs::write(m.path(&format!("{long}/x")), "x").unwrap();
    m.unmount();
    let c = m.cipher.clone();
    let k = s(&m.keyfile).to_string();
    let enc = |p: &str| {
        veilfs(&["path", "encrypt", "--key-file", &k, s(&c), p])
            .ok()
            .stdout
            .trim_end()
            .to_string()
    };
    let dec = |p: &str| {
        veilfs(&["path", "decrypt", "--key-file", &k, s(&c), p])
            .ok()
            .stdout
            .trim_end()
            .to_string()
    };
    let backing = enc("/Chats/Müller/msgstore.db");
    assert_eq!(backing.split('/').count(), 3, "{backing}");
    assert!(c.join(&backing).is_file(), "{backing} is not in CIPHERDIR");
    assert!(!backing.contains("Chats") && !backing.contains("msgstore"));
    assert_eq!(dec(&backing), "/Chats/Müller/msgstore.db");
    // Absolute, inside CIPHERDIR.
    assert_eq!(dec(s(&c.join(&backing))), "/Chats/Müller/msgstore.db");
    // A long name: the hashed entry, and its record.
    let lb = enc(&format!("/{long}/x"));
    let first = lb.split('/').next().unwrap();
    assert!(first.ends_with(".vln"), "{lb}");
    assert!(c.join(&lb).is_file());
    assert_eq!(dec(&lb), format!("/{long}/x"));
    let rec = veilfs(&[
        "path",
        "decrypt",
        "--key-file",
        &k,
        s(&c),
        &format!("{first}.name"),
    ])
    .ok();
    assert_eq!(rec.stdout.trim_end(), format!("/{long}"));
    assert!(rec.stderr.contains("long-name record"));
    // The directory IV file.
    let dir = enc("/Chats");
    let iv = veilfs(&[
        "path",
        "decrypt",
        "--key-file",
        &k,
        s(&c),
        &format!("{dir}/veilfs.diriv"),
    ])
    .ok();
    assert_eq!(iv.stdout.trim_end(), "/Chats");
    // A name that does not exist yet in an existing directory: the name it
    // will get.
    let predicted = enc("/Chats/later.txt");
    assert!(!c.join(&predicted).exists());
    assert_eq!(dec(&predicted), "/Chats/later.txt");
    // Inside a directory that does not exist yet there is nothing to
    // predict: its IV is drawn when it is created (docs/FORMAT.md §6).
    veilfs(&[
        "path",
        "encrypt",
        "--key-file",
        &k,
        s(&c),
        "/Chats/New/later.txt",
    ])
    .fails(1, "does not exist yet");
    m.mount();
    fs::write(m.path("Chats/later.txt"), "now").unwrap();
    m.unmount();
    assert!(
        c.join(&predicted).is_file(),
        "the file got another name than predicted"
    );
    // Foreign names and `..` are refused; the root is ".".
    veilfs(&["path", "decrypt", "--key-file", &k, s(&c), "desktop.ini"])
        .fails(1, "not a veilfs name");
    veilfs(&["path", "decrypt", "--key-file", &k, s(&c), "../x"]).fails(1, "..");
    assert_eq!(enc("/"), ".");
    // Offline: the unlock options are the usual ones (a wrong key fails).
    let wrong = m.tmp.path().join("wrong");
    fs::write(&wrong, "0".repeat(64)).unwrap();
    veilfs(&["path", "encrypt", "--key-file", s(&wrong), s(&c), "/Chats"]).fails(3, "");
}

// ---- export -----------------------------------------------------------------

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a value buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn mtime(p: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A vault with a bit of everything, unmounted; returns the mount guard
/// (for its key and CIPHERDIR) and the big file's contents.
fn export_fixture() -> (common::TestMount, Vec<u8>) {
    let mut m = common::TestMount::new();
    let long = "N".repeat(200);
    fs::create_dir_all(m.path("a/b")).unwrap();
    fs::create_dir(m.path("empty")).unwrap();
    fs::write(m.path("a/f.txt"), "hello\n").unwrap();
    fs::set_permissions(m.path("a/f.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    fs::write(m.path("a/b/big.bin"), &big).unwrap();
    fs::write(m.path("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(m.path("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(m.path("Müller.txt"), "ü").unwrap();
    fs::write(m.path(&long), "long").unwrap();
    std::os::unix::fs::symlink("a/f.txt", m.path("link")).unwrap();
    std::os::unix::fs::symlink("nowhere", m.path("dangling")).unwrap();
    set_xattr(&m.path("a/f.txt"), "user.color", b"blue");
    set_xattr(&m.path("a"), "user.dir", b"yes");
    // Through the mount, on a directory too (this used to be EPERM).
    assert_eq!(
        get_xattr(&m.path("a"), "user.dir").as_deref(),
        Some(&b"yes"[..])
    );
    let fifo = std::ffi::CString::new(s(&m.path("pipe"))).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    fs::set_permissions(m.path("a/b"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(m.path("a"), fs::Permissions::from_mode(0o750)).unwrap();
    // Times last: contents change a directory's mtime.
    for p in ["a/f.txt", "a"] {
        common::run_ok(
            Command::new("touch")
                .args(["-h", "-m", "-d", "2001-02-03 04:05:06.123456789"])
                .arg(m.path(p)),
        );
    }
    m.unmount();
    (m, big)
}

#[test]
fn export_keeps_contents_modes_times_symlinks_and_xattrs() {
    let (m, big) = export_fixture();
    let t = tmp();
    let out = t.path().join("out");
    let run = veilfs(&["export", "--key-file", s(&m.keyfile), s(&m.cipher), s(&out)]).ok();
    assert!(run.stdout.contains("Exported"), "{}", run.stdout);
    assert_eq!(fs::read_to_string(out.join("a/f.txt")).unwrap(), "hello\n");
    assert_eq!(fs::read(out.join("a/b/big.bin")).unwrap(), big);
    assert_eq!(fs::read_to_string(out.join("Müller.txt")).unwrap(), "ü");
    assert_eq!(
        fs::read_to_string(out.join("N".repeat(200))).unwrap(),
        "long"
    );
    assert_eq!(mode(&out.join("a/f.txt")), 0o640);
    assert_eq!(mode(&out.join("run.sh")), 0o755);
    assert_eq!(mode(&out.join("a")), 0o750);
    assert_eq!(mode(&out.join("a/b")), 0o700);
    assert!(out.join("empty").is_dir());
    assert_eq!(mtime(&out.join("a/f.txt")), (981173106, 123456789));
    assert_eq!(mtime(&out.join("a")), (981173106, 123456789));
    assert_eq!(
        fs::read_link(out.join("link")).unwrap(),
        Path::new("a/f.txt")
    );
    assert_eq!(
        fs::read_link(out.join("dangling")).unwrap(),
        Path::new("nowhere")
    );
    assert_eq!(
        get_xattr(&out.join("a/f.txt"), "user.color").as_deref(),
        Some(&b"blue"[..])
    );
    assert_eq!(
        get_xattr(&out.join("a"), "user.dir").as_deref(),
        Some(&b"yes"[..])
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(out.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // Nothing of the backing format leaks into the copy.
    assert!(!out.join("veilfs.conf").exists());

    // A subtree, with -q: nothing printed.
    let sub = t.path().join("sub");
    let run = veilfs(&[
        "export",
        "-q",
        "--path",
        "/a",
        "--key-file",
        s(&m.keyfile),
        s(&m.cipher),
        s(&sub),
    ])
    .ok();
    assert_eq!(run.stdout, "");
    assert_eq!(fs::read_to_string(sub.join("f.txt")).unwrap(), "hello\n");
    assert_eq!(fs::read(sub.join("b/big.bin")).unwrap(), big);
    assert!(!sub.join("run.sh").exists());
    assert_eq!(mode(&sub), 0o750);

    // Never into a non-empty directory, never into CIPHERDIR.
    veilfs(&["export", "--key-file", s(&m.keyfile), s(&m.cipher), s(&out)]).fails(1, "not empty");
    veilfs(&[
        "export",
        "--key-file",
        s(&m.keyfile),
        s(&m.cipher),
        s(&m.cipher.join("x")),
    ])
    .fails(2, "inside the vault directory");
    veilfs(&[
        "export",
        "--path",
        "/nope",
        "--key-file",
        s(&m.keyfile),
        s(&m.cipher),
        s(&t.path().join("n")),
    ])
    .fails(1, "/nope: no such file");
}

#[test]
fn export_stops_at_damage_and_salvage_goes_on() {
    let (m, big) = export_fixture();
    let k = s(&m.keyfile).to_string();
    let backing = veilfs(&[
        "path",
        "encrypt",
        "--key-file",
        &k,
        s(&m.cipher),
        "/a/b/big.bin",
    ])
    .ok()
    .stdout
    .trim_end()
    .to_string();
    let file = m.cipher.join(&backing);
    let mut bytes = fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(&file, &bytes).unwrap();
    let t = tmp();
    veilfs(&[
        "export",
        "--key-file",
        &k,
        s(&m.cipher),
        s(&t.path().join("out")),
    ])
    .fails(6, "/a/b/big.bin")
    .fails(6, "--salvage");
    // A name that no longer decrypts (one character changed, as bit rot or
    // a careless sync client would).
    let name = veilfs(&["path", "encrypt", "--key-file", &k, s(&m.cipher), "/run.sh"])
        .ok()
        .stdout
        .trim_end()
        .to_string();
    let mut bad = name.clone().into_bytes();
    bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    fs::rename(m.cipher.join(&name), m.cipher.join(&bad)).unwrap();
    veilfs(&[
        "export",
        "--key-file",
        &k,
        s(&m.cipher),
        s(&t.path().join("out2")),
    ])
    .fails(6, "name does not decrypt")
    .fails(6, "--salvage");
    let out = t.path().join("salvaged");
    let run = veilfs(&[
        "export",
        "--salvage",
        "--key-file",
        &k,
        s(&m.cipher),
        s(&out),
    ]);
    let run = run.fails(6, "damaged");
    assert!(
        run.stderr.contains("/a/b/big.bin: bytes "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("/{bad} [backing]: name does not decrypt")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("2 entries damaged"), "{}", run.stderr);
    assert!(!out.join("run.sh").exists());
    // Everything else is there, and the damaged file keeps its size with
    // zeros where the bad chunk was.
    assert_eq!(fs::read_to_string(out.join("a/f.txt")).unwrap(), "hello\n");
    let got = fs::read(out.join("a/b/big.bin")).unwrap();
    assert_eq!(got.len(), big.len());
    let differing: Vec<usize> = (0..big.len()).filter(|&i| got[i] != big[i]).collect();
    assert!(!differing.is_empty());
    let (first, last) = (differing[0], *differing.last().unwrap());
    assert!(
        last - first < 4096,
        "more than one chunk lost: {first}..{last}"
    );
    assert!(got[first..=last].iter().all(|&b| b == 0));
}

// ---- README ---------------------------------------------------------------

/// The shell code blocks of README.md's "## Install" section.
fn readme_install_blocks() -> Vec<String> {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("\n## Install\n")
        .expect("README.md has an Install section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

#[test]
fn readme_install_section_word_for_word() {
    let blocks = readme_install_blocks();
    let all = blocks.join("\n");
    for needle in [
        "build-essential",
        "fuse3",
        "sh.rustup.rs",
        "cargo install --locked --path .",
        "veilfs man >",
        "veilfs completions bash >",
        "sudo install -m 755 ~/.cargo/bin/veilfs /usr/local/bin/veilfs",
    ] {
        assert!(all.contains(needle), "the Install section lacks {needle:?}");
    }
    // The rust-version it states is Cargo.toml's.
    let toml = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let msrv = toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&format!("Rust {msrv} or newer")),
        "README does not say Rust {msrv}"
    );

    // Run the man page and completion block as written, as a user whose
    // ~/.cargo/bin holds veilfs (what `cargo install` does), skipping the
    // lines that need root or a terminal.
    let block = blocks
        .iter()
        .find(|b| b.contains("veilfs man >"))
        .expect("a block installs the man page");
    let t = tmp();
    let home = t.path().join("home");
    let bin = home.join(".cargo/bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("veilfs")).unwrap();
    let script: Vec<&str> = block
        .lines()
        .filter(|l| !l.starts_with("sudo ") && l.trim() != "man veilfs")
        .collect();
    let path = format!("{}:{}", s(&bin), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .env("HOME", &home)
        .env("PATH", &path)
        .env_remove("XDG_DATA_HOME")
        .env_remove("MANPATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = home.join(".cargo/share/man/man1/veilfs.1");
    assert!(fs::read_to_string(&page).unwrap().contains(".TH veilfs 1"));
    if common::have("man") {
        let found = Command::new("man")
            .args(["-w", "veilfs"])
            .env("HOME", &home)
            .env("PATH", &path)
            .env_remove("MANPATH")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&found.stdout).trim(),
            s(&page),
            "man does not find the page where README puts it"
        );
    }
    let completion = home.join(".local/share/bash-completion/completions/veilfs");
    assert!(fs::read_to_string(&completion).unwrap().contains("_veilfs"));
    let loader = Path::new("/usr/share/bash-completion/bash_completion");
    if !loader.exists() {
        eprintln!("SKIPPED (loading the completion): the bash-completion package is not installed");
        return;
    }
    let out = Command::new("bash")
        .args([
            "-c",
            ". /usr/share/bash-completion/bash_completion; __load_completion veilfs; \
             COMP_WORDS=(veilfs expo); COMP_CWORD=1; _veilfs veilfs expo veilfs; echo \"${COMPREPLY[@]}\"",
        ])
        .env("HOME", &home)
        .env("PATH", &path)
        .env_remove("XDG_DATA_HOME")
        .env_remove("BASH_COMPLETION_USER_DIR")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "export");
}

#[test]
fn release_profile_has_no_debug_info_and_profiling_keeps_it() {
    // The installed binary was 27 MB of mostly debug info; it is 5 MB
    // without (measured with `cargo install --locked --path .`).
    let toml = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let section = |name: &str| -> String {
        let start = toml
            .find(&format!("[profile.{name}]\n"))
            .unwrap_or_else(|| panic!("no [profile.{name}]"));
        let body = &toml[start..];
        let end = body[1..].find("\n[").map_or(body.len(), |i| i + 1);
        body[..end].to_string()
    };
    let release = section("release");
    assert!(release.contains("debug = false"), "{release}");
    assert!(release.contains("strip = \"debuginfo\""), "{release}");
    let profiling = section("profiling");
    assert!(profiling.contains("inherits = \"release\""), "{profiling}");
    assert!(profiling.contains("debug = true"), "{profiling}");
    // scripts/bench.sh builds and runs the release binary.
    let bench =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.sh")).unwrap();
    assert!(bench.contains("cargo build --release") && bench.contains("target/release/veilfs"));
}
