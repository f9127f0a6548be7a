//! Two devices, one vault, real Syncthing (Debian package `syncthing`).
//!
//! Each test runs two Syncthing instances on loopback only: their own home
//! directories, GUI/REST on 127.0.0.1 with an API key set here, global and
//! local discovery, relays and NAT traversal off, each device told the
//! other's ID and `tcp://127.0.0.1:PORT` address. Each shares its own copy
//! of CIPHERDIR and each device mounts its copy with the same password.
//! Waiting is done on the REST API (and on the trees themselves), with
//! timeouts: there are no blind sleeps. Every Syncthing process started
//! here is killed on drop, also when a test fails.
//!
//! The tests fail, never skip, when `syncthing` or `sqlite3` is missing;
//! scripts/test.sh installs both.

mod common;
mod sync_common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pattern;
use serde_json::Value;
use sync_common::{
    DeviceMount, Item, free_port, init_vault, require, run_ok, test_root, tree, wait_for,
};
use veilfs::conflict::{self, Parsed};
use veilfs::names::{EntryKind, classify_entry};

const FOLDER: &str = "veilfs-vault";
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);

/// One Syncthing instance, killed on drop.
struct Syncthing {
    name: String,
    home: PathBuf,
    folder: PathBuf,
    id: String,
    gui: u16,
    listen: u16,
    api_key: String,
    child: Option<Child>,
    log: PathBuf,
}

fn replace_once(text: &mut String, from: &str, to: &str) {
    assert_eq!(
        text.matches(from).count(),
        1,
        "Syncthing's generated config.xml has no single {from:?}: unexpected version?"
    );
    *text = text.replacen(from, to, 1);
}

/// Replaces every `<listenAddress>` with one loopback address.
///
/// `syncthing generate` writes `default` when port 22000 is free and, when
/// it is not, a tcp, a relay and a quic address on a free port. Tests that
/// generate at the same moment probe port 22000 at the same moment, so
/// either form can come out: CI once got the second.
fn set_listen_address(config: &mut String, port: u16) {
    const OPEN: &str = "<listenAddress>";
    const CLOSE: &str = "</listenAddress>";
    let mut kept = String::with_capacity(config.len());
    let mut rest = config.as_str();
    let mut replaced = 0;
    while let Some(start) = rest.find(OPEN) {
        let end = start + rest[start..].find(CLOSE).expect("closed listenAddress") + CLOSE.len();
        if replaced == 0 {
            kept.push_str(&rest[..start]);
            kept.push_str(&format!("{OPEN}tcp://127.0.0.1:{port}{CLOSE}"));
        } else {
            // Drop the element and the indentation and newline before it.
            kept.push_str(rest[..start].trim_end());
        }
        replaced += 1;
        rest = &rest[end..];
    }
    kept.push_str(rest);
    assert!(
        replaced > 0,
        "Syncthing's generated config.xml has no <listenAddress>: unexpected version?"
    );
    *config = kept;
}

impl Syncthing {
    /// Generates keys and a config for a device syncing `folder`.
    fn generate(root: &Path, name: &str, folder: &Path) -> Self {
        let home = root.join(format!("syncthing-{name}"));
        run_ok(
            Command::new("syncthing")
                .arg("generate")
                .arg(format!("--home={}", home.display()))
                .arg("--no-default-folder")
                .env("HOME", root),
        );
        let id = run_ok(
            Command::new("syncthing")
                .args(["serve", "--device-id"])
                .arg(format!("--home={}", home.display()))
                .env("HOME", root),
        )
        .trim()
        .to_string();
        assert_eq!(id.len(), 63, "unexpected device ID {id:?}");
        Syncthing {
            name: name.into(),
            log: root.join(format!("syncthing-{name}.log")),
            home,
            folder: folder.into(),
            id,
            gui: free_port(),
            listen: free_port(),
            api_key: format!("veilfs-test-{name}-{}", std::process::id()),
            child: None,
        }
    }

    /// Edits config.xml: loopback only, nothing global, the peer device,
    /// the shared folder with its watcher on, a short rescan interval and
    /// a short pause before a failed pull is retried (60 s by default,
    /// which a busy CI machine can hit when a file changes mid-pull).
    fn configure(&self, peer: &Syncthing) {
        let path = self.home.join("config.xml");
        let mut c = fs::read_to_string(&path).unwrap();
        set_listen_address(&mut c, self.listen);
        for (from, to) in [
            (
                "<globalAnnounceEnabled>true",
                "<globalAnnounceEnabled>false",
            ),
            ("<localAnnounceEnabled>true", "<localAnnounceEnabled>false"),
            ("<relaysEnabled>true", "<relaysEnabled>false"),
            ("<natEnabled>true", "<natEnabled>false"),
            ("<startBrowser>true", "<startBrowser>false"),
            ("<urAccepted>0<", "<urAccepted>-1<"),
            ("<autoUpgradeIntervalH>12<", "<autoUpgradeIntervalH>0<"),
            (
                "<crashReportingEnabled>true",
                "<crashReportingEnabled>false",
            ),
            ("<reconnectionIntervalS>60<", "<reconnectionIntervalS>1<"),
            (
                "<minHomeDiskFree unit=\"%\">1<",
                "<minHomeDiskFree unit=\"%\">0<",
            ),
            ("<setLowPriority>true", "<setLowPriority>false"),
        ] {
            replace_once(&mut c, from, to);
        }
        let gui_start = c.find("<gui ").expect("config has a <gui> element");
        let gui_end = c.find("</gui>").unwrap() + "</gui>".len();
        let gui = format!(
            "<gui enabled=\"true\" tls=\"false\" debugging=\"false\">\n\
             \x20       <address>127.0.0.1:{}</address>\n\
             \x20       <apikey>{}</apikey>\n\
             \x20       <theme>default</theme>\n    </gui>",
            self.gui, self.api_key
        );
        c.replace_range(gui_start..gui_end, &gui);
        let extra = format!(
            r#"<device id="{peer_id}" name="{peer_name}" compression="metadata" introducer="false" skipIntroductionRemovals="false" introducedBy="">
        <address>tcp://127.0.0.1:{peer_port}</address>
        <paused>false</paused>
        <autoAcceptFolders>false</autoAcceptFolders>
    </device>
    <folder id="{FOLDER}" label="vault" path="{path}" type="sendreceive" rescanIntervalS="10" fsWatcherEnabled="true" fsWatcherDelayS="1" ignorePerms="false" autoNormalize="true">
        <filesystemType>basic</filesystemType>
        <device id="{my_id}" introducedBy=""></device>
        <device id="{peer_id}" introducedBy=""></device>
        <minDiskFree unit="%">0</minDiskFree>
        <versioning></versioning>
        <markerName>.stfolder</markerName>
        <maxConflicts>10</maxConflicts>
        <pullerPauseS>2</pullerPauseS>
    </folder>
    "#,
            peer_id = peer.id,
            peer_name = peer.name,
            peer_port = peer.listen,
            path = self.folder.display(),
            my_id = self.id,
        );
        c.insert_str(gui_start, &extra);
        fs::write(&path, c).unwrap();
    }

    fn start(&mut self) {
        let log = fs::File::create(&self.log).unwrap();
        let child = Command::new("syncthing")
            .arg("serve")
            .arg(format!("--home={}", self.home.display()))
            .args([
                "--no-browser",
                "--no-restart",
                "--no-upgrade",
                "--logflags=3",
            ])
            .env("HOME", self.home.parent().unwrap())
            .env("STNOUPGRADE", "1")
            .env("STNODEFAULTFOLDER", "1")
            .env_remove("STGUIADDRESS")
            .env_remove("STGUIAPIKEY")
            // Syncthing re-executes itself as a child process: give both a
            // process group of their own so that drop ends both.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start syncthing: {e}"));
        self.child = Some(child);
        let name = self.name.clone();
        wait_for(
            &format!("Syncthing {name}'s REST API"),
            Duration::from_secs(60),
            || {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                    panic!(
                        "Syncthing {name} exited with {status}:\n{}",
                        fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
                let v = self.get("/rest/system/ping")?;
                Ok(v["ping"] == "pong")
            },
        );
    }

    /// One REST call over HTTP/1.0 (the server closes the connection after
    /// the response, so no chunked encoding).
    fn call(&self, method: &str, path: &str) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.gui))
            .map_err(|e| format!("{}: connect: {e}", self.name))?;
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nX-API-Key: {}\r\n\
             Content-Length: 0\r\n\r\n",
            self.gui, self.api_key
        )
        .map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)
            .map_err(|e| format!("{}: {method} {path}: {e}", self.name))?;
        let resp = String::from_utf8_lossy(&resp);
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let status = head.split_whitespace().nth(1).unwrap_or("?");
        if status != "200" {
            return Err(format!(
                "{}: {method} {path}: HTTP {status}: {body}",
                self.name
            ));
        }
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(body).map_err(|e| format!("{}: {path}: {e}: {body}", self.name))
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        self.call("GET", path)
    }

    fn post(&self, path: &str) {
        self.call("POST", path).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Scans the folder now (returns when the scan is done).
    fn scan(&self) {
        self.post(&format!("/rest/db/scan?folder={FOLDER}"));
    }

    fn connected_to(&self, peer: &Syncthing) -> Result<bool, String> {
        let v = self.get("/rest/system/connections")?;
        Ok(v["connections"][&peer.id]["connected"] == Value::Bool(true))
    }

    fn pause(&self, peer: &Syncthing) {
        self.post(&format!("/rest/system/pause?device={}", peer.id));
    }

    fn resume(&self, peer: &Syncthing) {
        self.post(&format!("/rest/system/resume?device={}", peer.id));
    }
}

impl Drop for Syncthing {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The group is the one `start` made for this instance only.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- syncthing {} log (tail) ---\n{}",
                self.name,
                tail(&fs::read_to_string(&self.log).unwrap_or_default(), 60)
            );
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Syncthing's own files in a synced folder, not part of the vault.
fn syncthing_file(name: &str) -> bool {
    name == ".stfolder"
        || name == ".stversions"
        || name == ".stignore"
        || name.starts_with(".syncthing.")
        || name.starts_with("~syncthing~")
}

/// A backing tree as Syncthing should make it identical on both devices.
fn backing_tree(dir: &Path) -> Result<BTreeMap<String, Item>, String> {
    tree(dir, &syncthing_file)
}

/// Two devices, A and B, each with Syncthing and a mount of its copy.
struct Pair {
    // Field order is drop order: mounts first, then Syncthing, then files.
    a: DeviceMount,
    b: DeviceMount,
    sa: Syncthing,
    sb: Syncthing,
    _tmp: tempfile::TempDir,
}

impl Pair {
    /// A creates the vault; Syncthing carries it to B; both mount.
    fn new() -> Pair {
        require("syncthing", "syncthing");
        require("fusermount3", "fuse3");
        let tmp = tempfile::Builder::new()
            .prefix("veilfs-syncthing")
            .tempdir_in(test_root())
            .unwrap();
        let root = tmp.path();
        let pass = root.join("password");
        fs::write(&pass, "correct horse battery staple").unwrap();
        let (ca, cb) = (root.join("a/cipher"), root.join("b/cipher"));
        fs::create_dir_all(root.join("a")).unwrap();
        init_vault(&ca, &pass);
        fs::create_dir_all(&cb).unwrap();
        for c in [&ca, &cb] {
            fs::create_dir(c.join(".stfolder")).unwrap();
        }
        let mut sa = Syncthing::generate(root, "a", &ca);
        let mut sb = Syncthing::generate(root, "b", &cb);
        sa.configure(&sb);
        sb.configure(&sa);
        sa.start();
        sb.start();
        wait_connected(&sa, &sb);
        settle(&sa, &sb);
        let a = DeviceMount::mount("a", &ca, &root.join("a/mnt"), &pass);
        let b = DeviceMount::mount("b", &cb, &root.join("b/mnt"), &pass);
        Pair {
            a,
            b,
            sa,
            sb,
            _tmp: tmp,
        }
    }

    /// Pauses both sides and waits until they are disconnected.
    fn disconnect(&self) {
        self.sa.pause(&self.sb);
        self.sb.pause(&self.sa);
        wait_for("the devices to disconnect", SYNC_TIMEOUT, || {
            Ok(!self.sa.connected_to(&self.sb)? && !self.sb.connected_to(&self.sa)?)
        });
    }

    fn reconnect(&self) {
        self.sa.resume(&self.sb);
        self.sb.resume(&self.sa);
        wait_connected(&self.sa, &self.sb);
    }

    /// Scans both folders and waits until Syncthing is done.
    fn sync(&self) {
        self.sa.scan();
        self.sb.scan();
        settle(&self.sa, &self.sb);
    }

    /// Waits until both mounts show the same tree (the kernel may cache
    /// names and attributes for up to a second).
    fn mounts_agree(&self) -> BTreeMap<String, Item> {
        let mut last = BTreeMap::new();
        wait_for("both mounts to show the same tree", SYNC_TIMEOUT, || {
            let ta = tree(&self.a.mnt, &|_| false)?;
            let tb = tree(&self.b.mnt, &|_| false)?;
            if ta == tb {
                last = ta;
                return Ok(true);
            }
            Err(format!("A: {ta:#?}\nB: {tb:#?}"))
        });
        last
    }
}

fn wait_connected(sa: &Syncthing, sb: &Syncthing) {
    wait_for("the devices to connect", SYNC_TIMEOUT, || {
        Ok(sa.connected_to(sb)? && sb.connected_to(sa)?)
    });
}

/// In sync: both folders idle with nothing needed, each peer complete as
/// the other sees it, and the two backing trees identical.
fn settle(sa: &Syncthing, sb: &Syncthing) {
    wait_for("Syncthing to sync both devices", SYNC_TIMEOUT, || {
        for (x, y) in [(sa, sb), (sb, sa)] {
            let st = x.get(&format!("/rest/db/status?folder={FOLDER}"))?;
            let complete = ["Files", "Directories", "Symlinks", "Deleted"]
                .iter()
                .all(|k| st[format!("global{k}")] == st[format!("local{k}")]);
            if st["state"] != "idle"
                || st["needTotalItems"] != 0
                || st["pullErrors"] != 0
                || !complete
            {
                let errors = x.get(&format!("/rest/folder/errors?folder={FOLDER}"))?;
                return Err(format!("{}: status {st}; errors {errors}", x.name));
            }
            let c = x.get(&format!(
                "/rest/db/completion?folder={FOLDER}&device={}",
                y.id
            ))?;
            if c["completion"].as_f64() != Some(100.0) || c["needItems"] != 0 {
                return Err(format!("{}: completion of {}: {c}", x.name, y.name));
            }
        }
        let (ta, tb) = (backing_tree(&sa.folder)?, backing_tree(&sb.folder)?);
        if ta != tb {
            return Err(format!(
                "backing trees differ:\nA: {:?}\nB: {:?}",
                ta.keys().collect::<Vec<_>>(),
                tb.keys().collect::<Vec<_>>()
            ));
        }
        Ok(true)
    });
}

/// Backing names that are sync-client conflict copies, in a whole tree.
fn conflict_copies(dir: &Path) -> Vec<String> {
    backing_tree(dir)
        .unwrap()
        .keys()
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap();
            // A proper encrypted name can parse as a OneDrive copy of its
            // own prefix (parse needs no key); Syncthing's copies are
            // foreign names.
            name.contains("sync-conflict")
                || (classify_entry(name) == EntryKind::Foreign
                    && conflict::parse(name) != Parsed::NotConflict)
        })
        .cloned()
        .collect()
}

fn sqlite(db: &Path, sql: &str) -> String {
    run_ok(Command::new("sqlite3").arg("-batch").arg(db).arg(sql))
}

#[test]
fn device_b_sees_what_device_a_writes() {
    require("sqlite3", "sqlite3");
    let p = Pair::new();
    let a = |rel: &str| p.a.path(rel);
    fs::create_dir_all(a("Chats/Alice")).unwrap();
    fs::create_dir_all(a("Media/2026-11")).unwrap();
    fs::write(a("Chats/Alice/notes.txt"), b"hello from A\n").unwrap();
    fs::write(a("Media/2026-11/photo.jpg"), pattern(3 << 20, 7)).unwrap();
    fs::write(a("empty"), b"").unwrap();
    fs::write(a("one-chunk"), pattern(4096, 1)).unwrap();
    let long = format!("{}.txt", "ü".repeat(125));
    fs::write(a(&format!("Chats/{long}")), b"long name").unwrap();
    std::os::unix::fs::symlink("Chats/Alice/notes.txt", a("latest")).unwrap();
    fs::write(a("to-delete.txt"), b"gone soon").unwrap();
    fs::create_dir_all(a("old/inner")).unwrap();
    fs::write(a("old/inner/x"), b"x").unwrap();
    // First round, then renames and deletes on top of synced state.
    p.sync();
    fs::rename(
        a("Media/2026-11/photo.jpg"),
        a("Media/2026-11/IMG_0001.jpg"),
    )
    .unwrap();
    fs::rename(a("Chats/Alice"), a("Chats/Alice Smith")).unwrap();
    fs::remove_file(a("to-delete.txt")).unwrap();
    fs::remove_dir_all(a("old")).unwrap();
    // A chat database in WAL mode, closed cleanly.
    let db = a("Chats/chat.db");
    let expect = sqlite(
        &db,
        "PRAGMA journal_mode=WAL;
         CREATE TABLE messages(id INTEGER PRIMARY KEY, sender TEXT, body TEXT, ts INTEGER);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)
           INSERT INTO messages(sender, body, ts)
           SELECT 'alice', printf('message %d %s', x, hex(randomblob(40))), x FROM c;
         CREATE INDEX by_ts ON messages(ts);
         UPDATE messages SET body = body || ' (edited)' WHERE id % 7 = 0;
         DELETE FROM messages WHERE id % 11 = 0;
         SELECT count(*), sum(length(body)) FROM messages;",
    );
    assert!(
        !a("Chats/chat.db-wal").exists(),
        "WAL checkpointed on close"
    );
    p.sync();

    let seen = p.mounts_agree();
    let want: Vec<&str> = vec![
        "Chats",
        "Chats/Alice Smith",
        "Chats/Alice Smith/notes.txt",
        "Chats/chat.db",
        "Media",
        "Media/2026-11",
        "Media/2026-11/IMG_0001.jpg",
        "empty",
        "latest",
        "one-chunk",
    ];
    let mut got: Vec<&str> = seen.keys().map(String::as_str).collect();
    got.retain(|k| !k.starts_with(&format!("Chats/{}", &long[..10])));
    assert_eq!(got, want);
    assert!(seen.contains_key(&format!("Chats/{long}")));
    assert_eq!(
        fs::read(p.b.path("Media/2026-11/IMG_0001.jpg")).unwrap(),
        pattern(3 << 20, 7)
    );
    assert_eq!(
        fs::read_link(p.b.path("latest")).unwrap(),
        Path::new("Chats/Alice/notes.txt")
    );
    let on_b = sqlite(
        &p.b.path("Chats/chat.db"),
        "PRAGMA integrity_check; SELECT count(*), sum(length(body)) FROM messages;",
    );
    // journal_mode prints "wal" first on A.
    assert_eq!(on_b, format!("ok\n{}", expect.trim_start_matches("wal\n")));
    assert!(conflict_copies(&p.sa.folder).is_empty());
}

#[test]
fn same_new_folder_on_both_devices_does_not_conflict() {
    let p = Pair::new();
    p.disconnect();
    fs::create_dir_all(p.a.path("Trip 2026/Day 1")).unwrap();
    fs::write(p.a.path("Trip 2026/Day 1/a.jpg"), b"from A").unwrap();
    fs::create_dir_all(p.b.path("Trip 2026/Day 1")).unwrap();
    fs::write(p.b.path("Trip 2026/Day 1/b.jpg"), b"from B").unwrap();
    p.sa.scan();
    p.sb.scan();
    p.reconnect();
    p.sync();
    // Each device gave the folders an IV of its own (docs/FORMAT.md §6):
    // Syncthing keeps one veilfs.diriv as a conflict copy, which veilfs
    // reads as a second IV of the same folder; the mounts merge the two
    // "Day 1" folders. No entry is a conflict copy.
    let seen = p.mounts_agree();
    p.sync();
    for s in [&p.sa, &p.sb] {
        let entry_copies: Vec<String> = conflict_copies(&s.folder)
            .into_iter()
            .filter(|rel| !conflict::is_dir_iv_copy(rel.rsplit('/').next().unwrap()))
            .collect();
        assert_eq!(
            entry_copies,
            Vec::<String>::new(),
            "device {}: a folder created on both devices must not conflict",
            s.name
        );
    }
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "Trip 2026",
            "Trip 2026/Day 1",
            "Trip 2026/Day 1/a.jpg",
            "Trip 2026/Day 1/b.jpg"
        ]
    );
    for m in [&p.a, &p.b] {
        assert_eq!(
            fs::read(m.path("Trip 2026/Day 1/a.jpg")).unwrap(),
            b"from A"
        );
        assert_eq!(
            fs::read(m.path("Trip 2026/Day 1/b.jpg")).unwrap(),
            b"from B"
        );
    }
}

#[test]
fn same_file_edited_on_both_devices_keeps_both_versions() {
    let p = Pair::new();
    fs::create_dir(p.a.path("Notes")).unwrap();
    fs::write(p.a.path("Notes/todo.txt"), b"v1").unwrap();
    p.sync();
    p.mounts_agree();
    p.disconnect();
    fs::write(p.a.path("Notes/todo.txt"), b"v2 written on A").unwrap();
    fs::write(p.b.path("Notes/todo.txt"), b"v2 written on B, a bit longer").unwrap();
    p.sa.scan();
    p.sb.scan();
    p.reconnect();
    p.sync();
    // Syncthing kept both: one copy named E.sync-conflict-…, on both.
    let copies = conflict_copies(&p.sa.folder);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].contains(".sync-conflict-"), "{copies:?}");
    assert_eq!(conflict_copies(&p.sb.folder), copies);

    // Both devices list the folder (say, both users have it open): both
    // mounts show the copy under its display name, renaming it to the
    // same proper encrypted name.
    let la = names(&p.a.path("Notes"));
    let lb = names(&p.b.path("Notes"));
    assert_eq!(la, lb);
    assert_eq!(la.len(), 2, "{la:?}");
    assert!(la.contains(&"todo.txt".to_string()));
    let copy = la
        .iter()
        .find(|n| n.starts_with("todo (conflict "))
        .unwrap();
    assert!(copy.ends_with(").txt"), "{copy}");
    p.sync();
    for s in [&p.sa, &p.sb] {
        assert_eq!(conflict_copies(&s.folder), Vec::<String>::new());
    }
    let seen = p.mounts_agree();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for m in [&p.a, &p.b] {
        let mut both = vec![
            fs::read_to_string(m.path("Notes/todo.txt")).unwrap(),
            fs::read_to_string(m.path(&format!("Notes/{copy}"))).unwrap(),
        ];
        both.sort();
        assert_eq!(
            both,
            ["v2 written on A", "v2 written on B, a bit longer"],
            "device {}",
            m.name
        );
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Both forms `syncthing generate` writes (port 22000 free or taken, the
/// second copied from v1.19 with 22000 held) end as one loopback address.
#[test]
fn listen_address_is_set_whichever_form_syncthing_generated() {
    let free = "    <options>\n        <listenAddress>default</listenAddress>\n        <globalAnnounceServer>default</globalAnnounceServer>\n";
    let taken = "    <options>\n        <listenAddress>tcp://0.0.0.0:41421</listenAddress>\n        <listenAddress>dynamic+https://relays.syncthing.net/endpoint</listenAddress>\n        <listenAddress>quic://0.0.0.0:41421</listenAddress>\n        <globalAnnounceServer>default</globalAnnounceServer>\n";
    let want = "    <options>\n        <listenAddress>tcp://127.0.0.1:5000</listenAddress>\n        <globalAnnounceServer>default</globalAnnounceServer>\n";
    for generated in [free, taken] {
        let mut config = generated.to_string();
        set_listen_address(&mut config, 5000);
        assert_eq!(config, want);
    }
}
