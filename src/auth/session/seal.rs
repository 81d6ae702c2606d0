//! Sealed cookie values: AES-256-GCM with a key list for rotation (the first key seals, every
//! key opens), a short key id so that exactly one AES-GCM open is tried, and associated data
//! that binds a value to its purpose, to this middleware and to the cookie's name.
//!
//! Layout of a sealed value before base64url (no padding):
//!
//! ```text
//! version (1) = 1 | key id (4) | nonce (12) | ciphertext | GCM tag (16)
//! associated data = domain ‖ 0 ‖ middleware identity ‖ 0 ‖ cookie name ‖ 0 ‖ version
//!                   ‖ key id
//! ```
//!
//! The key id is the first four bytes of SHA-256 over a fixed label and the key: it says which
//! key to try, and reveals nothing about the key. A random 96-bit nonce per value is safe for far
//! more values than one key will ever seal (NIST SP 800-38D §8.3).
//!
//! Opening refuses, without panicking, anything that is not exactly such a value: bad base64,
//! too short, unknown version or key id, a tag that does not verify (tampered, truncated, sealed
//! for another purpose, middleware or cookie name).

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;

/// Version byte of the sealed format.
const VERSION: u8 = 1;
const KID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KID_LEN + NONCE_LEN;
/// Sealed values larger than this (decoded) are refused before any work: 8 cookie chunks hold
/// less, so a forged oversized value never costs an AES-GCM pass over more than this.
pub(crate) const MAX_SEALED: usize = 24 * 1024;

/// What a sealed value is for; each purpose has its own associated-data domain, so a value
/// sealed for one can never be opened as another even if the keys were shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The session cookie.
    Session,
    /// A login-flow (state) cookie.
    Flow,
    /// A server-side session ticket's payload in the store.
    Ticket,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"oidc-guard/session/v1",
            Purpose::Flow => b"oidc-guard/login-flow/v1",
            Purpose::Ticket => b"oidc-guard/session-ticket/v1",
        }
    }
}

/// Why a sealed value was refused (for the log; never contains the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// Not base64url, or too short or too long to be a sealed value.
    Malformed,
    /// A version this build does not know.
    UnknownVersion,
    /// Sealed with a key that is not (or no longer) configured.
    UnknownKey,
    /// The tag does not verify: tampered, truncated, or sealed for another middleware, cookie
    /// or purpose.
    Forged,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::Malformed => "expected a base64url sealed value of plausible length",
            OpenError::UnknownVersion => "sealed with an unknown format version",
            OpenError::UnknownKey => "sealed with a key that is not configured (rotated out?)",
            OpenError::Forged => {
                "authentication tag does not verify (tampered, truncated, or from another middleware)"
            }
        })
    }
}

/// One key, ready to use (the AES key schedule is computed once per instance, not per request).
struct SealKey {
    kid: [u8; KID_LEN],
    cipher: Aes256Gcm,
}

/// A key list for one purpose: the first key seals, every key opens.
pub(crate) struct Sealer {
    purpose: Purpose,
    keys: Vec<SealKey>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("purpose", &self.purpose)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// A value that was opened, and whether it should be sealed again with the newest key.
pub(crate) struct Opened {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// It was sealed with an older key: reseal it with the newest (rotation).
    pub stale_key: bool,
}

fn kid(key: &[u8; 32]) -> [u8; KID_LEN] {
    let mut input = Vec::with_capacity(48);
    input.extend_from_slice(b"oidc-guard key id\0");
    input.extend_from_slice(key);
    let h = crate::crypto::sha256(&input);
    [h[0], h[1], h[2], h[3]]
}

impl Sealer {
    /// A sealer over `keys` (newest first) for `purpose`.
    pub fn new(purpose: Purpose, keys: &[[u8; 32]]) -> Sealer {
        Sealer {
            purpose,
            keys: keys
                .iter()
                .map(|k| SealKey {
                    kid: kid(k),
                    cipher: Aes256Gcm::new(k.into()),
                })
                .collect(),
        }
    }

    fn aad(&self, identity: &str, name: &str, kid: &[u8; KID_LEN]) -> Vec<u8> {
        let domain = self.purpose.domain();
        let mut aad = Vec::with_capacity(domain.len() + identity.len() + name.len() + 8);
        aad.extend_from_slice(domain);
        aad.push(0);
        aad.extend_from_slice(identity.as_bytes());
        aad.push(0);
        aad.extend_from_slice(name.as_bytes());
        aad.push(0);
        aad.push(VERSION);
        aad.extend_from_slice(kid);
        aad
    }

    /// Seals `plaintext` for the middleware `identity` and the cookie (or store key) `name`;
    /// returns base64url text.
    ///
    /// # Errors
    /// [`crate::error::Error::Random`] when no nonce can be drawn, [`crate::error::Error::Other`]
    /// when there is no key or the value is too large.
    pub fn seal(
        &self,
        identity: &str,
        name: &str,
        plaintext: &[u8],
    ) -> Result<String, crate::error::Error> {
        let key = self
            .keys
            .first()
            .ok_or_else(|| crate::error::Error::Other("no session key is configured".into()))?;
        let nonce = crate::rand::bytes::<NONCE_LEN>()?;
        let aad = self.aad(identity, name, &key.kid);
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&key.kid);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let (_, body) = out.split_at_mut(HEADER_LEN);
        let tag = key
            .cipher
            .encrypt_in_place_detached(&Nonce::from(nonce), &aad, body)
            .map_err(|_| crate::error::Error::Other("value too large to seal".into()))?;
        out.extend_from_slice(&tag);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a value sealed by [`Sealer::seal`] for the same `identity` and `name`.
    ///
    /// # Errors
    /// [`OpenError`] saying why the value was refused.
    pub fn open(&self, identity: &str, name: &str, text: &str) -> Result<Opened, OpenError> {
        // base64url of MAX_SEALED bytes; checked before decoding anything.
        if text.len() > MAX_SEALED / 3 * 4 + 4 {
            return Err(OpenError::Malformed);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| OpenError::Malformed)?;
        if raw.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (header, rest) = raw.split_at(HEADER_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let (version, header) = header.split_at(1);
        if version != [VERSION] {
            return Err(OpenError::UnknownVersion);
        }
        let (kid_bytes, nonce) = header.split_at(KID_LEN);
        let mut kid = [0u8; KID_LEN];
        kid.copy_from_slice(kid_bytes);
        let (index, key) = self
            .keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.kid == kid)
            .ok_or(OpenError::UnknownKey)?;
        let aad = self.aad(identity, name, &kid);
        let mut plaintext = ciphertext.to_vec();
        key.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &aad,
                &mut plaintext,
                Tag::from_slice(tag),
            )
            .map_err(|_| OpenError::Forged)?;
        Ok(Opened {
            plaintext,
            stale_key: index > 0,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const K1: [u8; 32] = [1; 32];
    const K2: [u8; 32] = [2; 32];

    #[test]
    fn round_trip_rotation_and_binding() {
        let old = Sealer::new(Purpose::Session, &[K1]);
        let rotated = Sealer::new(Purpose::Session, &[K2, K1]);
        let v = old.seal("id", "s", b"hello").unwrap();
        let o = old.open("id", "s", &v).unwrap();
        assert_eq!(o.plaintext, b"hello");
        assert!(!o.stale_key);
        // After a new key is added first, the old value opens and is flagged for resealing.
        let o = rotated.open("id", "s", &v).unwrap();
        assert_eq!(o.plaintext, b"hello");
        assert!(o.stale_key);
        let resealed = rotated.seal("id", "s", &o.plaintext).unwrap();
        assert!(!rotated.open("id", "s", &resealed).unwrap().stale_key);
        // The old key alone cannot open what the new key sealed.
        assert_eq!(
            old.open("id", "s", &resealed).err(),
            Some(OpenError::UnknownKey)
        );
        // Bound to the middleware, the cookie name and the purpose.
        assert_eq!(old.open("other", "s", &v).err(), Some(OpenError::Forged));
        assert_eq!(old.open("id", "t", &v).err(), Some(OpenError::Forged));
        let flow = Sealer::new(Purpose::Flow, &[K1]);
        assert_eq!(flow.open("id", "s", &v).err(), Some(OpenError::Forged));
    }

    #[test]
    fn tampering_truncation_and_garbage_are_refused() {
        let s = Sealer::new(Purpose::Session, &[K1]);
        let v = s.seal("id", "s", b"some session data").unwrap();
        // Every single-character change is refused.
        for i in 0..v.len() {
            let mut b = v.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(b).unwrap();
            assert!(s.open("id", "s", &t).is_err(), "position {i}");
        }
        for n in 0..v.len() {
            assert!(s.open("id", "s", &v[..n]).is_err(), "truncated to {n}");
        }
        for junk in ["", "%%%", "a.b", "AAAA", &"A".repeat(200_000), "é"] {
            assert!(s.open("id", "s", junk).is_err());
        }
        let none = Sealer::new(Purpose::Session, &[]);
        assert!(none.seal("id", "s", b"x").is_err());
        assert_eq!(none.open("id", "s", &v).err(), Some(OpenError::UnknownKey));
    }
}
