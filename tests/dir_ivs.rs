//! Directory IVs (docs/FORMAT.md §6), through a real mount: every new
//! directory gets an IV of its own, also after `mv X Y; mkdir X` and
//! `rmdir X; mkdir X` (security review, finding 2), and two devices that
//! create the same folder still merge without losing anything.

mod common;

use common::{backing_dir, names_of};

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestMount, fsck_json, problem_kinds};
use veilfs::names::{DirIv, EntryKind, NameCipher, classify_entry};

fn listing(p: &Path) -> BTreeSet<String> {
    fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn recreated_directories_get_new_ivs_and_moves_between_them_are_detected() {
    let mut m = TestMount::new();
    let names = names_of(&m);
    fs::create_dir(m.path("X")).unwrap();
    fs::write(m.path("X/a"), b"a").unwrap();
    fs::rename(m.path("X"), m.path("Y")).unwrap();
    fs::create_dir(m.path("X")).unwrap();
    fs::write(m.path("X/b"), b"b").unwrap();
    let (x, x_iv) = backing_dir(&m, &names, "X");
    let (y, y_iv) = backing_dir(&m, &names, "Y");
    assert_ne!(
        x_iv, y_iv,
        "mv X Y; mkdir X: the new X has an IV of its own"
    );

    fs::create_dir(m.path("Z")).unwrap();
    let (_, z_iv) = backing_dir(&m, &names, "Z");
    fs::remove_dir(m.path("Z")).unwrap();
    fs::create_dir(m.path("Z")).unwrap();
    let (_, z2_iv) = backing_dir(&m, &names, "Z");
    assert_ne!(z_iv, z2_iv, "rmdir Z; mkdir Z: a new IV");

    // The cloud moves X/b's backing file into Y.
    let b = names.backing_name(&x_iv, b"b").unwrap();
    fs::rename(x.join(b.entry()), y.join(b.entry())).unwrap();
    assert_eq!(listing(&m.path("Y")), set(&["a"]));
    assert!(fs::symlink_metadata(m.path("Y/b")).is_err());
    assert_eq!(fs::read(m.path("Y/a")).unwrap(), b"a");
    assert!(
        m.log_text().contains("skipped"),
        "the moved entry is reported: {}",
        m.log_text()
    );
    m.unmount();
    let (code, report) = fsck_json(&m, &[]);
    assert_ne!(code, 0, "{report}");
    assert!(
        problem_kinds(&report).contains(&"name_unauthentic".to_string()),
        "{report}"
    );
}

/// Copies every backing entry of `from` into `to` the way a sync client
/// merges two folders: an entry `to` already has, with other content, is
/// kept as a Syncthing conflict copy; `veilfs.diriv` included.
fn merge_like_syncthing(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let marker = "sync-conflict-20261126-101500-BBBBBBB";
        let dest = if !to.join(&name).exists() {
            to.join(&name)
        } else if fs::read(to.join(&name)).ok() == fs::read(e.path()).ok() {
            continue;
        } else if let Some(stem) = name.strip_suffix(".diriv") {
            to.join(format!("{stem}.{marker}.diriv"))
        } else {
            to.join(format!("{name}.{marker}"))
        };
        copy_as_is(&e.path(), &dest);
    }
}

/// `cp -a`: what a sync client's copy keeps (modes, times, xattrs).
fn copy_as_is(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// A vault (unmounted) and a copy of it as a second device's CIPHERDIR:
/// the mount, its name cipher, device A's and device B's folders.
fn two_devices() -> (TestMount, NameCipher, PathBuf, PathBuf) {
    let mut m = TestMount::new();
    m.unmount();
    let names = names_of(&m);
    let device_a = m.cipher.clone();
    let device_b = m.tmp.path().join("cipher-b");
    copy_as_is(&device_a, &device_b);
    (m, names, device_a, device_b)
}

#[test]
fn two_devices_creating_the_same_folder_still_merge() {
    let (mut m, names, device_a, device_b) = two_devices();
    // Each device creates "chat" before either syncs.
    m.mount();
    fs::create_dir(m.path("chat")).unwrap();
    fs::write(m.path("chat/a"), b"A").unwrap();
    fs::write(m.path("chat/same"), b"from A").unwrap();
    fs::create_dir(m.path("chat/sub")).unwrap();
    fs::write(m.path("chat/sub/d"), b"D").unwrap();
    m.unmount();
    m.cipher = device_b.clone();
    m.mount();
    fs::create_dir(m.path("chat")).unwrap();
    fs::write(m.path("chat/b"), b"B").unwrap();
    fs::write(m.path("chat/same"), b"from B").unwrap();
    fs::create_dir(m.path("chat/sub")).unwrap();
    fs::write(m.path("chat/sub/c"), b"C").unwrap();
    let (chat_b, iv_b) = backing_dir(&m, &names, "chat");
    m.unmount();
    m.cipher = device_a.clone();
    let (chat_a, iv_a) = backing_dir(&m, &names, "chat");
    assert_eq!(
        chat_a.file_name(),
        chat_b.file_name(),
        "the same backing folder"
    );
    assert_ne!(iv_a, iv_b);
    assert!(veilfs::names::same_birth(&iv_a, &iv_b));
    merge_like_syncthing(&chat_b, &chat_a);

    let (code, report) = fsck_json(&m, &[]);
    assert_eq!(code, 0, "the merged vault is clean: {report}");

    let check = |m: &TestMount| {
        assert_eq!(fs::read(m.path("chat/a")).unwrap(), b"A");
        assert_eq!(fs::read(m.path("chat/b")).unwrap(), b"B");
        assert_eq!(fs::read(m.path("chat/same")).unwrap(), b"from A");
        assert_eq!(fs::read(m.path("chat/same (conflict)")).unwrap(), b"from B");
        assert_eq!(fs::read(m.path("chat/sub/d")).unwrap(), b"D");
    };
    // Read-only: shown, CIPHERDIR unchanged; the two "sub" folders apart.
    let before = listing(&chat_a);
    m.extra_args = vec!["--ro".into()];
    m.mount();
    assert_eq!(
        listing(&m.path("chat")),
        set(&["a", "b", "same", "same (conflict)", "sub", "sub (conflict)"])
    );
    check(&m);
    assert_eq!(fs::read(m.path("chat/sub (conflict)/c")).unwrap(), b"C");
    m.unmount();
    assert_eq!(listing(&chat_a), before);
    // Writable: renamed to ordinary names under the folder's own IV, and
    // the two "sub" folders (created on both devices too) merged.
    m.extra_args.clear();
    m.mount();
    assert_eq!(
        listing(&m.path("chat")),
        set(&["a", "b", "same", "same (conflict)", "sub"])
    );
    check(&m);
    assert_eq!(listing(&m.path("chat/sub")), set(&["c", "d"]));
    assert_eq!(fs::read(m.path("chat/sub/c")).unwrap(), b"C");
    let (sub_a, sub_iv) = backing_dir(&m, &names, "chat/sub");
    for name in listing(&sub_a) {
        match classify_entry(&name) {
            EntryKind::Regular(e) => {
                names.decrypt_name(&sub_iv, e).unwrap();
            }
            EntryKind::Metadata => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    for name in listing(&chat_a) {
        match classify_entry(&name) {
            EntryKind::Regular(e) => {
                names.decrypt_name(&iv_a, e).unwrap();
            }
            EntryKind::Metadata => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(!m.log_text().contains("WARN"), "{}", m.log_text());
    // Lookups by name now work without a listing, and the folder can go.
    m.unmount();
    m.mount();
    assert_eq!(fs::read(m.path("chat/b")).unwrap(), b"B");
    for f in ["a", "b", "same", "same (conflict)", "sub/c", "sub/d"] {
        fs::remove_file(m.path(&format!("chat/{f}"))).unwrap();
    }
    fs::remove_dir(m.path("chat/sub")).unwrap();
    fs::remove_dir(m.path("chat")).unwrap();
    assert!(!chat_a.exists());
}

/// The sync client may make the *mounted* device's `veilfs.diriv` the
/// conflict copy and put the other device's in its place while the mount
/// has the old IV in memory: the mount follows the file, so every device
/// converges on one IV (no renaming back and forth).
#[test]
fn a_live_mount_follows_a_swapped_dir_iv() {
    let (mut m, names, device_a, device_b) = two_devices();
    m.cipher = device_b.clone();
    m.mount();
    fs::create_dir(m.path("chat")).unwrap();
    fs::write(m.path("chat/b"), b"B").unwrap();
    let (chat_b, iv_b) = backing_dir(&m, &names, "chat");
    m.unmount();
    m.cipher = device_a.clone();
    m.mount();
    fs::create_dir(m.path("chat")).unwrap();
    fs::write(m.path("chat/a"), b"A").unwrap();
    assert_eq!(listing(&m.path("chat")), set(&["a"]));
    let (chat_a, iv_a) = backing_dir(&m, &names, "chat");
    // Syncthing, with the mount live: B's IV wins, A's becomes the copy.
    fs::rename(
        chat_a.join("veilfs.diriv"),
        chat_a.join("veilfs.sync-conflict-20261126-101500-AAAAAAA.diriv"),
    )
    .unwrap();
    for e in fs::read_dir(&chat_b).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), chat_a.join(e.file_name())).unwrap();
    }
    assert_eq!(listing(&m.path("chat")), set(&["a", "b"]));
    assert_eq!(fs::read(m.path("chat/a")).unwrap(), b"A");
    assert_eq!(fs::read(m.path("chat/b")).unwrap(), b"B");
    // Everything is now named under B's IV, the one in veilfs.diriv.
    let on_disk = DirIv::from_slice(&fs::read(chat_a.join("veilfs.diriv")).unwrap()).unwrap();
    assert_eq!(on_disk, iv_b);
    assert_ne!(iv_a, iv_b);
    for name in listing(&chat_a) {
        match classify_entry(&name) {
            EntryKind::Regular(e) => {
                names.decrypt_name(&iv_b, e).unwrap();
            }
            EntryKind::Metadata => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    // New entries use it too.
    fs::write(m.path("chat/c"), b"C").unwrap();
    assert!(
        chat_a
            .join(names.backing_name(&iv_b, b"c").unwrap().entry())
            .exists()
    );
}
