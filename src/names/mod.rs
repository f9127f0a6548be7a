//! Name encryption, directory IVs, long names, symlink targets and
//! extended attributes.
//!
//! Names are encrypted deterministically (AES-256-GCM-SIV with a nonce and
//! associated data taken from the directory IV), so a name can be looked up
//! without listing the directory, and two devices that create the same name
//! in the same directory produce the same backing name. See docs/FORMAT.md,
//! "Names".

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::crypto::aead::nonce_at;
use crate::crypto::{self, Aead, NONCE_LEN, TAG_LEN};
use crate::keys::{DerivedKeys, DirIvKey};

pub const DIR_IV_LEN: usize = 16;
/// File holding a directory's IV, in every backing directory but the root.
pub const DIR_IV_FILE: &str = "veilfs.diriv";
/// Suffix of a long-name entry; `<hash>.vln.name` holds the full name.
pub const LONG_NAME_SUFFIX: &str = ".vln";
pub const LONG_NAME_RECORD_SUFFIX: &str = ".vln.name";
/// Base64url of a SHA-256 digest without padding.
pub const LONG_NAME_HASH_LEN: usize = 43;
/// Longest plaintext name, as on ext4.
pub const MAX_NAME_LEN: usize = 255;
/// Names are padded to a multiple of this, hiding their exact length.
pub const NAME_PAD: usize = 16;
/// Default and allowed range of the long-name threshold: the longest
/// encoded name stored as is. 175 leaves 80 bytes of a 255-byte limit for
/// the suffixes sync clients append to conflict copies.
pub const DEFAULT_LONG_NAME_THRESHOLD: u32 = 175;
pub const MIN_LONG_NAME_THRESHOLD: u32 = 64;
pub const MAX_LONG_NAME_THRESHOLD: u32 = 240;
/// Suffix of a long symlink target's record, `<hash>.vlink`; the backing
/// symlink's target is then that record's name (docs/FORMAT.md §7).
pub const LONG_TARGET_SUFFIX: &str = ".vlink";
/// Longest sealed symlink target (base64url) stored in the backing symlink
/// itself; longer ones go to a record. 1024 is the smallest limit of a
/// common backing file system (XFS); ext4 takes 4095.
pub const LONG_TARGET_THRESHOLD: usize = 1024;
/// Length of a long target's backing symlink target `<hash>.vlink`: 49,
/// a length no unpadded base64url string has, so an lstat tells the two
/// forms apart.
pub const LONG_TARGET_LINK_LEN: usize = LONG_NAME_HASH_LEN + LONG_TARGET_SUFFIX.len();
/// Longest plaintext symlink target, as on Linux (PATH_MAX - 1).
pub const MAX_SYMLINK_TARGET: usize = 4095;
/// Largest long-target record a reader accepts: the sealed form of a
/// [`MAX_SYMLINK_TARGET`]-byte target is 5498 bytes.
pub const MAX_LONG_TARGET_RECORD: usize = 8192;
/// Shortest regular encoded name: one padding block plus the tag.
const MIN_ENCODED_LEN: usize = 43;

const XATTR_NAME_AD: &[u8] = b"veilfs v1 xattr name";
const SYMLINK_AD: &[u8] = b"veilfs v1 symlink";
const XATTR_VALUE_AD: &[u8] = b"veilfs v1 xattr value";
const LINK_RECORD_AD: &[u8] = b"veilfs v1 link record";
/// The backing attribute that records how many hard links the mount made
/// to a regular backing file (docs/FORMAT.md, "Link records"). Not a valid
/// encrypted attribute name, so it is never listed in the mount.
pub const LINK_RECORD_XATTR: &str = "user.veilfs.links";
/// Length of a link record: the link count (u64 big-endian) and a tag.
pub const LINK_RECORD_LEN: usize = 8 + TAG_LEN;
const XATTR_NAME_AD_V2: &[u8] = b"veilfs v2 xattr name";
const SYMLINK_AD_V2: &[u8] = b"veilfs v2 symlink";
const XATTR_VALUE_AD_V2: &[u8] = b"veilfs v2 xattr value";
/// Backing attribute holding an entry's random ID, to which the values of
/// its attributes are bound (docs/FORMAT.md §7). Never an encrypted
/// attribute name: those have no `.` after `user.`.
pub const XATTR_ID_NAME: &str = "user.veilfs.id";
pub const XATTR_ID_LEN: usize = 16;

/// Which form of docs/FORMAT.md §7 an extended attribute is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrVersion {
    /// Unpadded name; value bound to the name only. Read, never written.
    V1,
    /// Padded name; value bound to the name and the entry's ID.
    V2,
}

/// `name` || PKCS#7 padding to a multiple of 16.
fn pad16(name: &[u8], extra: usize) -> Vec<u8> {
    let pad = NAME_PAD - name.len() % NAME_PAD;
    let mut buf = Vec::with_capacity(name.len() + pad + extra);
    buf.extend_from_slice(name);
    buf.resize(name.len() + pad, pad as u8);
    buf
}

/// Strips PKCS#7 padding to a multiple of 16.
fn unpad16(mut buf: Vec<u8>) -> Result<Vec<u8>, NameError> {
    let pad = *buf.last().ok_or(NameError::BadPadding)? as usize;
    if pad == 0
        || pad > NAME_PAD
        || pad > buf.len()
        || !buf.len().is_multiple_of(NAME_PAD)
        || !buf[buf.len() - pad..].iter().all(|&b| b as usize == pad)
    {
        return Err(NameError::BadPadding);
    }
    buf.truncate(buf.len() - pad);
    Ok(buf)
}

/// AD of a symlink target bound to the directory with IV `dir`: its last
/// 8 bytes, the birth tag shared with the IVs of its `veilfs.diriv` copies.
fn symlink_ad_v2(dir: &DirIv) -> Vec<u8> {
    [SYMLINK_AD_V2, &dir.0[DIR_IV_RANDOM_LEN..]].concat()
}

fn xattr_value_ad_v2(backing_name: &str, entry_id: &[u8; XATTR_ID_LEN]) -> Vec<u8> {
    [XATTR_VALUE_AD_V2, backing_name.as_bytes(), entry_id].concat()
}

/// Random bytes at the start of a directory IV written by this version
/// (docs/FORMAT.md §6); the rest is the birth tag.
pub const DIR_IV_RANDOM_LEN: usize = 8;
const DIR_BIRTH_LABEL: &[u8] = b"veilfs v2 dir birth";

/// Whether `secondary`, the IV in a sync client's conflict copy of a
/// directory's `veilfs.diriv`, is accepted beside the directory's own IV
/// `main`: it differs from it and has the same birth tag, i.e. it is the
/// IV another device gave the same folder when both created it.
pub fn same_birth(main: &DirIv, secondary: &DirIv) -> bool {
    main != secondary && main.0[DIR_IV_RANDOM_LEN..] == secondary.0[DIR_IV_RANDOM_LEN..]
}

/// A directory's 128-bit IV.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirIv(pub [u8; DIR_IV_LEN]);

impl fmt::Debug for DirIv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DirIv({})", hex::encode(self.0))
    }
}

impl DirIv {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(DirIv)
    }
}

/// Why a name could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, `.`/`..`, containing `/` or NUL, or longer than 255 bytes.
    #[error("invalid file name")]
    Invalid,
    #[error("file name longer than 255 bytes")]
    TooLong,
    /// Not base64url, or a length no encryption produces.
    #[error("not a veilfs encrypted name")]
    BadEncoding,
    /// Authentication failed: tampered, or moved from another directory.
    #[error("encrypted name failed authentication (tampered, or moved from another directory)")]
    Unauthentic,
    /// The padding is malformed although the tag matched (a writer bug).
    #[error("encrypted name has bad padding")]
    BadPadding,
}

/// Rejects what must never reach the backing store.
pub fn validate_plain_name(name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(NameError::Invalid);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// How a plaintext name is stored in its backing directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackingName {
    /// The encoded encrypted name is the entry name.
    Regular(String),
    /// The entry is `<hash>.vln`; `<hash>.vln.name` holds `full`.
    Long { entry: String, full: String },
}

impl BackingName {
    /// The name of the entry in the backing directory.
    pub fn entry(&self) -> &str {
        match self {
            BackingName::Regular(n) => n,
            BackingName::Long { entry, .. } => entry,
        }
    }

    /// The long-name side record to write beside the entry, if any.
    pub fn long_record(&self) -> Option<(String, &str)> {
        match self {
            BackingName::Regular(_) => None,
            BackingName::Long { entry, full } => Some((format!("{entry}.name"), full.as_str())),
        }
    }
}

/// Hashed entry name for a long encoded name.
pub fn long_entry_name(full_encoded: &str) -> String {
    let digest = Sha256::digest(full_encoded.as_bytes());
    let mut s = B64.encode(digest);
    s.push_str(LONG_NAME_SUFFIX);
    s
}

/// How a sealed symlink target is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredTarget {
    /// The backing symlink's target is the sealed target itself.
    Inline(String),
    /// The backing symlink points to `link` (`<hash>.vlink`), a regular
    /// file beside it that holds `sealed`.
    Long { link: String, sealed: String },
}

impl StoredTarget {
    fn from_sealed(sealed: String) -> Self {
        if sealed.len() <= LONG_TARGET_THRESHOLD {
            return StoredTarget::Inline(sealed);
        }
        let mut link = B64.encode(Sha256::digest(sealed.as_bytes()));
        link.push_str(LONG_TARGET_SUFFIX);
        StoredTarget::Long { link, sealed }
    }

    /// What the backing symlink points to.
    pub fn link(&self) -> &str {
        match self {
            StoredTarget::Inline(s) => s,
            StoredTarget::Long { link, .. } => link,
        }
    }
}

/// The record name if a backing symlink's target is the long form
/// `<hash>.vlink`.
pub fn long_target_record(link: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(link).ok()?;
    let hash = s.strip_suffix(LONG_TARGET_SUFFIX)?;
    (hash.len() == LONG_NAME_HASH_LEN && is_b64url(hash)).then_some(s)
}

/// Checks a long target record's content against its name's hash.
pub fn long_target_record_matches(record: &str, sealed: &[u8]) -> bool {
    record.strip_suffix(LONG_TARGET_SUFFIX) == Some(&B64.encode(Sha256::digest(sealed))[..])
}

/// What a name found in a backing directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind<'a> {
    /// An encoded encrypted name.
    Regular(&'a str),
    /// A long-name entry; the argument is the entry name.
    Long(&'a str),
    /// A long-name side record (`<hash>.vln.name`): not listed itself.
    LongRecord,
    /// A long symlink target's record (`<hash>.vlink`): not listed itself.
    LongTargetRecord,
    /// veilfs's own metadata: `veilfs.conf`, its backup, dir IV files.
    Metadata,
    /// Anything else: a sync client's files, conflict copies, foreign
    /// files. Never listed as is, never deleted.
    Foreign,
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Classifies a backing entry name without any key.
pub fn classify_entry(name: &str) -> EntryKind<'_> {
    if name.starts_with("veilfs.") {
        return EntryKind::Metadata;
    }
    if let Some(hash) = name.strip_suffix(LONG_NAME_RECORD_SUFFIX) {
        if hash.len() == LONG_NAME_HASH_LEN && is_b64url(hash) {
            return EntryKind::LongRecord;
        }
        return EntryKind::Foreign;
    }
    if long_target_record(name.as_bytes()).is_some() {
        return EntryKind::LongTargetRecord;
    }
    if let Some(hash) = name.strip_suffix(LONG_NAME_SUFFIX) {
        if hash.len() == LONG_NAME_HASH_LEN && is_b64url(hash) {
            return EntryKind::Long(name);
        }
        return EntryKind::Foreign;
    }
    if name.len() >= MIN_ENCODED_LEN && is_b64url(name) {
        return EntryKind::Regular(name);
    }
    EntryKind::Foreign
}

fn link_record_ad(ino: u64, nlink: u64) -> [u8; LINK_RECORD_AD.len() + 16] {
    let mut ad = [0u8; LINK_RECORD_AD.len() + 16];
    ad[..LINK_RECORD_AD.len()].copy_from_slice(LINK_RECORD_AD);
    ad[LINK_RECORD_AD.len()..][..8].copy_from_slice(&ino.to_be_bytes());
    ad[LINK_RECORD_AD.len() + 8..].copy_from_slice(&nlink.to_be_bytes());
    ad
}

/// Encrypts and decrypts names, derives directory IVs, and seals symlink
/// targets and extended attributes. One per mount.
#[derive(Clone)]
pub struct NameCipher {
    names: Aead,
    metadata: Aead,
    dir_iv_key: DirIvKey,
    root_iv: DirIv,
    long_name_threshold: usize,
}

impl fmt::Debug for NameCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameCipher")
            .field("long_name_threshold", &self.long_name_threshold)
            .finish_non_exhaustive()
    }
}

impl NameCipher {
    pub fn new(keys: &DerivedKeys, long_name_threshold: u32) -> Self {
        NameCipher {
            names: Aead::new(keys.names.expose_secret()),
            metadata: Aead::new(keys.metadata.expose_secret()),
            dir_iv_key: keys.dir_iv.clone(),
            root_iv: DirIv(keys.root_dir_iv),
            long_name_threshold: long_name_threshold as usize,
        }
    }

    pub fn root_iv(&self) -> DirIv {
        self.root_iv
    }

    pub fn long_name_threshold(&self) -> usize {
        self.long_name_threshold
    }

    /// The link record vouching that the mount made `nlink` links to the
    /// backing inode `ino`: `nlink` and a tag over both under the metadata
    /// key (AES-GCM-SIV of an empty message, fixed nonce: a deterministic
    /// MAC). Only the key holder can make one.
    pub fn link_record(&self, ino: u64, nlink: u64) -> [u8; LINK_RECORD_LEN] {
        let mut out = [0u8; LINK_RECORD_LEN];
        out[..8].copy_from_slice(&nlink.to_be_bytes());
        let tag =
            self.metadata
                .seal_in_place(&[0u8; NONCE_LEN], &link_record_ad(ino, nlink), &mut []);
        out[8..].copy_from_slice(&tag);
        out
    }

    /// Whether `record` vouches for every one of the `nlink` links of the
    /// backing inode `ino`: it is authentic and counts at least `nlink`
    /// (links removed since do not matter; links added behind the mount's
    /// back do).
    pub fn link_record_covers(&self, record: &[u8], ino: u64, nlink: u64) -> bool {
        let Ok(record) = <[u8; LINK_RECORD_LEN]>::try_from(record) else {
            return false;
        };
        let made = u64::from_be_bytes(record[..8].try_into().expect("8 bytes"));
        made >= nlink
            && self
                .metadata
                .open_in_place(
                    &[0u8; NONCE_LEN],
                    &link_record_ad(ino, made),
                    &mut [],
                    &record[8..],
                )
                .is_ok()
    }

    /// The IV vaults written before the security review gave a directory
    /// named `name` in a directory with IV `parent`: HMAC-SHA256(dir IV
    /// key, parent IV || name), first 16 bytes. Never used for a new
    /// directory any more (`mv X Y; mkdir X` reused it, docs/FORMAT.md §6);
    /// kept to build vaults of that form in tests.
    pub fn child_dir_iv(&self, parent: &DirIv, name: &[u8]) -> DirIv {
        let mut mac =
            <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.dir_iv_key.expose_secret())
                .expect("HMAC takes any key length");
        mac.update(&parent.0);
        mac.update(name);
        let out = mac.finalize().into_bytes();
        let mut iv = [0u8; DIR_IV_LEN];
        iv.copy_from_slice(&out[..DIR_IV_LEN]);
        DirIv(iv)
    }

    /// The IV of a directory created now with plaintext name `name` in a
    /// directory with IV `parent` (docs/FORMAT.md §6): 8 fresh random bytes
    /// followed by the 8-byte birth tag [`NameCipher::dir_birth_tag`]. The
    /// random half makes every directory's IV its own, also after
    /// `mv X Y; mkdir X`; the birth half lets a reader accept the IV of a
    /// sync client's conflict copy of `veilfs.diriv` when two devices
    /// create the same folder (see [`same_birth`]).
    pub fn new_dir_iv(&self, parent: &DirIv, name: &[u8]) -> DirIv {
        let mut iv = [0u8; DIR_IV_LEN];
        crypto::random::fill(&mut iv[..DIR_IV_RANDOM_LEN]);
        iv[DIR_IV_RANDOM_LEN..].copy_from_slice(&self.dir_birth_tag(parent, name));
        DirIv(iv)
    }

    /// `HMAC-SHA256(dir IV key, "veilfs v2 dir birth" || parent[8..16] ||
    /// name)`, first 8 bytes: the same for every directory created with
    /// `name` in the directory with IV `parent` or in one with the same
    /// birth tag (the same folder, created on another device).
    pub fn dir_birth_tag(
        &self,
        parent: &DirIv,
        name: &[u8],
    ) -> [u8; DIR_IV_LEN - DIR_IV_RANDOM_LEN] {
        let mut mac =
            <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.dir_iv_key.expose_secret())
                .expect("HMAC takes any key length");
        mac.update(DIR_BIRTH_LABEL);
        mac.update(&parent.0[DIR_IV_RANDOM_LEN..]);
        mac.update(name);
        let out = mac.finalize().into_bytes();
        let mut tag = [0u8; DIR_IV_LEN - DIR_IV_RANDOM_LEN];
        tag.copy_from_slice(&out[..DIR_IV_LEN - DIR_IV_RANDOM_LEN]);
        tag
    }

    /// Encrypts a plaintext name to its encoded form (which may still be
    /// long; see [`NameCipher::backing_name`]).
    pub fn encrypt_name(&self, dir: &DirIv, name: &[u8]) -> Result<String, NameError> {
        validate_plain_name(name)?;
        let pad = NAME_PAD - name.len() % NAME_PAD;
        let mut buf = Vec::with_capacity(name.len() + pad + TAG_LEN);
        buf.extend_from_slice(name);
        buf.resize(name.len() + pad, pad as u8);
        let tag = self.names.seal_in_place(nonce_at(&dir.0), &dir.0, &mut buf);
        buf.extend_from_slice(&tag);
        Ok(B64.encode(&buf))
    }

    /// The backing entry for a plaintext name.
    pub fn backing_name(&self, dir: &DirIv, name: &[u8]) -> Result<BackingName, NameError> {
        let full = self.encrypt_name(dir, name)?;
        Ok(self.backing_name_for_encoded(full))
    }

    pub fn backing_name_for_encoded(&self, full: String) -> BackingName {
        if full.len() > self.long_name_threshold {
            BackingName::Long {
                entry: long_entry_name(&full),
                full,
            }
        } else {
            BackingName::Regular(full)
        }
    }

    /// Decrypts an encoded name (a regular entry, or a long-name record's
    /// content).
    pub fn decrypt_name(&self, dir: &DirIv, encoded: &str) -> Result<Vec<u8>, NameError> {
        let mut buf = B64
            .decode(encoded.trim_end().as_bytes())
            .map_err(|_| NameError::BadEncoding)?;
        if buf.len() < NAME_PAD + TAG_LEN || !(buf.len() - TAG_LEN).is_multiple_of(NAME_PAD) {
            return Err(NameError::BadEncoding);
        }
        let body_len = buf.len() - TAG_LEN;
        let (body, tag) = buf.split_at_mut(body_len);
        self.names
            .open_in_place(nonce_at(&dir.0), &dir.0, body, tag)
            .map_err(|_| NameError::Unauthentic)?;
        buf.truncate(body_len);
        let pad = *buf.last().ok_or(NameError::BadPadding)? as usize;
        if pad == 0
            || pad > NAME_PAD
            || pad > buf.len()
            || !buf[buf.len() - pad..].iter().all(|&b| b as usize == pad)
        {
            return Err(NameError::BadPadding);
        }
        buf.truncate(buf.len() - pad);
        validate_plain_name(&buf).map_err(|_| NameError::BadPadding)?;
        Ok(buf)
    }

    /// Seals a symlink target, bound to the directory (IV `dir`) it is
    /// created in; the result is the backing symlink's target.
    pub fn encrypt_symlink_target(&self, dir: &DirIv, target: &[u8]) -> String {
        self.seal_symlink_target_at(dir, target, crypto::nonce::fresh())
    }

    /// Seals a symlink target for the directory with IV `dir` and decides
    /// how it is stored: in the backing symlink, or, when longer than
    /// [`LONG_TARGET_THRESHOLD`], in a `<hash>.vlink` record the backing
    /// symlink points to.
    pub fn store_symlink_target(&self, dir: &DirIv, target: &[u8]) -> StoredTarget {
        self.store_symlink_target_at(dir, target, crypto::nonce::fresh())
    }

    /// [`Self::store_symlink_target`] with a caller-chosen nonce: test
    /// vectors only (unit tests and the `test-vectors` feature).
    #[cfg(any(test, feature = "test-vectors"))]
    pub fn store_symlink_target_with_nonce(
        &self,
        dir: &DirIv,
        target: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> StoredTarget {
        self.store_symlink_target_at(dir, target, nonce)
    }

    fn store_symlink_target_at(
        &self,
        dir: &DirIv,
        target: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> StoredTarget {
        // Written unbound (version 1, docs/FORMAT.md §7): a target bound to
        // its directory could not move with rename(2) to another directory
        // without a new inode, which POSIX and every backup tool rely on.
        let _ = dir;
        StoredTarget::from_sealed(
            B64.encode(self.seal_metadata_with_nonce(SYMLINK_AD, target, nonce)),
        )
    }

    /// [`NameCipher::encrypt_symlink_target`] with a given nonce (test
    /// vectors only, unit tests and the `test-vectors` feature: a nonce
    /// must never repeat).
    #[cfg(any(test, feature = "test-vectors"))]
    pub fn encrypt_symlink_target_with_nonce(
        &self,
        dir: &DirIv,
        target: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> String {
        self.seal_symlink_target_at(dir, target, nonce)
    }

    fn seal_symlink_target_at(&self, dir: &DirIv, target: &[u8], nonce: [u8; NONCE_LEN]) -> String {
        B64.encode(self.seal_metadata_with_nonce(&symlink_ad_v2(dir), target, nonce))
    }

    /// Opens a backing symlink's target found in the directory with IV
    /// `dir`: bound to the directory (version 2), or of the first version
    /// (unbound). The two have one layout and differ only in their AD, so
    /// the stored length gives the plaintext length for both, and neither
    /// can pass for the other.
    pub fn decrypt_symlink_target(&self, dir: &DirIv, stored: &[u8]) -> Result<Vec<u8>, NameError> {
        self.open_symlink_target(dir, stored).map(|(t, _)| t)
    }

    /// [`NameCipher::decrypt_symlink_target`] and whether the target is
    /// bound to its directory (version 2).
    pub fn open_symlink_target(
        &self,
        dir: &DirIv,
        stored: &[u8],
    ) -> Result<(Vec<u8>, bool), NameError> {
        let raw = B64.decode(stored).map_err(|_| NameError::BadEncoding)?;
        match self.open_metadata(&symlink_ad_v2(dir), raw.clone()) {
            Ok(t) => Ok((t, true)),
            Err(_) => self.open_metadata(SYMLINK_AD, raw).map(|t| (t, false)),
        }
    }

    /// A symlink target sealed as the first version did (constant AD, not
    /// bound to its directory). Never written by the mount; for tests of
    /// vaults written before version 2 (unit tests and the `test-vectors`
    /// feature).
    #[cfg(any(test, feature = "test-vectors"))]
    pub fn encrypt_symlink_target_v1(&self, target: &[u8]) -> String {
        let nonce = crypto::nonce::fresh();
        B64.encode(self.seal_metadata_with_nonce(SYMLINK_AD, target, nonce))
    }

    /// An attribute value sealed as the first version did (bound to the
    /// name only). For tests of vaults written before version 2 (unit
    /// tests and the `test-vectors` feature).
    #[cfg(any(test, feature = "test-vectors"))]
    pub fn encrypt_xattr_value_v1(&self, backing_name: &str, value: &[u8]) -> Vec<u8> {
        let nonce = crypto::nonce::fresh();
        let ad = [XATTR_VALUE_AD, backing_name.as_bytes()].concat();
        self.seal_metadata_with_nonce(&ad, value, nonce)
    }

    /// Encrypts a `user.*` attribute name (without the prefix) to the
    /// backing attribute name, deterministically so it can be looked up:
    /// padded to a multiple of 16 bytes (docs/FORMAT.md §7).
    pub fn encrypt_xattr_name(&self, name: &[u8]) -> String {
        let mut buf = pad16(name, TAG_LEN);
        self.seal_xattr_name(XATTR_NAME_AD_V2, &mut buf)
    }

    /// The first version's backing name of an attribute (unpadded), for
    /// finding attributes written before padding.
    pub fn encrypt_xattr_name_v1(&self, name: &[u8]) -> String {
        let mut buf = name.to_vec();
        self.seal_xattr_name(XATTR_NAME_AD, &mut buf)
    }

    fn seal_xattr_name(&self, ad: &[u8], buf: &mut Vec<u8>) -> String {
        let tag = self.names.seal_in_place(&[0u8; NONCE_LEN], ad, buf);
        buf.extend_from_slice(&tag);
        format!("user.{}", B64.encode(&buf))
    }

    /// Decrypts a backing attribute name of either version.
    pub fn decrypt_xattr_name(&self, backing: &str) -> Result<(Vec<u8>, XattrVersion), NameError> {
        let enc = backing
            .strip_prefix("user.")
            .ok_or(NameError::BadEncoding)?;
        let raw = B64.decode(enc).map_err(|_| NameError::BadEncoding)?;
        if raw.len() < TAG_LEN {
            return Err(NameError::BadEncoding);
        }
        let open = |ad: &[u8]| {
            let mut buf = raw.clone();
            let body_len = buf.len() - TAG_LEN;
            let (body, tag) = buf.split_at_mut(body_len);
            self.names
                .open_in_place(&[0u8; NONCE_LEN], ad, body, tag)
                .map_err(|_| NameError::Unauthentic)?;
            buf.truncate(body_len);
            Ok(buf)
        };
        match open(XATTR_NAME_AD_V2) {
            Ok(padded) => Ok((unpad16(padded)?, XattrVersion::V2)),
            Err(_) => open(XATTR_NAME_AD).map(|n| (n, XattrVersion::V1)),
        }
    }

    /// Seals an attribute value, bound to its backing attribute name and to
    /// the entry's ID (its `user.veilfs.id` attribute), so values can be
    /// swapped neither between attributes nor between entries.
    pub fn encrypt_xattr_value(
        &self,
        backing_name: &str,
        entry_id: &[u8; XATTR_ID_LEN],
        value: &[u8],
    ) -> Vec<u8> {
        let ad = xattr_value_ad_v2(backing_name, entry_id);
        self.seal_metadata_with_nonce(&ad, value, crypto::nonce::fresh())
    }

    /// [`NameCipher::encrypt_xattr_value`] with a given nonce (test vectors
    /// only: unit tests and the `test-vectors` feature).
    #[cfg(any(test, feature = "test-vectors"))]
    pub fn encrypt_xattr_value_with_nonce(
        &self,
        backing_name: &str,
        entry_id: &[u8; XATTR_ID_LEN],
        value: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        let ad = xattr_value_ad_v2(backing_name, entry_id);
        self.seal_metadata_with_nonce(&ad, value, nonce)
    }

    /// Opens an attribute value: of version 2 (bound to `entry_id`, which
    /// must then be known) or 1 (bound to the name only).
    pub fn decrypt_xattr_value(
        &self,
        backing_name: &str,
        version: XattrVersion,
        entry_id: Option<&[u8; XATTR_ID_LEN]>,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, NameError> {
        let ad = match version {
            XattrVersion::V1 => [XATTR_VALUE_AD, backing_name.as_bytes()].concat(),
            XattrVersion::V2 => {
                xattr_value_ad_v2(backing_name, entry_id.ok_or(NameError::Unauthentic)?)
            }
        };
        self.open_metadata(&ad, stored)
    }

    fn seal_metadata_with_nonce(&self, ad: &[u8], plain: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .metadata
            .seal_in_place(&nonce, ad, &mut out[NONCE_LEN..]);
        out.extend_from_slice(&tag);
        out
    }

    fn open_metadata(&self, ad: &[u8], mut raw: Vec<u8>) -> Result<Vec<u8>, NameError> {
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(NameError::BadEncoding);
        }
        let body_end = raw.len() - TAG_LEN;
        let (head, tag) = raw.split_at_mut(body_end);
        let (nonce, body) = head.split_at_mut(NONCE_LEN);
        self.metadata
            .open_in_place(nonce_at(nonce), ad, body, tag)
            .map_err(|_| NameError::Unauthentic)?;
        raw.truncate(body_end);
        raw.drain(..NONCE_LEN);
        Ok(raw)
    }
}

#[cfg(test)]
mod tests;
