//! `veilfs rekey` (issue 16): every file, name, symlink, attribute and
//! hard link re-encrypted under a new key with nothing of the old
//! generation left, the old secrets revoked, and crash safety: SIGKILL at
//! random points, then `--resume`, through real mounts.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, FAST_KDF, Rng, TestMount, env_num, wait_until};
use sha2::{Digest, Sha256};

/// Runs `cmd` and SIGKILLs it after `delay` unless it finished first:
/// how long it took if it finished (it must have succeeded), None if it
/// was killed.
fn finish_or_kill(cmd: &mut Command, delay: Duration, what: &str) -> Option<Duration> {
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut status = None;
    wait_until(delay, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(st) = status else {
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        return None;
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        st.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(start.elapsed())
}

fn veilfs(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(paths)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", p.display()));
}

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Everything a user sees below `root` (the root itself excluded, whose
/// times a rekey may change): type, mode, size, mtime, content hash or
/// symlink target, attributes, and which paths are hard links of one
/// another.
fn manifest(root: &Path) -> BTreeMap<String, String> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, String>,
        inos: &mut HashMap<u64, String>,
    ) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let body = if ft.is_file() {
                hex(&Sha256::digest(fs::read(&p).unwrap()))
            } else if ft.is_symlink() {
                let t = fs::read_link(&p).unwrap();
                let t = t.to_string_lossy();
                format!("{} bytes {}", t.len(), hex(&Sha256::digest(t.as_bytes())))
            } else {
                String::new()
            };
            let mut attrs = Vec::new();
            if !ft.is_symlink() {
                let mut list = vec![0u8; 65536];
                let n = rustix::fs::llistxattr(&p, &mut list[..]).unwrap_or(0);
                for name in list[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
                    let name = String::from_utf8_lossy(name).into_owned();
                    let mut v = vec![0u8; 65536];
                    let k = rustix::fs::lgetxattr(&p, name.as_str(), &mut v[..]).unwrap();
                    attrs.push(format!("{name}={}", hex(&v[..k])));
                }
                attrs.sort();
            }
            let link = if !ft.is_dir() && md.nlink() > 1 {
                inos.entry(md.ino()).or_insert_with(|| rel.clone()).clone()
            } else {
                String::new()
            };
            let mtime = format!("{}.{}", md.mtime(), md.mtime_nsec());
            // A directory's size is the backing directory's (its encrypted
            // names are longer): not part of what a user sees.
            let size = if ft.is_dir() { 0 } else { md.len() };
            out.insert(
                rel,
                format!(
                    "type={:?} mode={:o} size={} mtime={mtime} nlink={} link={link} body={body} xattrs={attrs:?}",
                    ft,
                    md.permissions().mode(),
                    size,
                    md.nlink()
                ),
            );
            if ft.is_dir() {
                walk(root, &p, out, inos);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, &mut HashMap::new());
    let mut attrs = Vec::new();
    let mut list = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(root, &mut list[..]).unwrap_or(0);
    for name in list[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut v = vec![0u8; 65536];
        let k = rustix::fs::lgetxattr(root, name.as_str(), &mut v[..]).unwrap();
        attrs.push(format!("{name}={}", hex(&v[..k])));
    }
    out.insert("/".into(), format!("root xattrs={attrs:?}"));
    out
}

/// Asserts two manifests are equal, showing only the entries that differ.
fn assert_same(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>, what: &str) {
    let mut diff = Vec::new();
    for k in before.keys().chain(after.keys()).collect::<BTreeSet<_>>() {
        if before.get(k) != after.get(k) {
            diff.push(format!(
                "{k}:\n  before {:?}\n  after  {:?}",
                before.get(k),
                after.get(k)
            ));
        }
    }
    assert!(diff.is_empty(), "{what}:\n{}", diff.join("\n"));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every backing path below CIPHERDIR, relative (veilfs.conf left out: its
/// name is fixed).
fn backing_names(cipher: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(cipher, cipher, &mut out);
    out.remove("veilfs.conf");
    out
}

/// A tree with everything a rekey must carry over.
fn populate(m: &TestMount, rng: &mut Rng, small_files: usize) {
    let p = |r: &str| m.path(r);
    fs::create_dir_all(p("chats/2026/media")).unwrap();
    fs::create_dir_all(p("empty")).unwrap();
    let long_dir = "d".repeat(180);
    fs::create_dir_all(p(&format!("chats/{long_dir}"))).unwrap();
    fs::write(p(&format!("chats/{long_dir}/inside.txt")), b"in a long dir").unwrap();
    fs::write(p(&format!("chats/{}", "L".repeat(230))), b"long name").unwrap();
    fs::write(p("empty.db"), b"").unwrap();
    fs::write(
        p("chats/2026/media/video.bin"),
        rng.blob(1 << 20, (1 << 20) + 5000),
    )
    .unwrap();
    fs::write(p("chats/2026/three-chunks"), rng.blob(200_000, 200_000)).unwrap();
    for i in 0..small_files {
        let dir = ["chats", "chats/2026", "chats/2026/media", ""][i % 4];
        fs::write(p(&format!("{dir}/msg-{i:04}.txt")), rng.blob(0, 5000)).unwrap();
    }
    std::os::unix::fs::symlink("msg-0000.txt", p("chats/short-link")).unwrap();
    let long_target: String = (0..4095).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    std::os::unix::fs::symlink(&long_target, p("chats/2026/long-link")).unwrap();
    // A hard link of a symlink with a long target: its record goes along.
    fs::hard_link(p("chats/2026/long-link"), p("chats/long-link-again")).unwrap();
    fs::write(p("chats/linked.db"), rng.blob(70_000, 70_000)).unwrap();
    fs::hard_link(p("chats/linked.db"), p("chats/2026/linked-again.db")).unwrap();
    fs::hard_link(p("chats/linked.db"), p("linked-root.db")).unwrap();
    set_xattr(&p("chats/linked.db"), "user.origin", b"phone");
    set_xattr(
        &p("chats/2026/three-chunks"),
        "user.checksum",
        &[0u8, 1, 2, 255],
    );
    set_xattr(&p("chats"), "user.folder", b"all chats");
    set_xattr(&m.mnt, "user.vault", b"root attribute");
    fs::set_permissions(
        p("chats/2026/three-chunks"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(p("chats/2026"), fs::Permissions::from_mode(0o750)).unwrap();
    let fifo = CString::new(p("chats/pipe").into_os_string().into_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    set_mtime(&p("chats/2026/three-chunks"), 1_600_000_000, 123_456_789);
    set_mtime(&p("chats/short-link"), 1_500_000_000, 5);
    fs::write(p("chat.db"), b"the original").unwrap();
}

/// Adds a Syncthing conflict copy of `/chat.db` in the backing root (a
/// byte copy of its backing file, as the sync client makes it).
fn add_conflict_copy(cipher: &Path, before: &BTreeSet<String>) {
    let after = backing_names(cipher);
    let new: Vec<_> = after.difference(before).collect();
    assert_eq!(new.len(), 1, "one backing entry for chat.db: {new:?}");
    let name = new[0];
    fs::copy(
        cipher.join(name),
        cipher.join(format!("{name}.sync-conflict-20260101-120000-ABCDEFG")),
    )
    .unwrap();
}

/// Waits until the vault can be locked exclusively again (the daemon of
/// an unmounted vault has exited).
fn remount_with(m: &mut TestMount, keyfile: &Path) {
    m.keyfile = keyfile.to_path_buf();
    m.mount();
}

#[test]
fn rekey_reencrypts_everything_and_revokes_the_old_key_and_password() {
    let mut m = TestMount::new();
    let mut rng = Rng(0x5eed_1234);
    populate_without_chat(&m, &mut rng);
    let root_before_chat = backing_names(&m.cipher);
    fs::write(m.path("chat.db"), b"the original").unwrap();
    m.unmount();
    add_conflict_copy(&m.cipher, &root_before_chat);
    let dir = m.tmp.path().to_path_buf();
    let (pw1, pw2) = (dir.join("pw1"), dir.join("pw2"));
    fs::write(&pw1, "old password\n").unwrap();
    fs::write(&pw2, "new password\n").unwrap();
    let mut args = vec!["passwd", "--key-file"];
    let key = m.keyfile.to_string_lossy().into_owned();
    let pw1s = pw1.to_string_lossy().into_owned();
    args.extend([key.as_str(), "--new-passfile", pw1s.as_str()]);
    args.extend(FAST_KDF);
    let o = veilfs(&args, &[&m.cipher]);
    assert!(o.status.success(), "passwd: {}", text(&o));
    assert!(m.cipher.join("veilfs.conf.bak").exists());

    m.mount();
    let conflict_shown = fs::read_dir(&m.mnt)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("conflict"));
    assert!(
        conflict_shown,
        "the conflict copy is listed before the rekey"
    );
    let before = manifest(&m.mnt);
    // A mounted vault is refused.
    let o = veilfs(
        &["rekey", "--passfile", &pw1s, "--key-only", "-q"],
        &[&m.cipher],
    );
    assert!(
        !o.status.success(),
        "rekey of a mounted vault: {}",
        text(&o)
    );
    assert!(text(&o).contains("unmount"), "{}", text(&o));
    assert!(!m.cipher.join("veilfs.rekey").exists());
    m.unmount();
    let names_before = backing_names(&m.cipher);

    let newkey = dir.join("newkey");
    let o = veilfs(
        &[
            "rekey",
            "--passfile",
            &pw1s,
            "--new-passfile",
            &pw2.to_string_lossy(),
            "--key-out",
            &newkey.to_string_lossy(),
        ],
        &[&m.cipher],
    );
    assert!(o.status.success(), "rekey: {}", text(&o));
    assert!(
        text(&o).contains("needs at most"),
        "the space check is announced: {}",
        text(&o)
    );

    // Nothing of the old generation is left.
    let names_after = backing_names(&m.cipher);
    let kept: Vec<_> = names_before.intersection(&names_after).collect();
    assert!(
        kept.is_empty(),
        "backing names from before remain: {kept:?}"
    );
    for f in fs::read_dir(&m.cipher).unwrap() {
        let n = f.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !n.starts_with("veilfs.") || n == "veilfs.conf",
            "{n} left in CIPHERDIR"
        );
    }
    // The old secrets fail, the new ones open it.
    let ls = |a: &[&str]| veilfs(&[&["ls"], a].concat(), &[&m.cipher]);
    let o = ls(&["--key-file", &key]);
    assert!(!o.status.success(), "old key still opens: {}", text(&o));
    let o = ls(&["--passfile", &pw1s]);
    assert!(
        !o.status.success(),
        "old password still opens: {}",
        text(&o)
    );
    let o = ls(&["--passfile", &pw2.to_string_lossy()]);
    assert!(o.status.success(), "new password: {}", text(&o));
    let o = ls(&["--key-file", &newkey.to_string_lossy()]);
    assert!(o.status.success(), "new key: {}", text(&o));
    let o = veilfs(
        &["fsck", "--key-file", &newkey.to_string_lossy()],
        &[&m.cipher],
    );
    assert!(o.status.success(), "fsck after rekey: {}", text(&o));

    remount_with(&mut m, &newkey);
    let after = manifest(&m.mnt);
    assert_same(&before, &after, "the plaintext view changed");
    // The hard links stay writable (their link records are under the new
    // key) and stay one file.
    fs::write(m.path("linked-root.db"), b"rewritten").unwrap();
    assert_eq!(fs::read(m.path("chats/linked.db")).unwrap(), b"rewritten");
    m.unmount();
}

fn populate_without_chat(m: &TestMount, rng: &mut Rng) {
    populate(m, rng, 40);
    fs::remove_file(m.path("chat.db")).unwrap();
}

/// The key id of the key the config in CIPHERDIR is sealed for, as the
/// `key_id` field.
fn config_key_id(cipher: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(cipher.join("veilfs.conf")).unwrap()).unwrap();
    v["key_id"].as_str().unwrap().to_string()
}

fn key_id_of(keyfile: &Path) -> String {
    use base64::Engine;
    let k = veilfs::keys::MasterKey::parse(&fs::read_to_string(keyfile).unwrap()).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.key_id())
}

#[test]
fn rekey_killed_at_random_points_resumes_with_either_key() {
    let rounds = env_num("VEILFS_REKEY_KILLS", 50);
    let mut m = TestMount::new();
    let mut rng = Rng(0xdead_beef_0042 ^ rounds);
    populate(&m, &mut rng, 120);
    m.unmount();
    m.mount();
    let before = manifest(&m.mnt);
    m.unmount();
    let dir = m.tmp.path().to_path_buf();
    let mut current = m.keyfile.clone();
    let mut pending: Option<PathBuf> = None; // the key of a rekey under way
    // How long one whole rekey takes here: kill points are drawn within it.
    let mut span_ms = 400u64;
    let (mut killed, mut finished) = (0u64, 0u64);
    let mut round = 0u64;
    while killed < rounds {
        round += 1;
        assert!(
            round < rounds * 10,
            "too many rounds finished before the kill"
        );
        let in_progress = m.cipher.join("veilfs.rekey").exists();
        let mut cmd = Command::new(BIN);
        cmd.arg("rekey").arg("-q");
        let newkey = dir.join(format!("key-{round}"));
        if in_progress {
            // Either secret resumes it.
            let with = if round.is_multiple_of(2) {
                current.clone()
            } else {
                pending.clone().unwrap()
            };
            cmd.arg("--resume").arg("--key-file").arg(&with);
            // The mount refuses a half-rekeyed vault and says what to do.
            let o = veilfs(
                &["ls", "--key-file", &current.to_string_lossy()],
                &[&m.cipher],
            );
            assert!(!o.status.success());
            assert!(text(&o).contains("rekey --resume"), "{}", text(&o));
        } else {
            cmd.arg("--key-file")
                .arg(&current)
                .arg("--key-only")
                .arg("--key-out")
                .arg(&newkey);
        }
        cmd.arg(&m.cipher)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let delay = Duration::from_micros(rng.below(span_ms * 1000));
        if let Some(took) = finish_or_kill(&mut cmd, delay, &format!("round {round}: rekey")) {
            finished += 1;
            span_ms = span_ms.max(took.as_millis() as u64 + 20);
        } else {
            killed += 1;
        }
        if !in_progress && newkey.exists() && fs::metadata(&newkey).unwrap().len() > 0 {
            pending = Some(newkey.clone());
        }
        // Which key opens it now.
        if !m.cipher.join("veilfs.rekey").exists()
            && let Some(p) = &pending
            && config_key_id(&m.cipher) == key_id_of(p)
        {
            current = p.clone();
            pending = None;
        }
    }
    // Finish whatever is under way.
    if m.cipher.join("veilfs.rekey").exists() {
        let o = veilfs(
            &[
                "rekey",
                "--resume",
                "-q",
                "--key-file",
                &current.to_string_lossy(),
            ],
            &[&m.cipher],
        );
        assert!(o.status.success(), "final resume: {}", text(&o));
        let p = pending.take().unwrap();
        assert_eq!(config_key_id(&m.cipher), key_id_of(&p));
        current = p;
    }
    eprintln!("{killed} kills, {finished} rekeys ran to the end");
    let o = veilfs(
        &["fsck", "--key-file", &current.to_string_lossy()],
        &[&m.cipher],
    );
    assert!(o.status.success(), "fsck: {}", text(&o));
    remount_with(&mut m, &current);
    let after = manifest(&m.mnt);
    assert_same(&before, &after, "the plaintext view changed");
    m.unmount();
}

/// A plaintext folder with every kind of entry `encrypt` must carry over
/// (built directly on the disk, not through a mount).
fn plain_tree(root: &Path, rng: &mut Rng, files: usize) {
    let p = |r: &str| root.join(r);
    fs::create_dir_all(p("WhatsApp/Media/Images")).unwrap();
    fs::create_dir_all(p("WhatsApp/Databases")).unwrap();
    fs::create_dir_all(p("empty dir")).unwrap();
    fs::write(
        p("WhatsApp/Databases/msgstore.db"),
        rng.blob(300_000, 300_000),
    )
    .unwrap();
    fs::write(p(&"N".repeat(220)), b"long name").unwrap();
    for i in 0..files {
        let d = ["WhatsApp", "WhatsApp/Media/Images", ""][i % 3];
        fs::write(p(&format!("{d}/img-{i:04}.jpg")), rng.blob(0, 9000)).unwrap();
    }
    std::os::unix::fs::symlink("Databases/msgstore.db", p("WhatsApp/latest")).unwrap();
    let long_target: String = (0..4095).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    std::os::unix::fs::symlink(&long_target, p("long-link")).unwrap();
    fs::hard_link(p("long-link"), p("WhatsApp/long-link-again")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p("WhatsApp/outside")).unwrap();
    fs::hard_link(
        p("WhatsApp/Databases/msgstore.db"),
        p("WhatsApp/msgstore-link.db"),
    )
    .unwrap();
    set_xattr(
        &p("WhatsApp/Databases/msgstore.db"),
        "user.backup",
        b"2026-11-30",
    );
    set_xattr(&p("WhatsApp/Media"), "user.kind", b"media");
    fs::set_permissions(p("WhatsApp/Databases"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(p(&"N".repeat(220)), fs::Permissions::from_mode(0o640)).unwrap();
    let fifo = CString::new(p("pipe").into_os_string().into_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    set_mtime(&p("WhatsApp/Databases/msgstore.db"), 1_700_000_000, 42);
    // Directory times last: nothing is added to them after this.
    set_mtime(&p("WhatsApp/Media/Images"), 1_650_000_000, 7);
    set_mtime(&p("WhatsApp/Databases"), 1_650_000_001, 8);
}

/// A mount guard for a vault made by `encrypt` (not by TestMount::new).
fn mount_vault(cipher: &Path, key: &Path) -> TestMount {
    let tmp = tempfile::Builder::new()
        .prefix("veilfs-test")
        .tempdir_in(common::test_root())
        .unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut m = TestMount {
        log: tmp.path().join("mount.log"),
        cipher: cipher.to_path_buf(),
        mnt,
        keyfile: key.to_path_buf(),
        tmp,
        child: None,
        extra_args: Vec::new(),
        nofile: None,
    };
    m.mount();
    m
}

#[test]
fn encrypt_turns_a_folder_into_a_vault_with_everything_kept() {
    let tmp = tempfile::Builder::new()
        .prefix("veilfs-test")
        .tempdir_in(common::test_root())
        .unwrap();
    let plain = tmp.path().join("plain");
    let cipher = tmp.path().join("cipher");
    let key = tmp.path().join("key");
    fs::create_dir(&plain).unwrap();
    plain_tree(&plain, &mut Rng(77), 60);
    let mut before = manifest(&plain);
    let o = veilfs(
        &["encrypt", "--key-only", "--key-out", &key.to_string_lossy()],
        &[&plain, &cipher],
    );
    assert!(o.status.success(), "encrypt: {}", text(&o));
    assert!(!cipher.join("veilfs.encrypt").exists());
    assert!(!cipher.join("veilfs.encrypt.links").exists());
    assert_eq!(manifest(&plain), before, "encrypt changed its source");
    let o = veilfs(&["fsck", "--key-file", &key.to_string_lossy()], &[&cipher]);
    assert!(o.status.success(), "fsck: {}", text(&o));
    let mut m = mount_vault(&cipher, &key);
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(&plain)
        .arg(&m.mnt)
        .output()
        .unwrap();
    // diff reports the FIFO on both sides (it does not compare FIFOs).
    let out = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(
        out.lines().all(|l| l.contains("is a fifo while file")),
        "diff -r: {out}"
    );
    let mut after = manifest(&m.mnt);
    // The vault root is CIPHERDIR itself: its attributes are its own.
    before.remove("/");
    after.remove("/");
    assert_same(&before, &after, "the vault differs from the folder");
    m.unmount();
}

#[test]
fn encrypt_remove_plaintext_killed_at_random_points_never_loses_a_file() {
    let rounds = env_num("VEILFS_ENCRYPT_KILLS", 30);
    let tmp = tempfile::Builder::new()
        .prefix("veilfs-test")
        .tempdir_in(common::test_root())
        .unwrap();
    let mut rng = Rng(0xe4c_0001 ^ rounds);
    let mut span_ms = 150u64;
    let (mut killed, mut round, mut epoch) = (0u64, 0u64, 0u64);
    // Each epoch encrypts a fresh folder to the end, killed at random
    // points on the way; epochs go on until enough kills have landed.
    while killed < rounds {
        epoch += 1;
        let plain = tmp.path().join(format!("plain-{epoch}"));
        let cipher = tmp.path().join(format!("cipher-{epoch}"));
        let key = tmp.path().join(format!("key-{epoch}"));
        fs::create_dir(&plain).unwrap();
        plain_tree(&plain, &mut rng, 300);
        let mut before = manifest(&plain);
        // Plaintext of every regular file, to check each kill point.
        let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (rel, desc) in &before {
            if desc.contains("is_file: true") {
                contents.insert(rel.clone(), fs::read(plain.join(rel)).unwrap());
            }
        }
        let mut done = false;
        while !done {
            round += 1;
            let mut cmd = Command::new(BIN);
            cmd.arg("encrypt").arg("-q").arg("--remove-plaintext");
            let key_saved = fs::metadata(&key).is_ok_and(|m| m.len() > 0);
            if cipher.join("veilfs.conf").exists() && key_saved {
                cmd.arg("--resume").arg("--key-file").arg(&key);
            } else {
                // Killed before the vault existed with its key saved.
                let _ = fs::remove_file(&key);
                let _ = fs::remove_dir_all(&cipher);
                cmd.arg("--key-only").arg("--key-out").arg(&key);
            }
            cmd.arg(&plain)
                .arg(&cipher)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let delay = if killed < rounds {
                Duration::from_micros(rng.below(span_ms * 1000))
            } else {
                Duration::from_secs(120)
            };
            let what = format!("round {round}: encrypt");
            if let Some(took) = finish_or_kill(&mut cmd, delay, &what) {
                // Kill points within a typical whole run (an average, so
                // one slow run on a busy machine does not spread them out).
                span_ms = (span_ms + took.as_millis() as u64).div_ceil(2).max(20);
                done = !cipher.join("veilfs.encrypt").exists();
            } else {
                killed += 1;
                // Killed after the last step (the marker removed): done.
                done = cipher.join("veilfs.conf").exists()
                    && !cipher.join("veilfs.encrypt").exists()
                    && fs::read_dir(&plain).unwrap().next().is_none();
            }
            // No file is absent from both places: each one is intact in
            // the folder or readable from the vault (offline, with the
            // library: the CLI refuses a vault being filled).
            let vault_key = fs::read_to_string(&key)
                .ok()
                .and_then(|k| veilfs::keys::MasterKey::parse(&k).ok());
            let unlocked = vault_key.and_then(|k| veilfs::vault::unlock_with_key(&cipher, k).ok());
            for (rel, data) in &contents {
                if let Ok(d) = fs::read(plain.join(rel)) {
                    assert_eq!(&d, data, "round {round}: {rel} changed in the folder");
                    continue;
                }
                let v = unlocked
                    .as_ref()
                    .unwrap_or_else(|| panic!("round {round}: {rel} gone, no vault"));
                let (c, n) = (v.content_cipher(), v.name_cipher());
                let off = veilfs::offline::Offline::new(&cipher, &c, &n).unwrap();
                let mut got = Vec::new();
                off.cat(Path::new(&format!("/{rel}")), &mut got, false)
                    .unwrap_or_else(|e| panic!("round {round}: {rel} in neither place: {e}"));
                assert_eq!(&got, data, "round {round}: {rel} differs in the vault");
            }
        }
        assert_eq!(
            fs::read_dir(&plain).unwrap().count(),
            0,
            "plaintext left after --remove-plaintext"
        );
        let o = veilfs(&["fsck", "--key-file", &key.to_string_lossy()], &[&cipher]);
        assert!(o.status.success(), "fsck: {}", text(&o));
        let mut m = mount_vault(&cipher, &key);
        let mut after = manifest(&m.mnt);
        before.remove("/");
        after.remove("/");
        assert_same(
            &before,
            &after,
            &format!("epoch {epoch}: the vault differs from the folder it replaced"),
        );
        m.unmount();
    }
    eprintln!("{killed} kills in {round} rounds, {epoch} folders");
}

#[test]
fn half_rekeyed_vault_is_refused_until_resumed_with_either_key() {
    let mut m = TestMount::new();
    fs::write(m.path("a.txt"), b"kept").unwrap();
    m.unmount();
    // A rekey that has just begun (its state file written, nothing moved).
    let old = veilfs::keys::MasterKey::parse(&fs::read_to_string(&m.keyfile).unwrap()).unwrap();
    let new = veilfs::keys::MasterKey::generate();
    let config = veilfs::vault::seal_new_config(
        &new,
        veilfs::content::DEFAULT_CHUNK_SIZE,
        veilfs::names::DEFAULT_LONG_NAME_THRESHOLD,
        None,
        veilfs::vault::KdfParams::MINIMUM,
    )
    .unwrap();
    veilfs::rekey::begin(&m.cipher, &old, &new, config).unwrap();
    let newkey = m.tmp.path().join("newkey");
    fs::write(&newkey, new.display_digits().as_str()).unwrap();
    let k = m.keyfile.to_string_lossy().into_owned();
    let mnt = m.mnt.to_string_lossy().into_owned();
    for args in [
        vec!["mount", "--foreground", "--key-file", &k],
        vec!["fsck", "--key-file", &k],
        vec!["ls", "--key-file", &k],
        vec!["passwd", "--key-file", &k, "--new-passfile", &k],
        vec!["recover-config", "--force", "--key-file", &k],
    ] {
        let mut paths: Vec<&Path> = vec![&m.cipher];
        let mnt_path = Path::new(&mnt);
        if args[0] == "mount" {
            paths.push(mnt_path);
        }
        let o = veilfs(&args, &paths);
        assert!(
            !o.status.success(),
            "{} accepted a half-rekeyed vault",
            args[0]
        );
        assert!(
            text(&o).contains("rekey --resume"),
            "{} does not say what to do: {}",
            args[0],
            text(&o)
        );
    }
    assert!(!common::in_proc_mounts(&m.mnt));
    // A plain `rekey` does not start a second one.
    let o = veilfs(&["rekey", "--key-file", &k, "--key-only"], &[&m.cipher]);
    assert!(
        !o.status.success() && text(&o).contains("--resume"),
        "{}",
        text(&o)
    );
    // A wrong key is refused; the new key resumes it.
    let other = m.tmp.path().join("other");
    fs::write(
        &other,
        veilfs::keys::MasterKey::generate()
            .display_digits()
            .as_str(),
    )
    .unwrap();
    let o = veilfs(
        &["rekey", "--resume", "--key-file", &other.to_string_lossy()],
        &[&m.cipher],
    );
    assert!(!o.status.success(), "a wrong key resumed: {}", text(&o));
    let o = veilfs(
        &["rekey", "--resume", "--key-file", &newkey.to_string_lossy()],
        &[&m.cipher],
    );
    assert!(o.status.success(), "resume with the new key: {}", text(&o));
    assert!(!m.cipher.join("veilfs.rekey").exists());
    remount_with(&mut m, &newkey);
    assert_eq!(fs::read(m.path("a.txt")).unwrap(), b"kept");
    m.unmount();
}

#[test]
fn rekey_refuses_a_damaged_vault_before_changing_anything() {
    let mut m = TestMount::new();
    fs::write(m.path("a.txt"), b"kept").unwrap();
    m.unmount();
    // A backing name that looks encrypted but does not decrypt.
    fs::write(m.cipher.join("A".repeat(43)), b"junk").unwrap();
    let before = backing_names(&m.cipher);
    let newkey = m.tmp.path().join("newkey");
    let o = veilfs(
        &[
            "rekey",
            "--key-file",
            &m.keyfile.to_string_lossy(),
            "--key-only",
            "--key-out",
            &newkey.to_string_lossy(),
        ],
        &[&m.cipher],
    );
    assert!(
        !o.status.success(),
        "rekey of a damaged vault: {}",
        text(&o)
    );
    assert!(text(&o).contains("nothing was changed"), "{}", text(&o));
    assert!(text(&o).contains("fsck"), "{}", text(&o));
    assert_eq!(backing_names(&m.cipher), before);
    assert!(
        !newkey.exists(),
        "a key was written for a rekey that never began"
    );
}
