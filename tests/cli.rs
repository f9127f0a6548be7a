//! End-to-end tests of the `veilfs` binary on temporary directories. They
//! stay non-interactive (--passfile, --key-file, stdin closed) and use the
//! cheapest KDF parameters the format allows.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use veilfs::content::{CHUNK_OVERHEAD, FileHeader, Opened};
use veilfs::keys::MasterKey;
use veilfs::names::{BackingName, DIR_IV_FILE};
use veilfs::vault;

use common::FAST_KDF;
use common::run::veilfs;

const EXIT_WRONG_SECRET: i32 = 3;
const EXIT_BAD_CONFIG: i32 = 4;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether `line` is 16 groups of 4 lowercase hex digits joined by `-`.
fn is_key_shape(line: &str) -> bool {
    let groups: Vec<&str> = line.split('-').collect();
    groups.len() == 16
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, contents).unwrap();
        p
    }

    /// `veilfs init` with a password; returns the key it showed.
    fn init_password(&self, dir: &Path, password: &str, extra: &[&str]) -> String {
        let pw = self.file("init-pw", &format!("{password}\n"));
        let mut args = vec!["init", "--passfile", s(&pw)];
        args.extend_from_slice(&FAST_KDF);
        args.extend_from_slice(extra);
        args.push(s(dir));
        let run = veilfs(&args).ok();
        assert!(run.stdout.contains(
            "This is your recovery key. Keep it offline (paper, password manager). \
             It is the only way back in if you forget your password."
        ));
        shown_key(&run.stdout)
    }

    fn key_file(&self, name: &str, key: &str) -> PathBuf {
        self.file(name, &format!("{key}\n"))
    }
}

fn shown_key(stdout: &str) -> String {
    let keys: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| is_key_shape(l))
        .collect();
    assert_eq!(keys.len(), 1, "expected one key line in:\n{stdout}");
    keys[0].to_string()
}

fn opens_with_password(dir: &Path, password: &str) -> bool {
    vault::unlock_with_password(dir, password.as_bytes()).is_ok()
}

#[test]
fn init_password_vault_and_info_never_shows_a_secret() {
    let f = Fixture::new();
    let dir = f.path("vault");
    let key = f.init_password(&dir, "hunter2", &[]);
    assert!(is_key_shape(&key));
    assert!(opens_with_password(&dir, "hunter2"));
    let parsed = MasterKey::parse(&key).unwrap();
    vault::unlock_with_key(&dir, parsed).unwrap();

    let conf = dir.join(vault::CONFIG_FILE);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let info = veilfs(&["info", s(&dir)]).ok();
    for needle in [
        "veilfs version 1",
        "AES-256-GCM-SIV",
        "4096 bytes",
        "175",
        "64-digit key:       always",
        "password slot 1:    argon2id v19, m = 32768 KiB (32 MiB), t = 2, p = 1",
        "created:",
        "key id:",
    ] {
        assert!(
            info.stdout.contains(needle),
            "info lacks {needle:?}:\n{}",
            info.stdout
        );
    }
    let plain_hex = key.replace('-', "");
    for out in [&info.stdout, &info.stderr] {
        assert!(!out.contains(&key) && !out.contains(&plain_hex));
        for group in key.split('-').collect::<Vec<_>>().windows(2) {
            assert!(!out.contains(&group.concat()), "info leaks key digits");
        }
    }
}

#[test]
fn init_key_only_vault() {
    let f = Fixture::new();
    let dir = f.path("vault");
    let run = veilfs(&["init", "--key-only", s(&dir)]).ok();
    assert!(run.stdout.contains(
        "This 64-digit key is the ONLY way to open this vault. If you lose it, your data is gone. \
         Nobody can recover it."
    ));
    let key = shown_key(&run.stdout);
    let info = veilfs(&["info", s(&dir)]).ok();
    assert!(info.stdout.contains("none (key-only vault)"));
    assert!(!info.stdout.contains(&key));

    // A password given to a key-only vault: told to use the key.
    let pw = f.file("pw", "whatever\n");
    let new = f.file("new", "pw2\n");
    veilfs(&[
        "passwd",
        "--passfile",
        s(&pw),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_WRONG_SECRET, "has no password");
    // The key adds a password.
    let kf = f.key_file("key", &key);
    let mut args = vec!["passwd", "--key-file", s(&kf), "--new-passfile", s(&new)];
    args.extend_from_slice(&FAST_KDF);
    args.push(s(&dir));
    veilfs(&args).ok();
    assert!(opens_with_password(&dir, "pw2"));
}

#[test]
fn init_refuses_non_empty_dir_and_existing_vault() {
    let f = Fixture::new();
    let dir = f.path("vault");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("notes.txt"), "x").unwrap();
    veilfs(&["init", "--key-only", s(&dir)]).fails_in_one_line(1, "not empty");

    // Sync-client files are fine.
    let synced = f.path("synced");
    fs::create_dir(&synced).unwrap();
    fs::create_dir(synced.join(".stfolder")).unwrap();
    veilfs(&["init", "--key-only", s(&synced)]).ok();
    veilfs(&["init", "--key-only", s(&synced)]).fails_in_one_line(1, "already exists");
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new();
    let pw = f.file("pw", "x\n");
    let run = veilfs(&["init", "--key-only", "--passfile", s(&pw), s(&f.path("v"))]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = veilfs(&[
        "init",
        "--chunk-size",
        "5000",
        "--key-only",
        s(&f.path("v")),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("chunk size 5000 is not supported"));
    let run = veilfs(&["init", "--kdf-memory", "1024", s(&f.path("v"))]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn no_terminal_and_no_option_is_a_clear_error() {
    let f = Fixture::new();
    let dir = f.path("vault");
    f.init_password(&dir, "pw1", &[]);
    veilfs(&["passwd", s(&dir)]).fails_in_one_line(1, "stdin is not a terminal");
    veilfs(&["init", s(&f.path("other"))]).fails_in_one_line(1, "stdin is not a terminal");
}

#[test]
fn passwd_by_old_password() {
    let f = Fixture::new();
    let dir = f.path("vault");
    f.init_password(&dir, "old password", &[]);
    let old = f.file("old", "old password\n");
    let new = f.file("new", "new password\n");
    let run = veilfs(&[
        "passwd",
        "--passfile",
        s(&old),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .ok();
    assert!(run.stdout.contains("veilfs.conf.bak"));
    assert!(!opens_with_password(&dir, "old password"));
    assert!(opens_with_password(&dir, "new password"));
    veilfs(&[
        "passwd",
        "--passfile",
        s(&old),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_WRONG_SECRET, "wrong password");
    // The backup is the previous config: it still opens with the old one.
    let bak = f.path("bak");
    fs::create_dir(&bak).unwrap();
    fs::copy(
        dir.join(vault::CONFIG_BACKUP_FILE),
        bak.join(vault::CONFIG_FILE),
    )
    .unwrap();
    assert!(opens_with_password(&bak, "old password"));
}

#[test]
fn passwd_by_key_recovers_a_forgotten_password() {
    let f = Fixture::new();
    let dir = f.path("vault");
    let key = f.init_password(&dir, "forgotten", &[]);
    // The key is read with spaces, upper case and no dashes too.
    let messy = key.replace('-', " ").to_uppercase();
    let kf = f.key_file("key", &messy);
    let new = f.file("new", "remembered\n");
    veilfs(&[
        "passwd",
        "--key-file",
        s(&kf),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .ok();
    assert!(!opens_with_password(&dir, "forgotten"));
    assert!(opens_with_password(&dir, "remembered"));
    let v = vault::unlock_with_password(&dir, b"remembered").unwrap();
    assert_eq!(v.master.display_digits().as_str(), key);
}

#[test]
fn wrong_password_and_wrong_key() {
    let f = Fixture::new();
    let dir = f.path("vault");
    f.init_password(&dir, "right", &[]);
    let wrong = f.file("wrong", "wrong\n");
    let new = f.file("new", "new\n");
    let run = veilfs(&[
        "passwd",
        "--passfile",
        s(&wrong),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_WRONG_SECRET, "wrong password");
    assert!(run.stderr.contains("64-digit recovery key"));

    let other = MasterKey::generate();
    let kf = f.key_file("other-key", other.display_digits().as_str());
    veilfs(&[
        "passwd",
        "--key-file",
        s(&kf),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_WRONG_SECRET, "wrong key");

    let short = f.key_file("short-key", "0123-4567");
    veilfs(&[
        "passwd",
        "--key-file",
        s(&short),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_WRONG_SECRET, "has 8 hex digits");
    assert!(opens_with_password(&dir, "right"));
}

#[test]
fn corrupt_config_is_not_a_wrong_password() {
    let f = Fixture::new();
    let dir = f.path("vault");
    f.init_password(&dir, "pw", &[]);
    fs::write(
        dir.join(vault::CONFIG_FILE),
        "{ \"format\": \"veilfs\", oops",
    )
    .unwrap();
    let pw = f.file("pw", "pw\n");
    let new = f.file("new", "new\n");
    let run = veilfs(&[
        "passwd",
        "--passfile",
        s(&pw),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_BAD_CONFIG, "corrupt");
    assert!(!run.stderr.contains("wrong password"));
    veilfs(&["info", s(&dir)]).fails_in_one_line(EXIT_BAD_CONFIG, "corrupt");
}

#[test]
fn tampered_parameter_fails_loudly() {
    let f = Fixture::new();
    let dir = f.path("vault");
    let key = f.init_password(&dir, "pw", &[]);
    let conf = dir.join(vault::CONFIG_FILE);
    let text = fs::read_to_string(&conf).unwrap();
    let edited = text.replace("\"chunk_size\": 4096", "\"chunk_size\": 8192");
    assert_ne!(text, edited);
    fs::write(&conf, edited).unwrap();
    let kf = f.key_file("key", &key);
    let pw = f.file("pw", "pw\n");
    let new = f.file("new", "new\n");
    veilfs(&[
        "passwd",
        "--key-file",
        s(&kf),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_BAD_CONFIG, "tampered");
    // By password the slot no longer opens (the AD binds the parameter);
    // the message says that tampering is a possible cause.
    veilfs(&[
        "passwd",
        "--passfile",
        s(&pw),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_WRONG_SECRET, "tampered");
    // Nothing was rewritten.
    assert!(!dir.join(vault::CONFIG_BACKUP_FILE).exists());
}

#[test]
fn weakened_kdf_is_refused_before_argon2_runs() {
    let f = Fixture::new();
    let dir = f.path("vault");
    f.init_password(&dir, "pw", &[]);
    let conf = dir.join(vault::CONFIG_FILE);
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, text.replace("\"m_kib\": 32768", "\"m_kib\": 1024")).unwrap();
    let pw = f.file("pw", "pw\n");
    let new = f.file("new", "new\n");
    veilfs(&[
        "passwd",
        "--passfile",
        s(&pw),
        "--new-passfile",
        s(&new),
        s(&dir),
    ])
    .fails_in_one_line(EXIT_BAD_CONFIG, "m_kib = 1024 is outside the allowed range");
    veilfs(&["info", s(&dir)]).fails_in_one_line(EXIT_BAD_CONFIG, "m_kib = 1024");
}

/// Issue 13, finding 5: every slot is within range, but too many slots, or
/// too much Argon2 work in total, would make one unlock take hours. Both
/// are refused with a clear message before any KDF runs (the old code ran
/// every slot: about 22 s and 1 GiB per maximal slot before "wrong
/// password").
#[test]
fn kdf_slot_count_and_total_cost_are_capped_before_argon2_runs() {
    let f = Fixture::new();
    let dir = f.path("vault");
    f.init_password(&dir, "pw", &[]);
    let conf = dir.join(vault::CONFIG_FILE);
    let original: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&conf).unwrap()).unwrap();
    let slot = original["key_slots"][0].clone();
    let wrong = f.file("wrong", "not the password\n");
    let check = |slots: Vec<serde_json::Value>, needle: &str| {
        let mut edited = original.clone();
        edited["key_slots"] = serde_json::Value::Array(slots);
        fs::write(&conf, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
        let started = std::time::Instant::now();
        veilfs(&["info", s(&dir)]).fails_in_one_line(EXIT_BAD_CONFIG, needle);
        veilfs(&[
            "passwd",
            "--passfile",
            s(&wrong),
            "--new-passfile",
            s(&wrong),
            s(&dir),
        ])
        .fails_in_one_line(EXIT_BAD_CONFIG, needle);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the refusal must come before Argon2 runs, took {:?}",
            started.elapsed()
        );
    };
    // Many cheap slots: 5 (the old code accepted ~4,300 in a 1 MiB config).
    check(
        vec![slot.clone(); vault::MAX_KEY_SLOTS + 1],
        "it holds 5 password slot(s)",
    );
    // Few slots, each within range, together too costly: 2 × (1 GiB, t = 20).
    let mut costly = slot.clone();
    costly["m_kib"] = (1024 * 1024_u32).into();
    costly["t"] = 20.into();
    check(
        vec![costly.clone(), costly],
        "it holds 2 password slot(s) costing 40 GiB x passes",
    );
    // One maximal slot is still allowed (it fails only on the password).
    let mut max = slot;
    max["m_kib"] = (1024 * 1024_u32).into();
    max["t"] = 20.into();
    let mut edited = original.clone();
    edited["key_slots"] = serde_json::Value::Array(vec![max]);
    fs::write(&conf, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    veilfs(&["info", s(&dir)]).ok();
}

/// Writes a backing file named `name` into backing dir `dir` (IV `iv`),
/// the way the FUSE layer would.
fn write_backing_file(
    v: &vault::UnlockedVault,
    dir: &Path,
    iv: &veilfs::names::DirIv,
    name: &[u8],
    plain: &[u8],
) {
    let names = v.name_cipher();
    let c = v.content_cipher();
    let l = v.layout();
    let header = FileHeader::generate(l);
    let mut backing = header.as_bytes().to_vec();
    let n = l.chunk_count(plain.len() as u64) as usize;
    for (i, chunk) in plain.chunks(l.chunk_size()).enumerate() {
        let mut out = vec![0u8; chunk.len() + CHUNK_OVERHEAD];
        c.seal_chunk(&header, i as u64, i == n - 1, chunk, &mut out);
        backing.extend_from_slice(&out);
    }
    let bn = names.backing_name(iv, name).unwrap();
    if let Some((record, full)) = bn.long_record() {
        fs::write(dir.join(record), full).unwrap();
    }
    fs::write(dir.join(bn.entry()), backing).unwrap();
}

fn read_backing_file(v: &vault::UnlockedVault, path: &Path) -> Vec<u8> {
    let c = v.content_cipher();
    let l = v.layout();
    let backing = fs::read(path).unwrap();
    let header = FileHeader::parse(&backing, l).unwrap();
    let size = l.plain_size(backing.len() as u64);
    let n = l.chunk_count(size);
    let mut plain = Vec::new();
    let mut buf = vec![0u8; l.chunk_size()];
    for i in 0..n {
        let start = l.chunk_cipher_start(i) as usize;
        let stop = (start + l.stored_chunk_len()).min(backing.len());
        match c
            .open_chunk(&header, i, i == n - 1, &backing[start..stop], &mut buf)
            .unwrap()
        {
            Opened::Data(k) => plain.extend_from_slice(&buf[..k]),
            Opened::Hole => plain.extend_from_slice(&buf),
        }
    }
    plain
}

#[test]
fn lost_config_is_recovered_from_the_key() {
    let f = Fixture::new();
    let dir = f.path("vault");
    let key = f.init_password(
        &dir,
        "pw",
        &["--chunk-size", "8192", "--long-name-threshold", "150"],
    );
    let v = vault::unlock_with_password(&dir, b"pw").unwrap();
    let names = v.name_cipher();
    let root = names.root_iv();
    let chat: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    write_backing_file(&v, &dir, &root, b"chat.db", &chat);
    // 80 bytes encode to 150 characters: stored as is with threshold 150.
    let regular = [b'r'; 80];
    write_backing_file(&v, &dir, &root, &regular, b"regular");
    // 100 bytes encode to 171 characters: a long name with threshold 150
    // (it would not be with the default 175).
    let long = [b'l'; 100];
    assert!(matches!(
        names.backing_name(&root, &long).unwrap(),
        BackingName::Long { .. }
    ));
    write_backing_file(&v, &dir, &root, &long, b"long");
    // A subdirectory with its IV and a file.
    let sub_name = names.backing_name(&root, b"WhatsApp").unwrap();
    let sub = dir.join(sub_name.entry());
    fs::create_dir(&sub).unwrap();
    let sub_iv = names.child_dir_iv(&root, b"WhatsApp");
    fs::write(sub.join(DIR_IV_FILE), sub_iv.0).unwrap();
    write_backing_file(&v, &sub, &sub_iv, b"msgstore.db.crypt14", &chat[..9000]);
    // Foreign sync-client files are ignored.
    fs::create_dir(dir.join(".stfolder")).unwrap();
    fs::write(dir.join("desktop.ini"), "x").unwrap();
    let chat_path = dir.join(names.backing_name(&root, b"chat.db").unwrap().entry());
    drop(v);

    fs::remove_file(dir.join(vault::CONFIG_FILE)).unwrap();
    veilfs(&["info", s(&dir)]).fails_in_one_line(1, "recover-config");

    // A wrong key is refused and writes nothing.
    let other = f.key_file("other", MasterKey::generate().display_digits().as_str());
    veilfs(&["recover-config", "--key-file", s(&other), s(&dir)])
        .fails_in_one_line(EXIT_WRONG_SECRET, "wrong key");
    assert!(!dir.join(vault::CONFIG_FILE).exists());

    let kf = f.key_file("key", &key);
    let run = veilfs(&["recover-config", "--key-file", s(&kf), s(&dir)]).ok();
    assert!(run.stdout.contains("chunk size: 8192"), "{}", run.stdout);
    assert!(
        run.stdout.contains("long-name threshold: 150"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("veilfs passwd"), "{}", run.stdout);

    let v = vault::unlock_with_key(&dir, MasterKey::parse(&key).unwrap()).unwrap();
    assert_eq!(v.config.chunk_size, 8192);
    assert_eq!(v.config.long_name_threshold, 150);
    assert!(v.config.key_slots.is_empty());
    assert_eq!(read_backing_file(&v, &chat_path), chat);
    let sub_file = sub.join(
        v.name_cipher()
            .backing_name(&sub_iv, b"msgstore.db.crypt14")
            .unwrap()
            .entry(),
    );
    assert_eq!(read_backing_file(&v, &sub_file), &chat[..9000]);

    // An existing config is not overwritten without --force.
    veilfs(&["recover-config", "--key-file", s(&kf), s(&dir)])
        .fails_in_one_line(1, "already exists");
    veilfs(&["recover-config", "--force", "--key-file", s(&kf), s(&dir)]).ok();
    assert!(dir.join(vault::CONFIG_REPLACED_FILE).exists());

    // And a password can be added back.
    let new = f.file("new", "pw again\n");
    let mut args = vec!["passwd", "--key-file", s(&kf), "--new-passfile", s(&new)];
    args.extend_from_slice(&FAST_KDF);
    args.push(s(&dir));
    veilfs(&args).ok();
    assert!(opens_with_password(&dir, "pw again"));
}

#[test]
fn version_and_help() {
    let run = veilfs(&["--version"]).ok();
    assert!(run.stdout.starts_with("veilfs "));
    let run = veilfs(&["--help"]).ok();
    for cmd in ["init", "info", "passwd", "recover-config"] {
        assert!(run.stdout.contains(cmd));
    }
}
