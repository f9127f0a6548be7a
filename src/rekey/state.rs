//! The rekey state file `veilfs.rekey`: the phase, the new key wrapped under
//! the old one, MAC'd so that a tampered or foreign file is refused.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::crypto::aead::nonce_at;
use crate::crypto::{self, Aead, NONCE_LEN, TAG_LEN};
use crate::keys::{KEY_LEN, MasterKey};
use crate::vault::{self, VaultConfig};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Entries move from the old tree into `veilfs.rekey.new/`.
    Copy,
    /// The old tree is empty: the new tree moves into the root and the new
    /// config is installed.
    Swap,
}

/// `veilfs.rekey` (docs/FORMAT.md §11).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyState {
    pub format: String,
    pub version: u32,
    pub phase: Phase,
    pub old_key_id: String,
    pub new_key_id: String,
    /// The config that replaces `veilfs.conf` at the end (MAC'd by the new
    /// key, with the new password slot).
    pub new_config: VaultConfig,
    /// The new master key sealed under the old one, and the reverse.
    pub new_key_under_old: String,
    pub old_key_under_new: String,
    /// HMAC-SHA256 under a key derived from the new master key.
    pub mac: String,
}

pub(super) fn wrap(under: &MasterKey, key: &MasterKey) -> String {
    let aead = Aead::new(&under.derive_raw(WRAP_LABEL));
    let nonce = crypto::nonce::fresh();
    let mut buf = zeroize::Zeroizing::new(*key.expose_secret());
    let tag = aead.seal_in_place(&nonce, WRAP_AD, &mut buf[..]);
    B64.encode([&nonce[..], &buf[..], &tag[..]].concat())
}

pub(super) fn unwrap(under: &MasterKey, sealed: &str) -> Result<MasterKey> {
    let raw = B64
        .decode(sealed)
        .map_err(|_| err("the rekey state file is damaged (bad wrapped key)"))?;
    if raw.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
        return Err(err("the rekey state file is damaged (bad wrapped key)"));
    }
    let aead = Aead::new(&under.derive_raw(WRAP_LABEL));
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(KEY_LEN);
    MasterKey::try_fill_with(|key| {
        aead.open_into(nonce_at(nonce), WRAP_AD, body, tag, &mut key[..])
    })
    .map_err(|_| err("the rekey state file is damaged or was tampered with"))
}

impl RekeyState {
    pub(super) fn compute_mac(&self, new: &MasterKey) -> String {
        let k = new.derive_raw(MAC_LABEL);
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&k[..]).expect("any length");
        m.update(b"veilfs v1 rekey state");
        for part in [
            self.format.as_bytes(),
            &self.version.to_be_bytes(),
            match self.phase {
                Phase::Copy => b"copy",
                Phase::Swap => b"swap",
            },
            self.old_key_id.as_bytes(),
            self.new_key_id.as_bytes(),
            &self.new_config.canonical_bytes(),
            &self.new_config.mac,
            self.new_key_under_old.as_bytes(),
            self.old_key_under_new.as_bytes(),
        ] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        B64.encode(m.finalize().into_bytes())
    }

    /// Checks the MAC and the new config against the new key.
    pub fn verify(&self, new: &MasterKey, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let ok = self.format == STATE_FORMAT
            && self.version == 1
            && self.new_key_id == B64.encode(new.key_id())
            && constant_eq(self.mac.as_bytes(), self.compute_mac(new).as_bytes());
        if !ok {
            return Err(err(format!(
                "{}: the rekey state does not authenticate (damaged or tampered with)",
                path.display()
            )));
        }
        self.new_config
            .verify(new, &path)
            .map_err(|e| err(format!("{}: the new config in it: {e}", path.display())))
    }

    pub(super) fn save(&mut self, dir: &Path, new: &MasterKey) -> Result<()> {
        self.mac = self.compute_mac(new);
        let text = serde_json::to_string_pretty(self).expect("serializable");
        write_atomic(dir, STATE_FILE, text.as_bytes())
    }
}

pub(super) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes `name` in `dir` atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| io_at(&tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_at(&tmp, e))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| io_at(&dir.join(name), e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_at(dir, e))
}

/// Whether a rekey is in progress in `dir`.
pub fn in_progress(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(STATE_FILE)).is_ok()
}

/// Reads `veilfs.rekey`, if there is one (not yet authenticated: see
/// [`RekeyState::verify`]).
pub fn read_state(dir: &Path) -> Result<Option<RekeyState>> {
    let path = dir.join(STATE_FILE);
    let mut text = String::new();
    match File::open(&path) {
        Ok(f) => f
            .take(vault::MAX_CONFIG_LEN * 2)
            .read_to_string(&mut text)
            .map_err(|e| io_at(&path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(&path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| err(format!("{}: not a rekey state file: {e}", path.display())))
}

/// Starts a rekey: writes the state file. Refuses if one exists.
pub fn begin(
    dir: &Path,
    old: &MasterKey,
    new: &MasterKey,
    new_config: VaultConfig,
) -> Result<RekeyState> {
    if in_progress(dir) {
        return Err(err(format!(
            "{} is already being rekeyed: run `veilfs rekey --resume {}`",
            dir.display(),
            dir.display()
        )));
    }
    let mut state = RekeyState {
        format: STATE_FORMAT.into(),
        version: 1,
        phase: Phase::Copy,
        old_key_id: B64.encode(old.key_id()),
        new_key_id: B64.encode(new.key_id()),
        new_config,
        new_key_under_old: wrap(old, new),
        old_key_under_new: wrap(new, old),
        mac: String::new(),
    };
    state.save(dir, new)?;
    Ok(state)
}

/// What unlocks a half-rekeyed vault.
pub enum StateSecret<'a> {
    Key(MasterKey),
    Password(&'a [u8]),
}

/// Both keys of a rekey in progress, from either the old or the new
/// secret. Returns (old, new).
pub fn unlock_state(
    dir: &Path,
    state: &RekeyState,
    secret: StateSecret<'_>,
) -> std::result::Result<(MasterKey, MasterKey), vault::VaultError> {
    let path = dir.join(STATE_FILE);
    let other = |e: RekeyError| vault::VaultError::InvalidOption(e.0);
    let (old, new) = match secret {
        StateSecret::Key(k) => {
            let id = B64.encode(k.key_id());
            if id == state.old_key_id {
                let new = unwrap(&k, &state.new_key_under_old).map_err(other)?;
                (k, new)
            } else if id == state.new_key_id {
                let old = unwrap(&k, &state.old_key_under_new).map_err(other)?;
                (old, k)
            } else {
                return Err(vault::VaultError::WrongKey {
                    path: dir.to_path_buf(),
                });
            }
        }
        StateSecret::Password(pw) => {
            if let Some(new) = state.new_config.open_slots(pw, &path)? {
                let old = unwrap(&new, &state.old_key_under_new).map_err(other)?;
                (old, new)
            } else {
                let config = vault::load_config(dir)?;
                if B64.encode(config.key_id) != state.old_key_id || config.key_slots.is_empty() {
                    return Err(vault::VaultError::WrongPassword { config: path });
                }
                let old = vault::unlock_with_password(dir, pw)?.master;
                let new = unwrap(&old, &state.new_key_under_old).map_err(other)?;
                (old, new)
            }
        }
    };
    state.verify(&new, dir).map_err(other)?;
    Ok((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// The state file's wrapped keys: nonce, key sealed under the other
    /// master key's wrap subkey, tag. They open under that key only, and
    /// any changed byte is refused.
    #[test]
    fn wrapped_keys_open_under_their_key_only() {
        let old = MasterKey::from_bytes([1u8; KEY_LEN]);
        let new = MasterKey::from_bytes([2u8; KEY_LEN]);
        let sealed = wrap(&old, &new);
        let raw = B64.decode(&sealed).unwrap();
        assert_eq!(raw.len(), NONCE_LEN + KEY_LEN + TAG_LEN);
        assert_ne!(&raw[NONCE_LEN..][..KEY_LEN], &[2u8; KEY_LEN][..]);
        assert_eq!(
            unwrap(&old, &sealed).unwrap().expose_secret(),
            new.expose_secret()
        );
        // Fresh nonce each time: two wraps of one key differ.
        assert_ne!(wrap(&old, &new), sealed);
        assert!(unwrap(&new, &sealed).is_err());
        for i in [0, NONCE_LEN, NONCE_LEN + KEY_LEN] {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            assert!(unwrap(&old, &B64.encode(&bad)).is_err(), "byte {i}");
        }
        assert!(unwrap(&old, &B64.encode(&raw[1..])).is_err());
    }
}
