//! Owns: the hash used for consistent hashing keys and server identities: FNV-1a over the bytes,
//! then a splitmix64 finalizer so that similar inputs (addresses, session ids) spread over the
//! whole 64-bit range. Fixed, not seeded per process: every shard and every restart maps a key to
//! the same server.
//! Must not: change output for the same input (that would move every sticky key).

/// 64-bit hash of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// splitmix64 finalizer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        assert_eq!(hash_bytes(b"10.0.0.1"), hash_bytes(b"10.0.0.1"));
        assert_ne!(hash_bytes(b"10.0.0.1"), hash_bytes(b"10.0.0.2"));
        // Known value: guards against accidental changes that would move every key.
        assert_eq!(hash_bytes(b""), mix64(0xcbf2_9ce4_8422_2325));
    }
}
