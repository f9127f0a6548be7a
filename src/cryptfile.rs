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

use crate::journal::{Intent, Journal};
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

/// The journal a writer records its changes in, and the file's backing
/// path relative to CIPHERDIR as the records name it.
#[derive(Clone, Copy)]
pub struct JournalRef<'a> {
    pub journal: &'a Journal,
    pub path: &'a [u8],
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
    /// bytes.
    pub fn with_journal(mut self, journal: &'a Journal, path: &'a [u8]) -> Self {
        if journal.is_on() {
            self.journal = Some(JournalRef { journal, path });
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
            let _pending = match &self.journal {
                Some(j) => Some(j.journal.record(&Intent {
                    path: j.path,
                    header: old_header.as_ref(),
                    old_backing,
                    images: &images[..n_images],
                })?),
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

    /// Sets the plaintext size, as ftruncate does: shrinking re-seals the
    /// new last chunk, growing leaves a sparse hole that reads as zeros.
    pub fn truncate(&mut self, new_size: u64) -> Result<()> {
        let layout = self.cipher.layout();
        let backing = backing_size(&self.fd)?;
        let old_size = layout.plain_size(backing);
        if new_size == 0 {
            if backing != 0 {
                store::set_len(&self.fd, 0)?;
            }
            self.header = None;
            return Ok(());
        }
        if new_size == old_size && layout.is_valid_cipher_size(backing) {
            return Ok(());
        }
        if new_size > old_size {
            let new_last_start = layout.chunk_plain_start(layout.chunk_count(new_size) - 1);
            let start = old_size.max(new_last_start);
            let zeros = vec![0u8; (new_size - start) as usize];
            return self.write_at(start, &zeros);
        }
        let header = self
            .load_header()?
            .ok_or(CryptFileError::Header(HeaderError::TooShort(0)))?;
        let index = layout.chunk_count(new_size) - 1;
        let keep = (new_size - layout.chunk_plain_start(index)) as usize;
        let at = layout.chunk_cipher_start(index);
        let old_count = layout.chunk_count(old_size);
        let old_len = if index + 1 == old_count {
            (backing - at) as usize
        } else {
            layout.stored_chunk_len()
        };
        let mut old = vec![0u8; old_len];
        let got = pread_full(&self.fd, &mut old, at)?;
        old.truncate(got);
        let mut plain = vec![0u8; layout.chunk_size()];
        match open_tolerant(
            self.cipher,
            &header,
            index,
            index + 1 == old_count,
            &old,
            &mut plain,
        ) {
            Ok(_) => {}
            Err(error) => return Err(CryptFileError::Chunk { index, error }),
        }
        let mut sealed = vec![0u8; keep + CHUNK_OVERHEAD];
        self.cipher
            .seal_chunk(&header, index, true, &plain[..keep], &mut sealed);
        let _pending = match &self.journal {
            Some(j) => Some(j.journal.record(&Intent {
                path: j.path,
                header: Some(&header),
                old_backing: backing,
                images: &[(at, &old)],
            })?),
            None => None,
        };
        // The new last chunk first, then the cut: a crash between the two
        // leaves a chunk that does not authenticate in its slot, which
        // recovery puts back from the journal (the truncation is undone);
        // the cut itself is atomic.
        pwrite_full(&self.fd, &sealed, at)?;
        store::set_len(&self.fd, layout.cipher_size(new_size))?;
        Ok(())
    }
}

/// What one chunk of a backing file is, as far as its bytes tell: the one
/// set of rules by which the mount, `cat`, fsck and crash recovery judge a
/// chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// Authentic data of this many plaintext bytes.
    Data(usize),
    /// An all-zero middle chunk: a hole (docs/FORMAT.md §4).
    Hole,
    /// A middle chunk still sealed as the last one, in full or short form
    /// followed by zeros: an append a crash interrupted. Readable.
    StaleLast,
    /// The final chunk authenticates only as a middle chunk: the file was
    /// cut at a chunk boundary.
    Truncated,
    /// The final chunk fails and ends on a page boundary: a write that grew
    /// the file was cut by a crash.
    TornTail,
    /// The chunk is chunk `j` of this file: chunks were swapped or moved.
    Misplaced(u64),
    /// Shorter than a chunk's overhead.
    BadLength(usize),
    Unauthentic,
}

impl ChunkVerdict {
    /// Whether the chunk's data can be read.
    pub fn is_readable(self) -> bool {
        matches!(
            self,
            ChunkVerdict::Data(_) | ChunkVerdict::Hole | ChunkVerdict::StaleLast
        )
    }
}

/// A crash that grows a file cuts its last write at a page boundary.
pub const TORN_WRITE_ALIGN: u64 = 4096;
/// Up to this many chunks, a failing chunk is tried at every index to tell
/// a swap from damage; beyond, only its neighbours.
const MISPLACED_SEARCH_LIMIT: u64 = 64;

/// Judges chunk `index` of `n`, whose stored bytes are `stored`. `out`
/// (one chunk long) receives the plaintext of a readable chunk.
pub fn diagnose_chunk(
    cipher: &ContentCipher,
    header: &FileHeader,
    index: u64,
    n: u64,
    stored: &[u8],
    out: &mut [u8],
    search_misplaced: bool,
) -> ChunkVerdict {
    let layout = cipher.layout();
    let last = index + 1 == n;
    match cipher.open_chunk(header, index, last, stored, out) {
        Ok(Opened::Data(m)) => return ChunkVerdict::Data(m),
        Ok(Opened::Hole) => return ChunkVerdict::Hole,
        Err(ChunkError::BadLength(len)) => {
            let end = layout.chunk_cipher_start(index) + len as u64;
            return if last && end.is_multiple_of(TORN_WRITE_ALIGN) {
                ChunkVerdict::TornTail
            } else {
                ChunkVerdict::BadLength(len)
            };
        }
        Err(ChunkError::Unauthentic) => {}
    }
    let full = stored.len() == layout.stored_chunk_len();
    if !last {
        if full
            && (matches!(
                cipher.open_chunk(header, index, true, stored, out),
                Ok(Opened::Data(_))
            ) || cipher
                .open_stale_short(header, index, stored, out)
                .is_some())
        {
            return ChunkVerdict::StaleLast;
        }
    } else if full
        && matches!(
            cipher.open_chunk(header, index, false, stored, out),
            Ok(Opened::Data(_))
        )
    {
        out.fill(0);
        return ChunkVerdict::Truncated;
    }
    if search_misplaced {
        let candidates = if n <= MISPLACED_SEARCH_LIMIT {
            0..n
        } else {
            index.saturating_sub(2)..(index + 3).min(n)
        };
        for j in candidates.filter(|&j| j != index) {
            for flag in [false, true] {
                if let Ok(Opened::Data(_)) = cipher.open_chunk(header, j, flag, stored, out) {
                    out.fill(0);
                    return ChunkVerdict::Misplaced(j);
                }
            }
        }
    }
    let end = layout.chunk_cipher_start(index) + stored.len() as u64;
    if last && !full && end.is_multiple_of(TORN_WRITE_ALIGN) {
        return ChunkVerdict::TornTail;
    }
    ChunkVerdict::Unauthentic
}

/// Reads chunk `index` of a backing file of `size` bytes and judges it.
pub fn chunk_verdict_at<Fd: AsFd>(
    fd: Fd,
    cipher: &ContentCipher,
    header: &FileHeader,
    index: u64,
    size: u64,
    out: &mut [u8],
) -> io::Result<ChunkVerdict> {
    let layout = cipher.layout();
    let n = stored_chunk_count(cipher, size);
    if index >= n {
        return Ok(ChunkVerdict::Data(0));
    }
    let at = layout.chunk_cipher_start(index);
    let len = (size - at).min(layout.stored_chunk_len() as u64) as usize;
    let mut stored = vec![0u8; len];
    let got = pread_full(&fd, &mut stored, at)?;
    stored.truncate(got);
    Ok(diagnose_chunk(
        cipher, header, index, n, &stored, out, false,
    ))
}

/// How many stored chunk slots a backing file of `size` bytes has.
pub fn stored_chunk_count(cipher: &ContentCipher, size: u64) -> u64 {
    (size.saturating_sub(HEADER_LEN as u64)).div_ceil(cipher.layout().stored_chunk_len() as u64)
}

/// The stored bytes of full chunk slot `index`; an error if the file ends
/// inside it (it changed since it was judged).
fn read_full_slot<Fd: AsFd>(fd: Fd, cipher: &ContentCipher, index: u64) -> io::Result<Vec<u8>> {
    let layout = cipher.layout();
    let mut stored = vec![0u8; layout.stored_chunk_len()];
    if pread_full(&fd, &mut stored, layout.chunk_cipher_start(index))? != stored.len() {
        return Err(io::Error::other("the file changed during the repair"));
    }
    Ok(stored)
}

/// Re-seals middle chunk `index`, which authenticates only as a last
/// chunk (in full or short form), as a full middle chunk with the same
/// plaintext, and checks the result.
pub fn reseal_stale<Fd: AsFd>(
    fd: Fd,
    cipher: &ContentCipher,
    header: &FileHeader,
    index: u64,
) -> io::Result<()> {
    let layout = cipher.layout();
    let stored_len = layout.stored_chunk_len();
    let off = layout.chunk_cipher_start(index);
    let stored = read_full_slot(&fd, cipher, index)?;
    let mut plain = vec![0u8; layout.chunk_size()];
    match cipher.open_chunk(header, index, true, &stored, &mut plain) {
        Ok(Opened::Data(_)) => {}
        _ => {
            // The bytes after the short chunk are zeros, as the
            // interrupted append would have sealed them.
            cipher
                .open_stale_short(header, index, &stored, &mut plain)
                .ok_or_else(|| io::Error::other("the chunk changed during the repair"))?;
        }
    }
    let mut sealed = vec![0u8; stored_len];
    cipher.seal_chunk(header, index, false, &plain, &mut sealed);
    pwrite_full(&fd, &sealed, off)?;
    rustix::fs::fsync(&fd)?;
    let mut check = vec![0u8; stored_len];
    pread_full(&fd, &mut check, off)?;
    match cipher.open_chunk(header, index, false, &check, &mut plain) {
        Ok(_) => Ok(()),
        Err(e) => Err(io::Error::other(format!(
            "re-sealed chunk does not verify: {e}"
        ))),
    }
}

/// Cuts the file right after chunk `index`, which authenticates as the
/// last chunk (full, or short and followed by zeros): what fsck does when
/// nothing authentic follows a stale last chunk (a zero tail).
pub fn cut_after_stale<Fd: AsFd>(
    fd: Fd,
    cipher: &ContentCipher,
    header: &FileHeader,
    index: u64,
) -> io::Result<()> {
    let layout = cipher.layout();
    let off = layout.chunk_cipher_start(index);
    let stored = read_full_slot(&fd, cipher, index)?;
    let mut plain = vec![0u8; layout.chunk_size()];
    let len = match cipher.open_chunk(header, index, true, &stored, &mut plain) {
        Ok(Opened::Data(n)) => n,
        _ => cipher
            .open_stale_short(header, index, &stored, &mut plain)
            .ok_or_else(|| io::Error::other("the chunk changed during the repair"))?,
    };
    rustix::fs::ftruncate(&fd, off + (len + CHUNK_OVERHEAD) as u64)?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// Cuts a file before its torn last chunk `index`. The chunk before it is
/// re-sealed as the last first, so a crash during the repair leaves a
/// stale flag (readable), never a truncated file.
pub fn drop_torn_tail<Fd: AsFd>(
    fd: Fd,
    cipher: &ContentCipher,
    header: &FileHeader,
    index: u64,
) -> io::Result<()> {
    let layout = cipher.layout();
    let cut = layout.chunk_cipher_start(index);
    let st = crate::store::stat_fd(&fd)?;
    if (st.st_size as u64) < cut {
        return Err(io::Error::other("the file changed during the repair"));
    }
    if index > 0 {
        let prev = index - 1;
        let off = layout.chunk_cipher_start(prev);
        let mut stored = read_full_slot(&fd, cipher, prev)?;
        let mut plain = vec![0u8; layout.chunk_size()];
        match cipher.open_chunk(header, prev, false, &stored, &mut plain) {
            Ok(_) => {}
            Err(_) => {
                return Err(io::Error::other(format!(
                    "chunk {prev} before it does not authenticate either"
                )));
            }
        }
        cipher.seal_chunk(header, prev, true, &plain, &mut stored);
        pwrite_full(&fd, &stored, off)?;
        rustix::fs::fsync(&fd)?;
    }
    // A file cut inside its first chunk keeps nothing: empty, not a bare
    // header.
    rustix::fs::ftruncate(&fd, if index == 0 { 0 } else { cut })?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// Whether `stored` is an authentic version of chunk slot `index` of the
/// file with `header`, sealed as a middle or as the last chunk (a record's
/// bytes: the new form a write was putting there, or the old form a
/// truncation was replacing).
fn is_version_of(
    cipher: &ContentCipher,
    header: &FileHeader,
    index: u64,
    stored: &[u8],
    out: &mut [u8],
) -> bool {
    [false, true]
        .into_iter()
        .any(|last| cipher.open_chunk(header, index, last, stored, out).is_ok())
        || cipher
            .open_stale_short(header, index, stored, out)
            .is_some()
}

/// What [`recover_file`] did to one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileRecovery {
    pub chunks_restored: usize,
    pub tails_cut: usize,
    pub stale_flags_resealed: usize,
}

/// Crash recovery of one backing file from its journal records (oldest
/// first): the one place the crash rules are applied.
///
/// 1. A chunk slot that a record holds a version of (the new form a write
///    was putting there, or the old form a truncation was replacing) and
///    that no longer authenticates (a rewrite cut by the crash) gets the
///    newest of those versions that authenticates; a short chunk in what
///    is now a middle slot is zero padded (the stale-last form).
/// 2. A final chunk that fails (an append cut by the crash) is cut back to
///    the newest old size at which the file ends in an authentic chunk, or
///    else dropped as a torn tail.
/// 3. Stale last flags at the slots the records name are re-sealed.
///
/// Returns `None` if the file is not the one the records describe (its
/// header matches none of them).
pub fn recover_file(
    fd: &impl AsFd,
    cipher: &ContentCipher,
    records: &[&crate::journal::Record],
) -> io::Result<Option<FileRecovery>> {
    let layout = cipher.layout();
    let stored = layout.stored_chunk_len() as u64;
    let mut out = FileRecovery::default();
    let size = backing_size(fd)?;
    let mut hbuf = [0u8; HEADER_LEN];
    let got = pread_full(fd, &mut hbuf, 0)?;
    let header = if got == HEADER_LEN {
        FileHeader::parse(&hbuf, layout).ok()
    } else {
        None
    };
    let Some(header) = header else {
        // Empty, or no valid header: only a record of a brand-new file
        // (no header of its own) can be about it, and such a write starts
        // with the header, so there is nothing to put back.
        return Ok(records
            .iter()
            .any(|r| r.header.is_none())
            .then(FileRecovery::default));
    };
    let ours: Vec<&crate::journal::Record> = records
        .iter()
        .copied()
        .filter(|r| r.header.is_none_or(|h| h == *header.as_bytes()))
        .collect();
    if ours.is_empty()
        || !records.iter().any(|r| r.header == Some(*header.as_bytes()))
            && !records.iter().any(|r| r.header.is_none())
    {
        return Ok(None);
    }
    let mut plain = vec![0u8; layout.chunk_size()];
    let index_of = |off: u64| (off - HEADER_LEN as u64) / stored;

    // 1. Chunks cut while rewritten in place.
    let mut size = size;
    let mut offsets: Vec<u64> = ours
        .iter()
        .flat_map(|r| r.images.iter())
        .flat_map(|(o, b)| {
            let first = *o;
            let end = o + b.len() as u64;
            (0..)
                .map(move |k| first + k * stored)
                .take_while(move |s| *s < end)
        })
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    for &slot in &offsets {
        let index = index_of(slot);
        let n = stored_chunk_count(cipher, size);
        if index >= n {
            continue;
        }
        if chunk_verdict_at(fd, cipher, &header, index, size, &mut plain)?.is_readable() {
            continue;
        }
        // Newest first: the version just before the write the crash cut.
        let mut restored = false;
        for r in ours.iter().rev() {
            for (o, bytes) in &r.images {
                if slot < *o || slot >= o + bytes.len() as u64 {
                    continue;
                }
                let at = (slot - o) as usize;
                let old = &bytes[at..(at + stored as usize).min(bytes.len())];
                if !is_version_of(cipher, &header, index, old, &mut plain) {
                    continue;
                }
                let mut image = old.to_vec();
                if index + 1 < n && image.len() < stored as usize {
                    // Now a middle slot: pad to the stale-short form.
                    image.resize(stored as usize, 0);
                }
                pwrite_full(fd, &image, slot)?;
                if index + 1 == n && slot + (image.len() as u64) < size {
                    rustix::fs::ftruncate(fd, slot + image.len() as u64)?;
                    size = slot + image.len() as u64;
                }
                out.chunks_restored += 1;
                restored = true;
                break;
            }
            if restored {
                break;
            }
        }
        if !restored {
            log::warn!(
                "journal: chunk {index} does not authenticate and no journal record holds an authentic old version"
            );
        }
    }

    // 2. A final chunk cut while the file grew.
    let n = stored_chunk_count(cipher, size);
    if n > 0 && !chunk_verdict_at(fd, cipher, &header, n - 1, size, &mut plain)?.is_readable() {
        let mut cut = false;
        let mut sizes: Vec<u64> = ours.iter().map(|r| r.old_backing).collect();
        sizes.sort_unstable();
        sizes.dedup();
        for &old in sizes.iter().rev() {
            if old >= size || old <= HEADER_LEN as u64 || !layout.is_valid_cipher_size(old) {
                continue;
            }
            let last = stored_chunk_count(cipher, old) - 1;
            if chunk_verdict_at(fd, cipher, &header, last, old, &mut plain)?.is_readable() {
                rustix::fs::ftruncate(fd, old)?;
                size = old;
                out.tails_cut += 1;
                cut = true;
                break;
            }
        }
        if !cut {
            let verdict = chunk_verdict_at(fd, cipher, &header, n - 1, size, &mut plain)?;
            if verdict == ChunkVerdict::TornTail || ours.iter().any(|r| r.old_backing < size) {
                match drop_torn_tail(fd, cipher, &header, n - 1) {
                    Ok(()) => {
                        size = backing_size(fd)?;
                        out.tails_cut += 1;
                    }
                    Err(e) => log::warn!("journal: cannot cut the torn tail: {e}"),
                }
            }
        }
    }

    // 3. Stale last flags where the records say the file grew.
    let n = stored_chunk_count(cipher, size);
    let mut stale: Vec<u64> = ours
        .iter()
        .filter(|r| r.old_backing > HEADER_LEN as u64)
        .map(|r| stored_chunk_count(cipher, r.old_backing) - 1)
        .chain(offsets.iter().map(|&o| index_of(o)))
        .filter(|&i| i + 1 < n)
        .collect();
    stale.sort_unstable();
    stale.dedup();
    for index in stale {
        if chunk_verdict_at(fd, cipher, &header, index, size, &mut plain)?
            == ChunkVerdict::StaleLast
        {
            reseal_stale(fd, cipher, &header, index)?;
            out.stale_flags_resealed += 1;
        }
    }
    rustix::fs::fsync(fd)?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ChunkLayout;
    use crate::keys::SecretKey;
    use proptest::prelude::*;
    use rustix::io::{pread, pwrite};
    use std::fs::File;

    fn cipher() -> ContentCipher {
        ContentCipher::new(
            &SecretKey::from_bytes([9u8; 32]),
            ChunkLayout::new(4096).unwrap(),
        )
    }

    fn read_all(f: &mut CryptFile<'_, &File>) -> Vec<u8> {
        let size = f.plain_size().unwrap() as usize;
        let mut out = vec![0u8; size + 10];
        let n = f.read_at(0, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, Vec<u8>),
        Truncate(u64),
        Read(u64, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..40_000, prop::collection::vec(any::<u8>(), 1..10_000))
                .prop_map(|(o, d)| Op::Write(o, d)),
            (0u64..40_000).prop_map(Op::Truncate),
            (0u64..45_000, 0usize..20_000).prop_map(|(o, n)| Op::Read(o, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_a_plain_model(ops in prop::collection::vec(op(), 1..25)) {
            let c = cipher();
            let file = tempfile::tempfile().unwrap();
            let mut model: Vec<u8> = Vec::new();
            let mut f = CryptFile::new(&file, &c, None);
            for op in ops {
                match op {
                    Op::Write(o, d) => {
                        f.write_at(o, &d).unwrap();
                        let end = o as usize + d.len();
                        if model.len() < end { model.resize(end, 0); }
                        model[o as usize..end].copy_from_slice(&d);
                    }
                    Op::Truncate(n) => {
                        f.truncate(n).unwrap();
                        model.resize(n as usize, 0);
                    }
                    Op::Read(o, n) => {
                        let mut buf = vec![0u8; n];
                        let got = f.read_at(o, &mut buf).unwrap();
                        let from = (o as usize).min(model.len());
                        let to = (o as usize + n).min(model.len());
                        prop_assert_eq!(&buf[..got], &model[from..to]);
                    }
                }
                prop_assert_eq!(f.plain_size().unwrap(), model.len() as u64);
                prop_assert!(c.layout().is_valid_cipher_size(backing_size(&file).unwrap()));
                // A fresh reader (no cached header) sees the same bytes.
                let mut fresh = CryptFile::new(&file, &c, None);
                prop_assert_eq!(read_all(&mut fresh), model.clone());
            }
        }
    }

    #[test]
    fn large_parallel_writes_and_reads() {
        let c = cipher();
        let file = tempfile::tempfile().unwrap();
        let mut f = CryptFile::new(&file, &c, None);
        let mut model = vec![0u8; 0];
        let mut seed = 7u32;
        for (offset, len) in [
            (0usize, 1 << 20),
            (4000, 700_000),
            (3 << 20, 300_000),
            (100, 2_000_000),
        ] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            f.write_at(offset as u64, &data).unwrap();
            if model.len() < offset + len {
                model.resize(offset + len, 0);
            }
            model[offset..offset + len].copy_from_slice(&data);
            let mut buf = vec![0u8; model.len() + 5];
            let n = CryptFile::new(&file, &c, None)
                .read_at(0, &mut buf)
                .unwrap();
            assert_eq!(&buf[..n], &model[..]);
            let mut mid = vec![0u8; 1_500_000];
            let n = f.read_at(12_345, &mut mid).unwrap();
            assert_eq!(
                &mid[..n],
                &model[12_345..(12_345 + 1_500_000).min(model.len())]
            );
        }
        // A bad chunk in the middle of a parallel read is reported by index.
        let at = c.layout().chunk_cipher_start(100) + 50;
        let mut b = [0u8; 1];
        pread(&file, &mut b, at).unwrap();
        b[0] ^= 4;
        pwrite(&file, &b, at).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        match f.read_at(0, &mut buf) {
            Err(CryptFileError::Chunk { index: 100, .. }) => {}
            other => panic!("expected chunk 100 to fail, got {other:?}"),
        }
    }

    #[test]
    fn stale_last_flag_from_a_crash_still_reads() {
        let c = cipher();
        let file = tempfile::tempfile().unwrap();
        let mut f = CryptFile::new(&file, &c, None);
        f.write_at(0, &[1u8; 4096]).unwrap();
        let header = f.header().unwrap();
        // Simulate a crash mid-append: chunk 1 was written, chunk 0 kept
        // its last flag.
        let mut sealed = vec![0u8; 100 + CHUNK_OVERHEAD];
        c.seal_chunk(&header, 1, true, &[2u8; 100], &mut sealed);
        pwrite(&file, &sealed, c.layout().chunk_cipher_start(1)).unwrap();
        let mut buf = vec![0u8; 5000];
        let n = CryptFile::new(&file, &c, None)
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(n, 4196);
        assert!(buf[..4096].iter().all(|&b| b == 1) && buf[4096..4196].iter().all(|&b| b == 2));
        // But a final chunk without the flag (truncation) is still refused.
        rustix::fs::ftruncate(&file, c.layout().chunk_cipher_start(1)).unwrap();
        let mut g = CryptFile::new(&file, &c, None);
        let mut h = [0u8; 16];
        // Chunk 0 carries last=1 and is now really last: fine.
        assert_eq!(g.read_at(0, &mut h).unwrap(), 16);
    }

    #[test]
    fn holes_stay_sparse() {
        use std::os::unix::fs::MetadataExt;
        let c = cipher();
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let mut f = CryptFile::new(&file, &c, None);
        f.write_at(0, b"start").unwrap();
        f.write_at(64 << 20, b"end").unwrap();
        assert_eq!(f.plain_size().unwrap(), (64 << 20) + 3);
        let meta = file.metadata().unwrap();
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "backing file is sparse: {} blocks",
            meta.blocks()
        );
        let mut buf = vec![1u8; 8192];
        assert_eq!(f.read_at(1 << 20, &mut buf).unwrap(), 8192);
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn tampering_is_an_error_not_garbage() {
        let c = cipher();
        let file = tempfile::tempfile().unwrap();
        let mut f = CryptFile::new(&file, &c, None);
        f.write_at(0, &vec![7u8; 3 * 4096 + 100]).unwrap();
        // Flip a bit in chunk 1.
        let at = c.layout().chunk_cipher_start(1) + 40;
        let mut b = [0u8; 1];
        pread(&file, &mut b, at).unwrap();
        b[0] ^= 1;
        pwrite(&file, &b, at).unwrap();
        let mut buf = vec![0u8; 4096];
        assert!(f.read_at(0, &mut buf).is_ok(), "chunk 0 still reads");
        match f.read_at(4096, &mut buf) {
            Err(CryptFileError::Chunk { index: 1, .. }) => {}
            other => panic!("expected chunk 1 to fail, got {other:?}"),
        }
        // Truncation at a chunk boundary is detected by the last flag.
        rustix::fs::ftruncate(&file, c.layout().chunk_cipher_start(3)).unwrap();
        let mut fresh = CryptFile::new(&file, &c, None);
        assert!(matches!(
            fresh.read_at(2 * 4096, &mut buf),
            Err(CryptFileError::Chunk { index: 2, .. })
        ));
    }
}
