//! The master key, its 64-digit form, and the subkeys derived from it.
//!
//! The 64-digit key a user writes down *is* the master key (32 bytes as
//! lowercase hex). Every other key is derived from it with HKDF-SHA256 and a
//! distinct label, so a lost config file never loses data: the key alone
//! re-derives everything (see docs/FORMAT.md, "Key derivation").

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

pub use crate::crypto::KEY_LEN;

/// HKDF-Extract salt. Changing it changes every derived key: format break.
pub const HKDF_SALT: &[u8] = b"veilfs-v1";
pub const LABEL_CONTENT: &[u8] = b"veilfs v1 content key";
pub const LABEL_NAMES: &[u8] = b"veilfs v1 name key";
pub const LABEL_DIR_IV: &[u8] = b"veilfs v1 dir iv key";
pub const LABEL_ROOT_DIR_IV: &[u8] = b"veilfs v1 root dir iv";
pub const LABEL_METADATA: &[u8] = b"veilfs v1 metadata key";
pub const LABEL_KEY_ID: &[u8] = b"veilfs v1 key id";
pub const LABEL_CONFIG_MAC: &[u8] = b"veilfs v1 config mac key";

/// A 256-bit secret that is wiped from memory when dropped. The bytes live
/// on the heap and are written there in place: moving a key moves only a
/// pointer, so no copy of it is left behind on the stack.
#[derive(Clone)]
pub(crate) struct SecretKey(Box<Zeroizing<[u8; KEY_LEN]>>);

impl SecretKey {
    /// Takes the key from `bytes` and wipes `bytes`.
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> Self {
        let key = SecretKey::fill_with(|buf| buf.copy_from_slice(&bytes));
        bytes.zeroize();
        key
    }

    /// A key written in place by `fill`, which gets a zeroed buffer.
    pub fn fill_with(fill: impl FnOnce(&mut [u8; KEY_LEN])) -> Self {
        let mut key = SecretKey(Box::new(Zeroizing::new([0u8; KEY_LEN])));
        fill(&mut key.0);
        key
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// One key type per role, so that a key of one role cannot be passed
/// where another's is needed (a compile error, see
/// [`crate::content::ContentCipher::new`]). Only this crate makes them:
/// [`MasterKey::derive`] is the one way to get one.
macro_rules! role_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SecretKey);

        impl $name {
            /// The raw key bytes, for the primitive that uses them (and for
            /// the derivation test vectors).
            pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
                self.0.as_bytes()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

role_key!(
    /// Seals and opens file content chunks ([`crate::content::ContentCipher`]).
    ContentKey
);
#[cfg(test)]
impl ContentKey {
    /// A content key from fixed bytes: unit tests only.
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        ContentKey(SecretKey::from_bytes(bytes))
    }
}

role_key!(
    /// Encrypts file and attribute names ([`crate::names::NameCipher`]).
    NameKey
);
role_key!(
    /// The HMAC key of directory IVs (birth tags and first-version IVs).
    DirIvKey
);
role_key!(
    /// Seals symlink targets, attribute values and link records.
    MetadataKey
);
role_key!(
    /// The HMAC key of the config file's MAC.
    ConfigMacKey
);

/// Why a typed-in 64-digit key was refused. None of these reveal the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// A character that is not a hex digit, space or dash.
    #[error(
        "the key contains {0:?}; a veilfs key is 64 hex digits (0-9, a-f), optionally grouped with spaces or dashes"
    )]
    InvalidCharacter(char),
    /// Not exactly 64 hex digits.
    #[error("the key has {0} hex digits; a veilfs key has exactly 64")]
    WrongLength(usize),
}

/// The vault's master key. Generated once at `init`, never stored in clear.
/// Not `Clone`: one copy per unlock, and its bytes come out only through
/// [`MasterKey::expose_secret`].
///
/// ```compile_fail,E0599
/// let key = veilfs::keys::MasterKey::generate();
/// let copy = key.clone();
/// ```
#[derive(Debug)]
pub struct MasterKey(SecretKey);

impl MasterKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Self {
        MasterKey(SecretKey::fill_with(|buf| crate::crypto::random::fill(buf)))
    }

    /// Takes the key from `bytes` and wipes `bytes`.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        MasterKey(SecretKey::from_bytes(bytes))
    }

    /// A key written in place by `fill` (which gets a zeroed buffer), e.g.
    /// read straight from a pipe.
    pub fn try_fill_with<E>(
        fill: impl FnOnce(&mut [u8; KEY_LEN]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut key = SecretKey::fill_with(|_| {});
        fill(&mut key.0)?;
        Ok(MasterKey(key))
    }

    /// Copies the key out of `bytes`, which the caller keeps (and wipes).
    pub fn from_slice(bytes: &[u8; KEY_LEN]) -> Self {
        MasterKey(SecretKey::fill_with(|buf| buf.copy_from_slice(bytes)))
    }

    /// The raw key bytes. Only for what must handle the key itself: its
    /// 64-digit form, wrapping it into a key slot or rekey's state file,
    /// and the pipe to a daemonized mount.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        self.0.as_bytes()
    }

    /// Parses the 64-digit form. Spaces, dashes, tabs, newlines and upper
    /// case are tolerated because people copy keys from paper and PDFs.
    pub fn parse(text: &str) -> Result<Self, KeyParseError> {
        let mut key = SecretKey::fill_with(|_| {});
        let bytes = &mut key.0;
        let mut digits = 0usize;
        for c in text.chars() {
            let value = match c {
                '0'..='9' => c as u8 - b'0',
                'a'..='f' => c as u8 - b'a' + 10,
                'A'..='F' => c as u8 - b'A' + 10,
                ' ' | '-' | '\t' | '\n' | '\r' => continue,
                other => return Err(KeyParseError::InvalidCharacter(other)),
            };
            if digits < 2 * KEY_LEN {
                bytes[digits / 2] |= if digits.is_multiple_of(2) {
                    value << 4
                } else {
                    value
                };
            }
            digits += 1;
        }
        if digits != 2 * KEY_LEN {
            return Err(KeyParseError::WrongLength(digits));
        }
        Ok(MasterKey(key))
    }

    /// The 64-digit form shown to the user once: 16 groups of 4 lowercase
    /// hex digits joined by `-`.
    pub fn display_digits(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(79));
        for (i, b) in self.expose_secret().iter().enumerate() {
            if i > 0 && i % 2 == 0 {
                out.push('-');
            }
            out.push(char::from_digit((b >> 4) as u32, 16).unwrap());
            out.push(char::from_digit((b & 15) as u32, 16).unwrap());
        }
        out
    }

    fn expand(&self, label: &[u8], out: &mut [u8]) {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), self.expose_secret());
        hk.expand(label, out)
            .expect("HKDF output length is a small constant");
    }

    fn derive_key(&self, label: &[u8]) -> SecretKey {
        SecretKey::fill_with(|buf| self.expand(label, buf))
    }

    /// A 256-bit subkey for `label`, for a key used outside the vault's
    /// format (rekey's state file): HKDF-SHA256 with the vault's salt, as
    /// every derived key.
    pub(crate) fn derive_raw(&self, label: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        self.expand(label, &mut out[..]);
        out
    }

    /// A public fingerprint of the key: tells "wrong key" from "damaged
    /// config" without revealing anything usable about the key.
    pub fn key_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        self.expand(LABEL_KEY_ID, &mut id);
        id
    }

    /// The config MAC's key alone: checking a config at unlock needs no
    /// other subkey.
    pub fn config_mac_key(&self) -> ConfigMacKey {
        ConfigMacKey(self.derive_key(LABEL_CONFIG_MAC))
    }

    pub fn derive(&self) -> DerivedKeys {
        let mut root_dir_iv = [0u8; 16];
        self.expand(LABEL_ROOT_DIR_IV, &mut root_dir_iv);
        DerivedKeys {
            content: ContentKey(self.derive_key(LABEL_CONTENT)),
            names: NameKey(self.derive_key(LABEL_NAMES)),
            dir_iv: DirIvKey(self.derive_key(LABEL_DIR_IV)),
            metadata: MetadataKey(self.derive_key(LABEL_METADATA)),
            config_mac: ConfigMacKey(self.derive_key(LABEL_CONFIG_MAC)),
            root_dir_iv,
        }
    }
}

/// Every subkey of one vault, each of its own type. Built once per unlock,
/// never per operation.
#[derive(Debug)]
pub struct DerivedKeys {
    pub content: ContentKey,
    pub names: NameKey,
    pub dir_iv: DirIvKey,
    pub metadata: MetadataKey,
    pub config_mac: ConfigMacKey,
    pub root_dir_iv: [u8; 16],
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: &str =
        "0001-0203-0405-0607-0809-0a0b-0c0d-0e0f-1011-1213-1415-1617-1819-1a1b-1c1d-1e1f";

    fn fixed_key() -> MasterKey {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        MasterKey::from_bytes(b)
    }

    #[test]
    fn display_is_sixteen_groups_of_four() {
        let shown = fixed_key().display_digits();
        assert_eq!(shown.as_str(), DIGITS);
        assert_eq!(shown.split('-').count(), 16);
    }

    #[test]
    fn parse_tolerates_spaces_dashes_and_case() {
        let messy =
            " 00010203 0405-0607\t08090A0B0C0D0E0F-1011 1213 1415 1617 1819 1A1B 1C1D 1E1F\n";
        assert_eq!(
            MasterKey::parse(messy).unwrap().expose_secret(),
            fixed_key().expose_secret()
        );
        assert_eq!(
            MasterKey::parse(DIGITS).unwrap().expose_secret(),
            fixed_key().expose_secret()
        );
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(
            MasterKey::parse("00zz").unwrap_err(),
            KeyParseError::InvalidCharacter('z')
        );
        assert_eq!(
            MasterKey::parse(&DIGITS[..70]).unwrap_err(),
            KeyParseError::WrongLength(56)
        );
        let long = format!("{DIGITS}00");
        assert_eq!(
            MasterKey::parse(&long).unwrap_err(),
            KeyParseError::WrongLength(66)
        );
    }

    /// Issue 13, finding 8: a key is a pointer to its heap buffer, so
    /// moving a key (into a `DerivedKeys`, out of a function) leaves no
    /// copy of it on the stack, and the buffer is wiped on drop.
    #[test]
    fn keys_move_without_copying_their_bytes() {
        assert_eq!(
            std::mem::size_of::<SecretKey>(),
            std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<MasterKey>(),
            std::mem::size_of::<usize>()
        );
        let key = MasterKey::try_fill_with(|b| {
            b[0] = 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(key.expose_secret()[0], 1);
        assert_eq!(key.expose_secret()[1..], [0u8; 31]);
        let mut src = [5u8; KEY_LEN];
        let copy = MasterKey::from_slice(&src);
        assert_eq!(copy.expose_secret(), &[5u8; KEY_LEN]);
        src.zeroize();
        assert_eq!(copy.expose_secret(), &[5u8; KEY_LEN]);
    }

    /// Issue 13, finding 8: the HMAC-SHA256 key states are wiped on drop.
    /// Without sha2's `zeroize` feature this does not compile. (The AES
    /// key schedules are AWS-LC's, which `EVP_AEAD_CTX_free` cleanses.)
    #[test]
    fn hmac_key_states_are_zeroized_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        // The SHA-256 states inside the HMACs that hold the HKDF
        // pseudo-random key, the config MAC key and the directory-IV key
        // (HMAC keeps its key only as the two padded-key hash states).
        wiped_on_drop::<sha2::Sha256>();
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            MasterKey::generate().expose_secret(),
            MasterKey::generate().expose_secret()
        );
    }

    /// Test vector: a format change in key derivation must fail this test.
    #[test]
    fn derivation_vectors() {
        let k = fixed_key();
        let d = k.derive();
        assert_eq!(hex::encode(k.key_id()), "6dffbbc8765603be61158d0ce046fdcd");
        assert_eq!(
            hex::encode(d.content.expose_secret()),
            "d814ebe47a70e48c319590e9321917900def69f857a31cf9fa9f807846476c89"
        );
        assert_eq!(
            hex::encode(d.names.expose_secret()),
            "ef28a65ac5ae42caf692c859b39a89120ac8fd709e69a736ab153b388c443bc1"
        );
        assert_eq!(
            hex::encode(d.dir_iv.expose_secret()),
            "39311ace6997041fc70cfbb5d7944ccbbe52123c6f25b61a5a829760684a8511"
        );
        assert_eq!(
            hex::encode(d.metadata.expose_secret()),
            "2bed8d740167373ece9de5d116954be7777e980fc0a2ca30ff2a0920a21f3227"
        );
        assert_eq!(
            hex::encode(d.config_mac.expose_secret()),
            "4a93c5dc9aad36c39a899135d765beee35e7f30730086a95d7efcaad6c3772f4"
        );
        assert_eq!(
            k.config_mac_key().expose_secret(),
            d.config_mac.expose_secret(),
            "the MAC key alone is the one derive() gives"
        );
        assert_eq!(
            hex::encode(d.root_dir_iv),
            "8ad93d96d63a3da8ff1937900d76ecc6"
        );
    }
}
