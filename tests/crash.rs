//! Crash (issue 6): heavy writes through the mount, a SQLite database in
//! WAL mode committing transactions in a loop, then SIGKILL of the daemon.
//!
//! After the kill the mount must go away by itself (AutoUnmount). Then:
//! - fsck reports problems only in files written after their last fsync
//!   (the files being written at the moment of the kill) and the SQLite
//!   files, which are written continuously, and every one of them is a
//!   `crash_recoverable` chunk the rewrite journal holds (no damage);
//! - after remounting (which replays the journal) every file reads in full,
//!   never EIO;
//! - after remounting, every file fsync'd before the kill reads back byte
//!   for byte, the database passes `PRAGMA integrity_check`, holds every
//!   row of every committed transaction, and every row's checksum matches;
//! - `fsck --repair` then leaves the vault clean.
//!
//! The cycle runs `VEILFS_CRASH_ROUNDS` times (default 2), each with
//! `VEILFS_CRASH_MS` of writing before the kill (default 2500).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{BIN, Rng, TestMount, env_num, fsck_json, have, is_mounted, run_ok, wait_until};
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    hex::encode(&Sha256::digest(b)[..8])
}

/// One file a writer thread owns.
struct Tracked {
    /// Where it is (two candidates while a rename is in flight).
    paths: Vec<String>,
    /// The content after the last acknowledged operation.
    content: Vec<u8>,
    /// fsync succeeded after the last modification.
    synced: bool,
}

/// What the writers know about their files.
#[derive(Default)]
struct Ledger {
    files: Vec<Tracked>,
    /// Every path that ever held unsynced data or an in-flight rename.
    dirty: BTreeSet<String>,
    synced_ops: u64,
    ops: u64,
}

/// Runs one writer until `stop` or until an operation fails (the daemon
/// died). Owns the files under `/w{id}`.
fn writer(
    id: usize,
    round: u64,
    mnt: PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let dir = format!("/w{id}");
    let mut mine: Vec<usize> = Vec::new();
    let mut serial = round * 1_000_000;
    let p = |rel: &str| mnt.join(rel.trim_start_matches('/'));
    // Each step returns false when an I/O error ended the run.
    while !stop.load(Ordering::Relaxed) {
        serial += 1;
        let op = if mine.len() < 4 { 0 } else { rng.below(10) };
        let want_sync = rng.below(2) == 0;
        let ok = match op {
            // Create a new file, possibly in a subdirectory.
            0 | 1 => {
                let rel = if rng.below(3) == 0 {
                    format!("{dir}/sub/n{serial}")
                } else {
                    format!("{dir}/n{serial}")
                };
                let data = rng.blob(0, 70_000);
                let idx = {
                    let mut l = ledger.lock().unwrap();
                    l.dirty.insert(rel.clone());
                    l.files.push(Tracked {
                        paths: vec![rel.clone()],
                        content: Vec::new(),
                        synced: false,
                    });
                    l.files.len() - 1
                };
                mine.push(idx);
                (|| -> std::io::Result<()> {
                    let mut f = fs::File::create(p(&rel))?;
                    for piece in data.chunks(1 + rng.below(20_000) as usize) {
                        f.write_all(piece)?;
                        ledger.lock().unwrap().files[idx]
                            .content
                            .extend_from_slice(piece);
                    }
                    if want_sync {
                        f.sync_all()?;
                        let mut l = ledger.lock().unwrap();
                        l.files[idx].synced = true;
                        l.synced_ops += 1;
                    }
                    Ok(())
                })()
                .is_ok()
            }
            // Append (the common pattern of chat logs).
            2..=4 => {
                let idx = mine[rng.below(mine.len() as u64) as usize];
                let rel = {
                    let mut l = ledger.lock().unwrap();
                    let t = &mut l.files[idx];
                    t.synced = false;
                    let rel = t.paths[0].clone();
                    l.dirty.insert(rel.clone());
                    rel
                };
                let data = rng.blob(1, 12_000);
                (|| -> std::io::Result<()> {
                    let mut f = fs::OpenOptions::new().append(true).open(p(&rel))?;
                    for piece in data.chunks(1 + rng.below(5_000) as usize) {
                        f.write_all(piece)?;
                        ledger.lock().unwrap().files[idx]
                            .content
                            .extend_from_slice(piece);
                    }
                    if want_sync {
                        f.sync_data()?;
                        let mut l = ledger.lock().unwrap();
                        l.files[idx].synced = true;
                        l.synced_ops += 1;
                    }
                    Ok(())
                })()
                .is_ok()
            }
            // Overwrite inside the file.
            5 | 6 => {
                let idx = mine[rng.below(mine.len() as u64) as usize];
                let (rel, len) = {
                    let mut l = ledger.lock().unwrap();
                    let t = &mut l.files[idx];
                    t.synced = false;
                    let (rel, len) = (t.paths[0].clone(), t.content.len());
                    l.dirty.insert(rel.clone());
                    (rel, len)
                };
                let at = rng.below(len as u64 + 1) as usize;
                let data = rng.blob(1, 9_000);
                (|| -> std::io::Result<()> {
                    let mut f = fs::OpenOptions::new().write(true).open(p(&rel))?;
                    f.seek(SeekFrom::Start(at as u64))?;
                    f.write_all(&data)?;
                    {
                        let mut l = ledger.lock().unwrap();
                        let c = &mut l.files[idx].content;
                        if c.len() < at + data.len() {
                            c.resize(at + data.len(), 0);
                        }
                        c[at..at + data.len()].copy_from_slice(&data);
                    }
                    if want_sync {
                        f.sync_all()?;
                        let mut l = ledger.lock().unwrap();
                        l.files[idx].synced = true;
                        l.synced_ops += 1;
                    }
                    Ok(())
                })()
                .is_ok()
            }
            // Truncate (shrink).
            7 => {
                let idx = mine[rng.below(mine.len() as u64) as usize];
                let (rel, len) = {
                    let mut l = ledger.lock().unwrap();
                    let t = &mut l.files[idx];
                    t.synced = false;
                    let (rel, len) = (t.paths[0].clone(), t.content.len());
                    l.dirty.insert(rel.clone());
                    (rel, len)
                };
                let to = rng.below(len as u64 + 1);
                (|| -> std::io::Result<()> {
                    let f = fs::OpenOptions::new().write(true).open(p(&rel))?;
                    f.set_len(to)?;
                    ledger.lock().unwrap().files[idx]
                        .content
                        .truncate(to as usize);
                    if want_sync {
                        f.sync_all()?;
                        let mut l = ledger.lock().unwrap();
                        l.files[idx].synced = true;
                        l.synced_ops += 1;
                    }
                    Ok(())
                })()
                .is_ok()
            }
            // Rename within the writer's tree (content unchanged, so a
            // synced file stays synced; both names count as in flight).
            _ => {
                let idx = mine[rng.below(mine.len() as u64) as usize];
                let to = if rng.below(2) == 0 {
                    format!("{dir}/r{serial}")
                } else {
                    format!("{dir}/sub/r{serial}")
                };
                let from = {
                    let mut l = ledger.lock().unwrap();
                    let from = l.files[idx].paths[0].clone();
                    l.files[idx].paths.push(to.clone());
                    l.dirty.insert(from.clone());
                    l.dirty.insert(to.clone());
                    from
                };
                let ok = fs::rename(p(&from), p(&to)).is_ok();
                if ok {
                    let mut l = ledger.lock().unwrap();
                    l.files[idx].paths = vec![to.clone()];
                    // The rename completed: the names are settled again
                    // unless the file holds unsynced data.
                    if l.files[idx].synced {
                        l.dirty.remove(&from);
                        l.dirty.remove(&to);
                    }
                }
                ok
            }
        };
        ledger.lock().unwrap().ops += 1;
        if !ok {
            return;
        }
    }
}

/// Commits transactions in a loop, each `sqlite3` run a few transactions;
/// records the highest row id whose transaction was acknowledged.
fn sqlite_loop(db: PathBuf, stop: Arc<AtomicBool>, committed: Arc<AtomicU64>, seed: u64) {
    let mut rng = Rng(seed | 1);
    // Transactions of the previous round may have committed after the
    // last one acknowledged here (the kill hit before sqlite3 reported):
    // continue after whatever the database holds.
    let in_db: u64 = Command::new("sqlite3")
        .args(["-cmd", ".timeout 20000"])
        .arg(&db)
        .arg("SELECT coalesce(max(id), 0) FROM t;")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0);
    let mut next_id = committed.load(Ordering::SeqCst).max(in_db) + 1;
    while !stop.load(Ordering::Relaxed) {
        let mut sql = String::from("PRAGMA synchronous=FULL;\n");
        let mut last = 0;
        for _ in 0..3 {
            sql.push_str("BEGIN;\n");
            for _ in 0..1 + rng.below(8) {
                let size = 1 + rng.below(6000);
                sql.push_str(&format!(
                    "INSERT INTO t(id, v) VALUES({next_id}, randomblob({size}));\n"
                ));
                last = next_id;
                next_id += 1;
            }
            // Rewrite and delete older rows so pages are reused.
            let k = rng.below(13);
            sql.push_str(&format!(
                "UPDATE t SET v = randomblob(length(v)) WHERE id % 13 = {k} AND id > {} ;\n",
                next_id.saturating_sub(200)
            ));
            sql.push_str(&format!(
                "DELETE FROM t WHERE id % 97 = {k} AND id < {};\n",
                next_id.saturating_sub(500)
            ));
            sql.push_str("UPDATE t SET h = sha3(v) WHERE h IS NULL OR h != sha3(v);\nCOMMIT;\n");
        }
        sql.push_str(&format!("SELECT 'committed', {last};\n"));
        // Another connection may hold a lock for a moment (WAL recovery
        // after the previous round's kill): wait instead of failing.
        let out = Command::new("sqlite3")
            .arg("-bail")
            .args(["-cmd", ".timeout 20000"])
            .arg(&db)
            .arg(&sql)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                assert!(
                    text.contains(&format!("committed|{last}")),
                    "sqlite3 output: {text}"
                );
                committed.store(last, Ordering::SeqCst);
            }
            Ok(o) => {
                // Expected once the daemon is killed; before that it makes
                // the test fail with "no progress", so say why.
                eprintln!(
                    "sqlite loop stops: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return;
            }
            Err(e) => {
                eprintln!("sqlite loop stops: {e}");
                return;
            }
        }
    }
}

fn sqlite_ok(db: &Path, sql: &str) -> String {
    run_ok(Command::new("sqlite3").arg("-bail").arg(db).arg(sql))
        .trim()
        .to_string()
}

#[test]
fn sigkill_during_heavy_writes_and_sqlite_wal() {
    if !have("fusermount3") || !have("sqlite3") {
        return;
    }
    let rounds = env_num("VEILFS_CRASH_ROUNDS", 2);
    let busy = Duration::from_millis(env_num("VEILFS_CRASH_MS", 2500));
    let mut m = TestMount::new();
    let mnt = m.mnt.canonicalize().unwrap();
    let db = m.path("chat.db");
    sqlite_ok(
        &db,
        "PRAGMA journal_mode=WAL;\
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL, h BLOB);",
    );
    assert_eq!(sqlite_ok(&db, "PRAGMA journal_mode;"), "wal");
    const WRITERS: usize = 3;
    for w in 0..WRITERS {
        fs::create_dir_all(m.path(&format!("w{w}/sub"))).unwrap();
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let committed = Arc::new(AtomicU64::new(0));

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel::<&'static str>();
        ledger.lock().unwrap().dirty.clear();
        // Files left over from the previous round stay tracked: they are
        // synced or were repaired, and must survive this round too.
        let mut threads = Vec::new();
        for w in 0..WRITERS {
            let (mnt, ledger, stop, tx) =
                (mnt.clone(), ledger.clone(), stop.clone(), done_tx.clone());
            let seed = 0x9e37_79b9_7f4a_7c15 ^ ((round * 16 + w as u64) << 32);
            threads.push(std::thread::spawn(move || {
                writer(w, round, mnt, ledger, stop, seed);
                let _ = tx.send("writer");
            }));
        }
        {
            let (db, stop, committed, tx) =
                (db.clone(), stop.clone(), committed.clone(), done_tx.clone());
            threads.push(std::thread::spawn(move || {
                sqlite_loop(db, stop, committed, 77 + round);
                let _ = tx.send("sqlite");
            }));
        }
        drop(done_tx);
        // A connection that stays open, so the WAL is not checkpointed and
        // removed whenever a `sqlite3` run ends: at the kill it holds
        // committed transactions that recovery must replay.
        let mut holder = Command::new("sqlite3")
            .arg(&db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        writeln!(holder.stdin.as_ref().unwrap(), "SELECT count(*) FROM t;").unwrap();
        // Let the workload get going, then kill while it is busy.
        let start = Instant::now();
        let (synced0, committed0) = (
            ledger.lock().unwrap().synced_ops,
            committed.load(Ordering::SeqCst),
        );
        assert!(
            wait_until(busy + Duration::from_secs(60), || {
                start.elapsed() >= busy
                    && ledger.lock().unwrap().synced_ops > synced0
                    && committed.load(Ordering::SeqCst) > committed0
            }),
            "no progress: nothing fsync'd or committed"
        );
        let pid = m.pid();
        let (ops, synced_ops) = {
            let l = ledger.lock().unwrap();
            (l.ops, l.synced_ops)
        };
        eprintln!(
            "round {round}: killing the daemon (pid {pid}) after {:?}: {} ops, {} fsyncs, sqlite row {} committed",
            start.elapsed(),
            ops,
            synced_ops,
            committed.load(Ordering::SeqCst)
        );
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        // AutoUnmount: fusermount3 notices the daemon died and unmounts.
        assert!(
            wait_until(Duration::from_secs(20), || !common::in_proc_mounts(&mnt)),
            "the mount did not disappear after SIGKILL of the daemon"
        );
        m.wait_child(Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        for _ in 0..WRITERS + 1 {
            done_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("a workload thread hangs after the daemon died");
        }
        for t in threads {
            t.join().unwrap();
        }
        drop(holder.stdin.take());
        if !wait_until(Duration::from_secs(20), || {
            matches!(holder.try_wait(), Ok(Some(_)))
        }) {
            let _ = holder.kill();
        }
        let _ = holder.wait();
        assert!(!is_mounted(&m.mnt));
        // A `sqlite3` run that started after the mount vanished opened
        // chat.db in the bare mountpoint directory and created it there
        // (its inserts then fail: no table). Such files never reached the
        // vault; they would only make the remount refuse a non-empty
        // mountpoint. (The writers cannot do this: their files live in
        // subdirectories the bare directory lacks.)
        for stray in fs::read_dir(&m.mnt).unwrap() {
            let stray = stray.unwrap().path();
            eprintln!(
                "round {round}: removing {}, created in the bare mountpoint after the mount vanished",
                stray.display()
            );
            assert!(
                stray
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("chat.db"),
                "only sqlite3 can write into the bare mountpoint: {}",
                stray.display()
            );
            fs::remove_file(&stray).unwrap();
        }

        // fsck, before anything touches the vault again.
        let dirty: BTreeSet<String> = {
            let l = ledger.lock().unwrap();
            let mut d = l.dirty.clone();
            for t in l.files.iter().filter(|t| !t.synced) {
                d.extend(t.paths.iter().cloned());
            }
            for s in ["", "-wal", "-shm", "-journal"] {
                d.insert(format!("/chat.db{s}"));
            }
            d
        };
        let (rc, report) = fsck_json(&m, &[]);
        let problems = report["problems"].as_array().unwrap().clone();
        let mut kinds = BTreeSet::new();
        for p in &problems {
            let path = p["path"].as_str().unwrap();
            kinds.insert(p["kind"].as_str().unwrap().to_string());
            assert!(
                p["path_is_plain"] == true && dirty.contains(path),
                "fsck found a problem in a file that was not being written: {p:#}\n\
                 files written after their last fsync: {dirty:?}"
            );
        }
        eprintln!(
            "round {round}: fsck exit {rc}, {} problems {kinds:?} in {} files written after their last fsync",
            problems.len(),
            dirty.len()
        );
        // Every chunk the kill cut is one the rewrite journal recovers:
        // fsck reports it as `crash_recoverable`, never as damage.
        let cut = problems
            .iter()
            .filter(|p| p["kind"] == "crash_recoverable")
            .count();
        let damage: Vec<_> = problems
            .iter()
            .filter(|p| p["kind"] != "crash_recoverable")
            .collect();
        eprintln!(
            "round {round}: {cut} chunk(s) cut by the kill, all covered by the journal; {} chunk(s) cut in place that lose fsync'd data",
            damage.len()
        );
        assert!(
            rc == 0 && damage.is_empty(),
            "fsck exit {rc}: a crash left damage the journal does not cover: {damage:#?}"
        );

        // Remount: recovery replays the journal; every file reads in full,
        // never EIO, whether it was synced or not.
        m.mount();
        let mut checked = 0;
        {
            let l = ledger.lock().unwrap();
            for t in l.files.iter() {
                for p in t.paths.iter().filter(|p| mnt.join(&p[1..]).exists()) {
                    if let Err(e) = fs::read(mnt.join(&p[1..])) {
                        panic!("{p}: {e} after recovery (written since its last fsync)");
                    }
                }
            }
            for t in l.files.iter().filter(|t| t.synced) {
                let found: Vec<&String> = t
                    .paths
                    .iter()
                    .filter(|p| mnt.join(&p[1..]).exists())
                    .collect();
                assert_eq!(found.len(), 1, "{:?}: exactly one name exists", t.paths);
                let got = fs::read(mnt.join(&found[0][1..]))
                    .unwrap_or_else(|e| panic!("{}: {e} (fsync'd before the kill)", found[0]));
                if got != t.content {
                    // What the bytes are, for whoever chases this: the
                    // expected content grown back (a truncation undone),
                    // or another tracked file's content (the wrong file
                    // renamed or written).
                    let same_len = got.len().min(t.content.len());
                    let first_diff = (0..same_len).find(|&i| got[i] != t.content[i]);
                    let others: Vec<&String> = l
                        .files
                        .iter()
                        .filter(|o| o.content == got)
                        .flat_map(|o| o.paths.iter())
                        .collect();
                    panic!(
                        "{}: fsync'd content differs: {} bytes sha {} , expected {} bytes sha {}; \
                         first differing byte {first_diff:?}; files tracked with these bytes: {others:?}; \
                         mount log:\n{}",
                        found[0],
                        got.len(),
                        sha(&got),
                        t.content.len(),
                        sha(&t.content),
                        m.log_text()
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(sqlite_ok(&db, "PRAGMA integrity_check;"), "ok");
        let c = committed.load(Ordering::SeqCst);
        let missing = sqlite_ok(
            &db,
            &format!(
                "SELECT count(*) FROM (SELECT max(id) AS m FROM t) WHERE m IS NULL OR m < {c};"
            ),
        );
        assert_eq!(missing, "0", "rows up to {c} were committed");
        let bad = sqlite_ok(
            &db,
            "SELECT count(*) FROM t WHERE h IS NULL OR h != sha3(v);",
        );
        assert_eq!(bad, "0", "rows whose checksum does not match");
        let rows = sqlite_ok(&db, "SELECT count(*) FROM t;");
        eprintln!(
            "round {round}: {checked} fsync'd files identical, database ok ({rows} rows, last committed {c})"
        );

        // Bring every file to a known state for the next round: what the
        // mount reads now is the truth for files that were not synced.
        {
            let mut l = ledger.lock().unwrap();
            for t in l.files.iter_mut() {
                let found: Vec<String> = t
                    .paths
                    .iter()
                    .filter(|p| mnt.join(&p[1..]).exists())
                    .cloned()
                    .collect();
                match found.as_slice() {
                    [one] if t.synced => t.paths = vec![one.clone()],
                    [one] => {
                        // Unsynced content may have lost a partial chunk
                        // (a truncate cut short); re-read what survived.
                        t.content = fs::read(mnt.join(&one[1..])).unwrap_or_default();
                        t.paths = vec![one.clone()];
                        let f = fs::OpenOptions::new()
                            .write(true)
                            .open(mnt.join(&one[1..]))
                            .unwrap();
                        f.set_len(t.content.len() as u64).unwrap();
                        f.sync_all().unwrap();
                        t.synced = true;
                    }
                    _ => t.paths.clear(),
                }
            }
            l.files.retain(|t| !t.paths.is_empty());
        }
        m.unmount();
        // A crash leaves at most what --repair can fix without data loss,
        // or damage in the files being written; after --repair and
        // rewriting those, the vault is clean.
        let (_, repaired) = fsck_json(&m, &["--repair"]);
        let (rc, after) = fsck_json(&m, &[]);
        assert_eq!(rc, 0, "after --repair: {repaired:#}\nstill: {after:#}");
        m.mount();
    }
    m.unmount();
}

/// A rewrite the crash cut, with its journal record: fsck calls it
/// `crash_recoverable` (exit 0, not damage), `--repair` puts the old chunk
/// back, and the file then reads its fsync'd bytes again. Without the
/// record the same cut chunk is damage. The cut chunk lies inside a
/// record's image of several chunks, not at its start (fsck once matched
/// only an image's first chunk, and called such a cut damage).
#[test]
fn fsck_tells_a_journaled_cut_from_damage_and_repair_restores_it() {
    use veilfs::content::ChunkLayout;
    use veilfs::cryptfile::CryptFile;
    use veilfs::cryptfile::journal::{Intent, Journal};

    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path().join("cipher");
    let state = tmp.path().join("state");
    let out = run_ok(Command::new(BIN).args(["init", "--key-only"]).arg(&cipher));
    let key_text = common::extract_key(&out).unwrap();
    let keyfile = tmp.path().join("key");
    fs::write(&keyfile, &key_text).unwrap();
    let key = veilfs::keys::MasterKey::parse(&key_text).unwrap();
    let vault = veilfs::vault::unlock_with_key(&cipher, key).unwrap();
    let content = vault.content_cipher();
    assert_eq!(content.layout(), ChunkLayout::new(4096).unwrap());
    let names = vault.name_cipher();
    let backing =
        veilfs::store::backing_name(&names, &names.root_iv(), "chat.db".as_ref()).unwrap();
    let path = cipher.join(backing.entry());
    let jdir = veilfs::cryptfile::journal::journal_dir_in(&state, &cipher, &vault.master.key_id())
        .unwrap();

    let original: Vec<u8> = (0..3 * 4096).map(|i| (i * 7 % 251) as u8).collect();
    {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        CryptFile::new(&file, &content, None)
            .write_at(0, &original)
            .unwrap();
        file.sync_all().unwrap();
        // The crash: a rewrite of chunks 0 to 2 recorded in one image (as
        // a write of several chunks records them), then cut after the
        // first page of chunk 1, which is not where the image starts.
        let root = fs::File::open(&cipher).unwrap();
        let journal = Journal::open(&jdir, &root).unwrap();
        let image_at = content.layout().chunk_cipher_start(0);
        let at = content.layout().chunk_cipher_start(1);
        let mut old = vec![0u8; 3 * content.layout().stored_chunk_len()];
        veilfs::store::pread_full(&file, &mut old, image_at).unwrap();
        let mut hdr = [0u8; 18];
        veilfs::store::pread_full(&file, &mut hdr, 0).unwrap();
        let header = veilfs::content::FileHeader::parse(&hdr, content.layout()).unwrap();
        let _pending = journal
            .record(
                0,
                &Intent {
                    path: backing.entry().as_bytes(),
                    header: Some(&header),
                    old_backing: file.metadata().unwrap().len(),
                    images: &[(image_at, &old)],
                },
            )
            .unwrap();
        let page = (at / 4096 + 1) * 4096;
        veilfs::store::pwrite_full(&file, &vec![0x5a; (page - at) as usize], at).unwrap();
        std::mem::forget(_pending);
        std::mem::forget(journal);
    }
    let fsck = |extra: &[&str], with_journal: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["fsck", "--json", "--key-file"])
            .arg(&keyfile)
            .args(extra)
            .arg(&cipher);
        if with_journal {
            cmd.env("VEILFS_STATE_DIR", &state);
        } else {
            cmd.env("VEILFS_STATE_DIR", tmp.path().join("elsewhere"));
        }
        let o = cmd.output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let kinds: Vec<String> = v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap().to_string())
            .collect();
        (o.status.code().unwrap(), kinds)
    };
    assert_eq!(
        fsck(&[], false),
        (6, vec!["chunk_unauthentic".to_string()]),
        "without its journal record the cut chunk is damage"
    );
    assert_eq!(
        fsck(&[], true),
        (0, vec!["crash_recoverable".to_string()]),
        "with the record it is a crash the journal recovers"
    );
    let (rc, _) = fsck(&["--repair"], true);
    assert_eq!(rc, 0);
    assert_eq!(fsck(&[], false), (0, vec![]), "clean after --repair");
    let got = run_ok_bytes(
        Command::new(BIN)
            .args(["cat", "--key-file"])
            .arg(&keyfile)
            .arg(&cipher)
            .arg("/chat.db"),
    );
    assert!(got == original, "the fsync'd bytes are back");
}

fn run_ok_bytes(cmd: &mut Command) -> Vec<u8> {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// A name of a hard-linked file goes (an unlink, or a rename over it)
/// after a rewrite through that name that the journal recorded. The file
/// lives on under its other name, and recovery finds records by path, so
/// the daemon makes those rewrites durable before the name goes. After a
/// SIGKILL, the remount has no record it cannot place (it warned for each
/// such record at every mount, until `fsck --repair`: fsstress with hard
/// links left 50-130 per kill), and the other names read the new bytes.
#[test]
fn records_written_through_a_removed_hard_link_are_not_stranded() {
    use std::os::unix::fs::FileExt;
    let mut m = TestMount::new();
    let old = common::pattern(3 * 4096, 1);
    let mut new = old.clone();
    new[4096..8192].copy_from_slice(&common::pattern(4096, 2));
    for (name, link) in [("a", "a2"), ("c", "c2")] {
        fs::write(m.path(name), &old).unwrap();
        fs::File::open(m.path(name)).unwrap().sync_all().unwrap();
        fs::hard_link(m.path(name), m.path(link)).unwrap();
        // A rewrite of a durable middle chunk through the name about to
        // go: the daemon records it (at close, through the writeback
        // cache).
        let f = fs::OpenOptions::new()
            .write(true)
            .open(m.path(name))
            .unwrap();
        f.write_all_at(&new[4096..8192], 4096).unwrap();
        drop(f);
    }
    fs::remove_file(m.path("a")).unwrap();
    fs::write(m.path("other"), b"x").unwrap();
    fs::rename(m.path("other"), m.path("c")).unwrap();
    m.kill_expecting_auto_unmount();
    m.mount();
    let log = m.log_text();
    assert!(!log.contains("could not be applied"), "{log}");
    assert_eq!(fs::read(m.path("a2")).unwrap(), new);
    assert_eq!(fs::read(m.path("c2")).unwrap(), new);
    assert_eq!(fs::read(m.path("c")).unwrap(), b"x");
}
