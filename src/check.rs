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

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, Dir, Mode, OFlags, SeekFrom, openat};
use rustix::io::Errno;
use serde::Serialize;

use crate::conflict;
use crate::content::{CHUNK_OVERHEAD, ContentCipher, FileHeader, HEADER_LEN};
use crate::names::{DirIv, EntryKind, NameCipher, NameError, classify_entry};
use crate::offline::Kind;
use crate::store::{self, pread_full};

/// Directories nested deeper than this are reported, not descended into
/// (the walk holds one descriptor per level).
pub const MAX_DEPTH: usize = 800;
/// Backing bytes read per step when checking a file.
const READ_STEP: usize = 1 << 20;

/// What is wrong. Every kind but the ones marked "repairable" is left
/// alone by `--repair`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A directory has no `veilfs.diriv`: its names cannot be decrypted.
    /// Repairable only when the directory holds no entries (a new IV is
    /// then written, docs/FORMAT.md §6).
    DirIvMissing,
    /// `veilfs.diriv` is unreadable, not 16 bytes, or not a regular file.
    DirIvInvalid,
    /// A backing directory could not be opened or listed.
    DirUnreadable,
    /// Nested deeper than [`MAX_DEPTH`]; not checked.
    TooDeep,
    /// A name fails authentication: tampered, or moved from another
    /// directory.
    NameUnauthentic,
    /// A name that is not valid base64url, has an impossible length, or
    /// decrypts to an invalid (e.g. too long) name.
    NameInvalid,
    /// A long-name entry `H.vln` without its `H.vln.name` record.
    LongNameRecordMissing,
    /// A long-name record that does not hash to its entry's name, or is
    /// unreadable.
    LongNameRecordInvalid,
    /// A long-name record without its entry. Repairable (removed).
    LongNameRecordOrphan,
    /// The file header is too short, has an unknown version or the wrong
    /// chunk size.
    HeaderInvalid,
    /// The header parses but no chunk authenticates against it: the
    /// header was replaced (or every chunk is damaged).
    HeaderMismatch,
    /// A chunk fails authentication: changed, copied from another file,
    /// or (for the last chunk) truncated inside the chunk.
    ChunkUnauthentic,
    /// A chunk authenticates, but at another index: chunks were swapped or
    /// moved within the file.
    ChunkMisplaced,
    /// The last chunk authenticates only as a middle chunk: the file was
    /// truncated at a chunk boundary. Data is lost; not repairable.
    Truncated,
    /// A backing size no writer produces: cut inside a chunk's overhead,
    /// or bytes appended.
    InvalidSize,
    /// A middle chunk still sealed as the last one: a crash interrupted an
    /// append. Repairable (re-sealed as a middle chunk; no data changes).
    StaleLastFlag,
    /// A chunk still sealed as the last one is followed by nothing
    /// authentic (zeros, holes, a cut chunk): an interrupted append, or
    /// zeros appended by someone with access to CIPHERDIR (possible
    /// tampering). `--repair` cuts the file after that chunk.
    ZeroTail,
    /// The last chunk is cut off at a 4 KiB boundary and does not
    /// authenticate: a crash (or SIGKILL of the daemon) stopped a write
    /// that was growing the file. Its bytes were never durable and cannot
    /// be read by anyone. Repairable: `--repair` drops the cut chunk and
    /// re-seals the one before it as the last, keeping every readable byte.
    TornTail,
    /// A symlink whose target does not decrypt: tampered, or planted by
    /// someone without the key. Never followed.
    SymlinkTargetInvalid,
    /// A backing name that reads as a sync client's conflict copy of an
    /// entry of its directory, but is not shown as one: its file type (or,
    /// for a directory, its `veilfs.diriv`) differs from the original's.
    /// An entry grafted from elsewhere: possible tampering.
    ConflictCopyRejected,
    /// A backing entry of a type the format does not allow there (e.g. a
    /// symlink where veilfs metadata should be). Never followed.
    UnexpectedType,
    /// An I/O error reading a file.
    Unreadable,
    /// A chunk a crash cut while it was rewritten (or a file cut while it
    /// grew), which the vault's rewrite journal holds the old version of:
    /// not damage. Mounting the vault, or `--repair`, puts it back.
    CrashRecoverable,
}

impl ProblemKind {
    /// Whether this finding is damage. A long-name record left behind by a
    /// deletion is not: the mount keeps records on purpose, because a sync
    /// client that merges "deleted here" with "edited there" may bring the
    /// entry back and would otherwise lose its name. `--repair` removes
    /// orphans; they never make fsck fail.
    pub fn is_damage(self) -> bool {
        !matches!(
            self,
            ProblemKind::LongNameRecordOrphan | ProblemKind::CrashRecoverable
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::DirIvMissing => "dir_iv_missing",
            ProblemKind::DirIvInvalid => "dir_iv_invalid",
            ProblemKind::DirUnreadable => "dir_unreadable",
            ProblemKind::TooDeep => "too_deep",
            ProblemKind::NameUnauthentic => "name_unauthentic",
            ProblemKind::NameInvalid => "name_invalid",
            ProblemKind::LongNameRecordMissing => "long_name_record_missing",
            ProblemKind::LongNameRecordInvalid => "long_name_record_invalid",
            ProblemKind::LongNameRecordOrphan => "long_name_record_orphan",
            ProblemKind::HeaderInvalid => "header_invalid",
            ProblemKind::HeaderMismatch => "header_mismatch",
            ProblemKind::ChunkUnauthentic => "chunk_unauthentic",
            ProblemKind::ChunkMisplaced => "chunk_misplaced",
            ProblemKind::Truncated => "truncated",
            ProblemKind::InvalidSize => "invalid_size",
            ProblemKind::StaleLastFlag => "stale_last_flag",
            ProblemKind::ZeroTail => "zero_tail",
            ProblemKind::TornTail => "torn_tail",
            ProblemKind::SymlinkTargetInvalid => "symlink_target_invalid",
            ProblemKind::ConflictCopyRejected => "conflict_copy_rejected",
            ProblemKind::UnexpectedType => "unexpected_type",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::CrashRecoverable => "crash_recoverable",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The plaintext path when it is known, else the backing path.
    pub path: String,
    /// Whether `path` is a plaintext path.
    pub path_is_plain: bool,
    /// The backing path relative to CIPHERDIR (empty for the root).
    pub backing_path: String,
    /// The chunks concerned, end exclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Range<u64>>,
    pub message: String,
    /// `--repair` fixed it.
    pub repaired: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path_is_plain {
            write!(f, "{}: {}", self.path, self.message)?;
        } else {
            write!(f, "[backing] {}: {}", self.path, self.message)?;
        }
        if self.repaired {
            f.write_str(" (repaired)")?;
        }
        Ok(())
    }
}

/// A repair `--repair` made.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    pub kind: ProblemKind,
    pub path: String,
    pub backing_path: String,
    pub action: String,
}

/// Counts of what was checked.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes.
    pub special: u64,
    /// Extra names of a hard-linked file (its content is checked once).
    pub hard_links: u64,
    pub chunks: u64,
    /// Chunks inside files that read as holes: skipped as sparse, or
    /// stored as all zeros (as a wiped chunk is).
    pub holes: u64,
    pub backing_bytes: u64,
}

/// The result of a check.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub repairs: Vec<Repair>,
    /// Foreign backing entries (sync clients' files, conflict copies):
    /// information, not errors. Backing paths.
    pub foreign: Vec<String>,
    /// Files with holes inside: information, not errors. A sparse file and
    /// a file whose chunks were zeroed (wiped) look the same; only the
    /// user can tell which one they expect.
    pub files_with_holes: Vec<FileHoles>,
    pub stats: Stats,
}

/// A file with chunks that read as holes (zeros).
#[derive(Debug, Clone, Serialize)]
pub struct FileHoles {
    /// The plaintext path when it is known, else the backing path.
    pub path: String,
    pub path_is_plain: bool,
    /// The backing path relative to CIPHERDIR.
    pub backing_path: String,
    /// How many of its chunks are holes.
    pub holes: u64,
    /// How many chunks it has.
    pub chunks: u64,
}

impl Report {
    /// No problem is left (every problem found, if any, was repaired).
    pub fn is_clean(&self) -> bool {
        self.unrepaired().next().is_none()
    }

    /// Damage found and not repaired.
    pub fn unrepaired(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| !p.repaired && p.kind.is_damage())
    }
}

/// Progress, reported per file and per step within large files.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub files_done: u64,
    pub bytes_done: u64,
    /// Totals from a quick pre-scan, when a progress callback is given.
    pub files_total: u64,
    pub bytes_total: u64,
}

/// A progress callback.
pub type ProgressFn<'a> = Box<dyn FnMut(&Progress) + 'a>;

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
    /// The vault's rewrite-journal records not yet applied (crate::journal):
    /// a chunk they cover is a crash the journal recovers, not damage, and
    /// `--repair` applies them to the file whose header they name, wherever
    /// it now is.
    pub journal: Vec<crate::journal::Record>,
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
    journal: Rc<Vec<crate::journal::Record>>,
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

    fn walk(&mut self, root: Rc<OwnedFd>) {
        let root_loc = Loc {
            backing: String::new(),
            plain: Some("/".into()),
        };
        let mut stack = Vec::new();
        self.check_dir(root, Some(self.names.root_iv()), &root_loc, 0, &mut stack);
        while let Some(p) = stack.pop() {
            if p.depth > MAX_DEPTH {
                self.problem(
                    ProblemKind::TooDeep,
                    &p.loc,
                    format!("directory nested deeper than {MAX_DEPTH} levels; not checked"),
                );
                continue;
            }
            let fd = match store::open_dir_path(&*p.parent, &store::cstr(&p.entry)) {
                Ok(fd) => fd,
                Err(e) => {
                    self.problem(
                        ProblemKind::DirUnreadable,
                        &p.loc,
                        format!("cannot open directory: {e}"),
                    );
                    continue;
                }
            };
            let iv = self.dir_iv(&fd, &p);
            self.check_dir(Rc::new(fd), iv, &p.loc, p.depth, &mut stack);
        }
    }

    /// Reads (or, with repair, recreates) the IV of a non-root directory.
    fn dir_iv(&mut self, fd: &OwnedFd, p: &Pending) -> Option<DirIv> {
        match store::read_dir_iv(fd) {
            Ok(iv) => Some(iv),
            Err(Errno::NOENT) => {
                let has_entries = match dir_has_veilfs_entries(fd) {
                    Ok(b) => b,
                    Err(e) => {
                        self.problem(
                            ProblemKind::DirUnreadable,
                            &p.loc,
                            format!("cannot list directory: {e}"),
                        );
                        return None;
                    }
                };
                let derivable = match (&p.parent_iv, &p.plain_name) {
                    (Some(piv), Some(name)) => Some(self.names.new_dir_iv(piv, name)),
                    _ => None,
                };
                if has_entries || derivable.is_none() {
                    self.problem(
                        ProblemKind::DirIvMissing,
                        &p.loc,
                        format!(
                            "directory IV missing: names in {} cannot be decrypted",
                            p.loc.describe_dir()
                        ),
                    );
                    return None;
                }
                let iv = derivable.expect("checked above");
                let idx = self.problem(
                    ProblemKind::DirIvMissing,
                    &p.loc,
                    "directory IV missing (the directory is empty, so it can be recreated)",
                );
                if self.repair {
                    match store::write_dir_iv(fd, &iv) {
                        Ok(()) => self.repaired(idx, "recreated veilfs.diriv"),
                        Err(e) => {
                            self.report.problems[idx].message +=
                                &format!("; could not recreate it: {e}");
                            return None;
                        }
                    }
                }
                Some(iv)
            }
            Err(Errno::LOOP) => {
                self.problem(
                    ProblemKind::DirIvInvalid,
                    &p.loc,
                    "veilfs.diriv is a symlink (not followed): names in this directory cannot be decrypted",
                );
                None
            }
            Err(e) => {
                self.problem(
                    ProblemKind::DirIvInvalid,
                    &p.loc,
                    format!(
                        "directory IV damaged (unreadable or not 16 bytes: {e}): names in {} cannot be decrypted",
                        p.loc.describe_dir()
                    ),
                );
                None
            }
        }
    }

    /// Checks one directory's entries, queueing its subdirectories.
    fn check_dir(
        &mut self,
        fd: Rc<OwnedFd>,
        iv: Option<DirIv>,
        loc: &Loc,
        depth: usize,
        stack: &mut Vec<Pending>,
    ) {
        self.report.stats.dirs += 1;
        let names = match read_names(&fd) {
            Ok(n) => n,
            Err(e) => {
                self.problem(
                    ProblemKind::DirUnreadable,
                    loc,
                    format!("cannot list directory: {e}"),
                );
                return;
            }
        };
        let mut entries: Vec<String> = Vec::new();
        let mut long_entries: HashSet<String> = HashSet::new();
        let mut records: BTreeSet<String> = BTreeSet::new();
        let mut target_records: BTreeSet<String> = BTreeSet::new();
        let mut referenced_targets: HashSet<String> = HashSet::new();
        let mut iv_copies: Vec<String> = Vec::new();
        for name in names {
            let name = match String::from_utf8(name) {
                Ok(name) => name,
                Err(e) => {
                    let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    self.report.foreign.push(loc.child(&lossy, None).backing);
                    continue;
                }
            };
            match classify_entry(&name) {
                EntryKind::Regular(_) => entries.push(name),
                EntryKind::Long(_) => {
                    long_entries.insert(name.clone());
                    entries.push(name);
                }
                EntryKind::LongRecord => {
                    records.insert(name);
                }
                EntryKind::LongTargetRecord => {
                    target_records.insert(name);
                }
                EntryKind::Metadata => {
                    if conflict::is_dir_iv_copy(&name) {
                        iv_copies.push(name);
                    }
                }
                EntryKind::Foreign => {
                    if conflict::is_dir_iv_copy(&name) {
                        iv_copies.push(name.clone());
                    }
                    if let Some(iv) = &iv
                        && let Err(r) =
                            crate::store::resolve::examine(fd.as_fd(), iv, self.names, &name)
                    {
                        self.problem(
                            ProblemKind::ConflictCopyRejected,
                            &loc.child(&name, None),
                            format!(
                                "looks like a sync-client conflict copy in {} but is not shown: \
                                 {} (possible tampering; veilfs leaves it in place)",
                                loc.describe_dir(),
                                r.reason
                            ),
                        );
                    }
                    self.report.foreign.push(loc.child(&name, None).backing);
                }
            }
        }

        // Records whose entry is gone.
        for record in &records {
            let entry = record
                .strip_suffix(".name")
                .expect("classified as a record");
            if long_entries.contains(entry) {
                continue;
            }
            let rloc = loc.child(record, None);
            let idx = self.problem(
                ProblemKind::LongNameRecordOrphan,
                &rloc,
                format!(
                    "long-name record without its entry in {}",
                    loc.describe_dir()
                ),
            );
            if self.repair {
                let c = store::cstr(record);
                match store::lstat_at(&*fd, &c) {
                    Ok(st) if Kind::from_stat(&st) == Kind::File => {
                        match rustix::fs::unlinkat(&*fd, &c, AtFlags::empty()) {
                            Ok(()) => self.repaired(idx, "removed the orphan long-name record"),
                            Err(e) => {
                                self.report.problems[idx].message +=
                                    &format!("; could not remove it: {e}");
                            }
                        }
                    }
                    Ok(_) => {
                        self.report.problems[idx].message +=
                            "; not removed: it is not a regular file";
                    }
                    Err(e) => {
                        self.report.problems[idx].message += &format!("; could not remove it: {e}");
                    }
                }
            }
        }

        // IVs of copies of veilfs.diriv made when two devices created this
        // directory (docs/FORMAT.md §6).
        iv_copies.sort();
        let secondary = match &iv {
            Some(iv) if !iv_copies.is_empty() => store::secondary_dir_ivs(&*fd, iv, &iv_copies),
            _ => Vec::new(),
        };
        entries.sort();
        let mut subdirs = Vec::new();
        for entry in entries {
            let plain_name =
                iv.and_then(|iv| self.decrypt_entry_name(&fd, &iv, &secondary, &entry, loc));
            let eloc = loc.child(&entry, plain_name.as_deref());
            let c = store::cstr(&entry);
            let st = match store::lstat_at(&*fd, &c) {
                Ok(st) => st,
                Err(e) if store::is_not_found(e) => continue,
                Err(e) => {
                    self.problem(ProblemKind::Unreadable, &eloc, format!("cannot stat: {e}"));
                    continue;
                }
            };
            match Kind::from_stat(&st) {
                Kind::Dir => subdirs.push(Pending {
                    parent: fd.clone(),
                    parent_iv: iv,
                    entry,
                    plain_name,
                    loc: eloc,
                    depth: depth + 1,
                }),
                Kind::File => {
                    self.check_file(&fd, &c, &st, &eloc);
                    self.progress.files_done += 1;
                    self.tick();
                }
                Kind::Symlink => {
                    self.report.stats.symlinks += 1;
                    if let Some(record) = self.check_symlink(&fd, iv.as_ref(), &c, &eloc) {
                        referenced_targets.insert(record);
                    }
                }
                _ => self.report.stats.special += 1,
            }
        }
        // Long symlink-target records whose symlink is gone (a rename to
        // another directory leaves one behind, as for long names).
        for record in target_records.difference(&referenced_targets.iter().cloned().collect()) {
            let rloc = loc.child(record, None);
            let idx = self.problem(
                ProblemKind::LongNameRecordOrphan,
                &rloc,
                format!(
                    "long symlink-target record without its symlink in {}",
                    loc.describe_dir()
                ),
            );
            if self.repair {
                match rustix::fs::unlinkat(&*fd, store::cstr(record).as_c_str(), AtFlags::empty()) {
                    Ok(()) => self.repaired(idx, "removed the orphan long symlink-target record"),
                    Err(e) => {
                        self.report.problems[idx].message += &format!("; could not remove it: {e}");
                    }
                }
            }
        }
        // Visited in listing order.
        stack.extend(subdirs.into_iter().rev());
    }

    /// Decrypts one entry's name, reporting what fails.
    fn decrypt_entry_name(
        &mut self,
        fd: &OwnedFd,
        iv: &DirIv,
        secondary: &[DirIv],
        entry: &str,
        dir: &Loc,
    ) -> Option<Vec<u8>> {
        let eloc = dir.child(entry, None);
        let encoded = match classify_entry(entry) {
            EntryKind::Long(_) => match store::read_long_record(fd, entry) {
                Ok(full) => full,
                Err(e) => {
                    let (kind, why) = match e {
                        Errno::NOENT => (
                            ProblemKind::LongNameRecordMissing,
                            "its long-name record is missing".to_string(),
                        ),
                        Errno::LOOP => (
                            ProblemKind::LongNameRecordInvalid,
                            "its long-name record is a symlink (not followed)".to_string(),
                        ),
                        Errno::IO => (
                            ProblemKind::LongNameRecordInvalid,
                            "its long-name record does not match the entry's hash".to_string(),
                        ),
                        e => (
                            ProblemKind::LongNameRecordInvalid,
                            format!("its long-name record is unreadable: {e}"),
                        ),
                    };
                    self.problem(
                        kind,
                        &eloc,
                        format!(
                            "name of an entry in {} cannot be decrypted: {why}",
                            dir.describe_dir()
                        ),
                    );
                    return None;
                }
            },
            _ => entry.to_string(),
        };
        let decrypted = self.names.decrypt_name(iv, &encoded).or_else(|e| {
            secondary
                .iter()
                .find_map(|iv2| self.names.decrypt_name(iv2, &encoded).ok())
                .ok_or(e)
        });
        match decrypted {
            Ok(plain) => Some(plain),
            Err(e) => {
                let why = match e {
                    NameError::Unauthentic => {
                        "it fails authentication (tampered, or moved here from another directory)"
                    }
                    NameError::BadEncoding => {
                        "it is not a valid encrypted name (bad base64 or length)"
                    }
                    _ => "it decrypts to an invalid name (bad padding or too long)",
                };
                self.problem(
                    name_problem(&e),
                    &eloc,
                    format!(
                        "name of an entry in {} does not decrypt: {why}",
                        dir.describe_dir()
                    ),
                );
                None
            }
        }
    }

    /// Checks one symlink's target in the directory with IV `iv` (unknown
    /// when that directory's IV is missing: not decrypted then); returns
    /// the long-target record it points to, if any (docs/FORMAT.md §7).
    fn check_symlink(
        &mut self,
        dir: &OwnedFd,
        iv: Option<&DirIv>,
        c: &std::ffi::CStr,
        loc: &Loc,
    ) -> Option<String> {
        match rustix::fs::readlinkat(dir, c, Vec::new()) {
            Ok(link) => {
                let record = crate::names::long_target_record(link.as_bytes()).map(str::to_string);
                let stored = match &record {
                    None => link.into_bytes(),
                    Some(r) => match store::read_long_target_record(dir, r) {
                        Ok(sealed) => sealed,
                        Err(e) => {
                            self.problem(
                                ProblemKind::SymlinkTargetInvalid,
                                loc,
                                format!(
                                    "the record {r} of its long target is missing or damaged ({e}); not followed"
                                ),
                            );
                            return record;
                        }
                    },
                };
                // The directory's missing IV is reported already.
                let Some(iv) = iv else {
                    return record;
                };
                if let Err(e) = self.names.decrypt_symlink_target(iv, &stored) {
                    self.problem(
                        ProblemKind::SymlinkTargetInvalid,
                        loc,
                        format!(
                            "symlink target does not decrypt ({e}): tampered, or planted by someone without the key; not followed"
                        ),
                    );
                }
                record
            }
            Err(e) => {
                self.problem(
                    ProblemKind::Unreadable,
                    loc,
                    format!("cannot read symlink: {e}"),
                );
                None
            }
        }
    }

    /// Checks header and every chunk of one regular file.
    fn check_file(&mut self, dir: &OwnedFd, c: &std::ffi::CStr, lst: &rustix::fs::Stat, loc: &Loc) {
        self.report.stats.files += 1;
        let fd = match openat(
            dir,
            c,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if store::is_not_found(e) => return,
            Err(e) => {
                self.problem(ProblemKind::Unreadable, loc, format!("cannot open: {e}"));
                return;
            }
        };
        let st = match store::stat_fd(&fd) {
            Ok(st) => st,
            Err(e) => {
                self.problem(ProblemKind::Unreadable, loc, format!("cannot stat: {e}"));
                return;
            }
        };
        if Kind::from_stat(&st) != Kind::File || st.st_ino != lst.st_ino {
            // Replaced while we looked: nothing stable to check.
            return;
        }
        if st.st_nlink > 1 && !self.seen_inodes.insert((st.st_dev, st.st_ino)) {
            self.report.stats.hard_links += 1;
            self.progress.bytes_done += st.st_size as u64;
            return;
        }
        let size = st.st_size as u64;
        self.report.stats.backing_bytes += size;
        if size == 0 {
            return;
        }
        let layout = self.content.layout();
        let mut hbuf = [0u8; HEADER_LEN];
        let got = match pread_full(&fd, &mut hbuf, 0) {
            Ok(n) => n,
            Err(e) => {
                self.problem(ProblemKind::Unreadable, loc, format!("read error: {e}"));
                return;
            }
        };
        let header = match FileHeader::parse(&hbuf[..got], layout) {
            Ok(h) => h,
            Err(e) => {
                self.problem(
                    ProblemKind::HeaderInvalid,
                    loc,
                    format!("{e}; no part of the file can be read"),
                );
                self.progress.bytes_done += size;
                return;
            }
        };
        let journal = self.journal.clone();
        let ours: Vec<&crate::journal::Record> = journal
            .iter()
            .filter(|r| r.header == Some(*header.as_bytes()))
            .collect();
        let mut size = size;
        if self.repair && !ours.is_empty() {
            let target = RepairTarget {
                dir,
                name: c,
                dev: st.st_dev,
                ino: st.st_ino,
            };
            match self
                .reopen_for_repair(&target)
                .and_then(|rw| crate::cryptfile::recover_file(&rw, self.content, &ours))
            {
                Ok(Some(r)) if r != Default::default() => {
                    let idx = self.problem(
                        ProblemKind::CrashRecoverable,
                        loc,
                        "a crash cut a write to this file; the rewrite journal holds what it changed",
                    );
                    self.repaired(
                        idx,
                        format!(
                            "replayed the rewrite journal: {} chunk(s) restored, {} torn append(s) cut back, {} stale flag(s) re-sealed",
                            r.chunks_restored, r.tails_cut, r.stale_flags_resealed
                        ),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    self.problem(
                        ProblemKind::Unreadable,
                        loc,
                        format!("cannot replay the rewrite journal: {e}"),
                    );
                }
            }
            size = store::stat_fd(&fd).map_or(size, |s| s.st_size as u64);
        }
        let size = size;
        if !layout.is_valid_cipher_size(size) {
            self.problem(
                ProblemKind::InvalidSize,
                loc,
                format!(
                    "backing size {size} is not a size veilfs writes: truncated inside a chunk, or bytes were appended"
                ),
            );
        }

        let stored = layout.stored_chunk_len() as u64;
        let body = size - HEADER_LEN as u64;
        let n = body.div_ceil(stored);
        let per_step = (READ_STEP as u64 / stored).max(1);
        let mut diags: Vec<(u64, ChunkDiag)> = Vec::new();
        // Chunks that authenticated real data (holes prove nothing).
        let mut authentic = 0u64;
        let mut last_data = None;
        let mut holes = 0u64;
        let mut i = 0u64;
        let mut buf = std::mem::take(&mut self.read_buf);
        while i < n {
            let off = layout.chunk_cipher_start(i);
            // Whole middle chunks inside a sparse hole are holes: skip them
            // without reading.
            let data_at = match rustix::fs::seek(&fd, SeekFrom::Data(off)) {
                Ok(d) => d,
                Err(Errno::NXIO) => size,
                Err(_) => off,
            };
            if data_at > off {
                let skip = ((data_at - off) / stored).min(n - 1 - i);
                if skip > 0 {
                    i += skip;
                    holes += skip;
                    self.report.stats.chunks += skip;
                    self.progress.bytes_done += skip * stored;
                    continue;
                }
            }
            let count = per_step.min(n - i);
            let want = (layout.chunk_cipher_start(i + count).min(size) - off) as usize;
            buf.resize(want, 0);
            let got = match pread_full(&fd, &mut buf, off) {
                Ok(g) => g,
                Err(e) => {
                    self.problem_chunks(
                        ProblemKind::Unreadable,
                        loc,
                        Some(i..i + count),
                        format!("read error: {e}"),
                    );
                    break;
                }
            };
            if got < want {
                // Shrunk while we read: check what is there.
                buf.truncate(got);
            }
            for k in 0..count {
                let begin = (k * stored) as usize;
                if begin >= buf.len() {
                    break;
                }
                let end = (begin + stored as usize).min(buf.len());
                let index = i + k;
                self.report.stats.chunks += 1;
                match crate::cryptfile::diagnose_chunk(
                    self.content,
                    &header,
                    index,
                    n,
                    &buf[begin..end],
                    &mut self.plain_buf,
                    true,
                ) {
                    ChunkDiag::Data(_) => {
                        authentic += 1;
                        last_data = Some(index);
                    }
                    ChunkDiag::Hole => holes += 1,
                    d => diags.push((index, d)),
                }
            }
            self.progress.bytes_done += want as u64;
            self.tick();
            i += count;
        }
        self.read_buf = buf;
        if size > HEADER_LEN as u64 {
            // Account for the header in the progress.
            self.progress.bytes_done += HEADER_LEN as u64;
        }
        if holes > 0 {
            self.report.stats.holes += holes;
            self.report.files_with_holes.push(FileHoles {
                path: loc.plain.clone().unwrap_or_else(|| loc.backing.clone()),
                path_is_plain: loc.plain.is_some(),
                backing_path: loc.backing.clone(),
                holes,
                chunks: n,
            });
        }
        if diags.is_empty() {
            return;
        }
        if authentic == 0
            && diags.len() >= 2
            && diags
                .iter()
                .all(|(_, d)| matches!(d, ChunkDiag::Unauthentic | ChunkDiag::TornTail))
        {
            self.problem_chunks(
                ProblemKind::HeaderMismatch,
                loc,
                Some(0..n),
                format!(
                    "none of the {n} chunks authenticates against the file header: the header was replaced or damaged (or every chunk is)"
                ),
            );
            return;
        }
        // A crash the journal covers is not damage: report it as such.
        if !self.journal.is_empty() {
            let new_files = journal
                .iter()
                .any(|r| r.header.is_none() && r.name_op.is_none());
            let mut rest = Vec::new();
            for (index, d) in diags {
                let at = layout.chunk_cipher_start(index);
                let covered = crate::journal::covers(&journal, &header, at, d)
                    || (d == ChunkDiag::TornTail && new_files)
                    || (d == ChunkDiag::StaleLast && !ours.is_empty());
                if covered {
                    self.problem_chunks(
                        ProblemKind::CrashRecoverable,
                        loc,
                        Some(index..index + 1),
                        format!(
                            "chunk {index} was being written when a crash struck; the rewrite journal recovers it (mount the vault or run veilfs fsck --repair)"
                        ),
                    );
                } else {
                    rest.push((index, d));
                }
            }
            diags = rest;
            if diags.is_empty() {
                return;
            }
        }
        let target = RepairTarget {
            dir,
            name: c,
            dev: st.st_dev,
            ino: st.st_ino,
        };
        let diags = self.zero_tail(&target, &header, n, diags, last_data, loc);
        self.report_chunks(&target, &header, n, diags, loc);
    }

    fn report_chunks(
        &mut self,
        target: &RepairTarget<'_>,
        header: &FileHeader,
        n: u64,
        diags: Vec<(u64, ChunkDiag)>,
        loc: &Loc,
    ) {
        // Coalesce consecutive plain-unauthentic chunks into one problem.
        let mut run: Option<Range<u64>> = None;
        let flush = |this: &mut Self, run: &mut Option<Range<u64>>| {
            if let Some(r) = run.take() {
                let last_bad = r.end == n;
                let what = if r.end - r.start == 1 {
                    format!("chunk {}", r.start)
                } else {
                    format!("chunks {}..={}", r.start, r.end - 1)
                };
                let msg = if r.start == 0 && last_bad {
                    format!(
                        "{what} failed authentication (changed, copied from another file, truncated, or the file header was replaced)"
                    )
                } else if last_bad {
                    format!(
                        "{what} failed authentication (changed, copied from another file, or the file was truncated inside its last chunk)"
                    )
                } else {
                    format!("{what} failed authentication (changed or copied from another file)")
                };
                this.problem_chunks(ProblemKind::ChunkUnauthentic, loc, Some(r), msg);
            }
        };
        for (index, d) in diags {
            if d == ChunkDiag::Unauthentic {
                match &mut run {
                    Some(r) if r.end == index => r.end = index + 1,
                    _ => {
                        flush(self, &mut run);
                        run = Some(index..index + 1);
                    }
                }
                continue;
            }
            flush(self, &mut run);
            let chunks = Some(index..index + 1);
            match d {
                ChunkDiag::Unauthentic | ChunkDiag::Data(_) | ChunkDiag::Hole => unreachable!(),
                ChunkDiag::Misplaced(j) => {
                    self.problem_chunks(
                        ProblemKind::ChunkMisplaced,
                        loc,
                        chunks,
                        format!(
                            "chunk {index} is chunk {j} of this file: chunks were swapped or moved"
                        ),
                    );
                }
                ChunkDiag::Truncated => {
                    self.problem_chunks(
                        ProblemKind::Truncated,
                        loc,
                        chunks,
                        format!(
                            "truncated at a chunk boundary: chunk {index} is not the file's last chunk; the data after it is lost"
                        ),
                    );
                }
                ChunkDiag::BadLength(len) => {
                    self.problem_chunks(
                        ProblemKind::InvalidSize,
                        loc,
                        chunks,
                        format!(
                            "chunk {index} is only {len} bytes, shorter than a chunk's {CHUNK_OVERHEAD}-byte overhead"
                        ),
                    );
                }
                ChunkDiag::TornTail => {
                    let keep = index * self.content.layout().chunk_size() as u64;
                    let idx = self.problem_chunks(
                        ProblemKind::TornTail,
                        loc,
                        chunks,
                        format!(
                            "chunk {index}, the last, was cut off by a crash while the file grew; its bytes were never durable (repairable with --repair: the file then ends at byte {keep}, every readable byte is kept)"
                        ),
                    );
                    if self.repair {
                        let outcome = self.reopen_for_repair(target).and_then(|fd| {
                            crate::cryptfile::drop_torn_tail(&fd, self.content, header, index)
                        });
                        self.chunk_repaired(idx, outcome, || {
                            format!("dropped the cut chunk {index}; the file ends at byte {keep}")
                        });
                    }
                }
                ChunkDiag::StaleLast => {
                    let idx = self.problem_chunks(
                        ProblemKind::StaleLastFlag,
                        loc,
                        chunks,
                        format!(
                            "chunk {index} is still sealed as the last chunk: an append was interrupted (repairable with --repair, no data is lost)"
                        ),
                    );
                    if self.repair {
                        let outcome = self.reopen_for_repair(target).and_then(|fd| {
                            crate::cryptfile::reseal_stale(&fd, self.content, header, index)
                        });
                        self.chunk_repaired(idx, outcome, || {
                            format!("re-sealed chunk {index} as a middle chunk")
                        });
                    }
                }
            }
        }
        flush(self, &mut run);
    }

    /// Handles a stale last chunk that nothing authentic follows (issue 13,
    /// finding 4). Re-sealing it as a middle chunk, as for an interrupted
    /// append, would make whatever follows it authentic: after `truncate -s
    /// 1M` on a small file, a megabyte of zeros the file never held. So
    /// the file is reported as a possible tampering and, with `--repair`,
    /// cut right after that chunk, which keeps every authentic byte; only
    /// `keep_zero_tail` keeps the zeros. Returns the diagnoses left to
    /// report as usual.
    fn zero_tail(
        &mut self,
        target: &RepairTarget<'_>,
        header: &FileHeader,
        n: u64,
        diags: Vec<(u64, ChunkDiag)>,
        last_data: Option<u64>,
        loc: &Loc,
    ) -> Vec<(u64, ChunkDiag)> {
        let stale = diags
            .iter()
            .filter(|(_, d)| *d == ChunkDiag::StaleLast)
            .map(|&(i, _)| i)
            .max();
        let Some(s) = stale else { return diags };
        let nothing_real_after = last_data.is_none_or(|d| d < s)
            && diags.iter().all(|(i, d)| {
                *i <= s
                    || matches!(
                        d,
                        ChunkDiag::Unauthentic | ChunkDiag::TornTail | ChunkDiag::BadLength(_)
                    )
            });
        if !nothing_real_after || self.keep_zero_tail {
            return diags;
        }
        let idx = self.problem_chunks(
            ProblemKind::ZeroTail,
            loc,
            Some(s..n),
            format!(
                "chunk {s} is still sealed as the file's last chunk and nothing authentic follows it: \
                 the {} chunks after it are zeros or damaged. veilfs never writes that; an append was \
                 interrupted, or someone with access to the backing directory appended zeros (possible \
                 tampering). --repair cuts the file after chunk {s}, keeping every authentic byte; \
                 add --keep-zero-tail to keep the zeros instead",
                n - s - 1
            ),
        );
        if self.repair {
            let outcome = self
                .reopen_for_repair(target)
                .and_then(|fd| crate::cryptfile::cut_after_stale(&fd, self.content, header, s));
            self.chunk_repaired(idx, outcome, || {
                format!("cut the file after chunk {s}, its last authentic chunk")
            });
        }
        diags.into_iter().filter(|&(i, _)| i < s).collect()
    }

    /// Reopens the checked entry for writing, again without following a
    /// symlink, and makes sure it is still the inode that was checked.
    fn reopen_for_repair(&self, target: &RepairTarget<'_>) -> io::Result<OwnedFd> {
        let rw = openat(
            target.dir,
            target.name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = store::stat_fd(&rw)?;
        if Kind::from_stat(&st) != Kind::File || (st.st_dev, st.st_ino) != (target.dev, target.ino)
        {
            return Err(io::Error::other("the file changed during the check"));
        }
        Ok(rw)
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
