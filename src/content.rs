//! File content encryption: the file header, chunk sealing and opening, and
//! the pure offset arithmetic between plaintext and ciphertext.
//!
//! Layout of a backing file (docs/FORMAT.md, "File content"):
//!
//! ```text
//! header (18 bytes) | chunk 0 | chunk 1 | ... | chunk n-1
//! chunk i = nonce (12) | ciphertext (<= chunk size) | tag (16)
//! ```
//!
//! Nothing here touches the filesystem; callers bring the bytes.

use std::fmt;
use std::ops::Range;

use crate::crypto::{self, Aead};
use crate::keys::ContentKey;

pub use crate::crypto::{NONCE_LEN, TAG_LEN};

pub const CONTENT_FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 18;
pub const FILE_ID_LEN: usize = 16;
pub const CHUNK_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Chunk sizes are powers of two from 4 KiB to 64 KiB.
pub const MIN_CHUNK_SHIFT: u8 = 12;
pub const MAX_CHUNK_SHIFT: u8 = 16;
pub const DEFAULT_CHUNK_SIZE: u32 = 4096;
/// Associated data of a chunk: header, chunk index (u64 BE), last flag.
pub const CHUNK_AD_LEN: usize = HEADER_LEN + 8 + 1;

/// Why a chunk size was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidChunkSize(pub u64);

impl fmt::Display for InvalidChunkSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chunk size {} is not supported: use a power of two from {} to {} bytes",
            self.0,
            1u32 << MIN_CHUNK_SHIFT,
            1u32 << MAX_CHUNK_SHIFT
        )
    }
}

impl std::error::Error for InvalidChunkSize {}

/// Plaintext/ciphertext geometry of one vault. Pure arithmetic, so that
/// `stat` never has to read a file to know its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    shift: u8,
}

impl ChunkLayout {
    pub fn new(chunk_size: u64) -> Result<Self, InvalidChunkSize> {
        if !chunk_size.is_power_of_two() {
            return Err(InvalidChunkSize(chunk_size));
        }
        Self::from_shift(chunk_size.trailing_zeros() as u8).ok_or(InvalidChunkSize(chunk_size))
    }

    pub fn from_shift(shift: u8) -> Option<Self> {
        (MIN_CHUNK_SHIFT..=MAX_CHUNK_SHIFT)
            .contains(&shift)
            .then_some(ChunkLayout { shift })
    }

    pub fn shift(&self) -> u8 {
        self.shift
    }

    /// Plaintext bytes in a full chunk.
    pub fn chunk_size(&self) -> usize {
        1 << self.shift
    }

    /// Stored bytes of a full chunk: nonce, ciphertext, tag.
    pub fn stored_chunk_len(&self) -> usize {
        self.chunk_size() + CHUNK_OVERHEAD
    }

    /// Index of the chunk holding plaintext byte `offset`.
    pub fn chunk_index(&self, offset: u64) -> u64 {
        offset >> self.shift
    }

    /// Plaintext offset where chunk `index` starts.
    pub fn chunk_plain_start(&self, index: u64) -> u64 {
        index << self.shift
    }

    /// Offset in the backing file where chunk `index` starts.
    pub fn chunk_cipher_start(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * self.stored_chunk_len() as u64
    }

    /// Number of chunks that store `plain_size` bytes.
    pub fn chunk_count(&self, plain_size: u64) -> u64 {
        plain_size.div_ceil(self.chunk_size() as u64)
    }

    /// Chunks touched by the plaintext range `offset..offset+len`.
    pub fn chunks_touched(&self, offset: u64, len: u64) -> Range<u64> {
        if len == 0 {
            let i = self.chunk_index(offset);
            return i..i;
        }
        self.chunk_index(offset)..self.chunk_index(offset + len - 1) + 1
    }

    /// Size of the backing file that holds `plain_size` bytes. An empty
    /// file is stored without a header.
    pub fn cipher_size(&self, plain_size: u64) -> u64 {
        if plain_size == 0 {
            return 0;
        }
        HEADER_LEN as u64 + plain_size + self.chunk_count(plain_size) * CHUNK_OVERHEAD as u64
    }

    /// Plaintext size of a backing file of `cipher_size` bytes. Sizes no
    /// writer produces (a header cut short, a last chunk shorter than its
    /// overhead) round down to the last whole chunk; reading past that
    /// point then fails authentication instead of returning garbage.
    pub fn plain_size(&self, cipher_size: u64) -> u64 {
        if cipher_size <= HEADER_LEN as u64 {
            return 0;
        }
        let body = cipher_size - HEADER_LEN as u64;
        let stored = self.stored_chunk_len() as u64;
        let full = body / stored;
        let rest = body % stored;
        let tail = rest.saturating_sub(CHUNK_OVERHEAD as u64);
        full * self.chunk_size() as u64 + tail
    }

    /// Whether a backing file size is one that a writer can produce. A
    /// header without chunks is an empty file (docs/FORMAT.md §4): what a
    /// crash between writing a new file's header and its first chunk
    /// leaves.
    pub fn is_valid_cipher_size(&self, cipher_size: u64) -> bool {
        cipher_size == 0
            || cipher_size == HEADER_LEN as u64
            || self.cipher_size(self.plain_size(cipher_size)) == cipher_size
    }
}

/// Why a file header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    TooShort(usize),
    UnsupportedVersion(u8),
    ChunkSizeMismatch { header_shift: u8, vault_shift: u8 },
    AllZero,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TooShort(n) => {
                write!(f, "file header is {n} bytes, expected {HEADER_LEN}")
            }
            HeaderError::UnsupportedVersion(v) => write!(
                f,
                "file header has content format version {v}; this veilfs reads version {CONTENT_FORMAT_VERSION}"
            ),
            HeaderError::ChunkSizeMismatch {
                header_shift,
                vault_shift,
            } => write!(
                f,
                "file header declares chunk size {} but the vault uses {}",
                1u64 << header_shift.min(&63),
                1u64 << vault_shift
            ),
            HeaderError::AllZero => write!(f, "file header is all zeros"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// The 18-byte header at the start of every non-empty backing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    bytes: [u8; HEADER_LEN],
}

impl FileHeader {
    /// A header with a fresh random file ID.
    pub fn generate(layout: ChunkLayout) -> Self {
        Self::with_file_id(layout, crypto::random::bytes())
    }

    pub fn with_file_id(layout: ChunkLayout, file_id: [u8; FILE_ID_LEN]) -> Self {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0] = CONTENT_FORMAT_VERSION;
        bytes[1] = layout.shift;
        bytes[2..].copy_from_slice(&file_id);
        FileHeader { bytes }
    }

    /// Parses a header and checks it against the vault's chunk layout.
    pub fn parse(bytes: &[u8], layout: ChunkLayout) -> Result<Self, HeaderError> {
        let bytes: [u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(HeaderError::TooShort(bytes.len()))?;
        if bytes.iter().all(|&b| b == 0) {
            return Err(HeaderError::AllZero);
        }
        if bytes[0] != CONTENT_FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(bytes[0]));
        }
        if bytes[1] != layout.shift {
            return Err(HeaderError::ChunkSizeMismatch {
                header_shift: bytes[1],
                vault_shift: layout.shift,
            });
        }
        Ok(FileHeader { bytes })
    }

    /// The chunk layout a header declares, without a vault to check it
    /// against: used to recover a lost config.
    pub fn declared_layout(bytes: &[u8]) -> Option<ChunkLayout> {
        if bytes.len() < HEADER_LEN || bytes[0] != CONTENT_FORMAT_VERSION {
            return None;
        }
        ChunkLayout::from_shift(bytes[1])
    }

    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    pub fn file_id(&self) -> &[u8] {
        &self.bytes[2..]
    }

    fn chunk_ad(&self, index: u64, last: bool) -> [u8; CHUNK_AD_LEN] {
        let mut ad = [0u8; CHUNK_AD_LEN];
        ad[..HEADER_LEN].copy_from_slice(&self.bytes);
        ad[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&index.to_be_bytes());
        ad[HEADER_LEN + 8] = last as u8;
        ad
    }
}

/// A chunk failed authentication: tampered, moved, truncated or stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Shorter than nonce plus tag, or longer than a full chunk.
    BadLength(usize),
    /// The tag does not match the nonce, ciphertext, header, index and flag.
    Unauthentic,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::BadLength(n) => write!(f, "stored chunk has impossible length {n}"),
            ChunkError::Unauthentic => f.write_str("chunk failed authentication"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// What `open_chunk` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Authentic data of this many plaintext bytes.
    Data(usize),
    /// An all-zero stored chunk that is not the last one: a hole, read as a
    /// full chunk of zeros.
    Hole,
}

/// Seals and opens chunks of one vault. Build it once per mount; it holds
/// the expanded AES key schedule.
///
/// The AEAD is [`crypto::Aead`] (AES-256-GCM-SIV through AWS-LC), as for
/// every other use; the chunk layout is pinned by tests/vectors.rs.
#[derive(Clone)]
pub struct ContentCipher {
    aead: Aead,
    layout: ChunkLayout,
}

impl fmt::Debug for ContentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentCipher")
            .field("layout", &self.layout)
            .finish()
    }
}

impl ContentCipher {
    /// A cipher for the vault's content key. Only the content key fits:
    ///
    /// ```
    /// use veilfs::content::{ChunkLayout, ContentCipher};
    /// use veilfs::keys::MasterKey;
    ///
    /// let keys = MasterKey::generate().derive();
    /// let cipher = ContentCipher::new(&keys.content, ChunkLayout::new(4096).unwrap());
    /// ```
    ///
    /// Passing the name key (or any other role's key) does not compile:
    ///
    /// ```compile_fail,E0308
    /// use veilfs::content::{ChunkLayout, ContentCipher};
    /// use veilfs::keys::MasterKey;
    ///
    /// let keys = MasterKey::generate().derive();
    /// let cipher = ContentCipher::new(&keys.names, ChunkLayout::new(4096).unwrap());
    /// ```
    ///
    /// and a content key cannot be made from bytes outside the crate:
    ///
    /// ```compile_fail,E0599
    /// let key = veilfs::keys::ContentKey::from_bytes([0u8; 32]);
    /// ```
    pub fn new(key: &ContentKey, layout: ChunkLayout) -> Self {
        ContentCipher {
            aead: Aead::new(key.expose_secret()),
            layout,
        }
    }

    pub fn layout(&self) -> ChunkLayout {
        self.layout
    }

    /// Seals `plain` (at most one chunk) as chunk `index` of the file with
    /// `header`. `out` must be exactly `plain.len() + CHUNK_OVERHEAD` long.
    pub fn seal_chunk(
        &self,
        header: &FileHeader,
        index: u64,
        last: bool,
        plain: &[u8],
        out: &mut [u8],
    ) {
        self.seal_chunk_under(crypto::nonce::fresh(), header, index, last, plain, out);
    }

    /// Chunk `index` sealed under a caller-chosen nonce, for test vectors
    /// only (unit tests and the `test-vectors` feature): a repeated nonce
    /// with different plaintexts would weaken the cipher.
    #[cfg(any(test, feature = "test-vectors"))]
    pub fn sealed_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        header: &FileHeader,
        (index, last): (u64, bool),
        plain: &[u8],
    ) -> Vec<u8> {
        let mut out = vec![0u8; plain.len() + CHUNK_OVERHEAD];
        self.seal_chunk_under(nonce, header, index, last, plain, &mut out);
        out
    }

    fn seal_chunk_under(
        &self,
        nonce: [u8; NONCE_LEN],
        header: &FileHeader,
        index: u64,
        last: bool,
        plain: &[u8],
        out: &mut [u8],
    ) {
        assert!(
            plain.len() <= self.layout.chunk_size(),
            "chunk larger than the chunk size"
        );
        assert_eq!(
            out.len(),
            plain.len() + CHUNK_OVERHEAD,
            "output buffer has the wrong size"
        );
        let (nonce_out, rest) = out.split_at_mut(NONCE_LEN);
        let (body, tag_out) = rest.split_at_mut(plain.len());
        nonce_out.copy_from_slice(&nonce);
        let ad = header.chunk_ad(index, last);
        body.copy_from_slice(plain);
        let tag = self.aead.seal_in_place(&nonce, &ad, body);
        tag_out.copy_from_slice(&tag);
    }

    /// Opens stored chunk `index`. On success the plaintext is in
    /// `out[..n]`; `out` must hold at least one full chunk.
    pub fn open_chunk(
        &self,
        header: &FileHeader,
        index: u64,
        last: bool,
        stored: &[u8],
        out: &mut [u8],
    ) -> Result<Opened, ChunkError> {
        let len = stored.len();
        if len < CHUNK_OVERHEAD || len > self.layout.stored_chunk_len() {
            return Err(ChunkError::BadLength(len));
        }
        let plain_len = len - CHUNK_OVERHEAD;
        if !last && len == self.layout.stored_chunk_len() && stored.iter().all(|&b| b == 0) {
            out[..self.layout.chunk_size()].fill(0);
            return Ok(Opened::Hole);
        }
        let (nonce, rest) = stored.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(plain_len);
        let out = &mut out[..plain_len];
        let ad = header.chunk_ad(index, last);
        // `open_into` zeroes `out` on failure: no unauthenticated
        // plaintext is left behind.
        match self
            .aead
            .open_into(crypto::aead::nonce_at(nonce), &ad, body, tag, out)
        {
            Ok(()) => Ok(Opened::Data(plain_len)),
            Err(crypto::Unauthentic) => Err(ChunkError::Unauthentic),
        }
    }

    /// Opens a full-length middle slot that holds a short last chunk
    /// followed by zeros: what an append leaves when a crash stops it after
    /// it wrote the chunks past the old end but before it re-sealed the old
    /// last chunk. Returns the short chunk's plaintext length; `out` holds
    /// that plaintext, zero padded to a full chunk (the bytes the append had
    /// not yet made durable read as zeros, as in a sparse hole).
    pub fn open_stale_short(
        &self,
        header: &FileHeader,
        index: u64,
        stored: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        if stored.len() != self.layout.stored_chunk_len() {
            return None;
        }
        let nonzero_end = stored.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let lo = nonzero_end.max(CHUNK_OVERHEAD + 1);
        // The real tag may end in a few zero bytes.
        let hi = (nonzero_end + 8).min(stored.len() - 1);
        for len in lo..=hi {
            if let Ok(Opened::Data(n)) = self.open_chunk(header, index, true, &stored[..len], out) {
                out[n..self.layout.chunk_size()].fill(0);
                return Some(n);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> ChunkLayout {
        ChunkLayout::new(4096).unwrap()
    }

    fn cipher() -> ContentCipher {
        ContentCipher::new(&ContentKey::from_bytes([7u8; 32]), layout())
    }

    #[test]
    fn chunk_size_range() {
        assert!(ChunkLayout::new(2048).is_err());
        assert!(ChunkLayout::new(4096).is_ok());
        assert!(ChunkLayout::new(65536).is_ok());
        assert!(ChunkLayout::new(131072).is_err());
        assert!(ChunkLayout::new(5000).is_err());
    }

    #[test]
    fn size_arithmetic() {
        let l = layout();
        assert_eq!(l.cipher_size(0), 0);
        assert_eq!(l.cipher_size(1), 18 + 1 + 28);
        assert_eq!(l.cipher_size(4096), 18 + 4096 + 28);
        assert_eq!(l.cipher_size(4097), 18 + 4097 + 56);
        for plain in [0u64, 1, 100, 4095, 4096, 4097, 8192, 1 << 30, (1 << 30) + 5] {
            assert_eq!(l.plain_size(l.cipher_size(plain)), plain, "plain {plain}");
            assert!(l.is_valid_cipher_size(l.cipher_size(plain)));
        }
        assert_eq!(l.plain_size(18), 0);
        assert_eq!(l.plain_size(18 + 4124 + 10), 4096);
        assert!(!l.is_valid_cipher_size(18 + 4124 + 10));
        assert!(!l.is_valid_cipher_size(5));
        assert!(
            l.is_valid_cipher_size(18),
            "a header without chunks is an empty file"
        );
        assert!(!l.is_valid_cipher_size(19));
        assert_eq!(l.chunks_touched(4095, 2), 0..2);
        assert_eq!(l.chunks_touched(4096, 4096), 1..2);
        assert_eq!(l.chunks_touched(10, 0), 0..0);
        assert_eq!(l.chunk_cipher_start(2), 18 + 2 * 4124);
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let c = cipher();
        let h = FileHeader::with_file_id(layout(), [1u8; 16]);
        let plain = b"hello chunk".to_vec();
        let mut stored = vec![0u8; plain.len() + CHUNK_OVERHEAD];
        c.seal_chunk(&h, 3, true, &plain, &mut stored);
        let mut out = vec![0u8; 4096];
        assert_eq!(
            c.open_chunk(&h, 3, true, &stored, &mut out),
            Ok(Opened::Data(plain.len()))
        );
        assert_eq!(&out[..plain.len()], &plain[..]);
        // Wrong index, wrong flag, wrong file: all refused.
        assert_eq!(
            c.open_chunk(&h, 2, true, &stored, &mut out),
            Err(ChunkError::Unauthentic)
        );
        assert_eq!(
            c.open_chunk(&h, 3, false, &stored, &mut out),
            Err(ChunkError::Unauthentic)
        );
        let other = FileHeader::with_file_id(layout(), [2u8; 16]);
        assert_eq!(
            c.open_chunk(&other, 3, true, &stored, &mut out),
            Err(ChunkError::Unauthentic)
        );
        assert!(
            out.iter().all(|&b| b == 0),
            "no unauthenticated plaintext is left behind"
        );
    }

    #[test]
    fn holes_only_in_the_middle() {
        let c = cipher();
        let h = FileHeader::with_file_id(layout(), [1u8; 16]);
        let zeros = vec![0u8; layout().stored_chunk_len()];
        let mut out = vec![9u8; 4096];
        assert_eq!(
            c.open_chunk(&h, 0, false, &zeros, &mut out),
            Ok(Opened::Hole)
        );
        assert!(out.iter().all(|&b| b == 0));
        assert_eq!(
            c.open_chunk(&h, 0, true, &zeros, &mut out),
            Err(ChunkError::Unauthentic)
        );
    }

    #[test]
    fn header_parse() {
        let h = FileHeader::with_file_id(layout(), [5u8; 16]);
        assert_eq!(FileHeader::parse(h.as_bytes(), layout()), Ok(h));
        assert_eq!(
            FileHeader::parse(&h.as_bytes()[..10], layout()),
            Err(HeaderError::TooShort(10))
        );
        let mut bad = *h.as_bytes();
        bad[0] = 9;
        assert_eq!(
            FileHeader::parse(&bad, layout()),
            Err(HeaderError::UnsupportedVersion(9))
        );
        let big = ChunkLayout::new(65536).unwrap();
        assert!(matches!(
            FileHeader::parse(h.as_bytes(), big),
            Err(HeaderError::ChunkSizeMismatch { .. })
        ));
        assert_eq!(
            FileHeader::parse(&[0u8; 18], layout()),
            Err(HeaderError::AllZero)
        );
        assert_eq!(FileHeader::declared_layout(h.as_bytes()), Some(layout()));
    }
}
