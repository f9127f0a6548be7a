//! A vault pushed to a cloud with rclone and restored from it (Debian
//! package `rclone`): `rclone sync CIPHERDIR remote:` to a WebDAV server on
//! loopback (`rclone serve webdav`), back into a fresh directory, which is
//! then mounted and compared file by file (SHA-256) with the original.
//!
//! Fails, never skips, when `rclone` is missing; scripts/test.sh installs
//! it. The rclone server started here is killed on drop.

mod common;
mod sync_common;

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pattern;
use sync_common::{
    DeviceMount, Item, free_port, init_vault, require, run_ok, sha256_hex, test_root, tree,
    wait_for,
};

/// `rclone serve webdav` on 127.0.0.1, killed on drop.
struct WebDav {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl WebDav {
    fn start(dir: &Path, log: &Path) -> Self {
        let port = free_port();
        let child = Command::new("rclone")
            .args(["serve", "webdav", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir)
            .env("RCLONE_CONFIG", dir.with_extension("rclone.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rclone serve webdav: {e}"));
        let mut w = WebDav {
            child,
            port,
            log: log.into(),
        };
        wait_for("the WebDAV server", Duration::from_secs(60), || {
            if let Ok(Some(status)) = w.child.try_wait() {
                panic!(
                    "rclone serve webdav exited with {status}:\n{}",
                    fs::read_to_string(&w.log).unwrap_or_default()
                );
            }
            Ok(TcpStream::connect(("127.0.0.1", w.port)).is_ok())
        });
        w
    }
}

impl Drop for WebDav {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- rclone serve log ---\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// rclone with a WebDAV remote `cloud:` configured by environment only.
fn rclone(port: u16, config: &Path, args: &[&str], src: &str, dst: &str) {
    run_ok(
        Command::new("rclone")
            .args(args)
            .args([src, dst])
            .env("RCLONE_CONFIG", config)
            .env("RCLONE_CONFIG_CLOUD_TYPE", "webdav")
            .env(
                "RCLONE_CONFIG_CLOUD_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env("RCLONE_CONFIG_CLOUD_VENDOR", "other"),
    );
}

#[test]
fn vault_round_trips_through_rclone_and_webdav() {
    require("rclone", "rclone");
    require("fusermount3", "fuse3");
    let tmp = tempfile::Builder::new()
        .prefix("veilfs-rclone")
        .tempdir_in(test_root())
        .unwrap();
    let root = tmp.path();
    let pass = root.join("password");
    fs::write(&pass, "rclone test password").unwrap();
    let cipher = root.join("cipher");
    init_vault(&cipher, &pass);

    let long = "ß".repeat(127);
    let files: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("one byte".into(), b"x".to_vec()),
        ("exactly one chunk".into(), pattern(4096, 1)),
        ("Chats/chat.db".into(), pattern(1 << 20, 2)),
        ("Chats/Alice/notes.txt".into(), b"hello\n".to_vec()),
        ("Media/2026/IMG_0001.jpg".into(), pattern((5 << 20) + 17, 3)),
        (format!("Media/{long}"), b"255-byte name".to_vec()),
        (
            "日本語/ファイル.txt".into(),
            "こんにちは".as_bytes().to_vec(),
        ),
    ];
    let original_mount;
    {
        let m = DeviceMount::mount("original", &cipher, &root.join("mnt"), &pass);
        for (rel, data) in &files {
            let p = m.path(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, data).unwrap();
        }
        fs::create_dir_all(m.path("Empty folder")).unwrap();
        std::os::unix::fs::symlink("Chats/chat.db", m.path("link to chat")).unwrap();
        original_mount = tree(&m.mnt, &|_| false).unwrap();
        // rclone runs while the vault is mounted, as a user's cron job would.
        let served = root.join("webdav");
        fs::create_dir(&served).unwrap();
        let dav = WebDav::start(&served, &root.join("webdav.log"));
        let conf = root.join("rclone.conf");
        let c = cipher.to_str().unwrap();
        // --links carries symlinks as .rclonelink files (WebDAV has none).
        rclone(dav.port, &conf, &["sync", "--links"], c, "cloud:vault");
        let restored = root.join("restored");
        let r = restored.to_str().unwrap();
        rclone(dav.port, &conf, &["sync", "--links"], "cloud:vault", r);
        drop(dav);
        // The ciphertext came back byte for byte (permissions aside: WebDAV
        // does not keep them).
        assert_eq!(
            tree(&restored, &|_| false).unwrap(),
            tree(&cipher, &|_| false).unwrap()
        );
    }

    let restored = root.join("restored");
    let m = DeviceMount::mount("restored", &restored, &root.join("mnt2"), &pass);
    let seen = tree(&m.mnt, &|_| false).unwrap();
    assert_eq!(seen, original_mount);
    for (rel, data) in &files {
        assert_eq!(
            seen[rel],
            Item::File(data.len() as u64, sha256_hex(data)),
            "{rel}"
        );
    }
    assert_eq!(seen["Empty folder"], Item::Dir);
    assert_eq!(
        fs::read_link(m.path("link to chat")).unwrap(),
        Path::new("Chats/chat.db")
    );
    assert!(
        !m.log_text().contains("WARN"),
        "restored mount warned:\n{}",
        m.log_text()
    );
}
