//! The one AEAD of veilfs: AES-256-GCM-SIV (RFC 8452) through AWS-LC
//! (`aws-lc-rs`), whose assembly AES-NI/CLMUL code sealed a 64-byte name
//! 2.3x and a 4 KiB chunk 1.3x as fast as the pure-Rust `aes-gcm-siv`
//! crate (`cargo bench --bench crypto`, issue 15). Same algorithm, same
//! bytes: the vectors in tests/vectors.rs and tests/format_reference.py
//! pin them.
//!
//! The wrapper takes an explicit nonce and associated data, works in place
//! with a detached tag, and never allocates: the format layers decide where
//! nonce and tag are stored.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, Nonce, UnboundKey};

use super::KEY_LEN;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// A message failed authentication: wrong key, nonce, AD, tag or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthentic;

impl fmt::Display for Unauthentic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message failed authentication")
    }
}

impl std::error::Error for Unauthentic {}

/// An AES-256-GCM-SIV key, expanded once. Cloning shares the expanded key
/// (AWS-LC wipes it when the last clone drops).
#[derive(Clone)]
pub struct Aead(Arc<LessSafeKey>);

impl fmt::Debug for Aead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Aead(<AES-256-GCM-SIV key>)")
    }
}

impl Aead {
    /// Expands `key`. Only the crate builds one, from a key of the role the
    /// caller needs (see [`crate::keys`]).
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Aead(Arc::new(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM_SIV, key).expect("AES-256 takes a 32-byte key"),
        )))
    }

    /// Encrypts `buf` in place under `nonce` and `ad`; returns the tag.
    ///
    /// # Panics
    /// Above AWS-LC's per-message limit (64 GiB), which no veilfs message
    /// comes near (the largest is a 64 KiB chunk).
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(ad), buf)
            .expect("AES-GCM-SIV seals any message veilfs writes");
        tag.as_ref().try_into().expect("a 16-byte tag")
    }

    /// Decrypts `buf` in place if `tag` authenticates it with `nonce` and
    /// `ad`. On failure `buf` is zeroed: no unauthenticated plaintext is
    /// ever left behind.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), Unauthentic> {
        match self.0.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(ad),
            tag,
            buf,
        ) {
            Ok(_) => Ok(()),
            Err(_) => {
                buf.fill(0);
                Err(Unauthentic)
            }
        }
    }

    /// Decrypts `sealed` into `out` (of the same length) if `tag`
    /// authenticates it with `nonce` and `ad`: one pass, no copy. On
    /// failure `out` is zeroed.
    pub fn open_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        sealed: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<(), Unauthentic> {
        match self.0.open_separate_gather(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(ad),
            sealed,
            tag,
            out,
        ) {
            Ok(()) => Ok(()),
            Err(_) => {
                out.fill(0);
                Err(Unauthentic)
            }
        }
    }
}

/// The first 12 bytes of `bytes` as a nonce.
///
/// # Panics
/// If `bytes` is shorter: callers slice stored fields of fixed length.
pub fn nonce_at(bytes: &[u8]) -> &[u8; NONCE_LEN] {
    bytes[..NONCE_LEN].try_into().expect("a 12-byte nonce")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8452, appendix C.2, the first AES-256-GCM-SIV vector with
    /// associated data (AD `01`, plaintext `0200000000000000`).
    #[test]
    fn rfc8452_vector() {
        let mut key = [0u8; KEY_LEN];
        key[0] = 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[0] = 3;
        let aead = Aead::new(&key);
        let mut buf = hex::decode("0200000000000000").unwrap();
        let tag = aead.seal_in_place(&nonce, &[1], &mut buf);
        assert_eq!(
            hex::encode([&buf[..], &tag[..]].concat()),
            "1de22967237a813291213f267e3b452f02d01ae33e4ec854"
        );
        let sealed = buf.clone();
        aead.open_in_place(&nonce, &[1], &mut buf, &tag).unwrap();
        assert_eq!(hex::encode(&buf), "0200000000000000");
        let mut out = [0u8; 8];
        aead.open_into(&nonce, &[1], &sealed, &tag, &mut out)
            .unwrap();
        assert_eq!(out[..], buf[..]);
    }

    #[test]
    fn a_wrong_ad_nonce_tag_or_key_is_refused_and_leaves_zeros() {
        let aead = Aead::new(&[7u8; KEY_LEN]);
        let nonce = [5u8; NONCE_LEN];
        let mut buf = *b"sixteen byte msg";
        let tag = aead.seal_in_place(&nonce, b"ad", &mut buf);
        let sealed = buf;
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        type Case<'a> = (&'a Aead, [u8; NONCE_LEN], &'a [u8], [u8; TAG_LEN]);
        let cases: [Case<'_>; 4] = [
            (&aead, nonce, b"AD", tag),
            (&aead, [6u8; NONCE_LEN], b"ad", tag),
            (&aead, nonce, b"ad", bad_tag),
            (&Aead::new(&[8u8; KEY_LEN]), nonce, b"ad", tag),
        ];
        for (key, nonce, ad, tag) in cases {
            let mut buf = sealed;
            assert_eq!(
                key.open_in_place(&nonce, ad, &mut buf, &tag),
                Err(Unauthentic)
            );
            assert_eq!(buf, [0u8; 16]);
            let mut out = [9u8; 16];
            assert_eq!(
                key.open_into(&nonce, ad, &sealed, &tag, &mut out),
                Err(Unauthentic)
            );
            assert_eq!(out, [0u8; 16]);
        }
        // A short tag is refused, not read past.
        let mut buf = sealed;
        assert!(
            aead.open_in_place(&nonce, b"ad", &mut buf, &tag[..15])
                .is_err()
        );
    }
}
