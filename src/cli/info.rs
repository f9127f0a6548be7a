//! `veilfs info`: a vault's parameters. Needs no secret, shows none.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clap::Args;
use serde::Serialize;

use super::CliError;
use crate::vault::{self, CONFIG_BACKUP_FILE, CONFIG_FILE};

#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// Print the parameters as one JSON object on stdout (fields in
    /// README.md, "Scripting").
    #[arg(long)]
    pub json: bool,
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
}

fn mib(kib: u32) -> String {
    if kib.is_multiple_of(1024) {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{:.1} MiB", f64::from(kib) / 1024.0)
    }
}

/// One password slot in `info --json` (no salt, nonce or wrapped key).
#[derive(Serialize)]
struct JsonSlot<'a> {
    kdf: &'a str,
    argon2_version: u32,
    m_kib: u32,
    t: u32,
    p: u32,
}

/// `veilfs info --json`. Field names are part of the CLI's interface:
/// README.md lists them; add fields, never rename or remove one.
#[derive(Serialize)]
struct JsonInfo<'a> {
    vault: String,
    config: String,
    format: &'a str,
    version: u32,
    cipher: &'a str,
    chunk_size: u32,
    long_name_threshold: u32,
    feature_flags: &'a [String],
    created: &'a str,
    key_id: String,
    has_password: bool,
    password_slots: Vec<JsonSlot<'a>>,
    backup: Option<String>,
}

pub fn run(args: InfoArgs) -> Result<(), CliError> {
    let dir = &args.cipherdir;
    let config = vault::load_config(dir)?;
    if args.json {
        let backup = dir.join(CONFIG_BACKUP_FILE);
        let info = JsonInfo {
            vault: dir.display().to_string(),
            config: dir.join(CONFIG_FILE).display().to_string(),
            format: &config.format,
            version: config.version,
            cipher: &config.cipher,
            chunk_size: config.chunk_size,
            long_name_threshold: config.long_name_threshold,
            feature_flags: &config.feature_flags,
            created: &config.created,
            key_id: B64.encode(config.key_id),
            has_password: !config.key_slots.is_empty(),
            password_slots: config
                .key_slots
                .iter()
                .map(|s| JsonSlot {
                    kdf: &s.kdf,
                    argon2_version: s.argon2_version,
                    m_kib: s.m_kib,
                    t: s.t,
                    p: s.p,
                })
                .collect(),
            backup: backup.exists().then(|| backup.display().to_string()),
        };
        let mut text = serde_json::to_string_pretty(&info).expect("the info serializes");
        text.push('\n');
        return super::output::emit(&text);
    }
    let flags = if config.feature_flags.is_empty() {
        "none".to_string()
    } else {
        config.feature_flags.join(", ")
    };
    println!("vault:                {}", dir.display());
    println!(
        "config:               {} (MAC checked only on unlock)",
        dir.join(CONFIG_FILE).display()
    );
    println!(
        "format:               {} version {}",
        config.format, config.version
    );
    println!("cipher:               {}", config.cipher);
    println!("chunk size:           {} bytes", config.chunk_size);
    println!(
        "long-name threshold:  {} characters",
        config.long_name_threshold
    );
    println!("feature flags:        {flags}");
    println!("created:              {}", config.created);
    println!("key id:               {}", B64.encode(config.key_id));
    println!("key slots:");
    println!("  64-digit key:       always");
    if config.key_slots.is_empty() {
        println!("  password:           none (key-only vault)");
    }
    for (i, slot) in config.key_slots.iter().enumerate() {
        println!(
            "  password slot {}:    {} v{}, m = {} KiB ({}), t = {}, p = {}",
            i + 1,
            slot.kdf,
            slot.argon2_version,
            slot.m_kib,
            mib(slot.m_kib),
            slot.t,
            slot.p
        );
    }
    if dir.join(CONFIG_BACKUP_FILE).exists() {
        println!(
            "backup:               {} (the config before the last passwd)",
            dir.join(CONFIG_BACKUP_FILE).display()
        );
    }
    Ok(())
}
