//! What the mount shows is what CIPHERDIR holds: a sync client's change to
//! a file, in place or by replacing it with a rename, shows through the
//! mount within `--attr-timeout` (plus a second) once no handle holds the
//! file open, whatever the timing of the app's last write and read, and a
//! file that exists never reads as missing.
//!
//! The whole window is swept: the app writes the file, after a gap of 0
//! to 1.5 s (100 ms steps) the backing file changes from outside, and the
//! app reads it at once; then the new version must show within the
//! deadline. Each case has its own file, and the cases of one mount run
//! side by side, so the sweep takes seconds.

mod common;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::TestMount;

/// `--attr-timeout` of the mounts (the default) plus the one second the
/// promise allows.
const DEADLINE: Duration = Duration::from_millis(1000 + 1000);
const GAP_STEPS: u64 = 16; // 0, 100, ..., 1500 ms

#[derive(Clone, Copy, Debug, PartialEq)]
enum Change {
    /// Same inode, new bytes (`rclone --inplace`, `cat >`).
    InPlace,
    /// A new file renamed over the old one (what most clients do).
    Rename,
}

struct Case {
    change: Change,
    gap: Duration,
    plain: PathBuf,
    backing: PathBuf,
    /// Backing bytes of the other device's version.
    other_backing: Vec<u8>,
    other_plain: Vec<u8>,
    /// Where the replacement is staged (same file system as CIPHERDIR).
    staging: PathBuf,
}

fn app_version(i: usize) -> Vec<u8> {
    format!("app {i}").into_bytes()
}

fn other_version(i: usize) -> Vec<u8> {
    format!("the other device's much longer version of file {i}\n")
        .repeat(3)
        .into_bytes()
}

/// Writes `name` through the mount and returns its new backing file.
fn write_and_find_backing(m: &TestMount, name: &str, data: &[u8]) -> PathBuf {
    let before = m.backing_files();
    fs::write(m.path(name), data).unwrap();
    m.backing_files()
        .into_iter()
        .find(|p| !before.contains(p) && p.is_file())
        .unwrap_or_else(|| panic!("no backing file for {name}"))
}

fn prepare(m: &TestMount) -> Vec<Case> {
    let mut cases = Vec::new();
    for change in [Change::InPlace, Change::Rename] {
        for step in 0..GAP_STEPS {
            let i = cases.len();
            let name = format!("f{i}");
            let backing = write_and_find_backing(m, &name, b"first version");
            let other_name = format!("other{i}");
            let other_plain = other_version(i);
            let other_path = write_and_find_backing(m, &other_name, &other_plain);
            let other_backing = fs::read(&other_path).unwrap();
            cases.push(Case {
                change,
                gap: Duration::from_millis(step * 100),
                plain: m.path(&name),
                backing,
                other_backing,
                other_plain,
                staging: m.tmp.path().join(format!("staging{i}")),
            });
        }
    }
    // Let every lookup made so far expire, so each case starts as an app
    // that has not touched its file for a while.
    std::thread::sleep(Duration::from_millis(1100));
    cases
}

fn change_outside(c: &Case) {
    match c.change {
        Change::InPlace => {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&c.backing)
                .unwrap();
            f.write_all(&c.other_backing).unwrap();
        }
        Change::Rename => {
            fs::write(&c.staging, &c.other_backing).unwrap();
            fs::rename(&c.staging, &c.backing).unwrap();
        }
    }
}

/// Runs one case; returns a description of what went wrong, if anything.
fn run_case(i: usize, c: &Case) -> Result<(), String> {
    let app = app_version(i);
    fs::write(&c.plain, &app).map_err(|e| format!("app write: {e}"))?;
    std::thread::sleep(c.gap);
    change_outside(c);
    let changed = Instant::now();
    // The app reads at once: old or new version, but never "missing".
    match fs::read(&c.plain) {
        Ok(d) if d == app || d == c.other_plain => {}
        Ok(d) => {
            return Err(format!(
                "read right after the change gave neither version: {:?}",
                String::from_utf8_lossy(&d)
            ));
        }
        Err(e) => return Err(format!("read right after the change: {e}")),
    }
    loop {
        let size = fs::metadata(&c.plain).map(|m| m.len());
        let data = fs::read(&c.plain);
        match (&size, &data) {
            (Err(e), _) | (_, Err(e)) => {
                return Err(format!("{:?} after the change: {e}", changed.elapsed()));
            }
            (Ok(size), Ok(d)) if *size == c.other_plain.len() as u64 && *d == c.other_plain => {
                break;
            }
            _ => {}
        }
        if changed.elapsed() > DEADLINE {
            return Err(format!(
                "still shows {} bytes {:?} {:?} after the change",
                size.unwrap(),
                String::from_utf8_lossy(&data.unwrap()),
                changed.elapsed()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // And it stays.
    std::thread::sleep(Duration::from_millis(300));
    let d = fs::read(&c.plain).map_err(|e| format!("later read: {e}"))?;
    if d != c.other_plain {
        return Err("the new version showed, then went away".into());
    }
    Ok(())
}

fn sweep(extra: &[&str]) {
    let m = TestMount::with_args(extra);
    let cases = prepare(&m);
    let failures: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(i, c)| s.spawn(move || run_case(i, c)))
            .collect();
        threads
            .into_iter()
            .zip(&cases)
            .filter_map(|(t, c)| {
                t.join()
                    .unwrap()
                    .err()
                    .map(|e| format!("{:?} after a {:?} gap: {e}", c.change, c.gap))
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{extra:?}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let log = m.log_text();
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
}

#[test]
fn outside_changes_show_whatever_the_timing_with_the_write_cache() {
    sweep(&[]);
}

#[test]
fn outside_changes_show_whatever_the_timing_without_the_write_cache() {
    sweep(&["--no-writeback-cache"]);
}

/// The app has the file open and writes to it while the sync client
/// rewrites it in place. The versions are not merged (as on any file
/// system), but once the app closes the file the mount must show what
/// CIPHERDIR holds, as `veilfs cat` reads it, within the deadline: the
/// kernel must not keep the size it had while the file was open.
fn written_while_changed(extra: &[&str]) {
    let m = TestMount::with_args(extra);
    let backing = write_and_find_backing(&m, "f", b"first version");
    let other_plain = other_version(0);
    let other = write_and_find_backing(&m, "other", &other_plain);
    let other_backing = fs::read(&other).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"APP", 0).unwrap();
    let mut b = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&backing)
        .unwrap();
    b.write_all(&other_backing).unwrap();
    drop(b);
    f.flush().unwrap();
    drop(f);
    let closed = Instant::now();
    let truth = || {
        let o = std::process::Command::new(common::BIN)
            .args(["cat", "--key-file"])
            .arg(&m.keyfile)
            .arg(&m.cipher)
            .arg("/f")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    loop {
        let want = truth();
        let size = fs::metadata(m.path("f")).unwrap().len();
        let got = fs::read(m.path("f")).unwrap();
        if size == want.len() as u64 && got == want {
            break;
        }
        assert!(
            closed.elapsed() < DEADLINE,
            "{extra:?}: {:?} after the close the mount shows {size} bytes {:?}, CIPHERDIR holds {} bytes {:?}",
            closed.elapsed(),
            String::from_utf8_lossy(&got),
            want.len(),
            String::from_utf8_lossy(&want)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        fs::read(m.path("f")).unwrap().len(),
        truth().len(),
        "and it stays"
    );
}

#[test]
fn a_file_written_while_changed_outside_shows_what_cipherdir_holds_after_close() {
    written_while_changed(&[]);
    written_while_changed(&["--no-writeback-cache"]);
}
