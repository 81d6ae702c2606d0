//! JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037 §2), key selection, RFC 7638 thumbprints.
//!
//! Only public signature-verification keys are representable: `oct` keys and keys carrying
//! private members are refused (a JWKS that publishes a private key lets anyone who read it forge
//! tokens, so such a key is never trusted, not even its public half).

use std::fmt;

use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::alg::{Algorithm, Curve, Family};
use super::jws::Jws;
use super::{b64_decode, b64_encode, json, JwtError};

/// Members that only private or symmetric keys have (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// RSA moduli outside 2048..=8192 bits are refused (RFC 7518 §3.3 requires ≥ 2048; ring's
/// verifier tops out at 8192).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// At most this many keys of a JWKS are kept; the rest are counted as skipped.
pub const MAX_KEYS: usize = 100;

/// At most this many candidate keys are tried for one token, so that a token without `kid` (or a
/// JWKS with many keys under one `kid`) cannot buy unbounded signature checks.
pub const MAX_CANDIDATES: usize = 3;

/// Why a JWK or JWKS was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkError {
    /// Not a JSON object with the members its key type needs, in strict base64url.
    Malformed,
    /// `kty` is not RSA, EC or OKP.
    UnsupportedKeyType,
    /// `crv` is not P-256, P-384, P-521 (EC) or Ed25519 (OKP).
    UnsupportedCurve,
    /// A coordinate or key has the wrong length for its curve.
    WrongLength,
    /// The RSA modulus is shorter than 2048 bits.
    RsaTooSmall,
    /// The RSA modulus is longer than 8192 bits.
    RsaTooLarge,
    /// A symmetric (`oct`) key: we only verify with public keys (RFC 8725 §3.2).
    Symmetric,
    /// The key carries private members (`d`, `p`, `q`, …).
    PrivateKey,
    /// `use` is not `sig`, or `key_ops` does not include `verify`.
    NotForVerification,
}

impl fmt::Display for JwkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwkError::Malformed => {
                "malformed JWK: expected a JSON object with kty and its key members in base64url"
            }
            JwkError::UnsupportedKeyType => "unsupported kty: expected RSA, EC or OKP",
            JwkError::UnsupportedCurve => {
                "unsupported crv: expected P-256, P-384, P-521 or Ed25519"
            }
            JwkError::WrongLength => "key member has the wrong length for its curve",
            JwkError::RsaTooSmall => "RSA modulus shorter than 2048 bits",
            JwkError::RsaTooLarge => "RSA modulus longer than 8192 bits",
            JwkError::Symmetric => "symmetric (oct) keys are never used",
            JwkError::PrivateKey => "key contains private members",
            JwkError::NotForVerification => "use is not sig or key_ops lacks verify",
        })
    }
}

/// The key material of a public key.
#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// Modulus and exponent as decoded (big-endian; any leading zeros kept for the thumbprint).
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// `0x04 || x || y` (SEC 1 uncompressed point), the form ring and p521 take.
    Ec { crv: Curve, point: Vec<u8> },
    /// The 32-byte public key.
    Ed25519([u8; 32]),
}

/// A public verification key.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    material: Material,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty())
            .field("crv", &self.crv())
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl Jwk {
    /// Parses one JWK from JSON text.
    ///
    /// # Errors
    /// As [`Jwk::from_map`], plus [`JwkError::Malformed`] for invalid JSON.
    pub fn parse(json_text: &[u8]) -> Result<Jwk, JwkError> {
        let m = json::parse_object(json_text).map_err(|_| JwkError::Malformed)?;
        Jwk::from_map(&m)
    }

    /// Builds a public key from a JWK object.
    ///
    /// # Errors
    /// [`JwkError`] for symmetric keys, private members, keys not meant for verification
    /// (`use`/`key_ops`), unsupported types or curves, wrong lengths, RSA moduli outside
    /// 2048–8192 bits, and malformed members.
    pub fn from_map(m: &Map<String, Value>) -> Result<Jwk, JwkError> {
        let kty = str_member(m, "kty")?.ok_or(JwkError::Malformed)?;
        if kty == "oct" {
            return Err(JwkError::Symmetric);
        }
        if PRIVATE_MEMBERS.iter().any(|p| m.contains_key(*p)) {
            return Err(JwkError::PrivateKey);
        }
        // RFC 7517 §4.2: `use` "sig" or absent. §4.3: `key_ops`, if present, must allow "verify".
        if let Some(u) = str_member(m, "use")? {
            if u != "sig" {
                return Err(JwkError::NotForVerification);
            }
        }
        match m.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) if ops.iter().any(|o| o.as_str() == Some("verify")) => {}
            Some(Value::Array(_)) => return Err(JwkError::NotForVerification),
            Some(_) => return Err(JwkError::Malformed),
        }
        let kid = str_member(m, "kid")?.map(str::to_owned);
        let alg = str_member(m, "alg")?.map(str::to_owned);
        let material = match kty {
            "RSA" => {
                let n = b64_member(m, "n")?;
                let e = b64_member(m, "e")?;
                let bits = bit_len(&n);
                if bits < RSA_MIN_BITS {
                    return Err(JwkError::RsaTooSmall);
                }
                if bits > RSA_MAX_BITS {
                    return Err(JwkError::RsaTooLarge);
                }
                if bit_len(&e) == 0 {
                    return Err(JwkError::Malformed);
                }
                Material::Rsa { n, e }
            }
            "EC" => {
                let crv = match str_member(m, "crv")? {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    Some("P-521") => Curve::P521,
                    Some(_) => return Err(JwkError::UnsupportedCurve),
                    None => return Err(JwkError::Malformed),
                };
                // RFC 7518 §6.2.1.2/3: x and y are exactly the coordinate length, leading zeros
                // included. The point itself is checked by ring/p521 when it is used.
                let x = b64_member(m, "x")?;
                let y = b64_member(m, "y")?;
                let len = crv.coordinate_len();
                if x.len() != len || y.len() != len {
                    return Err(JwkError::WrongLength);
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Material::Ec { crv, point }
            }
            "OKP" => {
                match str_member(m, "crv")? {
                    Some("Ed25519") => {}
                    Some(_) => return Err(JwkError::UnsupportedCurve),
                    None => return Err(JwkError::Malformed),
                }
                let x = b64_member(m, "x")?;
                let x: [u8; 32] = x.try_into().map_err(|_| JwkError::WrongLength)?;
                Material::Ed25519(x)
            }
            _ => return Err(JwkError::UnsupportedKeyType),
        };
        Ok(Jwk { kid, alg, material })
    }

    /// The key ID, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `alg` member, if any (a key with `alg` only verifies tokens with that algorithm).
    pub fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    /// `RSA`, `EC` or `OKP`.
    pub fn kty(&self) -> &'static str {
        match self.material {
            Material::Rsa { .. } => "RSA",
            Material::Ec { .. } => "EC",
            Material::Ed25519(_) => "OKP",
        }
    }

    /// The curve name for EC and OKP keys.
    pub fn crv(&self) -> Option<&'static str> {
        match &self.material {
            Material::Rsa { .. } => None,
            Material::Ec { crv, .. } => Some(crv.name()),
            Material::Ed25519(_) => Some("Ed25519"),
        }
    }

    /// Whether this key may verify a token signed with `alg`: the key type and curve fit the
    /// algorithm's family and the key's own `alg`, if present, names it.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let family_ok = match (&self.material, alg.family()) {
            (Material::Rsa { .. }, Family::Rsa) => true,
            (Material::Ec { crv, .. }, Family::Ec(c)) => *crv == c,
            (Material::Ed25519(_), Family::Ed25519) => true,
            _ => false,
        };
        // A key published for "EdDSA" also verifies "Ed25519" (RFC 9864 §2.2 names the same
        // primitive) and the other way round; otherwise the names must be equal.
        let alg_ok = match self.alg.as_deref() {
            None => true,
            Some(a) => {
                a == alg.name()
                    || (matches!(alg, Algorithm::EdDSA | Algorithm::Ed25519)
                        && (a == "EdDSA" || a == "Ed25519"))
            }
        };
        family_ok && alg_ok
    }

    /// The RFC 7638 JWK thumbprint: base64url(SHA-256 of the required members in lexicographic
    /// order, no whitespace). DPoP binds access tokens to it (`cnf.jkt`, RFC 9449 §6.1).
    pub fn thumbprint(&self) -> String {
        let canonical = match &self.material {
            Material::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64_encode(e),
                b64_encode(n)
            ),
            Material::Ec { crv, point } => {
                let len = crv.coordinate_len();
                let x = point.get(1..1 + len).unwrap_or_default();
                let y = point.get(1 + len..).unwrap_or_default();
                format!(
                    r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                    crv.name(),
                    b64_encode(x),
                    b64_encode(y)
                )
            }
            Material::Ed25519(x) => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64_encode(x))
            }
        };
        b64_encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// Verifies `signature` over `message` with this key under `alg`.
    ///
    /// # Errors
    /// [`JwtError::NoSuitableKey`] when the key does not fit `alg`; [`JwtError::BadSignature`]
    /// when the signature (or the key's point) is invalid.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), JwtError> {
        if !self.fits(alg) {
            return Err(JwtError::NoSuitableKey);
        }
        let ok = match &self.material {
            Material::Rsa { n, e } => {
                let params: &sig::RsaParameters = match alg {
                    Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(JwtError::NoSuitableKey),
                };
                // ring wants minimal big-endian integers; some IdPs emit a leading zero.
                let n = strip_zeros(n);
                // RFC 8017 §8.2.2 step 1: the signature is exactly as long as the modulus. Checked
                // here because ring sets up the modulus arithmetic before looking at it, and a
                // flood of forged tokens should cost as little as possible.
                if signature.len() != n.len() {
                    return Err(JwtError::BadSignature);
                }
                RsaPublicKeyComponents {
                    n,
                    e: strip_zeros(e),
                }
                .verify(params, message, signature)
                .is_ok()
            }
            Material::Ec { crv, point } => {
                // JWS ECDSA signatures are `r || s`, each exactly the coordinate length
                // (RFC 7518 §3.4); ring's *_FIXED and p521 check that too.
                if signature.len() != 2 * crv.coordinate_len() {
                    return Err(JwtError::BadSignature);
                }
                match crv {
                    Curve::P256 => UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                        .verify(message, signature)
                        .is_ok(),
                    Curve::P384 => UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
                        .verify(message, signature)
                        .is_ok(),
                    Curve::P521 => verify_p521(point, message, signature),
                }
            }
            Material::Ed25519(x) => UnparsedPublicKey::new(&sig::ED25519, x)
                .verify(message, signature)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(JwtError::BadSignature)
        }
    }
}

/// ES512 with the RustCrypto `p521` crate (ring has no P-521). `from_sec1_bytes` refuses points
/// not on the curve; `Signature::from_slice` refuses `r`, `s` outside `1..n`.
fn verify_p521(point: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use p521::ecdsa::signature::Verifier as _;
    let Ok(key) = p521::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
        return false;
    };
    let Ok(sig) = p521::ecdsa::Signature::from_slice(signature) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// A JSON Web Key Set holding the usable verification keys.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
    skipped: usize,
}

impl Jwks {
    /// Parses a JWKS (`{"keys": [...]}`) from JSON text.
    ///
    /// Keys we cannot or must not use (unknown `kty`/`crv`, `oct`, private members, `use` other
    /// than `sig`, malformed, too small, beyond [`MAX_KEYS`]) are skipped, not fatal: one odd key
    /// must not take down verification with the others. [`Jwks::skipped`] counts them for logs.
    ///
    /// # Errors
    /// [`JwtError::Key`]\([`JwkError::Malformed`]) unless the text is a JSON object with a `keys`
    /// array (duplicate member names refused).
    pub fn parse(json_text: &[u8]) -> Result<Jwks, JwtError> {
        let m = json::parse_object(json_text).map_err(|_| JwkError::Malformed)?;
        Jwks::from_map(&m)
    }

    /// Builds a key set from a parsed JWKS object (e.g. inline `jwks` configuration given as a
    /// map). Same rules as [`Jwks::parse`].
    ///
    /// # Errors
    /// As [`Jwks::parse`].
    pub fn from_map(m: &Map<String, Value>) -> Result<Jwks, JwtError> {
        let Some(Value::Array(items)) = m.get("keys") else {
            return Err(JwkError::Malformed.into());
        };
        let mut set = Jwks::default();
        for item in items {
            match item {
                Value::Object(k) if set.keys.len() < MAX_KEYS => match Jwk::from_map(k) {
                    Ok(key) => set.keys.push(key),
                    Err(_) => set.skipped += 1,
                },
                _ => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// A key set of the given keys.
    pub fn from_keys(keys: Vec<Jwk>) -> Jwks {
        Jwks { keys, skipped: 0 }
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many members of the source were skipped.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Whether some key has this `kid` (for the caller's refetch decision).
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// Selects candidate keys for `jws` and verifies its signature; returns the key that did.
    ///
    /// Selection (RFC 7515 §4.1.4, RFC 8725 §3.1): with a `kid`, the keys with that `kid`; if no
    /// key has it but some keys have no `kid` at all (a hand-written static JWKS), those. Without
    /// a `kid`, every key. In each case only keys that [`Jwk::fits`] the algorithm, at most
    /// [`MAX_CANDIDATES`] of them.
    ///
    /// # Errors
    /// [`JwtError::UnknownKid`] when no key has the token's `kid` and no key without a `kid`
    /// verified it (refetch the JWKS, rate limited), [`JwtError::NoSuitableKey`] when no candidate fits the algorithm,
    /// [`JwtError::BadSignature`] when no candidate verifies.
    pub fn verify(&self, jws: &Jws<'_>) -> Result<&Jwk, JwtError> {
        let alg = jws.header().alg();
        let kid_unknown = jws
            .header()
            .kid()
            .is_some_and(|kid| !self.contains_kid(kid));
        let by_kid: Vec<&Jwk> = match jws.header().kid() {
            Some(_) if kid_unknown => {
                let anonymous: Vec<&Jwk> = self.keys.iter().filter(|k| k.kid().is_none()).collect();
                if anonymous.is_empty() {
                    return Err(JwtError::UnknownKid);
                }
                anonymous
            }
            Some(kid) => self.keys.iter().filter(|k| k.kid() == Some(kid)).collect(),
            None => self.keys.iter().collect(),
        };
        let mut tried = 0;
        for key in by_kid
            .into_iter()
            .filter(|k| k.fits(alg))
            .take(MAX_CANDIDATES)
        {
            tried += 1;
            if jws.verify_with(key).is_ok() {
                return Ok(key);
            }
        }
        if kid_unknown {
            // No key has the token's `kid` and no key without one verified it: still an unknown
            // `kid` to the caller, so a provider that has just rotated to a new key is asked
            // again (otherwise its key-less entries turned every new-key token into a bad
            // signature until the JWKS cache expired).
            Err(JwtError::UnknownKid)
        } else if tried == 0 {
            Err(JwtError::NoSuitableKey)
        } else {
            Err(JwtError::BadSignature)
        }
    }
}

fn str_member<'m>(m: &'m Map<String, Value>, name: &str) -> Result<Option<&'m str>, JwkError> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwkError::Malformed),
    }
}

fn b64_member(m: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwkError> {
    let s = str_member(m, name)?.ok_or(JwkError::Malformed)?;
    b64_decode(s).map_err(|_| JwkError::Malformed)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

/// Bit length of a big-endian unsigned integer.
fn bit_len(b: &[u8]) -> usize {
    let b = strip_zeros(b);
    match b.first() {
        None => 0,
        Some(first) => (b.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}
