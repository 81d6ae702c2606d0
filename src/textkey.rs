//! Caches keyed by long texts (bearer tokens, session cookies) without walking the text byte by
//! byte: a map is keyed by a 64-bit fingerprint of the text and the entry keeps the text itself,
//! compared eight bytes at a time on a fingerprint match.
//!
//! Why: under Traefik's wazero, `memcmp` (wasi-libc's byte loop) and `SipHash` cost ≈ 2.5 ns and
//! ≈ 0.8 ns per byte: a 370-byte token took ≈ 1.2 µs to look up in a `HashMap<Box<str>, _>`, a
//! 2 KiB cookie ≈ 6 µs. A fingerprint is only an index: two texts that share one are told apart
//! by [`same`], so a collision costs a cache miss, never a wrong hit. The seed is random per
//! instance, but the mix is not a keyed PRF: pairs of texts that collide under every seed can be
//! built (flip the top bit of one word and the matching bit of the next). That buys an attacker
//! nothing: both texts must be theirs (the other side's token is unknown to them), and the worst
//! a collision does is a miss or one entry evicted.

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The whole 8-byte words of a text, and the bytes after them.
///
/// A whole word is read as an array (one `i64.load` in the wasm build); copying each slice into
/// a `[u8; 8]` was a call to `copy_from_slice` per word.
fn words(text: &[u8]) -> (impl Iterator<Item = u64> + '_, &[u8]) {
    let chunks = text.chunks_exact(8);
    let tail = chunks.remainder();
    (
        chunks.map(|c| c.try_into().map_or(0, u64::from_le_bytes)),
        tail,
    )
}

/// The last, partial word of a text (fewer than 8 bytes), zero-padded.
fn tail_word(tail: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    for (d, s) in w.iter_mut().zip(tail) {
        *d = *s;
    }
    u64::from_le_bytes(w)
}

/// The seed of one instance's fingerprints (random; a fixed one when the host has no entropy,
/// which only makes collisions predictable, not hits wrong).
pub fn seed() -> u64 {
    crate::rand::bytes::<8>().map_or(K, u64::from_le_bytes)
}

/// A 64-bit fingerprint of `text` under `seed`.
pub fn fingerprint(seed: u64, text: &[u8]) -> u64 {
    let mut h = seed ^ (text.len() as u64).wrapping_mul(K);
    let (whole, tail) = words(text);
    for w in whole {
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    h = (h ^ tail_word(tail)).wrapping_mul(K);
    // Final avalanche (MurmurHash3 fmix64).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether two texts are equal, compared a word at a time; texts of the same length take the
/// same time whatever their contents.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let ((wa, ta), (wb, tb)) = (words(a), words(b));
    let diff = wa.zip(wb).fold(0, |d, (x, y)| d | (x ^ y));
    (diff | (tail_word(ta) ^ tail_word(tb))) == 0
}

/// The `BuildHasher` of maps keyed by values that are already mixed (fingerprints, SHA-256
/// digests): one multiply per word under a random per-map seed, where the default SipHash runs
/// its rounds over every key on every lookup.
#[derive(Debug, Clone, Copy)]
pub struct MixedKeys(u64);

impl MixedKeys {
    /// A builder with a fresh random seed.
    pub fn new() -> Self {
        MixedKeys(seed())
    }
}

impl Default for MixedKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl std::hash::BuildHasher for MixedKeys {
    type Hasher = MixedHasher;

    fn build_hasher(&self) -> MixedHasher {
        MixedHasher(self.0)
    }
}

/// The hasher of [`MixedKeys`].
#[derive(Debug)]
pub struct MixedHasher(u64);

impl std::hash::Hasher for MixedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let (whole, tail) = words(bytes);
        for w in whole {
            self.write_u64(w);
        }
        if !tail.is_empty() {
            self.write_u64(tail_word(tail));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(K).rotate_left(29);
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_keys_spread_fingerprints_and_digests() {
        use std::collections::HashMap;
        use std::hash::BuildHasher;
        let b = MixedKeys::new();
        // Distinct keys give distinct hashes (no fixed point that maps everything to a bucket).
        let hashes: std::collections::HashSet<u64> = (0..1000u64)
            .map(|i| b.hash_one(fingerprint(7, &i.to_le_bytes())))
            .collect();
        assert_eq!(hashes.len(), 1000);
        let mut m: HashMap<[u8; 32], u32, MixedKeys> = HashMap::with_hasher(MixedKeys::new());
        for i in 0..100u32 {
            m.insert(crate::crypto::sha256(&i.to_le_bytes()), i);
        }
        for i in 0..100u32 {
            assert_eq!(m.get(&crate::crypto::sha256(&i.to_le_bytes())), Some(&i));
        }
    }

    #[test]
    fn same_is_equality() {
        let texts: [&[u8]; 7] = [
            b"",
            b"a",
            b"abcdefgh",
            b"abcdefgi",
            b"abcdefghi",
            b"abcdefghj",
            b"bbcdefghi",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
        let long = "x".repeat(371);
        let mut other = long.clone().into_bytes();
        other[200] = b'y';
        assert!(same(long.as_bytes(), long.clone().as_bytes()));
        assert!(!same(long.as_bytes(), &other));
    }

    #[test]
    fn fingerprints_depend_on_every_byte_the_length_and_the_seed() {
        let base = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
            .as_bytes()
            .to_vec();
        let f = fingerprint(1, &base);
        for i in 0..base.len() {
            let mut t = base.clone();
            t[i] ^= 1;
            assert_ne!(fingerprint(1, &t), f, "byte {i}");
        }
        assert_ne!(fingerprint(1, &base[..base.len() - 1]), f);
        assert_ne!(fingerprint(1, b"ab\0"), fingerprint(1, b"ab"));
        assert_ne!(fingerprint(2, &base), f);
        assert_eq!(fingerprint(1, &base), f);
    }
}
