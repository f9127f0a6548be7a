//! Helpers shared by the tests that drive real sync clients
//! (tests/sync_syncthing.rs, tests/sync_rclone.rs): a password vault
//! mounted per device, tree snapshots, tools that must be installed.
//! Include after `mod common;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use crate::common::{BIN, FAST_KDF, is_mounted, require, run_ok, test_root, wait_until};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates a password vault in `dir` (which must not exist or be empty).
pub fn init_vault(dir: &Path, passfile: &Path) {
    run_ok(
        Command::new(BIN)
            .args(["init", "--passfile"])
            .arg(passfile)
            .args(FAST_KDF)
            .arg(dir),
    );
}

/// One device's mount of its copy of the vault, unlocked by password.
/// Unmounted on drop.
pub struct DeviceMount {
    pub name: String,
    pub cipher: PathBuf,
    pub mnt: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl DeviceMount {
    pub fn mount(name: &str, cipher: &Path, mnt: &Path, passfile: &Path) -> Self {
        fs::create_dir_all(mnt).unwrap();
        let log = mnt.with_extension("log");
        let child = Command::new(BIN)
            .args(["mount", "--foreground", "--passfile"])
            .arg(passfile)
            .arg(cipher)
            .arg(mnt)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "veilfs=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn veilfs mount");
        let mut m = DeviceMount {
            name: name.into(),
            cipher: cipher.into(),
            mnt: mnt.into(),
            log,
            child: Some(child),
        };
        let ok = wait_until(Duration::from_secs(30), || {
            is_mounted(mnt) || matches!(m.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
        });
        assert!(
            ok && is_mounted(mnt),
            "device {name}: mount did not come up:\n{}",
            m.log_text()
        );
        m
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DeviceMount {
    fn drop(&mut self) {
        crate::common::unmount_and_reap(&self.mnt, self.child.take(), Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!(
                "--- device {} mount log ---\n{}",
                self.name,
                self.log_text()
            );
        }
    }
}

/// What a tree entry is: enough to tell two trees apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Dir,
    /// Size and SHA-256 (hex).
    File(u64, String),
    Symlink(PathBuf),
    Other(u32),
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Every entry below `root` (relative paths), except names `skip` rejects.
pub fn tree(root: &Path, skip: &dyn Fn(&str) -> bool) -> Result<BTreeMap<String, Item>, String> {
    fn walk(
        root: &Path,
        dir: &Path,
        skip: &dyn Fn(&str) -> bool,
        out: &mut BTreeMap<String, Item>,
    ) -> std::io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if skip(&name) {
                continue;
            }
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p)?;
            let item = if md.is_dir() {
                walk(root, &p, skip, out)?;
                Item::Dir
            } else if md.file_type().is_symlink() {
                Item::Symlink(fs::read_link(&p)?)
            } else if md.is_file() {
                let data = fs::read(&p)?;
                Item::File(data.len() as u64, sha256_hex(&data))
            } else {
                Item::Other(md.permissions().mode())
            };
            out.insert(rel, item);
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out).map_err(|e| format!("{root:?}: {e}"))?;
    Ok(out)
}

/// Polls `check` (every 250 ms) until it returns Ok(true); panics after
/// `timeout` with `what` and the last state `check` reported.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<bool, String>) {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check() {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
