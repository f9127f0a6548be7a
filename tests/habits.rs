//! Issue 14: the Linux habits users already have. Scriptable output
//! (`info --json`, `init --key-out`, `--passfile -`, `-q`), the man page and
//! completions, mount(8)/fstab, `--idle`, systemd units, `path` and
//! `export`.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, is_mounted, wait_until};

const FAST_KDF: [&str; 6] = [
    "--kdf-memory",
    "32768",
    "--kdf-time",
    "2",
    "--kdf-parallelism",
    "1",
];

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs veilfs with `stdin` as its standard input (nothing: /dev/null).
fn veilfs_in(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run veilfs");
    if let Some(input) = stdin {
        // veilfs may refuse before reading it.
        let _ = child.stdin.take().unwrap().write_all(input);
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn veilfs(args: &[&str]) -> Run {
    veilfs_in(args, None)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("veilfs-habits")
        .tempdir_in(common::test_root())
        .unwrap()
}

/// A password vault (password "pw") in `dir/cipher`; returns its path.
fn password_vault(dir: &Path) -> PathBuf {
    let cipher = dir.join("cipher");
    let mut args = vec!["init", "-q", "--passfile", "-"];
    args.extend_from_slice(&FAST_KDF);
    args.push(s(&cipher));
    veilfs_in(&args, Some(b"pw\n")).ok();
    cipher
}

/// A key-only vault in `dir/cipher` with its key in `dir/key`.
fn key_vault(dir: &Path) -> (PathBuf, PathBuf) {
    let cipher = dir.join("cipher");
    let key = dir.join("key");
    veilfs(&["init", "-q", "--key-only", "--key-out", s(&key), s(&cipher)]).ok();
    (cipher, key)
}

/// Unmounts `mnt` when dropped, even when the test failed.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        common::unmount_and_reap(&self.0, None, Duration::from_secs(5));
        // A background daemon exits once unmounted.
        wait_until(Duration::from_secs(5), || !is_mounted(&self.0));
    }
}

// ---- bugs ---------------------------------------------------------------

#[test]
fn non_ascii_mount_point_is_recognised() {
    let t = tmp();
    let (cipher, key) = key_vault(t.path());
    let mnt = t.path().join("Chats").join("Müller");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    veilfs(&["mount", "--key-file", s(&key), s(&cipher), s(&mnt)]).ok();
    assert!(is_mounted(&mnt));
    fs::write(mnt.join("a"), "x").unwrap();
    // The already-mounted check sees it.
    veilfs(&["mount", "--key-file", s(&key), s(&cipher), s(&mnt)])
        .fails(1, "already a mount point");
    // And `veilfs unmount` finds it.
    veilfs(&["unmount", s(&mnt)]).ok();
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&mnt)));
    veilfs(&["unmount", s(&mnt)]).fails(1, "not mounted");
}

// ---- scriptable output ------------------------------------------------

#[test]
fn info_json_has_the_documented_fields() {
    let t = tmp();
    let cipher = password_vault(t.path());
    let run = veilfs(&["info", "--json", s(&cipher)]).ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("info --json is JSON");
    assert_eq!(v["vault"], s(&cipher));
    assert_eq!(v["format"], "veilfs");
    assert_eq!(v["version"], 1);
    assert_eq!(v["cipher"], "AES-256-GCM-SIV");
    assert_eq!(v["chunk_size"], 4096);
    assert_eq!(v["long_name_threshold"], 175);
    assert!(v["feature_flags"].is_array());
    assert!(v["created"].as_str().unwrap().ends_with('Z'));
    assert!(!v["key_id"].as_str().unwrap().is_empty());
    assert_eq!(v["has_password"], true);
    let slot = &v["password_slots"][0];
    assert_eq!(slot["kdf"], "argon2id");
    assert_eq!(slot["m_kib"], 32768);
    assert_eq!(slot["t"], 2);
    assert_eq!(slot["p"], 1);
    assert_eq!(slot["argon2_version"], 19);
    assert!(slot.get("salt").is_none() && slot.get("wrapped_key").is_none());
    assert!(v["backup"].is_null());
    // Every field README.md documents is present, and no other.
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for key in v.as_object().unwrap().keys() {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README.md does not document info --json field {key}"
        );
    }
}

#[test]
fn init_key_out_writes_a_private_new_file_and_never_overwrites() {
    let t = tmp();
    let cipher = t.path().join("cipher");
    let key = t.path().join("vault.key");
    let run = veilfs(&["init", "--key-only", "--key-out", s(&key), s(&cipher)]).ok();
    let text = fs::read_to_string(&key).unwrap();
    let digits = text.trim();
    assert_eq!(digits.len(), 79, "{text:?}");
    assert!(
        !run.stdout.contains(digits),
        "the key was shown:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains(s(&key)));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The file opens the vault.
    veilfs(&["ls", "--key-file", s(&key), s(&cipher)]).ok();

    // An existing file is never replaced, and no vault is created.
    let other = t.path().join("other");
    veilfs(&["init", "--key-only", "--key-out", s(&key), s(&other)]).fails(2, "already exists");
    assert_eq!(fs::read_to_string(&key).unwrap(), text);
    assert!(!other.join("veilfs.conf").exists());
}

#[test]
fn passfile_dash_reads_stdin_everywhere() {
    let t = tmp();
    let cipher = password_vault(t.path());
    veilfs_in(&["ls", "--passfile", "-", s(&cipher)], Some(b"pw\n")).ok();
    veilfs_in(&["ls", "--passfile", "-", s(&cipher)], Some(b"wrong\n")).fails(3, "");
    // passwd: the new password on stdin, the old one in a file.
    let old = t.path().join("old");
    fs::write(&old, "pw\n").unwrap();
    let mut args = vec!["passwd", "-q", "--passfile", s(&old), "--new-passfile", "-"];
    args.extend_from_slice(&FAST_KDF);
    args.push(s(&cipher));
    veilfs_in(&args, Some(b"new\n")).ok();
    veilfs_in(&["ls", "--passfile", "-", s(&cipher)], Some(b"new\n")).ok();
    // Both from stdin cannot work: said before anything is read.
    veilfs_in(
        &[
            "passwd",
            "--passfile",
            "-",
            "--new-passfile",
            "-",
            s(&cipher),
        ],
        Some(b"new\nnewer\n"),
    )
    .fails(2, "only one secret");
    // A key on stdin.
    let (kc, key) = key_vault(&t.path().join("k").tap_mkdir());
    let digits = fs::read(&key).unwrap();
    veilfs_in(&["ls", "--key-file", "-", s(&kc)], Some(&digits)).ok();
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn quiet_silences_status_lines_but_not_data() {
    let t = tmp();
    let cipher = t.path().join("cipher");
    // init -q prints the key alone.
    let run = veilfs(&["init", "-q", "--key-only", s(&cipher)]).ok();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert_eq!(run.stdout.trim().len(), 79);
    assert!(run.stderr.is_empty());
    let key = t.path().join("key");
    fs::write(&key, &run.stdout).unwrap();
    // Status-only commands print nothing.
    let pw = t.path().join("pw");
    fs::write(&pw, "pw\n").unwrap();
    let mut args = vec!["passwd", "--key-file", s(&key), "--new-passfile", s(&pw)];
    args.extend_from_slice(&FAST_KDF);
    args.push(s(&cipher));
    let loud = veilfs(&args).ok();
    assert!(!loud.stdout.is_empty());
    args.insert(1, "--quiet");
    let quiet = veilfs(&args).ok();
    assert_eq!(quiet.stdout, "");
    assert_eq!(quiet.stderr, "");
    let fsck = veilfs(&["fsck", "-q", "--key-file", s(&key), s(&cipher)]).ok();
    assert_eq!(fsck.stdout, "");
    // Data asked for still comes out.
    let info = veilfs(&["-q", "info", s(&cipher)]).ok();
    assert!(info.stdout.contains("chunk size"));
    // Every subcommand takes -q.
    let help = veilfs(&["--help"]).ok();
    for sub in subcommands(&help.stdout) {
        let h = veilfs(&[&sub, "--help"]).ok();
        assert!(h.stdout.contains("-q, --quiet"), "{sub} has no -q");
    }
}

/// The subcommand names `veilfs --help` lists.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

// ---- man page and completions -----------------------------------------

#[test]
fn man_page_names_every_subcommand() {
    let man = veilfs(&["man"]).ok();
    assert!(man.stdout.contains(".TH veilfs 1"));
    let help = veilfs(&["--help"]).ok();
    let subs = subcommands(&help.stdout);
    assert!(subs.len() >= 11, "{subs:?}");
    for sub in &subs {
        assert!(
            man.stdout
                .contains(&format!(".SH \"VEILFS {}\"", sub.to_uppercase())),
            "the man page has no section for {sub}"
        );
    }
    assert!(man.stdout.contains("EXIT STATUS"));
    // man(1) renders it without warnings, where man is installed.
    if common::have("man") {
        let t = tmp();
        let page = t.path().join("veilfs.1");
        fs::write(&page, &man.stdout).unwrap();
        let out = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_STDERR", "1")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("VEILFS MOUNT"));
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let help = veilfs(&["--help"]).ok();
    let subs = subcommands(&help.stdout);
    for shell in ["bash", "zsh", "fish"] {
        let run = veilfs(&["completions", shell]).ok();
        for sub in &subs {
            assert!(run.stdout.contains(sub.as_str()), "{shell}: no {sub}");
        }
        assert!(run.stdout.contains("passfile"), "{shell}: no --passfile");
    }
    // bash accepts the script.
    if common::have("bash") {
        let run = veilfs(&["completions", "bash"]).ok();
        let t = tmp();
        let f = t.path().join("veilfs.bash");
        fs::write(&f, run.stdout).unwrap();
        let st = Command::new("bash")
            .arg("-c")
            .arg(format!(". {} && complete -p veilfs", s(&f)))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    veilfs(&["completions", "tcsh"]).fails(2, "invalid value");
}
