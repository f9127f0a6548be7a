//! `veilfs ls`: list decrypted names without mounting (no FUSE needed).

use std::path::PathBuf;

use clap::Args;

use super::output::{emit, exit_corrupt, printable};
use super::{CliError, UnlockArgs};
use crate::offline::{Entry, Kind, Offline};

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
    /// A plaintext path inside the vault (default: the root).
    #[arg(default_value = "/")]
    pub path: PathBuf,
}

fn mode_string(kind: Kind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind.letter());
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn line(e: &Entry) -> String {
    let mtime = humantime::format_rfc3339_seconds(e.mtime);
    let mut s = format!(
        "{} {:>3} {:>12} {} {}",
        mode_string(e.kind, e.mode),
        e.nlink,
        e.size,
        mtime,
        printable(&e.name_lossy())
    );
    match &e.target {
        Some(Ok(t)) => {
            s.push_str(" -> ");
            s.push_str(&printable(&String::from_utf8_lossy(t)));
        }
        Some(Err(why)) => {
            s.push_str(" -> ? (");
            s.push_str(why);
            s.push(')');
        }
        None => {}
    }
    s
}

pub fn run(args: LsArgs) -> Result<(), CliError> {
    let vault = args.unlock.unlock(&args.cipherdir)?;
    let (content, names) = vault.ciphers();
    let off = Offline::new(&args.cipherdir, &content, &names)
        .map_err(|e| CliError::Other(format!("{}: {e}", args.cipherdir.display())))?;
    let listing = match off.list(&args.path) {
        Ok(l) => l,
        Err(e) if e.is_corruption() => exit_corrupt(e),
        Err(e) => return Err(CliError::Other(e.to_string())),
    };
    let mut text = String::new();
    for e in &listing.entries {
        text.push_str(&line(e));
        text.push('\n');
    }
    emit(&text)?;
    let bad_targets = listing
        .entries
        .iter()
        .filter(|e| matches!(e.target, Some(Err(_))))
        .count();
    for (backing, why) in &listing.bad {
        eprintln!(
            "veilfs: warning: backing entry {}: {why}",
            printable(backing)
        );
    }
    if !listing.bad.is_empty() || bad_targets > 0 {
        exit_corrupt(format_args!(
            "{}: {} entries could not be decrypted; run `veilfs fsck`",
            args.path.display(),
            listing.bad.len() + bad_targets
        ));
    }
    Ok(())
}
