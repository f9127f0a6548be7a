//! The `veilfs` command line (clap derive).
//!
//! Each subcommand is one [`Command`] variant, one argument struct and one
//! `run` function in its own file. Commands that open a vault flatten
//! [`UnlockArgs`] so every one of them takes the same unlock options.

mod cat;
mod daemon;
mod docs;
mod encrypt;
mod error;
mod export;
mod fsck;
mod info;
mod init;
mod ls;
mod mount;
mod mount_opts;
mod output;
mod passwd;
mod path;
mod progress;
mod recover;
mod rekey;
mod secret;
mod unlock;

use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `-q/--quiet` was given.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `println!` for status lines, which `-q` silences.
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::cli::quiet() {
            println!($($arg)*);
        }
    };
}
pub(crate) use say;

pub use error::{
    CliError, EXIT_BAD_CONFIG, EXIT_ERROR, EXIT_IN_USE, EXIT_OK, EXIT_USAGE, EXIT_WRONG_SECRET,
};
pub use info::InfoArgs;
pub use init::InitArgs;
pub use mount::{MountArgs, UnmountArgs};
pub use mount_opts::mount_helper_args;
pub use passwd::PasswdArgs;
pub use recover::RecoverArgs;
pub use secret::{KdfArgs, KeyArgs, Secret};
pub use unlock::UnlockArgs;

/// An encrypted overlay filesystem for chat backups kept on storage you do
/// not control.
#[derive(Debug, Parser)]
#[command(name = "veilfs", version, about, long_about = None)]
pub struct Cli {
    /// Print only errors and the data asked for (a key, JSON, a listing):
    /// no status lines, warnings or progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
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
    /// Decrypt a whole vault, or a subtree, into a plain directory without
    /// FUSE, keeping modes, times, symlinks and extended attributes.
    Export(export::ExportArgs),
    /// Re-encrypt the whole vault under a new key (after a key or password leak).
    Rekey(rekey::RekeyArgs),
    /// Encrypt an existing folder into a new vault (resumable; optionally
    /// removing the plaintext as it goes).
    Encrypt(encrypt::EncryptArgs),
    /// Translate a path between the plaintext view and CIPHERDIR, offline.
    Path(path::PathArgs),
    /// Print the man page (roff): `veilfs man | man -l -`.
    Man(docs::ManArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(docs::CompletionsArgs),
}

/// Sets up logging: stderr (RUST_LOG, default warn) for every command but
/// the background mount daemon, which logs to syslog.
pub fn init_logging(cli: &Cli) {
    QUIET.store(cli.quiet, Ordering::Relaxed);
    if let Command::Mount(args) = &cli.command
        && mount::logs_to_syslog(args)
    {
        daemon::SyslogLogger::install(syslog_filter(std::env::var("RUST_LOG").ok().as_deref()));
        return;
    }
    let default = if cli.quiet {
        "error"
    } else if matches!(cli.command, Command::Mount(_)) {
        "info"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp(None)
        .init();
}

/// The daemon's log filter: RUST_LOG parsed by env_logger's own parser
/// (`veilfs=debug,fuser=warn` keeps both directives), `info` by default
/// like a foreground mount.
fn syslog_filter(rust_log: Option<&str>) -> env_filter::Filter {
    let mut b = env_filter::Builder::new();
    match rust_log {
        Some(spec) if !spec.trim().is_empty() => b.parse(spec),
        _ => b.filter_level(log::LevelFilter::Info),
    };
    b.build()
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    QUIET.store(cli.quiet, Ordering::Relaxed);
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
        Command::Export(args) => export::run(args),
        Command::Rekey(args) => rekey::run(args),
        Command::Encrypt(args) => encrypt::run(args),
        Command::Path(args) => path::run(args),
        Command::Man(args) => docs::run_man(args),
        Command::Completions(args) => docs::run_completions(args),
    }
}

/// How long a command waits for a vault whose holder has no live mount:
/// a daemon finishing after `fusermount3 -u`, or another command.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Locks the vault in `dir` for a command (see [`crate::vault::lock`]).
/// A conflicting lock is an error whose text adds `why` (why this command
/// refuses) and what to do. A directory that cannot be opened gives
/// `None`: the command's own checks then report it in their words.
pub(crate) fn lock_vault(
    dir: &std::path::Path,
    kind: crate::vault::LockKind,
    why: &str,
) -> Result<Option<crate::vault::VaultLock>, CliError> {
    match crate::vault::VaultLock::acquire_waiting(dir, kind, LOCK_WAIT) {
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
    if quiet() {
        return;
    }
    eprintln!("veilfs: warning: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn enabled(f: &env_filter::Filter, target: &str, level: log::Level) -> bool {
        f.enabled(&log::Metadata::builder().target(target).level(level).build())
    }

    #[test]
    fn syslog_filter_keeps_every_rust_log_directive() {
        let f = syslog_filter(Some("veilfs=debug,fuser=warn"));
        assert!(enabled(&f, "veilfs::fs", log::Level::Debug));
        assert!(!enabled(&f, "veilfs::fs", log::Level::Trace));
        assert!(enabled(&f, "fuser::session", log::Level::Warn));
        assert!(!enabled(&f, "fuser::session", log::Level::Info));
        assert!(!enabled(&f, "other", log::Level::Error));
        let default = syslog_filter(None);
        assert!(enabled(&default, "veilfs", log::Level::Info));
        assert!(!enabled(&default, "veilfs", log::Level::Debug));
    }

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
