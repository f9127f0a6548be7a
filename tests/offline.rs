//! Offline access and fsck (issue 6): `veilfs ls`, `veilfs cat`,
//! `veilfs fsck`, tampering and hostile backing directories.
//!
//! Vaults are built with the library directly: a real config from
//! `create_vault`, and backing files written through `CryptFile` and the
//! name cipher, exactly as the mount writes them. No FUSE needed.

mod common;
#[macro_use]
mod offline_common;

use std::fs;
use std::path::Path;

use veilfs::check::{self, FsckOptions, ProblemKind};
use veilfs::content::HEADER_LEN;
use veilfs::cryptfile::CryptFile;
use veilfs::names::DIR_IV_FILE;
use veilfs::offline::{Kind, Offline, OfflineError};
use veilfs::vault::{CreateOptions, create_vault};

use common::pattern;

use offline_common::*;

#[test]
fn ls_and_cat_round_trip() {
    let (tv, files) = populated();
    let long = "ü".repeat(120); // 240 bytes: a long name
    let long_path = format!("/chats/{long}");
    tv.write(&long_path, b"long name content");
    let off = tv.offline();
    for (p, d) in &files {
        assert_eq!(&tv.cat(p).unwrap(), d, "{p}");
    }
    assert_eq!(tv.cat(&long_path).unwrap(), b"long name content");

    let root = off.list(Path::new("/")).unwrap();
    let names: Vec<String> = root.entries.iter().map(|e| e.name_lossy()).collect();
    assert_eq!(names, ["chats", "empty", "empty.txt", "latest", "one"]);
    assert!(root.bad.is_empty() && root.foreign.is_empty());
    let latest = root.entries.iter().find(|e| e.name == b"latest").unwrap();
    assert_eq!(latest.kind, Kind::Symlink);
    assert_eq!(
        latest.target.as_ref().unwrap().as_ref().unwrap(),
        b"chats/msgstore.db"
    );
    assert_eq!(latest.size, "chats/msgstore.db".len() as u64);

    let chats = off.list(Path::new("chats/")).unwrap();
    let got: Vec<(String, Kind, u64)> = chats
        .entries
        .iter()
        .map(|e| (e.name_lossy(), e.kind, e.size))
        .collect();
    let mut want = vec![
        ("exact".to_string(), Kind::File, CS as u64),
        ("media".to_string(), Kind::Dir, 4096),
        ("msgstore.db".to_string(), Kind::File, 3 * CS as u64 + 100),
        ("plus1".to_string(), Kind::File, CS as u64 + 1),
        (long.clone(), Kind::File, 17),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    // Directory sizes are backing sizes: only check files.
    for ((gn, gk, gs), (wn, wk, ws)) in got.iter().zip(&want) {
        assert_eq!((gn, gk), (wn, wk));
        if *gk == Kind::File {
            assert_eq!(gs, ws, "{gn}");
        }
    }
    assert_eq!(got.len(), want.len());

    // A file path lists that one entry, like ls.
    let one = off.list(Path::new("/chats/media/big.jpg")).unwrap();
    assert_eq!(one.entries.len(), 1);
    assert_eq!(one.entries[0].size, 1_500_000);

    assert!(matches!(
        off.list(Path::new("/nope")),
        Err(OfflineError::NotFound { .. })
    ));
    assert!(matches!(
        tv.cat("/chats"),
        Err(OfflineError::NotAFile {
            kind: Kind::Dir,
            ..
        })
    ));
    assert!(matches!(
        tv.cat("/chats/../one"),
        Err(OfflineError::InvalidPath { .. })
    ));
    let too_long = format!("/{}", "n".repeat(300));
    assert!(matches!(
        tv.cat(&too_long),
        Err(OfflineError::InvalidPath { .. })
    ));
    assert!(matches!(
        off.list(Path::new("/one/x")),
        Err(OfflineError::NotADirectory {
            kind: Kind::File,
            ..
        })
    ));
}

#[test]
fn fsck_clean_vault_with_foreign_files_and_hard_links() {
    let (tv, _) = populated();
    fs::write(tv.dir.join("desktop.ini"), "x").unwrap();
    fs::create_dir(tv.dir.join(".stfolder")).unwrap();
    fs::write(tv.backing("/chats").join(".DS_Store"), "x").unwrap();
    // A hard link is a legitimate second name of a file.
    let (dir, _, name, _) = tv.locate("/chats/hardlink");
    fs::hard_link(tv.backing("/chats/exact"), dir.join(name.entry())).unwrap();

    let mut ticks = 0u64;
    let mut last = check::Progress::default();
    let mut opts = FsckOptions::new(&tv.dir, &tv.content, &tv.names);
    opts.progress = Some(Box::new(|p: &check::Progress| {
        ticks += 1;
        last = *p;
    }));
    let r = check::fsck(opts).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
    assert!(r.problems.is_empty());
    assert_eq!(r.stats.dirs, 4);
    assert_eq!(r.stats.files, 7);
    assert_eq!(r.stats.hard_links, 1);
    assert_eq!(r.stats.symlinks, 1);
    let mut foreign = r.foreign.clone();
    foreign.sort();
    assert_eq!(foreign.len(), 3, "{foreign:?}");
    assert!(foreign.contains(&".stfolder".to_string()));
    assert!(foreign.contains(&"desktop.ini".to_string()));
    assert!(ticks >= 7);
    assert_eq!(last.files_done, 7);
    assert_eq!(last.files_total, 7);
    assert_eq!(last.bytes_done, last.bytes_total);

    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["problems"].as_array().unwrap().len(), 0);
    assert_eq!(json["stats"]["files"], 7);
}

#[test]
fn flipped_bit_detected_and_salvaged() {
    let (tv, files) = populated();
    let path = "/chats/msgstore.db";
    let data = &files.iter().find(|f| f.0 == path).unwrap().1;
    modify(&tv.backing(path), |b| b[chunk_at(1) + 100] ^= 0x10);

    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::ChunkUnauthentic);
    assert_eq!(p.path, path);
    assert!(p.path_is_plain);
    assert_eq!(p.chunks, Some(1..2));
    assert!(!r.is_clean());

    match tv.cat(path) {
        Err(OfflineError::Chunk { path: p, index, .. }) => {
            assert_eq!((p.as_str(), index), (path, 1));
        }
        other => panic!("expected chunk 1 to fail, got {other:?}"),
    }

    let mut out = Vec::new();
    let rep = tv.offline().cat(Path::new(path), &mut out, true).unwrap();
    assert_eq!(out.len(), data.len());
    same_bytes!(out[..CS], data[..CS]);
    assert!(out[CS..2 * CS].iter().all(|&b| b == 0));
    same_bytes!(out[2 * CS..], data[2 * CS..]);
    assert_eq!(rep.bad.len(), 1);
    assert_eq!(rep.bad[0].chunks, 1..2);
    assert_eq!(rep.bad[0].bytes, CS as u64..2 * CS as u64);
    assert!(!rep.is_clean());
}

#[test]
fn salvage_across_cat_steps_and_last_chunk() {
    let (tv, files) = populated();
    let path = "/chats/media/big.jpg";
    let data = &files.iter().find(|f| f.0 == path).unwrap().1;
    let n = data.len().div_ceil(CS);
    // Damage chunks on both sides of the 1 MiB step and the last chunk.
    let bad = [255usize, 256, n - 1];
    modify(&tv.backing(path), |b| {
        for i in bad {
            b[chunk_at(i) + 20] ^= 1;
        }
    });
    let mut out = Vec::new();
    let rep = tv.offline().cat(Path::new(path), &mut out, true).unwrap();
    assert_eq!(out.len(), data.len());
    for i in 0..n {
        let range = i * CS..((i + 1) * CS).min(data.len());
        if bad.contains(&i) {
            assert!(out[range].iter().all(|&b| b == 0), "chunk {i} zeroed");
        } else {
            same_bytes!(out[range.clone()], data[range], "chunk {i} recovered");
        }
    }
    let ranges: Vec<_> = rep.bad.iter().map(|b| b.chunks.clone()).collect();
    assert_eq!(ranges, [255..257, (n - 1) as u64..n as u64]);
    let r = tv.fsck();
    let got: Vec<_> = r
        .problems
        .iter()
        .map(|p| p.chunks.clone().unwrap())
        .collect();
    assert_eq!(got, [255..257, (n - 1) as u64..n as u64]);
}

#[test]
fn swapped_chunks_detected() {
    let (tv, _) = populated();
    let path = "/chats/msgstore.db";
    modify(&tv.backing(path), |b| {
        let c0 = b[chunk_at(0)..chunk_at(1)].to_vec();
        let c1 = b[chunk_at(1)..chunk_at(2)].to_vec();
        b[chunk_at(0)..chunk_at(1)].copy_from_slice(&c1);
        b[chunk_at(1)..chunk_at(2)].copy_from_slice(&c0);
    });
    let r = tv.fsck();
    assert_eq!(
        kinds(&r),
        [
            (ProblemKind::ChunkMisplaced, path.to_string()),
            (ProblemKind::ChunkMisplaced, path.to_string())
        ]
    );
    assert!(
        r.problems[0].message.contains("is chunk 1"),
        "{}",
        r.problems[0]
    );
    assert!(tv.cat(path).is_err());
}

#[test]
fn chunk_copied_from_another_file_detected() {
    let (tv, _) = populated();
    let src = fs::read(tv.backing("/chats/exact")).unwrap();
    let path = "/chats/plus1";
    modify(&tv.backing(path), |b| {
        b[chunk_at(0)..chunk_at(1)].copy_from_slice(&src[chunk_at(0)..chunk_at(1)]);
    });
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::ChunkUnauthentic);
    assert_eq!((p.path.as_str(), p.chunks.clone()), (path, Some(0..1)));
}

#[test]
fn file_moved_to_another_directory_detected() {
    let (tv, _) = populated();
    let from = tv.backing("/one");
    let to_dir = tv.backing("/chats");
    let entry = from.file_name().unwrap().to_owned();
    fs::rename(&from, to_dir.join(&entry)).unwrap();
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::NameUnauthentic);
    assert!(!p.path_is_plain);
    let chats_backing = to_dir.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        p.backing_path,
        format!("{chats_backing}/{}", entry.to_str().unwrap())
    );
    assert!(p.message.contains("/chats"), "{p}");
    // ls reports it as undecryptable and lists the rest.
    let l = tv.offline().list(Path::new("/chats")).unwrap();
    assert_eq!(l.bad.len(), 1);
    assert_eq!(l.entries.len(), 4);
}

#[test]
fn truncation_at_a_chunk_boundary_detected() {
    let (tv, files) = populated();
    let path = "/chats/msgstore.db";
    let data = &files.iter().find(|f| f.0 == path).unwrap().1;
    modify(&tv.backing(path), |b| b.truncate(chunk_at(2)));
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::Truncated);
    assert_eq!((p.path.as_str(), p.chunks.clone()), (path, Some(1..2)));
    // Truncation is damage, never "repaired".
    let r = tv.fsck_with(true);
    assert!(!r.is_clean());
    assert!(r.repairs.is_empty());
    // Salvage still recovers chunk 0.
    let mut out = Vec::new();
    let rep = tv.offline().cat(Path::new(path), &mut out, true).unwrap();
    same_bytes!(out[..CS], data[..CS]);
    assert_eq!(rep.bad[0].chunks, 1..2);
}

#[test]
fn truncation_inside_a_chunk_detected() {
    let (tv, _) = populated();
    let path = "/chats/msgstore.db";
    modify(&tv.backing(path), |b| b.truncate(chunk_at(2) + 1000));
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::ChunkUnauthentic);
    assert_eq!((p.path.as_str(), p.chunks.clone()), (path, Some(2..3)));
    assert!(p.message.contains("truncated"), "{p}");

    // Cut inside the overhead of a chunk: a size no writer produces.
    let path = "/chats/plus1";
    modify(&tv.backing(path), |b| b.truncate(chunk_at(1) + 10));
    let r = tv.fsck();
    let got = kinds(&r);
    assert!(
        got.contains(&(ProblemKind::InvalidSize, path.to_string())),
        "{got:?}"
    );
    assert!(
        got.iter()
            .all(|(_, p)| p == path || p == "/chats/msgstore.db")
    );
    let mut out = Vec::new();
    let rep = tv.offline().cat(Path::new(path), &mut out, true).unwrap();
    assert!(!rep.is_clean());
}

#[test]
fn replaced_header_detected() {
    let (tv, files) = populated();
    let path = "/chats/msgstore.db";
    let other = fs::read(tv.backing("/chats/plus1")).unwrap();
    modify(&tv.backing(path), |b| {
        b[..HEADER_LEN].copy_from_slice(&other[..HEADER_LEN])
    });
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::HeaderMismatch);
    assert_eq!(p.path, path);

    // A header with an unknown version or chunk size cannot be parsed.
    let path2 = "/chats/exact";
    modify(&tv.backing(path2), |b| b[0] = 7);
    let r = tv.fsck();
    assert!(
        kinds(&r).contains(&(ProblemKind::HeaderInvalid, path2.to_string())),
        "{:?}",
        kinds(&r)
    );
    assert!(matches!(tv.cat(path2), Err(OfflineError::Header { .. })));
    let mut out = Vec::new();
    let rep = tv.offline().cat(Path::new(path2), &mut out, true).unwrap();
    assert!(rep.header_error.is_some());
    same_bytes!(out, [0u8; CS], "salvage keeps the size, all zeros");
    let _ = files;
}

#[test]
fn deleted_directory_iv_detected() {
    let (tv, _) = populated();
    fs::remove_file(tv.backing("/chats").join(DIR_IV_FILE)).unwrap();
    let r = tv.fsck_with(true);
    let p = only_problem(&r, ProblemKind::DirIvMissing);
    assert_eq!(p.path, "/chats");
    assert!(
        p.message.contains("names in /chats cannot be decrypted"),
        "{p}"
    );
    assert!(
        !p.repaired,
        "a directory with entries never gets a guessed IV"
    );
    assert!(matches!(
        tv.offline().list(Path::new("/chats")),
        Err(OfflineError::DirIv { .. })
    ));
    assert!(matches!(
        tv.cat("/chats/exact"),
        Err(OfflineError::DirIv { .. })
    ));
}

#[test]
fn missing_iv_of_empty_directory_is_repaired() {
    let (tv, _) = populated();
    let iv_file = tv.backing("/empty").join(DIR_IV_FILE);
    let iv = fs::read(&iv_file).unwrap();
    fs::remove_file(&iv_file).unwrap();
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::EmptyDirIvMissing);
    assert!(!p.repaired);
    // What a crash during mkdir leaves: nothing is lost, so not damage.
    assert!(r.is_clean());
    let r = tv.fsck_with(true);
    assert!(r.is_clean());
    assert_eq!(r.repairs.len(), 1);
    // A new IV (docs/FORMAT.md §6): never the old one, which another
    // directory may still hold after a rename.
    let new_iv = fs::read(&iv_file).unwrap();
    assert_eq!(new_iv.len(), 16);
    assert_ne!(new_iv, iv, "a fresh IV, not a derived one");
    assert!(tv.fsck().problems.is_empty());
}

#[test]
fn long_name_records_checked() {
    let (tv, _) = populated();
    let long = "l".repeat(200);
    let path = format!("/chats/{long}");
    tv.write(&path, b"data");
    let (dir, _, name, _) = tv.locate(&path);
    let (record, _) = name.long_record().unwrap();
    assert!(tv.fsck().problems.is_empty());

    // Record deleted: the entry's name is lost.
    let saved = fs::read(dir.join(&record)).unwrap();
    fs::remove_file(dir.join(&record)).unwrap();
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::LongNameRecordMissing);
    assert!(p.backing_path.ends_with(name.entry()));
    assert!(p.message.contains("/chats"));
    assert_eq!(tv.offline().list(Path::new("/chats")).unwrap().bad.len(), 1);
    // The content does not depend on the name: still readable by path.
    assert_eq!(tv.cat(&path).unwrap(), b"data");

    // A record that does not hash to its entry.
    fs::write(dir.join(&record), "A".repeat(300)).unwrap();
    let r = tv.fsck();
    only_problem(&r, ProblemKind::LongNameRecordInvalid);
    // A huge record: read bounded, reported.
    fs::write(dir.join(&record), "A".repeat(100_000)).unwrap();
    only_problem(&tv.fsck(), ProblemKind::LongNameRecordInvalid);
    fs::remove_file(dir.join(&record)).unwrap();
    fs::write(dir.join(&record), &saved).unwrap();
    assert!(tv.fsck().problems.is_empty());

    // Entry gone, record left: an orphan, removed by --repair.
    fs::remove_file(dir.join(name.entry())).unwrap();
    let r = tv.fsck();
    only_problem(&r, ProblemKind::LongNameRecordOrphan);
    let r = tv.fsck_with(true);
    assert!(r.is_clean() && r.repairs.len() == 1);
    assert!(!dir.join(&record).exists());
    assert!(tv.fsck().problems.is_empty());
}

#[test]
fn invalid_and_overlong_backing_names_are_reported() {
    let (tv, _) = populated();
    let chats = tv.backing("/chats");
    // Base64url characters, but lengths no encryption produces.
    fs::write(chats.join("B".repeat(44)), "x").unwrap();
    fs::write(chats.join("C".repeat(45)), "x").unwrap();
    fs::write(chats.join("D".repeat(255)), "x").unwrap();
    // Correct length but not a real name.
    fs::write(chats.join("A".repeat(43)), "x").unwrap();
    let r = tv.fsck();
    let mut got: Vec<ProblemKind> = r
        .problems
        .iter()
        .filter(|p| p.message.contains("name"))
        .map(|p| p.kind)
        .collect();
    got.sort_by_key(|k| k.as_str());
    assert_eq!(
        got,
        [
            ProblemKind::NameInvalid,
            ProblemKind::NameInvalid,
            ProblemKind::NameInvalid,
            ProblemKind::NameUnauthentic
        ],
        "{:#?}",
        r.problems
    );
    let l = tv.offline().list(Path::new("/chats")).unwrap();
    assert_eq!(l.bad.len(), 4);
    assert_eq!(l.entries.len(), 4);
}

#[test]
fn planted_symlinks_are_never_followed() {
    let (tv, files) = populated();
    // Outside CIPHERDIR: a copy of a real backing directory (so following
    // it would "work") and a copy of a real backing file.
    let outside = tv.root.join("outside");
    fs::create_dir(&outside).unwrap();
    let src = tv.backing("/chats/media");
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), outside.join(e.file_name())).unwrap();
    }
    let outside_file = tv.root.join("outside-file");
    fs::copy(tv.backing("/one"), &outside_file).unwrap();
    let before_dir: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let before_file = fs::read(&outside_file).unwrap();

    // Plant: where "/evil" (a directory) and "/evil.txt" would be, and in
    // place of a directory's IV file.
    let (dir, _, evil, _) = tv.locate("/evil");
    std::os::unix::fs::symlink(&outside, dir.join(evil.entry())).unwrap();
    let (dir, _, evil_file, _) = tv.locate("/evil.txt");
    std::os::unix::fs::symlink(&outside_file, dir.join(evil_file.entry())).unwrap();
    let empty_iv = tv.backing("/empty").join(DIR_IV_FILE);
    fs::remove_file(&empty_iv).unwrap();
    std::os::unix::fs::symlink(outside.join(DIR_IV_FILE), &empty_iv).unwrap();

    let r = tv.fsck_with(true);
    let got = kinds(&r);
    assert!(
        got.contains(&(ProblemKind::SymlinkTargetInvalid, "/evil".into())),
        "{got:?}"
    );
    assert!(got.contains(&(ProblemKind::SymlinkTargetInvalid, "/evil.txt".into())));
    assert!(got.contains(&(ProblemKind::DirIvInvalid, "/empty".into())));
    assert_eq!(got.len(), 3, "nothing under /evil was visited: {got:?}");
    assert!(r.repairs.is_empty());

    let off = tv.offline();
    assert!(matches!(
        off.list(Path::new("/evil/big.jpg")),
        Err(OfflineError::NotADirectory {
            kind: Kind::Symlink,
            ..
        })
    ));
    let l = off.list(Path::new("/evil")).unwrap();
    assert_eq!(l.entries.len(), 1);
    assert_eq!(l.entries[0].kind, Kind::Symlink);
    assert!(l.entries[0].target.as_ref().unwrap().is_err());
    assert!(matches!(
        tv.cat("/evil.txt"),
        Err(OfflineError::NotAFile {
            kind: Kind::Symlink,
            ..
        })
    ));
    assert!(matches!(
        tv.cat("/evil/big.jpg"),
        Err(OfflineError::NotADirectory { .. })
    ));
    assert!(matches!(
        off.list(Path::new("/empty")),
        Err(OfflineError::DirIv { .. })
    ));
    // Nothing outside changed.
    let after_dir: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before_dir, after_dir);
    assert_eq!(fs::read(&outside_file).unwrap(), before_file);
    let _ = files;
}

#[test]
fn stale_last_flag_is_repaired() {
    let tv = TV::new();
    let old = pattern(CS, 9);
    let new = pattern(700, 10);
    interrupted_append(&tv, "/full", &old, CS, &new);
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::StaleLastFlag);
    assert_eq!((p.path.as_str(), p.chunks.clone()), ("/full", Some(0..1)));
    // Readers tolerate the stale flag (its data is authentic); fsck still
    // reports it so --repair can re-seal it.
    assert_eq!(
        tv.cat("/full").unwrap(),
        [old.clone(), new.clone()].concat()
    );

    let r = tv.fsck_with(true);
    assert!(r.is_clean(), "{:#?}", r.problems);
    assert_eq!(r.repairs.len(), 1);
    assert!(tv.fsck().problems.is_empty());
    assert_eq!(tv.cat("/full").unwrap(), [old, new].concat());
}

#[test]
fn stale_short_last_chunk_is_repaired() {
    let tv = TV::new();
    let old = pattern(100, 11);
    let new = pattern(50, 12);
    // The old 100-byte last chunk is followed by zeros up to a full chunk,
    // then a hole (chunk 1), then the new last chunk 2.
    interrupted_append(&tv, "/short", &old, 2 * CS, &new);
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::StaleLastFlag);
    assert_eq!(p.chunks, Some(0..1));
    // Readers see what the repair will make of it: the old bytes, then
    // zeros where the interrupted append had not yet written.
    let mut want = old.clone();
    want.resize(2 * CS, 0);
    want.extend_from_slice(&new);
    assert_eq!(tv.cat("/short").unwrap(), want);
    let r = tv.fsck_with(true);
    assert!(r.is_clean(), "{:#?}", r.problems);
    assert!(tv.fsck().problems.is_empty());
    assert_eq!(tv.cat("/short").unwrap(), want);
}

/// Issue 13, finding 4: `truncate -s 1M` on the backing file of a 12 KiB
/// file leaves its last chunk stale, followed by a megabyte of zeros. The
/// old repair re-sealed the zeros as authentic data and fsck then said
/// clean. Now fsck reports possible tampering (zero_tail), and --repair
/// cuts the file after its last authentic chunk; only --keep-zero-tail
/// keeps the zeros.
#[test]
fn zeros_appended_after_the_last_chunk_are_cut_not_made_authentic() {
    let tv = TV::new();
    let data = pattern(3 * CS, 31);
    for path in ["/cut", "/kept"] {
        tv.write(path, &data);
        fs::OpenOptions::new()
            .write(true)
            .open(tv.backing(path))
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
    }
    let r = tv.fsck();
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
    for p in &r.problems {
        assert_eq!(p.kind, ProblemKind::ZeroTail, "{p:#?}");
        assert!(p.message.contains("possible tampering"), "{}", p.message);
        assert_eq!(p.chunks.as_ref().unwrap().start, 2);
    }
    // --keep-zero-tail needs --repair.
    let dir = tv.dir.to_str().unwrap();
    let o = tv.cli("fsck", &["--keep-zero-tail", dir]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    // Keep the zeros of one file, explicitly: they become part of it.
    fs::rename(tv.backing("/cut"), tv.root.join("aside")).unwrap();
    let o = tv.cli("fsck", &["--repair", "--keep-zero-tail", dir]);
    assert_eq!(code(&o), 0, "{}{}", text(&o.stdout), text(&o.stderr));
    let kept = tv.cat("/kept").unwrap();
    // (Its cut last chunk is dropped as a torn tail.)
    assert!(kept.len() > 1_000_000, "{}", kept.len());
    same_bytes!(kept[..3 * CS], data);
    assert!(kept[3 * CS..].iter().all(|&b| b == 0));
    // By default the repair cuts the file after its last authentic chunk.
    fs::rename(tv.root.join("aside"), tv.backing("/cut")).unwrap();
    let r = tv.fsck_with(true);
    assert!(r.is_clean(), "{:#?}", r.problems);
    only_problem(&r, ProblemKind::ZeroTail);
    assert!(r.problems[0].repaired);
    same_bytes!(tv.cat("/cut").unwrap(), data);
    assert!(tv.fsck().problems.is_empty());

    // A short last chunk followed by zeros (what an append cut before it
    // wrote any chunk leaves) is cut back to its own length.
    let short = pattern(100, 32);
    tv.write("/short", &short);
    fs::OpenOptions::new()
        .write(true)
        .open(tv.backing("/short"))
        .unwrap()
        .set_len(3 * 4096)
        .unwrap();
    let r = tv.fsck_with(true);
    let p = only_problem(&r, ProblemKind::ZeroTail);
    assert_eq!(p.chunks, Some(0..3));
    assert!(r.is_clean(), "{:#?}", r.problems);
    assert_eq!(tv.cat("/short").unwrap(), short);
    assert!(tv.fsck().problems.is_empty());
}

/// Cuts the backing file of `path` to `len` bytes, as a crash would.
fn cut_backing(tv: &TV, path: &str, len: u64) {
    let backing = tv.backing(path);
    let file = fs::OpenOptions::new().write(true).open(&backing).unwrap();
    assert!(len < file.metadata().unwrap().len());
    file.set_len(len).unwrap();
}

/// A SIGKILL cuts a growing pwrite at a page boundary: the file ends inside
/// its last chunk, on a 4 KiB boundary.
#[test]
fn torn_tail_is_repaired_keeping_every_readable_byte() {
    let tv = TV::new();
    let data = pattern(3 * CS + 4000, 21);
    tv.write("/log", &data);
    let cut = (chunk_at(3) as u64 / 4096 + 1) * 4096;
    cut_backing(&tv, "/log", cut);
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::TornTail);
    assert_eq!((p.path.as_str(), p.chunks.clone()), ("/log", Some(3..4)));
    assert!(!r.is_clean());
    assert!(tv.cat("/log").is_err(), "a cut chunk never reads as data");
    let r = tv.fsck_with(true);
    assert!(r.is_clean(), "{:#?}", r.problems);
    assert_eq!(r.repairs.len(), 1, "{:?}", r.repairs);
    assert!(tv.fsck().problems.is_empty());
    assert_eq!(tv.cat("/log").unwrap(), data[..3 * CS]);

    // Cut inside the only chunk: the file becomes empty.
    let one = pattern(4090, 22);
    tv.write("/one", &one);
    cut_backing(&tv, "/one", 4096);
    only_problem(&tv.fsck(), ProblemKind::TornTail);
    assert!(tv.fsck_with(true).is_clean());
    assert_eq!(tv.cat("/one").unwrap(), b"");

    // The same damage off a page boundary is not a crash's: not repaired.
    tv.write("/tampered", &data);
    cut_backing(&tv, "/tampered", cut + 1);
    let r = tv.fsck_with(true);
    only_problem(&r, ProblemKind::ChunkUnauthentic);
    assert!(r.repairs.is_empty());
}

#[test]
fn repair_never_writes_through_a_planted_symlink() {
    let tv = TV::new();
    interrupted_append(&tv, "/f", &pattern(CS, 1), CS, b"tail");
    let outside = tv.root.join("victim");
    fs::rename(tv.backing("/f"), &outside).unwrap();
    let before = fs::read(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, tv.backing("/f")).unwrap();
    let r = tv.fsck_with(true);
    only_problem(&r, ProblemKind::SymlinkTargetInvalid);
    assert!(r.repairs.is_empty());
    assert_eq!(fs::read(&outside).unwrap(), before);
}

#[test]
fn huge_sparse_file_is_streamed() {
    let tv = TV::new();
    let file = tv.create_backing("/sparse");
    let mut f = CryptFile::new(&file, &tv.content, None);
    f.write_at(0, b"head").unwrap();
    f.write_at(8 << 30, b"tail").unwrap();
    let started = std::time::Instant::now();
    let r = tv.fsck();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert!(r.stats.holes > 1_000_000, "{:?}", r.stats);
    assert!(started.elapsed().as_secs() < 20);
    // Damage the tail: found although everything before it is a hole.
    let len = file.metadata().unwrap().len();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[0xff], len - 5).unwrap();
    let r = tv.fsck();
    let p = only_problem(&r, ProblemKind::ChunkUnauthentic);
    assert_eq!(p.path, "/sparse");
}

#[test]
fn chunk_sizes_other_than_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let opts = CreateOptions {
        chunk_size: 65536,
        ..CreateOptions::default()
    };
    let v = create_vault(&dir, &opts).unwrap();
    let content = v.content_cipher();
    let names = v.name_cipher();
    let name = names.backing_name(&names.root_iv(), b"f").unwrap();
    let file = fs::File::create_new(dir.join(name.entry())).unwrap();
    let data = pattern(200_000, 5);
    CryptFile::new(&file, &content, None)
        .write_at(0, &data)
        .unwrap();
    let r = check::fsck(FsckOptions::new(&dir, &content, &names)).unwrap();
    assert!(r.problems.is_empty());
    let mut out = Vec::new();
    Offline::new(&dir, &content, &names)
        .unwrap()
        .cat(Path::new("f"), &mut out, false)
        .unwrap();
    same_bytes!(out, data);
}
