//! Small cryptographic helpers over `ring`: SHA-256, HKDF key derivation, constant-time compare.

use base64::Engine as _;
use ring::{digest, hkdf};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// base64url (no padding) of SHA-256 of `data`: PKCE S256 challenges (RFC 7636 §4.2), DPoP
/// `ath` (RFC 9449 §4.2), cache keys.
pub fn sha256_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256(data))
}

/// Hex of the first `n` bytes of SHA-256 of `data` (short, log-safe identifiers).
pub fn sha256_hex(data: &[u8], n: usize) -> String {
    sha256(data)
        .iter()
        .take(n)
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// HKDF-SHA256 (RFC 5869) of `secret` into a 32-byte key for one purpose (`info`). Different
/// purposes (session cookies, login-flow cookies, the store's envelopes) never share a key.
pub fn derive_key(secret: &[u8], info: &str) -> [u8; 32] {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"oidc-guard/v1");
    let prk = salt.extract(secret);
    let mut out = [0u8; 32];
    let info = [info.as_bytes()];
    // `expand` fails only when the requested length exceeds 255 × 32 bytes; 32 never does.
    if let Ok(okm) = prk.expand(&info, Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// Equality whose time depends only on the lengths, not on where the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        assert_eq!(
            sha256_b64(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn derived_keys_differ_per_purpose_and_secret() {
        let a = derive_key(b"0123456789abcdef0123456789abcdef", "cookie");
        let b = derive_key(b"0123456789abcdef0123456789abcdef", "store");
        let c = derive_key(b"0123456789abcdef0123456789abcdeX", "cookie");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, derive_key(b"0123456789abcdef0123456789abcdef", "cookie"));
        assert!(ct_eq(&a, &a) && !ct_eq(&a, &b));
    }
}
