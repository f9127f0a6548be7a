//! No committed message is lost to a crash (issue 7): a chat-like SQLite
//! writer (WAL mode, `synchronous=FULL`, 1 to 8 rows per transaction) runs
//! on the mount and logs each transaction id to a ledger outside the mount
//! only after `COMMIT` returned. The daemon is SIGKILLed at a random
//! moment, the vault is remounted (which replays the rewrite journal), and
//! then `PRAGMA integrity_check` must say ok and every transaction in the
//! ledger must be in the database, row for row.
//!
//! `VEILFS_KILL_ROUNDS` rounds (default 30); `VEILFS_KILL_SEED` picks the
//! kill moments.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Rng, TestMount, env_num, have, run_ok, wait_until};

const WRITER: &str = r#"
import os, random, sqlite3, sys
db, ledger, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
con = sqlite3.connect(db, isolation_level=None, timeout=30)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=FULL")
con.execute("PRAGMA wal_autocheckpoint=64")
con.execute("CREATE TABLE IF NOT EXISTS m(txn INTEGER, k INTEGER, body BLOB, PRIMARY KEY(txn, k))")
txn = (con.execute("SELECT max(txn) FROM m").fetchone()[0] or 0) + 1
log = open(ledger, "a")
# Once the killed daemon's mount is gone, the same path names the plain
# directory under it: a commit that lands there is not on the mount.
mount_dev = os.stat(os.path.dirname(db)).st_dev
while True:
    n = rnd.randint(1, 8)
    rows = [(txn, k, os.urandom(rnd.choice([40, 120, 300, 900, 2500, 7000]))) for k in range(n)]
    try:
        con.execute("BEGIN")
        con.executemany("INSERT INTO m VALUES (?, ?, ?)", rows)
        con.execute("COMMIT")
    except Exception as e:
        sys.exit(0)
    if os.stat(os.path.dirname(db)).st_dev != mount_dev:
        sys.exit(0)
    log.write(f"{txn} {n}\n")
    log.flush()
    txn += 1
"#;

fn sqlite(db: &Path, sql: &str) -> String {
    run_ok(Command::new("sqlite3").arg("-bail").arg(db).arg(sql))
        .trim()
        .to_string()
}

fn start_writer(script: &Path, db: &Path, ledger: &Path, seed: u64) -> Child {
    Command::new("python3")
        .arg(script)
        .arg(db)
        .arg(ledger)
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the python3 writer")
}

#[test]
fn sigkill_loses_no_committed_sqlite_transaction() {
    if !have("fusermount3") || !have("sqlite3") || !have("python3") {
        return;
    }
    let rounds = env_num("VEILFS_KILL_ROUNDS", 30);
    let mut rng = Rng(env_num("VEILFS_KILL_SEED", 7) | 1);
    let mut m = TestMount::new();
    let script = m.tmp.path().join("writer.py");
    std::fs::write(&script, WRITER).unwrap();
    let ledger = m.tmp.path().join("ledger");
    std::fs::write(&ledger, "").unwrap();
    let db = m.mnt.join("msgstore.db");
    for round in 0..rounds {
        let before = std::fs::metadata(&ledger).unwrap().len();
        let mut writer = start_writer(&script, &db, &ledger, round);
        // Let the writer get going, then kill at a random moment of its
        // commit loop (a fresh database needs its first commits first).
        let ok = wait_until(Duration::from_secs(20), || {
            std::fs::metadata(&ledger).map(|m| m.len()).unwrap_or(0) > before
        });
        assert!(ok, "round {round}: the writer committed nothing in 20 s");
        std::thread::sleep(Duration::from_millis(50 + rng.below(700)));
        let pid = m.pid();
        assert!(
            common::in_proc_mounts(&m.mnt),
            "round {round}: not mounted before the kill"
        );
        let t0 = std::time::Instant::now();
        run_ok(Command::new("kill").args(["-KILL", &pid.to_string()]));
        assert!(
            wait_until(Duration::from_secs(20), || !common::in_proc_mounts(&m.mnt)),
            "round {round}: the mount did not go away after SIGKILL"
        );
        m.wait_child(Duration::from_secs(10));
        if !wait_until(Duration::from_secs(20), || {
            matches!(writer.try_wait(), Ok(Some(_)))
        }) {
            let _ = writer.kill();
        }
        let _ = writer.wait();
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "round {round}: the writer went on for {:?} after the kill",
            t0.elapsed()
        );

        m.mount();
        let check = Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA integrity_check;")
            .output()
            .unwrap();
        let verdict = String::from_utf8_lossy(&check.stdout).trim().to_string();
        if verdict != "ok" {
            panic!(
                "round {round}: integrity_check says {verdict:?} ({}); log:\n{}",
                String::from_utf8_lossy(&check.stderr),
                m.log_text()
            );
        }
        let text = std::fs::read_to_string(&ledger).unwrap();
        let committed: Vec<(u64, u64)> = text
            .lines()
            .map(|l| {
                let mut it = l.split(' ').map(|x| x.parse::<u64>().unwrap());
                (it.next().unwrap(), it.next().unwrap())
            })
            .collect();
        let last = committed.last().map_or(0, |c| c.0);
        let want_rows: u64 = committed.iter().map(|c| c.1).sum();
        let got = sqlite(
            &db,
            &format!("SELECT count(DISTINCT txn), count(*) FROM m WHERE txn <= {last};"),
        );
        let want = format!("{}|{want_rows}", committed.len());
        if got != want {
            let have = sqlite(
                &db,
                "SELECT group_concat(txn) FROM (SELECT DISTINCT txn FROM m ORDER BY txn);",
            );
            let have: std::collections::BTreeSet<u64> = have
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let missing: Vec<u64> = committed
                .iter()
                .map(|c| c.0)
                .filter(|t| !have.contains(t))
                .take(20)
                .collect();
            eprintln!(
                "round {round}: got {got}, want {want}; missing txns {missing:?}; log:\n{}",
                m.log_text()
            );
        }
        assert_eq!(
            got, want,
            "round {round}: committed transactions (count|rows) up to {last} are missing"
        );
        // The ledger's truth for the next round: what the database holds
        // beyond it was never acknowledged and may come or go.
        sqlite(&db, &format!("DELETE FROM m WHERE txn > {last};"));
        eprintln!(
            "round {round}: {} transactions, {want_rows} rows committed and present",
            committed.len()
        );
    }
    eprintln!("{rounds} kills: no round lost a committed transaction, no database was unreadable");
    m.unmount();
    m.assert_fsck_clean(&format!("{rounds} kills"));
}
