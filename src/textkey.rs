//! Caches keyed by long texts (bearer tokens, session cookies) without walking the text byte by
//! byte: a map is keyed by a 64-bit fingerprint of the text and the entry keeps the text itself,
//! compared eight bytes at a time on a fingerprint match.
//!
//! Why: under Traefik's wazero, `memcmp` (wasi-libc's byte loop) and `SipHash` cost ≈ 2.5 ns and
//! ≈ 0.8 ns per byte: a 370-byte token took ≈ 1.2 µs to look up in a `HashMap<Box<str>, _>`, a
//! 2 KiB cookie ≈ 6 µs. A fingerprint is only an index: two texts that share one are told apart
//! by [`same`], so a collision costs a cache miss, never a wrong hit.
//!
//! The fingerprint reads a text's length, its first [`HEAD`] bytes and its last [`TAIL`] bytes
//! (all of a text up to [`HEAD`] + [`TAIL`] bytes), not the middle: the texts it keys end in a
//! signature (a JWS) or an authentication tag (a sealed cookie), which differ between any two
//! texts their issuer made, so texts that share a fingerprint are texts built to. That buys an
//! attacker nothing: a text of theirs that shares the end of someone else's token or cookie
//! needs that token's signature or that cookie's tag, which only its holder has; texts that share
//! one among themselves only evict each other (one entry per fingerprint), and [`same`] tells
//! every one of them apart from a cached text. The seed is random per instance.
//!
//! The word-at-a-time reads also serve two scans of header text, [`is_ascii`] and [`find_byte`].

/// Bytes read from the start of a text by [`fingerprint`].
pub const HEAD: usize = 16;
/// Bytes read from the end of a text by [`fingerprint`].
pub const TAIL: usize = 48;

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

/// The 8-byte word at `i` of a block (0 past its end; the callers' blocks are whole).
fn word_at(c: &[u8], i: usize) -> u64 {
    c.get(i..i + 8)
        .and_then(|w| w.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The last, partial word of a text (fewer than 8 bytes), zero-padded: read 4, 2 and 1 bytes at
/// a time (a byte loop was ≈ 10 wasm operators per byte).
fn tail_word(tail: &[u8]) -> u64 {
    let (mut w, mut shift, mut rest) = (0u64, 0, tail);
    if let Some((h, r)) = rest.split_first_chunk::<4>() {
        w = u64::from(u32::from_le_bytes(*h));
        (shift, rest) = (32, r);
    }
    if let Some((h, r)) = rest.split_first_chunk::<2>() {
        w |= u64::from(u16::from_le_bytes(*h)) << shift;
        (shift, rest) = (shift + 16, r);
    }
    if let Some(&c) = rest.first() {
        w |= u64::from(c) << shift;
    }
    w
}

/// The seed of one instance's fingerprints (random; a fixed one when the host has no entropy,
/// which only makes collisions predictable, not hits wrong).
pub fn seed() -> u64 {
    crate::rand::bytes::<8>().map_or(K, u64::from_le_bytes)
}

/// A 64-bit fingerprint of `text` under `seed`: of its length, its first [`HEAD`] and last
/// [`TAIL`] bytes (of all of it when it is no longer than both).
pub fn fingerprint(seed: u64, text: &[u8]) -> u64 {
    let mut h = seed ^ (text.len() as u64).wrapping_mul(K);
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(29);
    if text.len() <= HEAD + TAIL {
        let (whole, tail) = words(text);
        for w in whole {
            h = mix(h, w);
        }
        h = mix(h, tail_word(tail));
    } else {
        // The eight words at fixed places (through `words`, ≈ 30 wasm operators each).
        let end = text.get(text.len() - TAIL..).unwrap_or_default();
        for w in [
            word_at(text, 0),
            word_at(text, 8),
            word_at(end, 0),
            word_at(end, 8),
            word_at(end, 16),
            word_at(end, 24),
            word_at(end, 32),
            word_at(end, 40),
        ] {
            h = mix(h, w);
        }
    }
    // Final avalanche (MurmurHash3 fmix64).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether two texts are equal, compared 32 bytes at a time; texts of the same length take the
/// same time whatever their contents.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // The 16-byte blocks as vectors where the build has them, then the rest by words.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let (a, b) = match simd::differ(a, b) {
        (true, _) => return false,
        (false, n) => (
            a.get(n..).unwrap_or_default(),
            b.get(n..).unwrap_or_default(),
        ),
    };
    // Four words per step: one loop test per 32 bytes (`words` alone was ≈ 20 wasm operators
    // per word, a loop test and an iterator step each).
    let (blocks_a, blocks_b) = (a.chunks_exact(32), b.chunks_exact(32));
    let (rest_a, rest_b) = (blocks_a.remainder(), blocks_b.remainder());
    let mut diff = 0;
    for (x, y) in blocks_a.zip(blocks_b) {
        diff |= (word_at(x, 0) ^ word_at(y, 0))
            | (word_at(x, 8) ^ word_at(y, 8))
            | (word_at(x, 16) ^ word_at(y, 16))
            | (word_at(x, 24) ^ word_at(y, 24));
    }
    let ((wa, ta), (wb, tb)) = (words(rest_a), words(rest_b));
    diff |= wa.zip(wb).fold(0, |d, (x, y)| d | (x ^ y));
    (diff | (tail_word(ta) ^ tail_word(tb))) == 0
}

/// Whether `text` begins with `prefix`, compared as [`same`] does (`str::starts_with` and `==`
/// are a `memcmp` call, wasi-libc's byte loop: ≈ 20 wasm operators per byte of a cookie name).
pub fn starts_with(text: &[u8], prefix: &[u8]) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| same(head, prefix))
}

/// Whether `text` is `lower` ignoring ASCII case, where `lower` is lower-case ASCII letters only
/// (an authentication scheme). Setting bit `0x20` of a byte lower-cases an upper-case letter and
/// makes a letter of no byte that is not one, so both sides are compared with it set, a word at
/// a time (`eq_ignore_ascii_case` is ≈ 45 wasm operators per byte).
#[inline]
pub fn eq_letters_ignoring_case(text: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = 0x2020_2020_2020_2020;
    debug_assert!(lower.iter().all(u8::is_ascii_lowercase));
    if text.len() != lower.len() {
        return false;
    }
    let (mut t, mut l, mut diff) = (text, lower, 0);
    while let (Some((tw, tr)), Some((lw, lr))) =
        (t.split_first_chunk::<8>(), l.split_first_chunk::<8>())
    {
        diff |= (u64::from_le_bytes(*tw) | CASE) ^ (u64::from_le_bytes(*lw) | CASE);
        (t, l) = (tr, lr);
    }
    // The zero padding of both last words reads as 0x20 on both sides.
    (diff | ((tail_word(t) | CASE) ^ (tail_word(l) | CASE))) == 0
}

/// Whether every byte of `b` is below 0x80, read as 64-bit words, four per step (the host's
/// header values and targets, before they become `String`s).
pub fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let b = match simd::high_bit(b) {
        (true, _) => return false,
        (false, n) => b.get(n..).unwrap_or_default(),
    };
    let blocks = b.chunks_exact(32);
    let rest = blocks.remainder();
    let mut seen = 0;
    for c in blocks {
        seen |= word_at(c, 0) | word_at(c, 8) | word_at(c, 16) | word_at(c, 24);
    }
    let words = rest.chunks_exact(8);
    let tail = words.remainder();
    for w in words {
        seen |= word_at(w, 0);
    }
    (seen | tail_word(tail)) & HIGH == 0
}

/// The position of the first `needle` in `hay`, read as 64-bit words (SWAR: a word holds the
/// byte when `w ^ splat(needle)` has a zero byte). `core`'s `memchr` reads 32-bit words on
/// wasm32, ≈ 4 wasm operators per byte of a session cookie; this is ≈ 2.
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let splat = LOW.wrapping_mul(u64::from(needle));
    // Exact for the lowest zero byte of `w ^ splat`: a borrow only runs upwards from a zero byte.
    let zeros = |w: u64| {
        let x = w ^ splat;
        x.wrapping_sub(LOW) & !x & HIGH
    };
    // The 16-byte blocks as vectors where the build has them (fewer than 16 bytes are left);
    // else four words per step, one test for the four (as in `same`).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let mut at = match simd::find(hay, needle) {
        Ok(i) => return Some(i),
        Err(searched) => searched,
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let mut at = 0;
    for c in hay.get(at..).unwrap_or_default().chunks_exact(32) {
        if zeros(word_at(c, 0))
            | zeros(word_at(c, 8))
            | zeros(word_at(c, 16))
            | zeros(word_at(c, 24))
            != 0
        {
            break;
        }
        at += 32;
    }
    let rest = hay.get(at..).unwrap_or_default();
    let (whole, _) = words(rest);
    for w in whole {
        let z = zeros(w);
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    hay.get(at..)
        .unwrap_or_default()
        .iter()
        .position(|c| *c == needle)
        .map(|i| at + i)
}

/// The position of the first byte of `hay` that is `a` or `b`, read as 64-bit words as
/// [`find_byte`] does (for short texts such as a request target: no vector pass).
pub fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (sa, sb) = (
        LOW.wrapping_mul(u64::from(a)),
        LOW.wrapping_mul(u64::from(b)),
    );
    // Each term is exact for its lowest zero byte, so the lowest bit of their union is the first
    // byte that is either.
    let zeros = |w: u64| {
        let (x, y) = (w ^ sa, w ^ sb);
        (x.wrapping_sub(LOW) & !x & HIGH) | (y.wrapping_sub(LOW) & !y & HIGH)
    };
    let (whole, tail) = words(hay);
    let mut at = 0;
    for w in whole {
        let z = zeros(w);
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    tail.iter().position(|c| *c == a || *c == b).map(|i| at + i)
}

/// The 16-byte blocks of [`same`], [`is_ascii`] and [`find_byte`] as wasm SIMD vectors, in a
/// build with `simd128` (`.cargo/config.toml`). Each returns how many bytes it covered (whole
/// blocks); the callers finish the rest a word at a time. A vector is two 64-bit reads
/// (`v128.load64_zero` + `v128.load64_lane`, safe code), so comparing 32 bytes is ≈ 40 wasm
/// operators against the word loop's ≈ 48; the search gains more (`find_byte` on a session's
/// `Cookie` header: 940 → 587).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::{
        i8x16_eq, u64x2, u8x16_bitmask, u8x16_splat, v128, v128_any_true, v128_or, v128_xor,
    };

    /// The 16 bytes at `i` of a block, as two words (zero past its end; the callers' blocks are
    /// whole). (Sixteen bytes into `u8x16` are sixteen lane loads at `opt-level = "s"`.)
    #[inline(always)]
    fn at(c: &[u8], i: usize) -> v128 {
        u64x2(super::word_at(c, i), super::word_at(c, i + 8))
    }

    /// Whether the whole 16-byte blocks of two texts of one length differ, and their length.
    pub fn differ(a: &[u8], b: &[u8]) -> (bool, usize) {
        let (pairs_a, pairs_b) = (a.chunks_exact(32), b.chunks_exact(32));
        let (rest_a, rest_b) = (pairs_a.remainder(), pairs_b.remainder());
        let mut diff = u8x16_splat(0);
        for (x, y) in pairs_a.zip(pairs_b) {
            diff = v128_or(
                diff,
                v128_or(v128_xor(at(x, 0), at(y, 0)), v128_xor(at(x, 16), at(y, 16))),
            );
        }
        let mut n = a.len() - rest_a.len();
        if rest_a.len() >= 16 {
            diff = v128_or(diff, v128_xor(at(rest_a, 0), at(rest_b, 0)));
            n += 16;
        }
        (v128_any_true(diff), n)
    }

    /// Whether a byte of the whole 16-byte blocks of `b` is 0x80 or above, and their length.
    pub fn high_bit(b: &[u8]) -> (bool, usize) {
        let pairs = b.chunks_exact(32);
        let rest = pairs.remainder();
        let mut seen = u8x16_splat(0);
        for c in pairs {
            seen = v128_or(seen, v128_or(at(c, 0), at(c, 16)));
        }
        let mut n = b.len() - rest.len();
        if rest.len() >= 16 {
            seen = v128_or(seen, at(rest, 0));
            n += 16;
        }
        // `i8x16.bitmask` gathers exactly the high bits.
        (u8x16_bitmask(seen) != 0, n)
    }

    /// The position of the first `needle` in the whole 16-byte blocks of `hay`, or `Err` with
    /// their length when none holds it.
    pub fn find(hay: &[u8], needle: u8) -> Result<usize, usize> {
        let splat = u8x16_splat(needle);
        let mut at_ = 0;
        let pairs = hay.chunks_exact(32);
        let rest = pairs.remainder();
        for c in pairs {
            let (lo, hi) = (i8x16_eq(at(c, 0), splat), i8x16_eq(at(c, 16), splat));
            if v128_any_true(v128_or(lo, hi)) {
                let mask = u32::from(u8x16_bitmask(lo)) | (u32::from(u8x16_bitmask(hi)) << 16);
                return Ok(at_ + mask.trailing_zeros() as usize);
            }
            at_ += 32;
        }
        if rest.len() >= 16 {
            let mask = u8x16_bitmask(i8x16_eq(at(rest, 0), splat));
            if mask != 0 {
                return Ok(at_ + mask.trailing_zeros() as usize);
            }
            at_ += 16;
        }
        Err(at_)
    }
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
    fn is_ascii_finds_a_high_byte_anywhere() {
        for len in [0usize, 1, 7, 8, 31, 32, 33, 40, 64, 95, 371] {
            let a: Vec<u8> = (0..len).map(|i| (i * 13 % 128) as u8).collect();
            assert!(is_ascii(&a));
            assert_eq!(is_ascii(&a), a.is_ascii());
            for i in 0..len {
                let mut b = a.clone();
                b[i] |= 0x80;
                assert!(!is_ascii(&b), "len {len}, byte {i}");
            }
        }
    }

    #[test]
    fn find_byte_is_position() {
        for len in [0usize, 1, 7, 8, 9, 16, 33, 64, 371] {
            let hay: Vec<u8> = (0..len).map(|i| b'a' + (i % 20) as u8).collect();
            assert_eq!(find_byte(&hay, b';'), None);
            for i in 0..len {
                for j in i..len.min(i + 10) {
                    let mut h = hay.clone();
                    h[i] = b';';
                    h[j] = b';';
                    assert_eq!(find_byte(&h, b';'), Some(i), "len {len}, at {i}, {j}");
                }
                // Bytes next to the needle's value (a borrow must not make them match).
                let mut h = hay.clone();
                h[i] = b';' + 1;
                if i + 1 < len {
                    h[i + 1] = b';';
                    assert_eq!(find_byte(&h, b';'), Some(i + 1));
                }
                h[i] = 0x80 | b';';
                assert_eq!(find_byte(&h, b';'), h.iter().position(|c| *c == b';'));
            }
        }
    }

    #[test]
    fn find_either_is_the_first_of_both() {
        let naive = |h: &[u8]| h.iter().position(|c| *c == b'?' || *c == b'#');
        for len in [0usize, 1, 7, 8, 9, 16, 17, 33, 200] {
            let hay: Vec<u8> = (0..len).map(|i| b'a' + (i % 20) as u8).collect();
            assert_eq!(find_either(&hay, b'?', b'#'), None);
            for i in 0..len {
                for j in i..len.min(i + 10) {
                    for (x, y) in [(b'?', b'#'), (b'#', b'?'), (b'?', b'?'), (b'#', b'#')] {
                        let mut h = hay.clone();
                        h[j] = y;
                        h[i] = x;
                        assert_eq!(find_either(&h, b'?', b'#'), Some(i), "len {len} {i} {j}");
                    }
                }
                // Neighbouring values and high bytes never match (no borrow across bytes).
                for v in [
                    b'?' - 1,
                    b'?' + 1,
                    b'#' - 1,
                    b'#' + 1,
                    0x80 | b'?',
                    0x80 | b'#',
                    0,
                ] {
                    let mut h = hay.clone();
                    h[i] = v;
                    if i + 1 < len {
                        h[i + 1] = b'#';
                    }
                    assert_eq!(find_either(&h, b'?', b'#'), naive(&h), "len {len} {i} {v}");
                }
            }
        }
    }

    #[test]
    fn starts_with_is_prefix() {
        let texts: [&[u8]; 6] = [
            b"",
            b"_",
            b"_oidc",
            b"_oidc_guard_session",
            b"_oidc_guard_session_1",
            b"_oidc_guard_sessioN",
        ];
        for a in texts {
            for p in texts {
                assert_eq!(starts_with(a, p), a.starts_with(p), "{a:?} {p:?}");
            }
        }
    }

    #[test]
    fn eq_letters_ignoring_case_is_eq_ignore_ascii_case() {
        // Every byte in every position of a scheme-sized text, against the standard library.
        for lower in [
            &b"bearer"[..],
            b"dpop",
            b"basic",
            b"b",
            b"abcdefghijklmnopq",
        ] {
            let mut upper = lower.to_ascii_uppercase();
            assert!(eq_letters_ignoring_case(&upper, lower));
            upper[0] = upper[0].to_ascii_lowercase();
            assert!(eq_letters_ignoring_case(&upper, lower));
            for i in 0..lower.len() {
                for c in 0..=255u8 {
                    let mut t = lower.to_vec();
                    t[i] = c;
                    assert_eq!(
                        eq_letters_ignoring_case(&t, lower),
                        t.eq_ignore_ascii_case(lower),
                        "{lower:?}, byte {i} = {c:#x}"
                    );
                }
            }
            assert!(!eq_letters_ignoring_case(&lower[1..], lower));
            assert!(!eq_letters_ignoring_case(&[lower, b" "].concat(), lower));
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
        // A difference anywhere: in a 32-byte block, a whole word after them, the last bytes.
        for len in [31, 32, 40, 63, 64, 77, 371] {
            let a: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            assert!(same(&a, &a.clone()));
            for i in 0..len {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(!same(&a, &b), "len {len}, byte {i}");
            }
        }
    }

    #[test]
    fn fingerprints_depend_on_the_length_the_ends_and_the_seed() {
        // Short texts: every byte.
        let base = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
            .as_bytes()
            .to_vec();
        assert!(base.len() <= HEAD + TAIL);
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
        // Long texts: the first HEAD and the last TAIL bytes, and the length.
        let long: Vec<u8> = (0..371u32).map(|i| b'A' + (i % 26) as u8).collect();
        let f = fingerprint(1, &long);
        for i in (0..HEAD).chain(long.len() - TAIL..long.len()) {
            let mut t = long.clone();
            t[i] ^= 1;
            assert_ne!(fingerprint(1, &t), f, "byte {i}");
        }
        // The same ends, another length.
        let mut stretched = long.clone();
        stretched.insert(200, b'x');
        assert_ne!(fingerprint(1, &stretched), f);
        assert_ne!(fingerprint(2, &long), f);
        // The middle is left to `same`: a change there keeps the fingerprint, never equality.
        let mut middle = long.clone();
        middle[200] ^= 1;
        assert_eq!(fingerprint(1, &middle), f);
        assert!(!same(&middle, &long));
    }
}
