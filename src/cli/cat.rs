//! `veilfs cat`: write a file's plaintext to stdout without mounting.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use clap::Args;

use super::{CliError, UnlockArgs};
use crate::offline::{Offline, OfflineError};

#[derive(Debug, Clone, Args)]
pub struct CatArgs {
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Write zeros for chunks that fail authentication instead of
    /// stopping, report each on stderr, and exit non-zero: everything
    /// readable is recovered at its offset.
    #[arg(long)]
    pub salvage: bool,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
    /// The plaintext path of a file inside the vault.
    pub path: PathBuf,
}

pub fn run(args: CatArgs) -> Result<(), CliError> {
    let vault = args.unlock.unlock(&args.cipherdir)?;
    let (content, names) = vault.ciphers();
    let off = Offline::new(&args.cipherdir, &content, &names)
        .map_err(|e| CliError::Other(format!("{}: {e}", args.cipherdir.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let report = match off.cat(&args.path, &mut out, args.salvage) {
        Ok(r) => r,
        // `veilfs cat ... | head`: the reader is gone, nothing to report.
        Err(OfflineError::Io { error, .. }) if error.kind() == io::ErrorKind::BrokenPipe => {
            return Ok(());
        }
        Err(e) if e.is_corruption() => {
            let _ = out.flush();
            super::output::exit_corrupt(e)
        }
        Err(e) => return Err(CliError::Other(e.to_string())),
    };
    drop(out);
    let path = super::output::printable(&report.path);
    if let Some(why) = &report.header_error {
        eprintln!(
            "veilfs: {path}: {why}; no chunk can be authenticated, wrote {} zero bytes",
            report.bytes
        );
    }
    for bad in &report.bad {
        let chunks = if bad.chunks.end - bad.chunks.start == 1 {
            format!("chunk {}", bad.chunks.start)
        } else {
            format!("chunks {}..={}", bad.chunks.start, bad.chunks.end - 1)
        };
        eprintln!(
            "veilfs: {path}: {chunks} (bytes {}..{}): {}; written as zeros",
            bad.bytes.start, bad.bytes.end, bad.reason
        );
    }
    if !report.is_clean() {
        super::output::exit_corrupt(format_args!(
            "{path}: damaged; every readable byte was written"
        ));
    }
    Ok(())
}
