//! Errors of the vault layer. Callers branch on the variant (the CLI maps
//! them to exit codes); the messages name the file and say what to do.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong creating, reading, unlocking or rewriting a
/// vault config. No variant ever carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No password slot opened with the given password.
    #[error(
        "wrong password for {} (if you are sure it is right, the config may have been tampered with). \
         Forgot it? The 64-digit recovery key still opens the vault: `veilfs passwd --key-file KEYFILE {}` sets a new password",
        config.display(),
        dir_of(config)
    )]
    WrongPassword { config: PathBuf },
    /// The 64-digit key does not belong to this vault.
    #[error(
        "wrong key: this 64-digit key does not belong to the vault in {}. Check the digits; \
         each vault has its own key",
        path.display()
    )]
    WrongKey { path: PathBuf },
    /// A password was given but the vault was created with `--key-only`.
    #[error(
        "{} has no password (it was created with --key-only): unlock it with the 64-digit key \
         (--key-file FILE or --key); `veilfs passwd` can then add a password",
        config.display()
    )]
    NoPasswordSlot { config: PathBuf },
    /// The config parses, but its MAC or key id does not match the key.
    #[error(
        "config tampered: {} was modified ({what}). Do not trust it; if you still have the 64-digit key, \
         `veilfs recover-config --force --key-file KEYFILE {}` writes a fresh one",
        config.display(),
        dir_of(config)
    )]
    ConfigTampered { config: PathBuf, what: String },
    /// The config is not valid JSON or misses or misspells a field.
    #[error(
        "corrupt config {}: {reason}. Restore it from a backup (veilfs.conf.bak) or rebuild it with \
         `veilfs recover-config --force --key-file KEYFILE {}`",
        config.display(),
        dir_of(config)
    )]
    CorruptConfig { config: PathBuf, reason: String },
    /// The config declares a format version this veilfs does not read.
    #[error(
        "{} has format version {version}, but this veilfs only reads version {}: upgrade veilfs",
        config.display(),
        super::FORMAT_VERSION
    )]
    UnsupportedVersion { config: PathBuf, version: u64 },
    /// The config needs a feature this veilfs does not know.
    #[error(
        "{} needs feature {flag:?}, which this veilfs does not support: upgrade veilfs",
        config.display()
    )]
    UnknownFeature { config: PathBuf, flag: String },
    /// A KDF parameter is outside the limits of docs/FORMAT.md §3.2.
    /// Checked before Argon2 runs, so a hostile config cannot exhaust
    /// memory or silently weaken the KDF.
    #[error(
        "refusing to unlock with {}: Argon2 parameter {param} = {value} is outside the allowed range \
         {min}..={max}, so the config was modified to weaken or overload the KDF. \
         The 64-digit key still opens the vault (`veilfs recover-config --force --key-file KEYFILE {}`)",
        config.display(),
        dir_of(config)
    )]
    KdfParamsOutOfRange {
        config: PathBuf,
        param: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    /// The config holds more password slots, or more Argon2 work in total,
    /// than docs/FORMAT.md §3.2 allows. Checked before Argon2 runs, so a
    /// hostile config cannot make an unlock take hours.
    #[error(
        "refusing to unlock with {}: it holds {slots} password slot(s) costing {} GiB x passes of Argon2 \
         in total, more than veilfs allows (at most {} slots and {} GiB x passes, one slot at the maximum \
         parameters), so the config was modified to overload the KDF. No password was tried. \
         The 64-digit key still opens the vault (`veilfs recover-config --force --key-file KEYFILE {}`)",
        config.display(),
        cost / (1024 * 1024),
        super::config::MAX_KEY_SLOTS,
        super::config::MAX_TOTAL_KDF_COST / (1024 * 1024),
        dir_of(config)
    )]
    KdfBudgetExceeded {
        config: PathBuf,
        slots: usize,
        /// Sum over the slots of m_kib × t.
        cost: u64,
    },
    /// An option given to `create_vault` is outside the allowed range.
    #[error("{0}")]
    InvalidOption(String),
    /// The directory exists but holds no `veilfs.conf`.
    #[error(
        "{} is not a veilfs vault: it has no {}. If the config was lost, \
         `veilfs recover-config --key-file KEYFILE {}` rebuilds it from the 64-digit key",
        .0.display(),
        super::CONFIG_FILE,
        .0.display()
    )]
    NotAVault(PathBuf),
    /// `init` refuses a directory that already holds other files.
    #[error(
        "{} is not empty (it contains {entry:?}): create the vault in a new or empty directory",
        dir.display()
    )]
    NotEmpty { dir: PathBuf, entry: String },
    /// `init` or `recover-config` would overwrite an existing config.
    #[error(
        "{} already exists: refusing to overwrite a vault config{}",
        .0.display(),
        if .0.ends_with(super::CONFIG_FILE) {
            " (recover-config takes --force to replace a damaged one)"
        } else {
            ""
        }
    )]
    AlreadyExists(PathBuf),
    /// `recover-config` found nothing it could rebuild a config from.
    #[error("cannot recover the config of {}: {reason}", dir.display())]
    RecoveryFailed { dir: PathBuf, reason: String },
    /// Argon2 itself failed (out of memory, usually).
    #[error("Argon2 failed: {0}")]
    Kdf(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl VaultError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        VaultError::Io {
            path: path.into(),
            source,
        }
    }

    /// A wrong password or a wrong 64-digit key.
    pub fn is_wrong_secret(&self) -> bool {
        matches!(
            self,
            VaultError::WrongPassword { .. }
                | VaultError::WrongKey { .. }
                | VaultError::NoPasswordSlot { .. }
        )
    }

    /// The config is damaged, modified, or from a newer veilfs.
    pub fn is_bad_config(&self) -> bool {
        matches!(
            self,
            VaultError::ConfigTampered { .. }
                | VaultError::CorruptConfig { .. }
                | VaultError::UnsupportedVersion { .. }
                | VaultError::UnknownFeature { .. }
                | VaultError::KdfParamsOutOfRange { .. }
                | VaultError::KdfBudgetExceeded { .. }
        )
    }
}

/// The vault directory of a config path, for the commands we suggest.
fn dir_of(config: &Path) -> String {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One value of every variant, for the message test.
    fn samples() -> Vec<VaultError> {
        let c = || PathBuf::from("/v/veilfs.conf");
        vec![
            VaultError::WrongPassword { config: c() },
            VaultError::WrongKey { path: "/v".into() },
            VaultError::NoPasswordSlot { config: c() },
            VaultError::ConfigTampered {
                config: c(),
                what: "MAC".into(),
            },
            VaultError::CorruptConfig {
                config: c(),
                reason: "bad".into(),
            },
            VaultError::UnsupportedVersion {
                config: c(),
                version: 9,
            },
            VaultError::UnknownFeature {
                config: c(),
                flag: "x".into(),
            },
            VaultError::KdfParamsOutOfRange {
                config: c(),
                param: "m",
                value: 1,
                min: 2,
                max: 3,
            },
            VaultError::KdfBudgetExceeded {
                config: PathBuf::from("veilfs.conf"),
                slots: 9,
                cost: 5 << 20,
            },
            VaultError::InvalidOption("opt".into()),
            VaultError::NotAVault("/v".into()),
            VaultError::NotEmpty {
                dir: "/v".into(),
                entry: "e".into(),
            },
            VaultError::AlreadyExists(c()),
            VaultError::AlreadyExists("/v/other".into()),
            VaultError::RecoveryFailed {
                dir: "/v".into(),
                reason: "r".into(),
            },
            VaultError::Kdf("oom".into()),
            VaultError::io("/v/f", io::Error::from_raw_os_error(2)),
        ]
    }

    /// The messages, byte for byte as the hand-written `Display` printed
    /// them before thiserror (the CLI tests pin some of them too).
    #[test]
    fn messages() {
        let want = [
            r#"wrong password for /v/veilfs.conf (if you are sure it is right, the config may have been tampered with). Forgot it? The 64-digit recovery key still opens the vault: `veilfs passwd --key-file KEYFILE /v` sets a new password"#,
            r#"wrong key: this 64-digit key does not belong to the vault in /v. Check the digits; each vault has its own key"#,
            r#"/v/veilfs.conf has no password (it was created with --key-only): unlock it with the 64-digit key (--key-file FILE or --key); `veilfs passwd` can then add a password"#,
            r#"config tampered: /v/veilfs.conf was modified (MAC). Do not trust it; if you still have the 64-digit key, `veilfs recover-config --force --key-file KEYFILE /v` writes a fresh one"#,
            r#"corrupt config /v/veilfs.conf: bad. Restore it from a backup (veilfs.conf.bak) or rebuild it with `veilfs recover-config --force --key-file KEYFILE /v`"#,
            r#"/v/veilfs.conf has format version 9, but this veilfs only reads version 1: upgrade veilfs"#,
            r#"/v/veilfs.conf needs feature "x", which this veilfs does not support: upgrade veilfs"#,
            r#"refusing to unlock with /v/veilfs.conf: Argon2 parameter m = 1 is outside the allowed range 2..=3, so the config was modified to weaken or overload the KDF. The 64-digit key still opens the vault (`veilfs recover-config --force --key-file KEYFILE /v`)"#,
            r#"refusing to unlock with veilfs.conf: it holds 9 password slot(s) costing 5 GiB x passes of Argon2 in total, more than veilfs allows (at most 4 slots and 20 GiB x passes, one slot at the maximum parameters), so the config was modified to overload the KDF. No password was tried. The 64-digit key still opens the vault (`veilfs recover-config --force --key-file KEYFILE .`)"#,
            r#"opt"#,
            r#"/v is not a veilfs vault: it has no veilfs.conf. If the config was lost, `veilfs recover-config --key-file KEYFILE /v` rebuilds it from the 64-digit key"#,
            r#"/v is not empty (it contains "e"): create the vault in a new or empty directory"#,
            r#"/v/veilfs.conf already exists: refusing to overwrite a vault config (recover-config takes --force to replace a damaged one)"#,
            r#"/v/other already exists: refusing to overwrite a vault config"#,
            r#"cannot recover the config of /v: r"#,
            r#"Argon2 failed: oom"#,
            r#"/v/f: No such file or directory (os error 2)"#,
        ];
        let got: Vec<String> = samples().iter().map(|e| e.to_string()).collect();
        assert_eq!(got, want);
    }
}
