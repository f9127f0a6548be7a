//! The one source of AEAD nonces: 12 random bytes each (AES-GCM-SIV
//! tolerates a repeat, which then leaks only whether two messages under
//! one key and AD are equal).
//!
//! Nonces are drawn from [`super::random`] in batches, one system call
//! per 256 nonces per thread, because every written chunk takes one.

use std::cell::RefCell;

use super::NONCE_LEN;
use super::random;

const BATCH: usize = 256;

thread_local! {
    /// Random nonce material not handed out yet, from `.0` on.
    static POOL: RefCell<(usize, [u8; NONCE_LEN * BATCH])> =
        const { RefCell::new((NONCE_LEN * BATCH, [0u8; NONCE_LEN * BATCH])) };
}

/// A fresh random nonce.
pub fn fresh() -> [u8; NONCE_LEN] {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (pos, buf) = &mut *pool;
        if *pos + NONCE_LEN > buf.len() {
            random::fill(buf);
            *pos = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[*pos..*pos + NONCE_LEN]);
        // Never hand out the same bytes twice, even if a later refill fails.
        buf[*pos..*pos + NONCE_LEN].fill(0);
        *pos += NONCE_LEN;
        nonce
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More than several batches, across refills: no nonce repeats and
    /// none is the zeroed slot of one already handed out.
    #[test]
    fn nonces_are_fresh_across_refills() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 * BATCH + 7 {
            let n = fresh();
            assert_ne!(n, [0u8; NONCE_LEN]);
            assert!(seen.insert(n));
        }
    }
}
