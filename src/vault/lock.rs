//! One writer per vault: a lock on the CIPHERDIR directory itself.
//!
//! `veilfs mount` holds an exclusive lock for as long as its daemon runs;
//! every offline command that writes (`passwd`, `recover-config`,
//! `fsck --repair`) takes the exclusive lock for its run, and read-only
//! offline checks (`fsck`) take a shared one. So a vault is mounted at most
//! once, and nothing checks or rewrites it behind a live mount.
//!
//! The lock is `flock(2)` on a descriptor of the directory:
//! - no file is created in CIPHERDIR, so a sync client sees no churn;
//! - the kernel drops it when the holder exits, even by SIGKILL, so it
//!   never outlives a dead daemon;
//! - it belongs to the directory's inode, so a second path to the same
//!   directory (a symlink, a bind mount) finds it held, while a copy of
//!   the vault elsewhere is a different directory with its own lock.
//!
//! When the lock is held, [`mount_point_of`] finds where the vault is
//! mounted from /proc/self/mountinfo (the mount's source is
//! `veilfs:CIPHERDIR`), comparing device and inode numbers, so the error
//! can name the mount point. File systems without `flock` (some network
//! file systems refuse it on directories) get a warning and no lock.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};

/// What a lock allows others to do at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Readers that must not run alongside a writer (`fsck`): any number
    /// may share the vault, but no mount and no writing command.
    Shared,
    /// A mount or an offline command that writes: nothing else at all.
    Exclusive,
}

/// A held vault lock; dropping it releases the lock.
#[derive(Debug)]
pub struct VaultLock {
    /// `None` when the file system does not support `flock` (a warning was
    /// logged; the caller runs unprotected).
    fd: Option<OwnedFd>,
    kind: LockKind,
}

/// Why a vault could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds a conflicting lock: a live mount (then
    /// `mountpoint` says where, when it can be found) or another veilfs
    /// command (`fsck`, `passwd`, a mount being detached lazily, ...).
    #[error("{}", in_use_message(cipherdir, mountpoint.as_deref()))]
    InUse {
        cipherdir: PathBuf,
        mountpoint: Option<PathBuf>,
    },
    /// CIPHERDIR could not be opened (missing, not a directory, no
    /// permission).
    #[error("opening the vault directory {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn in_use_message(cipherdir: &Path, mountpoint: Option<&Path>) -> String {
    match mountpoint {
        Some(mp) => format!(
            "the vault {} is mounted on {}",
            cipherdir.display(),
            mp.display()
        ),
        None => format!(
            "the vault {} is in use by another veilfs process (a mount, possibly one \
             being detached lazily, or fsck, passwd or recover-config; `fuser -v {}` lists it)",
            cipherdir.display(),
            cipherdir.display()
        ),
    }
}

impl VaultLock {
    /// Takes the exclusive lock on `cipherdir` without waiting: for a
    /// mount and for every offline command that writes to the vault.
    pub fn exclusive(cipherdir: &Path) -> Result<VaultLock, LockError> {
        Self::acquire(cipherdir, LockKind::Exclusive)
    }

    /// Takes a shared lock on `cipherdir` without waiting: for offline
    /// commands that read the whole vault and must not race a writer.
    pub fn shared(cipherdir: &Path) -> Result<VaultLock, LockError> {
        Self::acquire(cipherdir, LockKind::Shared)
    }

    /// Takes a lock of `kind` on `cipherdir` without waiting.
    pub fn acquire(cipherdir: &Path, kind: LockKind) -> Result<VaultLock, LockError> {
        Self::acquire_waiting(cipherdir, kind, Duration::ZERO)
    }

    /// Takes a lock of `kind` on `cipherdir`, waiting up to `wait` while
    /// the holder has no live mount of the vault. `fusermount3 -u` returns
    /// as soon as the kernel lets go of the mount point, while the daemon
    /// is still making the vault durable and emptying its journal; a
    /// command run right after it would otherwise find the vault "in
    /// use". A live mount is refused at once.
    pub fn acquire_waiting(
        cipherdir: &Path,
        kind: LockKind,
        wait: Duration,
    ) -> Result<VaultLock, LockError> {
        let fd = rustix::fs::open(
            cipherdir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LockError::Io {
            path: cipherdir.to_path_buf(),
            source: e.into(),
        })?;
        let op = match kind {
            LockKind::Shared => FlockOperation::NonBlockingLockShared,
            LockKind::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        let started = Instant::now();
        let mut said = false;
        loop {
            match rustix::fs::flock(&fd, op) {
                Ok(()) => {
                    return Ok(VaultLock { fd: Some(fd), kind });
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let mountpoint = mount_point_of_fd(&fd);
                    if mountpoint.is_some() || started.elapsed() >= wait {
                        return Err(LockError::InUse {
                            cipherdir: cipherdir.to_path_buf(),
                            mountpoint,
                        });
                    }
                    if !said && started.elapsed() >= Duration::from_secs(1) {
                        log::info!(
                            "waiting up to {} s for the veilfs process that holds {} to finish",
                            wait.as_secs(),
                            cipherdir.display()
                        );
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    log::warn!(
                        "cannot lock the vault directory {} ({e}): its file system does not \
                         support flock, so veilfs cannot tell whether the vault is mounted \
                         elsewhere; make sure it is not",
                        cipherdir.display()
                    );
                    return Ok(VaultLock { fd: None, kind });
                }
            }
        }
    }

    pub fn kind(&self) -> LockKind {
        self.kind
    }

    /// Whether the lock is really held (false only on a file system
    /// without `flock`, where a warning was logged).
    pub fn is_held(&self) -> bool {
        self.fd.is_some()
    }
}

/// Where the vault in `cipherdir` is mounted, if a veilfs mount of it is
/// visible in this process's mount namespace.
pub fn mount_point_of(cipherdir: &Path) -> Option<PathBuf> {
    let meta = std::fs::metadata(cipherdir).ok()?;
    find_mount(meta.dev(), meta.ino())
}

fn mount_point_of_fd(fd: &impl AsFd) -> Option<PathBuf> {
    let st = rustix::fs::fstat(fd).ok()?;
    find_mount(st.st_dev, st.st_ino)
}

/// Scans /proc/self/mountinfo for a `fuse.veilfs` mount whose source
/// `veilfs:PATH` is the directory (dev, ino). Only CIPHERDIR paths are
/// stat'ed, never a mount point, so a hung FUSE mount cannot hold this up.
fn find_mount(dev: u64, ino: u64) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split(' ');
        if r.next()? != "fuse.veilfs" {
            return None;
        }
        let source = unescape(r.next()?);
        let dir = source.strip_prefix("veilfs:")?;
        let meta = std::fs::metadata(dir).ok()?;
        if (meta.dev(), meta.ino()) != (dev, ino) {
            return None;
        }
        Some(PathBuf::from(unescape(left.split(' ').nth(4)?)))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_everything_shared_shares() {
        let dir = tempfile::tempdir().unwrap();
        let a = VaultLock::exclusive(dir.path()).unwrap();
        assert!(a.is_held());
        assert!(matches!(
            VaultLock::exclusive(dir.path()),
            Err(LockError::InUse { .. })
        ));
        assert!(matches!(
            VaultLock::shared(dir.path()),
            Err(LockError::InUse { .. })
        ));
        drop(a);
        let s1 = VaultLock::shared(dir.path()).unwrap();
        let s2 = VaultLock::shared(dir.path()).unwrap();
        assert_eq!(s2.kind(), LockKind::Shared);
        assert!(matches!(
            VaultLock::exclusive(dir.path()),
            Err(LockError::InUse {
                mountpoint: None,
                ..
            })
        ));
        drop((s1, s2));
        VaultLock::exclusive(dir.path()).unwrap();
    }

    #[test]
    fn another_path_to_the_same_directory_shares_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("v");
        std::fs::create_dir(&vault).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&vault, &link).unwrap();
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        let _held = VaultLock::exclusive(&vault).unwrap();
        assert!(VaultLock::exclusive(&link).is_err());
        VaultLock::exclusive(&copy).unwrap();
    }

    #[test]
    fn a_holder_without_a_mount_is_waited_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let held = VaultLock::exclusive(dir.path()).unwrap();
        let started = Instant::now();
        let e =
            VaultLock::acquire_waiting(dir.path(), LockKind::Shared, Duration::from_millis(150))
                .unwrap_err();
        assert!(
            matches!(
                e,
                LockError::InUse {
                    mountpoint: None,
                    ..
                }
            ),
            "{e}"
        );
        assert!(started.elapsed() >= Duration::from_millis(150));
        // Released while waiting: taken.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        VaultLock::acquire_waiting(dir.path(), LockKind::Exclusive, Duration::from_secs(10))
            .unwrap();
        release.join().unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = VaultLock::shared(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(e, LockError::Io { .. }), "{e}");
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b\\c"), r"/a b\\c");
        assert_eq!(unescape(r"/x\011"), "/x\t");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
