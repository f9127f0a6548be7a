//! Recovery: the journal replayed against the vault after a crash, at
//! every mount before the first request and by `veilfs fsck --repair`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::{FILES, Intent, NameOp, Record, encode, read_records};
use crate::content::{ContentCipher, FileHeader};
use crate::cryptfile::{self, ChunkVerdict};
use crate::store;

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub records: usize,
    pub files: usize,
    /// Chunks put back from a record.
    pub chunks_restored: usize,
    /// Files cut back to their size before a torn append.
    pub tails_cut: usize,
    /// Chunks still sealed as last although more follow, re-sealed.
    pub stale_flags_resealed: usize,
    /// Records whose file was not found under its path (renamed or
    /// deleted since); kept in `journal.unplaced` for `veilfs fsck`.
    pub unplaced: usize,
}

/// Opens a backing file by its path relative to `root`, one component at
/// a time and never following a symlink.
fn open_backing_path(root: &impl AsFd, path: &[u8]) -> io::Result<OwnedFd> {
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    let Some((file, dirs)) = parts.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    };
    let mut dir = store::open_dir_path(root, c".")?;
    for d in dirs {
        let c = CString::new(*d).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        dir = store::open_dir_path(&dir, &c)?;
    }
    let c = CString::new(*file).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fd = rustix::fs::openat(
        &dir,
        &c,
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = store::stat_fd(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(fd)
}

/// Applies the records of one file (oldest first) to it: see
/// [`cryptfile::recover_file`].
fn recover_one(
    root: &impl AsFd,
    cipher: &ContentCipher,
    path: &[u8],
    records: &[&Record],
    out: &mut Recovered,
) -> io::Result<bool> {
    let fd = match open_backing_path(root, path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    let r = cryptfile::recover_file(&fd, cipher, records)?;
    match r {
        None => Ok(false),
        Some(r) => {
            out.chunks_restored += r.chunks_restored;
            out.tails_cut += r.tails_cut;
            out.stale_flags_resealed += r.stale_flags_resealed;
            out.files += 1;
            Ok(true)
        }
    }
}

/// Groups the content records by where their file is at the end of the
/// journal, following the renames and dropping what was unlinked.
pub(super) fn records_by_final_path(
    records: &[Record],
) -> std::collections::BTreeMap<Vec<u8>, Vec<&Record>> {
    let mut by_path: std::collections::BTreeMap<Vec<u8>, Vec<&Record>> = Default::default();
    // Every key equal to `from` or below it, moved under `to`.
    fn take_subtree<'r>(
        map: &mut std::collections::BTreeMap<Vec<u8>, Vec<&'r Record>>,
        from: &[u8],
    ) -> Vec<(Vec<u8>, Vec<&'r Record>)> {
        let keys: Vec<Vec<u8>> = map
            .keys()
            .filter(|k| {
                k.as_slice() == from || (k.starts_with(from) && k.get(from.len()) == Some(&b'/'))
            })
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let v = map.remove(&k).unwrap();
                (k[from.len()..].to_vec(), v)
            })
            .collect()
    }
    for r in records {
        match &r.name_op {
            None => by_path.entry(r.path.clone()).or_default().push(r),
            Some(NameOp::Unlink) => {
                by_path.remove(&r.path);
            }
            Some(NameOp::Rename { to }) => {
                let moved = take_subtree(&mut by_path, &r.path);
                take_subtree(&mut by_path, to);
                for (suffix, v) in moved {
                    let mut k = to.clone();
                    k.extend_from_slice(&suffix);
                    by_path.entry(k).or_default().extend(v);
                }
            }
            Some(NameOp::Exchange { with }) => {
                let a = take_subtree(&mut by_path, &r.path);
                let b = take_subtree(&mut by_path, with);
                for (suffix, v) in a {
                    let mut k = with.clone();
                    k.extend_from_slice(&suffix);
                    by_path.entry(k).or_default().extend(v);
                }
                for (suffix, v) in b {
                    let mut k = r.path.clone();
                    k.extend_from_slice(&suffix);
                    by_path.entry(k).or_default().extend(v);
                }
            }
        }
    }
    by_path
}

/// Replays the journal in `dir` against the vault at `root`: every chunk
/// a crash cut is put back, every torn append cut back, every stale last
/// flag re-sealed; then the journal files are emptied. Records whose file
/// cannot be found by path are kept in `journal.unplaced` (for fsck, which
/// finds files by header).
pub fn recover(dir: &Path, root: &impl AsFd, cipher: &ContentCipher) -> io::Result<Recovered> {
    let records = match read_records(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recovered::default()),
        Err(e) => return Err(e),
    };
    let mut out = Recovered {
        records: records.len(),
        ..Recovered::default()
    };
    if records.is_empty() {
        return Ok(out);
    }
    let by_path = records_by_final_path(&records);
    let mut unplaced: Vec<&Record> = Vec::new();
    for (path, recs) in &by_path {
        match recover_one(root, cipher, path, recs, &mut out) {
            Ok(true) => {}
            Ok(false) => unplaced.extend(recs),
            Err(e) => {
                log::warn!(
                    "journal: cannot recover backing file {}: {e}",
                    String::from_utf8_lossy(path)
                );
                unplaced.extend(recs);
            }
        }
    }
    out.unplaced = unplaced.len();
    unplaced.retain(|r| r.name_op.is_none());
    // The repairs are durable (each file was fsynced); only then may the
    // records go.
    let mut keep = Vec::new();
    for r in &unplaced {
        let images: Vec<(u64, &[u8])> = r.images.iter().map(|(o, b)| (*o, &b[..])).collect();
        let header = r
            .header
            .and_then(|h| FileHeader::parse(&h, cipher.layout()).ok());
        keep.extend(encode(
            r.seq,
            &Intent {
                path: &r.path,
                header: header.as_ref(),
                old_backing: r.old_backing,
                images: &images,
            },
        ));
    }
    let unplaced_path = dir.join("journal.unplaced");
    if keep.is_empty() {
        match std::fs::remove_file(&unplaced_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    } else {
        let tmp = dir.join("journal.unplaced.tmp");
        std::fs::write(&tmp, &keep)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &unplaced_path)?;
        log::warn!(
            "journal: {} record(s) name files that are no longer where they were; run veilfs fsck --repair",
            unplaced.len()
        );
    }
    for name in FILES {
        match File::options().write(true).open(dir.join(name)) {
            Ok(f) => {
                f.set_len(0)?;
                f.sync_all()?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if out.files > 0 || out.unplaced > 0 {
        log::info!(
            "journal: recovered {} file(s) after a crash: {} chunk(s) restored, {} torn append(s) cut back, {} stale flag(s) re-sealed",
            out.files,
            out.chunks_restored,
            out.tails_cut,
            out.stale_flags_resealed
        );
    }
    Ok(out)
}

/// Whether a chunk verdict is one recovery handles (used by fsck to tell a
/// crash the journal covers from damage). `offset` is the chunk's backing
/// offset and `stored` the length of a sealed chunk; a record covers the
/// chunk when one of its images holds that slot, anywhere in the image,
/// as recovery sees it ([`Record::chunk_slots`]).
pub fn covers(
    records: &[Record],
    header: &FileHeader,
    offset: u64,
    stored: u64,
    verdict: ChunkVerdict,
) -> bool {
    let ours = |r: &&Record| r.header.as_ref() == Some(header.as_bytes());
    match verdict {
        ChunkVerdict::TornTail => records.iter().any(|r| ours(&r)),
        _ => records
            .iter()
            .filter(ours)
            .any(|r| r.chunk_slots(stored).any(|slot| slot == offset)),
    }
}
