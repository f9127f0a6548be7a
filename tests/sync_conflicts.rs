//! What sync clients do to CIPHERDIR, simulated by hand through a real
//! mount: conflict copies in every client's naming (docs/FORMAT.md §8),
//! the clients' own files, long names, and small deltas. The real clients
//! are driven by tests/sync_syncthing.rs and tests/sync_rclone.rs.

mod common;

use common::{backing_dir, names_of};

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{TestMount, fsck_json, problem_kinds};
use veilfs::names::{BackingName, DirIv, EntryKind, NameCipher, classify_entry};

/// The backing name a conflict copy of `original` gets from a client that
/// adds `marker`: appended to a regular name, inserted before `.vln`.
fn copy_name(original: &BackingName, marker: &str) -> String {
    match original {
        BackingName::Regular(e) => format!("{e}{marker}"),
        BackingName::Long { entry, .. } => {
            format!("{}{marker}.vln", entry.strip_suffix(".vln").unwrap())
        }
    }
}

/// Turns the entry `scratch` (made through the mount) into a sync client's
/// conflict copy of `original`, both in plaintext directory `dir`, by
/// renaming its backing entry the way the client would. Returns the copy's
/// backing name.
fn plant(
    m: &TestMount,
    names: &NameCipher,
    dir: &str,
    scratch: &str,
    original: &str,
    marker: &str,
) -> String {
    let (bdir, iv) = backing_dir(m, names, dir);
    let from = names.backing_name(&iv, scratch.as_bytes()).unwrap();
    assert!(
        matches!(from, BackingName::Regular(_)),
        "scratch names are short"
    );
    let orig = names.backing_name(&iv, original.as_bytes()).unwrap();
    let to = copy_name(&orig, marker);
    fs::rename(bdir.join(from.entry()), bdir.join(&to)).unwrap();
    to
}

/// A sync client's conflict copy of the whole plaintext directory `rel`
/// (its backing directory copied, `veilfs.diriv` and all, under the
/// original's backing name plus `marker`). Returns the copy's path.
fn copy_dir_as_conflict(m: &TestMount, names: &NameCipher, rel: &str, marker: &str) -> PathBuf {
    let (parent_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let (parent, piv) = backing_dir(m, names, parent_rel);
    let orig = names.backing_name(&piv, name.as_bytes()).unwrap();
    let to = parent.join(copy_name(&orig, marker));
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(parent.join(orig.entry()))
        .arg(&to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a");
    to
}

fn listing(p: &Path) -> BTreeSet<String> {
    fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn backing_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Every backing entry of `dir` (not recursive) is a proper veilfs name or
/// metadata: no conflict copy is left.
fn assert_all_proper(dir: &Path, names: &NameCipher, iv: &DirIv) {
    for name in backing_names(dir) {
        match classify_entry(&name) {
            EntryKind::Regular(e) => {
                names
                    .decrypt_name(iv, e)
                    .unwrap_or_else(|err| panic!("{name}: {err}"));
            }
            EntryKind::Long(_) => {
                let full = fs::read_to_string(dir.join(format!("{name}.name"))).unwrap();
                names.decrypt_name(iv, &full).unwrap();
            }
            EntryKind::LongRecord | EntryKind::LongTargetRecord | EntryKind::Metadata => {}
            EntryKind::Foreign => panic!("foreign entry {name:?} left in {dir:?}"),
        }
    }
}

const DATED: &str = "2026-11-26";

/// (client, marker added to the backing name, plaintext display name of a
/// copy of `chat.db`).
fn client_cases() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "Dropbox",
            format!(" (conflicted copy {DATED})"),
            "chat (conflict 2026-11-26).db",
        ),
        (
            "Dropbox, shared folder",
            format!(" (Alice's conflicted copy {DATED})"),
            "chat (conflict Alice 2026-11-26).db",
        ),
        ("Google Drive", " (1)".into(), "chat (conflict 1).db"),
        (
            "OneDrive",
            "-LAPTOP-7Q2".into(),
            "chat (conflict LAPTOP-7Q2).db",
        ),
        (
            "Syncthing",
            ".sync-conflict-20261126-101500-ABCDEF7".into(),
            "chat (conflict 2026-11-26 101500 ABCDEF7).db",
        ),
        (
            "Nextcloud",
            " (conflicted copy 2026-11-26 101500)".into(),
            "chat (conflict 2026-11-26 101500).db",
        ),
        // Same tag as Nextcloud's, so it gets a counter (copies are
        // handled in byte order of their backing names: ' ' < '_').
        (
            "ownCloud < 2.5",
            "_conflict-20261126-101500".into(),
            "chat (conflict 2026-11-26 101500 #2).db",
        ),
    ]
}

#[test]
fn conflict_copies_of_every_client_are_renamed_and_readable() {
    let m = TestMount::new();
    let names = names_of(&m);
    fs::write(m.path("chat.db"), b"the original").unwrap();
    let cases = client_cases();
    for (i, (client, marker, _)) in cases.iter().enumerate() {
        let scratch = format!("scratch{i}");
        fs::write(m.path(&scratch), format!("version from {client}")).unwrap();
        plant(&m, &names, "", &scratch, "chat.db", marker);
    }
    let mut want: BTreeSet<String> = cases.iter().map(|c| c.2.to_string()).collect();
    want.insert("chat.db".into());
    assert_eq!(listing(&m.mnt), want);
    for (client, _, display) in &cases {
        assert_eq!(
            fs::read_to_string(m.path(display)).unwrap(),
            format!("version from {client}"),
            "{client}"
        );
    }
    assert_eq!(fs::read(m.path("chat.db")).unwrap(), b"the original");
    // Resolved in CIPHERDIR: only proper encrypted names are left, so every
    // other device sees the same names.
    assert_all_proper(&m.cipher, &names, &names.root_iv());
    // Ordinary files now: rename, write, delete.
    fs::rename(m.path(cases[0].2), m.path("chat-from-dropbox.db")).unwrap();
    fs::write(m.path(cases[2].2), b"edited").unwrap();
    assert_eq!(fs::read(m.path(cases[2].2)).unwrap(), b"edited");
    fs::remove_file(m.path(cases[3].2)).unwrap();
    assert!(listing(&m.mnt).contains("chat-from-dropbox.db"));
    assert!(!listing(&m.mnt).contains(cases[3].2));
    assert_eq!(fs::read(m.path("chat.db")).unwrap(), b"the original");
    // The renames happen once: a fresh mount lists the same names.
    let before = listing(&m.mnt);
    let mut m = m;
    m.unmount();
    m.mount();
    assert_eq!(listing(&m.mnt), before);
}

#[test]
fn conflict_copies_of_long_names_and_directories() {
    let m = TestMount::new();
    let names = names_of(&m);
    let long = format!("{}.sqlite", "é".repeat(120)); // 247 bytes, a long name
    fs::create_dir(m.path("photos")).unwrap();
    fs::write(m.path(&format!("photos/{long}")), b"original").unwrap();
    fs::write(m.path("photos/s1"), b"syncthing's").unwrap();
    fs::write(m.path("photos/s2"), b"drive's").unwrap();
    let a = plant(
        &m,
        &names,
        "photos",
        "s1",
        &long,
        ".sync-conflict-20261126-101500-ABCDEF7",
    );
    let b = plant(&m, &names, "photos", "s2", &long, " (1)");
    assert!(a.ends_with(".vln") && b.ends_with(".vln"), "{a} {b}");
    // A Dropbox conflict copy of a whole directory: a copy of the folder
    // (same veilfs.diriv) in which dog.jpg was kept while this device
    // deleted it.
    fs::create_dir(m.path("album")).unwrap();
    fs::write(m.path("album/cat.jpg"), b"meow").unwrap();
    fs::write(m.path("album/dog.jpg"), b"woof").unwrap();
    copy_dir_as_conflict(&m, &names, "album", " (conflicted copy 2026-11-26)");
    fs::remove_file(m.path("album/dog.jpg")).unwrap();

    let stem = "é".repeat(120);
    let got = listing(&m.path("photos"));
    let want: BTreeSet<String> = [
        long.clone(),
        format!("{stem} (conflict 2026-11-26 101500 ABCDEF7).sqlite"),
        format!("{stem} (conflict 1).sqlite"),
    ]
    .into_iter()
    .map(|n| {
        // Display names are cut to 255 bytes on a character boundary.
        if n.len() <= 255 {
            return n;
        }
        let (s, rest) = n.split_once(" (").unwrap();
        let keep = 255 - (rest.len() + 2);
        let mut cut = keep;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{} ({rest}", &s[..cut])
    })
    .collect();
    assert_eq!(got, want);
    for name in &got {
        assert!(name.len() <= 255);
        let data = fs::read(m.path(&format!("photos/{name}"))).unwrap();
        if name == &long {
            assert_eq!(data, b"original");
        } else if name.contains("ABCDEF7") {
            assert_eq!(data, b"syncthing's");
        } else {
            assert_eq!(data, b"drive's");
        }
    }
    let (pdir, piv) = backing_dir(&m, &names, "photos");
    assert_all_proper(&pdir, &names, &piv);

    assert_eq!(
        listing(&m.mnt),
        ["album", "album (conflict 2026-11-26)", "photos"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        fs::read(m.path("album (conflict 2026-11-26)/dog.jpg")).unwrap(),
        b"woof"
    );
    assert_eq!(fs::read(m.path("album/cat.jpg")).unwrap(), b"meow");
    assert_all_proper(&m.cipher, &names, &names.root_iv());
    // The renamed directory works like any other.
    fs::write(m.path("album (conflict 2026-11-26)/new.jpg"), b"new").unwrap();
    fs::rename(m.path("album (conflict 2026-11-26)"), m.path("album-b")).unwrap();
    assert_eq!(fs::read(m.path("album-b/new.jpg")).unwrap(), b"new");
}

#[test]
fn read_only_mount_shows_copies_without_touching_cipherdir() {
    let mut m = TestMount::new();
    let names = names_of(&m);
    fs::write(m.path("chat.db"), b"A").unwrap();
    fs::write(m.path("scratch"), b"B").unwrap();
    fs::create_dir(m.path("dir")).unwrap();
    fs::write(m.path("dir/x"), b"X").unwrap();
    fs::write(m.path("dir/y"), b"Y").unwrap();
    m.unmount();
    // A conflict copy of "dir" (same veilfs.diriv) holding only y, while
    // the original holds only x.
    let copy = copy_dir_as_conflict(&m, &names, "dir", " (1)");
    let (dir, dir_iv) = backing_dir(&m, &names, "dir");
    let entry = |n: &str| names.backing_name(&dir_iv, n.as_bytes()).unwrap();
    fs::remove_file(dir.join(entry("y").entry())).unwrap();
    fs::remove_file(copy.join(entry("x").entry())).unwrap();
    // Plant while unmounted, as a sync client would.
    let (root, iv) = (m.cipher.clone(), names.root_iv());
    let rename_backing = |from: &str, original: &str, marker: &str| {
        let f = names.backing_name(&iv, from.as_bytes()).unwrap();
        let o = names.backing_name(&iv, original.as_bytes()).unwrap();
        fs::rename(root.join(f.entry()), root.join(copy_name(&o, marker))).unwrap();
    };
    rename_backing(
        "scratch",
        "chat.db",
        ".sync-conflict-20261126-101500-ABCDEF7",
    );
    let before = backing_names(&m.cipher);

    m.extra_args = vec!["--ro".into()];
    m.mount();
    // A lookup by display name works before any listing.
    let display = "chat (conflict 2026-11-26 101500 ABCDEF7).db";
    assert_eq!(fs::read(m.path(display)).unwrap(), b"B");
    assert_eq!(fs::read(m.path("dir (conflict 1)/y")).unwrap(), b"Y");
    assert_eq!(
        listing(&m.mnt),
        ["chat.db", display, "dir", "dir (conflict 1)"]
            .map(String::from)
            .into()
    );
    // readdirplus and stat agree.
    for e in fs::read_dir(&m.mnt).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        assert_eq!(
            md.is_dir(),
            e.file_name().to_str().unwrap().starts_with("dir")
        );
    }
    assert_eq!(fs::read(m.path("chat.db")).unwrap(), b"A");
    assert_eq!(fs::read(m.path("dir/x")).unwrap(), b"X");
    assert_eq!(
        listing(&m.path("dir (conflict 1)")),
        ["y".to_string()].into()
    );
    let e = fs::write(m.path(display), b"no").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    // A name that merely looks like a display name is not found.
    assert!(fs::metadata(m.path("chat (conflict 9).db")).is_err());
    assert_eq!(
        backing_names(&m.cipher),
        before,
        "read-only: nothing renamed"
    );

    // A writable mount resolves a copy looked up before it was listed.
    m.unmount();
    m.extra_args.clear();
    m.mount();
    assert_eq!(fs::read(m.path(display)).unwrap(), b"B");
    assert_all_proper(&m.cipher, &names, &names.root_iv());
    assert!(!m.log_text().contains("WARN"), "{}", m.log_text());
}

#[test]
fn display_name_that_exists_gets_a_counter() {
    let m = TestMount::new();
    let names = names_of(&m);
    fs::write(m.path("notes.txt"), b"1").unwrap();
    fs::write(m.path("notes (conflict 1).txt"), b"user's own").unwrap();
    fs::write(m.path("s"), b"copy").unwrap();
    plant(&m, &names, "", "s", "notes.txt", " (1)");
    assert_eq!(
        listing(&m.mnt),
        [
            "notes (conflict 1 #2).txt",
            "notes (conflict 1).txt",
            "notes.txt"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        fs::read(m.path("notes (conflict 1).txt")).unwrap(),
        b"user's own"
    );
    assert_eq!(
        fs::read(m.path("notes (conflict 1 #2).txt")).unwrap(),
        b"copy"
    );
}

#[test]
fn copies_of_records_and_metadata_are_left_alone() {
    let m = TestMount::new();
    let names = names_of(&m);
    let long = "n".repeat(200);
    fs::write(m.path(&long), b"long").unwrap();
    fs::create_dir(m.path("sub")).unwrap();
    fs::write(m.path("sub/f"), b"f").unwrap();
    let lb = names
        .backing_name(&names.root_iv(), long.as_bytes())
        .unwrap();
    let (rec, _) = lb.long_record().unwrap();
    let (sub, _) = backing_dir(&m, &names, "sub");
    let planted = [
        (
            m.cipher
                .join(rec.replace(".name", ".sync-conflict-20261126-101500-ABCDEF7.name")),
            m.cipher.join(&rec),
        ),
        (m.cipher.join(format!("{rec} (1)")), m.cipher.join(&rec)),
        (sub.join("veilfs (1).diriv"), sub.join("veilfs.diriv")),
        (
            sub.join("veilfs.sync-conflict-20261126-101500-ABCDEF7.diriv"),
            sub.join("veilfs.diriv"),
        ),
        (
            m.cipher.join("veilfs (conflicted copy 2026-11-26).conf"),
            m.cipher.join("veilfs.conf"),
        ),
    ];
    for (copy, of) in &planted {
        fs::copy(of, copy).unwrap();
    }
    assert_eq!(
        listing(&m.mnt),
        [long.clone(), "sub".into()].into_iter().collect()
    );
    assert_eq!(listing(&m.path("sub")), ["f".to_string()].into());
    assert_eq!(fs::read(m.path(&long)).unwrap(), b"long");
    assert_eq!(fs::read(m.path("sub/f")).unwrap(), b"f");
    for (copy, _) in &planted {
        assert!(copy.exists(), "{copy:?} was removed");
    }
    assert!(!m.log_text().contains("WARN"), "{}", m.log_text());
}

/// Files and directories sync clients keep in a synced folder.
const CLIENT_FILES: [&str; 10] = [
    ".stignore",
    ".syncthing.chat.db.tmp",
    ".dropbox",
    "desktop.ini",
    ".DS_Store",
    "Thumbs.db",
    "~$report.docx",
    ".~lock.chat.odt#",
    "Icon\r",
    "._chat.db",
];
const CLIENT_DIRS: [&str; 3] = [".stfolder", ".stversions", ".dropbox.cache"];

fn plant_client_files(dir: &Path, extra_tmp: &str) {
    for f in CLIENT_FILES {
        fs::write(dir.join(f), b"client data").unwrap();
    }
    fs::write(dir.join(format!(".syncthing.{extra_tmp}.tmp")), b"partial").unwrap();
    for d in CLIENT_DIRS {
        fs::create_dir(dir.join(d)).unwrap();
        fs::write(dir.join(d).join("inner"), b"kept").unwrap();
    }
}

#[test]
fn sync_client_files_are_invisible_kept_and_harmless() {
    let m = TestMount::new();
    let names = names_of(&m);
    fs::write(m.path("chat.db"), b"db").unwrap();
    fs::create_dir(m.path("media")).unwrap();
    fs::write(m.path("media/a.jpg"), b"a").unwrap();
    fs::create_dir(m.path("only-client-files")).unwrap();
    let chat = names.backing_name(&names.root_iv(), b"chat.db").unwrap();
    plant_client_files(&m.cipher, chat.entry());
    let (media, _) = backing_dir(&m, &names, "media");
    plant_client_files(&media, "x");
    let (only, _) = backing_dir(&m, &names, "only-client-files");
    plant_client_files(&only, "y");
    let snapshot = |dirs: &[&Path]| -> Vec<BTreeSet<String>> {
        dirs.iter().map(|d| backing_names(d)).collect()
    };
    let before = snapshot(&[&m.cipher, &media, &only]);

    assert_eq!(
        listing(&m.mnt),
        ["chat.db", "media", "only-client-files"]
            .map(String::from)
            .into()
    );
    assert_eq!(listing(&m.path("media")), ["a.jpg".to_string()].into());
    assert!(listing(&m.path("only-client-files")).is_empty());
    // Not reachable by their own names either (those name other entries).
    for f in CLIENT_FILES.iter().chain(&CLIENT_DIRS) {
        assert!(fs::symlink_metadata(m.path(f)).is_err(), "{f:?} visible");
    }
    // A directory that looks empty but holds a client's files is not
    // removed, and neither are the files: rmdir says ENOTEMPTY.
    let e = fs::remove_dir(m.path("only-client-files")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    // Files the user makes with the same names are ordinary encrypted
    // entries beside the client's.
    fs::write(m.path("desktop.ini"), b"mine").unwrap();
    assert_eq!(fs::read(m.path("desktop.ini")).unwrap(), b"mine");
    fs::remove_file(m.path("desktop.ini")).unwrap();
    // Ordinary work in those directories leaves the client's files alone.
    fs::write(m.path("media/b.jpg"), b"b").unwrap();
    fs::rename(m.path("media/b.jpg"), m.path("media/c.jpg")).unwrap();
    fs::remove_file(m.path("media/c.jpg")).unwrap();
    fs::rename(m.path("media"), m.path("media2")).unwrap();
    fs::rename(m.path("media2"), m.path("media")).unwrap();
    assert_eq!(snapshot(&[&m.cipher, &media, &only]), before);
    for d in [&m.cipher, &media, &only] {
        assert_eq!(
            fs::read(d.join(".stversions/inner")).unwrap(),
            b"kept",
            "{d:?}"
        );
        assert_eq!(fs::read(d.join("desktop.ini")).unwrap(), b"client data");
    }
    assert!(!m.log_text().contains("WARN"), "{}", m.log_text());
}

#[test]
fn names_of_255_bytes_round_trip_and_cipherdir_names_stay_short() {
    let m = TestMount::new();
    let threshold = 175;
    let long_names = [
        "x".repeat(255),
        format!("{}x", "é".repeat(127)),
        "日".repeat(85),
        format!("{}abc", "😀".repeat(63)),
        format!("{}.db", "a".repeat(252)),
    ];
    for n in &long_names {
        assert_eq!(n.len(), 255, "{n}");
    }
    fs::create_dir(m.path(&long_names[2])).unwrap();
    for (i, n) in long_names.iter().enumerate() {
        if i != 2 {
            fs::write(m.path(n), format!("content {i}")).unwrap();
        }
        let inner = format!("{}/{n}", long_names[2]);
        fs::write(m.path(&inner), format!("inner {i}")).unwrap();
    }
    for (i, n) in long_names.iter().enumerate() {
        if i == 2 {
            assert!(m.path(n).is_dir());
            continue;
        }
        assert_eq!(
            fs::read_to_string(m.path(n)).unwrap(),
            format!("content {i}")
        );
    }
    let want: BTreeSet<String> = long_names.iter().cloned().collect();
    assert_eq!(listing(&m.mnt), want);
    assert_eq!(listing(&m.path(&long_names[2])), want);
    // Rename long → long and long → short and back.
    fs::rename(m.path(&long_names[0]), m.path("short")).unwrap();
    fs::rename(m.path("short"), m.path(&long_names[0])).unwrap();
    let tmp = format!("{}z", "ü".repeat(127));
    fs::rename(m.path(&long_names[1]), m.path(&tmp)).unwrap();
    assert_eq!(fs::read_to_string(m.path(&tmp)).unwrap(), "content 1");
    fs::rename(m.path(&tmp), m.path(&long_names[1])).unwrap();
    // 256 bytes is one too many.
    let e = fs::write(m.path(&"y".repeat(256)), b"").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));

    let mut longs = 0;
    for p in m.backing_files() {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.len() <= 255, "{name}");
        match classify_entry(&name) {
            EntryKind::Regular(_) => {
                assert!(name.len() <= threshold, "{} > {threshold}", name.len())
            }
            EntryKind::Long(_) => {
                longs += 1;
                assert_eq!(name.len(), 43 + 4);
            }
            EntryKind::LongRecord => assert_eq!(name.len(), 43 + 9),
            EntryKind::LongTargetRecord => assert_eq!(name.len(), 43 + 6),
            EntryKind::Metadata => {}
            EntryKind::Foreign => panic!("unexpected {name}"),
        }
    }
    assert_eq!(longs, 10, "every 255-byte name is a long-name entry");
}

#[test]
fn small_change_in_a_large_file_touches_only_its_chunks() {
    // 256 MiB rather than the 1 GiB of the issue, to keep CI fast; the
    // layout is the same at any size.
    const SIZE: u64 = 256 << 20;
    const CHUNK: usize = 4096;
    const STORED: usize = CHUNK + 28;
    const HEADER: usize = 18;
    let m = TestMount::new();
    let names = names_of(&m);
    let p = m.path("big.bin");
    {
        let mut f = fs::File::create(&p).unwrap();
        let mut buf: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        for mib in 0..(SIZE >> 20) {
            buf[..8].copy_from_slice(&mib.to_be_bytes());
            f.write_all(&buf).unwrap();
        }
        f.sync_all().unwrap();
    }
    let backing = m.cipher.join(
        names
            .backing_name(&names.root_iv(), b"big.bin")
            .unwrap()
            .entry(),
    );
    let saved = m.tmp.path().join("before.bin");
    fs::copy(&backing, &saved).unwrap();

    // 4 KiB in the middle, not chunk-aligned: it straddles two chunks.
    let at = SIZE / 2 + 1000;
    let patch = vec![0xA5u8; 4096];
    {
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&patch, at).unwrap();
        f.sync_all().unwrap();
    }
    let (old, new) = (fs::read(&saved).unwrap(), fs::read(&backing).unwrap());
    assert_eq!(old.len(), new.len(), "the backing size is unchanged");
    assert_eq!(old[..HEADER], new[..HEADER], "the file header is unchanged");
    let chunks = (old.len() - HEADER).div_ceil(STORED);
    assert_eq!(chunks as u64, SIZE / CHUNK as u64);
    let changed: Vec<usize> = (0..chunks)
        .filter(|&i| {
            let r = HEADER + i * STORED..(HEADER + (i + 1) * STORED).min(old.len());
            old[r.clone()] != new[r]
        })
        .collect();
    let first = (at / CHUNK as u64) as usize;
    assert_eq!(
        changed,
        vec![first, first + 1],
        "only the written chunks change"
    );
    let mut f = fs::File::open(&p).unwrap();
    f.seek(SeekFrom::Start(at - 1)).unwrap();
    let mut got = vec![0u8; 4098];
    f.read_exact(&mut got).unwrap();
    assert_eq!(&got[1..4097], &patch[..]);
    assert_ne!(got[0], 0xA5);
}

/// Security review, finding 1: a conflict copy must have its original's
/// file type (and a directory its original's `veilfs.diriv`), and markers
/// follow the clients' fixed formats. Before, a directory copied next to a
/// file's backing name with a Syncthing marker was shown (and renamed into
/// a genuine entry), and a marker's free text put a terminal escape into a
/// plaintext name.
#[test]
fn grafted_conflict_copies_are_not_shown_renamed_or_clean() {
    let mut m = TestMount::new();
    let names = names_of(&m);
    fs::create_dir(m.path("dirA")).unwrap();
    fs::write(m.path("dirA/secret.bin"), b"secret").unwrap();
    fs::create_dir(m.path("dirB")).unwrap();
    fs::write(m.path("dirB/note.txt"), b"note").unwrap();
    fs::write(m.path("dirB/scratch"), b"scratch").unwrap();
    let (dir_a, _) = backing_dir(&m, &names, "dirA");
    let (dir_b, iv_b) = backing_dir(&m, &names, "dirB");
    let note = names.backing_name(&iv_b, b"note.txt").unwrap();
    let graft = copy_name(&note, ".sync-conflict-20260101-000000-ATTACK");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(&dir_a)
        .arg(dir_b.join(&graft))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a");
    // A file of the right type, under a marker carrying a terminal escape.
    let escape = plant(
        &m,
        &names,
        "dirB",
        "scratch",
        "note.txt",
        " (\u{1b}]0;pwned\u{7} conflict)",
    );
    let before = backing_names(&dir_b);

    assert_eq!(listing(&m.path("dirB")), ["note.txt".to_string()].into());
    assert_eq!(fs::read(m.path("dirB/note.txt")).unwrap(), b"note");
    assert!(
        fs::symlink_metadata(m.path("dirB/note (conflict 2026-01-01 000000 ATTACK).txt")).is_err()
    );
    assert_eq!(backing_names(&dir_b), before, "nothing was renamed");
    assert!(dir_b.join(&graft).join("veilfs.diriv").exists());
    assert!(dir_b.join(&escape).exists());
    let log = m.log_text();
    assert!(
        log.contains("conflict copy but is not shown"),
        "the rejected graft is logged: {log}"
    );
    assert!(!log.contains('\u{1b}'), "no escape reaches the log");
    m.unmount();

    let (code, report) = fsck_json(&m, &[]);
    assert_ne!(code, 0, "fsck must not call this vault clean: {report}");
    let kinds = problem_kinds(&report);
    assert!(
        kinds.iter().any(|k| k == "conflict_copy_rejected"),
        "{report}"
    );
}
