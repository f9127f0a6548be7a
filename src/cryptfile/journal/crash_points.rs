//! Crash-point tests in the manner of CrashMonkey and ALICE: every backing
//! write of a workload is recorded, then every prefix of them is replayed
//! with the last write cut at each 4 KiB page boundary (where SIGKILL cuts
//! a `pwrite`), recovery runs, and every byte fsync'd before the cut must
//! read back intact, with no chunk failing.

use super::recover::records_by_final_path;
use super::*;
use crate::content::ChunkLayout;
use crate::content::ContentCipher;
use crate::cryptfile::CryptFile;
use crate::keys::ContentKey;
use crate::store::crash_record::{self, Op};
use std::collections::HashMap;

fn cipher() -> ContentCipher {
    ContentCipher::new(
        &ContentKey::from_bytes([9u8; 32]),
        ChunkLayout::new(4096).unwrap(),
    )
}

/// A logical step of a workload, as the test harness sees it.
enum Step {
    Write(u64, Vec<u8>),
    Truncate(u64),
    Fsync,
}

struct Recording {
    ops: Vec<Op>,
    /// Per op index where a logical step starts: the plaintext range it
    /// may change (end `u64::MAX` for a shrinking truncate).
    touches: Vec<(usize, u64, u64)>,
    /// Per op index of an fsync: the plaintext durable from there on.
    durable: Vec<(usize, Vec<u8>)>,
    /// Per op index where a step ends: the plaintext after it. A byte a
    /// crash leaves unsynced must read as one of the values it had.
    versions: Vec<(usize, Vec<u8>)>,
    data_ino: u64,
    journal_inos: [u64; 2],
}

fn ino(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().ino()
}

fn record(steps: &[Step], journal_on: bool) -> Recording {
    let c = cipher();
    let root = tempfile::tempdir().unwrap();
    let jdir = root.path().join("state");
    let root_fd = File::open(root.path()).unwrap();
    let journal = if journal_on {
        Journal::open(&jdir, &root_fd).unwrap()
    } else {
        std::fs::create_dir(&jdir).unwrap();
        for f in FILES {
            File::create(jdir.join(f)).unwrap();
        }
        Journal::off()
    };
    let path = root.path().join("f");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut model: Vec<u8> = Vec::new();
    let mut header = None;
    crash_record::start();
    let mut touches = Vec::new();
    let mut durable = Vec::new();
    let mut versions = Vec::new();
    let mut recorded = Recorded::default();
    let mut count = 0usize;
    for step in steps {
        let at = count;
        let mut f =
            CryptFile::new(&file, &c, header).with_journal(&journal, 1, b"f", &mut recorded);
        match step {
            Step::Write(o, d) => {
                touches.push((at, *o, o + d.len() as u64));
                f.write_at(*o, d).unwrap();
                let end = *o as usize + d.len();
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[*o as usize..end].copy_from_slice(d);
            }
            Step::Truncate(n) => {
                let old = model.len() as u64;
                touches.push((at, old.min(*n), if *n < old { u64::MAX } else { *n }));
                f.truncate(*n).unwrap();
                model.resize(*n as usize, 0);
            }
            Step::Fsync => {
                crash_record::fsync(&file);
                durable.push((at, model.clone()));
            }
        }
        header = f.header();
        if let Step::Fsync = step {
            // As the mount's fsync handler does.
            recorded.forget();
        }
        // Ops recorded so far (the recorder is thread-local; peek by
        // taking and restarting).
        let mut so_far = crash_record::take();
        count += so_far.len();
        crash_record::start();
        OPS_SO_FAR.with(|o| o.borrow_mut().append(&mut so_far));
        versions.push((count, model.clone()));
    }
    let ops = OPS_SO_FAR.with(|o| std::mem::take(&mut *o.borrow_mut()));
    crash_record::take();
    assert_eq!(ops.len(), count);
    Recording {
        ops,
        touches,
        durable,
        versions,
        data_ino: ino(&path),
        journal_inos: [ino(&jdir.join(FILES[0])), ino(&jdir.join(FILES[1]))],
    }
}

thread_local! {
    static OPS_SO_FAR: std::cell::RefCell<Vec<Op>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Applies `op`, cut to its first `cut` bytes, to the in-memory files.
fn apply(files: &mut HashMap<u64, Vec<u8>>, op: &Op, cut: usize) {
    match op {
        Op::Write { ino, offset, data } => {
            let f = files.entry(*ino).or_default();
            let data = &data[..cut.min(data.len())];
            if data.is_empty() {
                return;
            }
            let end = *offset as usize + data.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[*offset as usize..end].copy_from_slice(data);
        }
        Op::Truncate { ino, len } => files.entry(*ino).or_default().resize(*len as usize, 0),
        Op::Fsync { .. } => {}
    }
}

/// Every crash state: (ops fully applied, the next op cut to this many
/// bytes). Writes are cut where the kernel cuts them: at each page
/// boundary of the file offset.
fn crash_states(ops: &[Op]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        out.push((k, 0));
        if let Op::Write { offset, data, .. } = op {
            let end = offset + data.len() as u64;
            let mut p = (offset / 4096 + 1) * 4096;
            while p < end {
                out.push((k, (p - offset) as usize));
                p += 4096;
            }
        }
    }
    out.push((ops.len(), 0));
    out
}

/// Replays every crash state of `rec`; returns the violations found.
fn check_all(rec: &Recording) -> Vec<String> {
    let c = cipher();
    let mut violations = Vec::new();
    let states = crash_states(&rec.ops);
    for (k, cut) in states {
        let mut files: HashMap<u64, Vec<u8>> = HashMap::new();
        for op in &rec.ops[..k] {
            apply(&mut files, op, usize::MAX);
        }
        if k < rec.ops.len() {
            apply(&mut files, &rec.ops[k], cut);
        }
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("state");
        std::fs::create_dir(&jdir).unwrap();
        let data = files.remove(&rec.data_ino).unwrap_or_default();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        for (i, name) in FILES.iter().enumerate() {
            let j = files.remove(&rec.journal_inos[i]).unwrap_or_default();
            std::fs::write(jdir.join(name), j).unwrap();
        }
        let root = File::open(dir.path()).unwrap();
        if let Err(e) = recover(&jdir, &root, &c) {
            violations.push(format!("state ({k}, {cut}): recovery failed: {e}"));
            continue;
        }
        let file = File::open(dir.path().join("f")).unwrap();
        let mut f = CryptFile::new(&file, &c, None);
        let size = f.plain_size().unwrap() as usize;
        let mut got = vec![0u8; size];
        let n = match f.read_at(0, &mut got) {
            Ok(n) => n,
            Err(e) => {
                violations.push(format!("state ({k}, {cut}): read fails: {e}"));
                continue;
            }
        };
        got.truncate(n);
        // The durable content: as of the last fsync before the cut.
        let Some((at, durable)) = rec.durable.iter().rev().find(|(at, _)| *at <= k) else {
            continue;
        };
        let touched: Vec<(u64, u64)> = rec
            .touches
            .iter()
            .filter(|(t, _, _)| *t >= *at && *t <= k)
            .map(|(_, a, b)| (*a, *b))
            .collect();
        // What each byte was at the fsync and after every step since.
        let seen: Vec<&Vec<u8>> = std::iter::once(durable)
            .chain(
                rec.versions
                    .iter()
                    .filter(|(end, _)| *end > *at && *end <= k + 1)
                    .map(|(_, v)| v),
            )
            .collect();
        for (i, &b) in got.iter().enumerate() {
            if b != 0 && !seen.iter().any(|v| v.get(i) == Some(&b)) {
                violations.push(format!(
                    "state ({k}, {cut}): byte {i} reads {b}, a value it never had since the last fsync"
                ));
                break;
            }
        }
        for (i, want) in durable.iter().enumerate() {
            let i64_ = i as u64;
            if touched.iter().any(|(a, b)| i64_ >= *a && i64_ < *b) {
                continue;
            }
            if got.get(i) != Some(want) {
                violations.push(format!(
                    "state ({k}, {cut}): fsync'd byte {i} reads {:?}, want {want}",
                    got.get(i)
                ));
                break;
            }
        }
    }
    violations
}

fn bytes(seed: &mut u32, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (*seed >> 16) as u8
        })
        .collect()
}

/// A SQLite WAL in miniature: frames of 24 + 4096 bytes appended and
/// fsync'd per commit, the header rewritten, then a checkpoint that
/// overwrites pages of the database file in place and truncates the WAL.
fn wal_workload() -> Vec<Step> {
    let mut seed = 1;
    let mut steps = vec![Step::Write(0, bytes(&mut seed, 32)), Step::Fsync];
    let mut end = 32u64;
    for commit in 0..6 {
        for _ in 0..1 + commit % 3 {
            let frame = bytes(&mut seed, 24 + 4096);
            steps.push(Step::Write(end, frame));
            end += 24 + 4096;
        }
        steps.push(Step::Fsync);
    }
    steps.push(Step::Write(0, bytes(&mut seed, 32)));
    steps.push(Step::Fsync);
    steps.push(Step::Truncate(32));
    steps.push(Step::Fsync);
    steps.push(Step::Write(32, bytes(&mut seed, 24 + 4096)));
    steps.push(Step::Fsync);
    steps
}

/// Overwrites inside a file: whole chunks, partial chunks, spans.
fn overwrite_workload() -> Vec<Step> {
    let mut seed = 2;
    let mut steps = vec![
        Step::Write(0, bytes(&mut seed, 5 * 4096 + 700)),
        Step::Fsync,
    ];
    for (o, n) in [
        (4096u64, 4096usize),
        (100, 50),
        (3000, 6000),
        (5 * 4096, 700),
        (8190, 9000),
    ] {
        steps.push(Step::Write(o, bytes(&mut seed, n)));
        if o % 2 == 0 {
            steps.push(Step::Fsync);
        }
    }
    steps.push(Step::Fsync);
    steps
}

/// Appends of every shape, and truncation both ways.
fn append_truncate_workload() -> Vec<Step> {
    let mut seed = 3;
    let mut steps = vec![Step::Write(0, bytes(&mut seed, 100)), Step::Fsync];
    let mut end = 100u64;
    for n in [10usize, 4000, 9000, 1, 20000] {
        steps.push(Step::Write(end, bytes(&mut seed, n)));
        end += n as u64;
        steps.push(Step::Fsync);
    }
    steps.push(Step::Truncate(end - 5000));
    steps.push(Step::Fsync);
    steps.push(Step::Truncate(6000));
    steps.push(Step::Truncate(30000));
    steps.push(Step::Fsync);
    steps.push(Step::Write(50000, bytes(&mut seed, 3000)));
    steps.push(Step::Fsync);
    steps.push(Step::Truncate(4096));
    steps.push(Step::Fsync);
    steps
}

/// Rewrites of the same full middle chunks between fsyncs: the writer
/// records each chunk once per fsync (`Recorded`), and a crash in any
/// later rewrite must still find an authentic version that keeps every
/// fsync'd byte.
fn repeated_rewrite_workload() -> Vec<Step> {
    let mut seed = 4;
    let mut steps = vec![
        Step::Write(0, bytes(&mut seed, 6 * 4096 + 300)),
        Step::Fsync,
    ];
    for round in 0..2 {
        for (o, n) in [
            (4096u64, 4096usize),
            (4096, 4096),
            (2 * 4096 + 10, 100),
            (2 * 4096 + 2000, 50),
            (3 * 4096 - 8, 4096 + 16),
            (4096, 4096),
        ] {
            steps.push(Step::Write(o, bytes(&mut seed, n)));
        }
        if round == 0 {
            steps.push(Step::Fsync);
        }
    }
    steps.push(Step::Fsync);
    steps
}

/// Rewrites in place large enough that their records bypass the page
/// cache ([`DIRECT_MIN`]), chunk-aligned and not, between fsyncs.
fn large_rewrite_workload() -> Vec<Step> {
    let mut seed = 5;
    let mut steps = vec![
        Step::Write(0, bytes(&mut seed, 40 * 4096 + 100)),
        Step::Fsync,
    ];
    for (o, n) in [
        (4096u64, 20 * 4096usize),
        (3 * 4096 + 77, 25 * 4096),
        (0, 40 * 4096),
    ] {
        steps.push(Step::Write(o, bytes(&mut seed, n)));
        steps.push(Step::Fsync);
    }
    steps
}

fn assert_no_loss(steps: Vec<Step>) {
    let rec = record(&steps, true);
    let states = crash_states(&rec.ops).len();
    let v = check_all(&rec);
    assert!(
        v.is_empty(),
        "{} of {states} crash states lose fsync'd data or fail to read:\n{}",
        v.len(),
        v.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(states > 30, "the workload has only {states} crash states");
}

#[test]
fn every_crash_point_of_large_rewrites_keeps_fsynced_bytes() {
    assert_no_loss(large_rewrite_workload());
}

#[test]
fn every_crash_point_of_a_wal_keeps_fsynced_bytes() {
    assert_no_loss(wal_workload());
}

#[test]
fn every_crash_point_of_overwrites_keeps_fsynced_bytes() {
    assert_no_loss(overwrite_workload());
}

#[test]
fn every_crash_point_of_appends_and_truncation_keeps_fsynced_bytes() {
    assert_no_loss(append_truncate_workload());
}

#[test]
fn every_crash_point_of_repeated_rewrites_keeps_fsynced_bytes() {
    assert_no_loss(repeated_rewrite_workload());
}

/// A rewrite of full middle chunks a record of this generation already
/// holds since the last fsync writes no record; an fsync or a truncation
/// makes the next rewrite record again.
#[test]
fn rewrites_are_recorded_once_per_fsync() {
    let c = cipher();
    let root = tempfile::tempdir().unwrap();
    let jdir = root.path().join("state");
    let root_fd = File::open(root.path()).unwrap();
    let journal = Journal::open(&jdir, &root_fd).unwrap();
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(root.path().join("f"))
        .unwrap();
    let mut recorded = Recorded::default();
    let header = std::cell::Cell::new(None);
    let write = |recorded: &mut Recorded, o: u64, n: usize| {
        let mut f =
            CryptFile::new(&file, &c, header.get()).with_journal(&journal, 1, b"f", recorded);
        f.write_at(o, &vec![7u8; n]).unwrap();
        header.set(f.header());
    };
    let records = || read_records(&jdir).unwrap().len();
    write(&mut recorded, 0, 8 * 4096);
    assert_eq!(records(), 1, "an append is recorded (its old size)");
    write(&mut recorded, 4096, 2 * 4096);
    assert_eq!(records(), 2);
    write(&mut recorded, 4096, 4096);
    write(&mut recorded, 2 * 4096 + 5, 10);
    assert_eq!(
        records(),
        2,
        "chunks 1 and 2 are covered until the next fsync"
    );
    write(&mut recorded, 2 * 4096, 2 * 4096);
    assert_eq!(records(), 3, "chunk 3 was not covered yet");
    write(&mut recorded, 7 * 4096, 10);
    write(&mut recorded, 7 * 4096, 10);
    assert_eq!(records(), 5, "the last chunk is recorded on every rewrite");
    recorded.forget();
    write(&mut recorded, 4096, 4096);
    assert_eq!(
        records(),
        6,
        "after an fsync every chunk needs a record again"
    );
    CryptFile::new(&file, &c, header.get())
        .with_journal(&journal, 1, b"f", &mut recorded)
        .truncate(7 * 4096 + 5)
        .unwrap();
    write(&mut recorded, 4096, 4096);
    assert_eq!(records(), 8, "a truncation forgets what was covered");
}

/// The harness finds real losses: without the journal the same
/// workloads lose fsync'd bytes or fail to read at some crash points.
#[test]
fn without_the_journal_crash_points_lose_fsynced_bytes() {
    for steps in [
        wal_workload(),
        overwrite_workload(),
        append_truncate_workload(),
        repeated_rewrite_workload(),
    ] {
        let rec = record(&steps, false);
        let v = check_all(&rec);
        assert!(
            !v.is_empty(),
            "the unprotected writer survived every crash point: the harness tests nothing"
        );
    }
}

#[test]
fn recovery_follows_renames_and_forgets_unlinked_files() {
    let rec = |seq: u64, path: &[u8], name_op: Option<NameOp>| Record {
        seq,
        path: path.to_vec(),
        header: None,
        old_backing: seq,
        images: Vec::new(),
        name_op,
    };
    let records = vec![
        rec(1, b"d/f", None),
        rec(2, b"d", Some(NameOp::Rename { to: b"e".to_vec() })),
        rec(3, b"e/f", None),
        rec(4, b"g", None),
        rec(5, b"g", Some(NameOp::Unlink)),
        rec(6, b"h", None),
        rec(7, b"i", None),
        rec(
            8,
            b"h",
            Some(NameOp::Exchange {
                with: b"i".to_vec(),
            }),
        ),
        rec(9, b"dd", None),
        rec(10, b"j", None),
        rec(11, b"k", Some(NameOp::Rename { to: b"j".to_vec() })),
    ];
    let map = records_by_final_path(&records);
    let seqs = |p: &[u8]| -> Vec<u64> {
        map.get(p)
            .map(|v| v.iter().map(|r| r.seq).collect())
            .unwrap_or_default()
    };
    assert_eq!(seqs(b"e/f"), vec![1, 3], "the directory rename moved d/f");
    assert!(seqs(b"d/f").is_empty());
    assert!(seqs(b"g").is_empty(), "an unlinked file's records are moot");
    assert_eq!(seqs(b"i"), vec![6]);
    assert_eq!(seqs(b"h"), vec![7]);
    assert_eq!(seqs(b"dd"), vec![9], "a sibling with a common prefix stays");
    assert!(seqs(b"j").is_empty(), "a file renamed over is gone");
}

#[test]
fn name_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = File::open(dir.path()).unwrap();
    let j = Journal::open(&dir.path().join("j"), &root).unwrap();
    j.note(b"a/b", &NameOp::Rename { to: b"c".to_vec() })
        .unwrap();
    j.note(b"x", &NameOp::Unlink).unwrap();
    j.note(
        b"p",
        &NameOp::Exchange {
            with: b"q".to_vec(),
        },
    )
    .unwrap();
    let recs = read_records(&dir.path().join("j")).unwrap();
    let ops: Vec<_> = recs
        .iter()
        .map(|r| (r.path.clone(), r.name_op.clone()))
        .collect();
    assert_eq!(
        ops,
        vec![
            (b"a/b".to_vec(), Some(NameOp::Rename { to: b"c".to_vec() })),
            (b"x".to_vec(), Some(NameOp::Unlink)),
            (
                b"p".to_vec(),
                Some(NameOp::Exchange {
                    with: b"q".to_vec()
                })
            ),
        ]
    );
}

#[test]
fn records_round_trip_and_torn_ones_are_skipped() {
    let h = FileHeader::with_file_id(ChunkLayout::new(4096).unwrap(), [4u8; 16]);
    let img = vec![7u8; 5000];
    let a = encode(
        5,
        &Intent {
            path: b"dir/f",
            header: Some(&h),
            old_backing: 12345,
            images: &[(18, &img[..]), (9000, &img[..10])],
        },
    );
    let b = encode(
        6,
        &Intent {
            path: b"g",
            header: None,
            old_backing: 0,
            images: &[],
        },
    );
    let mut buf = a.clone();
    buf.extend_from_slice(&[0u8; 300]);
    buf.extend_from_slice(&b);
    let recs = parse_all(&buf);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].path, b"dir/f");
    assert_eq!(recs[0].header, Some(*h.as_bytes()));
    assert_eq!(recs[0].images[0], (18, img.clone()));
    assert_eq!(recs[0].images[1], (9000, img[..10].to_vec()));
    assert_eq!(recs[1].seq, 6);
    // A record cut short (SIGKILL in its pwrite) is skipped, the next
    // one still found.
    let mut torn = a[..a.len() - 100].to_vec();
    torn.extend_from_slice(&b);
    let recs = parse_all(&torn);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].seq, 6);
    // A changed path byte fails the checksum.
    let mut bad = a.clone();
    bad[FIXED_LEN] ^= 1;
    assert!(parse_all(&bad).is_empty());
}

/// A swap reuses the standby file without a `syncfs` when every file its
/// records name was fsynced since (a database's checkpoints), with one
/// otherwise; a reused file starts empty.
#[test]
fn a_swap_reuses_the_standby_once_fsyncs_retired_its_records() {
    let root = tempfile::tempdir().unwrap();
    let jdir = root.path().join("state");
    let root_fd = File::open(root.path()).unwrap();
    let journal = Journal::open_rotating_at(&jdir, &root_fd, 64 << 10).unwrap();
    let inner = journal.0.clone().unwrap();
    let image = vec![5u8; 4096];
    let fill = |file: u64, n: usize| {
        for _ in 0..n {
            let images = [(18u64, &image[..])];
            let intent = Intent {
                path: b"f",
                header: None,
                old_backing: 0,
                images: &images,
            };
            journal.record(file, &intent).unwrap();
        }
    };
    let swaps = || inner.swaps_with_syncfs.load(Ordering::Relaxed);
    let active = || inner.active.read().unwrap().index;

    fill(1, 20);
    inner.rotate().unwrap();
    assert_eq!((active(), swaps()), (1, 0), "the empty standby is free");
    fill(2, 20);
    inner.rotate().unwrap();
    assert_eq!((active(), swaps()), (0, 1), "file 1 was never fsynced");
    let lap = inner.seq.load(Ordering::Relaxed);
    // Before the fill crosses the threshold, which wakes the keeper.
    journal.synced(2, journal.mark());
    fill(1, 17);
    inner.rotate().unwrap();
    assert_eq!((active(), swaps()), (1, 1), "fsyncs retired every record");

    // journal.0 was emptied before its third turn: only that turn's
    // records are in it.
    let in_file0: Vec<u64> = parse_all(&read_written(&inner.files[0]).unwrap())
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(in_file0.len(), 17);
    assert!(in_file0.iter().all(|&s| s >= lap));
}

/// Records of [`DIRECT_MIN`] bytes and more bypass the page cache in
/// page-aligned, zero-padded slots; the buffered records written before
/// and after them, sharing no page with them, all read back in order.
#[test]
fn large_records_written_direct_read_back_between_small_ones() {
    let root = tempfile::tempdir().unwrap();
    let root_fd = File::open(root.path()).unwrap();
    let journal = Journal::open(&root.path().join("state"), &root_fd).unwrap();
    let inner = journal.0.clone().unwrap();
    if inner.direct[0].is_none() {
        println!(
            "large records are buffered here: {} does not take O_DIRECT (tmpfs?)",
            root.path().display()
        );
    }
    let small = vec![1u8; 300];
    let large = vec![2u8; DIRECT_MIN + 777];
    let sizes = [&small, &large, &small, &large, &large, &small];
    for (k, image) in sizes.iter().enumerate() {
        let images = [(18 + k as u64, &image[..])];
        let intent = Intent {
            path: b"f",
            header: None,
            old_backing: k as u64,
            images: &images,
        };
        journal.record(7, &intent).unwrap();
    }
    assert!(inner.direct_works.load(Ordering::Relaxed));
    let recs = parse_all(&read_written(&inner.files[0]).unwrap());
    let got: Vec<(u64, usize)> = recs
        .iter()
        .map(|r| (r.old_backing, r.images[0].1.len()))
        .collect();
    let want: Vec<(u64, usize)> = sizes
        .iter()
        .enumerate()
        .map(|(k, i)| (k as u64, i.len()))
        .collect();
    assert_eq!(got, want);
    for (r, image) in recs.iter().zip(sizes) {
        assert_eq!(&r.images[0].1, image);
    }
}
