//! Crypto core throughput: seal plus open of one chunk, per core.
//! `cargo bench --bench crypto` (harness = false: plain timing loop, no
//! nightly needed). Reports MB/s of plaintext through seal+open.

use std::time::{Duration, Instant};

use veilfs::content::{CHUNK_OVERHEAD, ChunkLayout, ContentCipher, FileHeader};
use veilfs::keys::SecretKey;

fn main() {
    println!(
        "{:>10} {:>14} {:>14} {:>18}",
        "chunk", "seal MB/s", "open MB/s", "seal+open MB/s"
    );
    for chunk in [4096usize, 16384, 32768, 65536] {
        let layout = ChunkLayout::new(chunk as u64).unwrap();
        let cipher = ContentCipher::new(&SecretKey::from_bytes([1; 32]), layout);
        let header = FileHeader::generate(layout);
        let plain = vec![0x5au8; chunk];
        let mut sealed = vec![0u8; chunk + CHUNK_OVERHEAD];
        let mut out = vec![0u8; chunk];
        let budget = Duration::from_millis(700);
        // Seal only.
        let (mut n, start) = (0u64, Instant::now());
        while start.elapsed() < budget {
            for i in 0..64 {
                cipher.seal_chunk(&header, i, false, &plain, &mut sealed);
            }
            n += 64;
        }
        let seal = (n as f64 * chunk as f64) / start.elapsed().as_secs_f64() / 1e6;
        cipher.seal_chunk(&header, 0, false, &plain, &mut sealed);
        let (mut n, start) = (0u64, Instant::now());
        while start.elapsed() < budget {
            for _ in 0..64 {
                cipher
                    .open_chunk(&header, 0, false, &sealed, &mut out)
                    .unwrap();
            }
            n += 64;
        }
        let open = (n as f64 * chunk as f64) / start.elapsed().as_secs_f64() / 1e6;
        // Seal then open, as a write followed by a read does.
        let (mut n, start) = (0u64, Instant::now());
        while start.elapsed() < budget {
            for i in 0..64 {
                cipher.seal_chunk(&header, i, false, &plain, &mut sealed);
                cipher
                    .open_chunk(&header, i, false, &sealed, &mut out)
                    .unwrap();
            }
            n += 64;
        }
        let both = (n as f64 * chunk as f64) / start.elapsed().as_secs_f64() / 1e6;
        println!("{chunk:>10} {seal:>14.0} {open:>14.0} {both:>18.0}");
    }
    compare_libraries();
}

/// Seal and open of one message of `len` bytes with AES-256-GCM-SIV, once
/// through AWS-LC and once through the pure-Rust `aes-gcm-siv` crate: the
/// measurement that chose one AEAD library for every use (issue 15).
/// Prints operations per second and MB/s of plaintext.
fn compare_libraries() {
    use aes_gcm_siv::Aes256GcmSiv;
    use aes_gcm_siv::aead::{AeadInOut, KeyInit};
    use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, Nonce, UnboundKey};

    let key = [3u8; 32];
    let nonce = [9u8; 12];
    let ad = [1u8; 27];
    let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM_SIV, &key).unwrap());
    let rc = Aes256GcmSiv::new((&key).into());
    let rc_nonce = aes_gcm_siv::Nonce::try_from(&nonce[..]).unwrap();
    println!();
    println!(
        "{:>15} {:>12} {:>14} {:>14} {:>14}",
        "AES-256-GCM-SIV", "message", "seal Mop/s", "open Mop/s", "seal MB/s"
    );
    for len in [64usize, 4096] {
        let mut buf = vec![0x5au8; len];
        // Both libraries seal to the same bytes: it is one algorithm.
        let lc_tag = lc
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&ad[..]),
                &mut buf,
            )
            .unwrap();
        let lc_sealed = buf.clone();
        buf.fill(0x5a);
        let rc_tag = rc
            .encrypt_inout_detached(&rc_nonce, &ad, buf.as_mut_slice().into())
            .unwrap();
        assert_eq!(lc_sealed, buf);
        assert_eq!(lc_tag.as_ref(), &rc_tag[..]);
        let mut out = vec![0u8; len];
        let budget = Duration::from_millis(700);
        let rate = |f: &mut dyn FnMut()| {
            let (mut n, start) = (0u64, Instant::now());
            while start.elapsed() < budget {
                for _ in 0..64 {
                    f();
                }
                n += 64;
            }
            n as f64 / start.elapsed().as_secs_f64()
        };
        let lc_seal = rate(&mut || {
            let _ = std::hint::black_box(
                lc.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&ad[..]),
                    &mut buf,
                )
                .unwrap(),
            );
        });
        let lc_open = rate(&mut || {
            lc.open_separate_gather(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&ad[..]),
                &lc_sealed,
                lc_tag.as_ref(),
                &mut out,
            )
            .unwrap();
        });
        let rc_seal = rate(&mut || {
            rc.encrypt_inout_detached(&rc_nonce, &ad, buf.as_mut_slice().into())
                .unwrap();
        });
        let rc_open = rate(&mut || {
            out.copy_from_slice(&lc_sealed);
            rc.decrypt_inout_detached(&rc_nonce, &ad, out.as_mut_slice().into(), &rc_tag)
                .unwrap();
        });
        for (lib, seal, open) in [
            ("aws-lc-rs", lc_seal, lc_open),
            ("aes-gcm-siv", rc_seal, rc_open),
        ] {
            println!(
                "{lib:>15} {len:>12} {:>14.3} {:>14.3} {:>14.0}",
                seal / 1e6,
                open / 1e6,
                seal * len as f64 / 1e6
            );
        }
    }
}
