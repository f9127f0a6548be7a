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
}
