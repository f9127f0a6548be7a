//! `veilfs fsck`: check a whole vault without mounting it.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::HumanBytes;
use serde::Serialize;

use super::ls::printable;
use super::{CliError, UnlockArgs};
use crate::check::{self, FsckOptions, Progress, Report};

/// Exit code of `fsck`, `ls` and `cat` when the vault is damaged.
pub const EXIT_CORRUPT: i32 = 6;

#[derive(Debug, Clone, Args)]
pub struct FsckArgs {
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Make the repairs that cannot lose data: re-seal a chunk whose
    /// last-chunk flag a crash left stale, recreate the IV of an empty
    /// directory, remove orphan long-name records. Each is reported.
    #[arg(long)]
    pub repair: bool,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
}

/// Prints one error line and exits with [`EXIT_CORRUPT`].
pub(crate) fn exit_corrupt(msg: impl std::fmt::Display) -> ! {
    let _ = std::io::stdout().flush();
    eprintln!("veilfs: error: {msg}");
    std::process::exit(EXIT_CORRUPT);
}

#[derive(Serialize)]
struct JsonReport<'a> {
    cipherdir: String,
    clean: bool,
    #[serde(flatten)]
    report: &'a Report,
}

/// `n thing` or `n things`.
pub(crate) fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Writes command output to stdout. A reader that went away (`| head`)
/// ends the output quietly instead of panicking.
pub(crate) fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Other(format!("writing to stdout: {e}"))),
    }
}

fn report_text(cipherdir: &str, r: &Report) -> String {
    use std::fmt::Write as _;
    let s = &r.stats;
    let mut o = String::new();
    let _ = writeln!(o, "veilfs fsck {}", printable(cipherdir));
    let _ = writeln!(
        o,
        "checked {}, {} ({}, {}), {}, {}{}",
        count(s.dirs, "directory").replace("directorys", "directories"),
        count(s.files, "file"),
        count(s.chunks, "chunk"),
        HumanBytes(s.backing_bytes),
        count(s.symlinks, "symlink"),
        count(s.special, "special file"),
        if s.hard_links > 0 {
            format!(", {}", count(s.hard_links, "extra hard link"))
        } else {
            String::new()
        }
    );
    if !r.foreign.is_empty() {
        let _ = writeln!(
            o,
            "info: {} (sync-client files and the like), left alone:",
            count(r.foreign.len() as u64, "foreign entry").replace("entrys", "entries")
        );
        for f in &r.foreign {
            let _ = writeln!(o, "  {}", printable(f));
        }
    }
    let left: Vec<_> = r.unrepaired().collect();
    if !left.is_empty() {
        let _ = writeln!(o, "problems ({}):", left.len());
        for p in &left {
            let _ = writeln!(o, "  {} [{}]", printable(&p.to_string()), p.kind);
        }
    }
    if !r.repairs.is_empty() {
        let _ = writeln!(o, "repaired ({}):", r.repairs.len());
        for rep in &r.repairs {
            let _ = writeln!(
                o,
                "  {}: {} [{}]",
                printable(&rep.path),
                rep.action,
                rep.kind
            );
        }
    }
    if left.is_empty() {
        let _ = writeln!(o, "result: clean");
    } else {
        let _ = writeln!(
            o,
            "result: {} found. Paths marked [backing] are relative to the backing directory. \
             Recover what is readable with `veilfs cat --salvage`.",
            count(left.len() as u64, "problem")
        );
    }
    o
}

pub fn run(args: FsckArgs) -> Result<(), CliError> {
    let vault = args.unlock.unlock(&args.cipherdir)?;
    let content = vault.content_cipher();
    let names = vault.name_cipher();
    let shown = args.cipherdir.display().to_string();
    let mut opts = FsckOptions::new(&args.cipherdir, &content, &names);
    opts.repair = args.repair;
    let bar = super::progress::Progress::new("checking");
    if let Some(bar) = bar.clone() {
        opts.progress = Some(Box::new(move |p: &Progress| {
            bar.update(p.bytes_done, p.bytes_total, p.files_done, p.files_total);
        }));
    }
    let report = check::fsck(opts).map_err(|e| CliError::Other(format!("{shown}: {e}")))?;
    if let Some(bar) = bar {
        bar.finish();
    }
    if args.json {
        let out = JsonReport {
            cipherdir: shown.clone(),
            clean: report.is_clean(),
            report: &report,
        };
        let mut text = serde_json::to_string_pretty(&out).expect("the report serializes");
        text.push('\n');
        emit(&text)?;
    } else if !super::quiet() {
        emit(&report_text(&shown, &report))?;
    }
    if !report.is_clean() {
        exit_corrupt(format_args!(
            "{}: {} found",
            printable(&shown),
            count(report.unrepaired().count() as u64, "problem")
        ));
    }
    Ok(())
}
