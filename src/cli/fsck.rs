//! `veilfs fsck`: check a whole vault without mounting it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
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

fn progress_bar() -> Option<ProgressBar> {
    if super::quiet() || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} checking [{bar:30}] {bytes}/{total_bytes} {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    Some(bar)
}

/// The time left, once it means something: after at least 3 seconds and
/// 2% of the bytes. Before that the rate is mostly start-up (unlock, the
/// first directory listings, a cold cache) and the estimate is off by
/// hours ("18h left" for a vault checked in a minute).
pub(crate) fn eta_text(elapsed: std::time::Duration, done: u64, total: u64) -> Option<String> {
    if total == 0 || done >= total || elapsed.as_secs_f64() < 3.0 || done * 50 < total {
        return None;
    }
    let left = elapsed.as_secs_f64() * (total - done) as f64 / done as f64;
    let secs = left.round() as u64;
    Some(if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    })
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
    let bar = progress_bar();
    if let Some(bar) = bar.clone() {
        let start = std::time::Instant::now();
        opts.progress = Some(Box::new(move |p: &Progress| {
            let total = p.bytes_total.max(p.bytes_done);
            bar.set_length(total);
            bar.set_position(p.bytes_done);
            let eta = eta_text(start.elapsed(), p.bytes_done, total)
                .map(|t| format!(" ({t} left)"))
                .unwrap_or_default();
            bar.set_message(format!("{}/{} files{eta}", p.files_done, p.files_total));
        }));
    }
    let report = check::fsck(opts).map_err(|e| CliError::Other(format!("{shown}: {e}")))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
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

#[cfg(test)]
mod tests {
    use super::eta_text;
    use std::time::Duration;

    #[test]
    fn eta_waits_until_it_means_something() {
        let s = Duration::from_secs;
        // Too early, or too little done: no estimate at all.
        assert_eq!(eta_text(s(1), 500, 1000), None);
        assert_eq!(eta_text(s(60), 1, 1000), None);
        assert_eq!(eta_text(s(10), 0, 1000), None);
        // Done or nothing to do.
        assert_eq!(eta_text(s(10), 1000, 1000), None);
        assert_eq!(eta_text(s(10), 0, 0), None);
        // Half done in 10 s: 10 s left.
        assert_eq!(eta_text(s(10), 500, 1000).as_deref(), Some("10s"));
        assert_eq!(eta_text(s(90), 500, 1000).as_deref(), Some("1m30s"));
        assert_eq!(eta_text(s(3600), 100, 300).as_deref(), Some("2h00m"));
    }
}
