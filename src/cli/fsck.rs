//! `veilfs fsck`: check a whole vault without mounting it.

use std::path::PathBuf;

use clap::Args;
use indicatif::HumanBytes;
use serde::Serialize;

use super::output::{count, emit, exit_corrupt, printable};
use super::{CliError, UnlockArgs};
use crate::check::{self, FsckOptions, Progress, Report};
use crate::vault::LockKind;

#[derive(Debug, Clone, Args)]
pub struct FsckArgs {
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Make the repairs that cannot lose data: re-seal a chunk whose
    /// last-chunk flag a crash left stale, drop a last chunk a crash cut,
    /// cut off what follows a stale last chunk when nothing authentic does
    /// (zero_tail), recreate the IV of an empty directory, remove orphan
    /// long-name records. Each is reported.
    #[arg(long)]
    pub repair: bool,
    /// With --repair: keep the zeros that follow a chunk still sealed as a
    /// file's last one (zero_tail) as part of the file, instead of cutting
    /// the file after that chunk. Only if you know the file ends in zeros:
    /// the zeros may have been appended by whoever can write the backing
    /// directory, and this makes them authentic.
    #[arg(long, requires = "repair")]
    pub keep_zero_tail: bool,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    cipherdir: String,
    clean: bool,
    #[serde(flatten)]
    report: &'a Report,
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
    if !r.files_with_holes.is_empty() {
        let _ = writeln!(
            o,
            "info: {} with holes inside ({} that read as zeros): a sparse file, or chunks \
             zeroed by someone with access to the backing directory; veilfs cannot tell \
             which, check that these files are expected to be sparse:",
            count(r.files_with_holes.len() as u64, "file"),
            count(s.holes, "chunk"),
        );
        for f in &r.files_with_holes {
            let _ = writeln!(
                o,
                "  {}{}: {} of {} chunks",
                if f.path_is_plain { "" } else { "[backing] " },
                printable(&f.path),
                f.holes,
                f.chunks
            );
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
    // Held until the check is over. Plain fsck shares the vault with other
    // checks but not with a mount, whose writes in flight it would report
    // as damage; --repair writes and so needs the vault to itself.
    let _lock = if args.repair {
        super::lock_vault(
            &args.cipherdir,
            LockKind::Exclusive,
            "fsck --repair never rewrites files behind a live mount",
        )?
    } else {
        super::lock_vault(
            &args.cipherdir,
            LockKind::Shared,
            "fsck would read files while the mount writes them and report false damage",
        )?
    };
    let vault = args.unlock.unlock(&args.cipherdir)?;
    let (content, names) = vault.ciphers();
    let shown = args.cipherdir.display().to_string();
    let mut opts = FsckOptions::new(&args.cipherdir, &content, &names);
    opts.repair = args.repair;
    // What a crash left in the rewrite journal (outside CIPHERDIR): replayed
    // first by --repair, and told apart from damage either way.
    let journal_dir =
        crate::cryptfile::journal::journal_dir(&args.cipherdir, &vault.master.key_id()).ok();
    if let Some(dir) = journal_dir.as_deref().filter(|d| d.exists()) {
        if args.repair {
            let root = std::fs::File::open(&args.cipherdir)
                .map_err(|e| CliError::Other(format!("{shown}: {e}")))?;
            crate::cryptfile::journal::recover(dir, &root, &content).map_err(|e| {
                CliError::Other(format!(
                    "replaying the rewrite journal {}: {e}",
                    dir.display()
                ))
            })?;
        }
        opts.journal = crate::cryptfile::journal::read_records(dir).map_err(|e| {
            CliError::Other(format!(
                "reading the rewrite journal {}: {e}",
                dir.display()
            ))
        })?;
    }
    let replayed_unplaced = args.repair && !opts.journal.is_empty();
    opts.keep_zero_tail = args.keep_zero_tail;
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
    if replayed_unplaced
        && report.is_clean()
        && let Some(dir) = &journal_dir
    {
        // Every record that could not be placed by path was placed by
        // header during the walk.
        let _ = std::fs::remove_file(dir.join("journal.unplaced"));
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
