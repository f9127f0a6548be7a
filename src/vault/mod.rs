//! The vault: its config file `veilfs.conf` (docs/FORMAT.md §3), creating
//! it, unlocking it by password or 64-digit key, changing the password and
//! rebuilding a lost config from the key alone.
//!
//! This layer knows nothing of FUSE or the command line. Every failure is a
//! [`VaultError`] variant that callers branch on.

mod config;
mod error;
mod fsio;
pub mod lock;
mod recover;

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use config::{
    ARGON2_VERSION, CIPHER, FORMAT_NAME, FORMAT_VERSION, KDF_ARGON2ID, KEY_ID_LEN, KdfParams,
    KeySlot, MAC_LEN, MAX_CONFIG_LEN, MAX_KEY_SLOTS, MAX_TOTAL_KDF_COST, PARAMS_DOMAIN, SALT_LEN,
    SLOT_KIND_PASSWORD, VaultConfig, WRAPPED_KEY_LEN, check_threshold,
};
pub use error::VaultError;
pub use fsio::{CONFIG_MODE, is_sync_client_file};
pub use lock::{LockError, LockKind, VaultLock};
pub use recover::{
    ChunkSizeSource, RecoverOptions, Recovery, ThresholdSource, recover_config, recover_config_with,
};

use crate::content::{ChunkLayout, ContentCipher, DEFAULT_CHUNK_SIZE};
use crate::keys::MasterKey;
use crate::names::{DEFAULT_LONG_NAME_THRESHOLD, NameCipher};
use config::SlotInput;
use fsio::Replace;

/// The config file at the root of every CIPHERDIR.
pub const CONFIG_FILE: &str = "veilfs.conf";
/// The previous config, kept by `change_password`.
pub const CONFIG_BACKUP_FILE: &str = "veilfs.conf.bak";
/// A config replaced by `recover_config` with `force`.
pub const CONFIG_REPLACED_FILE: &str = "veilfs.conf.before-recovery";

/// An open vault: its directory, validated config and master key.
#[derive(Debug)]
pub struct UnlockedVault {
    pub dir: PathBuf,
    pub config: VaultConfig,
    pub master: MasterKey,
}

impl UnlockedVault {
    pub fn layout(&self) -> ChunkLayout {
        self.config.layout()
    }

    /// Seals and opens file chunks (docs/FORMAT.md §4).
    pub fn content_cipher(&self) -> ContentCipher {
        ContentCipher::new(&self.master.derive().content, self.layout())
    }

    /// Encrypts names, derives directory IVs, seals symlinks and xattrs.
    pub fn name_cipher(&self) -> NameCipher {
        NameCipher::new(&self.master.derive(), self.config.long_name_threshold)
    }

    /// Both ciphers, from one derivation of the subkeys: what a mount or
    /// an offline command that reads files needs.
    pub fn ciphers(&self) -> (ContentCipher, NameCipher) {
        let keys = self.master.derive();
        (
            ContentCipher::new(&keys.content, self.layout()),
            NameCipher::new(&keys, self.config.long_name_threshold),
        )
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
}

/// Parameters of a new vault.
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions<'a> {
    pub chunk_size: u32,
    pub long_name_threshold: u32,
    /// `None` creates a key-only vault: no password slot, the 64-digit key
    /// is the only way in.
    pub password: Option<&'a [u8]>,
    pub kdf: KdfParams,
}

impl Default for CreateOptions<'_> {
    fn default() -> Self {
        CreateOptions {
            chunk_size: DEFAULT_CHUNK_SIZE,
            long_name_threshold: DEFAULT_LONG_NAME_THRESHOLD,
            password: None,
            kdf: KdfParams::DEFAULT,
        }
    }
}

impl CreateOptions<'_> {
    /// Checks chunk size, threshold and KDF parameters without touching the
    /// disk, so a front end can refuse bad options before asking for a
    /// password.
    pub fn check(&self) -> Result<(), VaultError> {
        ChunkLayout::new(self.chunk_size.into())
            .map_err(|e| VaultError::InvalidOption(e.to_string()))?;
        check_threshold(self.long_name_threshold).map_err(VaultError::InvalidOption)?;
        if self.password.is_some() {
            self.kdf.check().map_err(|(param, value, min, max)| {
                VaultError::InvalidOption(format!(
                    "Argon2 parameter {param} = {value} is outside the allowed range {min}..={max}"
                ))
            })?;
        }
        if self.password.is_some_and(|p| p.is_empty()) {
            return Err(VaultError::InvalidOption("the password is empty".into()));
        }
        Ok(())
    }
}

/// The current time as RFC 3339 UTC, to the second.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Checks that `dir` can hold a new vault (missing, empty, or holding only
/// sync-client files) without creating anything.
pub fn check_init_target(dir: &Path) -> Result<(), VaultError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // Creates nothing: the path exists.
        _ => fsio::prepare_init_dir(dir, CONFIG_FILE),
    }
}

/// Creates a new vault in `dir` (created as mkdir(1) would if missing) with a
/// fresh master key. Refuses an existing config and a non-empty directory.
pub fn create_vault(dir: &Path, opts: &CreateOptions<'_>) -> Result<UnlockedVault, VaultError> {
    opts.check()?;
    fsio::prepare_init_dir(dir, CONFIG_FILE)?;
    let master = MasterKey::generate();
    let config = seal_new_config(
        &master,
        opts.chunk_size,
        opts.long_name_threshold,
        opts.password,
        opts.kdf,
    )?;
    fsio::write_atomic(dir, CONFIG_FILE, config.to_json().as_bytes(), Replace::No)?;
    log::info!("created vault config {}", dir.join(CONFIG_FILE).display());
    Ok(UnlockedVault {
        dir: dir.to_path_buf(),
        config,
        master,
    })
}

/// A sealed config for `master` with one password slot (or none for a
/// key-only vault), written nowhere: `veilfs rekey` keeps it in its state
/// file until it installs it.
pub fn seal_new_config(
    master: &MasterKey,
    chunk_size: u32,
    long_name_threshold: u32,
    password: Option<&[u8]>,
    kdf: KdfParams,
) -> Result<VaultConfig, VaultError> {
    if password.is_some_and(|p| p.is_empty()) {
        return Err(VaultError::InvalidOption(
            "the new password is empty".into(),
        ));
    }
    let slot = password.map(|pw| SlotInput::random(pw, kdf));
    VaultConfig::seal(master, chunk_size, long_name_threshold, now_rfc3339(), slot)
}

/// A password slot with a caller-chosen salt and nonce: test vectors only
/// (unit tests and the `test-vectors` feature).
#[cfg(any(test, feature = "test-vectors"))]
#[derive(Debug, Clone, Copy)]
pub struct FixedSlot<'a> {
    pub password: &'a [u8],
    pub kdf: KdfParams,
    pub salt: [u8; SALT_LEN],
    pub nonce: [u8; crate::crypto::NONCE_LEN],
}

/// Builds a config from fixed inputs, for committed test vectors only:
/// real configs get a random salt and nonce from [`create_vault`]. Unit
/// tests and the `test-vectors` feature only.
#[cfg(any(test, feature = "test-vectors"))]
pub fn build_config_for_test_vectors(
    master: &MasterKey,
    chunk_size: u32,
    long_name_threshold: u32,
    created: &str,
    password_slot: Option<FixedSlot<'_>>,
) -> Result<VaultConfig, VaultError> {
    let slot = password_slot.map(|s| SlotInput {
        password: s.password,
        kdf: s.kdf,
        salt: s.salt,
        nonce: s.nonce,
    });
    VaultConfig::seal(
        master,
        chunk_size,
        long_name_threshold,
        created.into(),
        slot,
    )
}

/// Reads and validates `dir/veilfs.conf`. Needs no key, so it cannot check
/// the MAC: use it for `info`, never to trust a parameter.
pub fn load_config(dir: &Path) -> Result<VaultConfig, VaultError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = match fsio::read_bounded(&path, MAX_CONFIG_LEN) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(VaultError::CorruptConfig {
                config: path,
                reason: format!("larger than {MAX_CONFIG_LEN} bytes"),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => VaultError::NotAVault(dir.to_path_buf()),
                Ok(_) => VaultError::io(
                    dir,
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                ),
                Err(e) => VaultError::io(dir, e),
            });
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(VaultError::CorruptConfig {
                config: path,
                reason: "it is a symlink; veilfs never follows a symlinked config".into(),
            });
        }
        Err(e) => return Err(VaultError::io(path, e)),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| VaultError::CorruptConfig {
        config: path.clone(),
        reason: "not UTF-8 text".into(),
    })?;
    VaultConfig::from_json(text, &path)
}

/// Unlocks with a password: tries each slot (Argon2id, then the unwrap),
/// then checks key id and MAC.
pub fn unlock_with_password(dir: &Path, password: &[u8]) -> Result<UnlockedVault, VaultError> {
    let config = load_config(dir)?;
    let path = dir.join(CONFIG_FILE);
    if config.key_slots.is_empty() {
        return Err(VaultError::NoPasswordSlot { config: path });
    }
    let started = std::time::Instant::now();
    let master = config
        .open_slots(password, &path)?
        .ok_or_else(|| VaultError::WrongPassword {
            config: path.clone(),
        })?;
    log::info!("password slot opened in {:.2?}", started.elapsed());
    config.verify(&master, &path)?;
    Ok(UnlockedVault {
        dir: dir.to_path_buf(),
        config,
        master,
    })
}

/// Unlocks with the 64-digit key: checks key id, then MAC.
/// Takes the key: the unlocked vault holds the one copy.
pub fn unlock_with_key(dir: &Path, key: MasterKey) -> Result<UnlockedVault, VaultError> {
    let config = load_config(dir)?;
    let path = dir.join(CONFIG_FILE);
    if key.key_id() != config.key_id {
        return Err(VaultError::WrongKey {
            path: dir.to_path_buf(),
        });
    }
    config.verify(&key, &path)?;
    Ok(UnlockedVault {
        dir: dir.to_path_buf(),
        config,
        master: key,
    })
}

/// Replaces every password slot with one for `new_password` (fresh salt
/// and nonce, same KDF parameters as the old slot, or the defaults for a
/// key-only vault). The previous config is kept as `veilfs.conf.bak`. No
/// data is re-encrypted.
pub fn change_password(vault: &UnlockedVault, new_password: &[u8]) -> Result<(), VaultError> {
    change_password_with(vault, new_password, vault.config.password_kdf()).map(|_| ())
}

/// [`change_password`] with explicit KDF parameters. Returns the new
/// config.
pub fn change_password_with(
    vault: &UnlockedVault,
    new_password: &[u8],
    kdf: KdfParams,
) -> Result<VaultConfig, VaultError> {
    let path = vault.config_path();
    if new_password.is_empty() {
        return Err(VaultError::InvalidOption(
            "the new password is empty".into(),
        ));
    }
    kdf.check_for(&path)?;
    let old = &vault.config;
    let slot = SlotInput::random(new_password, kdf);
    let config = VaultConfig::seal(
        &vault.master,
        old.chunk_size,
        old.long_name_threshold,
        old.created.clone(),
        Some(slot),
    )?;
    // Keep the config as it is on disk now: that is what "previous" means
    // to a user restoring it.
    match fsio::read_bounded(&path, MAX_CONFIG_LEN) {
        Ok(Some(previous)) => {
            fsio::write_atomic(&vault.dir, CONFIG_BACKUP_FILE, &previous, Replace::Yes)?;
        }
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(VaultError::io(&path, e)),
    }
    fsio::write_atomic(
        &vault.dir,
        CONFIG_FILE,
        config.to_json().as_bytes(),
        Replace::Yes,
    )?;
    log::info!("password changed in {}", path.display());
    Ok(config)
}
