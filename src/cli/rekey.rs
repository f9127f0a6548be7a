//! `veilfs rekey`: re-encrypt the whole vault under a new master key, after
//! a key or password leak. Crash-safe; `--resume` finishes an interrupted
//! run.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use zeroize::Zeroizing;

use super::secret::{self, Secret};
use super::{CliError, UnlockArgs};
use crate::keys::MasterKey;
use crate::rekey::{self, RekeyProgress, StateSecret};
use crate::vault;

#[derive(Debug, Clone, Args)]
pub struct RekeyArgs {
    /// Unlock with the OLD password or key (with `--resume`: the old or
    /// the new one).
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Finish a rekey that was interrupted (a crash, a kill, a full disk).
    #[arg(long, conflicts_with_all = ["key_only", "new_passfile", "new_extpass", "key_out"])]
    pub resume: bool,
    /// The new vault has no password: the new 64-digit key is the only
    /// way in.
    #[arg(long, conflicts_with_all = ["new_passfile", "new_extpass"])]
    pub key_only: bool,
    #[command(flatten)]
    pub new: super::passwd::NewPasswordArgs,
    /// Write the new 64-digit key to FILE (a new file, mode 0600) instead
    /// of showing it.
    #[arg(long, value_name = "FILE")]
    pub key_out: Option<PathBuf>,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
}

fn rk(e: rekey::RekeyError) -> CliError {
    CliError::Other(e.0)
}

pub fn run(args: RekeyArgs) -> Result<(), CliError> {
    let dir = &args.cipherdir;
    let _lock = super::lock_vault(
        dir,
        vault::LockKind::Exclusive,
        "rekey rewrites every file: unmount the vault (and stop other veilfs commands on it) first",
    )?;
    let existing = rekey::read_state(dir).map_err(rk)?;
    let (mut state, old, new, survey) = match existing {
        None => {
            if args.resume {
                return Err(CliError::Usage(format!(
                    "no rekey is in progress in {}: run `veilfs rekey {}` to start one",
                    dir.display(),
                    dir.display()
                )));
            }
            let old = args.unlock.unlock(dir)?;
            // Damage found now stops nothing: refuse before any change.
            let survey =
                rekey::survey(dir, rekey::Phase::Copy, &old.master, &old.config).map_err(rk)?;
            if survey.problems > 0 {
                return Err(CliError::Other(format!(
                    "{}: {} entries cannot be decrypted (first: {}); nothing was changed. \
                     Run `veilfs fsck --repair {}` (or remove them), then rekey",
                    dir.display(),
                    survey.problems,
                    survey.first_problems.join("; "),
                    dir.display()
                )));
            }
            check_space(dir, &survey, false)?;
            let password = if args.key_only {
                None
            } else {
                Some(secret::new_password(
                    args.new.new_passfile.as_deref(),
                    args.new.new_extpass.as_deref(),
                    "use --new-passfile FILE or --new-extpass CMD, or --key-only",
                )?)
            };
            let kdf = args.new.kdf.resolve(old.config.password_kdf());
            let new = MasterKey::generate();
            let config = vault::seal_new_config(
                &new,
                old.config.chunk_size,
                old.config.long_name_threshold,
                password.as_ref().map(|p| p.as_slice()),
                kdf,
            )?;
            // The new key is saved (or shown) before the state file that
            // makes it the vault's future key: it can never be lost.
            let key_file = match &args.key_out {
                Some(path) => Some((path, super::init::create_key_file(path)?)),
                None => None,
            };
            let key_path = key_file.as_ref().map(|(p, _)| (*p).clone());
            show_key(
                &new,
                key_file,
                args.key_only,
                "It is shown only this once. The old key stops working when the rekey ends.",
            )?;
            let state = match rekey::begin(dir, &old.master, &new, config) {
                Ok(s) => s,
                Err(e) => {
                    if let Some(path) = key_path {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(rk(e));
                }
            };
            (state, old.master, new, survey)
        }
        Some(state) => {
            if !args.resume {
                return Err(CliError::Usage(format!(
                    "{} is in the middle of a rekey: run `veilfs rekey --resume {}` to finish it",
                    dir.display(),
                    dir.display()
                )));
            }
            let config = vault::load_config(dir)?;
            let secret = args.unlock.read_secret(dir, &config)?;
            let (old, new) = match secret {
                Secret::Key(k) => rekey::unlock_state(dir, &state, StateSecret::Key(k))?,
                Secret::Password(pw) => {
                    rekey::unlock_state(dir, &state, StateSecret::Password(&pw))?
                }
            };
            super::say!("Resuming the rekey of {}.", dir.display());
            let survey = rekey::survey(dir, state.phase, &old, &state.new_config).map_err(rk)?;
            check_space(dir, &survey, true)?;
            (state, old, new, survey)
        }
    };

    let bar = super::progress::Progress::new("rekeying");
    let progress = bar.clone().map(|bar| {
        Box::new(move |p: &RekeyProgress| {
            bar.update(p.bytes_done, p.bytes_total, p.files_done, p.files_total)
        }) as rekey::ProgressFn<'_>
    });
    let result = rekey::run(dir, &mut state, &old, &new, &survey, progress);
    if let Some(bar) = bar {
        bar.finish();
    }
    let report = result.map_err(rk)?;
    super::say!(
        "Rekeyed {}: {} files ({} bytes), {} directories, {} symlinks, {} hard links, {} other. \
         The old key and password no longer open it.",
        dir.display(),
        report.files,
        report.bytes,
        report.dirs,
        report.symlinks,
        report.hard_links,
        report.other
    );
    Ok(())
}

/// Says how much space the rekey needs and refuses when it is not there.
fn check_space(
    dir: &std::path::Path,
    survey: &rekey::Survey,
    resuming: bool,
) -> Result<(), CliError> {
    let need = survey.largest.saturating_add(rekey::SPACE_MARGIN);
    let free = rekey::free_space(dir).map_err(rk)?;
    super::say!(
        "Rekeying {} files ({} bytes) file by file: this needs at most {} MiB free \
         (the largest file plus {} MiB); {} MiB are free.",
        survey.totals.files,
        survey.totals.bytes,
        need.div_ceil(1 << 20),
        rekey::SPACE_MARGIN >> 20,
        free >> 20
    );
    if free < need {
        return Err(CliError::Other(format!(
            "{}: not enough free space to rekey ({} MiB free, {} MiB needed); free some space, \
             then run `veilfs rekey{} {}`{}",
            dir.display(),
            free >> 20,
            need.div_ceil(1 << 20),
            if resuming { " --resume" } else { "" },
            dir.display(),
            if resuming {
                ""
            } else {
                " (nothing was changed)"
            }
        )));
    }
    Ok(())
}

pub(super) fn show_key(
    new: &MasterKey,
    key_file: Option<(&PathBuf, std::fs::File)>,
    key_only: bool,
    last: &str,
) -> Result<(), CliError> {
    let digits = new.display_digits();
    if let Some((path, mut file)) = key_file {
        let mut text = Zeroizing::new(String::with_capacity(digits.len() + 1));
        text.push_str(digits.as_str());
        text.push('\n');
        if let Err(e) = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
        {
            println!("{}", digits.as_str());
            return Err(CliError::Other(format!(
                "writing the key to {}: {e}. The new key is printed above instead: store it \
                 safely, then run `veilfs rekey --resume` with it",
                path.display()
            )));
        }
        super::say!("The new 64-digit key is in {} (mode 0600).", path.display());
        return Ok(());
    }
    if super::quiet() {
        println!("{}", digits.as_str());
        return Ok(());
    }
    println!();
    println!(
        "{}:",
        if key_only {
            "The new 64-digit key"
        } else {
            "The new 64-digit recovery key"
        }
    );
    println!();
    println!("    {}", digits.as_str());
    println!();
    println!(
        "{}",
        if key_only {
            super::init::KEY_ONLY_WARNING
        } else {
            super::init::PASSWORD_VAULT_WARNING
        }
    );
    println!("{last}");
    std::io::stdout().flush().ok();
    Ok(())
}
