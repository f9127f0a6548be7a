//! `veilfs man` and `veilfs completions`: the man page and shell
//! completion scripts, generated from the clap definitions so they never
//! drift from `--help`.

use std::io::Write;

use clap::{Args, CommandFactory, ValueEnum};

use super::{Cli, CliError};

#[derive(Debug, Clone, Args)]
pub struct ManArgs {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    pub shell: Shell,
}

/// What `man veilfs` says about exit codes and the environment, beyond
/// what clap knows.
const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Any other error (I/O, a directory that is not a vault, a failed mount).
.TP
\fB2\fR
Bad command line, or unknown mount options.
.TP
\fB3\fR
Wrong password, or a wrong or malformed 64\-digit key.
.TP
\fB4\fR
The config is corrupt, tampered with, weakened, or from a newer veilfs.
.TP
\fB6\fR
\fBfsck\fR, \fBls\fR, \fBcat\fR, \fBexport\fR: the vault is damaged.
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
Log filter, as env_logger reads it (for example \fIveilfs=debug,fuser=warn\fR).
.SH FILES
.TP
\fICIPHERDIR\fR/veilfs.conf
The vault's config: parameters and the password slots.
.SH "SEE ALSO"
\fBfstab\fR(5), \fBmount\fR(8), \fBmount.fuse3\fR(8), \fBfusermount3\fR(1)
"#;

/// The whole man page (section 1) as roff: the top-level page, then one
/// section per subcommand with its synopsis and options.
pub fn man_page() -> Result<Vec<u8>, std::io::Error> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    for sub in cmd.get_subcommands() {
        render_subcommand(&mut out, sub, "VEILFS")?;
    }
    out.extend_from_slice(EXTRA.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// One section per subcommand, and one per nested subcommand (`veilfs
/// path encrypt`), each with its synopsis, description and options; the
/// subcommands' own sections become subsections.
fn render_subcommand(
    out: &mut Vec<u8>,
    sub: &clap::Command,
    prefix: &str,
) -> Result<(), std::io::Error> {
    let name = sub.get_name();
    if name == "help" || sub.is_hide_set() {
        return Ok(());
    }
    let title = format!("{prefix} {}", name.to_uppercase());
    writeln!(out, ".SH \"{title}\"")?;
    let sub_man = clap_mangen::Man::new(sub.clone());
    let mut body = Vec::new();
    sub_man.render_synopsis_section(&mut body)?;
    sub_man.render_description_section(&mut body)?;
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        sub_man.render_options_section(&mut body)?;
    }
    for line in String::from_utf8_lossy(&body).lines() {
        match line.strip_prefix(".SH ") {
            Some(t) => writeln!(out, ".SS {}", t.trim_matches('"'))?,
            None => writeln!(out, "{line}")?,
        }
    }
    for nested in sub.get_subcommands() {
        render_subcommand(out, nested, &title)?;
    }
    Ok(())
}

pub fn run_man(_args: ManArgs) -> Result<(), CliError> {
    let page = man_page().map_err(|e| CliError::Other(format!("rendering the man page: {e}")))?;
    super::output::emit(&String::from_utf8_lossy(&page))
}

pub fn run_completions(args: CompletionsArgs) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "veilfs", &mut out);
    super::output::emit(&String::from_utf8_lossy(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_has_a_section_per_subcommand() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(page.contains(".TH veilfs 1"));
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            assert!(
                page.contains(&format!(".SH \"VEILFS {}\"", name.to_uppercase())),
                "no section for {name}"
            );
        }
        assert!(page.contains("EXIT STATUS"));
    }
}
