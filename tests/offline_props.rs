//! Random damage to a backing file: always found, never wrong plaintext,
//! never a panic (proptest).

mod common;
#[macro_use]
mod offline_common;

use std::fs;
use std::path::Path;

use common::pattern;

use offline_common::*;

#[derive(Debug, Clone)]
enum Damage {
    FlipBit { at: f64, bit: u8 },
    Overwrite { at: f64, bytes: Vec<u8> },
    Truncate { to: f64 },
    Append { bytes: Vec<u8> },
    Insert { at: f64, bytes: Vec<u8> },
}

fn damage() -> impl proptest::strategy::Strategy<Value = Damage> {
    use proptest::prelude::*;
    let bytes = || prop::collection::vec(any::<u8>(), 1..80);
    prop_oneof![
        (0.0..1.0f64, 0u8..8).prop_map(|(at, bit)| Damage::FlipBit { at, bit }),
        (0.0..1.0f64, bytes()).prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
        (0.0..1.0f64).prop_map(|to| Damage::Truncate { to }),
        bytes().prop_map(|bytes| Damage::Append { bytes }),
        (0.0..1.0f64, bytes()).prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
    ]
}

fn apply(d: &Damage, b: &mut Vec<u8>) {
    let pos = |f: f64, len: usize| ((f * len as f64) as usize).min(len.saturating_sub(1));
    match d {
        Damage::FlipBit { at, bit } => {
            let i = pos(*at, b.len());
            b[i] ^= 1 << bit;
        }
        Damage::Overwrite { at, bytes } => {
            let i = pos(*at, b.len());
            let n = bytes.len().min(b.len() - i);
            b[i..i + n].copy_from_slice(&bytes[..n]);
        }
        Damage::Truncate { to } => b.truncate(pos(*to, b.len())),
        Damage::Append { bytes } => b.extend_from_slice(bytes),
        Damage::Insert { at, bytes } => {
            let i = pos(*at, b.len());
            b.splice(i..i, bytes.iter().copied());
        }
    }
}

proptest::proptest! {
    // VEILFS_DAMAGE_CASES=5000 for a long run.
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
        std::env::var("VEILFS_DAMAGE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
    ))]
    #[test]
    fn random_damage_is_always_found_and_never_returns_wrong_plaintext(
        which in 0usize..4,
        d in damage(),
    ) {
        let tv = TV::new();
        tv.mkdir("/d");
        let files = [
            ("/a", pattern(3 * CS + 100, 1)),
            ("/b", pattern(1, 2)),
            ("/c", pattern(CS, 3)),
            ("/d/e", pattern(2 * CS, 4)),
        ];
        for (p, data) in &files {
            tv.write(p, data);
        }
        let (path, data) = &files[which];
        let backing = tv.backing(path);
        let before = fs::read(&backing).unwrap();
        modify(&backing, |b| apply(&d, b));
        let after = fs::read(&backing).unwrap();
        proptest::prop_assume!(after != before);
        // Truncation to zero bytes, or to the bare 18-byte header (an empty
        // file, FORMAT §4), are the undetectable cuts (FORMAT §9).
        proptest::prop_assume!(!after.is_empty() && after.len() != 18);

        let rel = backing.strip_prefix(&tv.dir).unwrap().to_str().unwrap().to_string();
        let r = tv.fsck();
        proptest::prop_assert!(
            r.problems.iter().any(|p| p.backing_path == rel && p.path == *path),
            "{d:?} on {path} not found: {:#?}", r.problems
        );
        proptest::prop_assert!(
            r.problems.iter().all(|p| p.backing_path == rel),
            "only {path} is damaged: {:#?}", r.problems
        );

        // Plain cat never returns wrong bytes: it fails.
        let plain = tv.cat(path);
        proptest::prop_assert!(plain.is_err(), "{d:?}: cat succeeded");

        // Salvage: every chunk not reported is exactly the original.
        let mut out = Vec::new();
        let rep = tv.offline().cat(Path::new(path), &mut out, true).unwrap();
        proptest::prop_assert!(!rep.is_clean());
        if rep.header_error.is_none() {
            for (i, chunk) in out.chunks(CS).enumerate() {
                let i = i as u64;
                let bad = rep.bad.iter().any(|b| b.chunks.contains(&i));
                let start = i as usize * CS;
                if bad {
                    proptest::prop_assert!(chunk.iter().all(|&x| x == 0));
                } else {
                    proptest::prop_assert!(
                        data.get(start..start + chunk.len()) == Some(chunk),
                        "{d:?}: chunk {i} of {path} is wrong plaintext"
                    );
                }
            }
        } else {
            proptest::prop_assert!(out.iter().all(|&x| x == 0));
        }
    }
}
