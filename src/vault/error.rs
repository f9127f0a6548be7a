//! Errors of the vault layer. Callers branch on the variant (the CLI maps
//! them to exit codes); the messages name the file and say what to do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong creating, reading, unlocking or rewriting a
/// vault config. No variant ever carries a secret.
#[derive(Debug)]
pub enum VaultError {
    /// No password slot opened with the given password.
    WrongPassword {
        config: PathBuf,
    },
    /// The 64-digit key does not belong to this vault.
    WrongKey {
        path: PathBuf,
    },
    /// A password was given but the vault was created with `--key-only`.
    NoPasswordSlot {
        config: PathBuf,
    },
    /// The config parses, but its MAC or key id does not match the key.
    ConfigTampered {
        config: PathBuf,
        what: String,
    },
    /// The config is not valid JSON or misses or misspells a field.
    CorruptConfig {
        config: PathBuf,
        reason: String,
    },
    /// The config declares a format version this veilfs does not read.
    UnsupportedVersion {
        config: PathBuf,
        version: u64,
    },
    /// The config needs a feature this veilfs does not know.
    UnknownFeature {
        config: PathBuf,
        flag: String,
    },
    /// A KDF parameter is outside the limits of docs/FORMAT.md §3.2.
    /// Checked before Argon2 runs, so a hostile config cannot exhaust
    /// memory or silently weaken the KDF.
    KdfParamsOutOfRange {
        config: PathBuf,
        param: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    /// The config holds more password slots, or more Argon2 work in total,
    /// than docs/FORMAT.md §3.2 allows. Checked before Argon2 runs, so a
    /// hostile config cannot make an unlock take hours.
    KdfBudgetExceeded {
        config: PathBuf,
        slots: usize,
        /// Sum over the slots of m_kib × t.
        cost: u64,
    },
    /// An option given to `create_vault` is outside the allowed range.
    InvalidOption(String),
    /// The directory exists but holds no `veilfs.conf`.
    NotAVault(PathBuf),
    /// `init` refuses a directory that already holds other files.
    NotEmpty {
        dir: PathBuf,
        entry: String,
    },
    /// `init` or `recover-config` would overwrite an existing config.
    AlreadyExists(PathBuf),
    /// `recover-config` found nothing it could rebuild a config from.
    RecoveryFailed {
        dir: PathBuf,
        reason: String,
    },
    /// Argon2 itself failed (out of memory, usually).
    Kdf(String),
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl VaultError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        VaultError::Io {
            path: path.into(),
            source,
        }
    }

    /// A wrong password or a wrong 64-digit key.
    pub fn is_wrong_secret(&self) -> bool {
        matches!(
            self,
            VaultError::WrongPassword { .. }
                | VaultError::WrongKey { .. }
                | VaultError::NoPasswordSlot { .. }
        )
    }

    /// The config is damaged, modified, or from a newer veilfs.
    pub fn is_bad_config(&self) -> bool {
        matches!(
            self,
            VaultError::ConfigTampered { .. }
                | VaultError::CorruptConfig { .. }
                | VaultError::UnsupportedVersion { .. }
                | VaultError::UnknownFeature { .. }
                | VaultError::KdfParamsOutOfRange { .. }
                | VaultError::KdfBudgetExceeded { .. }
        )
    }
}

/// The vault directory of a config path, for the commands we suggest.
fn dir_of(config: &Path) -> String {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .display()
        .to_string()
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultError::WrongPassword { config } => write!(
                f,
                "wrong password for {} (if you are sure it is right, the config may have been tampered with). \
                 Forgot it? The 64-digit recovery key still opens the vault: `veilfs passwd --key-file KEYFILE {}` sets a new password",
                config.display(),
                dir_of(config)
            ),
            VaultError::WrongKey { path } => write!(
                f,
                "wrong key: this 64-digit key does not belong to the vault in {}. Check the digits; \
                 each vault has its own key",
                path.display()
            ),
            VaultError::NoPasswordSlot { config } => write!(
                f,
                "{} has no password (it was created with --key-only): unlock it with the 64-digit key \
                 (--key-file FILE or --key); `veilfs passwd` can then add a password",
                config.display()
            ),
            VaultError::ConfigTampered { config, what } => write!(
                f,
                "config tampered: {} was modified ({what}). Do not trust it; if you still have the 64-digit key, \
                 `veilfs recover-config --force --key-file KEYFILE {}` writes a fresh one",
                config.display(),
                dir_of(config)
            ),
            VaultError::CorruptConfig { config, reason } => write!(
                f,
                "corrupt config {}: {reason}. Restore it from a backup (veilfs.conf.bak) or rebuild it with \
                 `veilfs recover-config --force --key-file KEYFILE {}`",
                config.display(),
                dir_of(config)
            ),
            VaultError::UnsupportedVersion { config, version } => write!(
                f,
                "{} has format version {version}, but this veilfs only reads version {}: upgrade veilfs",
                config.display(),
                super::FORMAT_VERSION
            ),
            VaultError::UnknownFeature { config, flag } => write!(
                f,
                "{} needs feature {flag:?}, which this veilfs does not support: upgrade veilfs",
                config.display()
            ),
            VaultError::KdfParamsOutOfRange {
                config,
                param,
                value,
                min,
                max,
            } => write!(
                f,
                "refusing to unlock with {}: Argon2 parameter {param} = {value} is outside the allowed range \
                 {min}..={max}, so the config was modified to weaken or overload the KDF. \
                 The 64-digit key still opens the vault (`veilfs recover-config --force --key-file KEYFILE {}`)",
                config.display(),
                dir_of(config)
            ),
            VaultError::KdfBudgetExceeded {
                config,
                slots,
                cost,
            } => write!(
                f,
                "refusing to unlock with {}: it holds {slots} password slot(s) costing {} GiB x passes of Argon2 \
                 in total, more than veilfs allows (at most {} slots and {} GiB x passes, one slot at the maximum \
                 parameters), so the config was modified to overload the KDF. No password was tried. \
                 The 64-digit key still opens the vault (`veilfs recover-config --force --key-file KEYFILE {}`)",
                config.display(),
                cost / (1024 * 1024),
                super::config::MAX_KEY_SLOTS,
                super::config::MAX_TOTAL_KDF_COST / (1024 * 1024),
                dir_of(config)
            ),
            VaultError::InvalidOption(msg) => f.write_str(msg),
            VaultError::NotAVault(dir) => write!(
                f,
                "{} is not a veilfs vault: it has no {}. If the config was lost, \
                 `veilfs recover-config --key-file KEYFILE {}` rebuilds it from the 64-digit key",
                dir.display(),
                super::CONFIG_FILE,
                dir.display()
            ),
            VaultError::NotEmpty { dir, entry } => write!(
                f,
                "{} is not empty (it contains {entry:?}): create the vault in a new or empty directory",
                dir.display()
            ),
            VaultError::AlreadyExists(path) => write!(
                f,
                "{} already exists: refusing to overwrite a vault config{}",
                path.display(),
                if path.ends_with(super::CONFIG_FILE) {
                    " (recover-config takes --force to replace a damaged one)"
                } else {
                    ""
                }
            ),
            VaultError::RecoveryFailed { dir, reason } => {
                write!(
                    f,
                    "cannot recover the config of {}: {reason}",
                    dir.display()
                )
            }
            VaultError::Kdf(msg) => write!(f, "Argon2 failed: {msg}"),
            VaultError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for VaultError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VaultError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
