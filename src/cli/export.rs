//! `veilfs export`: decrypt a vault's tree, or a subtree, into a plain
//! directory without FUSE.

use std::path::PathBuf;

use clap::Args;

use super::output::printable;
use super::{CliError, UnlockArgs};
use crate::export::{self, ExportError, ExportOptions, ExportProgress};
use crate::offline::Offline;

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Export only this plaintext directory (or file) of the vault.
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub path: PathBuf,
    /// Go on past damage: damaged chunks become zeros at their offsets,
    /// entries that cannot be decrypted are skipped; all of it is listed
    /// on stderr and the exit code is 6.
    #[arg(long)]
    pub salvage: bool,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
    /// Where the plaintext goes: a new or empty directory.
    pub destdir: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<(), CliError> {
    if let (Ok(c), Some(d)) = (
        args.cipherdir.canonicalize(),
        args.destdir
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .map(|p| p.join(args.destdir.file_name().unwrap_or_default())),
    ) && d.starts_with(&c)
    {
        return Err(CliError::Usage(format!(
            "the destination {} is inside the vault directory {}: choose a directory outside it",
            args.destdir.display(),
            args.cipherdir.display()
        )));
    }
    let vault = args.unlock.unlock(&args.cipherdir)?;
    let (content, names) = vault.ciphers();
    let off = Offline::new(&args.cipherdir, &content, &names)
        .map_err(|e| CliError::Other(format!("{}: {e}", args.cipherdir.display())))?;
    let bar = super::progress::Progress::new("exporting");
    let progress = bar.clone().map(|bar| {
        Box::new(move |p: &ExportProgress| {
            bar.update(p.bytes_done, p.bytes_total, p.files_done, p.files_total)
        }) as Box<dyn FnMut(&ExportProgress)>
    });
    let opts = ExportOptions {
        dest: args.destdir.clone(),
        salvage: args.salvage,
        progress,
    };
    let result = export::export(&off, &args.path, opts);
    if let Some(bar) = bar {
        bar.finish();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) if e.is_corruption() => super::output::exit_corrupt(format_args!(
            "{}; the export stopped there: use --salvage to export everything readable",
            printable(&e.to_string())
        )),
        Err(ExportError::Dest { path, error }) => {
            return Err(CliError::Other(format!(
                "writing {}: {error}",
                path.display()
            )));
        }
        Err(e) => return Err(CliError::Other(printable(&e.to_string()))),
    };
    for s in &report.skipped {
        super::warn(printable(s));
    }
    for d in &report.damaged {
        eprintln!("veilfs: damaged: {}", printable(d));
    }
    let count = super::output::count;
    super::say!(
        "Exported {}, {} ({} bytes), {}, {} to {}.",
        count(report.dirs, "directory").replace("directorys", "directories"),
        count(report.files, "file"),
        report.bytes,
        count(report.symlinks, "symlink"),
        count(report.special, "special file"),
        args.destdir.display()
    );
    if !report.is_clean() {
        super::output::exit_corrupt(format_args!(
            "{} damaged; everything readable was exported",
            super::output::count(report.damaged.len() as u64, "entry").replace("entrys", "entries")
        ));
    }
    Ok(())
}
