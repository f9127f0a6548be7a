//! The rewrite journal: what makes a chunk rewritten in place crash-atomic.
//!
//! A sealed chunk (4096 + 28 bytes) always spans a page boundary, and a
//! crash (SIGKILL of the daemon cuts a `pwrite` between pages; a power cut
//! writes some pages of a file and not others) can leave a chunk that is
//! half old, half new. Neither half authenticates, so the chunk's old
//! bytes, which an earlier fsync may have made durable, would be lost with
//! the new ones. Before the chunk writer changes a byte that is already in
//! a backing file (a chunk rewritten in place, a size that shrinks or
//! grows), it writes a record here: the backing path, the file header,
//! the old backing size and a sealed version of every chunk it is about to
//! rewrite in place (the new one for a write, the old one for a
//! truncation). Recovery ([`recover`]) puts a recorded version back where
//! a chunk no longer authenticates, and cuts a torn append back to the old
//! size. See docs/FORMAT.md §10 for the record layout and
//! docs/THREAT_MODEL.md §3 for the guarantee.
//!
//! The journal lives outside CIPHERDIR (in the user's state directory), so
//! a sync client never sees it churn. Two files alternate: records go to
//! the active one; once it is large, the other becomes active, after it is
//! emptied, which waits until every write its records protected is durable
//! (fsyncs of those files, else a `syncfs`). A rewrite of chunks a record
//! already holds since the file's last fsync needs none ([`Recorded`]).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use rustix::fs::{FlockOperation, Mode, OFlags};
use sha2::{Digest, Sha256};

use crate::content::{ContentCipher, FileHeader, HEADER_LEN};
use crate::cryptfile::{self, ChunkVerdict};
use crate::store;

const MAGIC: &[u8; 4] = b"VJR1";

/// magic, total length, sequence number, flags, header, old size, path
/// length: the fixed part of a record before the path.
const FIXED_LEN: usize = 4 + 4 + 8 + 1 + HEADER_LEN + 8 + 2;
const SUM_LEN: usize = 16;
/// A record never holds more than this many old chunk ranges.
const MAX_IMAGES: usize = 2;
const FLAG_HEADER: u8 = 1;
/// Bits 1-2 of the flags: what a record is about (see [`NameOp`]).
const KIND_SHIFT: u8 = 1;
const KIND_RENAME: u8 = 1;
const KIND_EXCHANGE: u8 = 2;
const KIND_UNLINK: u8 = 3;
/// The offset under which a rename's second path is stored.
const PATH_OFFSET: u64 = u64::MAX;
/// The active file is swapped for the other one past this size. Each swap
/// costs a `syncfs`; at 32 MiB, 4 KiB random overwrites swapped several
/// times a second and ran at 28k IOPS, at 512 MiB at 38-41k (e8a25f5
/// without a journal: 62k; docs/PERFORMANCE.md).
const ROTATE_AT: u64 = 512 << 20;
/// Each journal file is kept at this size (sparse until written), so that
/// a record is written inside the file rather than appended: an append
/// changes the inode's size on every record and cost 2.9 µs where a write
/// inside the file costs 1.0 µs (ext4, 4 KiB records). The slack holds
/// what writers add between the crossing of [`ROTATE_AT`] and the swap.
const FILE_SIZE: u64 = ROTATE_AT + (64 << 20);
/// How often the keeper makes new records durable, so that the kernel's
/// own write-back of the in-place rewrites they protect (after 30 s by
/// default, `vm.dirty_expire_centisecs`) finds them on disk already.
const SYNC_EVERY: Duration = Duration::from_millis(1000);

/// What a writer is about to change in one backing file.
pub struct Intent<'a> {
    /// The backing path relative to CIPHERDIR.
    pub path: &'a [u8],
    /// The file's header before the change; `None` for an empty file.
    pub header: Option<&'a FileHeader>,
    /// The backing size before the change.
    pub old_backing: u64,
    /// Backing offsets and the sealed bytes stored there now.
    pub images: &'a [(u64, &'a [u8])],
}

/// A change of names that moves records from one path to another, so
/// that recovery finds a file the mount renamed after writing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOp {
    /// `path` (a file, or a directory and everything below it) is now
    /// `to`; whatever `to` named before is gone.
    Rename { to: Vec<u8> },
    /// `path` and `with` swapped places.
    Exchange { with: Vec<u8> },
    /// The last name of `path` was removed: its records are moot.
    Unlink,
}

/// One record read back from a journal file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub path: Vec<u8>,
    pub header: Option<[u8; HEADER_LEN]>,
    pub old_backing: u64,
    pub images: Vec<(u64, Vec<u8>)>,
    /// `Some` for a record of a name change rather than of content.
    pub name_op: Option<NameOp>,
}

/// Encodes a record's fixed part, path and image table (everything the
/// checksum covers, which is everything but the image bytes).
fn encode_meta(seq: u64, intent: &Intent<'_>, kind: u8, total: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    let kind = kind << KIND_SHIFT;
    match intent.header {
        Some(h) => {
            out.push(FLAG_HEADER | kind);
            out.extend_from_slice(h.as_bytes());
        }
        None => {
            out.push(kind);
            out.extend_from_slice(&[0u8; HEADER_LEN]);
        }
    }
    out.extend_from_slice(&intent.old_backing.to_be_bytes());
    out.extend_from_slice(&(intent.path.len() as u16).to_be_bytes());
    out.extend_from_slice(intent.path);
    out.push(intent.images.len() as u8);
    for (offset, bytes) in intent.images {
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    }
}

fn record_len(intent: &Intent<'_>) -> usize {
    FIXED_LEN
        + intent.path.len()
        + 1
        + intent.images.len() * 12
        + intent.images.iter().map(|(_, b)| b.len()).sum::<usize>()
        + SUM_LEN
}

fn checksum(meta: &[u8]) -> [u8; SUM_LEN] {
    let d = Sha256::digest(meta);
    let mut s = [0u8; SUM_LEN];
    s.copy_from_slice(&d[..SUM_LEN]);
    s
}

/// Serialises a record into one buffer (used by tests and by recovery's
/// carry-over of records it could not place).
pub fn encode(seq: u64, intent: &Intent<'_>) -> Vec<u8> {
    encode_kind(seq, intent, 0)
}

fn encode_kind(seq: u64, intent: &Intent<'_>, kind: u8) -> Vec<u8> {
    let total = record_len(intent);
    let mut meta = Vec::new();
    encode_meta(seq, intent, kind, total, &mut meta);
    let sum = checksum(&meta);
    let mut out = meta;
    for (_, bytes) in intent.images {
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&sum);
    debug_assert_eq!(out.len(), total);
    out
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

/// Parses the record at the start of `buf`, if a whole valid one is there.
fn parse_one(buf: &[u8]) -> Option<(Record, usize)> {
    if buf.len() < FIXED_LEN + 1 + SUM_LEN || &buf[..4] != MAGIC {
        return None;
    }
    let total = u32::from_be_bytes(buf[4..8].try_into().unwrap()) as usize;
    if total < FIXED_LEN + 1 + SUM_LEN || total > buf.len() {
        return None;
    }
    let rec = &buf[..total];
    let seq = be_u64(&rec[8..]);
    let flags = rec[16];
    let kind = (flags >> KIND_SHIFT) & 3;
    let header: [u8; HEADER_LEN] = rec[17..17 + HEADER_LEN].try_into().unwrap();
    let old_backing = be_u64(&rec[17 + HEADER_LEN..]);
    let path_len = u16::from_be_bytes(rec[FIXED_LEN - 2..FIXED_LEN].try_into().unwrap()) as usize;
    let mut at = FIXED_LEN + path_len;
    if at + 1 > total - SUM_LEN {
        return None;
    }
    let path = rec[FIXED_LEN..at].to_vec();
    let n = rec[at] as usize;
    at += 1;
    if n > MAX_IMAGES || at + n * 12 > total - SUM_LEN {
        return None;
    }
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        let off = be_u64(&rec[at..]);
        let len = u32::from_be_bytes(rec[at + 8..at + 12].try_into().unwrap()) as usize;
        table.push((off, len));
        at += 12;
    }
    let meta_end = at;
    if meta_end + table.iter().map(|t| t.1).sum::<usize>() + SUM_LEN != total {
        return None;
    }
    if checksum(&rec[..meta_end]) != rec[total - SUM_LEN..] {
        return None;
    }
    let mut images = Vec::with_capacity(n);
    let mut second = None;
    for (off, len) in table {
        if off == PATH_OFFSET {
            second = Some(rec[at..at + len].to_vec());
        } else {
            images.push((off, rec[at..at + len].to_vec()));
        }
        at += len;
    }
    let name_op = match (kind, second) {
        (0, None) => None,
        (KIND_RENAME, Some(to)) => Some(NameOp::Rename { to }),
        (KIND_EXCHANGE, Some(with)) => Some(NameOp::Exchange { with }),
        (KIND_UNLINK, None) => Some(NameOp::Unlink),
        _ => return None,
    };
    Some((
        Record {
            seq,
            path,
            header: (flags & FLAG_HEADER != 0).then_some(header),
            old_backing,
            images,
            name_op,
        },
        total,
    ))
}

/// Every valid record in `buf`. Records are written at reserved offsets by
/// several threads, so a torn or never-written one may sit between valid
/// ones: parsing resumes at the next magic.
pub fn parse_all(buf: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        if let Some((rec, len)) = parse_one(&buf[at..]) {
            out.push(rec);
            at += len;
            continue;
        }
        at += 1;
        match buf[at..].windows(4).position(|w| w == MAGIC) {
            Some(p) => at += p,
            None => break,
        }
    }
    out
}

/// Where the journal of the vault whose CIPHERDIR is `cipherdir` (with key
/// ID `key_id`) lives: `$VEILFS_STATE_DIR`, else `$XDG_STATE_HOME/veilfs`,
/// else `~/.local/state/veilfs`, then `journal/<key id>-<inode>`. The key ID
/// tells vaults apart, the inode tells a copy of a vault from the vault.
pub fn journal_dir(cipherdir: &Path, key_id: &[u8]) -> io::Result<PathBuf> {
    journal_dir_in(&state_dir()?, cipherdir, key_id)
}

/// The journal directory of a vault under the state directory `base`.
pub fn journal_dir_in(base: &Path, cipherdir: &Path, key_id: &[u8]) -> io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(cipherdir)?.ino();
    Ok(base
        .join("journal")
        .join(format!("{}-{ino}", hex::encode(key_id))))
}

/// veilfs's state directory (see [`journal_dir`]).
pub fn state_dir() -> io::Result<PathBuf> {
    Ok(if let Some(d) = std::env::var_os("VEILFS_STATE_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("veilfs")
    } else if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        PathBuf::from(h).join(".local/state/veilfs")
    } else {
        return Err(io::Error::other(
            "no state directory: set HOME, XDG_STATE_HOME or VEILFS_STATE_DIR",
        ));
    })
}

const FILES: [&str; 2] = ["journal.0", "journal.1"];

/// Reads every record of the journal in `dir` (both files), oldest first.
pub fn read_records(dir: &Path) -> io::Result<Vec<Record>> {
    let mut all = Vec::new();
    for name in FILES.iter().chain(["journal.unplaced"].iter()) {
        match File::open(dir.join(name)) {
            Ok(f) => all.extend(parse_all(&read_written(&f)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    all.sort_by_key(|r| r.seq);
    Ok(all)
}

/// The bytes of a journal file up to the end of its last written block:
/// the files are kept large and sparse (see [`FILE_SIZE`]), and what lies
/// past the records is a hole that need not be read.
fn read_written(f: &File) -> io::Result<Vec<u8>> {
    use rustix::fs::{SeekFrom, seek};
    let size = f.metadata()?.len();
    // The last byte of data: the start of the final hole, found by
    // walking the data extents (a sparse file's holes read as zeros, so
    // stopping short only skips zeros).
    let mut end = 0u64;
    let mut at = 0u64;
    while at < size {
        let Ok(data) = seek(f, SeekFrom::Data(at)) else {
            break;
        };
        let hole = seek(f, SeekFrom::Hole(data)).unwrap_or(size);
        end = hole.min(size);
        at = hole;
    }
    let mut buf = vec![0u8; end as usize];
    let n = store::pread_full(f, &mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

struct Active {
    index: usize,
}

struct Inner {
    dir: PathBuf,
    files: [File; 2],
    /// Held shared by each writer from its record until its data write
    /// is done; held exclusively to swap the active file, so that a swap
    /// waits for every write the old file protects.
    active: RwLock<Active>,
    /// Next free offset in the active file.
    end: AtomicU64,
    /// Counts the swaps of the active file (see [`Recorded`]).
    generation: AtomicU64,
    seq: AtomicU64,
    /// Records written since the last fdatasync of the active file.
    dirty: AtomicBool,
    /// Per journal file: the sequence number of the newest record of each
    /// file (by the caller's file key) it holds.
    touched: [Mutex<HashMap<u64, u64>>; 2],
    /// Per file key: the writes that every record below this sequence
    /// number protects are durable (the file was fsynced after them).
    synced: Mutex<HashMap<u64, u64>>,
    /// Swaps that had to `syncfs` because some file had not been fsynced
    /// since its records (for tests and the debug log).
    swaps_with_syncfs: AtomicU64,
    /// [`ROTATE_AT`], smaller in tests.
    rotate_at: u64,
    /// One rotation at a time.
    rotating: Mutex<()>,
    /// Serialises fdatasync of the journal with swaps.
    sync_lock: Mutex<()>,
    /// Anchor for syncfs: the backing file system.
    backing_root: OwnedFd,
    stop: Mutex<bool>,
    wake: Condvar,
    _lock: File,
}

/// The journal of one mounted vault. `Journal::off()` keeps nothing (read
/// -only mounts, offline tools, and the test that shows what the journal
/// protects).
#[derive(Clone, Default)]
pub struct Journal(Option<Arc<Inner>>);

/// Holds the active journal file in place: a change must be recorded, or
/// covered by a record of the same generation ([`Recorded`]), and be done
/// before this is dropped (a swap of the active file waits for it).
pub struct Pending<'a> {
    inner: Option<(&'a Inner, RwLockReadGuard<'a, Active>)>,
}

impl Pending<'_> {
    /// Which turn of the active file the records written under this guard
    /// belong to; `0` for a journal that is off.
    pub fn generation(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |(inner, _)| inner.generation.load(Ordering::Relaxed))
    }

    /// Writes the record of `intent` to the active file. `file` is the
    /// caller's key for the backing file (its inode), under which it
    /// reports the file's fsyncs ([`Journal::synced`]).
    pub fn record(&self, file: u64, intent: &Intent<'_>) -> io::Result<()> {
        let Some((inner, guard)) = &self.inner else {
            return Ok(());
        };
        assert!(intent.images.len() <= MAX_IMAGES);
        let total = record_len(intent);
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
        inner.touched[guard.index]
            .lock()
            .unwrap()
            .entry(file)
            .and_modify(|s| *s = (*s).max(seq))
            .or_insert(seq);
        let at = inner.end.fetch_add(total as u64, Ordering::Relaxed);
        META.with(|meta| -> io::Result<()> {
            let mut meta = meta.borrow_mut();
            encode_meta(seq, intent, 0, total, &mut meta);
            let sum = checksum(&meta);
            let mut slices: [&[u8]; MAX_IMAGES + 2] = [&[]; MAX_IMAGES + 2];
            slices[0] = &meta;
            for (k, (_, bytes)) in intent.images.iter().enumerate() {
                slices[k + 1] = bytes;
            }
            slices[intent.images.len() + 1] = &sum;
            store::pwritev_full(
                &inner.files[guard.index],
                &slices[..intent.images.len() + 2],
                at,
            )
        })?;
        inner.dirty.store(true, Ordering::Release);
        if at + total as u64 > inner.rotate_at {
            inner.wake.notify_one();
        }
        Ok(())
    }
}

/// The full middle chunks of one file that a record of the current
/// generation already covers since the file's last fsync: a record holds
/// a version of each written after that fsync, so recovery can put back
/// an authentic chunk that keeps every fsync'd byte. A rewrite of only
/// such chunks needs no record of its own (docs/FORMAT.md §10): random
/// overwrites of a large file record each chunk once per fsync instead of
/// on every write. The owner forgets the set at each fsync of the file;
/// a truncation and a new header or path forget it too.
#[derive(Default)]
pub struct Recorded {
    generation: u64,
    header: [u8; HEADER_LEN],
    path: Vec<u8>,
    /// One bit per chunk index, up to [`Recorded::MAX_CHUNKS`].
    bits: Vec<u64>,
}

impl Recorded {
    /// Chunks past this index are recorded on every rewrite (bounds the
    /// set at 256 KiB per file: 8 GiB of 4 KiB chunks).
    const MAX_CHUNKS: u64 = 1 << 21;

    /// Called when the file's data is made durable (fsync) or reshaped:
    /// from then on every rewrite needs a record again.
    pub fn forget(&mut self) {
        self.bits = Vec::new();
    }

    fn same(&self, generation: u64, header: &FileHeader, path: &[u8]) -> bool {
        generation != 0
            && self.generation == generation
            && self.header == *header.as_bytes()
            && self.path == path
    }

    /// Whether every chunk in `chunks` is covered.
    pub fn covers(
        &self,
        generation: u64,
        header: &FileHeader,
        path: &[u8],
        chunks: std::ops::Range<u64>,
    ) -> bool {
        self.same(generation, header, path)
            && !chunks.is_empty()
            && chunks.end <= self.bits.len() as u64 * 64
            && chunks
                .clone()
                .all(|i| self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0)
    }

    /// Notes that a record of `generation` holds full middle versions of
    /// `chunks`.
    pub fn mark(
        &mut self,
        generation: u64,
        header: &FileHeader,
        path: &[u8],
        chunks: std::ops::Range<u64>,
    ) {
        if generation == 0 {
            return;
        }
        if !self.same(generation, header, path) {
            self.generation = generation;
            self.header = *header.as_bytes();
            self.path.clear();
            self.path.extend_from_slice(path);
            self.bits.clear();
        }
        let end = chunks.end.min(Self::MAX_CHUNKS);
        if chunks.start >= end {
            return;
        }
        let words = end.div_ceil(64) as usize;
        if self.bits.len() < words {
            self.bits.resize(words, 0);
        }
        for i in chunks.start..end {
            self.bits[(i / 64) as usize] |= 1 << (i % 64);
        }
    }
}

thread_local! {
    static META: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Journal {
    pub fn off() -> Journal {
        Journal(None)
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Opens (creating it, mode 0700) the journal in `dir` for writing.
    /// Records already there must have been recovered first: they are
    /// discarded. `backing_root` is any descriptor on CIPHERDIR.
    pub fn open(dir: &Path, backing_root: &impl AsFd) -> io::Result<Journal> {
        Self::open_rotating_at(dir, backing_root, ROTATE_AT)
    }

    fn open_rotating_at(
        dir: &Path,
        backing_root: &impl AsFd,
        rotate_at: u64,
    ) -> io::Result<Journal> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("lock"))?;
        rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).map_err(|_| {
            io::Error::other(format!(
                "the rewrite journal {} is in use by another veilfs process",
                dir.display()
            ))
        })?;
        let open = |name: &str| {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(dir.join(name))
        };
        let files = [open(FILES[0])?, open(FILES[1])?];
        for f in &files {
            f.set_len(FILE_SIZE)?;
        }
        let _ = std::fs::remove_file(dir.join("journal.unplaced.done"));
        rustix::fs::fsync(rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)?;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            files,
            active: RwLock::new(Active { index: 0 }),
            end: AtomicU64::new(0),
            generation: AtomicU64::new(1),
            seq: AtomicU64::new(1),
            dirty: AtomicBool::new(false),
            touched: Default::default(),
            synced: Default::default(),
            swaps_with_syncfs: AtomicU64::new(0),
            rotate_at,
            rotating: Mutex::new(()),
            sync_lock: Mutex::new(()),
            // syncfs needs a descriptor that can read, not an O_PATH one.
            backing_root: store::open_dir_read(backing_root)?,
            stop: Mutex::new(false),
            wake: Condvar::new(),
            _lock: lock,
        });
        let keeper = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("veilfs-journal".into())
            .spawn(move || keep(keeper))?;
        Ok(Journal(Some(inner)))
    }

    /// Holds the active file in place for one change: record it with
    /// [`Pending::record`] (unless a record already covers it), make it,
    /// then drop the guard.
    pub fn begin(&self) -> Pending<'_> {
        Pending {
            inner: self
                .0
                .as_deref()
                .map(|inner| (inner, inner.active.read().unwrap())),
        }
    }

    /// Writes the record of `intent` (see [`Pending::record`]). The caller
    /// makes the change it describes, then drops the returned guard.
    pub fn record(&self, file: u64, intent: &Intent<'_>) -> io::Result<Pending<'_>> {
        let pending = self.begin();
        pending.record(file, intent)?;
        Ok(pending)
    }

    /// The sequence number the next record gets. Taken while no write of
    /// `file` is under way (under the lock its writers hold), it marks the
    /// point an fsync of `file` about to start makes durable.
    pub fn mark(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |inner| inner.seq.load(Ordering::Relaxed))
    }

    /// Reports that `file` was fsynced after every write whose record has
    /// a sequence number below `mark`: those records may be reused without
    /// a `syncfs`.
    pub fn synced(&self, file: u64, mark: u64) {
        if let Some(inner) = &self.0 {
            let mut synced = inner.synced.lock().unwrap();
            let s = synced.entry(file).or_insert(0);
            *s = (*s).max(mark);
        }
    }

    /// Records a change of names made through the mount (after it
    /// succeeded), so that recovery still finds the records of `path`.
    pub fn note(&self, path: &[u8], op: &NameOp) -> io::Result<()> {
        let Some(inner) = &self.0 else {
            return Ok(());
        };
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
        let (kind, second): (u8, &[u8]) = match op {
            NameOp::Rename { to } => (KIND_RENAME, to),
            NameOp::Exchange { with } => (KIND_EXCHANGE, with),
            NameOp::Unlink => (KIND_UNLINK, &[]),
        };
        let images = [(PATH_OFFSET, second)];
        let intent = Intent {
            path,
            header: None,
            old_backing: 0,
            images: if kind == KIND_UNLINK { &[] } else { &images },
        };
        let buf = encode_kind(seq, &intent, kind);
        let guard = inner.active.read().unwrap();
        let at = inner.end.fetch_add(buf.len() as u64, Ordering::Relaxed);
        store::pwritev_full(&inner.files[guard.index], &[&buf], at)?;
        inner.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes every record written so far durable. Called before the
    /// daemon fsyncs a file for the app: the writes that fsync flushes may
    /// overwrite chunks an earlier fsync made durable, and their records
    /// must reach the disk first.
    pub fn sync(&self) -> io::Result<()> {
        match &self.0 {
            Some(inner) => inner.sync(),
            None => Ok(()),
        }
    }

    /// At a clean unmount: makes every write durable and empties the
    /// journal, so the next mount has nothing to recover.
    pub fn close(&self) -> io::Result<()> {
        let Some(inner) = &self.0 else { return Ok(()) };
        *inner.stop.lock().unwrap() = true;
        inner.wake.notify_all();
        let _swap = inner.active.write().unwrap();
        rustix::fs::syncfs(&inner.backing_root)?;
        for f in &inner.files {
            f.set_len(0)?;
            rustix::fs::fdatasync(f)?;
        }
        inner.end.store(0, Ordering::Relaxed);
        log::debug!("journal {} emptied at unmount", inner.dir.display());
        Ok(())
    }
}

impl Inner {
    fn sync(&self) -> io::Result<()> {
        if !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        let _s = self.sync_lock.lock().unwrap();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let index = self.active.read().unwrap().index;
        let res = rustix::fs::fdatasync(&self.files[index]).map_err(io::Error::from);
        if res.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        res
    }

    /// Swaps the active file for the standby once it is large. The
    /// standby's records protect writes that all completed before the last
    /// swap (a swap waits for every write under way); they may go once
    /// those writes are durable: when every file they name has been
    /// fsynced since its newest record there, as a database's checkpoints
    /// do, else after a `syncfs`. The standby is then emptied (one hole,
    /// so that writing a record never reads a page back from disk) and
    /// becomes the active file.
    fn rotate(&self) -> io::Result<()> {
        let _one = self.rotating.lock().unwrap();
        if self.end.load(Ordering::Relaxed) < self.rotate_at {
            return Ok(());
        }
        let standby = 1 - self.active.read().unwrap().index;
        let retired = {
            let touched = self.touched[standby].lock().unwrap();
            let synced = self.synced.lock().unwrap();
            touched
                .iter()
                .all(|(file, newest)| synced.get(file).is_some_and(|s| s > newest))
        };
        if !retired {
            rustix::fs::syncfs(&self.backing_root)?;
            self.swaps_with_syncfs.fetch_add(1, Ordering::Relaxed);
        }
        let _s = self.sync_lock.lock().unwrap();
        let mut active = self.active.write().unwrap();
        let old = active.index;
        // The records just closed protect writes that may not be durable
        // yet: they wait in the standby, on disk.
        rustix::fs::fdatasync(&self.files[old])?;
        self.files[standby].set_len(0)?;
        self.files[standby].set_len(FILE_SIZE)?;
        rustix::fs::fdatasync(&self.files[standby])?;
        self.touched[standby].lock().unwrap().clear();
        {
            // Only the files with records in the new standby still matter.
            let still = self.touched[old].lock().unwrap();
            self.synced
                .lock()
                .unwrap()
                .retain(|file, _| still.contains_key(file));
        }
        active.index = standby;
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.end.store(0, Ordering::Relaxed);
        self.dirty.store(false, Ordering::Release);
        log::debug!(
            "journal {}: {} emptied and active again ({})",
            self.dir.display(),
            FILES[standby],
            if retired {
                "its records were retired by fsyncs"
            } else {
                "after a syncfs"
            }
        );
        Ok(())
    }
}

/// The keeper thread: syncs new records every second and rotates the
/// files; ends when the journal is closed or dropped.
fn keep(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(inner) = inner.upgrade() else { return };
        {
            let stop = inner.stop.lock().unwrap();
            if *stop {
                return;
            }
            let (stop, _) = inner.wake.wait_timeout(stop, SYNC_EVERY).unwrap();
            if *stop {
                return;
            }
        }
        if let Err(e) = inner.sync() {
            log::warn!("journal {}: fdatasync failed: {e}", inner.dir.display());
        }
        if let Err(e) = inner.rotate() {
            log::warn!("journal {}: rotation failed: {e}", inner.dir.display());
        }
    }
}

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
fn records_by_final_path(records: &[Record]) -> std::collections::BTreeMap<Vec<u8>, Vec<&Record>> {
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
/// crash the journal covers from damage).
pub fn covers(records: &[Record], header: &FileHeader, offset: u64, verdict: ChunkVerdict) -> bool {
    let ours = |r: &&Record| r.header.as_ref() == Some(header.as_bytes());
    match verdict {
        ChunkVerdict::TornTail => records.iter().any(|r| ours(&r)),
        _ => records
            .iter()
            .filter(ours)
            .any(|r| r.images.iter().any(|(o, _)| *o == offset)),
    }
}

/// Paths of the journal's files, for messages.
pub fn describe(dir: &Path) -> String {
    dir.as_os_str().as_bytes().escape_ascii().to_string()
}

#[cfg(test)]
mod crash_points;
