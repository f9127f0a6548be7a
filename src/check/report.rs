//! What fsck finds and does: problems, repairs, statistics, progress.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

#[cfg(doc)]
use super::MAX_DEPTH;

/// What is wrong. Every kind but the ones marked "repairable" is left
/// alone by `--repair`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A directory that holds entries has no `veilfs.diriv`: their names
    /// cannot be decrypted.
    DirIvMissing,
    /// An empty directory has no `veilfs.diriv`: what a crash between a
    /// mkdir and its IV file leaves. Nothing is lost and it is not
    /// damage: the mount writes a new IV when the directory is first
    /// used, `--repair` writes it now (docs/FORMAT.md §6).
    EmptyDirIvMissing,
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
            ProblemKind::LongNameRecordOrphan
                | ProblemKind::CrashRecoverable
                | ProblemKind::EmptyDirIvMissing
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::DirIvMissing => "dir_iv_missing",
            ProblemKind::EmptyDirIvMissing => "empty_dir_iv_missing",
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
