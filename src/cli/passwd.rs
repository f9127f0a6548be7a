//! `veilfs passwd`: set a new password, unlocking with the old one or the
//! 64-digit key. Re-encrypts nothing.

use std::path::PathBuf;

use clap::Args;

use super::secret::{self, KdfArgs};
use super::{CliError, UnlockArgs};
use crate::vault::{self, CONFIG_BACKUP_FILE};

#[derive(Debug, Clone, Args)]
pub struct PasswdArgs {
    #[command(flatten)]
    pub unlock: UnlockArgs,
    #[command(flatten)]
    pub new: NewPasswordArgs,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
}

/// Where a new password comes from, and the KDF it is wrapped with
/// (`passwd` and `rekey`).
#[derive(Debug, Clone, Args)]
pub struct NewPasswordArgs {
    /// Read the new password from the first line of FILE (`-`: standard
    /// input) instead of prompting twice.
    #[arg(long, value_name = "FILE", conflicts_with = "new_extpass")]
    pub new_passfile: Option<PathBuf>,
    /// Run CMD with `sh -c`; the first line it prints is the new password.
    #[arg(long, value_name = "CMD")]
    pub new_extpass: Option<String>,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

pub fn run(args: PasswdArgs) -> Result<(), CliError> {
    let dir = &args.cipherdir;
    let _lock = super::lock_vault(
        dir,
        vault::LockKind::Exclusive,
        "passwd rewrites veilfs.conf only while no mount or other command uses the vault",
    )?;
    let old_from_stdin = args
        .unlock
        .passfile
        .as_deref()
        .is_some_and(secret::is_stdin)
        || args
            .unlock
            .key_file
            .as_deref()
            .is_some_and(secret::is_stdin);
    if old_from_stdin
        && args
            .new
            .new_passfile
            .as_deref()
            .is_some_and(secret::is_stdin)
    {
        return Err(CliError::Usage(
            "only one secret can come from standard input (`-`): give the old or the new one in a file"
                .into(),
        ));
    }
    let vault = args.unlock.unlock(dir)?;
    let kdf = args.new.kdf.resolve(vault.config.password_kdf());
    let new = secret::new_password(
        args.new.new_passfile.as_deref(),
        args.new.new_extpass.as_deref(),
        "use --new-passfile FILE or --new-extpass CMD",
    )?;
    let had_password = !vault.config.key_slots.is_empty();
    vault::change_password_with(&vault, &new, kdf)?;
    if had_password {
        super::say!("Password changed for {}.", dir.display());
        super::say!(
            "The previous config is kept as {}. It still opens with the OLD password: \
             delete it once the new password works, at once if the old one was exposed.",
            dir.join(CONFIG_BACKUP_FILE).display()
        );
    } else {
        super::say!("Password added to {}.", dir.display());
    }
    super::say!("Your 64-digit key is unchanged and still opens the vault.");
    Ok(())
}
