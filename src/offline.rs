//! Reading a vault without FUSE: resolve a plaintext path, list a
//! directory, write a file's plaintext (`veilfs ls`, `veilfs cat`).
//!
//! Works on a machine without FUSE and on a damaged backup. Every path is
//! walked from the backing root one component at a time with `*at()`
//! calls and `O_NOFOLLOW` (src/store/), so a symlink planted in
//! CIPHERDIR is reported, never followed. Nothing here writes to
//! CIPHERDIR.

use std::ffi::{CStr, CString};
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags, Stat, openat};
use rustix::io::Errno;

use crate::content::{ChunkError, ContentCipher, HEADER_LEN, HeaderError};
use crate::cryptfile::{CryptFile, CryptFileError};
use crate::names::{BackingName, DirIv, NameCipher, NameError};
use crate::store;

/// Plaintext bytes `cat` reads per step.
pub const CAT_STEP: usize = 1 << 20;

pub use crate::store::Kind;

/// The modification time of a backing entry.
pub fn mtime_of(st: &Stat) -> SystemTime {
    let secs = st.st_mtime;
    let nanos = st.st_mtime_nsec as u32;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

/// Why an offline read failed. Every variant names the plaintext path.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The path has a `..` component, or a component no vault can hold.
    #[error("{path}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    /// A directory was needed; the backing entry is something else. A
    /// symlink planted where a directory should be lands here too: it is
    /// never followed.
    #[error(
        "{path}: not a directory (it is {}){}",
        kind.describe(),
        if *kind == Kind::Symlink { "; symlinks are never followed offline" } else { "" }
    )]
    NotADirectory { path: String, kind: Kind },
    /// `cat` needs a regular file.
    #[error("{path}: not a regular file (it is {})", kind.describe())]
    NotAFile { path: String, kind: Kind },
    /// A directory's IV file is missing or damaged: its names cannot be
    /// decrypted.
    #[error("{}", dir_iv_message(path, *error))]
    DirIv { path: String, error: Errno },
    /// The file header is damaged or replaced: no chunk can be read.
    #[error("{path}: {error}; no part of the file can be read")]
    Header { path: String, error: HeaderError },
    /// A chunk failed authentication.
    #[error(
        "{path}: chunk {index} failed authentication ({error}); use --salvage to recover the rest"
    )]
    Chunk {
        path: String,
        index: u64,
        error: String,
    },
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
}

fn dir_iv_message(path: &str, error: Errno) -> String {
    if error == Errno::NOENT {
        format!("directory IV missing: names in {path} cannot be decrypted (run `veilfs fsck`)")
    } else {
        format!(
            "directory IV of {path} is damaged ({error}): its names cannot be decrypted (run `veilfs fsck`)"
        )
    }
}

impl OfflineError {
    /// Whether the error means the vault is damaged (rather than a wrong
    /// path or an I/O problem of this machine).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            OfflineError::DirIv { .. } | OfflineError::Header { .. } | OfflineError::Chunk { .. }
        )
    }

    pub fn io(path: &str, error: impl Into<io::Error>) -> Self {
        OfflineError::Io {
            path: path.to_string(),
            error: error.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, OfflineError>;

/// Splits a plaintext path into components. Leading and repeated `/` and
/// `.` are ignored; `..` is refused (nothing here ever walks upward).
pub fn split_plain_path(path: &Path) -> Result<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let mut parts = Vec::new();
    for comp in path.as_os_str().as_bytes().split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(OfflineError::InvalidPath {
                    path: path.display().to_string(),
                    reason: "`..` is not allowed in a vault path".into(),
                });
            }
            c => parts.push(c.to_vec()),
        }
    }
    Ok(parts)
}

/// `/a/b` for components `a`, `b`; `/` for none.
pub fn join_plain(parts: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for p in parts {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(p));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// A plaintext path resolved to its backing entry.
#[derive(Debug)]
pub struct Resolved {
    /// Normalised plaintext path, `/` for the root.
    pub plain_path: String,
    /// Backing path relative to CIPHERDIR (empty for the root).
    pub backing_path: PathBuf,
    /// `O_PATH` descriptor of the backing directory holding the entry (for
    /// the root, the root itself).
    pub parent: OwnedFd,
    /// IV of that directory.
    pub parent_iv: DirIv,
    /// The backing name in `parent`; `None` for the root.
    pub entry: Option<BackingName>,
    /// lstat of the backing entry.
    pub stat: Stat,
}

impl Resolved {
    pub fn kind(&self) -> Kind {
        Kind::from_stat(&self.stat)
    }

    /// The entry's name in `parent` (`.` for the root).
    pub fn entry_cstr(&self) -> CString {
        store::cstr(self.entry.as_ref().map_or(".", |e| e.entry()))
    }
}

/// One listed entry, decrypted.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub backing: String,
    pub kind: Kind,
    /// Plaintext size: file content, symlink target length, or the backing
    /// size of a directory.
    pub size: u64,
    pub mtime: SystemTime,
    /// Permission and type bits of the backing entry.
    pub mode: u32,
    pub nlink: u64,
    /// A symlink's decrypted target, or why it does not decrypt.
    pub target: Option<std::result::Result<Vec<u8>, String>>,
}

impl Entry {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A directory's entries, sorted by name, plus what did not decrypt.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// Entries whose names do not decrypt: (backing name, reason).
    pub bad: Vec<(String, String)>,
    /// Sync-client and other foreign backing names, never listed as is.
    pub foreign: Vec<String>,
}

/// A run of chunks that `cat --salvage` replaced with zeros.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRange {
    /// Chunk indices, end exclusive.
    pub chunks: Range<u64>,
    /// Plaintext byte range written as zeros, end exclusive.
    pub bytes: Range<u64>,
    pub reason: String,
}

/// What `cat` did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CatReport {
    pub path: String,
    /// Plaintext bytes written.
    pub bytes: u64,
    /// With salvage: runs of chunks written as zeros.
    pub bad: Vec<BadRange>,
    /// With salvage: the header was damaged, so everything is zeros.
    pub header_error: Option<String>,
}

impl CatReport {
    pub fn is_clean(&self) -> bool {
        self.bad.is_empty() && self.header_error.is_none()
    }

    fn push_bad(&mut self, index: u64, bytes: Range<u64>, reason: String) {
        if self.bad.last().is_some_and(|last| index < last.chunks.end) {
            return; // already recorded
        }
        if let Some(last) = self.bad.last_mut()
            && last.chunks.end == index
            && last.bytes.end == bytes.start
            && last.reason == reason
        {
            last.chunks.end = index + 1;
            last.bytes.end = bytes.end;
            return;
        }
        self.bad.push(BadRange {
            chunks: index..index + 1,
            bytes,
            reason,
        });
    }
}

/// Read-only access to a vault's plaintext without mounting it.
pub struct Offline<'a> {
    cipherdir: PathBuf,
    root: OwnedFd,
    content: &'a ContentCipher,
    names: &'a NameCipher,
}

impl<'a> Offline<'a> {
    /// Opens CIPHERDIR. The path given by the user is the one path that is
    /// resolved normally; everything below it is walked with `O_NOFOLLOW`.
    pub fn new(
        cipherdir: &Path,
        content: &'a ContentCipher,
        names: &'a NameCipher,
    ) -> io::Result<Self> {
        let root = rustix::fs::open(
            cipherdir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Offline {
            cipherdir: cipherdir.to_path_buf(),
            root,
            content,
            names,
        })
    }

    pub fn cipherdir(&self) -> &Path {
        &self.cipherdir
    }

    pub fn names(&self) -> &NameCipher {
        self.names
    }

    pub fn content(&self) -> &ContentCipher {
        self.content
    }

    /// The IV of the directory open at `fd`, whose plaintext path is
    /// `plain` (the root's IV is derived, not stored).
    pub fn dir_iv_of(&self, fd: &OwnedFd, plain: &str, is_root: bool) -> Result<DirIv> {
        self.dir_iv(fd, plain, is_root)
    }

    /// Writes the plaintext of the regular file `name` in the backing
    /// directory `parent` (plaintext path `plain`) to `out`; see
    /// [`Offline::cat`].
    pub fn cat_at(
        &self,
        parent: &OwnedFd,
        name: &CStr,
        plain: &str,
        out: &mut impl Write,
        salvage: bool,
    ) -> Result<CatReport> {
        let fd = self.open_file_at(parent, name, plain)?;
        self.cat_fd(plain, &fd, out, salvage)
    }

    fn dup_root(&self) -> Result<OwnedFd> {
        store::open_dir_path(&self.root, c".").map_err(|e| OfflineError::io("/", e))
    }

    /// The IV of the directory open at `fd` (`None` = the root).
    fn dir_iv(&self, fd: &OwnedFd, plain: &str, is_root: bool) -> Result<DirIv> {
        if is_root {
            return Ok(self.names.root_iv());
        }
        store::read_dir_iv(fd).map_err(|error| OfflineError::DirIv {
            path: plain.to_string(),
            error,
        })
    }

    /// Resolves a plaintext path to its backing entry, component by
    /// component from the backing root, never following a symlink.
    pub fn resolve(&self, path: &Path) -> Result<Resolved> {
        let parts = split_plain_path(path)?;
        let mut dir = self.dup_root()?;
        let mut iv = self.names.root_iv();
        let mut backing_path = PathBuf::new();
        if parts.is_empty() {
            let stat = store::stat_fd(&dir).map_err(|e| OfflineError::io("/", e))?;
            return Ok(Resolved {
                plain_path: "/".into(),
                backing_path,
                parent: dir,
                parent_iv: iv,
                entry: None,
                stat,
            });
        }
        for (i, part) in parts.iter().enumerate() {
            let plain_here = join_plain(&parts[..=i]);
            let name =
                self.names
                    .backing_name(&iv, part)
                    .map_err(|e| OfflineError::InvalidPath {
                        path: plain_here.clone(),
                        reason: match e {
                            NameError::TooLong => "name longer than 255 bytes".into(),
                            other => other.to_string(),
                        },
                    })?;
            let c = store::cstr(name.entry());
            let stat = match store::lstat_at(&dir, &c) {
                Ok(st) => st,
                Err(e) if store::is_not_found(e) => {
                    return Err(OfflineError::NotFound { path: plain_here });
                }
                Err(e) => return Err(OfflineError::io(&plain_here, e)),
            };
            backing_path.push(name.entry());
            if i + 1 == parts.len() {
                return Ok(Resolved {
                    plain_path: plain_here,
                    backing_path,
                    parent: dir,
                    parent_iv: iv,
                    entry: Some(name),
                    stat,
                });
            }
            let kind = Kind::from_stat(&stat);
            if kind != Kind::Dir {
                return Err(OfflineError::NotADirectory {
                    path: plain_here,
                    kind,
                });
            }
            let next = store::open_dir_path(&dir, &c).map_err(|e| match e {
                Errno::NOTDIR | Errno::LOOP => OfflineError::NotADirectory {
                    path: plain_here.clone(),
                    kind: Kind::Symlink,
                },
                e => OfflineError::io(&plain_here, e),
            })?;
            iv = self.dir_iv(&next, &plain_here, false)?;
            dir = next;
        }
        unreachable!("the loop returns at the last component")
    }

    /// Lists a directory (or, like `ls`, a single non-directory entry).
    pub fn list(&self, path: &Path) -> Result<Listing> {
        let r = self.resolve(path)?;
        let kind = r.kind();
        if kind != Kind::Dir {
            let plain = split_plain_path(path)?.pop().unwrap_or_default();
            let backing = r.entry.as_ref().map_or("", |e| e.entry());
            let entry = self.describe(&r.parent, &r.parent_iv, backing, plain)?;
            return Ok(Listing {
                entries: vec![entry],
                ..Listing::default()
            });
        }
        let (fd, iv) = match &r.entry {
            None => (r.parent, r.parent_iv),
            Some(name) => {
                let fd = store::open_dir_path(&r.parent, &store::cstr(name.entry())).map_err(
                    |e| match e {
                        Errno::NOTDIR | Errno::LOOP => OfflineError::NotADirectory {
                            path: r.plain_path.clone(),
                            kind: Kind::Symlink,
                        },
                        e => OfflineError::io(&r.plain_path, e),
                    },
                )?;
                let iv = self.dir_iv(&fd, &r.plain_path, false)?;
                (fd, iv)
            }
        };
        let raw = store::list_dir(fd.as_fd(), &iv, self.names)
            .map_err(|e| OfflineError::io(&r.plain_path, e))?;
        let mut listing = Listing {
            bad: raw.bad.into_iter().map(|b| (b.backing, b.error)).collect(),
            foreign: raw.foreign,
            entries: Vec::with_capacity(raw.entries.len()),
        };
        // Entries under the IV of a copy of veilfs.diriv (docs/FORMAT.md
        // §6) are listed like the others.
        for e in raw.entries.into_iter().chain(raw.secondary) {
            match self.describe(&fd, &iv, &e.backing, e.plain.clone()) {
                Ok(entry) => listing.entries.push(entry),
                // Gone since the listing (a sync client at work): skip.
                Err(OfflineError::NotFound { .. }) => {}
                Err(err) => listing.bad.push((e.backing, err.to_string())),
            }
        }
        listing.entries.sort_by(|a, b| a.name.cmp(&b.name));
        listing.bad.sort();
        listing.foreign.sort();
        Ok(listing)
    }

    /// lstat of one entry, with its plaintext size and symlink target.
    fn describe(&self, dir: &OwnedFd, iv: &DirIv, backing: &str, plain: Vec<u8>) -> Result<Entry> {
        let display = String::from_utf8_lossy(&plain).into_owned();
        let c = store::cstr(if backing.is_empty() { "." } else { backing });
        let st = store::lstat_at(dir, &c).map_err(|e| {
            if store::is_not_found(e) {
                OfflineError::NotFound {
                    path: display.clone(),
                }
            } else {
                OfflineError::io(&display, e)
            }
        })?;
        let kind = Kind::from_stat(&st);
        let mut target = None;
        let size = match kind {
            Kind::File => self.content.layout().plain_size(st.st_size as u64),
            Kind::Symlink => {
                let t = store::read_symlink_sealed(dir, &c)
                    .map_err(|e| e.to_string())
                    .and_then(|stored| {
                        self.names
                            .decrypt_symlink_target(iv, &stored)
                            .map_err(|e| format!("symlink target does not decrypt: {e}"))
                    });
                let n = t.as_ref().map_or(0, |t| t.len() as u64);
                target = Some(t);
                n
            }
            _ => st.st_size as u64,
        };
        Ok(Entry {
            name: plain,
            backing: backing.to_string(),
            kind,
            size,
            mtime: mtime_of(&st),
            mode: st.st_mode,
            nlink: st.st_nlink,
            target,
        })
    }

    /// Opens the regular file at a resolved path for reading, without
    /// following symlinks and without blocking on a planted FIFO.
    fn open_file(&self, r: &Resolved) -> Result<OwnedFd> {
        let kind = r.kind();
        if kind != Kind::File {
            return Err(OfflineError::NotAFile {
                path: r.plain_path.clone(),
                kind,
            });
        }
        self.open_file_at(&r.parent, &r.entry_cstr(), &r.plain_path)
    }

    fn open_file_at(&self, parent: &OwnedFd, name: &CStr, plain: &str) -> Result<OwnedFd> {
        let fd = openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP => OfflineError::NotAFile {
                path: plain.to_string(),
                kind: Kind::Symlink,
            },
            Errno::NOENT => OfflineError::NotFound {
                path: plain.to_string(),
            },
            e => OfflineError::io(plain, e),
        })?;
        let st = store::stat_fd(&fd).map_err(|e| OfflineError::io(plain, e))?;
        if Kind::from_stat(&st) != Kind::File {
            return Err(OfflineError::NotAFile {
                path: plain.to_string(),
                kind: Kind::from_stat(&st),
            });
        }
        Ok(fd)
    }

    /// Writes the plaintext of the file at `path` to `out`, streaming
    /// 1 MiB at a time. Without `salvage`, the first chunk that fails
    /// authentication is an error (after the good bytes before it were
    /// written). With `salvage`, bad chunks are written as zeros and listed
    /// in the report, so everything readable is recovered at its offset.
    pub fn cat(&self, path: &Path, out: &mut impl Write, salvage: bool) -> Result<CatReport> {
        let r = self.resolve(path)?;
        let fd = self.open_file(&r)?;
        self.cat_fd(&r.plain_path, &fd, out, salvage)
    }

    fn cat_fd(
        &self,
        plain: &str,
        fd: &OwnedFd,
        out: &mut impl Write,
        salvage: bool,
    ) -> Result<CatReport> {
        let layout = self.content.layout();
        let backing_size =
            crate::cryptfile::backing_size(fd).map_err(|e| OfflineError::io(plain, e))?;
        let plain_size = layout.plain_size(backing_size);
        let mut report = CatReport {
            path: plain.to_string(),
            ..CatReport::default()
        };
        let write_err = |e: io::Error| OfflineError::io(plain, e);
        // A non-empty file must start with a valid header, even one too
        // short to hold a chunk.
        match crate::cryptfile::read_header(fd, self.content) {
            Ok(_) => {}
            Err(CryptFileError::Header(error)) if salvage => {
                // Nothing can be authenticated: keep the file's size so
                // offsets line up, and say so.
                report.header_error = Some(error.to_string());
                let zeros = vec![0u8; CAT_STEP.min(plain_size as usize)];
                let mut left = plain_size;
                while left > 0 {
                    let n = left.min(CAT_STEP as u64) as usize;
                    out.write_all(&zeros[..n]).map_err(write_err)?;
                    left -= n as u64;
                }
                out.flush().map_err(write_err)?;
                report.bytes = plain_size;
                return Ok(report);
            }
            Err(CryptFileError::Header(error)) => {
                return Err(OfflineError::Header {
                    path: plain.to_string(),
                    error,
                });
            }
            Err(e) => return Err(OfflineError::io(plain, io::Error::other(e.to_string()))),
        }
        let mut file = CryptFile::new(fd, self.content, None);
        let mut buf = vec![0u8; CAT_STEP.min(plain_size as usize)];
        let mut offset = 0u64;
        while offset < plain_size {
            let mut bad: Vec<(u64, String)> = Vec::new();
            let res = file.read_at_with(offset, &mut buf, |index, e| {
                if salvage {
                    let msg = match &e {
                        CryptFileError::Chunk { error, .. } => error.to_string(),
                        other => other.to_string(),
                    };
                    bad.push((index, msg));
                    Ok(())
                } else {
                    Err(e)
                }
            });
            let n = match res {
                Ok(n) => n,
                Err(CryptFileError::Header(error)) => {
                    return Err(OfflineError::Header {
                        path: plain.to_string(),
                        error,
                    });
                }
                Err(CryptFileError::Chunk { index, error }) => {
                    // Write the good bytes before the bad chunk, as `cat`
                    // does up to a read error.
                    let good = layout.chunk_plain_start(index).saturating_sub(offset);
                    if good > 0 {
                        let good = &mut buf[..good.min(CAT_STEP as u64) as usize];
                        if let Ok(n) = file.read_at(offset, good) {
                            out.write_all(&good[..n]).map_err(write_err)?;
                        }
                    }
                    out.flush().map_err(write_err)?;
                    return Err(OfflineError::Chunk {
                        path: plain.to_string(),
                        index,
                        error: error.to_string(),
                    });
                }
                Err(CryptFileError::Io(e)) => return Err(OfflineError::io(plain, e)),
            };
            for (index, reason) in bad {
                let start = layout.chunk_plain_start(index).min(plain_size);
                let end = (start + layout.chunk_size() as u64).min(plain_size);
                report.push_bad(index, start..end, reason);
            }
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(write_err)?;
            offset += n as u64;
            report.bytes = offset;
        }
        out.flush().map_err(write_err)?;
        // A remnant shorter than a chunk's overhead holds no plaintext but
        // is damage all the same (cut inside a chunk, or bytes appended).
        if !layout.is_valid_cipher_size(backing_size) {
            let body = backing_size.saturating_sub(HEADER_LEN as u64);
            let stored = layout.stored_chunk_len() as u64;
            let index = body / stored;
            let reason = ChunkError::BadLength((body % stored) as usize).to_string();
            if !salvage {
                return Err(OfflineError::Chunk {
                    path: plain.to_string(),
                    index,
                    error: reason,
                });
            }
            report.push_bad(index, plain_size..plain_size, reason);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages the CLI prints, byte for byte (they were hand-written
    /// `Display` code before thiserror).
    #[test]
    fn error_messages() {
        let not_dir = |kind| OfflineError::NotADirectory {
            path: "/a".into(),
            kind,
        };
        assert_eq!(
            not_dir(Kind::Symlink).to_string(),
            format!(
                "/a: not a directory (it is {}); symlinks are never followed offline",
                Kind::Symlink.describe()
            )
        );
        assert_eq!(
            not_dir(Kind::File).to_string(),
            format!("/a: not a directory (it is {})", Kind::File.describe())
        );
        let dir_iv = |error| OfflineError::DirIv {
            path: "/d".into(),
            error,
        };
        assert_eq!(
            dir_iv(Errno::NOENT).to_string(),
            "directory IV missing: names in /d cannot be decrypted (run `veilfs fsck`)"
        );
        assert_eq!(
            dir_iv(Errno::IO).to_string(),
            format!(
                "directory IV of /d is damaged ({}): its names cannot be decrypted (run `veilfs fsck`)",
                Errno::IO
            )
        );
        assert_eq!(
            OfflineError::NotFound { path: "/x".into() }.to_string(),
            "/x: no such file or directory"
        );
    }
}
