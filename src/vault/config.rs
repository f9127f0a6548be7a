//! The config file's data model (docs/FORMAT.md §3): JSON (de)serialization,
//! validation, canonical bytes, the MAC, and password slots.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::VaultError;
use crate::content::ChunkLayout;
use crate::crypto::{self, Aead, NONCE_LEN, TAG_LEN};
use crate::keys::{KEY_LEN, MasterKey};
use crate::names::{MAX_LONG_NAME_THRESHOLD, MIN_LONG_NAME_THRESHOLD};

pub const FORMAT_NAME: &str = "veilfs";
pub const FORMAT_VERSION: u32 = 1;
pub const CIPHER: &str = "AES-256-GCM-SIV";
pub const SLOT_KIND_PASSWORD: &str = "password";
pub const KDF_ARGON2ID: &str = "argon2id";
/// Argon2 version 1.3.
pub const ARGON2_VERSION: u32 = 0x13;
pub const SALT_LEN: usize = 16;
pub const KEY_ID_LEN: usize = 16;
pub const MAC_LEN: usize = 32;
pub const WRAPPED_KEY_LEN: usize = KEY_LEN + TAG_LEN;
/// Domain separator at the start of `PARAMS`.
pub const PARAMS_DOMAIN: &[u8] = b"veilfs-config-v1";
/// No legitimate config comes near this; a bigger file is refused unread.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// The most password slots a config may hold. veilfs itself writes at most
/// one; the bound keeps a hostile config from queueing thousands of
/// Argon2 runs.
pub const MAX_KEY_SLOTS: usize = 4;
/// The most Argon2 work an unlock may do, summed over all slots, in KiB of
/// memory × passes: one slot at the maximum parameters (1 GiB, t = 20).
pub const MAX_TOTAL_KDF_COST: u64 = KdfParams::MAX_M_KIB as u64 * KdfParams::MAX_T as u64;

/// Argon2id cost parameters of a password slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    pub const MIN_M_KIB: u32 = 32 * 1024;
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    pub const MIN_T: u32 = 2;
    pub const MAX_T: u32 = 20;
    pub const MIN_P: u32 = 1;
    pub const MAX_P: u32 = 16;

    /// Defaults for new password slots: m = 128 MiB, t = 4, p = 4 unlock
    /// in about 0.5 s on a 2-core 2.5 GHz Xeon (release build); see
    /// docs/PERFORMANCE.md.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 128 * 1024,
        t: 4,
        p: 4,
    };

    /// The cheapest parameters the format allows: for tests only.
    pub const MINIMUM: KdfParams = KdfParams {
        m_kib: Self::MIN_M_KIB,
        t: Self::MIN_T,
        p: Self::MIN_P,
    };

    /// Checks the limits of docs/FORMAT.md §3.2. Returns the offending
    /// parameter, its value and its allowed range.
    pub fn check(&self) -> Result<(), (&'static str, u32, u32, u32)> {
        let checks = [
            ("m_kib", self.m_kib, Self::MIN_M_KIB, Self::MAX_M_KIB),
            ("t", self.t, Self::MIN_T, Self::MAX_T),
            ("p", self.p, Self::MIN_P, Self::MAX_P),
        ];
        for (name, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err((name, value, min, max));
            }
        }
        Ok(())
    }

    pub(crate) fn check_for(&self, config: &Path) -> Result<(), VaultError> {
        self.check()
            .map_err(|(param, value, min, max)| VaultError::KdfParamsOutOfRange {
                config: config.to_path_buf(),
                param,
                value,
                min,
                max,
            })
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `veilfs.conf`, field for field (docs/FORMAT.md §3). Binary fields are
/// decoded; serialization writes them back as unpadded base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    pub format: String,
    pub version: u32,
    /// RFC 3339 UTC creation time, e.g. `2026-11-26T10:30:00Z`.
    pub created: String,
    pub cipher: String,
    /// Plaintext bytes per chunk: a power of two from 4096 to 65536.
    pub chunk_size: u32,
    /// The longest encoded name stored as is (64 to 240).
    pub long_name_threshold: u32,
    pub feature_flags: Vec<String>,
    #[serde(with = "b64_array")]
    pub key_id: [u8; KEY_ID_LEN],
    pub key_slots: Vec<KeySlot>,
    #[serde(with = "b64_array")]
    pub mac: [u8; MAC_LEN],
}

/// A password slot: the master key wrapped under Argon2id(password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySlot {
    pub kind: String,
    pub kdf: String,
    pub argon2_version: u32,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    #[serde(with = "b64_array")]
    pub salt: [u8; SALT_LEN],
    #[serde(with = "b64_array")]
    pub nonce: [u8; NONCE_LEN],
    #[serde(with = "b64_array")]
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
}

/// Unpadded base64url for fixed-size byte arrays.
mod b64_array {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = B64
            .decode(text.as_bytes())
            .map_err(|_| D::Error::custom(format!("{text:?} is not unpadded base64url")))?;
        let len = bytes.len();
        bytes
            .try_into()
            .map_err(|_| D::Error::custom(format!("expected {N} bytes, found {len}")))
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

impl KeySlot {
    pub fn kdf_params(&self) -> KdfParams {
        KdfParams {
            m_kib: self.m_kib,
            t: self.t,
            p: self.p,
        }
    }

    /// `SLOT` of docs/FORMAT.md §3.1.
    pub fn slot_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        put_str(&mut out, &self.kind);
        put_str(&mut out, &self.kdf);
        put_u32(&mut out, self.argon2_version);
        put_u32(&mut out, self.m_kib);
        put_u32(&mut out, self.t);
        put_u32(&mut out, self.p);
        out.extend_from_slice(&self.salt);
        out
    }

    fn check(&self, config: &Path) -> Result<(), VaultError> {
        let corrupt = |reason: String| VaultError::CorruptConfig {
            config: config.to_path_buf(),
            reason,
        };
        if self.kind != SLOT_KIND_PASSWORD {
            return Err(corrupt(format!(
                "unknown key slot kind {:?} (expected {SLOT_KIND_PASSWORD:?})",
                self.kind
            )));
        }
        if self.kdf != KDF_ARGON2ID {
            return Err(corrupt(format!(
                "unknown KDF {:?} (expected {KDF_ARGON2ID:?})",
                self.kdf
            )));
        }
        if self.argon2_version != ARGON2_VERSION {
            return Err(corrupt(format!(
                "unsupported Argon2 version {} (expected {ARGON2_VERSION})",
                self.argon2_version
            )));
        }
        self.kdf_params().check_for(config)
    }

    /// Runs Argon2id. The caller has checked the parameters.
    fn derive_kek(&self, password: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
        let params = Params::new(self.m_kib, self.t, self.p, Some(KEY_LEN))
            .map_err(|e| VaultError::Kdf(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(password, &self.salt, kek.as_mut())
            .map_err(|e| VaultError::Kdf(e.to_string()))?;
        Ok(kek)
    }
}

/// What a new password slot is made of. Salt and nonce are random in
/// normal use and fixed only for test vectors.
pub(crate) struct SlotInput<'a> {
    pub password: &'a [u8],
    pub kdf: KdfParams,
    pub salt: [u8; SALT_LEN],
    pub nonce: [u8; NONCE_LEN],
}

impl SlotInput<'_> {
    pub fn random(password: &[u8], kdf: KdfParams) -> SlotInput<'_> {
        SlotInput {
            password,
            kdf,
            salt: crypto::random::bytes(),
            nonce: crypto::nonce::fresh(),
        }
    }
}

fn mac_key(master: &MasterKey) -> Hmac<Sha256> {
    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(master.config_mac_key().expose_secret())
        .expect("HMAC takes any key length")
}

impl VaultConfig {
    /// The KDF parameters a new password gets by default: the current
    /// password's, or the defaults for a key-only vault.
    pub fn password_kdf(&self) -> KdfParams {
        self.key_slots
            .first()
            .map(KeySlot::kdf_params)
            .unwrap_or(KdfParams::DEFAULT)
    }

    /// Builds and seals a config: wraps `master` into the password slot, if
    /// any, and computes the MAC.
    pub(crate) fn seal(
        master: &MasterKey,
        chunk_size: u32,
        long_name_threshold: u32,
        created: String,
        password_slot: Option<SlotInput<'_>>,
    ) -> Result<Self, VaultError> {
        let mut config = VaultConfig {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            created,
            cipher: CIPHER.to_string(),
            chunk_size,
            long_name_threshold,
            feature_flags: Vec::new(),
            key_id: master.key_id(),
            key_slots: Vec::new(),
            mac: [0u8; MAC_LEN],
        };
        let params = config.params_bytes();
        if let Some(input) = password_slot {
            let mut slot = KeySlot {
                kind: SLOT_KIND_PASSWORD.to_string(),
                kdf: KDF_ARGON2ID.to_string(),
                argon2_version: ARGON2_VERSION,
                m_kib: input.kdf.m_kib,
                t: input.kdf.t,
                p: input.kdf.p,
                salt: input.salt,
                nonce: input.nonce,
                wrapped_key: [0u8; WRAPPED_KEY_LEN],
            };
            let kek = slot.derive_kek(input.password)?;
            let ad = [params.as_slice(), &slot.slot_bytes()].concat();
            let aead = Aead::new(&kek);
            let mut body = Zeroizing::new([0u8; KEY_LEN]);
            body.copy_from_slice(master.expose_secret());
            let tag = aead.seal_in_place(&slot.nonce, &ad, body.as_mut_slice());
            slot.wrapped_key[..KEY_LEN].copy_from_slice(body.as_ref());
            slot.wrapped_key[KEY_LEN..].copy_from_slice(&tag);
            config.key_slots.push(slot);
        }
        config.mac = config.compute_mac(master);
        Ok(config)
    }

    /// `PARAMS` of docs/FORMAT.md §3.1.
    pub fn params_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(PARAMS_DOMAIN);
        put_u32(&mut out, self.version);
        put_str(&mut out, &self.cipher);
        put_u32(&mut out, self.chunk_size);
        put_u32(&mut out, self.long_name_threshold);
        put_u32(&mut out, self.feature_flags.len() as u32);
        for flag in &self.feature_flags {
            put_str(&mut out, flag);
        }
        put_str(&mut out, &self.created);
        out.extend_from_slice(&self.key_id);
        out
    }

    /// `CANONICAL` of docs/FORMAT.md §3.1: the bytes the MAC covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = self.params_bytes();
        put_u32(&mut out, self.key_slots.len() as u32);
        for slot in &self.key_slots {
            out.extend_from_slice(&slot.slot_bytes());
            out.extend_from_slice(&slot.nonce);
            out.extend_from_slice(&slot.wrapped_key);
        }
        out
    }

    pub fn compute_mac(&self, master: &MasterKey) -> [u8; MAC_LEN] {
        let mut mac = mac_key(master);
        mac.update(&self.canonical_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Checks key id then MAC (constant time) against `master`.
    pub(crate) fn verify(&self, master: &MasterKey, config: &Path) -> Result<(), VaultError> {
        if master.key_id() != self.key_id {
            return Err(VaultError::ConfigTampered {
                config: config.to_path_buf(),
                what: "its key id does not match the key stored in its password slot".into(),
            });
        }
        let mut mac = mac_key(master);
        mac.update(&self.canonical_bytes());
        mac.verify_slice(&self.mac)
            .map_err(|_| VaultError::ConfigTampered {
                config: config.to_path_buf(),
                what: "its MAC does not match: a parameter, key slot or the MAC itself was changed"
                    .into(),
            })
    }

    /// Checks the number of slots and their total Argon2 cost against
    /// [`MAX_KEY_SLOTS`] and [`MAX_TOTAL_KDF_COST`] (docs/FORMAT.md §3.2).
    /// Needs no key and runs no KDF.
    pub fn check_kdf_budget(&self, config: &Path) -> Result<(), VaultError> {
        let cost = self
            .key_slots
            .iter()
            .map(|s| u64::from(s.m_kib).saturating_mul(u64::from(s.t)))
            .fold(0u64, u64::saturating_add);
        if self.key_slots.len() > MAX_KEY_SLOTS || cost > MAX_TOTAL_KDF_COST {
            return Err(VaultError::KdfBudgetExceeded {
                config: config.to_path_buf(),
                slots: self.key_slots.len(),
                cost,
            });
        }
        Ok(())
    }

    /// Tries every password slot. `Ok(None)` means no slot opened.
    pub(crate) fn open_slots(
        &self,
        password: &[u8],
        config: &Path,
    ) -> Result<Option<MasterKey>, VaultError> {
        // Validated on load already; checked again before the first
        // Argon2 run so no code path can skip it.
        self.check_kdf_budget(config)?;
        let params = self.params_bytes();
        for slot in &self.key_slots {
            // Validated on load already; checked again right before Argon2
            // runs so no code path can skip it.
            slot.check(config)?;
            let kek = slot.derive_kek(password)?;
            let ad = [params.as_slice(), &slot.slot_bytes()].concat();
            let aead = Aead::new(&kek);
            let mut body = Zeroizing::new([0u8; KEY_LEN]);
            body.copy_from_slice(&slot.wrapped_key[..KEY_LEN]);
            if aead
                .open_in_place(
                    &slot.nonce,
                    &ad,
                    body.as_mut_slice(),
                    &slot.wrapped_key[KEY_LEN..],
                )
                .is_ok()
            {
                return Ok(Some(MasterKey::from_slice(&body)));
            }
        }
        Ok(None)
    }

    /// Structural checks of a freshly parsed config, in the order a reader
    /// needs them: nothing here needs a key.
    pub fn validate(&self, config: &Path) -> Result<(), VaultError> {
        let corrupt = |reason: String| VaultError::CorruptConfig {
            config: config.to_path_buf(),
            reason,
        };
        if self.format != FORMAT_NAME {
            return Err(corrupt(format!(
                "format is {:?}, expected {FORMAT_NAME:?}",
                self.format
            )));
        }
        if self.version != FORMAT_VERSION {
            return Err(VaultError::UnsupportedVersion {
                config: config.to_path_buf(),
                version: self.version.into(),
            });
        }
        if let Some(flag) = self.feature_flags.first() {
            return Err(VaultError::UnknownFeature {
                config: config.to_path_buf(),
                flag: flag.clone(),
            });
        }
        if self.cipher != CIPHER {
            return Err(corrupt(format!(
                "unsupported cipher {:?} (expected {CIPHER:?})",
                self.cipher
            )));
        }
        if let Err(e) = ChunkLayout::new(self.chunk_size.into()) {
            return Err(corrupt(e.to_string()));
        }
        check_threshold(self.long_name_threshold).map_err(corrupt)?;
        if self.key_slots.len() > MAX_KEY_SLOTS {
            // Refused before the slots are even looked at.
            return self.check_kdf_budget(config);
        }
        for slot in &self.key_slots {
            slot.check(config)?;
        }
        self.check_kdf_budget(config)
    }

    pub fn layout(&self) -> ChunkLayout {
        ChunkLayout::new(self.chunk_size.into()).expect("validated on load")
    }

    /// The exact text written to `veilfs.conf`: pretty JSON and a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a config always serializes");
        text.push('\n');
        text
    }

    /// Parses and validates config text. `config` names the file in
    /// errors.
    pub fn from_json(text: &str, config: &Path) -> Result<Self, VaultError> {
        let corrupt = |reason: String| VaultError::CorruptConfig {
            config: config.to_path_buf(),
            reason,
        };
        // Look at format and version first, so a config from a newer veilfs
        // (which may have new fields) is reported as such, not as corrupt.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| corrupt(format!("not valid JSON ({e})")))?;
        let object = value
            .as_object()
            .ok_or_else(|| corrupt("not a JSON object".into()))?;
        match object.get("format").and_then(|v| v.as_str()) {
            Some(FORMAT_NAME) => {}
            Some(other) => {
                return Err(corrupt(format!("format is {other:?}, expected \"veilfs\"")));
            }
            None => return Err(corrupt("no \"format\": \"veilfs\" field".into())),
        }
        match object.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(VaultError::UnsupportedVersion {
                    config: config.to_path_buf(),
                    version: v,
                });
            }
            None => return Err(corrupt("no numeric \"version\" field".into())),
        }
        let parsed: VaultConfig = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        parsed.validate(config)?;
        Ok(parsed)
    }
}

/// Checks a long-name threshold against docs/FORMAT.md §3.
pub fn check_threshold(t: u32) -> Result<(), String> {
    if (MIN_LONG_NAME_THRESHOLD..=MAX_LONG_NAME_THRESHOLD).contains(&t) {
        Ok(())
    } else {
        Err(format!(
            "long-name threshold {t} is not supported: use {MIN_LONG_NAME_THRESHOLD} to {MAX_LONG_NAME_THRESHOLD}"
        ))
    }
}
