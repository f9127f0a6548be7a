//! `veilfs path encrypt` / `veilfs path decrypt`: translate a path between
//! the plaintext view and CIPHERDIR, offline.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output::printable;
use super::{CliError, UnlockArgs};
use crate::offline::OfflineError;
use crate::pathmap::{self, Decrypted};

#[derive(Debug, Clone, Args)]
pub struct PathArgs {
    #[command(subcommand)]
    pub direction: Direction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Direction {
    /// Print the backing path (relative to CIPHERDIR) of a plaintext path.
    /// The path need not exist yet.
    Encrypt(OnePath),
    /// Print the plaintext path of a backing path (relative to CIPHERDIR,
    /// or absolute inside it).
    Decrypt(OnePath),
}

#[derive(Debug, Clone, Args)]
pub struct OnePath {
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
    /// The path to translate.
    pub path: PathBuf,
}

fn fail(e: OfflineError) -> CliError {
    if e.is_corruption() {
        super::output::exit_corrupt(e)
    }
    CliError::Other(e.to_string())
}

pub fn run(args: PathArgs) -> Result<(), CliError> {
    match args.direction {
        Direction::Encrypt(a) => {
            let vault = a.unlock.unlock(&a.cipherdir)?;
            let names = vault.name_cipher();
            let backing = pathmap::encrypt_path(&a.cipherdir, &names, &a.path).map_err(fail)?;
            let shown = if backing.as_os_str().is_empty() {
                ".".to_string()
            } else {
                backing.display().to_string()
            };
            super::output::emit(&format!("{shown}\n"))
        }
        Direction::Decrypt(a) => {
            let vault = a.unlock.unlock(&a.cipherdir)?;
            let names = vault.name_cipher();
            let out = match pathmap::decrypt_path(&a.cipherdir, &names, &a.path).map_err(fail)? {
                Decrypted::Entry(p) => printable(&p),
                Decrypted::LongNameRecord(p) => {
                    super::warn(format_args!(
                        "{} is the long-name record of this entry",
                        a.path.display()
                    ));
                    printable(&p)
                }
                Decrypted::DirIv(p) => {
                    super::warn(format_args!(
                        "{} is the IV file of this directory",
                        a.path.display()
                    ));
                    printable(&p)
                }
                Decrypted::Config => {
                    return Err(CliError::Other(format!(
                        "{} is the vault's config, not a file in the vault",
                        a.path.display()
                    )));
                }
            };
            super::output::emit(&format!("{out}\n"))
        }
    }
}
