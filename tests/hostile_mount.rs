//! Attacks from issue 13 (an independent security review) run against a
//! real FUSE mount: a hostile cloud or local user changes CIPHERDIR while
//! it is mounted. Each test mounts its own vault and unmounts it on drop.

mod common;

use std::fs;

use common::TestMount;

/// Finding 8: the process that holds the key (here the foreground mount)
/// has core dumps disabled, so a crash never writes the key to disk.
#[test]
fn mount_process_has_core_dumps_disabled() {
    let m = TestMount::new();
    let limits = fs::read_to_string(format!("/proc/{}/limits", m.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        fields[4..6],
        ["0", "0"],
        "soft and hard core limits must be 0: {core}"
    );
}

/// The one backing regular file below `dir` other than metadata.
fn only_backing_file(dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.ends_with("veilfs.diriv"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn only_backing_dir(dir: &std::path::Path) -> std::path::PathBuf {
    let dirs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// Finding 9: a hostile cloud can trigger integrity warnings at will. They
/// name the file by inode number and backing name, never by its plaintext
/// path (which appears only at debug level).
#[test]
fn integrity_warnings_do_not_log_plaintext_paths() {
    use std::os::unix::fs::MetadataExt;
    let mut m = TestMount::new();
    fs::create_dir(m.path("TopSecretFolder")).unwrap();
    fs::write(
        m.path("TopSecretFolder/PrivateDiary.txt"),
        vec![7u8; 10_000],
    )
    .unwrap();
    let ino = fs::metadata(m.path("TopSecretFolder/PrivateDiary.txt"))
        .unwrap()
        .ino();
    m.unmount();
    let backing = only_backing_file(&only_backing_dir(&m.cipher));
    let mut bytes = fs::read(&backing).unwrap();
    bytes[100] ^= 1;
    fs::write(&backing, bytes).unwrap();
    m.mount();
    let err = fs::read(m.path("TopSecretFolder/PrivateDiary.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let log = m.log_text();
    let entry = backing.file_name().unwrap().to_str().unwrap();
    assert!(
        log.contains(&format!("inode {ino} (backing name {entry})")),
        "the warning names inode and backing name:\n{log}"
    );
    assert!(
        !log.contains("TopSecretFolder") && !log.contains("PrivateDiary"),
        "a plaintext name reached the log:\n{log}"
    );
}
