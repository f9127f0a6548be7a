//! The one source of random bytes: the operating system's CSPRNG
//! (`getrandom(2)`). Every key, salt, file ID, directory IV, entry ID and
//! nonce of veilfs is drawn here.

/// Fills `buf` with random bytes.
///
/// # Panics
/// When the OS generator fails, which on Linux only happens before the
/// kernel's pool is initialised at boot or under seccomp filters that
/// forbid the call: there is no safe way to go on without randomness.
pub fn fill(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS random number generator failed");
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_fill_the_whole_buffer() {
        let a: [u8; 32] = bytes();
        let b: [u8; 32] = bytes();
        assert_ne!(a, b);
        // A 64-byte buffer that stays all zero has odds of 2^-512.
        let mut big = [0u8; 64];
        fill(&mut big);
        assert!(big[32..].iter().any(|&x| x != 0), "the tail is filled too");
    }
}
