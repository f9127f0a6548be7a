//! The `veilfs` command line (clap derive).
//!
//! Each subcommand is one [`Command`] variant, one argument struct and one
//! `run` function in its own file. Commands that open a vault flatten
//! [`UnlockArgs`] so every one of them takes the same unlock options.

mod cat;
mod error;
mod fsck;
mod info;
mod init;
mod ls;
mod mount;
mod passwd;
mod recover;
mod secret;
mod unlock;

use clap::{Parser, Subcommand};

pub use error::{
    CliError, EXIT_BAD_CONFIG, EXIT_ERROR, EXIT_IN_USE, EXIT_OK, EXIT_USAGE, EXIT_WRONG_SECRET,
};
pub use info::InfoArgs;
pub use init::InitArgs;
pub use mount::{MountArgs, UnmountArgs};
pub use passwd::PasswdArgs;
pub use recover::RecoverArgs;
pub use secret::{KdfArgs, KeyArgs, Secret};
pub use unlock::UnlockArgs;

/// An encrypted overlay filesystem for chat backups kept on storage you do
/// not control.
#[derive(Debug, Parser)]
#[command(name = "veilfs", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new vault and show its 64-digit key once.
    Init(InitArgs),
    /// Show a vault's parameters (no password needed, no secret shown).
    Info(InfoArgs),
    /// Set a new password, unlocking with the old one or the 64-digit key.
    Passwd(PasswdArgs),
    /// Rebuild a lost or damaged veilfs.conf from the 64-digit key.
    RecoverConfig(RecoverArgs),
    /// Mount a vault: plaintext in MOUNTPOINT, ciphertext in CIPHERDIR.
    Mount(MountArgs),
    /// Unmount a mounted vault (same as `fusermount3 -u MOUNTPOINT`).
    Unmount(UnmountArgs),
    /// Check a whole vault without mounting it: IVs, names, every chunk.
    Fsck(fsck::FsckArgs),
    /// List decrypted names without mounting (no FUSE needed).
    Ls(ls::LsArgs),
    /// Write a file's plaintext to stdout without mounting.
    Cat(cat::CatArgs),
}

/// Sets up logging: stderr (RUST_LOG, default warn) for every command but
/// the background mount daemon, which logs to syslog.
pub fn init_logging(cli: &Cli) {
    let level = std::env::var("RUST_LOG").unwrap_or_default();
    if let Command::Mount(args) = &cli.command
        && mount::logs_to_syslog(args)
    {
        let filter = match level.rsplit('=').next().unwrap_or("") {
            "trace" => log::LevelFilter::Trace,
            "debug" => log::LevelFilter::Debug,
            "info" => log::LevelFilter::Info,
            "error" => log::LevelFilter::Error,
            _ => log::LevelFilter::Warn,
        };
        crate::fs::daemon::SyslogLogger::install(filter);
        return;
    }
    let default = if matches!(cli.command, Command::Mount(_)) {
        "info"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp(None)
        .init();
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Info(args) => info::run(args),
        Command::Passwd(args) => passwd::run(args),
        Command::RecoverConfig(args) => recover::run(args),
        Command::Mount(args) => mount::run(args),
        Command::Unmount(args) => mount::run_unmount(args),
        Command::Fsck(args) => fsck::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Cat(args) => cat::run(args),
    }
}

/// Locks the vault in `dir` for a command (see [`crate::vault::lock`]).
/// A conflicting lock is an error whose text adds `why` (why this command
/// refuses) and what to do. A directory that cannot be opened gives
/// `None`: the command's own checks then report it in their words.
pub(crate) fn lock_vault(
    dir: &std::path::Path,
    kind: crate::vault::LockKind,
    why: &str,
) -> Result<Option<crate::vault::VaultLock>, CliError> {
    match crate::vault::VaultLock::acquire(dir, kind) {
        Ok(lock) => Ok(Some(lock)),
        Err(e @ crate::vault::LockError::InUse { .. }) => Err(CliError::InUse {
            error: e,
            why: why.to_string(),
        }),
        Err(e) => {
            log::debug!("not locking: {e}");
            Ok(None)
        }
    }
}

/// Prints a non-fatal warning to stderr.
pub(crate) fn warn(msg: impl std::fmt::Display) {
    eprintln!("veilfs: warning: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
