//! `veilfs recover-config`: rebuild a lost or damaged veilfs.conf from the
//! 64-digit key and the backing files.

use std::path::PathBuf;

use clap::Args;

use super::secret::KeyArgs;
use super::{CliError, warn};
use crate::vault::{self, ChunkSizeSource, RecoverOptions, ThresholdSource};

#[derive(Debug, Clone, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Replace an existing veilfs.conf (it is kept as
    /// veilfs.conf.before-recovery, or .before-recovery.2, .3, ... if an
    /// earlier recovery kept one).
    #[arg(long)]
    pub force: bool,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
}

pub fn run(args: RecoverArgs) -> Result<(), CliError> {
    let dir = &args.cipherdir;
    let config_path = dir.join(vault::CONFIG_FILE);
    if crate::rekey::in_progress(dir) {
        // veilfs.conf must stay the old config until the rekey installs
        // the new one; the state file holds both keys.
        return Err(CliError::Other(format!(
            "{} is in the middle of a rekey: run `veilfs rekey --resume {}` (with the old or the new key) instead",
            dir.display(),
            dir.display()
        )));
    }
    if !args.force && std::fs::symlink_metadata(&config_path).is_ok() {
        // Fail before asking for the key.
        return Err(vault::VaultError::AlreadyExists(config_path).into());
    }
    let _lock = super::lock_vault(
        dir,
        vault::LockKind::Exclusive,
        "recover-config rewrites veilfs.conf only while no mount or other command uses the vault",
    )?;
    let key = args.key.read_key(dir)?;
    let recovery = vault::recover_config_with(dir, &key, &RecoverOptions { force: args.force })?;
    for w in &recovery.warnings {
        warn(w);
    }
    let c = &recovery.config;
    super::say!("Wrote a new {} in {}.", vault::CONFIG_FILE, dir.display());
    if let Some(old) = &recovery.replaced {
        super::say!("The old config was moved to {}.", old.display());
    }
    super::say!(
        "  names verified with the key: {} ({} failed)",
        recovery.names_verified,
        recovery.names_failed
    );
    let chunk_note = match recovery.chunk_size_source {
        ChunkSizeSource::Verified { files } => format!("from {files} file headers, verified"),
        ChunkSizeSource::Backup => format!("from a verified {}", vault::CONFIG_BACKUP_FILE),
        ChunkSizeSource::Unverified { files } => {
            format!("from {files} file headers, NOT verified")
        }
        ChunkSizeSource::Default => "the default; the vault has no non-empty file".into(),
    };
    super::say!("  chunk size: {} bytes ({chunk_note})", c.chunk_size);
    let threshold_note = match recovery.threshold_source {
        ThresholdSource::Default => "the default, consistent with every name",
        ThresholdSource::Backup => "from the verified backup, consistent with every name",
        ThresholdSource::Inferred => "the smallest value consistent with every name",
        ThresholdSource::Inconsistent => "no value fits every name; see the warning",
    };
    super::say!(
        "  long-name threshold: {} ({threshold_note})",
        c.long_name_threshold
    );
    super::say!(
        "The vault now opens with the 64-digit key only. To add a password, run: veilfs passwd --key-file KEYFILE {}",
        dir.display()
    );
    Ok(())
}
