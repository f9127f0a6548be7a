//! `veilfs fsck`: checks a whole vault without mounting it.
//!
//! Walks CIPHERDIR from its root with `*at()` calls and `O_NOFOLLOW`, so a
//! symlink planted in the backing directory is reported and never
//! followed. Checks every directory IV, every name (regular and long), every
//! long-name record, every file header and every chunk of every file,
//! including the last-chunk flag that detects truncation, and every symlink
//! target. Files are streamed, never loaded whole; sparse holes are skipped
//! with `SEEK_DATA`.
//!
//! The config is not checked here: the caller unlocked the vault, which
//! verified it (docs/FORMAT.md §3.3).
//!
//! `repair` only does what cannot lose data (see [`ProblemKind`]).
//!
//! - `report.rs`: what fsck finds and does (the report types);
//! - `walk.rs`: the tree walk, directory by directory;
//! - `names.rs`: entry names and symlink targets;
//! - `files.rs`: file headers and chunks, and their repairs.

mod files;
mod names;
mod report;
mod walk;

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, Dir, Mode, OFlags, SeekFrom, openat};
use rustix::io::Errno;

use crate::conflict;
use crate::content::{CHUNK_OVERHEAD, ContentCipher, FileHeader, HEADER_LEN};
use crate::names::{DirIv, EntryKind, NameCipher, NameError, classify_entry};
use crate::store::Kind;
use crate::store::{self, pread_full, resolve};

pub use report::{FileHoles, Problem, ProblemKind, Progress, ProgressFn, Repair, Report, Stats};

/// Directories nested deeper than this are reported, not descended into
/// (the walk holds one descriptor per level).
pub const MAX_DEPTH: usize = 800;
/// Backing bytes read per step when checking a file.
const READ_STEP: usize = 1 << 20;

/// What to check and how.
pub struct FsckOptions<'a> {
    pub cipherdir: &'a Path,
    pub content: &'a ContentCipher,
    pub names: &'a NameCipher,
    /// Make the repairs that cannot lose data.
    pub repair: bool,
    /// With `repair`: keep the zeros after a stale last chunk as part of
    /// the file (re-sealing them as authentic) instead of cutting them off.
    /// Only for a user who knows the file really ends in zeros.
    pub keep_zero_tail: bool,
    /// Called as work progresses. When set, a quick pre-scan first counts
    /// files and bytes so the totals are known.
    pub progress: Option<ProgressFn<'a>>,
    /// The vault's rewrite-journal records not yet applied (crate::cryptfile::journal):
    /// a chunk they cover is a crash the journal recovers, not damage, and
    /// `--repair` applies them to the file whose header they name, wherever
    /// it now is.
    pub journal: Vec<crate::cryptfile::journal::Record>,
}

impl<'a> FsckOptions<'a> {
    pub fn new(cipherdir: &'a Path, content: &'a ContentCipher, names: &'a NameCipher) -> Self {
        FsckOptions {
            cipherdir,
            content,
            names,
            repair: false,
            keep_zero_tail: false,
            progress: None,
            journal: Vec::new(),
        }
    }
}

/// Checks the whole vault. Fails only if CIPHERDIR itself cannot be
/// opened; everything else is a [`Problem`] in the report.
pub fn fsck(opts: FsckOptions<'_>) -> io::Result<Report> {
    let root = rustix::fs::open(
        opts.cipherdir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let root = Rc::new(root);
    let mut checker = Checker {
        content: opts.content,
        names: opts.names,
        repair: opts.repair,
        keep_zero_tail: opts.keep_zero_tail,
        progress_cb: opts.progress,
        progress: Progress::default(),
        report: Report::default(),
        seen_inodes: HashSet::new(),
        plain_buf: vec![0u8; opts.content.layout().chunk_size()],
        read_buf: Vec::new(),
        journal: Rc::new(opts.journal),
    };
    if checker.progress_cb.is_some() {
        let (files, bytes) = prescan(&root);
        checker.progress.files_total = files;
        checker.progress.bytes_total = bytes;
        checker.tick();
    }
    checker.walk(root);
    checker.tick();
    Ok(checker.report)
}

/// Counts regular files and their backing bytes, for the progress bar.
fn prescan(root: &Rc<OwnedFd>) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack: Vec<(Rc<OwnedFd>, usize)> = vec![(root.clone(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = store::open_dir_read(&*dir) else {
            continue;
        };
        let Ok(mut it) = Dir::new(rd) else { continue };
        while let Some(Ok(entry)) = it.read() {
            let name = entry.file_name();
            let bytes_name = name.to_bytes();
            if bytes_name == b"." || bytes_name == b".." {
                continue;
            }
            let Ok(s) = std::str::from_utf8(bytes_name) else {
                continue;
            };
            if !matches!(
                classify_entry(s),
                EntryKind::Regular(_) | EntryKind::Long(_)
            ) {
                continue;
            }
            let Ok(st) = store::lstat_at(&*dir, name) else {
                continue;
            };
            match Kind::from_stat(&st) {
                Kind::File => {
                    files += 1;
                    bytes += st.st_size as u64;
                }
                Kind::Dir if depth < MAX_DEPTH => {
                    if let Ok(fd) = store::open_dir_path(&*dir, name) {
                        stack.push((Rc::new(fd), depth + 1));
                    }
                }
                _ => {}
            }
        }
    }
    (files, bytes)
}

/// Where an entry is: its backing path always, its plaintext path when
/// every component decrypted.
#[derive(Debug, Clone)]
struct Loc {
    backing: String,
    plain: Option<String>,
}

impl Loc {
    fn child(&self, entry: &str, plain_name: Option<&[u8]>) -> Loc {
        let backing = if self.backing.is_empty() {
            entry.to_string()
        } else {
            format!("{}/{entry}", self.backing)
        };
        let plain = match (&self.plain, plain_name) {
            (Some(p), Some(n)) => {
                let n = String::from_utf8_lossy(n);
                Some(if p == "/" {
                    format!("/{n}")
                } else {
                    format!("{p}/{n}")
                })
            }
            _ => None,
        };
        Loc { backing, plain }
    }

    fn shown(&self) -> &str {
        self.plain.as_deref().unwrap_or(&self.backing)
    }

    /// How to name this directory in a message.
    fn describe_dir(&self) -> String {
        match &self.plain {
            Some(p) => p.clone(),
            None if self.backing.is_empty() => "/".into(),
            None => format!("backing directory {}", self.backing),
        }
    }
}

/// A directory still to check.
struct Pending {
    parent: Rc<OwnedFd>,
    parent_iv: Option<DirIv>,
    entry: String,
    plain_name: Option<Vec<u8>>,
    loc: Loc,
    depth: usize,
}

/// The file a repair may write to: reopened by name, checked by inode.
struct RepairTarget<'d> {
    dir: &'d OwnedFd,
    name: &'d std::ffi::CStr,
    dev: u64,
    ino: u64,
}

use crate::cryptfile::ChunkVerdict as ChunkDiag;

struct Checker<'a> {
    keep_zero_tail: bool,
    content: &'a ContentCipher,
    names: &'a NameCipher,
    repair: bool,
    progress_cb: Option<ProgressFn<'a>>,
    progress: Progress,
    report: Report,
    seen_inodes: HashSet<(u64, u64)>,
    plain_buf: Vec<u8>,
    journal: Rc<Vec<crate::cryptfile::journal::Record>>,
    read_buf: Vec<u8>,
}

fn name_problem(e: &NameError) -> ProblemKind {
    match e {
        NameError::Unauthentic => ProblemKind::NameUnauthentic,
        _ => ProblemKind::NameInvalid,
    }
}

impl<'a> Checker<'a> {
    fn tick(&mut self) {
        if let Some(cb) = self.progress_cb.as_mut() {
            cb(&self.progress);
        }
    }

    fn problem(&mut self, kind: ProblemKind, loc: &Loc, message: impl Into<String>) -> usize {
        self.problem_chunks(kind, loc, None, message)
    }

    fn problem_chunks(
        &mut self,
        kind: ProblemKind,
        loc: &Loc,
        chunks: Option<Range<u64>>,
        message: impl Into<String>,
    ) -> usize {
        let p = Problem {
            kind,
            path: loc.shown().to_string(),
            path_is_plain: loc.plain.is_some(),
            backing_path: loc.backing.clone(),
            chunks,
            message: message.into(),
            repaired: false,
        };
        log::debug!("fsck: {kind}: {p}");
        self.report.problems.push(p);
        self.report.problems.len() - 1
    }

    /// Records how a chunk repair of problem `idx` went.
    fn chunk_repaired(
        &mut self,
        idx: usize,
        outcome: io::Result<()>,
        action: impl FnOnce() -> String,
    ) {
        match outcome {
            Ok(()) => self.repaired(idx, action()),
            Err(e) => self.report.problems[idx].message += &format!("; repair failed: {e}"),
        }
    }

    fn repaired(&mut self, problem: usize, action: impl Into<String>) {
        let p = &mut self.report.problems[problem];
        p.repaired = true;
        self.report.repairs.push(Repair {
            kind: p.kind,
            path: p.path.clone(),
            backing_path: p.backing_path.clone(),
            action: action.into(),
        });
    }
}

/// The raw names in a directory, without `.` and `..`.
fn read_names(dir: &OwnedFd) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    let mut it = Dir::new(store::open_dir_read(dir)?)?;
    while let Some(entry) = it.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

fn dir_has_veilfs_entries(dir: &OwnedFd) -> Result<bool, Errno> {
    Ok(read_names(dir)?.iter().any(|n| {
        std::str::from_utf8(n).is_ok_and(|s| {
            matches!(
                classify_entry(s),
                EntryKind::Regular(_) | EntryKind::Long(_)
            )
        })
    }))
}
