//! `veilfs init`: create a vault and show its 64-digit key once.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use super::secret::{self, KdfArgs};
use crate::content::DEFAULT_CHUNK_SIZE;
use crate::names::DEFAULT_LONG_NAME_THRESHOLD;
use crate::vault::{self, CreateOptions, KdfParams};

pub const PASSWORD_VAULT_WARNING: &str = "This is your recovery key. Keep it offline (paper, password manager). It is the only way back in if you forget your password.";
pub const KEY_ONLY_WARNING: &str = "This 64-digit key is the ONLY way to open this vault. If you lose it, your data is gone. Nobody can recover it.";

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
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
    /// Read the new password from the first line of FILE instead of
    /// prompting twice.
    #[arg(long, value_name = "FILE", conflicts_with = "extpass")]
    pub passfile: Option<PathBuf>,
    /// Run CMD with `sh -c`; the first line it prints is the new password.
    #[arg(long, value_name = "CMD")]
    pub extpass: Option<String>,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// The backing directory: created if missing, else it must be empty.
    pub cipherdir: PathBuf,
}

pub fn run(args: InitArgs) -> Result<(), CliError> {
    let dir = &args.cipherdir;
    let mut opts = CreateOptions {
        chunk_size: args.chunk_size,
        long_name_threshold: args.long_name_threshold,
        password: None,
        kdf: args.kdf.resolve(KdfParams::DEFAULT),
    };
    // Refuse bad options and a non-empty directory before asking for a
    // password.
    opts.check()?;
    vault::check_init_target(dir)?;
    let password = if args.key_only {
        None
    } else {
        Some(secret::new_password(
            args.passfile.as_deref(),
            args.extpass.as_deref(),
            "use --passfile FILE or --extpass CMD, or --key-only for a vault without a password",
        )?)
    };
    opts.password = password.as_ref().map(|p| p.as_slice());
    let vault = vault::create_vault(dir, &opts)?;

    let kind = if args.key_only {
        "key-only vault (no password)"
    } else {
        "password vault"
    };
    println!(
        "Created a {kind} in {} (chunk size {} bytes).",
        dir.display(),
        vault.config.chunk_size
    );
    println!();
    println!(
        "{}:",
        if args.key_only {
            "Your 64-digit key"
        } else {
            "Your 64-digit recovery key"
        }
    );
    println!();
    println!("    {}", vault.master.display_digits().as_str());
    println!();
    println!(
        "{}",
        if args.key_only {
            KEY_ONLY_WARNING
        } else {
            PASSWORD_VAULT_WARNING
        }
    );
    println!("It is shown only this once.");
    Ok(())
}
