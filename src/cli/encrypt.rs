//! `veilfs encrypt`: turn encryption on for an existing folder: encrypt
//! PLAINDIR into a new vault CIPHERDIR. Resumable after a kill.

use std::path::PathBuf;

use clap::Args;

use super::secret::{self, Secret};
use super::{CliError, init};
use crate::encrypt::{self, EncryptState};
use crate::vault;

#[derive(Debug, Clone, Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub vault: init::NewVaultArgs,
    /// With --resume: unlock with the 64-digit key in FILE.
    #[arg(long, value_name = "FILE", requires = "resume")]
    pub key_file: Option<PathBuf>,
    /// Remove each plaintext file once its ciphertext is durable, and each
    /// plaintext directory once it is empty.
    #[arg(long)]
    pub remove_plaintext: bool,
    /// Go on with an encryption that was interrupted (--passfile or
    /// --extpass then give the vault's password).
    #[arg(long, conflicts_with_all = ["key_only", "key_out"])]
    pub resume: bool,
    /// The existing plaintext directory.
    pub plaindir: PathBuf,
    /// The new vault's backing directory (missing or empty).
    pub cipherdir: PathBuf,
}

pub fn run(args: EncryptArgs) -> Result<(), CliError> {
    let dir = &args.cipherdir;
    let plain = args
        .plaindir
        .canonicalize()
        .map_err(|e| CliError::Other(format!("{}: {e}", args.plaindir.display())))?;
    if let Ok(c) = dir.canonicalize()
        && (c.starts_with(&plain) || plain.starts_with(&c))
    {
        return Err(CliError::Usage(format!(
            "{} and {} overlap: the vault must be outside the folder it encrypts",
            plain.display(),
            dir.display()
        )));
    }
    let vault = if args.resume {
        let state = match encrypt::read_state(dir).map_err(|e| CliError::Other(e.0))? {
            Some(s) => s,
            // Stopped between creating the vault and marking it: nothing
            // was encrypted yet, so mark it now and go on.
            None if vault_is_bare(dir) => {
                let s = EncryptState {
                    plaindir: plain.clone(),
                    remove_plaintext: args.remove_plaintext,
                };
                encrypt::begin(dir, &s).map_err(|e| CliError::Other(e.0))?;
                s
            }
            None => {
                return Err(CliError::Usage(format!(
                    "no encryption is in progress in {} (it has finished, or never began)",
                    dir.display()
                )));
            }
        };
        if state.plaindir != plain || state.remove_plaintext != args.remove_plaintext {
            return Err(CliError::Usage(format!(
                "{} is being filled from {}{}: resume with the same folder and options",
                dir.display(),
                state.plaindir.display(),
                if state.remove_plaintext {
                    " with --remove-plaintext"
                } else {
                    ""
                }
            )));
        }
        let config = vault::load_config(dir)?;
        let secret = if let Some(k) = &args.key_file {
            Secret::Key(secret::key_from_file(k)?)
        } else if let Some(p) = &args.vault.passfile {
            Secret::Password(secret::password_from_file(p)?)
        } else if let Some(c) = &args.vault.extpass {
            Secret::Password(secret::password_from_command(c)?)
        } else if config.key_slots.is_empty() {
            Secret::Key(secret::prompt_key(dir)?)
        } else {
            Secret::Password(secret::prompt_password(dir)?)
        };
        match secret {
            Secret::Key(k) => vault::unlock_with_key(dir, k)?,
            Secret::Password(p) => vault::unlock_with_password(dir, &p)?,
        }
    } else {
        let (vault, key_out) = args
            .vault
            .create(dir, "use --passfile FILE or --extpass CMD, or --key-only")?;
        let (key_path, key_file) = key_out.unzip();
        super::rekey::show_key(
            &vault.master,
            key_path.as_ref().zip(key_file),
            args.vault.key_only,
            "It is shown only this once.",
        )?;
        encrypt::begin(
            dir,
            &EncryptState {
                plaindir: plain.clone(),
                remove_plaintext: args.remove_plaintext,
            },
        )
        .map_err(|e| CliError::Other(e.0))?;
        vault
    };
    let _lock = super::lock_vault(
        dir,
        vault::LockKind::Exclusive,
        "encrypt fills the vault: unmount it first",
    )?;
    let (files, bytes) = encrypt::count(&plain).map_err(|e| CliError::Other(e.0))?;
    let bar = super::progress::Progress::new("encrypting");
    let progress = bar.clone().map(|bar| {
        Box::new(move |f: u64, b: u64| bar.update(b, bytes, f, files)) as encrypt::ProgressFn<'_>
    });
    let (content, names) = vault.ciphers();
    let res = encrypt::run(
        dir,
        &plain,
        &content,
        &names,
        args.remove_plaintext,
        progress,
    );
    if let Some(bar) = bar {
        bar.finish();
    }
    let r = res.map_err(|e| {
        CliError::Other(format!(
            "{e}. Fix the cause, then run `veilfs encrypt --resume{} {} {}`",
            if args.remove_plaintext {
                " --remove-plaintext"
            } else {
                ""
            },
            plain.display(),
            dir.display()
        ))
    })?;
    super::say!(
        "Encrypted {} into {}: {} files ({} bytes), {} directories, {} symlinks, {} hard links, {} other.",
        plain.display(),
        dir.display(),
        r.entries.files,
        r.entries.bytes,
        r.entries.dirs,
        r.entries.symlinks,
        r.entries.hard_links,
        r.entries.other
    );
    if r.skipped_xattrs > 0 {
        super::warn(format!(
            "{} extended attributes outside user.* were not stored (veilfs keeps only user.*)",
            r.skipped_xattrs
        ));
    }
    Ok(())
}

/// A vault holding nothing but its config (and sync-client files).
fn vault_is_bare(dir: &std::path::Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    dir.join(vault::CONFIG_FILE).exists()
        && rd.filter_map(|e| e.ok()).all(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("veilfs.") || vault::is_sync_client_file(&n)
        })
}
