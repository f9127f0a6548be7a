//! CLI errors and the process exit codes they map to.

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

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Vault(#[from] VaultError),
    /// A 64-digit key that does not parse; `origin` says where it came
    /// from (a file name or "the prompt"). Never contains the key.
    #[error("wrong key: {origin} does not hold a 64-digit key: {error}")]
    BadKey {
        origin: String,
        #[source]
        error: KeyParseError,
    },
    /// A password or key could not be obtained (no terminal, empty file,
    /// failing --extpass, mismatched confirmation, ...).
    #[error("{0}")]
    Secret(String),
    /// A combination of options that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The vault is locked by a mount or another command; `why` says why
    /// this command refuses and what to do.
    #[error("{error}: {why}; {}", what_to_do(error))]
    InUse {
        #[source]
        error: LockError,
        why: String,
    },
    #[error("{0}")]
    Other(String),
}

/// What to do about a vault in use: unmount it, or wait.
fn what_to_do(error: &LockError) -> String {
    match error {
        LockError::InUse {
            mountpoint: Some(mp),
            ..
        } => format!("unmount it first (veilfs unmount {})", mp.display()),
        _ => "wait until that process has finished, then try again".to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::path::PathBuf;

    fn samples() -> Vec<CliError> {
        let in_use = |mountpoint: Option<&str>| LockError::InUse {
            cipherdir: PathBuf::from("/v"),
            mountpoint: mountpoint.map(PathBuf::from),
        };
        vec![
            CliError::Vault(VaultError::Kdf("oom".into())),
            CliError::BadKey {
                origin: "k.txt".into(),
                error: KeyParseError::WrongLength(3),
            },
            CliError::Secret("s".into()),
            CliError::Usage("u".into()),
            CliError::Other("o".into()),
            CliError::InUse {
                error: in_use(Some("/m")),
                why: "w".into(),
            },
            CliError::InUse {
                error: in_use(None),
                why: "w".into(),
            },
        ]
    }

    /// Messages and sources as the hand-written impls gave them before
    /// thiserror, byte for byte.
    #[test]
    fn messages_and_sources() {
        let want = [
            (r#"Argon2 failed: oom"#, true),
            (
                r#"wrong key: k.txt does not hold a 64-digit key: the key has 3 hex digits; a veilfs key has exactly 64"#,
                true,
            ),
            (r#"s"#, false),
            (r#"u"#, false),
            (r#"o"#, false),
            (
                r#"the vault /v is mounted on /m: w; unmount it first (veilfs unmount /m)"#,
                true,
            ),
            (
                r#"the vault /v is in use by another veilfs process (a mount, possibly one being detached lazily, or fsck, passwd or recover-config; `fuser -v /v` lists it): w; wait until that process has finished, then try again"#,
                true,
            ),
        ];
        for (e, (msg, has_source)) in samples().iter().zip(want) {
            assert_eq!(e.to_string(), msg);
            assert_eq!(e.source().is_some(), has_source, "{msg}");
        }
    }
}
