//! Plaintext reads, writes and truncation of one encrypted backing file.
//!
//! This is the content format of docs/FORMAT.md §4 applied to a file
//! descriptor. It knows nothing of FUSE, so the mount, `veilfs cat` and
//! `veilfs fsck` share it. Callers serialise access: reads may run in
//! parallel with each other, but a write or truncate needs exclusive access
//! to the file (the FUSE layer holds a per-inode lock).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::AsFd;

use crate::cryptfile::journal::{Intent, Journal, Recorded};
use crate::store::{self, pread_full, pwrite_full};
use rustix::fs::fstat;

use crate::content::{
    CHUNK_OVERHEAD, ChunkError, ContentCipher, FileHeader, HEADER_LEN, HeaderError, Opened,
};

/// Why a read or write failed.
#[derive(Debug)]
pub enum CryptFileError {
    Io(io::Error),
    /// The header is missing or damaged: no chunk of the file can be read.
    Header(HeaderError),
    /// Chunk `index` failed authentication.
    Chunk {
        index: u64,
        error: ChunkError,
    },
}

impl fmt::Display for CryptFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptFileError::Io(e) => write!(f, "{e}"),
            CryptFileError::Header(e) => write!(f, "{e}"),
            CryptFileError::Chunk { index, error } => write!(f, "chunk {index}: {error}"),
        }
    }
}

impl std::error::Error for CryptFileError {}

impl From<io::Error> for CryptFileError {
    fn from(e: io::Error) -> Self {
        CryptFileError::Io(e)
    }
}

impl From<rustix::io::Errno> for CryptFileError {
    fn from(e: rustix::io::Errno) -> Self {
        CryptFileError::Io(e.into())
    }
}

impl CryptFileError {
    /// The errno a syscall caller should see: authentication failures are
    /// EIO, never garbage.
    pub fn errno(&self) -> i32 {
        match self {
            CryptFileError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            _ => libc::EIO,
        }
    }
}

pub type Result<T> = std::result::Result<T, CryptFileError>;

/// Per-thread buffers, reused across requests so the hot path does not
/// allocate.
#[derive(Default)]
struct Scratch {
    cipher: Vec<u8>,
    plain: Vec<u8>,
    tail: Vec<u8>,
    chunk: Vec<u8>,
    raw: Vec<u8>,
    old_last: Vec<u8>,
    results: Vec<std::result::Result<Opened, ChunkError>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Opens a chunk, also accepting a middle chunk that still carries the
/// last-chunk flag. A crash between appending new chunks and re-sealing
/// the old last one leaves exactly that; its data is authentic (this file,
/// this index), so refusing it would only turn a crash into EIO. The final
/// chunk must still carry the flag, so truncation stays detectable.
/// `veilfs fsck` reports such chunks and `--repair` re-seals them.
fn open_tolerant(
    cipher: &ContentCipher,
    header: &FileHeader,
    index: u64,
    last: bool,
    stored: &[u8],
    out: &mut [u8],
) -> std::result::Result<Opened, ChunkError> {
    match cipher.open_chunk(header, index, last, stored, out) {
        Err(ChunkError::Unauthentic) if !last => {
            let r = cipher
                .open_chunk(header, index, true, stored, out)
                .or_else(|_| {
                    cipher
                        .open_stale_short(header, index, stored, out)
                        .map(|_| Opened::Data(cipher.layout().chunk_size()))
                        .ok_or(ChunkError::Unauthentic)
                });
            if r.is_ok() {
                log::info!(
                    "chunk {index} carries a stale last-chunk flag (interrupted append); run veilfs fsck --repair"
                );
            }
            r
        }
        other => other,
    }
}

/// Grows a scratch buffer to at least `len` bytes. Buffers never shrink,
/// so steady-state requests neither allocate nor zero-fill.
fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// Requests spanning at least this many chunks are sealed or opened on
/// several cores: a 1 MiB write is 256 chunks of 4 KiB.
const PARALLEL_MIN_CHUNKS: u64 = 32;

/// Seals chunks `range` into `out` (consecutive stored chunks), splitting
/// the work across rayon's pool for large spans.
fn seal_span<'d>(
    cipher: &ContentCipher,
    header: &FileHeader,
    range: std::ops::Range<u64>,
    chunk_count: u64,
    plain_of: &(dyn Fn(u64) -> &'d [u8] + Sync),
    out: &mut [u8],
) {
    let n = range.end - range.start;
    if n >= PARALLEL_MIN_CHUNKS {
        let mid = range.start + n / 2;
        let (a, b) =
            out.split_at_mut((mid - range.start) as usize * cipher.layout().stored_chunk_len());
        rayon::join(
            || seal_span(cipher, header, range.start..mid, chunk_count, plain_of, a),
            || seal_span(cipher, header, mid..range.end, chunk_count, plain_of, b),
        );
        return;
    }
    let mut at = 0usize;
    for index in range {
        let plain = plain_of(index);
        let len = plain.len() + CHUNK_OVERHEAD;
        cipher.seal_chunk(
            header,
            index,
            index + 1 == chunk_count,
            plain,
            &mut out[at..at + len],
        );
        at += len;
    }
}

/// Opens the stored chunks in `stored` (consecutive, starting at chunk
/// `first`) into chunk-sized slots of `plain`, in parallel for large spans.
/// The final chunk is the file's last unless `more_after`.
fn open_span(
    cipher: &ContentCipher,
    header: &FileHeader,
    first: u64,
    stored: &[u8],
    more_after: bool,
    plain: &mut [u8],
    results: &mut [std::result::Result<Opened, ChunkError>],
) {
    let sl = cipher.layout().stored_chunk_len();
    let cs = cipher.layout().chunk_size();
    let n = results.len();
    if n as u64 >= PARALLEL_MIN_CHUNKS {
        let mid = n / 2;
        let (sa, sb) = stored.split_at(mid * sl);
        let (pa, pb) = plain.split_at_mut(mid * cs);
        let (ra, rb) = results.split_at_mut(mid);
        rayon::join(
            || open_span(cipher, header, first, sa, true, pa, ra),
            || open_span(cipher, header, first + mid as u64, sb, more_after, pb, rb),
        );
        return;
    }
    for (k, result) in results.iter_mut().enumerate() {
        let begin = k * sl;
        let end = (begin + sl).min(stored.len());
        let last = end == stored.len() && !more_after;
        *result = open_tolerant(
            cipher,
            header,
            first + k as u64,
            last,
            &stored[begin..end],
            &mut plain[k * cs..(k + 1) * cs],
        );
    }
}

/// The size of the backing file, from one fstat.
pub fn backing_size<Fd: AsFd>(fd: Fd) -> io::Result<u64> {
    Ok(fstat(fd)?.st_size as u64)
}

/// Reads and checks the header of a non-empty backing file.
pub fn read_header<Fd: AsFd>(fd: Fd, cipher: &ContentCipher) -> Result<Option<FileHeader>> {
    let mut buf = [0u8; HEADER_LEN];
    let n = pread_full(&fd, &mut buf, 0)?;
    if n == 0 {
        return Ok(None);
    }
    FileHeader::parse(&buf[..n], cipher.layout())
        .map(Some)
        .map_err(CryptFileError::Header)
}

/// One encrypted file: the backing fd, the vault's content cipher, and the
/// file's header once known.
pub struct CryptFile<'a, Fd: AsFd> {
    fd: Fd,
    cipher: &'a ContentCipher,
    header: Option<FileHeader>,
    journal: Option<JournalRef<'a>>,
}

/// The journal a writer records its changes in, the file's backing path
/// relative to CIPHERDIR as the records name it, and what the file's
/// records already cover.
struct JournalRef<'a> {
    journal: &'a Journal,
    /// The caller's key for the backing file (its inode).
    file: u64,
    path: &'a [u8],
    recorded: &'a mut Recorded,
}

impl<'a, Fd: AsFd> CryptFile<'a, Fd> {
    /// `header` is the cached header if the caller has one; `None` means
    /// "read it from the file when needed".
    pub fn new(fd: Fd, cipher: &'a ContentCipher, header: Option<FileHeader>) -> Self {
        CryptFile {
            fd,
            cipher,
            header,
            journal: None,
        }
    }

    /// Records every change in `journal` first (docs/FORMAT.md §10), so
    /// that a crash cannot leave a chunk with neither its old nor its new
    /// bytes. `file` keys the backing file (its inode) for the journal,
    /// `path` is where it is relative to CIPHERDIR, and `recorded` is the
    /// file's own set, kept with the file between writes; its owner calls
    /// [`Recorded::forget`] and [`Journal::synced`] at every fsync.
    pub fn with_journal(
        mut self,
        journal: &'a Journal,
        file: u64,
        path: &'a [u8],
        recorded: &'a mut Recorded,
    ) -> Self {
        if journal.is_on() {
            self.journal = Some(JournalRef {
                journal,
                file,
                path,
                recorded,
            });
        }
        self
    }

    pub fn header(&self) -> Option<FileHeader> {
        self.header
    }

    fn load_header(&mut self) -> Result<Option<FileHeader>> {
        if self.header.is_none() {
            self.header = read_header(&self.fd, self.cipher)?;
        }
        Ok(self.header)
    }

    pub fn plain_size(&self) -> io::Result<u64> {
        Ok(self.cipher.layout().plain_size(backing_size(&self.fd)?))
    }

    /// Reads up to `buf.len()` plaintext bytes at `offset`; returns how many
    /// were read (short only at end of file). A chunk that fails
    /// authentication fails the whole read with its index.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.read_at_with(offset, buf, |_, e| Err(e))
    }

    /// Like `read_at`, but `on_bad_chunk` decides what happens to a chunk
    /// that fails authentication: return `Err` to abort, or `Ok(())` to go on
    /// with that chunk's bytes left as zeros (salvage).
    pub fn read_at_with(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        mut on_bad_chunk: impl FnMut(u64, CryptFileError) -> Result<()>,
    ) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let layout = self.cipher.layout();
        let cs = layout.chunk_size() as u64;
        let stored = layout.stored_chunk_len();
        let chunks = layout.chunks_touched(offset, buf.len() as u64);
        let cipher_start = layout.chunk_cipher_start(chunks.start);
        let want = (chunks.end - chunks.start) as usize * stored;
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Scratch {
                cipher: cbuf,
                plain: pbuf,
                results,
                ..
            } = &mut *scratch;
            // One extra byte tells whether the last chunk read is the file's
            // last chunk, without an fstat.
            // A read from the start of a file whose header is not cached
            // fetches the header in the same pread.
            let with_header = chunks.start == 0 && self.header.is_none();
            let skip = if with_header { HEADER_LEN } else { 0 };
            grow(cbuf, skip + want + 1);
            let got = pread_full(
                &self.fd,
                &mut cbuf[..skip + want + 1],
                cipher_start - skip as u64,
            )?;
            if with_header {
                if got == 0 {
                    return Ok(0);
                }
                let h = FileHeader::parse(&cbuf[..got.min(HEADER_LEN)], layout)
                    .map_err(CryptFileError::Header)?;
                self.header = Some(h);
            }
            let got = got.saturating_sub(skip);
            let cbuf = &cbuf[skip..];
            if got == 0 {
                return Ok(0);
            }
            let header = match self.load_header()? {
                Some(h) => h,
                None => return Ok(0),
            };
            let more_after = got > want;
            let got = got.min(want);
            let n_chunks = got.div_ceil(stored);
            grow(pbuf, n_chunks * layout.chunk_size());
            let pbuf = &mut pbuf[..n_chunks * layout.chunk_size()];
            results.clear();
            results.resize(n_chunks, Ok(Opened::Hole));
            open_span(
                self.cipher,
                &header,
                chunks.start,
                &cbuf[..got],
                more_after,
                pbuf,
                results,
            );
            let mut produced = 0usize;
            for (k, index) in chunks.clone().take(n_chunks).enumerate() {
                let begin = k * stored;
                let end = (begin + stored).min(got);
                let slot = &mut pbuf[k * layout.chunk_size()..(k + 1) * layout.chunk_size()];
                let plain_len = match results[k] {
                    Ok(Opened::Data(n)) => n,
                    Ok(Opened::Hole) => layout.chunk_size(),
                    Err(error) => {
                        let n = (end - begin).saturating_sub(CHUNK_OVERHEAD);
                        on_bad_chunk(index, CryptFileError::Chunk { index, error })?;
                        slot[..n].fill(0);
                        n
                    }
                };
                let pbuf = &*slot;
                let chunk_start = layout.chunk_plain_start(index);
                let from = offset.max(chunk_start) - chunk_start;
                if from >= plain_len as u64 {
                    break;
                }
                let upto = (plain_len as u64).min(offset + buf.len() as u64 - chunk_start);
                let n = (upto - from) as usize;
                buf[produced..produced + n].copy_from_slice(&pbuf[from as usize..upto as usize]);
                produced += n;
                if (plain_len as u64) < cs {
                    break;
                }
            }
            Ok(produced)
        })
    }

    /// Writes `data` at plaintext `offset`, extending the file (with a
    /// sparse hole) if `offset` is past the end.
    ///
    /// A full disk never damages data written before: the space a write
    /// adds is reserved (fallocate) before any chunk is rewritten in
    /// place, so ENOSPC fails the write with the file untouched, and a
    /// write that fails after growing the file is cut back to the old size.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let layout = self.cipher.layout();
        let old_backing = backing_size(&self.fd)?;
        let old_size = layout.plain_size(old_backing);
        let new_size = old_size.max(offset + data.len() as u64);
        let new_backing = layout.cipher_size(new_size);
        // What the write stores past the old end: the chunks it seals, and
        // the old last chunk, re-sealed full when the write starts past it.
        // Not the hole between them, which stays sparse.
        let first = layout.chunks_touched(offset, data.len() as u64).start;
        let (old_count, new_count) = (layout.chunk_count(old_size), layout.chunk_count(new_size));
        let mut spans = vec![(
            layout.chunk_cipher_start(first).max(old_backing),
            new_backing,
        )];
        if old_count > 0 && new_count > old_count && first > old_count - 1 {
            let resealed =
                layout.chunk_cipher_start(old_count - 1) + layout.stored_chunk_len() as u64;
            spans.push((old_backing, resealed.min(new_backing)));
        }
        let mut reserved = false;
        for &(from, to) in spans.iter().filter(|(from, to)| to > from) {
            use rustix::fs::{FallocateFlags, fallocate};
            match fallocate(&self.fd, FallocateFlags::KEEP_SIZE, from, to - from) {
                Ok(()) => reserved = true,
                Err(e @ (rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT)) => {
                    if reserved {
                        let flags = FallocateFlags::KEEP_SIZE | FallocateFlags::PUNCH_HOLE;
                        let _ = fallocate(&self.fd, flags, old_backing, new_backing - old_backing);
                    }
                    return Err(e.into());
                }
                // Not supported here (or not a regular file): write
                // without a reservation.
                Err(_) => {}
            }
        }
        let res = self.write_unreserved(offset, data, old_backing);
        if res.is_err() {
            let now = backing_size(&self.fd).unwrap_or(old_backing);
            if now != old_backing {
                let _ = store::set_len(&self.fd, old_backing);
            }
            if reserved {
                use rustix::fs::{FallocateFlags, fallocate};
                let flags = FallocateFlags::KEEP_SIZE | FallocateFlags::PUNCH_HOLE;
                let _ = fallocate(&self.fd, flags, old_backing, new_backing - old_backing);
            }
            if old_size == 0 {
                self.header = None;
            }
        }
        res
    }

    /// The body of [`CryptFile::write_at`]; `old_backing` is the backing
    /// size the caller already read (one fstat per write, not two).
    fn write_unreserved(&mut self, offset: u64, data: &[u8], old_backing: u64) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let layout = self.cipher.layout();
        let old_size = layout.plain_size(old_backing);
        let cs = layout.chunk_size();
        let stored = layout.stored_chunk_len();
        let fresh_header = old_size == 0;
        let old_header = if fresh_header {
            None
        } else {
            self.load_header()?
        };
        let header = match old_header {
            Some(h) => h,
            None => {
                // An empty file gets a fresh header and file ID; it is
                // written with the first chunks below.
                let h = FileHeader::generate(layout);
                self.header = Some(h);
                h
            }
        };
        let end = offset + data.len() as u64;
        let new_size = old_size.max(end);
        let old_count = layout.chunk_count(old_size);
        let new_count = layout.chunk_count(new_size);
        let chunks = layout.chunks_touched(offset, data.len() as u64);
        let chunk_len = |i: u64| (new_size - layout.chunk_plain_start(i)).min(cs as u64) as usize;

        let chunk_start = |i: u64| layout.chunk_plain_start(i);
        let covered =
            |i: u64| offset <= chunk_start(i) && end >= chunk_start(i) + chunk_len(i) as u64;
        let (first, last) = (chunks.start, chunks.end - 1);
        // Chunks this write rewrites in place: first..in_place_end. Their
        // new sealed bytes go to the journal (a redo record) before any of
        // them changes, so recovery can complete a rewrite a crash cut.
        let in_place_end = (last + 1).min(old_count);
        if first < in_place_end {
            prefetch_edges(
                &self.fd,
                layout.chunk_cipher_start(first)
                    ..layout.chunk_cipher_start(in_place_end).min(old_backing),
            );
        }
        // The old last chunk stops being last once the file has grown
        // past it; unless this write rewrote it, it is sealed again as a
        // full middle chunk (zero padded).
        let reseal_old_last =
            old_count > 0 && new_count > old_count && !chunks.contains(&(old_count - 1));
        let old_last_at = layout.chunk_cipher_start(old_count.saturating_sub(1));

        SCRATCH.with(|scratch| -> Result<()> {
            let mut scratch = scratch.borrow_mut();
            let Scratch {
                cipher: cbuf,
                plain: head,
                tail,
                chunk,
                raw,
                old_last,
                ..
            } = &mut *scratch;
            chunk.resize(cs, 0);
            let old_last_len = if reseal_old_last {
                (old_backing - old_last_at) as usize
            } else {
                0
            };
            grow(old_last, old_last_len);
            if old_last_len > 0
                && pread_full(&self.fd, &mut old_last[..old_last_len], old_last_at)? != old_last_len
            {
                return Err(CryptFileError::Io(io::Error::from_raw_os_error(libc::EIO)));
            }
            let old_last = &old_last[..old_last_len];
            // Read-modify-write: only the first and last chunk can be
            // partially covered, and only old data needs reading. Fully
            // covered chunks are sealed straight from `data`.
            let mut assemble = |index: u64, buf: &mut Vec<u8>| -> Result<()> {
                let n = chunk_len(index);
                buf.clear();
                buf.resize(n, 0);
                if index < old_count {
                    // Only a partly covered chunk is read: its old bytes
                    // the write keeps.
                    let at = layout.chunk_cipher_start(index);
                    let len = (old_backing - at).min(stored as u64) as usize;
                    grow(raw, len);
                    let got = pread_full(&self.fd, &mut raw[..len], at)?;
                    let m = match open_tolerant(
                        self.cipher,
                        &header,
                        index,
                        index + 1 == old_count,
                        &raw[..got],
                        chunk,
                    ) {
                        Ok(Opened::Data(m)) => m,
                        Ok(Opened::Hole) => cs,
                        Err(error) => return Err(CryptFileError::Chunk { index, error }),
                    }
                    .min(n);
                    buf[..m].copy_from_slice(&chunk[..m]);
                }
                let s = chunk_start(index);
                let (from, to) = (offset.max(s), end.min(s + n as u64));
                buf[(from - s) as usize..(to - s) as usize]
                    .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
                Ok(())
            };
            if !covered(first) {
                assemble(first, head)?;
            }
            if last != first && !covered(last) {
                assemble(last, tail)?;
            }
            let plain_of = |i: u64| -> &[u8] {
                if i == first && !covered(first) {
                    head
                } else if i == last && !covered(last) {
                    tail
                } else {
                    &data[(chunk_start(i) - offset) as usize..][..chunk_len(i)]
                }
            };
            let total = (last - first) as usize * stored + chunk_len(last) + CHUNK_OVERHEAD;
            grow(cbuf, total + if reseal_old_last { stored } else { 0 });
            let (cbuf_used, resealed) = cbuf.split_at_mut(total);
            seal_span(
                self.cipher,
                &header,
                first..last + 1,
                new_count,
                &plain_of,
                cbuf_used,
            );
            if reseal_old_last {
                chunk.fill(0);
                match open_tolerant(self.cipher, &header, old_count - 1, true, old_last, chunk) {
                    Ok(_) => {}
                    Err(error) => {
                        return Err(CryptFileError::Chunk {
                            index: old_count - 1,
                            error,
                        });
                    }
                }
                self.cipher.seal_chunk(
                    &header,
                    old_count - 1,
                    false,
                    chunk,
                    &mut resealed[..stored],
                );
            }
            // The journal record comes before the first byte changes.
            let mut images: [(u64, &[u8]); 2] = [(0, &[]); 2];
            let mut n_images = 0;
            if first < in_place_end {
                // The new sealed form of every slot rewritten in place: the
                // first in_place_end - first chunks of the sealed span.
                let len = ((in_place_end - first) as usize * stored).min(cbuf_used.len());
                images[n_images] = (layout.chunk_cipher_start(first), &cbuf_used[..len]);
                n_images += 1;
            }
            if reseal_old_last {
                images[n_images] = (old_last_at, &resealed[..stored]);
                n_images += 1;
            }
            let _pending = match &mut self.journal {
                Some(j) => {
                    let pending = j.journal.begin();
                    let generation = pending.generation();
                    // Full middle chunks before and after this write:
                    // their recorded versions stay valid in their slots.
                    let middle = first..in_place_end.min(old_count.saturating_sub(1));
                    let covered = last + 1 < old_count
                        && j.recorded
                            .covers(generation, &header, j.path, first..last + 1);
                    if !covered {
                        pending.record(
                            j.file,
                            &Intent {
                                path: j.path,
                                header: old_header.as_ref(),
                                old_backing,
                                images: &images[..n_images],
                            },
                        )?;
                        j.recorded.mark(generation, &header, j.path, middle);
                    }
                    Some(pending)
                }
                None => None,
            };
            if fresh_header && first == 0 {
                // One syscall for a new file: header and first chunks.
                store::pwritev_full(&self.fd, &[header.as_bytes(), cbuf_used], 0)?;
            } else {
                if fresh_header {
                    pwrite_full(&self.fd, header.as_bytes(), 0)?;
                }
                // Chunks past the old end go first. A crash inside that
                // write then leaves the old last chunk intact (short,
                // followed by zeros), so recovery can cut the file back to
                // its old size. The rewrite of existing chunks comes
                // second; the journal holds their old bytes.
                let appended = old_count.clamp(first, last + 1);
                if appended > first && appended <= last {
                    let at = (appended - first) as usize * stored;
                    pwrite_full(
                        &self.fd,
                        &cbuf_used[at..],
                        layout.chunk_cipher_start(appended),
                    )?;
                    pwrite_full(&self.fd, &cbuf_used[..at], layout.chunk_cipher_start(first))?;
                } else {
                    pwrite_full(&self.fd, cbuf_used, layout.chunk_cipher_start(first))?;
                }
            }
            if reseal_old_last {
                pwrite_full(&self.fd, &resealed[..stored], old_last_at)?;
            }
            Ok(())
        })
    }

    /// Authenticates the file against its header before a writer reuses
    /// that header: a header copied from another file ("file ID
    /// poisoning", gocryptfs audit §2.2) would otherwise make a write that
    /// covers whole chunks, which reads nothing, seal new data under the
    /// other file's ID. One chunk that opens as data proves the header:
    /// the last (a writer always seals it), or, when that is a hole (a
    /// crash mid-append leaves zeros there), the first one stored. An
    /// empty file has no header to reuse.
    pub fn authenticate(&mut self) -> Result<()> {
        let layout = self.cipher.layout();
        let size = layout.plain_size(backing_size(&self.fd)?);
        let Some(header) = (if size == 0 { None } else { self.load_header()? }) else {
            return Ok(());
        };
        let count = layout.chunk_count(size);
        let stored = layout.stored_chunk_len() as u64;
        let first_stored =
            match rustix::fs::seek(&self.fd, rustix::fs::SeekFrom::Data(HEADER_LEN as u64)) {
                Ok(at) => (at.max(HEADER_LEN as u64) - HEADER_LEN as u64) / stored,
                Err(_) => 0,
            };
        let mut raw = vec![0u8; layout.stored_chunk_len()];
        let mut out = vec![0u8; layout.chunk_size()];
        for index in [count - 1, first_stored.min(count - 1)] {
            let last = index + 1 == count;
            let len = if last {
                (size - layout.chunk_plain_start(index)) as usize + CHUNK_OVERHEAD
            } else {
                layout.stored_chunk_len()
            };
            let got = pread_full(&self.fd, &mut raw[..len], layout.chunk_cipher_start(index))?;
            match open_tolerant(self.cipher, &header, index, last, &raw[..got], &mut out) {
                Ok(Opened::Data(_)) => return Ok(()),
                Ok(Opened::Hole) => {}
                Err(error) => return Err(CryptFileError::Chunk { index, error }),
            }
        }
        Err(CryptFileError::Chunk {
            index: count - 1,
            error: ChunkError::Unauthentic,
        })
    }
}

pub mod journal;
mod repair;
mod stream;
mod truncate;

pub use repair::{
    ChunkRepair, ChunkVerdict, FileRecovery, TORN_WRITE_ALIGN, chunk_verdict_at, diagnose_chunk,
    recover_file, stored_chunk_count,
};
pub use stream::ChunkWriter;

#[cfg(test)]
mod tests;

/// Starts reading the pages at both edges of `span`, a range of the
/// backing file about to be rewritten in place. A sealed chunk never
/// starts or ends on a page boundary, so the page cache must read those
/// two pages before `pwrite` can change them; uncached, `pwrite` reads them
/// one after the other, each a disk round trip. Asked for first, they
/// come in one request while the chunks are sealed and the journal
/// record is written (4 KiB random rewrites, cold cache: see
/// docs/PERFORMANCE.md). The pages in between are overwritten whole and
/// need no read.
fn prefetch_edges<Fd: AsFd>(fd: Fd, span: std::ops::Range<u64>) {
    if span.is_empty() {
        return;
    }
    // The kernel widens each range to its own pages, so 4 KiB is right
    // for any page size.
    let page = 4096;
    let head = span.start / page * page;
    let tail = (span.end - 1) / page * page;
    let ranges = if tail <= head + page {
        [(head, tail + page - head), (0, 0)]
    } else {
        [(head, page), (tail, page)]
    };
    for (at, len) in ranges {
        if let Some(len) = std::num::NonZeroU64::new(len) {
            let _ = rustix::fs::fadvise(&fd, at, Some(len), rustix::fs::Advice::WillNeed);
        }
    }
}
