//! A randomized model test in the spirit of fsx: thousands of random
//! operations applied both to the mount and to a plain reference directory,
//! comparing contents and sizes after every step.
//!
//! VEILFS_FSX_SEED=N reproduces a run; VEILFS_FSX_OPS=N sets its length.

mod common;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{Rng, TestMount};

/// Offsets that like to land on and around chunk boundaries.
fn offset(rng: &mut Rng, max: u64) -> u64 {
    match rng.below(3) {
        0 => rng.below(max),
        1 => (rng.below(max / 4096 + 1) * 4096).saturating_sub(rng.below(3)),
        _ => rng.below(max / 4096 + 1) * 4096 + 4096 - 1 - rng.below(2),
    }
}

struct Pair {
    mnt: PathBuf,
    reference: PathBuf,
}

impl Pair {
    fn m(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }
    fn r(&self, name: &str) -> PathBuf {
        self.reference.join(name)
    }
}

fn open_rw(p: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .unwrap()
}

#[test]
fn random_operations_match_a_plain_directory() {
    let seed: u64 = std::env::var("VEILFS_FSX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let ops: usize = std::env::var("VEILFS_FSX_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    eprintln!("fsx: seed {seed} ({ops} operations); rerun with VEILFS_FSX_SEED={seed}");
    let m = match std::env::var("VEILFS_FSX_MOUNT_ARGS") {
        Ok(a) => TestMount::with_args(&a.split_whitespace().collect::<Vec<_>>()),
        Err(_) => TestMount::new(),
    };
    let reference = m.tmp.path().join("reference");
    fs::create_dir(&reference).unwrap();
    let pair = Pair {
        mnt: m.mnt.clone(),
        reference,
    };
    let names = ["a", "b", "c", "d"];
    let mut rng = Rng(seed);
    let max = 100_000u64;
    // A second handle kept open on "a" in both trees, as apps do.
    let held_m = open_rw(&pair.m("a"));
    let held_r = open_rw(&pair.r("a"));
    for step in 0..ops {
        let name = names[rng.below(names.len() as u64) as usize];
        let other = names[rng.below(names.len() as u64) as usize];
        let op = rng.below(100);
        let ctx = format!("seed {seed} step {step} op {op} on {name}/{other}");
        if std::env::var_os("VEILFS_FSX_TRACE").is_some() {
            eprintln!("{ctx}");
        }
        match op {
            0..=39 => {
                let off = offset(&mut rng, max);
                let big = rng.below(4) == 0;
                let len = 1 + rng.below(if big { 40_000 } else { 9000 }) as usize;
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let (fm, fr) = if name == "a" && rng.below(2) == 0 {
                    (None, None)
                } else {
                    (Some(open_rw(&pair.m(name))), Some(open_rw(&pair.r(name))))
                };
                fm.as_ref()
                    .unwrap_or(&held_m)
                    .write_all_at(&data, off)
                    .unwrap_or_else(|e| panic!("{ctx}: write: {e}"));
                fr.as_ref()
                    .unwrap_or(&held_r)
                    .write_all_at(&data, off)
                    .unwrap();
            }
            40..=54 => {
                let len = offset(&mut rng, max);
                let (fm, fr) = (open_rw(&pair.m(name)), open_rw(&pair.r(name)));
                fm.set_len(len)
                    .unwrap_or_else(|e| panic!("{ctx}: truncate: {e}"));
                fr.set_len(len).unwrap();
            }
            55..=69 => {
                let off = offset(&mut rng, max);
                let len = 1 + rng.below(20_000) as usize;
                let (mut bm, mut br) = (vec![0u8; len], vec![0u8; len]);
                let rm = if pair.r(name).exists() {
                    let nm = File::open(pair.m(name))
                        .unwrap()
                        .read_at(&mut bm, off)
                        .unwrap_or_else(|e| panic!("{ctx}: read: {e}"));
                    let nr = File::open(pair.r(name))
                        .unwrap()
                        .read_at(&mut br, off)
                        .unwrap();
                    Some((nm, nr))
                } else {
                    None
                };
                if let Some((nm, nr)) = rm {
                    assert_eq!(nm, nr, "{ctx}: read length");
                    assert!(bm[..nm] == br[..nr], "{ctx}: read content differs");
                }
            }
            70..=77 => {
                if pair.r(name).exists() && name != other {
                    fs::rename(pair.m(name), pair.m(other))
                        .unwrap_or_else(|e| panic!("{ctx}: rename: {e}"));
                    fs::rename(pair.r(name), pair.r(other)).unwrap();
                }
            }
            78..=83 => {
                if pair.r(name).exists() && !pair.r(other).exists() {
                    fs::hard_link(pair.m(name), pair.m(other))
                        .unwrap_or_else(|e| panic!("{ctx}: link: {e}"));
                    fs::hard_link(pair.r(name), pair.r(other)).unwrap();
                }
            }
            84..=91 => {
                if pair.r(name).exists() {
                    fs::remove_file(pair.m(name)).unwrap_or_else(|e| panic!("{ctx}: unlink: {e}"));
                    fs::remove_file(pair.r(name)).unwrap();
                }
            }
            _ => {
                if pair.r(name).exists() {
                    File::open(pair.m(name))
                        .unwrap()
                        .sync_all()
                        .unwrap_or_else(|e| panic!("{ctx}: fsync: {e}"));
                }
                held_m.sync_data().unwrap();
            }
        }
        // Compare everything after every step.
        for n in names {
            let (pm, pr) = (pair.m(n), pair.r(n));
            assert_eq!(pm.exists(), pr.exists(), "{ctx}: existence of {n}");
            if pr.exists() {
                let (dm, dr) = (
                    fs::read(&pm).unwrap_or_else(|e| panic!("{ctx}: read {n}: {e}")),
                    fs::read(&pr).unwrap(),
                );
                assert_eq!(dm.len(), dr.len(), "{ctx}: size of {n}");
                assert!(dm == dr, "{ctx}: content of {n} differs");
                assert_eq!(
                    fs::metadata(&pm).unwrap().len(),
                    dr.len() as u64,
                    "{ctx}: st_size of {n}"
                );
            }
        }
        // The held handles track the file they were opened on, wherever it went.
        let (mut hm, mut hr) = (vec![0u8; 300], vec![0u8; 300]);
        let at = rng.below(max);
        let (nm, nr) = (
            held_m
                .read_at(&mut hm, at)
                .unwrap_or_else(|e| panic!("{ctx}: held read: {e}")),
            held_r.read_at(&mut hr, at).unwrap(),
        );
        assert_eq!(&hm[..nm], &hr[..nr], "{ctx}: held handle content");
    }
}
