//! `veilfs init`: create a vault and show its 64-digit key once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use zeroize::Zeroizing;

use super::CliError;
use super::secret::{self, KdfArgs};
use crate::content::DEFAULT_CHUNK_SIZE;
use crate::names::DEFAULT_LONG_NAME_THRESHOLD;
use crate::vault::{self, CreateOptions, KdfParams};

pub const PASSWORD_VAULT_WARNING: &str = "This is your recovery key. Keep it offline (paper, password manager). It is the only way back in if you forget your password.";
pub const KEY_ONLY_WARNING: &str = "This 64-digit key is the ONLY way to open this vault. If you lose it, your data is gone. Nobody can recover it.";

/// How a new vault is made: `init`'s options, shared by `encrypt`.
#[derive(Debug, Clone, Args)]
pub struct NewVaultArgs {
    /// Create a vault with no password: the 64-digit key is the only way in.
    #[arg(long, conflicts_with_all = ["passfile", "extpass", "kdf_memory", "kdf_time", "kdf_parallelism"])]
    pub key_only: bool,
    /// Plaintext bytes per chunk: a power of two from 4096 to 65536.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u32,
    /// Encrypted names longer than this many characters are stored hashed
    /// (64 to 240).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LONG_NAME_THRESHOLD)]
    pub long_name_threshold: u32,
    /// Read the new password from the first line of FILE (`-`: standard
    /// input) instead of prompting twice.
    #[arg(long, value_name = "FILE", conflicts_with = "extpass")]
    pub passfile: Option<PathBuf>,
    /// Run CMD with `sh -c`; the first line it prints is the new password.
    #[arg(long, value_name = "CMD")]
    pub extpass: Option<String>,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Write the 64-digit key to FILE (a new file, mode 0600; an existing
    /// one is never overwritten) instead of showing it.
    #[arg(long, value_name = "FILE")]
    pub key_out: Option<PathBuf>,
}

impl NewVaultArgs {
    /// The vault parameters, without the password yet.
    pub fn create_options(&self) -> CreateOptions<'static> {
        CreateOptions {
            chunk_size: self.chunk_size,
            long_name_threshold: self.long_name_threshold,
            password: None,
            kdf: self.kdf.resolve(KdfParams::DEFAULT),
        }
    }

    /// Creates the vault in `dir` as these options say: checks the options
    /// and the directory before asking for a password (`no_password_hint`
    /// says what to do when none can be read), creates the key file of
    /// `--key-out` before the vault, so that a vault is never made whose
    /// key could not be saved, and removes that file again if the vault
    /// could not be made. The caller writes the key into the file.
    pub fn create(
        &self,
        dir: &Path,
        no_password_hint: &str,
    ) -> Result<(vault::UnlockedVault, Option<(PathBuf, File)>), CliError> {
        let mut opts = self.create_options();
        opts.check()?;
        vault::check_init_target(dir)?;
        let password = if self.key_only {
            None
        } else {
            Some(secret::new_password(
                self.passfile.as_deref(),
                self.extpass.as_deref(),
                no_password_hint,
            )?)
        };
        opts.password = password.as_ref().map(|p| p.as_slice());
        let key_out = match &self.key_out {
            Some(path) => Some((path.clone(), create_key_file(path)?)),
            None => None,
        };
        match vault::create_vault(dir, &opts) {
            Ok(v) => Ok((v, key_out)),
            Err(e) => {
                if let Some((path, _)) = key_out {
                    let _ = std::fs::remove_file(path);
                }
                Err(e.into())
            }
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub vault: NewVaultArgs,
    /// The backing directory: created if missing, else it must be empty.
    pub cipherdir: PathBuf,
}

pub fn run(args: InitArgs) -> Result<(), CliError> {
    let dir = &args.cipherdir;
    let (vault, key_out) = args.vault.create(
        dir,
        "use --passfile FILE or --extpass CMD, or --key-only for a vault without a password",
    )?;
    let digits = vault.master.display_digits();

    let kind = if args.vault.key_only {
        "key-only vault (no password)"
    } else {
        "password vault"
    };
    if let Some((path, mut file)) = key_out {
        let mut text = Zeroizing::new(String::with_capacity(digits.len() + 1));
        text.push_str(digits.as_str());
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| {
                // The vault exists now: the key must not be lost.
                println!("{}", digits.as_str());
                CliError::Other(format!(
                    "writing the key to {}: {e}. The vault {} was created; its key is \
                     printed above instead: store it safely now",
                    path.display(),
                    dir.display(),
                ))
            })?;
        super::say!(
            "Created a {kind} in {} (chunk size {} bytes).",
            dir.display(),
            vault.config.chunk_size
        );
        super::say!("The 64-digit key is in {} (mode 0600).", path.display());
        super::say!(
            "{}",
            if args.vault.key_only {
                KEY_ONLY_WARNING
            } else {
                PASSWORD_VAULT_WARNING
            }
        );
        return Ok(());
    }
    if super::quiet() {
        // Only the key: `KEY=$(veilfs init -q --key-only DIR)`.
        println!("{}", digits.as_str());
        return Ok(());
    }
    println!(
        "Created a {kind} in {} (chunk size {} bytes).",
        dir.display(),
        vault.config.chunk_size
    );
    println!();
    println!(
        "{}:",
        if args.vault.key_only {
            "Your 64-digit key"
        } else {
            "Your 64-digit recovery key"
        }
    );
    println!();
    println!("    {}", digits.as_str());
    println!();
    println!(
        "{}",
        if args.vault.key_only {
            KEY_ONLY_WARNING
        } else {
            PASSWORD_VAULT_WARNING
        }
    );
    println!("It is shown only this once.");
    Ok(())
}

/// A new file for the key, readable by its owner only. Refuses to replace
/// anything (an existing key file may be the only copy of another key).
pub(super) fn create_key_file(path: &Path) -> Result<File, CliError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CliError::Usage(format!(
                    "--key-out {} already exists: veilfs never overwrites a key file; choose a new name",
                    path.display()
                ))
            } else {
                CliError::Other(format!("cannot create --key-out {}: {e}", path.display()))
            }
        })
}
