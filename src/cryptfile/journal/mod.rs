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

use crate::content::{FileHeader, HEADER_LEN};
use crate::store;

mod record;
mod recover;

use record::*;
pub use record::{Intent, NameOp, Record, encode, parse_all};
pub use recover::{Recovered, covers, recover};

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
/// Records at least this large are written with O_DIRECT, straight from
/// the daemon's buffer to the disk: copying megabytes into the page cache
/// (fresh pages of a sparse file, each allocated and reserved on the way)
/// cost the daemon as much as the data write itself, and the fdatasync
/// before the app's next fsync would then write them all again.
const DIRECT_MIN: usize = 64 << 10;
/// O_DIRECT wants the file offset, the length and the buffer aligned.
const DIRECT_ALIGN: usize = 4096;

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
        let data = match seek(f, SeekFrom::Data(at)) {
            Ok(data) => data,
            // No data past `at`.
            Err(rustix::io::Errno::NXIO) => break,
            // A file system that cannot tell: read it all.
            Err(_) => {
                end = size;
                break;
            }
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
    /// The same files opened with O_DIRECT, where the file system allows
    /// it (not tmpfs), for large records ([`DIRECT_MIN`]).
    direct: [Option<File>; 2],
    /// Held shared by each writer from its record until its data write
    /// is done; held exclusively to swap the active file, so that a swap
    /// waits for every write the old file protects.
    active: RwLock<Active>,
    /// Next free offset in the active file.
    end: AtomicU64,
    /// Cleared when the file system refuses an O_DIRECT write.
    direct_works: AtomicBool,
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
        let file = &inner.files[guard.index];
        let record_end = match &inner.direct[guard.index] {
            Some(direct) if total >= DIRECT_MIN && inner.direct_works.load(Ordering::Relaxed) => {
                // A page-aligned slot of its own: buffered records share
                // no page with it. Zeros pad it; readers skip them.
                let padded = total.next_multiple_of(DIRECT_ALIGN);
                let reserved = inner
                    .end
                    .fetch_add((padded + DIRECT_ALIGN) as u64, Ordering::Relaxed);
                let at = reserved.next_multiple_of(DIRECT_ALIGN as u64);
                if let Err(e) = write_direct(direct, seq, intent, total, padded, at) {
                    if e.raw_os_error() == Some(libc::EINVAL) {
                        // The file system took O_DIRECT at open but not
                        // for this write: from now on, the page cache.
                        inner.direct_works.store(false, Ordering::Relaxed);
                        log::debug!(
                            "journal {}: O_DIRECT write refused: {e}",
                            inner.dir.display()
                        );
                    }
                    write_buffered(file, seq, intent, total, at)?;
                }
                at + padded as u64
            }
            _ => {
                let at = inner.end.fetch_add(total as u64, Ordering::Relaxed);
                write_buffered(file, seq, intent, total, at)?;
                at + total as u64
            }
        };
        inner.dirty.store(true, Ordering::Release);
        if record_end > inner.rotate_at {
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

/// Writes a record through the page cache, in one pwritev.
fn write_buffered(
    f: &File,
    seq: u64,
    intent: &Intent<'_>,
    total: usize,
    at: u64,
) -> io::Result<()> {
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
        store::pwritev_full(f, &slices[..intent.images.len() + 2], at)
    })
}

/// Writes a record with O_DIRECT into the `padded`-byte slot at `at`
/// (both aligned to [`DIRECT_ALIGN`]), zeros after it.
fn write_direct(
    direct: &File,
    seq: u64,
    intent: &Intent<'_>,
    total: usize,
    padded: usize,
    at: u64,
) -> io::Result<()> {
    DIRECT_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let out = aligned(&mut buf, padded);
        let mut k = META.with(|meta| {
            let mut meta = meta.borrow_mut();
            encode_meta(seq, intent, 0, total, &mut meta);
            out[..meta.len()].copy_from_slice(&meta);
            meta.len()
        });
        let sum = checksum(&out[..k]);
        for (_, bytes) in intent.images {
            out[k..k + bytes.len()].copy_from_slice(bytes);
            k += bytes.len();
        }
        out[k..k + SUM_LEN].copy_from_slice(&sum);
        out[k + SUM_LEN..].fill(0);
        store::pwrite_full(direct, out, at)
    })
}

/// The first `len` bytes of `buf` at a [`DIRECT_ALIGN`]-aligned address.
fn aligned(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len + DIRECT_ALIGN {
        buf.resize(len + DIRECT_ALIGN, 0);
    }
    let skip = buf.as_ptr().align_offset(DIRECT_ALIGN);
    &mut buf[skip..skip + len]
}

thread_local! {
    static META: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static DIRECT_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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
        let open_direct = |name: &str| {
            File::options()
                .write(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_DIRECT)
                .open(dir.join(name))
                .ok()
        };
        let direct = [open_direct(FILES[0]), open_direct(FILES[1])];
        let _ = std::fs::remove_file(dir.join("journal.unplaced.done"));
        rustix::fs::fsync(rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)?;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            files,
            direct,
            active: RwLock::new(Active { index: 0 }),
            end: AtomicU64::new(0),
            direct_works: AtomicBool::new(true),
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

    /// Whether the journal holds a record of `file` that no fsync of it
    /// has made moot since ([`Journal::synced`]).
    pub fn holds_unsynced(&self, file: u64) -> bool {
        let Some(inner) = &self.0 else { return false };
        let synced = inner.synced.lock().unwrap().get(&file).copied();
        inner.touched.iter().any(|touched| {
            touched
                .lock()
                .unwrap()
                .get(&file)
                .is_some_and(|&seq| synced.is_none_or(|mark| seq >= mark))
        })
    }

    /// Whether records were written since the journal was last made
    /// durable.
    pub fn unsynced(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|inner| inner.dirty.load(Ordering::Acquire))
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

/// Paths of the journal's files, for messages.
pub fn describe(dir: &Path) -> String {
    dir.as_os_str().as_bytes().escape_ascii().to_string()
}

#[cfg(test)]
mod crash_points;
