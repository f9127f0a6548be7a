//! What the commands share to print: escaped names, output that survives
//! a closed pipe, counts in words, and the exit for a damaged vault.

use std::io::Write;

use super::CliError;

/// Exit code of `fsck`, `ls` and `cat` when the vault is damaged.
pub const EXIT_CORRUPT: i32 = 6;

/// Prints one error line and exits with [`EXIT_CORRUPT`].
pub(crate) fn exit_corrupt(msg: impl std::fmt::Display) -> ! {
    let _ = std::io::stdout().flush();
    eprintln!("veilfs: error: {msg}");
    std::process::exit(EXIT_CORRUPT);
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

/// `n thing` or `n things`.
pub(crate) fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Shows a name with control characters escaped, so a hostile name cannot
/// drive the terminal.
pub(crate) fn printable(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
