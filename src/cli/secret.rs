//! Getting secrets from the user: password files, `--extpass` commands,
//! no-echo prompts and 64-digit keys. Every buffer holding a secret is
//! zeroized on drop, and no secret is ever logged.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Args;
use zeroize::Zeroizing;

use super::CliError;
use crate::keys::MasterKey;
use crate::vault::KdfParams;

/// Longest password file or `--extpass` output read.
const MAX_SECRET_INPUT: u64 = 64 * 1024;

/// A secret that opens a vault.
pub enum Secret {
    Password(Zeroizing<Vec<u8>>),
    Key(MasterKey),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Secret::Password(<redacted>)",
            Secret::Key(_) => "Secret::Key(<redacted>)",
        })
    }
}

/// The first line of `bytes`, without its line ending.
fn first_line(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let mut line = &bytes[..end];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    Zeroizing::new(line.to_vec())
}

fn has_more_lines(bytes: &[u8]) -> bool {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => bytes[end + 1..].iter().any(|b| !b.is_ascii_whitespace()),
        None => false,
    }
}

/// Whether a `--passfile`/`--key-file` argument names stdin.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let file: Box<dyn Read> =
        if is_stdin(path) {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(File::open(path).map_err(|e| {
                CliError::Secret(format!("cannot read {what} {}: {e}", path.display()))
            })?)
        };
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::Secret(format!("cannot read {what} {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_SECRET_INPUT {
        return Err(CliError::Secret(format!(
            "{what} {} is larger than {MAX_SECRET_INPUT} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The password in the first line of `path`.
pub fn password_from_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let bytes = read_secret_file(path, "password file")?;
    if has_more_lines(&bytes) {
        log::warn!(
            "{}: only the first line is used as the password",
            path.display()
        );
    }
    let line = first_line(&bytes);
    if line.is_empty() {
        return Err(CliError::Secret(format!(
            "the first line of password file {} is empty",
            path.display()
        )));
    }
    Ok(line)
}

/// The password printed on the first line of `sh -c CMD`'s output.
pub fn password_from_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| CliError::Secret(format!("cannot run --extpass command: {e}")))?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(CliError::Secret(format!(
            "--extpass command failed ({})",
            output.status
        )));
    }
    let line = first_line(&stdout);
    if line.is_empty() {
        return Err(CliError::Secret(
            "--extpass command printed an empty password".into(),
        ));
    }
    Ok(line)
}

fn require_terminal(hint: &str) -> Result<(), CliError> {
    if std::io::stdin().is_terminal() {
        Ok(())
    } else {
        Err(CliError::Secret(format!(
            "stdin is not a terminal, so veilfs cannot prompt: {hint}"
        )))
    }
}

fn prompt(text: &str) -> Result<Zeroizing<String>, CliError> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|e| CliError::Secret(format!("cannot read from the terminal: {e}")))
}

/// Asks for an existing password once, without echo.
pub fn prompt_password(dir: &Path) -> Result<Zeroizing<Vec<u8>>, CliError> {
    require_terminal("use --passfile FILE, --extpass CMD or --key-file FILE")?;
    let pw = prompt(&format!("Password for {}: ", dir.display()))?;
    if pw.is_empty() {
        return Err(CliError::Secret("empty password".into()));
    }
    Ok(Zeroizing::new(pw.as_bytes().to_vec()))
}

/// Asks for a new password twice, without echo.
pub fn prompt_new_password(hint: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    require_terminal(hint)?;
    let first = prompt("New password: ")?;
    if first.is_empty() {
        return Err(CliError::Secret("empty password".into()));
    }
    let second = prompt("Repeat the new password: ")?;
    if first.as_bytes() != second.as_bytes() {
        return Err(CliError::Secret(
            "the two passwords differ; nothing was changed".into(),
        ));
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}

/// A new password from a file, a command, or (by default) the prompt.
pub fn new_password(
    passfile: Option<&Path>,
    extpass: Option<&str>,
    hint: &str,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    match (passfile, extpass) {
        (Some(path), _) => password_from_file(path),
        (None, Some(cmd)) => password_from_command(cmd),
        (None, None) => prompt_new_password(hint),
    }
}

/// The 64-digit key in `path` (spaces, dashes, newlines and case are
/// ignored).
pub fn key_from_file(path: &Path) -> Result<MasterKey, CliError> {
    let bytes = read_secret_file(path, "key file")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| CliError::BadKey {
        origin: format!("key file {}", path.display()),
        error: crate::keys::KeyParseError::InvalidCharacter('\u{fffd}'),
    })?;
    MasterKey::parse(text).map_err(|error| CliError::BadKey {
        origin: format!("key file {}", path.display()),
        error,
    })
}

/// Asks for the 64-digit key, without echo.
pub fn prompt_key(dir: &Path) -> Result<MasterKey, CliError> {
    require_terminal("use --key-file FILE")?;
    let text = prompt(&format!("64-digit key for {}: ", dir.display()))?;
    MasterKey::parse(&text).map_err(|error| CliError::BadKey {
        origin: "the typed key".into(),
        error,
    })
}

/// Options that give the 64-digit key (for commands that need the key, not
/// a password).
#[derive(Debug, Clone, Default, Args)]
#[group(id = "key_source", multiple = false)]
pub struct KeyArgs {
    /// Read the 64-digit key from FILE (spaces, dashes and case are
    /// ignored).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Prompt for the 64-digit key (the default when no --key-file is given).
    #[arg(long)]
    pub key: bool,
}

impl KeyArgs {
    pub fn read_key(&self, dir: &Path) -> Result<MasterKey, CliError> {
        match &self.key_file {
            Some(path) => key_from_file(path),
            None => prompt_key(dir),
        }
    }
}

/// Argon2id cost of a new password slot. Unset values keep the current
/// slot's (passwd) or the defaults (init).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct KdfArgs {
    /// Argon2id memory in KiB, 32768 to 1048576 (new vaults: 131072;
    /// passwd keeps the current slot's).
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(KdfParams::MIN_M_KIB as i64..=KdfParams::MAX_M_KIB as i64))]
    pub kdf_memory: Option<u32>,
    /// Argon2id passes, 2 to 20 (new vaults: 4; passwd keeps the current
    /// slot's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(KdfParams::MIN_T as i64..=KdfParams::MAX_T as i64))]
    pub kdf_time: Option<u32>,
    /// Argon2id lanes, 1 to 16 (new vaults: 4; passwd keeps the current
    /// slot's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(KdfParams::MIN_P as i64..=KdfParams::MAX_P as i64))]
    pub kdf_parallelism: Option<u32>,
}

impl KdfArgs {
    pub fn resolve(&self, base: KdfParams) -> KdfParams {
        KdfParams {
            m_kib: self.kdf_memory.unwrap_or(base.m_kib),
            t: self.kdf_time.unwrap_or(base.t),
            p: self.kdf_parallelism.unwrap_or(base.p),
        }
    }

    pub fn is_set(&self) -> bool {
        self.kdf_memory.is_some() || self.kdf_time.is_some() || self.kdf_parallelism.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_strips_line_endings() {
        assert_eq!(first_line(b"secret\nmore").as_slice(), b"secret");
        assert_eq!(first_line(b"secret\r\n").as_slice(), b"secret");
        assert_eq!(first_line(b"secret").as_slice(), b"secret");
        assert_eq!(first_line(b"\nx").as_slice(), b"");
        assert!(has_more_lines(b"a\nb"));
        assert!(!has_more_lines(b"a\n\n"));
    }
}
