//! Fuzzing with proptest (issue 6): every parser of untrusted bytes gets
//! arbitrary and mutated input and must return an error, never panic, and
//! never hand back wrong plaintext.
//!
//! Targets: config parsing (`VaultConfig::from_json`, what `load_config`
//! runs on the file's bytes), file headers (`FileHeader::parse`), names
//! (`NameCipher::decrypt_name`, `names::classify_entry`,
//! `conflict::parse`, symlink targets, xattr names and values) and the
//! chunk-open path (`ContentCipher::open_chunk`, `CryptFile::read_at` on
//! arbitrary backing bytes).
//!
//! `VEILFS_FUZZ_CASES` (default 2000) cases per batch; `VEILFS_FUZZ_SECS`
//! keeps running new batches (fresh random seeds) until that many seconds
//! have passed. Long runs are recorded in docs/FUZZING.md.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use veilfs::content::{CHUNK_OVERHEAD, ChunkLayout, ContentCipher, FileHeader, HEADER_LEN, Opened};
use veilfs::cryptfile::CryptFile;
use veilfs::keys::MasterKey;
use veilfs::names::{self, DirIv, NameCipher};
use veilfs::vault::VaultConfig;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `test` on `strategy` in batches until the time budget is spent;
/// prints how many cases ran.
fn fuzz<S: Strategy>(
    what: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = env_num("VEILFS_FUZZ_CASES", 2000) as u32;
    let secs = env_num("VEILFS_FUZZ_SECS", 0);
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{what}: {e}");
        }
        total += cases as u64;
        if start.elapsed() >= Duration::from_secs(secs) {
            break;
        }
    }
    eprintln!(
        "fuzz {what}: {total} cases in {:.1} s, no finding",
        start.elapsed().as_secs_f64()
    );
}

fn key() -> MasterKey {
    MasterKey::from_bytes(*b"veilfs fuzz key veilfs fuzz key!")
}

fn ciphers(shift: u8) -> (ContentCipher, NameCipher) {
    let keys = key().derive();
    let layout = ChunkLayout::from_shift(shift).unwrap();
    (
        ContentCipher::new(&keys.content, layout),
        NameCipher::new(&keys, 175),
    )
}

// ---- Config ----

/// A valid config, as text.
fn valid_config() -> String {
    veilfs::vault::build_config_for_test_vectors(&key(), 4096, 175, "2026-11-26T10:30:00Z", None)
        .unwrap()
        .to_json()
}

/// JSON values a hostile config might hold in any field.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(4096)),
        Just(json!(65536)),
        Just(json!(1u64 << 32)),
        Just(json!(-1)),
        ".{0,40}".prop_map(Value::String),
        "[A-Za-z0-9_-]{0,70}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("veilfs.conf");
    if let Ok(cfg) = VaultConfig::from_json(text, path) {
        // Whatever parses is usable without panicking.
        let _ = cfg.layout();
        let _ = cfg.canonical_bytes();
        let _ = cfg.compute_mac(&key());
        let _ = cfg.to_json();
        for slot in &cfg.key_slots {
            let _ = slot.kdf_params();
            let _ = slot.slot_bytes();
        }
    }
    Ok(())
}

#[test]
fn fuzz_config_arbitrary_bytes() {
    fuzz(
        "config (bytes)",
        prop::collection::vec(any::<u8>(), 0..600),
        |bytes| check_config(&String::from_utf8_lossy(&bytes)),
    );
}

#[test]
fn fuzz_config_mutated_fields() {
    let base: serde_json::Value = serde_json::from_str(&valid_config()).unwrap();
    let fields: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
    fuzz(
        "config (fields)",
        (
            prop::collection::vec((0..fields.len() + 1, json_value()), 1..4),
            any::<bool>(),
        ),
        |(edits, drop_one)| {
            let mut v = base.clone();
            let obj = v.as_object_mut().unwrap();
            for (i, val) in edits {
                let name = fields.get(i).cloned().unwrap_or_else(|| "extra".into());
                if drop_one {
                    obj.remove(&name);
                } else {
                    obj.insert(name, val);
                }
            }
            check_config(&v.to_string())
        },
    );
}

#[test]
fn fuzz_config_text_mutations() {
    let base = valid_config().into_bytes();
    fuzz(
        "config (text)",
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
        |edits| {
            let mut b = base.clone();
            for (at, byte, op) in edits {
                let i = at.index(b.len().max(1));
                match op {
                    0 if i < b.len() => b[i] = byte,
                    1 => b.insert(i.min(b.len()), byte),
                    _ if i < b.len() => {
                        b.remove(i);
                    }
                    _ => {}
                }
            }
            check_config(&String::from_utf8_lossy(&b))
        },
    );
}

// ---- Header ----

#[test]
fn fuzz_header_parse() {
    fuzz(
        "header",
        (
            prop::collection::vec(any::<u8>(), 0..40),
            12u8..=16,
            any::<bool>(),
        ),
        |(mut bytes, shift, plausible)| {
            if plausible && bytes.len() >= 2 {
                bytes[0] = 1;
                bytes[1] = shift;
            }
            let layout = ChunkLayout::from_shift(shift).unwrap();
            let _ = FileHeader::declared_layout(&bytes);
            if let Ok(h) = FileHeader::parse(&bytes, layout) {
                prop_assert!(bytes.len() >= HEADER_LEN);
                prop_assert_eq!(&h.as_bytes()[..], &bytes[..HEADER_LEN]);
                prop_assert_eq!(h.as_bytes()[1], shift);
            }
            Ok(())
        },
    );
}

// ---- Names ----

#[test]
fn fuzz_names_arbitrary() {
    let (_, nc) = ciphers(12);
    fuzz(
        "names (arbitrary)",
        (
            prop_oneof![
                "[A-Za-z0-9_-]{0,260}",
                "[A-Za-z0-9_=+/.-]{40,90}",
                ".{0,80}",
                "[A-Za-z0-9_-]{43}(\\.vln|\\.vln\\.name)?",
            ],
            any::<[u8; 16]>(),
            prop::collection::vec(any::<u8>(), 0..120),
        ),
        |(name, iv, blob)| {
            let iv = DirIv(iv);
            let _ = names::classify_entry(&name);
            let _ = veilfs::conflict::parse(&name);
            // Random names never decrypt (the tag is 128 bits).
            prop_assert!(nc.decrypt_name(&iv, &name).is_err());
            prop_assert!(nc.decrypt_name(&nc.root_iv(), &name).is_err());
            prop_assert!(nc.decrypt_xattr_name(&name).is_err());
            prop_assert!(nc.decrypt_symlink_target(&iv, &blob).is_err());
            prop_assert!(nc.decrypt_symlink_target(&iv, name.as_bytes()).is_err());
            prop_assert!(
                nc.decrypt_xattr_value(&name, names::XattrVersion::V1, None, blob.clone())
                    .is_err()
            );
            prop_assert!(
                nc.decrypt_xattr_value(&name, names::XattrVersion::V2, Some(&iv.0), blob)
                    .is_err()
            );
            Ok(())
        },
    );
}

#[test]
fn fuzz_names_mutated() {
    let (_, nc) = ciphers(12);
    fuzz(
        "names (mutated)",
        (
            prop::collection::vec(1u8..=255, 1..255),
            any::<[u8; 16]>(),
            any::<prop::sample::Index>(),
            any::<u8>(),
        ),
        |(plain, iv, at, byte)| {
            let plain: Vec<u8> = plain.into_iter().filter(|&b| b != b'/').collect();
            if plain.is_empty() || plain == b"." || plain == b".." {
                return Ok(());
            }
            let iv = DirIv(iv);
            let enc = match nc.encrypt_name(&iv, &plain) {
                Ok(e) => e,
                Err(_) => return Ok(()),
            };
            prop_assert_eq!(nc.decrypt_name(&iv, &enc).unwrap(), plain.clone());
            // Another directory, or any changed character: an error.
            let mut other = iv;
            other.0[0] ^= 1;
            prop_assert!(nc.decrypt_name(&other, &enc).is_err());
            let mut b = enc.clone().into_bytes();
            let i = at.index(b.len());
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let c = alphabet[byte as usize % 64];
            if b[i] != c {
                b[i] = c;
                let m = String::from_utf8(b).unwrap();
                prop_assert!(
                    nc.decrypt_name(&iv, &m).is_err(),
                    "changed name {m} decrypted"
                );
            }
            // Symlink targets and xattrs: the same.
            let t = nc.encrypt_symlink_target(&iv, &plain);
            prop_assert_eq!(
                nc.decrypt_symlink_target(&iv, t.as_bytes()).unwrap(),
                plain.clone()
            );
            let mut far = iv;
            far.0[15] ^= 1;
            prop_assert!(nc.decrypt_symlink_target(&far, t.as_bytes()).is_err());
            let mut tb = t.into_bytes();
            let i = at.index(tb.len());
            if tb[i] != c {
                tb[i] = c;
                prop_assert!(nc.decrypt_symlink_target(&iv, &tb).is_err());
            }
            let xn = nc.encrypt_xattr_name(&plain);
            prop_assert_eq!(
                nc.decrypt_xattr_name(&xn).unwrap(),
                (plain.clone(), names::XattrVersion::V2)
            );
            let v2 = names::XattrVersion::V2;
            let xv = nc.encrypt_xattr_value(&xn, &iv.0, &plain);
            let mut xv2 = xv.clone();
            let i = at.index(xv2.len());
            xv2[i] ^= byte | 1;
            prop_assert!(nc.decrypt_xattr_value(&xn, v2, Some(&iv.0), xv2).is_err());
            prop_assert!(
                nc.decrypt_xattr_value("user.other", v2, Some(&iv.0), xv.clone())
                    .is_err()
            );
            prop_assert!(nc.decrypt_xattr_value(&xn, v2, Some(&far.0), xv).is_err());
            Ok(())
        },
    );
}

// ---- Chunks ----

#[test]
fn fuzz_open_chunk() {
    fuzz(
        "open_chunk",
        (
            12u8..=16,
            prop::collection::vec(any::<u8>(), 0..200),
            0usize..70_000,
            any::<u64>(),
            any::<bool>(),
            any::<[u8; 16]>(),
        ),
        |(shift, seed_bytes, len, index, last, file_id)| {
            let (cc, _) = ciphers(shift);
            let layout = cc.layout();
            let header = FileHeader::with_file_id(layout, file_id);
            let len = len % (layout.stored_chunk_len() + 40);
            // Arbitrary stored bytes of any length (the seed repeated).
            let stored: Vec<u8> = if seed_bytes.is_empty() {
                vec![0; len]
            } else {
                seed_bytes.iter().copied().cycle().take(len).collect()
            };
            let mut out = vec![0u8; layout.chunk_size()];
            match cc.open_chunk(&header, index, last, &stored, &mut out) {
                Ok(Opened::Hole) => {
                    prop_assert!(!last && len == layout.stored_chunk_len());
                    prop_assert!(stored.iter().all(|&b| b == 0));
                }
                Ok(Opened::Data(n)) => {
                    prop_assert!(false, "random bytes opened as {n} bytes of data");
                }
                Err(_) => {}
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_sealed_chunk_mutations() {
    let (cc, _) = ciphers(12);
    let layout = cc.layout();
    fuzz(
        "sealed chunk mutations",
        (
            prop::collection::vec(any::<u8>(), 1..=4096),
            any::<u64>(),
            any::<bool>(),
            any::<prop::sample::Index>(),
            1u8..=255,
            0u8..4,
        ),
        |(plain, index, last, at, flip, what)| {
            let header = FileHeader::generate(layout);
            let mut stored = vec![0u8; plain.len() + CHUNK_OVERHEAD];
            cc.seal_chunk(&header, index, last, &plain, &mut stored);
            let mut out = vec![0u8; layout.chunk_size()];
            let ok = cc.open_chunk(&header, index, last, &stored, &mut out);
            prop_assert!(matches!(ok, Ok(Opened::Data(n)) if out[..n] == plain[..]));
            let res = match what {
                0 => {
                    let i = at.index(stored.len());
                    stored[i] ^= flip;
                    cc.open_chunk(&header, index, last, &stored, &mut out)
                }
                1 => cc.open_chunk(
                    &header,
                    index.wrapping_add(flip as u64),
                    last,
                    &stored,
                    &mut out,
                ),
                2 => cc.open_chunk(
                    &FileHeader::generate(layout),
                    index,
                    last,
                    &stored,
                    &mut out,
                ),
                _ => {
                    let cut = at.index(stored.len());
                    cc.open_chunk(&header, index, last, &stored[..cut], &mut out)
                }
            };
            prop_assert!(res.is_err(), "mutation {what} opened: {res:?}");
            Ok(())
        },
    );
}

#[derive(Debug, Clone)]
enum Damage {
    Flip(prop::sample::Index, u8),
    Overwrite(prop::sample::Index, Vec<u8>),
    Truncate(prop::sample::Index),
    Append(Vec<u8>),
    SwapChunks(prop::sample::Index, prop::sample::Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, f)| Damage::Flip(i, f)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(1u8..=255, 1..300)
        )
            .prop_map(|(i, v)| Damage::Overwrite(i, v)),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        prop::collection::vec(any::<u8>(), 1..5000).prop_map(Damage::Append),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Damage::SwapChunks(a, b)),
    ]
}

/// Reads `len` bytes at `offset`; every byte returned must be the
/// original's (or zeros for a whole chunk that reads as a hole).
fn read_checked(
    cc: &ContentCipher,
    file: &std::fs::File,
    original: &[u8],
    offset: u64,
    len: usize,
) -> Result<(), TestCaseError> {
    let mut buf = vec![0u8; len];
    let mut cf = CryptFile::new(file, cc, None);
    if let Ok(n) = cf.read_at(offset, &mut buf) {
        let cs = cc.layout().chunk_size() as u64;
        for (k, &b) in buf[..n].iter().enumerate() {
            let pos = offset + k as u64;
            let want = original.get(pos as usize).copied();
            if want != Some(b) {
                // Only a hole may differ: zeros, in a whole chunk.
                prop_assert!(
                    b == 0,
                    "garbage at {pos}: got {b}, original {want:?} (chunk {})",
                    pos / cs
                );
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_cryptfile_read_damaged() {
    let (cc, _) = ciphers(12);
    let layout = cc.layout();
    let stored = layout.stored_chunk_len();
    fuzz(
        "CryptFile::read_at (damaged files)",
        (
            prop::collection::vec(any::<u8>(), 1..20_000),
            prop::collection::vec(damage(), 1..3),
            any::<u64>(),
            1usize..25_000,
        ),
        |(plain, damages, offset, len)| {
            let mut f = tempfile::tempfile().unwrap();
            CryptFile::new(&f, &cc, None).write_at(0, &plain).unwrap();
            let mut bytes = std::fs::read(format!("/proc/self/fd/{}", {
                use std::os::fd::AsRawFd;
                f.as_raw_fd()
            }))
            .unwrap();
            for d in damages {
                match d {
                    // An earlier Truncate may have emptied the file: there
                    // is no byte left to pick (proptest's Index panics).
                    Damage::Flip(..) | Damage::Overwrite(..) | Damage::Truncate(_)
                        if bytes.is_empty() => {}
                    Damage::Flip(i, x) => {
                        let i = i.index(bytes.len());
                        bytes[i] ^= x;
                    }
                    Damage::Overwrite(i, v) => {
                        let i = i.index(bytes.len());
                        let n = v.len().min(bytes.len() - i);
                        bytes[i..i + n].copy_from_slice(&v[..n]);
                    }
                    Damage::Truncate(i) => bytes.truncate(i.index(bytes.len())),
                    Damage::Append(v) => bytes.extend_from_slice(&v),
                    Damage::SwapChunks(a, b) => {
                        let n = bytes.len().saturating_sub(HEADER_LEN) / stored;
                        if n >= 2 {
                            let (a, b) = (a.index(n), b.index(n));
                            if a != b {
                                let (a, b) = (a.min(b), a.max(b));
                                let sa = HEADER_LEN + a * stored;
                                let sb = HEADER_LEN + b * stored;
                                let (x, y) = bytes.split_at_mut(sb);
                                x[sa..sa + stored].swap_with_slice(&mut y[..stored]);
                            }
                        }
                    }
                }
            }
            f.set_len(0).unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
            f.write_all(&bytes).unwrap();
            let offset = offset % (plain.len() as u64 + 5000);
            read_checked(&cc, &f, &plain, offset, len)?;
            read_checked(&cc, &f, &plain, 0, plain.len() + 10)?;
            Ok(())
        },
    );
}

#[test]
fn fuzz_cryptfile_read_arbitrary() {
    let (cc, _) = ciphers(12);
    fuzz(
        "CryptFile::read_at (arbitrary bytes)",
        (
            prop::collection::vec(any::<u8>(), 0..12_000),
            any::<bool>(),
            any::<u64>(),
            1usize..20_000,
        ),
        |(mut bytes, plausible_header, offset, len)| {
            if plausible_header && bytes.len() >= 2 {
                bytes[0] = 1;
                bytes[1] = 12;
            }
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&bytes).unwrap();
            let offset = offset % (bytes.len() as u64 + 100);
            let mut buf = vec![0u8; len];
            let mut cf = CryptFile::new(&f, &cc, None);
            let _ = cf.plain_size();
            if let Ok(n) = cf.read_at(offset, &mut buf) {
                // Nothing authenticates in random bytes: at most holes.
                prop_assert!(
                    buf[..n].iter().all(|&b| b == 0),
                    "random backing bytes produced {n} bytes of plaintext"
                );
            }
            Ok(())
        },
    );
}
