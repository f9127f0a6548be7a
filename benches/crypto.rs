//! Crypto core throughput: seal plus open of one chunk, per core.
//! `cargo bench --bench crypto` (harness = false: plain timing loop, no
//! nightly needed). Reports MB/s of plaintext through seal+open.

use std::time::{Duration, Instant};

use veilfs::content::{CHUNK_OVERHEAD, ChunkLayout, ContentCipher, FileHeader};
use veilfs::keys::MasterKey;
use veilfs::names::NameCipher;

fn main() {
    println!(
        "{:>10} {:>14} {:>14} {:>18}",
        "chunk", "seal MB/s", "open MB/s", "seal+open MB/s"
    );
    for chunk in [4096usize, 16384, 32768, 65536] {
        let layout = ChunkLayout::new(chunk as u64).unwrap();
        let keys = MasterKey::from_bytes([1; 32]).derive();
        let cipher = ContentCipher::new(&keys.content, layout);
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
    names();
}

/// Seal and open of a 48-byte name (64 bytes sealed: the size the
/// AES-256-GCM-SIV comparison of issue 15 measured) through `NameCipher`,
/// base64 and padding included. The comparison itself (aws-lc-rs against
/// the `aes-gcm-siv` crate, which is no longer a dependency) is in the
/// commit that added this bench section; its numbers are in the commit
/// that made aws-lc-rs the one AEAD library.
fn names() {
    let keys = MasterKey::from_bytes([3u8; 32]).derive();
    let names = NameCipher::new(&keys, 175);
    let dir = names.root_iv();
    let name = [b'n'; 48];
    let encoded = names.encrypt_name(&dir, &name).unwrap();
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
    let seal = rate(&mut || {
        std::hint::black_box(names.encrypt_name(&dir, &name).unwrap());
    });
    let open = rate(&mut || {
        std::hint::black_box(names.decrypt_name(&dir, &encoded).unwrap());
    });
    println!();
    println!(
        "{:>10} {:>18} {:>18}",
        "name", "encrypt Mop/s", "decrypt Mop/s"
    );
    println!(
        "{:>10} {:>18.3} {:>18.3}",
        name.len(),
        seal / 1e6,
        open / 1e6
    );
}
