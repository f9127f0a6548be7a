//! The unlock options every vault-opening command shares.

use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;
use super::secret::{self, Secret};
use crate::vault::{self, UnlockedVault, VaultConfig};

/// How to open a vault: a password (prompt, `--passfile`, `--extpass`) or
/// the 64-digit key (`--key-file`, `--key`). Flatten this into any command
/// that opens a vault.
#[derive(Debug, Clone, Default, Args)]
#[group(id = "unlock", multiple = false)]
pub struct UnlockArgs {
    /// Read the password from the first line of FILE (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub passfile: Option<PathBuf>,
    /// Run CMD with `sh -c`; the first line it prints is the password.
    #[arg(long, value_name = "CMD")]
    pub extpass: Option<String>,
    /// Unlock with the 64-digit key read from FILE (`-`: standard input;
    /// spaces, dashes and case are ignored).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Unlock with the 64-digit key, typed at a prompt.
    #[arg(long)]
    pub key: bool,
}

impl UnlockArgs {
    /// Gets the secret these options name. Without options it prompts: for
    /// the password, or for the key if the vault has no password slot.
    pub fn read_secret(&self, cipherdir: &Path, config: &VaultConfig) -> Result<Secret, CliError> {
        if let Some(path) = &self.passfile {
            return secret::password_from_file(path).map(Secret::Password);
        }
        if let Some(cmd) = &self.extpass {
            return secret::password_from_command(cmd).map(Secret::Password);
        }
        if let Some(path) = &self.key_file {
            return secret::key_from_file(path).map(Secret::Key);
        }
        if self.key || config.key_slots.is_empty() {
            return secret::prompt_key(cipherdir).map(Secret::Key);
        }
        secret::prompt_password(cipherdir).map(Secret::Password)
    }

    /// Opens the vault in `cipherdir`. A missing or broken config fails
    /// before any prompt.
    pub fn unlock(&self, cipherdir: &Path) -> Result<UnlockedVault, CliError> {
        if crate::encrypt::in_progress(cipherdir) {
            return Err(CliError::Other(format!(
                "{} is still being filled by `veilfs encrypt` (it holds {}): run `veilfs encrypt --resume` to finish it first",
                cipherdir.display(),
                crate::encrypt::STATE_FILE
            )));
        }
        if crate::rekey::in_progress(cipherdir) {
            return Err(CliError::Other(format!(
                "{} is in the middle of a rekey (it holds {}): run `veilfs rekey --resume {}` to finish it first",
                cipherdir.display(),
                crate::rekey::STATE_FILE,
                cipherdir.display()
            )));
        }
        let config = vault::load_config(cipherdir)?;
        let unlocked = match self.read_secret(cipherdir, &config)? {
            Secret::Password(pw) => vault::unlock_with_password(cipherdir, &pw)?,
            Secret::Key(key) => vault::unlock_with_key(cipherdir, key)?,
        };
        Ok(unlocked)
    }
}
