//! Symlink targets bound to their directory and extended attribute values
//! bound to their entry, with padded attribute names (docs/FORMAT.md §7;
//! security review, findings 6 and 10), through a real mount. Attributes
//! and symlinks written before (version 1) still read.

mod common;

use common::{backing_dir, names_of};

use std::fs;
use std::path::{Path, PathBuf};

use common::TestMount;
use rustix::fs::XattrFlags;
use veilfs::names::{NameCipher, XATTR_ID_NAME};

/// Backing path of a plaintext path.
fn backing(m: &TestMount, names: &NameCipher, rel: &str) -> PathBuf {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let (bdir, iv) = backing_dir(m, names, dir);
    bdir.join(names.backing_name(&iv, name.as_bytes()).unwrap().entry())
}

fn get(p: &Path, name: &str) -> Result<Vec<u8>, rustix::io::Errno> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::getxattr(p, name, &mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}

fn set(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::setxattr(p, name, value, XattrFlags::empty()).unwrap();
}

fn backing_xattr_names(p: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::listxattr(p, &mut buf[..]).unwrap();
    buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

/// Symlink targets are not bound to their directory (docs/FORMAT.md §7):
/// a symlink renamed or hard-linked into another directory keeps its
/// inode and its target, as on ext4. (A target copied between symlinks is
/// therefore not detected; THREAT_MODEL.md §6 says so.)
#[test]
fn symlinks_move_across_directories_and_keep_their_target() {
    use std::os::unix::fs::MetadataExt;
    let m = TestMount::new();
    fs::create_dir(m.path("a")).unwrap();
    fs::create_dir(m.path("b")).unwrap();
    std::os::unix::fs::symlink("target-a", m.path("a/l")).unwrap();
    let ino = fs::symlink_metadata(m.path("a/l")).unwrap().ino();
    fs::rename(m.path("a/l"), m.path("b/moved")).unwrap();
    assert_eq!(
        fs::read_link(m.path("b/moved")).unwrap(),
        Path::new("target-a")
    );
    assert_eq!(
        fs::symlink_metadata(m.path("b/moved")).unwrap().ino(),
        ino,
        "a rename keeps the inode"
    );
    assert!(fs::symlink_metadata(m.path("a/l")).is_err());
    fs::hard_link(m.path("b/moved"), m.path("a/linked")).unwrap();
    assert_eq!(
        fs::read_link(m.path("a/linked")).unwrap(),
        Path::new("target-a")
    );
    // A whole directory moves with its symlinks.
    fs::rename(m.path("b"), m.path("a/b")).unwrap();
    assert_eq!(
        fs::read_link(m.path("a/b/moved")).unwrap(),
        Path::new("target-a")
    );
}

#[test]
fn xattr_value_copied_to_another_entry_is_refused() {
    let m = TestMount::new();
    let names = names_of(&m);
    fs::write(m.path("f1"), b"1").unwrap();
    fs::write(m.path("f2"), b"2").unwrap();
    set(&m.path("f1"), "user.comment", b"from f1");
    set(&m.path("f2"), "user.comment", b"from f2");
    assert_eq!(get(&m.path("f1"), "user.comment").unwrap(), b"from f1");

    // The cloud copies f1's value over f2's.
    let (b1, b2) = (backing(&m, &names, "f1"), backing(&m, &names, "f2"));
    let bname = names.encrypt_xattr_name(b"comment");
    let v1 = get(&b1, &bname).unwrap();
    set(&b2, &bname, &v1);
    assert_eq!(
        get(&m.path("f2"), "user.comment"),
        Err(rustix::io::Errno::IO)
    );
    // A hard link shares the inode, its ID and its attributes.
    fs::hard_link(m.path("f1"), m.path("f1-link")).unwrap();
    fs::rename(m.path("f1-link"), m.path("f1-renamed")).unwrap();
    assert_eq!(
        get(&m.path("f1-renamed"), "user.comment").unwrap(),
        b"from f1"
    );
}

/// Finding 10: attribute names of 1 and 15 bytes have backing names of one
/// length (before, the backing name showed the exact length).
#[test]
fn xattr_names_are_padded() {
    let m = TestMount::new();
    let names = names_of(&m);
    fs::write(m.path("f1"), b"1").unwrap();
    set(&m.path("f1"), "user.a", b"x");
    set(&m.path("f1"), "user.abcdefghijklmno", b"y");
    let lens: Vec<usize> = backing_xattr_names(&backing(&m, &names, "f1"))
        .iter()
        .filter(|n| n.as_str() != XATTR_ID_NAME)
        .map(|n| n.len())
        .collect();
    assert_eq!(lens.len(), 2, "a, abcdefghijklmno");
    assert!(lens.iter().all(|&l| l == lens[0]), "{lens:?}");
    let mut listed = backing_xattr_names(&m.path("f1"));
    listed.sort();
    assert_eq!(listed, ["user.a", "user.abcdefghijklmno"]);
    assert_eq!(get(&m.path("f1"), "user.a").unwrap(), b"x");
}

#[test]
fn attributes_and_symlinks_of_the_first_version_still_read() {
    let m = TestMount::new();
    let names = names_of(&m);
    fs::write(m.path("f"), b"f").unwrap();
    std::os::unix::fs::symlink("new", m.path("l")).unwrap();
    // Written as before version 2: unpadded name, value bound to the name
    // only, no entry ID; a symlink target with the constant AD.
    let bf = backing(&m, &names, "f");
    let old_name = names.encrypt_xattr_name_v1(b"note");
    set(
        &bf,
        &old_name,
        &names.encrypt_xattr_value_v1(&old_name, b"old value"),
    );
    let bl = backing(&m, &names, "l");
    fs::remove_file(&bl).unwrap();
    std::os::unix::fs::symlink(names.encrypt_symlink_target_v1(b"old target"), &bl).unwrap();

    assert_eq!(get(&m.path("f"), "user.note").unwrap(), b"old value");
    assert_eq!(backing_xattr_names(&m.path("f")), ["user.note"]);
    assert_eq!(fs::read_link(m.path("l")).unwrap(), Path::new("old target"));
    // Rewritten: the padded, bound form replaces the old one.
    set(&m.path("f"), "user.note", b"new value");
    assert_eq!(get(&m.path("f"), "user.note").unwrap(), b"new value");
    let backing_names = backing_xattr_names(&bf);
    assert!(!backing_names.contains(&old_name), "{backing_names:?}");
    assert!(backing_names.contains(&names.encrypt_xattr_name(b"note")));
    assert_eq!(backing_xattr_names(&m.path("f")), ["user.note"]);
    rustix::fs::removexattr(m.path("f"), "user.note").unwrap();
    assert_eq!(
        get(&m.path("f"), "user.note"),
        Err(rustix::io::Errno::NODATA)
    );
}
