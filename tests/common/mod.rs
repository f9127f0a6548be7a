//! Shared harness for tests that go through a real FUSE mount.
//!
//! `TestMount` creates a vault with a known key, runs `veilfs mount
//! --foreground` as a child process and waits (polling, with a timeout)
//! until the mount is live. Dropping it always unmounts, even when the
//! test panicked, so no test leaves a dead mount behind.
#![allow(dead_code)]

pub mod run;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_veilfs");

/// Cheap Argon2 parameters for `veilfs init`: these tests are not about
/// the KDF.
pub const FAST_KDF: [&str; 6] = [
    "--kdf-memory",
    "32768",
    "--kdf-time",
    "2",
    "--kdf-parallelism",
    "1",
];

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `path` is a mount point now: the crate's own check, which reads
/// /proc/self/mountinfo and undoes its octal escapes.
pub use veilfs::fs::mount::is_mounted;

/// Whether /proc/mounts lists a mount on `mnt`, without touching the path
/// itself (on a mount whose daemon died, `stat` and `canonicalize` fail
/// with ENOTCONN until the mount is taken down).
pub fn in_proc_mounts(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(want.as_str()))
}

/// Runs a command and asserts it succeeded, returning stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `tool` is on the PATH.
fn installed(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether an external tool is installed; prints why a check is skipped
/// when it is not (scripts/test.sh installs them, so CI never skips).
pub fn have(tool: &str) -> bool {
    let ok = installed(tool);
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed (scripts/test.sh installs it)");
    }
    ok
}

/// Fails the test with a clear message when a tool is missing: for tests
/// that are never skipped silently (scripts/test.sh installs the tools).
pub fn require(tool: &str, package: &str) {
    assert!(
        installed(tool),
        "`{tool}` is not installed: this test needs the Debian package `{package}` \
         (scripts/test.sh installs it: apt-get install {package})"
    );
}

pub struct TestMount {
    pub tmp: tempfile::TempDir,
    pub cipher: PathBuf,
    pub mnt: PathBuf,
    pub keyfile: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    /// RLIMIT_NOFILE (soft and hard) for the daemon, if set.
    pub nofile: Option<u64>,
}

impl TestMount {
    /// A fresh key-only vault, mounted.
    pub fn new() -> Self {
        Self::with_args(&[])
    }

    pub fn with_args(extra: &[&str]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("veilfs-test")
            .tempdir_in(test_root())
            .unwrap();
        let cipher = tmp.path().join("cipher");
        let mnt = tmp.path().join("mnt");
        let keyfile = tmp.path().join("key");
        std::fs::create_dir(&mnt).unwrap();
        let out = run_ok(Command::new(BIN).args(["init", "--key-only"]).arg(&cipher));
        let key = extract_key(&out).expect("init prints the 64-digit key");
        std::fs::write(&keyfile, key).unwrap();
        let mut m = TestMount {
            log: tmp.path().join("mount.log"),
            tmp,
            cipher,
            mnt,
            keyfile,
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            nofile: None,
        };
        m.mount();
        m
    }

    /// Mounts (again) in the foreground as a child process.
    pub fn mount(&mut self) {
        assert!(self.child.is_none(), "already mounted");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches no memory
            // of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .args(["mount", "--foreground", "--key-file"])
            .arg(&self.keyfile)
            .args(&self.extra_args)
            .arg(&self.cipher)
            .arg(&self.mnt)
            // veilfs's own info lines, and the warnings of fuser that a
            // user sees at the default level.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "veilfs=info,fuser=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn veilfs mount");
        self.child = Some(child);
        let mnt = self.mnt.clone();
        let ok = wait_until(Duration::from_secs(15), || {
            is_mounted(&mnt) || self.child_exited()
        });
        assert!(
            ok && is_mounted(&self.mnt),
            "mount did not come up; log:\n{}",
            self.log_text()
        );
    }

    fn child_exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("mounted").id()
    }

    /// Unmounts with fusermount3 -u and waits for the daemon to exit.
    pub fn unmount(&mut self) {
        if is_mounted(&self.mnt) {
            run_ok(Command::new("fusermount3").arg("-u").arg(&self.mnt));
        }
        self.wait_child(Duration::from_secs(15));
    }

    /// Runs `veilfs fsck` on the (unmounted) vault and asserts it is clean;
    /// `after` says what came before, for the message.
    pub fn assert_fsck_clean(&self, after: &str) {
        let o = Command::new(BIN)
            .args(["fsck", "--key-file"])
            .arg(&self.keyfile)
            .arg(&self.cipher)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "fsck after {after}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// SIGKILLs the daemon and checks that fusermount3's auto_unmount
    /// removes the dead mount within 10 s.
    pub fn kill_expecting_auto_unmount(&mut self) {
        unsafe { libc::kill(self.pid() as i32, libc::SIGKILL) };
        self.wait_child(Duration::from_secs(10));
        let mnt = self.mnt.clone();
        assert!(
            wait_until(Duration::from_secs(10), || !is_mounted(&mnt)),
            "auto_unmount did not remove the dead mount {}",
            mnt.display()
        );
    }

    /// Waits for the daemon to exit; returns its exit status.
    pub fn wait_child(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            status = child.wait().ok();
        }
        status
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Every file and name below CIPHERDIR, recursively.
    pub fn backing_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                out.push(p.clone());
                if e.file_type().unwrap().is_dir() {
                    walk(&p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.cipher, &mut out);
        out
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        unmount_and_reap(&self.mnt, self.child.take(), Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!("--- veilfs mount log ---\n{}", self.log_text());
        }
    }
}

/// Where test vaults live: a real disk, not tmpfs, unless overridden.
pub fn test_root() -> PathBuf {
    let p = std::env::var_os("VEILFS_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The 64-digit key in `veilfs init` output.
pub fn extract_key(out: &str) -> Option<String> {
    out.split_whitespace()
        .find(|w| {
            w.len() == 79
                && w.split('-').count() == 16
                && w.split('-')
                    .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .map(str::to_string)
}

/// Unmounts `mnt` (lazily when a plain unmount fails) and reaps its
/// daemon, killing it when it has not exited after `wait`. For the Drop of
/// every mount guard, so that no test leaves a mount behind.
pub fn unmount_and_reap(mnt: &Path, child: Option<Child>, wait: Duration) {
    if is_mounted(mnt) {
        let _ = Command::new("fusermount3").arg("-u").arg(mnt).status();
        if is_mounted(mnt) {
            let _ = Command::new("fusermount3").arg("-uz").arg(mnt).status();
        }
    }
    if let Some(mut c) = child {
        if !wait_until(wait, || matches!(c.try_wait(), Ok(Some(_)))) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

/// A numeric setting from the environment (test durations, sizes).
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64: reproducible test data from a seed, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Random bytes, `min` to `max` of them.
    pub fn blob(&mut self, min: u64, max: u64) -> Vec<u8> {
        let len = (min + self.below(max - min + 1)) as usize;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// `len` reproducible bytes for `seed`, without period (so no two chunks
/// of a file are alike and a moved chunk is noticed).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The name cipher of a test vault (from its key file), to compute backing
/// names in tests.
pub fn names_of(m: &TestMount) -> veilfs::names::NameCipher {
    let text = std::fs::read_to_string(&m.keyfile).unwrap();
    let key = veilfs::keys::MasterKey::parse(&text).unwrap();
    veilfs::vault::unlock_with_key(&m.cipher, key)
        .unwrap()
        .name_cipher()
}

/// Backing directory and IV of a plaintext directory ("" is the root).
pub fn backing_dir(
    m: &TestMount,
    names: &veilfs::names::NameCipher,
    rel: &str,
) -> (PathBuf, veilfs::names::DirIv) {
    let mut path = m.cipher.clone();
    let mut iv = names.root_iv();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        path.push(names.backing_name(&iv, part.as_bytes()).unwrap().entry());
        let bytes = std::fs::read(path.join("veilfs.diriv")).unwrap();
        iv = veilfs::names::DirIv::from_slice(&bytes).unwrap();
    }
    (path, iv)
}

/// `veilfs fsck --json EXTRA --key-file KEY CIPHERDIR` on the vault of `m`:
/// the exit code and the report.
pub fn fsck_json(m: &TestMount, extra: &[&str]) -> (i32, serde_json::Value) {
    let o = Command::new(BIN)
        .args(["fsck", "--json"])
        .args(extra)
        .arg("--key-file")
        .arg(&m.keyfile)
        .arg(&m.cipher)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck output is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().expect("fsck exited normally"), v)
}

/// The `kind` of every problem in an fsck report.
pub fn problem_kinds(report: &serde_json::Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}
