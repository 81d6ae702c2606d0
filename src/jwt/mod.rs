//! JOSE: compact JWS parsing, JWK/JWKS, signature verification and claim checks.
//!
//! # Why no `jsonwebtoken`
//!
//! We evaluated `jsonwebtoken` (11, `rust_crypto` feature) for wasm32-wasip1 and decided against it:
//! it has no ES512, it ignores the `crit` header (RFC 7515 §4.1.11 says a recipient MUST refuse a
//! JWS whose critical extensions it does not understand), and it would pull the RustCrypto RSA,
//! P-256, P-384 and Ed25519 stack beside `ring`, which the plugin already carries for rustls. So the
//! compact serialization and the claim checks are written here by hand (small, strict, audited
//! against RFC 7515/7517/7518/7519/8725), signatures are checked with `ring` 0.17 (RSA PKCS#1 v1.5
//! and PSS with 2048–8192-bit keys, ECDSA P-256/P-384 with fixed-length `r||s` signatures,
//! Ed25519), and ES512 with the RustCrypto `p521` crate, the only piece `ring` lacks.
//!
//! # Layout
//!
//! - [`Algorithm`], [`AlgSet`]: the asymmetric algorithms we verify; `none` and `HS*` are not
//!   representable (RFC 8725 §3.1, §3.2: we only ever hold public keys).
//! - [`Jws`], [`Header`]: strict compact serialization parsing (`jws`).
//! - [`Jwk`], [`Jwks`]: public keys, key selection, RFC 7638 thumbprints (`jwk`).
//! - [`Claims`]: the payload, typed accessors over the raw JSON object (`claims`).
//! - [`Validation`] and the per-token-kind validators [`IdTokenValidation`] (OIDC Core 3.1.3.7),
//!   [`AccessTokenValidation`] (RFC 9068), [`LogoutTokenValidation`] (OIDC Back-Channel Logout 1.0
//!   §2.6) and [`DpopValidation`] (RFC 9449 §4.3) (`verify`, `dpop`).
//! - [`mod@bench`]: a timing helper for the in-guest benchmark harness.
//!
//! # Strictness decisions
//!
//! - base64url is decoded strictly: no padding, no whitespace, no characters outside the URL-safe
//!   alphabet, no non-zero trailing bits. Every byte string thus has exactly one encoding.
//! - JSON objects (header, claims, JWK, JWKS) are parsed by a strict reader that **refuses
//!   duplicate member names** at every depth. RFC 7515 §5.2 allows either refusing or keeping the
//!   last duplicate (what `serde_json` does); refusing removes any chance that two parsers along
//!   the way (IdP, another proxy, us) read different values for `alg`, `aud` or `exp`.
//! - Time is never read here: every check takes `now` in seconds from the caller
//!   (`crate::clock::Clock::now_secs()`).
//! - Tokens larger than [`MAX_TOKEN_BYTES`] are refused before decoding. The caller applies its
//!   own (smaller, configurable) cap before it even gets here.
//! - We never fetch keys named by a token (`jku`, `x5u`) and never trust an embedded `jwk` or
//!   `x5c` except the `jwk` of a DPoP proof, which is the point of DPoP (RFC 8725 §3.10).
//! - Nested (`cty: JWT`) and encrypted (JWE, five parts) tokens are refused.
//! - ECDSA signatures are malleable (`(r, s)` and `(r, n - s)` both verify), so the same claims
//!   can arrive under several token strings: a verified-token cache keyed by a hash of the token
//!   is fine (each string is verified once), but single-use checks (one-time tokens, DPoP proofs,
//!   logout tokens) must key on `jti`, never on the token's hash.

use std::fmt;

mod alg;
pub mod bench;
mod claims;
mod dpop;
mod json;
mod jwk;
mod jws;
mod verify;

#[cfg(test)]
mod tests;

pub use alg::{AlgSet, Algorithm};
pub use claims::Claims;
pub use dpop::{
    DpopProof, DpopRequest, DpopValidation, DEFAULT_IAT_FUTURE_SECS, DEFAULT_IAT_PAST_SECS,
};
pub use jwk::{Jwk, JwkError, Jwks, MAX_CANDIDATES, MAX_KEYS};
pub use jws::{Header, Jws};
pub use verify::{
    AccessTokenValidation, IdTokenValidation, LogoutToken, LogoutTokenValidation, Validation,
    Verified, BACKCHANNEL_LOGOUT_EVENT, DEFAULT_CLOCK_SKEW_SECS, MAX_CLOCK_SKEW_SECS,
};

/// The largest compact JWS this module will look at (64 KiB), whatever the caller's own cap.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Why a JOSE object (JWS, JWT, JWK, JWKS, DPoP proof) was refused.
///
/// The messages are for logs: they name the reason and the claim, never token contents.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    /// Not a well-formed compact JWS / JWT: wrong number of parts, bad base64url, JSON that is not
    /// an object or has duplicate members, a header member of the wrong type.
    Malformed,
    /// Larger than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// `alg` is `none`, an HMAC algorithm, unknown, or not in the configured allow-list.
    AlgorithmNotAllowed,
    /// `crit` names an extension we do not understand (RFC 7515 §4.1.11).
    CritUnsupported,
    /// The token names a `kid` that no key of the set has: the caller may refetch the JWKS (rate
    /// limited) and retry.
    UnknownKid,
    /// No key of the set fits the token's algorithm (key type, curve, `use`, `key_ops`, `alg`).
    NoSuitableKey,
    /// The signature does not verify with any candidate key.
    BadSignature,
    /// A JWK or JWKS was refused.
    Key(JwkError),
    /// `exp` is in the past (beyond the clock skew).
    Expired,
    /// `nbf` is in the future (beyond the clock skew).
    NotYetValid,
    /// `iat` is in the future (beyond the clock skew).
    IssuedInFuture,
    /// `iat` is older than the configured maximum age.
    TooOld,
    /// `auth_time` is older than the requested `max_age` (OIDC Core 3.1.3.7 step 13).
    AuthTooOld,
    /// `iss` is not one of the expected issuers.
    WrongIssuer,
    /// `aud` does not contain an expected audience, or contains an untrusted one (ID tokens).
    WrongAudience,
    /// A required claim is missing.
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an unusable value (e.g. `exp` as a string).
    InvalidClaim(&'static str),
    /// A claim is present that this kind of token must not carry (e.g. `nonce` in a logout token).
    UnexpectedClaim(&'static str),
    /// The `typ` header does not fit this kind of token (e.g. an access token presented as an ID
    /// token).
    WrongType,
    /// The ID token's `nonce` differs from the one sent in the authentication request.
    NonceMismatch,
    /// The ID token's `azp` is not our client ID.
    AzpMismatch,
    /// A token presented as an access token that is an ID token of the login client: not typed
    /// `at+jwt`, `aud` holds the client ID, and no `client_id`, `scope` or `scp` claim.
    IdTokenAsAccessToken,
    /// A DPoP proof was refused.
    Dpop(DpopError),
}

/// Why a DPoP proof was refused (RFC 9449 §4.3), beyond the generic JWS reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopError {
    /// The proof's header has no `jwk`.
    MissingJwk,
    /// The proof's `jwk` contains private key members (step 7).
    PrivateKeyInJwk,
    /// `htm` differs from the request's method (step 8).
    WrongMethod,
    /// `htu` differs from the request's URI, ignoring query and fragment (step 9).
    WrongUri,
    /// `iat` is outside the accepted window (step 11).
    IatOutOfWindow,
    /// `ath` differs from the hash of the presented access token (step 12).
    AthMismatch,
    /// The proof's key thumbprint differs from the access token's `cnf.jkt` (step 13).
    KeyMismatch,
    /// The server required a DPoP nonce and the proof's `nonce` differs (step 10).
    NonceMismatch,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed => f.write_str(
                "malformed: expected a compact JWS with a JSON object header and payload",
            ),
            JwtError::TooLarge => write!(f, "too large: expected at most {MAX_TOKEN_BYTES} bytes"),
            JwtError::AlgorithmNotAllowed => {
                f.write_str("algorithm not in the allow-list (none and HS* are never accepted)")
            }
            JwtError::CritUnsupported => {
                f.write_str("crit header names an extension that is not understood")
            }
            JwtError::UnknownKid => f.write_str("no key with the token's kid in the key set"),
            JwtError::NoSuitableKey => {
                f.write_str("no key in the key set fits the token's algorithm")
            }
            JwtError::BadSignature => f.write_str("signature does not verify"),
            JwtError::Key(e) => write!(f, "key refused: {e}"),
            JwtError::Expired => f.write_str("expired: exp is in the past"),
            JwtError::NotYetValid => f.write_str("not yet valid: nbf is in the future"),
            JwtError::IssuedInFuture => f.write_str("iat is in the future"),
            JwtError::TooOld => f.write_str("iat is older than the maximum token age"),
            JwtError::AuthTooOld => f.write_str("auth_time is older than max_age"),
            JwtError::WrongIssuer => f.write_str("iss is not an expected issuer"),
            JwtError::WrongAudience => f.write_str(
                "aud does not contain an expected audience, or contains an untrusted one",
            ),
            JwtError::MissingClaim(c) => write!(f, "required claim `{c}` is missing"),
            JwtError::InvalidClaim(c) => write!(f, "claim `{c}` has the wrong type or value"),
            JwtError::UnexpectedClaim(c) => {
                write!(f, "claim `{c}` must not be present in this kind of token")
            }
            JwtError::WrongType => f.write_str("typ header does not fit this kind of token"),
            JwtError::NonceMismatch => f.write_str("nonce differs from the one sent"),
            JwtError::AzpMismatch => f.write_str("azp is not this client"),
            JwtError::IdTokenAsAccessToken => f.write_str(
                "an ID token of the login client is not an access token (aud is the client ID, \
                 typ is not at+jwt, no client_id, scope or scp claim)",
            ),
            JwtError::Dpop(e) => write!(f, "DPoP proof: {e}"),
        }
    }
}

impl fmt::Display for DpopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DpopError::MissingJwk => "no jwk header",
            DpopError::PrivateKeyInJwk => "jwk header contains a private key",
            DpopError::WrongMethod => "htm differs from the request method",
            DpopError::WrongUri => "htu differs from the request URI",
            DpopError::IatOutOfWindow => "iat outside the accepted window",
            DpopError::AthMismatch => "ath differs from the access token's hash",
            DpopError::KeyMismatch => "key differs from the access token's cnf.jkt",
            DpopError::NonceMismatch => "nonce differs from the server's",
        })
    }
}

impl std::error::Error for JwtError {}

impl From<JwkError> for JwtError {
    fn from(e: JwkError) -> Self {
        JwtError::Key(e)
    }
}

impl From<DpopError> for JwtError {
    fn from(e: DpopError) -> Self {
        JwtError::Dpop(e)
    }
}

/// Strict base64url (RFC 7515 §2, RFC 4648 §5 without padding): refuses `=`, whitespace,
/// characters outside the URL-safe alphabet and non-canonical trailing bits.
fn b64_decode(s: &str) -> Result<Vec<u8>, JwtError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed)
}

/// base64url without padding.
fn b64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Equality whose running time does not depend on where the inputs differ (only on their
/// lengths), for nonces and hashes an attacker may probe.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `typ` values compare case-insensitively and the `application/` prefix may be left out
/// (RFC 7515 §4.1.9, RFC 9068 §2.1).
fn typ_is(typ: &str, want: &str) -> bool {
    let t = typ.as_bytes();
    let prefix = b"application/";
    let t = match t.get(..prefix.len()) {
        Some(p) if p.eq_ignore_ascii_case(prefix) => t.get(prefix.len()..).unwrap_or_default(),
        _ => t,
    };
    t.eq_ignore_ascii_case(want.as_bytes())
}
