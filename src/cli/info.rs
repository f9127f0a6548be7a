//! `veilfs info`: a vault's parameters. Needs no secret, shows none.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clap::Args;

use super::CliError;
use crate::vault::{self, CONFIG_BACKUP_FILE, CONFIG_FILE};

#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// The vault's backing directory.
    pub cipherdir: PathBuf,
}

fn mib(kib: u32) -> String {
    if kib % 1024 == 0 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{:.1} MiB", f64::from(kib) / 1024.0)
    }
}

pub fn run(args: InfoArgs) -> Result<(), CliError> {
    let dir = &args.cipherdir;
    let config = vault::load_config(dir)?;
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
