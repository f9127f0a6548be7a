//! The cryptographic primitives, in one place (like age-core's
//! `primitives.rs` or gocryptfs's `cryptocore`):
//!
//! - [`random`]: the one source of random bytes (the OS CSPRNG);
//! - [`nonce`]: the one source of AEAD nonces, drawn from [`random`];
//! - [`aead`]: the one AEAD, AES-256-GCM-SIV through AWS-LC, used for file
//!   content, names, metadata, the config's key slots and rekey's wrapped
//!   keys.
//!
//! The format layers ([`crate::content`], [`crate::names`], the vault
//! config) decide what is sealed with which nonce and associated data;
//! nothing outside this module draws random bytes or builds an AEAD key.
//! Keys themselves, one type per role, are in [`crate::keys`].

pub mod aead;
pub mod nonce;
pub mod random;

pub use aead::{Aead, NONCE_LEN, TAG_LEN, Unauthentic};

/// Length of every key: the master key and each 256-bit subkey.
pub const KEY_LEN: usize = 32;
