//! Property and unit tests of plaintext reads, writes and truncation.

use super::*;
use crate::content::ChunkLayout;
use crate::keys::ContentKey;
use proptest::prelude::*;
use rustix::io::{pread, pwrite};
use std::fs::File;

fn cipher() -> ContentCipher {
    ContentCipher::new(
        &ContentKey::from_bytes([9u8; 32]),
        ChunkLayout::new(4096).unwrap(),
    )
}

fn read_all(f: &mut CryptFile<'_, &File>) -> Vec<u8> {
    let size = f.plain_size().unwrap() as usize;
    let mut out = vec![0u8; size + 10];
    let n = f.read_at(0, &mut out).unwrap();
    out.truncate(n);
    out
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Truncate(u64),
    Read(u64, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..40_000, prop::collection::vec(any::<u8>(), 1..10_000))
            .prop_map(|(o, d)| Op::Write(o, d)),
        (0u64..40_000).prop_map(Op::Truncate),
        (0u64..45_000, 0usize..20_000).prop_map(|(o, n)| Op::Read(o, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn matches_a_plain_model(ops in prop::collection::vec(op(), 1..25)) {
        let c = cipher();
        let file = tempfile::tempfile().unwrap();
        let mut model: Vec<u8> = Vec::new();
        let mut f = CryptFile::new(&file, &c, None);
        for op in ops {
            match op {
                Op::Write(o, d) => {
                    f.write_at(o, &d).unwrap();
                    let end = o as usize + d.len();
                    if model.len() < end { model.resize(end, 0); }
                    model[o as usize..end].copy_from_slice(&d);
                }
                Op::Truncate(n) => {
                    f.truncate(n).unwrap();
                    model.resize(n as usize, 0);
                }
                Op::Read(o, n) => {
                    let mut buf = vec![0u8; n];
                    let got = f.read_at(o, &mut buf).unwrap();
                    let from = (o as usize).min(model.len());
                    let to = (o as usize + n).min(model.len());
                    prop_assert_eq!(&buf[..got], &model[from..to]);
                }
            }
            prop_assert_eq!(f.plain_size().unwrap(), model.len() as u64);
            prop_assert!(c.layout().is_valid_cipher_size(backing_size(&file).unwrap()));
            // A fresh reader (no cached header) sees the same bytes.
            let mut fresh = CryptFile::new(&file, &c, None);
            prop_assert_eq!(read_all(&mut fresh), model.clone());
        }
    }
}

#[test]
fn large_parallel_writes_and_reads() {
    let c = cipher();
    let file = tempfile::tempfile().unwrap();
    let mut f = CryptFile::new(&file, &c, None);
    let mut model = vec![0u8; 0];
    let mut seed = 7u32;
    for (offset, len) in [
        (0usize, 1 << 20),
        (4000, 700_000),
        (3 << 20, 300_000),
        (100, 2_000_000),
    ] {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        f.write_at(offset as u64, &data).unwrap();
        if model.len() < offset + len {
            model.resize(offset + len, 0);
        }
        model[offset..offset + len].copy_from_slice(&data);
        let mut buf = vec![0u8; model.len() + 5];
        let n = CryptFile::new(&file, &c, None)
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(&buf[..n], &model[..]);
        let mut mid = vec![0u8; 1_500_000];
        let n = f.read_at(12_345, &mut mid).unwrap();
        assert_eq!(
            &mid[..n],
            &model[12_345..(12_345 + 1_500_000).min(model.len())]
        );
    }
    // A bad chunk in the middle of a parallel read is reported by index.
    let at = c.layout().chunk_cipher_start(100) + 50;
    let mut b = [0u8; 1];
    pread(&file, &mut b, at).unwrap();
    b[0] ^= 4;
    pwrite(&file, &b, at).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    match f.read_at(0, &mut buf) {
        Err(CryptFileError::Chunk { index: 100, .. }) => {}
        other => panic!("expected chunk 100 to fail, got {other:?}"),
    }
}

#[test]
fn stale_last_flag_from_a_crash_still_reads() {
    let c = cipher();
    let file = tempfile::tempfile().unwrap();
    let mut f = CryptFile::new(&file, &c, None);
    f.write_at(0, &[1u8; 4096]).unwrap();
    let header = f.header().unwrap();
    // Simulate a crash mid-append: chunk 1 was written, chunk 0 kept
    // its last flag.
    let mut sealed = vec![0u8; 100 + CHUNK_OVERHEAD];
    c.seal_chunk(&header, 1, true, &[2u8; 100], &mut sealed);
    pwrite(&file, &sealed, c.layout().chunk_cipher_start(1)).unwrap();
    let mut buf = vec![0u8; 5000];
    let n = CryptFile::new(&file, &c, None)
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(n, 4196);
    assert!(buf[..4096].iter().all(|&b| b == 1) && buf[4096..4196].iter().all(|&b| b == 2));
    // But a final chunk without the flag (truncation) is still refused.
    rustix::fs::ftruncate(&file, c.layout().chunk_cipher_start(1)).unwrap();
    let mut g = CryptFile::new(&file, &c, None);
    let mut h = [0u8; 16];
    // Chunk 0 carries last=1 and is now really last: fine.
    assert_eq!(g.read_at(0, &mut h).unwrap(), 16);
}

#[test]
fn holes_stay_sparse() {
    use std::os::unix::fs::MetadataExt;
    let c = cipher();
    let dir = tempfile::tempdir().unwrap();
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("f"))
        .unwrap();
    let mut f = CryptFile::new(&file, &c, None);
    f.write_at(0, b"start").unwrap();
    f.write_at(64 << 20, b"end").unwrap();
    assert_eq!(f.plain_size().unwrap(), (64 << 20) + 3);
    let meta = file.metadata().unwrap();
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "backing file is sparse: {} blocks",
        meta.blocks()
    );
    let mut buf = vec![1u8; 8192];
    assert_eq!(f.read_at(1 << 20, &mut buf).unwrap(), 8192);
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn tampering_is_an_error_not_garbage() {
    let c = cipher();
    let file = tempfile::tempfile().unwrap();
    let mut f = CryptFile::new(&file, &c, None);
    f.write_at(0, &vec![7u8; 3 * 4096 + 100]).unwrap();
    // Flip a bit in chunk 1.
    let at = c.layout().chunk_cipher_start(1) + 40;
    let mut b = [0u8; 1];
    pread(&file, &mut b, at).unwrap();
    b[0] ^= 1;
    pwrite(&file, &b, at).unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(f.read_at(0, &mut buf).is_ok(), "chunk 0 still reads");
    match f.read_at(4096, &mut buf) {
        Err(CryptFileError::Chunk { index: 1, .. }) => {}
        other => panic!("expected chunk 1 to fail, got {other:?}"),
    }
    // Truncation at a chunk boundary is detected by the last flag.
    rustix::fs::ftruncate(&file, c.layout().chunk_cipher_start(3)).unwrap();
    let mut fresh = CryptFile::new(&file, &c, None);
    assert!(matches!(
        fresh.read_at(2 * 4096, &mut buf),
        Err(CryptFileError::Chunk { index: 2, .. })
    ));
}
