//! Full disk (issue 6): CIPHERDIR on a small tmpfs, filled through the
//! mount, once in each write mode.
//!
//! - Writes fail with ENOSPC (not EIO): at `write()` without the writeback
//!   cache; with it (the default) the kernel has taken the data already,
//!   so the error comes at `fsync()`, which is where an app that cares
//!   (SQLite, any chat app) looks for it.
//! - Every file keeps the bytes whose writes were acknowledged (written,
//!   or written and fsync'd with the writeback cache), including the file
//!   whose append hit ENOSPC: no half-written chunk damages an earlier one.
//!   Of the append that failed, at most a prefix reached the disk.
//! - After a file is deleted, writing works again.
//! - fsck finds the vault clean.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestMount, fsck_json, have, pattern, run_ok, test_root};

/// A tmpfs mounted for the test, unmounted on drop (also on panic).
/// Declare it before the `TestMount` that uses it, so the FUSE mount (which
/// holds files open on it) goes first.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("veilfs-tmpfs")
            .tempdir_in(test_root())
            .unwrap();
        let path = dir.path().to_path_buf();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(&path)
            .status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} ({st:?}): needs root",
                path.display()
            );
            return None;
        }
        Some(Tmpfs { _dir: dir, path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if Command::new("umount")
            .arg(&self.path)
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Checks a file through the mount against what was acknowledged.
fn same(path: &Path, want: &[u8]) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_acked(path, &got, want);
}

fn assert_acked(path: &Path, got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{}: {} bytes, acknowledged {}; first difference at {first:?}",
            path.display(),
            got.len(),
            want.len()
        );
    }
}

/// One `write(2)` of `data` in append mode, then `fsync(2)`; the bytes
/// acknowledged. (std ignores close errors, so fsync is where a deferred
/// write error is caught.)
fn append_once(path: &Path, data: &[u8]) -> std::io::Result<usize> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let n = f.write(data)?;
    f.sync_all()?;
    Ok(n)
}

/// `path` holds `acked`, then at most a prefix of `failed` (an append whose
/// write-back failed part way).
fn same_or_prefix(path: &Path, acked: &[u8], failed: &[u8]) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got.len() >= acked.len() && got.len() <= acked.len() + failed.len(),
        "{}: {} bytes, acknowledged {} (+ up to {} of the failed append)",
        path.display(),
        got.len(),
        acked.len(),
        failed.len()
    );
    assert_acked(path, &got[..acked.len()], acked);
    assert!(
        failed.starts_with(&got[acked.len()..]),
        "{}: bytes after the acknowledged ones are not a prefix of the failed append",
        path.display()
    );
}

#[test]
fn enospc_keeps_acknowledged_data_and_recovers_after_delete() {
    enospc_scenario(&[]);
}

#[test]
fn enospc_without_writeback_cache_fails_the_write_itself() {
    enospc_scenario(&["--no-writeback-cache"]);
}

/// A fresh vault moved onto `tmpfs` and mounted from there.
fn mount_on(tmpfs: &Tmpfs, mount_args: &[&str]) -> TestMount {
    let mut m = TestMount::with_args(mount_args);
    m.unmount();
    let cipher = tmpfs.path.join("cipher");
    run_ok(Command::new("cp").arg("-a").arg(&m.cipher).arg(&cipher));
    m.cipher = cipher;
    m.mount();
    m
}

/// The daemon frees a deleted file's blocks on a background thread
/// (crate::reclaim); `df` must still show the space free as soon as the
/// delete returns, as on ext4. Files of 900 KiB, because larger ones are
/// freed at once and would not exercise the deferred path; `statfs` right
/// after each unlink, when the background close is most likely pending.
///
/// The loop runs in a python3 child, not in this test binary: a process
/// that other tests' threads fork from holds a copy of every open
/// descriptor until the child execs, so the file's last close (and the
/// daemon's RELEASE) could come after the unlink.
#[test]
fn deleted_space_shows_as_free_at_once() {
    if !have("fusermount3") || !have("python3") {
        return;
    }
    let Some(tmpfs) = Tmpfs::mount("64m") else {
        return;
    };
    let m = mount_on(&tmpfs, &[]);
    let script = r#"
import os, sys
mnt, size = sys.argv[1], 900 << 10
data = os.urandom(size)
for r in range(300):
    path = os.path.join(mnt, "f%d.bin" % r)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    st = os.statvfs(mnt)
    before = st.f_bfree * st.f_frsize
    os.unlink(path)
    st = os.statvfs(mnt)
    freed = st.f_bfree * st.f_frsize - before
    if freed < size:
        sys.exit("round %d: deleting a file of %d bytes freed only %d bytes by the time unlink returned" % (r, size, freed))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn enospc_scenario(mount_args: &[&str]) {
    if !have("fusermount3") {
        return;
    }
    let Some(tmpfs) = Tmpfs::mount("8m") else {
        return;
    };
    let writeback = !mount_args.contains(&"--no-writeback-cache");
    let mut m = mount_on(&tmpfs, mount_args);

    // Files written and closed before the disk fills.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..4u64 {
        let rel = format!("old{i}.bin");
        let data = pattern(400_000 + 4096 * i as usize + 17, i + 1);
        fs::write(m.path(&rel), &data).unwrap();
        files.push((rel, data));
    }
    fs::create_dir(m.path("chats")).unwrap();

    // Two chat logs appended to in turn, in pieces that are not chunk
    // aligned (so each append rewrites the partial last chunk), until the
    // disk is full.
    let logs = ["chats/a.log", "chats/b.log"];
    let mut acked: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut seed = 100u64;
    let mut full_at = None;
    let mut failed_piece = Vec::new();
    'fill: for round in 0..100_000usize {
        for (k, rel) in logs.iter().enumerate() {
            seed += 1;
            let piece = pattern(3000 + (seed as usize * 7919) % 20_000, seed);
            match append_once(&m.path(rel), &piece) {
                Ok(n) => {
                    assert!(n > 0, "a write of {} bytes wrote nothing", piece.len());
                    acked[k].extend_from_slice(&piece[..n]);
                }
                Err(e) => {
                    assert_eq!(
                        e.raw_os_error(),
                        Some(libc::ENOSPC),
                        "append {round} to {rel} failed with {e}, not ENOSPC"
                    );
                    full_at = Some(k);
                    failed_piece = piece;
                    break 'fill;
                }
            }
        }
    }
    let k = full_at.expect("the disk never filled");
    eprintln!(
        "ENOSPC appending to {} after {} bytes ({} in the other log)",
        logs[k],
        acked[k].len(),
        acked[1 - k].len()
    );

    // Other writes fail too, with ENOSPC: a big write to the other log and
    // a new file.
    let big = pattern(300_000, 7);
    let mut other_failed = Vec::new();
    match append_once(&m.path(logs[1 - k]), &big) {
        Ok(n) => acked[1 - k].extend_from_slice(&big[..n]),
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            other_failed = big.clone();
        }
    }
    match fs::File::create(m.path("new.bin")).and_then(|mut f| {
        f.write_all(&big)?;
        f.sync_all()
    }) {
        Ok(()) => files.push(("new.bin".into(), big.clone())),
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            // Whatever part of it was acknowledged is unknown to
            // write_all; the file must at least be readable.
            let got = fs::read(m.path("new.bin"));
            assert!(
                matches!(&got, Ok(b) if big.starts_with(b) || writeback),
                "new.bin after ENOSPC: {:?}",
                got.map(|b| b.len())
            );
            fs::remove_file(m.path("new.bin")).unwrap();
        }
    }

    if writeback {
        // What the kernel cached but could not write back is gone with the
        // cache: check what the disk holds, through a fresh mount.
        m.unmount();
        m.mount();
    }
    // Everything acknowledged reads back, byte for byte.
    for (rel, data) in &files {
        same(&m.path(rel), data);
    }
    let failed = [&failed_piece, &other_failed];
    let failed = if k == 0 {
        failed
    } else {
        [failed[1], failed[0]]
    };
    for ((rel, data), failed) in logs.iter().zip(&mut acked).zip(failed) {
        if writeback {
            same_or_prefix(&m.path(rel), data, failed);
            // Whatever prefix of the failed append made it is now part of
            // the file.
            *data = fs::read(m.path(rel)).unwrap();
        } else {
            same(&m.path(rel), data);
        }
    }

    // Freeing space makes writes work again, on the file that hit ENOSPC
    // too.
    let (gone, _) = files.remove(0);
    fs::remove_file(m.path(&gone)).unwrap();
    for (k, rel) in logs.iter().enumerate() {
        let piece = pattern(50_000 + k, 99 + k as u64);
        let n = append_once(&m.path(rel), &piece).expect("writes work after a delete");
        assert_eq!(n, piece.len());
        acked[k].extend_from_slice(&piece);
        same(&m.path(rel), &acked[k]);
    }
    fs::write(m.path("after.bin"), pattern(100_000, 5)).unwrap();
    same(&m.path("after.bin"), &pattern(100_000, 5));
    let log = m.log_text();
    assert!(!log.contains("panicked"), "daemon log: {log}");
    m.unmount();

    // The vault is clean: ENOSPC left no damage, not even in the file
    // whose append failed.
    let (rc, report) = fsck_json(&m, &[]);
    assert_eq!(rc, 0, "fsck after ENOSPC: {report:#}");
    drop(m);
    drop(tmpfs);
}
