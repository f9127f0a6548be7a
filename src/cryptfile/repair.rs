//! The chunk engine's judgement and repairs: the verdict on any chunk
//! (`diagnose_chunk`), the repairs fsck makes (`ChunkRepair`) and crash recovery of one file from
//! its journal records (`recover_file`). The one place the crash rules live.

use std::io;
use std::os::fd::AsFd;

use super::backing_size;
use crate::content::{CHUNK_OVERHEAD, ChunkError, ContentCipher, FileHeader, HEADER_LEN, Opened};
use crate::store::{pread_full, pwrite_full};

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

/// The plaintext (a whole chunk buffer) and length of full chunk slot
/// `index`, which authenticates only as a last chunk: in full, or short
/// and followed by the zeros an interrupted append leaves.
fn open_stale_last<Fd: AsFd>(
    fd: Fd,
    cipher: &ContentCipher,
    header: &FileHeader,
    index: u64,
) -> io::Result<(Vec<u8>, usize)> {
    let stored = read_full_slot(&fd, cipher, index)?;
    let mut plain = vec![0u8; cipher.layout().chunk_size()];
    let len = match cipher.open_chunk(header, index, true, &stored, &mut plain) {
        Ok(Opened::Data(n)) => n,
        _ => cipher
            .open_stale_short(header, index, &stored, &mut plain)
            .ok_or_else(|| io::Error::other("the chunk changed during the repair"))?,
    };
    Ok((plain, len))
}

/// The repairs of one backing file, each of one chunk: what fsck does
/// with `--repair` and what crash recovery does after the journal's
/// records are back.
pub struct ChunkRepair<'a, Fd: AsFd> {
    fd: Fd,
    cipher: &'a ContentCipher,
    header: &'a FileHeader,
}

impl<'a, Fd: AsFd> ChunkRepair<'a, Fd> {
    pub fn new(fd: Fd, cipher: &'a ContentCipher, header: &'a FileHeader) -> Self {
        ChunkRepair { fd, cipher, header }
    }

    /// Re-seals middle chunk `index`, which authenticates only as a last
    /// chunk (in full or short form), as a full middle chunk with the same
    /// plaintext, and checks the result.
    pub fn reseal_stale(&self, index: u64) -> io::Result<()> {
        let (fd, cipher, header) = (&self.fd, self.cipher, self.header);
        let layout = cipher.layout();
        let stored_len = layout.stored_chunk_len();
        let off = layout.chunk_cipher_start(index);
        let (mut plain, _) = open_stale_last(fd, cipher, header, index)?;
        let mut sealed = vec![0u8; stored_len];
        cipher.seal_chunk(header, index, false, &plain, &mut sealed);
        pwrite_full(fd, &sealed, off)?;
        rustix::fs::fsync(fd)?;
        let mut check = vec![0u8; stored_len];
        pread_full(fd, &mut check, off)?;
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
    pub fn cut_after_stale(&self, index: u64) -> io::Result<()> {
        let (fd, cipher, header) = (&self.fd, self.cipher, self.header);
        let layout = cipher.layout();
        let off = layout.chunk_cipher_start(index);
        let (_, len) = open_stale_last(fd, cipher, header, index)?;
        rustix::fs::ftruncate(fd, off + (len + CHUNK_OVERHEAD) as u64)?;
        rustix::fs::fsync(fd)?;
        Ok(())
    }

    /// Cuts a file before its torn last chunk `index`. The chunk before it is
    /// re-sealed as the last first, so a crash during the repair leaves a
    /// stale flag (readable), never a truncated file.
    pub fn drop_torn_tail(&self, index: u64) -> io::Result<()> {
        let (fd, cipher, header) = (&self.fd, self.cipher, self.header);
        let layout = cipher.layout();
        let cut = layout.chunk_cipher_start(index);
        let st = crate::store::stat_fd(fd)?;
        if (st.st_size as u64) < cut {
            return Err(io::Error::other("the file changed during the repair"));
        }
        if index > 0 {
            let prev = index - 1;
            let off = layout.chunk_cipher_start(prev);
            let mut stored = read_full_slot(fd, cipher, prev)?;
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
            pwrite_full(fd, &stored, off)?;
            rustix::fs::fsync(fd)?;
        }
        // A file cut inside its first chunk keeps nothing: empty, not a bare
        // header.
        rustix::fs::ftruncate(fd, if index == 0 { 0 } else { cut })?;
        rustix::fs::fsync(fd)?;
        Ok(())
    }
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
    records: &[&crate::cryptfile::journal::Record],
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
    let ours: Vec<&crate::cryptfile::journal::Record> = records
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
    let mut offsets: Vec<u64> = ours.iter().flat_map(|r| r.chunk_slots(stored)).collect();
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
                match ChunkRepair::new(fd, cipher, &header).drop_torn_tail(n - 1) {
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
            ChunkRepair::new(fd, cipher, &header).reseal_stale(index)?;
            out.stale_flags_resealed += 1;
        }
    }
    rustix::fs::fsync(fd)?;
    Ok(Some(out))
}
