//! Real applications on a mount: git, sqlite3 (WAL), tar + diff, rsync,
//! cp --sparse, and editors' write-temp-then-rename saves.

mod common;

use std::fs;
use std::process::Command;

use common::{TestMount, have, run_ok};

fn sh(script: &str) -> String {
    run_ok(
        Command::new("bash")
            .arg("-euo")
            .arg("pipefail")
            .arg("-c")
            .arg(script),
    )
}

#[test]
fn git_init_commit_log() {
    if !have("git") {
        return;
    }
    let m = TestMount::new();
    let repo = m.path("repo");
    let out = sh(&format!(
        "cd '{}' && git init -q repo && cd repo && git config user.email t@example.org && git config user.name t \
         && for i in 1 2 3; do echo line$i >> notes.txt; git add notes.txt; git commit -qm \"commit $i\"; done \
         && git log --oneline | wc -l && git fsck --strict 2>&1 && git status --porcelain",
        m.mnt.display()
    ));
    assert!(out.starts_with("3\n"), "{out}");
    assert_eq!(
        fs::read_to_string(repo.join("notes.txt")).unwrap(),
        "line1\nline2\nline3\n"
    );
}

#[test]
fn sqlite_wal_many_transactions_integrity_ok() {
    if !have("sqlite3") {
        return;
    }
    let mut m = TestMount::new();
    let db = m.path("msgstore.db");
    let mut script = String::from(
        "PRAGMA journal_mode=WAL;\nCREATE TABLE messages(id INTEGER PRIMARY KEY, chat_id INT, ts INT, sender TEXT, body TEXT);\nCREATE INDEX by_chat ON messages(chat_id, ts);\n",
    );
    for t in 0..200 {
        script.push_str("BEGIN;\n");
        for i in 0..25 {
            script.push_str(&format!(
                "INSERT INTO messages(chat_id, ts, sender, body) VALUES ({}, {}, 'bob', hex(randomblob(100)));\n",
                (t * 25 + i) % 17,
                t * 25 + i
            ));
        }
        script.push_str("COMMIT;\n");
        if t % 50 == 49 {
            script.push_str(
                "DELETE FROM messages WHERE id % 7 = 0;\nPRAGMA wal_checkpoint(PASSIVE);\n",
            );
        }
    }
    fs::write(m.tmp.path().join("load.sql"), &script).unwrap();
    let out = run_ok(Command::new("sh").arg("-c").arg(format!(
        "sqlite3 '{}' < '{}' && sqlite3 '{}' 'PRAGMA integrity_check; SELECT count(*) FROM messages;'",
        db.display(),
        m.tmp.path().join("load.sql").display(),
        db.display()
    )));
    assert!(out.contains("ok\n"), "{out}");
    let count: usize = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(count > 4000 && count < 5000, "{count}");
    // After a remount the database is still consistent.
    m.unmount();
    m.mount();
    let out = run_ok(
        Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA integrity_check; SELECT count(*) FROM messages;"),
    );
    assert_eq!(out, format!("ok\n{count}\n"));
}

#[test]
fn tar_extract_then_diff() {
    if !have("tar") {
        return;
    }
    let m = TestMount::new();
    let src = env!("CARGO_MANIFEST_DIR");
    sh(&format!(
        "mkdir -p '{mnt}/x' && tar -C '{src}' --exclude=./target --exclude=./.git -cf - . | tar -C '{mnt}/x' -xf - && diff -r --no-dereference -x target -x .git '{src}' '{mnt}/x'",
        mnt = m.mnt.display()
    ));
}

#[test]
fn rsync_in_and_out() {
    if !have("rsync") {
        return;
    }
    let m = TestMount::new();
    let src = m.tmp.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/file"), vec![7u8; 100_000]).unwrap();
    fs::write(src.join("top"), b"top").unwrap();
    std::os::unix::fs::symlink("a/b/file", src.join("link")).unwrap();
    let back = m.tmp.path().join("back");
    sh(&format!(
        "rsync -a '{s}/' '{mnt}/r/' && rsync -a '{mnt}/r/' '{b}/' && diff -r --no-dereference '{s}' '{b}' && rsync -a --checksum --itemize-changes '{s}/' '{mnt}/r/' | wc -l",
        s = src.display(),
        mnt = m.mnt.display(),
        b = back.display()
    ));
    assert_eq!(
        fs::read_link(back.join("link")).unwrap().to_str(),
        Some("a/b/file")
    );
}

#[test]
fn cp_sparse_always_keeps_holes() {
    let m = TestMount::new();
    let src = m.tmp.path().join("sparse-src");
    let f = fs::File::create(&src).unwrap();
    f.set_len(32 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"data at 1 MiB", 1 << 20).unwrap();
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&src)
            .arg(m.path("copy")),
    );
    run_ok(Command::new("cmp").arg(&src).arg(m.path("copy")));
    use std::os::unix::fs::MetadataExt;
    let backing = m
        .backing_files()
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() > 1 << 20)
        .unwrap();
    assert!(
        fs::metadata(backing).unwrap().blocks() * 512 < 4 << 20,
        "the copy stays sparse in CIPHERDIR"
    );
}

#[test]
fn editor_style_save_by_rename() {
    let m = TestMount::new();
    let doc = m.path("notes.md");
    fs::write(&doc, b"version 1\n").unwrap();
    let held = fs::File::open(&doc).unwrap();
    for v in 2..6 {
        // vim/gedit/VS Code: write a temp file, fsync, rename over.
        let tmp = m.path(&format!(".notes.md.swp{v}"));
        let body = format!("version {v}\n");
        let f = fs::File::create(&tmp).unwrap();
        use std::io::Write;
        (&f).write_all(body.as_bytes()).unwrap();
        f.sync_all().unwrap();
        fs::rename(&tmp, &doc).unwrap();
        assert_eq!(fs::read_to_string(&doc).unwrap(), body);
    }
    drop(held);
    let names: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["notes.md"]);
}
