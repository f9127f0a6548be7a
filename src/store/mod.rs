//! The backing store: every syscall on CIPHERDIR, relative to a directory
//! file descriptor and never following a symlink.
//!
//! A hostile cloud may plant symlinks in CIPHERDIR. Each path component is
//! opened with `O_NOFOLLOW` relative to its parent's descriptor, so nothing
//! here ever resolves a path outside the backing directory.

mod dir_iv;
pub mod resolve;
pub mod xattr;

pub use dir_iv::{
    dir_iv_or_repair, read_dir_iv, read_dir_iv_file, secondary_dir_ivs, write_dir_iv,
    write_dir_iv_file, write_dir_iv_unsynced,
};

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, openat, statat};
use rustix::io::Errno;

use crate::names::{
    BackingName, DIR_IV_FILE, DirIv, EntryKind, NameCipher, NameError, classify_entry,
    long_entry_name,
};

/// Largest long-name record read; a real one is under 400 bytes.
const MAX_LONG_RECORD: usize = 4096;

pub fn cstr(name: &str) -> CString {
    CString::new(name).expect("backing names never contain NUL")
}

/// Opens a directory of the backing store for use as a `*at()` anchor.
pub fn open_dir_path<Fd: AsFd>(parent: Fd, name: &CStr) -> Result<OwnedFd, Errno> {
    openat(
        parent,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a directory for reading its entries or fsyncing it.
pub fn open_dir_read<Fd: AsFd>(dir: Fd) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens any entry without following it or needing read access: a handle
/// on the inode itself (see crate::reclaim).
pub fn open_pinned<Fd: AsFd>(dir: Fd, name: &CStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The process's current limit on open descriptors (RLIMIT_NOFILE), which
/// every descriptor cache must stay well under.
pub fn open_files_limit() -> usize {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

pub fn lstat_at<Fd: AsFd>(dir: Fd, name: &CStr) -> Result<Stat, Errno> {
    statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// fstat of a descriptor, including `O_PATH` ones.
pub fn stat_fd<Fd: AsFd>(fd: Fd) -> Result<Stat, Errno> {
    statat(fd, c"", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
}

/// Writes the side record of a long name (idempotent: the content is a
/// function of the entry name).
pub fn write_long_record<Fd: AsFd>(dir: Fd, name: &BackingName) -> Result<(), Errno> {
    let Some((record, full)) = name.long_record() else {
        return Ok(());
    };
    write_record_file(dir, &record, full.as_bytes())
}

/// Removes a long name's side record once its entry is gone.
pub fn remove_long_record<Fd: AsFd>(dir: Fd, name: &BackingName) {
    if let Some((record, _)) = name.long_record() {
        match rustix::fs::unlinkat(dir, cstr(&record).as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => log::warn!("could not remove long-name record {record}: {e}"),
        }
    }
}

/// Reads the full encoded name of a long-name entry and checks it against
/// the entry's hash.
pub fn read_long_record<Fd: AsFd>(dir: Fd, entry: &str) -> Result<String, Errno> {
    let record = format!("{entry}.name");
    let fd = openat(
        dir,
        cstr(&record).as_c_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let mut buf = vec![0u8; MAX_LONG_RECORD];
    let n = rustix::io::read(&fd, &mut buf)?;
    buf.truncate(n);
    let full = String::from_utf8(buf).map_err(|_| Errno::IO)?;
    let full = full.trim_end().to_string();
    if long_entry_name(&full) != entry {
        return Err(Errno::IO);
    }
    Ok(full)
}

/// The sealed target of the backing symlink `entry` in `dir`: what the
/// symlink holds, or for a long target (docs/FORMAT.md §7) the content of
/// the record it names, checked against the record's hash (EIO when it
/// does not match).
pub fn read_symlink_sealed<Fd: AsFd>(dir: Fd, entry: &CStr) -> Result<Vec<u8>, Errno> {
    let link = rustix::fs::readlinkat(&dir, entry, Vec::new())?.into_bytes();
    let Some(record) = crate::names::long_target_record(&link) else {
        return Ok(link);
    };
    read_long_target_record(dir, record)
}

/// Reads and checks a long target record (`<hash>.vlink`).
pub fn read_long_target_record<Fd: AsFd>(dir: Fd, record: &str) -> Result<Vec<u8>, Errno> {
    let fd = openat(
        dir,
        cstr(record).as_c_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    if stat_fd(&fd)?.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::IO);
    }
    let mut buf = vec![0u8; crate::names::MAX_LONG_TARGET_RECORD + 1];
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(&fd, &mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    if n > crate::names::MAX_LONG_TARGET_RECORD
        || !crate::names::long_target_record_matches(record, &buf)
    {
        return Err(Errno::IO);
    }
    Ok(buf)
}

/// Writes the record of a long symlink target (idempotent: its name is
/// the hash of its content). Nothing to do for an inline target.
pub fn write_long_target_record<Fd: AsFd>(
    dir: Fd,
    target: &crate::names::StoredTarget,
) -> Result<(), Errno> {
    let crate::names::StoredTarget::Long { link, sealed } = target else {
        return Ok(());
    };
    write_record_file(dir, link, sealed.as_bytes())
}

/// Writes `content` to a new or truncated regular file `name` (mode 0400),
/// refusing to write into anything else. A record that already holds
/// exactly `content` is left alone: records are named by what they hold,
/// and rewriting one in place (truncate, then write) would destroy the
/// only copy if the process were killed in between, as when a hard link
/// of a long symlink copies its record into the directory that has it.
fn write_record_file<Fd: AsFd>(dir: Fd, name: &str, content: &[u8]) -> Result<(), Errno> {
    if record_file_holds(&dir, name, content) {
        return Ok(());
    }
    let fd = openat(
        dir,
        cstr(name).as_c_str(),
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::TRUNC
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK,
        Mode::from_raw_mode(0o400),
    )?;
    // A FIFO planted under the record's name must not take the write.
    if stat_fd(&fd)?.st_mode & libc::S_IFMT != libc::S_IFREG {
        log::warn!("record {name} is not a regular file");
        return Err(Errno::IO);
    }
    let mut done = 0;
    while done < content.len() {
        done += rustix::io::write(&fd, &content[done..])?;
    }
    Ok(())
}

/// Whether `name` in `dir` is a regular file holding exactly `content`.
fn record_file_holds<Fd: AsFd>(dir: Fd, name: &str, content: &[u8]) -> bool {
    let Ok(fd) = openat(
        dir,
        cstr(name).as_c_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) else {
        return false;
    };
    if !stat_fd(&fd).is_ok_and(|st| {
        st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size as u64 == content.len() as u64
    }) {
        return false;
    }
    let mut buf = vec![0u8; content.len()];
    matches!(pread_full(&fd, &mut buf, 0), Ok(n) if n == content.len()) && buf == content
}

/// Copies a long target's record from `from` to `to` when the backing
/// symlink `entry` (in `from`) has one: a symlink moved or linked into
/// another directory must find its record there.
pub fn copy_long_target_record<Fd: AsFd, To: AsFd>(
    from: Fd,
    entry: &CStr,
    to: To,
) -> Result<(), Errno> {
    let link = match rustix::fs::readlinkat(&from, entry, Vec::new()) {
        Ok(l) => l.into_bytes(),
        Err(Errno::INVAL) => return Ok(()), // not a symlink
        Err(e) => return Err(e),
    };
    let Some(record) = crate::names::long_target_record(&link) else {
        return Ok(());
    };
    let sealed = read_long_target_record(&from, record)?;
    write_record_file(to, record, &sealed)
}

/// The record name of the backing symlink `entry` if it has a long target.
pub fn long_target_record_of<Fd: AsFd>(dir: Fd, entry: &CStr) -> Option<String> {
    let link = rustix::fs::readlinkat(dir, entry, Vec::new()).ok()?;
    crate::names::long_target_record(link.as_bytes()).map(str::to_string)
}

/// One listed entry of a backing directory.
#[derive(Debug, Clone)]
pub struct ListedEntry {
    pub plain: Vec<u8>,
    pub backing: String,
    pub ino: u64,
    pub file_type: FileType,
}

/// An entry that looks like a veilfs name but does not decrypt.
#[derive(Debug, Clone)]
pub struct BadEntry {
    pub backing: String,
    pub error: String,
}

/// Everything in one backing directory, decrypted.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<ListedEntry>,
    /// Names that should decrypt but do not: tampering, or moved entries.
    pub bad: Vec<BadEntry>,
    /// Sync-client files and other foreign names, left alone.
    pub foreign: Vec<String>,
    /// Entries whose names decrypt only under the IV of a conflict copy of
    /// `veilfs.diriv` (two devices created the directory, docs/FORMAT.md
    /// §6). Their `backing` is not the encryption of `plain` under the
    /// directory's IV.
    pub secondary: Vec<ListedEntry>,
    /// Whether the directory holds a copy of `veilfs.diriv`.
    pub dir_iv_copies: bool,
}

/// Lists and decrypts a backing directory. `dir` must be readable (see
/// [`open_dir_read`]).
pub fn list_dir(dir: BorrowedFd<'_>, iv: &DirIv, names: &NameCipher) -> Result<Listing, Errno> {
    let mut listing = Listing::default();
    let mut iv_copies: Vec<String> = Vec::new();
    let mut bad_inos: Vec<(BadEntry, u64, FileType)> = Vec::new();
    let mut reader = Dir::new(open_dir_read(dir)?)?;
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(raw) else {
            listing
                .foreign
                .push(String::from_utf8_lossy(raw).into_owned());
            continue;
        };
        let decrypted = match classify_entry(name) {
            EntryKind::Regular(enc) => names.decrypt_name(iv, enc).map_err(|e| e.to_string()),
            EntryKind::Long(entry_name) => match read_long_record(dir, entry_name) {
                Ok(full) => names.decrypt_name(iv, &full).map_err(|e| e.to_string()),
                Err(e) => Err(format!("long-name record missing or damaged: {e}")),
            },
            EntryKind::LongRecord | EntryKind::LongTargetRecord => continue,
            EntryKind::Metadata => {
                if crate::conflict::is_dir_iv_copy(name) {
                    iv_copies.push(name.to_string());
                }
                continue;
            }
            EntryKind::Foreign => {
                log::debug!("ignoring foreign backing entry {name:?}");
                if crate::conflict::is_dir_iv_copy(name) {
                    iv_copies.push(name.to_string());
                }
                listing.foreign.push(name.to_string());
                continue;
            }
        };
        match decrypted {
            Ok(plain) => listing.entries.push(ListedEntry {
                plain,
                backing: name.to_string(),
                ino: entry.ino(),
                file_type: entry.file_type(),
            }),
            Err(error) => bad_inos.push((
                BadEntry {
                    backing: name.to_string(),
                    error,
                },
                entry.ino(),
                entry.file_type(),
            )),
        }
    }
    listing.dir_iv_copies = !iv_copies.is_empty();
    // Names that do not decrypt may belong to another device's IV of this
    // directory (docs/FORMAT.md §6): only looked at when there is one.
    let secondary = if bad_inos.is_empty() || iv_copies.is_empty() {
        Vec::new()
    } else {
        iv_copies.sort();
        secondary_dir_ivs(dir, iv, &iv_copies)
    };
    if secondary.is_empty() {
        listing
            .bad
            .extend(bad_inos.into_iter().map(|(bad, _, _)| bad));
        return Ok(listing);
    }
    for (bad, ino, file_type) in bad_inos {
        let encoded = match classify_entry(&bad.backing) {
            EntryKind::Long(entry) => read_long_record(dir, entry).ok(),
            _ => Some(bad.backing.clone()),
        };
        let plain = encoded.and_then(|enc| {
            secondary
                .iter()
                .find_map(|iv2| names.decrypt_name(iv2, &enc).ok())
        });
        match plain {
            Some(plain) => listing.secondary.push(ListedEntry {
                plain,
                backing: bad.backing,
                ino,
                file_type,
            }),
            None => listing.bad.push(bad),
        }
    }
    Ok(listing)
}

/// The backing name of `plain` in the directory with IV `iv`, mapping
/// invalid names to the errno a syscall would give.
pub fn backing_name(names: &NameCipher, iv: &DirIv, plain: &OsStr) -> Result<BackingName, Errno> {
    names
        .backing_name(iv, plain.as_bytes())
        .map_err(|e| match e {
            NameError::TooLong => Errno::NAMETOOLONG,
            _ => Errno::INVAL,
        })
}

/// Errno to io::Error, for callers outside the FUSE layer.
pub fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Whether an errno is one of "does not exist".
pub fn is_not_found(e: Errno) -> bool {
    e == Errno::NOENT || e == Errno::NOTDIR
}

/// Checks the one file name veilfs itself writes into every directory.
pub fn is_dir_iv_file(name: &str) -> bool {
    name == DIR_IV_FILE
}

/// pread until `buf` is full or the file ends; returns the bytes read.
pub fn pread_full<Fd: AsFd>(fd: Fd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(&fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// pwrite all of `buf` (a short write is retried, a zero-length one is EIO).
pub fn pwrite_full<Fd: AsFd>(fd: Fd, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(test)]
    crash_record::write(&fd, offset, &[buf]);
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pwrite(&fd, &buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Starts write-back of `range` of a file to its disk and returns without
/// waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): durable only after a
/// later fdatasync, which then has less left to write.
pub fn start_write_back<Fd: AsFd>(fd: Fd, range: std::ops::Range<u64>) -> io::Result<()> {
    let len = range.end.saturating_sub(range.start);
    // SAFETY: a plain syscall on a borrowed descriptor; no memory is passed.
    let r = unsafe {
        libc::sync_file_range(
            fd.as_fd().as_raw_fd(),
            range.start as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `bufs` back to back at `offset`, in one pwritev when the kernel
/// takes it all.
pub fn pwritev_full<Fd: AsFd>(fd: Fd, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
    #[cfg(test)]
    crash_record::write(&fd, offset, bufs);
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let slices: Vec<io::IoSlice<'_>> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
    let n = loop {
        match rustix::io::pwritev(&fd, &slices, offset) {
            Ok(n) => break n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == total {
        return Ok(());
    }
    // The rest, one buffer at a time (rare: a signal or a full disk).
    let mut skip = n;
    let mut at = offset + n as u64;
    for b in bufs {
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        let rest = &b[skip..];
        skip = 0;
        let mut done = 0;
        while done < rest.len() {
            match rustix::io::pwrite(&fd, &rest[done..], at + done as u64) {
                Ok(0) => return Err(io::Error::from_raw_os_error(libc::EIO)),
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        at += rest.len() as u64;
    }
    Ok(())
}

/// ftruncate, recorded like the writes (see `crash_record`).
pub fn set_len<Fd: AsFd>(fd: Fd, len: u64) -> io::Result<()> {
    #[cfg(test)]
    crash_record::truncate(&fd, len);
    rustix::fs::ftruncate(&fd, len).map_err(io::Error::from)
}

/// The plaintext type of an entry: the type of its backing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl Kind {
    pub fn from_stat(st: &Stat) -> Self {
        Self::from_file_type(FileType::from_raw_mode(st.st_mode))
    }

    pub fn from_file_type(t: FileType) -> Self {
        match t {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            FileType::Unknown => Kind::Unknown,
        }
    }

    /// The type letter `ls -l` prints.
    pub fn letter(self) -> char {
        match self {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::CharDevice => 'c',
            Kind::BlockDevice => 'b',
            Kind::Unknown => '?',
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Unknown => "of unknown type",
        }
    }
}

/// Test-only recording of every write and truncation the content layer
/// makes, per thread, so the crash-point tests (src/journal_tests.rs) can
/// replay any prefix of them cut at any page boundary.
#[cfg(test)]
pub mod crash_record {
    use std::cell::RefCell;
    use std::os::fd::AsFd;

    #[derive(Debug, Clone)]
    pub enum Op {
        Write {
            ino: u64,
            offset: u64,
            data: Vec<u8>,
        },
        Truncate {
            ino: u64,
            len: u64,
        },
        /// A point the workload marks: everything before it is durable.
        Fsync {
            ino: u64,
        },
    }

    thread_local! {
        static OPS: RefCell<Option<Vec<Op>>> = const { RefCell::new(None) };
    }

    fn ino<Fd: AsFd>(fd: &Fd) -> u64 {
        rustix::fs::fstat(fd).map(|s| s.st_ino).unwrap_or(0)
    }

    pub fn start() {
        OPS.with(|o| *o.borrow_mut() = Some(Vec::new()));
    }

    pub fn take() -> Vec<Op> {
        OPS.with(|o| o.borrow_mut().take().unwrap_or_default())
    }

    fn push(make: impl FnOnce() -> Op) {
        OPS.with(|o| {
            if let Some(ops) = o.borrow_mut().as_mut() {
                ops.push(make());
            }
        });
    }

    pub fn write<Fd: AsFd>(fd: &Fd, offset: u64, bufs: &[&[u8]]) {
        push(|| Op::Write {
            ino: ino(fd),
            offset,
            data: bufs.concat(),
        });
    }

    pub fn truncate<Fd: AsFd>(fd: &Fd, len: u64) {
        push(|| Op::Truncate { ino: ino(fd), len });
    }

    pub fn fsync<Fd: AsFd>(fd: &Fd) {
        push(|| Op::Fsync { ino: ino(fd) });
    }
}

#[cfg(test)]
mod record_file_tests {
    use super::*;

    /// A record that already holds its bytes is not rewritten: a kill
    /// between the truncation and the write of a rewrite in place would
    /// leave it empty, and with it the symlink that needs it.
    #[test]
    fn a_record_holding_its_bytes_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = rustix::fs::open(
            tmp.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        write_record_file(&dir, "rec", b"sealed bytes").unwrap();
        let old = rustix::fs::Timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: old,
            last_modification: old,
        };
        rustix::fs::utimensat(&dir, c"rec", &times, AtFlags::empty()).unwrap();
        write_record_file(&dir, "rec", b"sealed bytes").unwrap();
        let st = statat(&dir, c"rec", AtFlags::empty()).unwrap();
        assert_eq!(st.st_mtime, 1000, "the record was written again");
        // Other bytes (a record cut short by an earlier kill) are replaced.
        write_record_file(&dir, "rec", b"sealed").unwrap();
        write_record_file(&dir, "rec", b"sealed bytes").unwrap();
        assert_eq!(
            std::fs::read(tmp.path().join("rec")).unwrap(),
            b"sealed bytes"
        );
    }
}
