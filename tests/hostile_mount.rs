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
    // Give the mount a non-zero core limit to inherit (the soft limit is
    // often 0 already), so the test sees what the daemon itself sets.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_CORE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max.min(1 << 20);
        assert_eq!(libc::setrlimit(libc::RLIMIT_CORE, &lim), 0);
    }
    assert!(
        lim.rlim_max > 0,
        "the test needs a non-zero hard core limit"
    );
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

/// The one backing regular file in `dir` other than vault metadata.
fn only_backing_file(dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("veilfs."))
        })
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

/// Finding 7: a hostile local user replaces a vault file's backing entry
/// with a hard link to a foreign file. The mount must not write into it,
/// truncate it or vouch for it with a link of its own (the old code filled
/// an empty foreign file with the user's data and emptied a full one).
#[test]
fn planted_hard_link_is_never_written_truncated_or_linked() {
    use std::io::Write;
    let mut m = TestMount::new();
    fs::write(m.path("victim"), b"").unwrap();
    m.unmount();
    let backing = only_backing_file(&m.cipher);
    let foreign = m.tmp.path().join("foreign");
    fs::write(&foreign, b"").unwrap();
    fs::remove_file(&backing).unwrap();
    fs::hard_link(&foreign, &backing).unwrap();
    m.mount();
    let eperm = Some(libc::EPERM);
    let err = fs::write(m.path("victim"), b"the user's secret").unwrap_err();
    assert_eq!(err.raw_os_error(), eperm, "{err}");
    let err = fs::OpenOptions::new()
        .append(true)
        .open(m.path("victim"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), eperm, "{err}");
    assert_eq!(
        fs::read(&foreign).unwrap(),
        b"",
        "the foreign file was written"
    );
    // A full foreign file is not emptied (O_TRUNC, truncate(2)).
    fs::File::options()
        .write(true)
        .open(&foreign)
        .unwrap()
        .write_all(b"the planter's file")
        .unwrap();
    let err = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path("victim"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), eperm, "{err}");
    let path = std::ffi::CString::new(m.path("victim").as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::truncate(path.as_ptr(), 0) }, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), eperm);
    // Nor does a link through the mount make the planted link legitimate.
    let err = fs::hard_link(m.path("victim"), m.path("second")).unwrap_err();
    assert_eq!(err.raw_os_error(), eperm, "{err}");
    assert_eq!(fs::read(&foreign).unwrap(), b"the planter's file");
    assert!(
        m.log_text().contains("refusing to write or link"),
        "the refusal is logged with its reason:\n{}",
        m.log_text()
    );
}

/// Finding 7, the other side: hard links made through the mount stay
/// writable, also after a remount, through every name.
#[test]
fn hard_links_made_through_the_mount_stay_writable_after_remount() {
    use std::io::Write;
    let mut m = TestMount::new();
    fs::create_dir(m.path("sub")).unwrap();
    fs::write(m.path("a"), b"first").unwrap();
    fs::hard_link(m.path("a"), m.path("b")).unwrap();
    fs::hard_link(m.path("b"), m.path("sub/c")).unwrap();
    fs::write(m.path("b"), b"second").unwrap();
    m.unmount();
    m.mount();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.path("sub/c"))
        .unwrap();
    f.write_all(b"+third").unwrap();
    drop(f);
    fs::remove_file(m.path("a")).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path("b"))
        .unwrap()
        .write_all(b"fourth")
        .unwrap();
    assert_eq!(fs::read(m.path("sub/c")).unwrap(), b"fourth");
}

/// Finding 3 ("file ID poisoning", gocryptfs audit §2.2): the cloud gives
/// file B the header of file A, followed by zeros. A write that covers
/// whole chunks reads nothing, so the old code sealed the user's new data
/// under A's file ID (and A's chunks could then be swapped into B
/// unnoticed). The file is authenticated once before a write reuses its
/// header: here nothing authenticates, so the write fails with EIO.
#[test]
fn a_header_copied_from_another_file_is_not_reused_by_writes() {
    use std::io::Write;
    let mut m = TestMount::new();
    fs::write(m.path("a"), vec![1u8; 8192]).unwrap();
    m.unmount();
    let a_backing = only_backing_file(&m.cipher);
    m.mount();
    fs::write(m.path("b"), vec![2u8; 8192]).unwrap();
    m.unmount();
    let b_backing = fs::read_dir(&m.cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p != &a_backing
                && !p
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("veilfs.")
        })
        .unwrap();
    let a_bytes = fs::read(&a_backing).unwrap();
    let mut poisoned = vec![0u8; fs::metadata(&b_backing).unwrap().len() as usize];
    poisoned[..veilfs::content::HEADER_LEN]
        .copy_from_slice(&a_bytes[..veilfs::content::HEADER_LEN]);
    fs::write(&b_backing, &poisoned).unwrap();
    m.mount();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("b"))
        .unwrap();
    let res = f.write_all(&[3u8; 4096]).and_then(|()| f.sync_all());
    let err = res.expect_err("a write under a foreign header must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    drop(f);
    assert_eq!(
        fs::read(&b_backing).unwrap(),
        poisoned,
        "nothing was sealed"
    );
    // Files the mount wrote are still written as usual, whole chunks too.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("a"))
        .unwrap();
    f.write_all(&[4u8; 4096]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let mut want = vec![4u8; 4096];
    want.extend_from_slice(&[1u8; 4096]);
    assert_eq!(fs::read(m.path("a")).unwrap(), want);
}
