//! `veilfs ls`, `cat` and `fsck` as commands: output, exit codes, damage
//! reported and salvaged, a wrong key refused.

mod common;
#[macro_use]
mod offline_common;

use std::fs;
use std::process::Command;

use common::pattern;

use offline_common::*;

/// Issue 13, finding 12: a zeroed middle chunk reads as a hole, exactly
/// like a sparse one, so fsck cannot call it damage. It counts the holes
/// inside each file and lists the files, in the text and in --json, so a
/// user can tell a file they expect to be sparse from a wiped one.
#[test]
fn zeroed_and_sparse_chunks_are_counted_and_listed_as_holes() {
    let tv = TV::new();
    tv.mkdir("/chats");
    tv.write("/chats/msgstore.db", &pattern(5 * 4096, 3));
    tv.write("/plain", &pattern(3 * 4096, 4));
    modify(&tv.backing("/chats/msgstore.db"), |b| {
        b[chunk_at(2)..chunk_at(3)].fill(0);
    });
    let r = tv.fsck();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.stats.holes, 1, "{:?}", r.stats);
    assert_eq!(r.files_with_holes.len(), 1, "{:#?}", r.files_with_holes);
    let f = &r.files_with_holes[0];
    assert_eq!(
        (f.path.as_str(), f.path_is_plain),
        ("/chats/msgstore.db", true)
    );
    assert_eq!((f.holes, f.chunks), (1, 5));
    let dir = tv.dir.to_str().unwrap();
    let o = tv.cli("fsck", &["--json", dir]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stats"]["holes"], 1);
    assert_eq!(v["files_with_holes"][0]["path"], "/chats/msgstore.db");
    assert_eq!(v["files_with_holes"][0]["holes"], 1);
    let o = tv.cli("fsck", &[dir]);
    let out = text(&o.stdout);
    assert!(
        out.contains("info: 1 file with holes inside (1 chunk that read as zeros)")
            && out.contains("  /chats/msgstore.db: 1 of 5 chunks"),
        "{out}"
    );
}

#[test]
fn cli_ls_cat_fsck_on_a_clean_vault() {
    let (tv, files) = populated();
    let dir = tv.dir.to_str().unwrap();
    let o = tv.cli("ls", &[dir]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with('d') && lines[0].ends_with(" chats"),
        "{out}"
    );
    assert!(lines[3].starts_with('l') && lines[3].ends_with(" latest -> chats/msgstore.db"));
    assert!(lines[4].starts_with("-rw") && lines[4].contains(" 1 ") && lines[4].ends_with(" one"));

    let o = tv.cli("ls", &[dir, "/chats/media"]);
    assert_eq!(code(&o), 0);
    assert!(
        text(&o.stdout).contains("      1500000 "),
        "{}",
        text(&o.stdout)
    );

    for (p, d) in &files {
        let o = tv.cli("cat", &[dir, p]);
        assert_eq!(code(&o), 0, "{p}: {}", text(&o.stderr));
        same_bytes!(o.stdout, d, "{p}");
    }
    let o = tv.cli("cat", &[dir, "/nope"]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o.stderr).contains("/nope: no such file"),
        "{}",
        text(&o.stderr)
    );

    fs::write(tv.dir.join(".stfolder"), "").unwrap();
    let o = tv.cli("fsck", &[dir]);
    assert_eq!(code(&o), 0, "{}{}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("result: clean"), "{out}");
    assert!(out.contains("1 foreign entry "), "{out}");
    let o = tv.cli("fsck", &["--json", dir]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], true);
    assert_eq!(v["stats"]["files"], 6);
    assert_eq!(v["foreign"][0], ".stfolder");
}

#[test]
fn cli_reports_damage_and_salvages() {
    let (tv, files) = populated();
    let dir = tv.dir.to_str().unwrap();
    let path = "/chats/msgstore.db";
    let data = &files.iter().find(|f| f.0 == path).unwrap().1;
    modify(&tv.backing(path), |b| b[chunk_at(1) + 7] ^= 0x80);
    fs::write(tv.backing("/chats").join("Z".repeat(44)), "").unwrap();

    let o = tv.cli("fsck", &[dir]);
    assert_eq!(code(&o), 6);
    let out = text(&o.stdout);
    assert!(
        out.contains("/chats/msgstore.db: chunk 1 failed authentication"),
        "{out}"
    );
    assert!(out.contains("[chunk_unauthentic]"));
    assert!(out.contains("[name_invalid]"));
    assert!(
        text(&o.stderr).contains("2 problems found"),
        "{}",
        text(&o.stderr)
    );

    let o = tv.cli("fsck", &["--json", dir]);
    assert_eq!(code(&o), 6);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2);
    let p = problems
        .iter()
        .find(|p| p["kind"] == "chunk_unauthentic")
        .unwrap();
    assert_eq!(p["path"], path);
    assert_eq!(p["path_is_plain"], true);
    assert_eq!(p["chunks"]["start"], 1);
    assert_eq!(p["chunks"]["end"], 2);

    let o = tv.cli("cat", &[dir, path]);
    assert_eq!(code(&o), 6);
    assert!(text(&o.stderr).contains("chunk 1"), "{}", text(&o.stderr));
    assert!(
        o.stdout == data[..CS],
        "the good bytes before it, and only those"
    );

    let o = tv.cli("cat", &["--salvage", dir, path]);
    assert_eq!(code(&o), 6);
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "{path}: chunk 1 (bytes 4096..8192): chunk failed authentication; written as zeros"
        )),
        "{err}"
    );
    assert_eq!(o.stdout.len(), data.len());
    same_bytes!(o.stdout[..CS], data[..CS]);
    assert!(o.stdout[CS..2 * CS].iter().all(|&b| b == 0));
    same_bytes!(o.stdout[2 * CS..], data[2 * CS..]);

    // ls lists what decrypts and says what does not.
    let o = tv.cli("ls", &[dir, "/chats"]);
    assert_eq!(code(&o), 6);
    assert_eq!(text(&o.stdout).lines().count(), 4);
    assert!(text(&o.stderr).contains(&"Z".repeat(44)));
}

#[test]
fn cli_repair_of_a_stale_last_chunk_flag() {
    let tv = TV::new();
    let dir = tv.dir.to_str().unwrap();
    let old = pattern(2 * CS, 3);
    interrupted_append(&tv, "/db", &old, 2 * CS, b"appended");
    let o = tv.cli("fsck", &[dir]);
    assert_eq!(code(&o), 6);
    assert!(text(&o.stdout).contains("[stale_last_flag]"));
    let o = tv.cli("fsck", &["--repair", dir]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    let out = text(&o.stdout);
    assert!(out.contains("repaired (1):"), "{out}");
    assert!(
        out.contains("/db: re-sealed chunk 1 as a middle chunk"),
        "{out}"
    );
    assert_eq!(code(&tv.cli("fsck", &[dir])), 0);
    let o = tv.cli("cat", &[dir, "/db"]);
    same_bytes!(o.stdout, [old, b"appended".to_vec()].concat());
}

#[test]
fn cli_wrong_key_is_refused_before_any_check() {
    let tv = TV::new();
    let other = tv.root.join("other.key");
    fs::write(&other, "00".repeat(32)).unwrap();
    for cmd in ["fsck", "ls", "cat"] {
        let mut args = vec![
            "--key-file",
            other.to_str().unwrap(),
            tv.dir.to_str().unwrap(),
        ];
        if cmd == "cat" {
            args.push("/x");
        }
        let o = Command::new(env!("CARGO_BIN_EXE_veilfs"))
            .arg(cmd)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(code(&o), 3, "{cmd}: {}", text(&o.stderr));
    }
}
