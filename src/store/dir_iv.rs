//! Directory IV files (`veilfs.diriv`, docs/FORMAT.md §6): reading
//! them, writing a new directory's, the sync clients' copies, and what a
//! crash during mkdir leaves (no file, or an empty one).

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, Mode, OFlags, Stat, openat, statat};
use rustix::io::Errno;

use super::{cstr, open_dir_read, stat_fd};
use crate::names::{DIR_IV_LEN, DirIv, EntryKind, classify_entry};

/// Reads the 16 raw bytes of a directory's `veilfs.diriv`.
pub fn read_dir_iv<Fd: AsFd>(dir: Fd) -> Result<DirIv, Errno> {
    read_dir_iv_file(dir, c"veilfs.diriv")
}

/// The IVs of the sync clients' conflict copies of `veilfs.diriv` among
/// `copies` (names [`crate::conflict::is_dir_iv_copy`] accepts) that a
/// reader accepts beside `main` ([`crate::names::same_birth`]), without
/// duplicates, in the order given.
pub fn secondary_dir_ivs<Fd: AsFd>(dir: Fd, main: &DirIv, copies: &[String]) -> Vec<DirIv> {
    let mut out: Vec<DirIv> = Vec::new();
    for name in copies {
        match read_dir_iv_file(&dir, cstr(name).as_c_str()) {
            Ok(iv) if crate::names::same_birth(main, &iv) => {
                if !out.contains(&iv) {
                    out.push(iv);
                }
            }
            Ok(_) => log::warn!(
                "{name:?}: a copy of veilfs.diriv whose IV was not created for this \
                 directory; ignored (possible tampering)"
            ),
            Err(e) => log::debug!("{name:?}: unreadable copy of veilfs.diriv: {e}"),
        }
    }
    out
}

/// Reads a 16-byte directory IV file, never following a symlink.
pub fn read_dir_iv_file<Fd: AsFd>(dir: Fd, name: &CStr) -> Result<DirIv, Errno> {
    let fd = openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let mut buf = [0u8; DIR_IV_LEN + 1];
    let n = rustix::io::read(&fd, &mut buf)?;
    if n == 0 && is_empty_file(&stat_fd(&fd)?) {
        // Created but never written: a crash between the two steps of
        // `create_dir_iv_file`. No IV, as if the file were missing.
        return Err(Errno::NOENT);
    }
    DirIv::from_slice(&buf[..n]).ok_or(Errno::IO)
}

fn is_empty_file(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size == 0
}

/// Writes a new directory's IV file, durably.
pub fn write_dir_iv<Fd: AsFd>(dir: Fd, iv: &DirIv) -> Result<(), Errno> {
    write_dir_iv_file(dir, c"veilfs.diriv", iv)
}

/// Writes a new directory's IV file and returns it unflushed: the caller
/// makes it durable (the mount does so off the request path).
pub fn write_dir_iv_unsynced<Fd: AsFd>(dir: Fd, iv: &DirIv) -> Result<OwnedFd, Errno> {
    create_dir_iv_file(dir, c"veilfs.diriv", iv)
}

/// Writes a new directory IV file named `name` (never replacing one),
/// durably.
pub fn write_dir_iv_file<Fd: AsFd>(dir: Fd, name: &CStr, iv: &DirIv) -> Result<(), Errno> {
    rustix::fs::fsync(create_dir_iv_file(dir, name, iv)?)
}

fn create_dir_iv_file<Fd: AsFd>(dir: Fd, name: &CStr, iv: &DirIv) -> Result<OwnedFd, Errno> {
    let create = || {
        openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o400),
        )
    };
    let fd = match create() {
        // An empty IV file a crash left (see `read_dir_iv_file`) gives way.
        Err(Errno::EXIST)
            if statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| is_empty_file(&st)) =>
        {
            rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
            create()?
        }
        other => other?,
    };
    let n = rustix::io::write(&fd, &iv.0)?;
    if n != DIR_IV_LEN {
        return Err(Errno::IO);
    }
    Ok(fd)
}

/// The IV of a directory, `(iv, whether it is stored)`. With `persist`,
/// a missing IV file is written (see below); without, it is only computed.
/// A directory whose IV file a crash lost right after `mkdir` (so it holds
/// no veilfs entries yet) gets a new one from `expected`; one that has
/// entries is reported as damaged, because a guessed IV could be wrong.
pub fn dir_iv_or_repair(
    dir: BorrowedFd<'_>,
    expected: impl FnOnce() -> DirIv,
    persist: bool,
) -> Result<(DirIv, bool), Errno> {
    match read_dir_iv(dir) {
        Ok(iv) => Ok((iv, true)),
        Err(Errno::NOENT) => {
            let mut it = Dir::new(open_dir_read(dir)?)?;
            while let Some(entry) = it.read() {
                let entry = entry?;
                if let Ok(name) = std::str::from_utf8(entry.file_name().to_bytes())
                    && matches!(
                        classify_entry(name),
                        EntryKind::Regular(_) | EntryKind::Long(_)
                    )
                {
                    return Err(Errno::IO);
                }
            }
            let iv = expected();
            if !persist {
                return Ok((iv, false));
            }
            match write_dir_iv(dir, &iv) {
                Ok(()) => Ok((iv, true)),
                Err(Errno::EXIST) => read_dir_iv(dir).map(|iv| (iv, true)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod dir_iv_tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, OwnedFd) {
        let tmp = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(
            tmp.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (tmp, fd)
    }

    /// mkdir creates `veilfs.diriv`, then writes it: a crash in between
    /// leaves an empty file, which counts as no IV and gives way to a new
    /// one. A file with some other wrong length is damage, and stays.
    #[test]
    fn an_empty_iv_file_counts_as_missing_and_gives_way() {
        let (tmp, fd) = dir();
        std::fs::write(tmp.path().join("veilfs.diriv"), b"").unwrap();
        assert_eq!(read_dir_iv(&fd), Err(Errno::NOENT));
        let iv = DirIv([7; 16]);
        let (got, stored) = dir_iv_or_repair(fd.as_fd(), || iv, true).unwrap();
        assert_eq!((got, stored), (iv, true));
        assert_eq!(read_dir_iv(&fd), Ok(iv));

        std::fs::remove_file(tmp.path().join("veilfs.diriv")).unwrap();
        std::fs::write(tmp.path().join("veilfs.diriv"), b"short").unwrap();
        assert_eq!(read_dir_iv(&fd), Err(Errno::IO));
        assert_eq!(write_dir_iv(&fd, &iv), Err(Errno::EXIST));
        assert_eq!(
            std::fs::read(tmp.path().join("veilfs.diriv")).unwrap(),
            b"short"
        );
    }
}
