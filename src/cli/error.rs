//! CLI errors and the process exit codes they map to.

use std::fmt;

use crate::keys::KeyParseError;
use crate::vault::{LockError, VaultError};

/// Success.
pub const EXIT_OK: i32 = 0;
/// Any other error (I/O, a directory that is not a vault, ...).
pub const EXIT_ERROR: i32 = 1;
/// Bad command line (also what clap uses).
pub const EXIT_USAGE: i32 = 2;
/// Wrong password or wrong / malformed 64-digit key.
pub const EXIT_WRONG_SECRET: i32 = 3;
/// The config is corrupt, tampered with, weakened, or from a newer veilfs.
pub const EXIT_BAD_CONFIG: i32 = 4;
/// The vault is mounted, or another veilfs command is using it.
pub const EXIT_IN_USE: i32 = 5;

#[derive(Debug)]
pub enum CliError {
    Vault(VaultError),
    /// A 64-digit key that does not parse; `origin` says where it came
    /// from (a file name or "the prompt"). Never contains the key.
    BadKey {
        origin: String,
        error: KeyParseError,
    },
    /// A password or key could not be obtained (no terminal, empty file,
    /// failing --extpass, mismatched confirmation, ...).
    Secret(String),
    /// A combination of options that cannot work.
    Usage(String),
    /// The vault is locked by a mount or another command; `why` says why
    /// this command refuses and what to do.
    InUse {
        error: LockError,
        why: String,
    },
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Vault(e) if e.is_wrong_secret() => EXIT_WRONG_SECRET,
            CliError::Vault(e) if e.is_bad_config() => EXIT_BAD_CONFIG,
            CliError::Vault(VaultError::InvalidOption(_)) => EXIT_USAGE,
            CliError::Vault(_) => EXIT_ERROR,
            CliError::BadKey { .. } => EXIT_WRONG_SECRET,
            CliError::Secret(_) | CliError::Other(_) => EXIT_ERROR,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::InUse { .. } => EXIT_IN_USE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Vault(e) => e.fmt(f),
            CliError::BadKey { origin, error } => {
                write!(
                    f,
                    "wrong key: {origin} does not hold a 64-digit key: {error}"
                )
            }
            CliError::Secret(msg) | CliError::Usage(msg) | CliError::Other(msg) => f.write_str(msg),
            CliError::InUse { error, why } => {
                write!(f, "{error}: {why}; ")?;
                match error {
                    LockError::InUse {
                        mountpoint: Some(mp),
                        ..
                    } => write!(f, "unmount it first (veilfs unmount {})", mp.display()),
                    _ => f.write_str("wait until that process has finished, then try again"),
                }
            }
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Vault(e) => Some(e),
            CliError::BadKey { error, .. } => Some(error),
            CliError::InUse { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<VaultError> for CliError {
    fn from(e: VaultError) -> Self {
        CliError::Vault(e)
    }
}
