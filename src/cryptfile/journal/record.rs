//! The record format of the rewrite journal (docs/FORMAT.md §10): what a
//! writer is about to change, encoded and parsed back.

use sha2::{Digest, Sha256};

use crate::content::{FileHeader, HEADER_LEN};

pub(super) const MAGIC: &[u8; 4] = b"VJR1";

/// magic, total length, sequence number, flags, header, old size, path
/// length: the fixed part of a record before the path.
pub(super) const FIXED_LEN: usize = 4 + 4 + 8 + 1 + HEADER_LEN + 8 + 2;
pub(super) const SUM_LEN: usize = 16;
/// A record never holds more than this many old chunk ranges.
pub(super) const MAX_IMAGES: usize = 2;
pub(super) const FLAG_HEADER: u8 = 1;
/// Bits 1-2 of the flags: what a record is about (see [`NameOp`]).
pub(super) const KIND_SHIFT: u8 = 1;
pub(super) const KIND_RENAME: u8 = 1;
pub(super) const KIND_EXCHANGE: u8 = 2;
pub(super) const KIND_UNLINK: u8 = 3;
/// The offset under which a rename's second path is stored.
pub(super) const PATH_OFFSET: u64 = u64::MAX;

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

impl Record {
    /// The backing offset of every chunk slot the record holds a version
    /// of: an image is a run of consecutive sealed chunks (the last of
    /// them possibly short), each `stored` bytes apart.
    pub fn chunk_slots(&self, stored: u64) -> impl Iterator<Item = u64> + '_ {
        self.images.iter().flat_map(move |(first, bytes)| {
            let end = first + bytes.len() as u64;
            (0..)
                .map(move |k| first + k * stored)
                .take_while(move |slot| *slot < end)
        })
    }
}

/// Encodes a record's fixed part, path and image table (everything the
/// checksum covers, which is everything but the image bytes).
pub(super) fn encode_meta(
    seq: u64,
    intent: &Intent<'_>,
    kind: u8,
    total: usize,
    out: &mut Vec<u8>,
) {
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

pub(super) fn record_len(intent: &Intent<'_>) -> usize {
    FIXED_LEN
        + intent.path.len()
        + 1
        + intent.images.len() * 12
        + intent.images.iter().map(|(_, b)| b.len()).sum::<usize>()
        + SUM_LEN
}

pub(super) fn checksum(meta: &[u8]) -> [u8; SUM_LEN] {
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

pub(super) fn encode_kind(seq: u64, intent: &Intent<'_>, kind: u8) -> Vec<u8> {
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

pub(super) fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

/// Parses the record at the start of `buf`, if a whole valid one is there.
pub(super) fn parse_one(buf: &[u8]) -> Option<(Record, usize)> {
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
