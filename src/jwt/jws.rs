//! Compact JWS serialization (RFC 7515 §7.1): `BASE64URL(header) . BASE64URL(payload) .
//! BASE64URL(signature)`.

use serde_json::{Map, Value};

use super::alg::Algorithm;
use super::jwk::Jwk;
use super::{b64_decode, json, JwtError, MAX_TOKEN_BYTES};

/// Header parameters defined by RFC 7515/7516/7518/7797 that must not appear in `crit`
/// (RFC 7515 §4.1.11: "Producers MUST NOT include Header Parameter names defined by this
/// specification or [JWA]").
const REGISTERED: [&str; 20] = [
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "enc",
    "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c",
];

/// A parsed JOSE header.
#[derive(Debug, Clone)]
pub struct Header {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    cty: Option<String>,
    crit: Vec<String>,
    raw: Map<String, Value>,
}

impl Header {
    /// The signature algorithm (already known to be a supported asymmetric one; whether it is
    /// allowed is the validator's question).
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key ID, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The media type of the whole JWS (`JWT`, `at+jwt`, `dpop+jwt`, …), as given.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// The content type of the payload, as given.
    pub fn cty(&self) -> Option<&str> {
        self.cty.as_deref()
    }

    /// The extensions the producer marked critical (already known to be understood).
    pub fn crit(&self) -> &[String] {
        &self.crit
    }

    /// The embedded public key (`jwk`), parsed. Only DPoP proofs may be verified with it.
    ///
    /// # Errors
    /// [`JwtError::Key`] when the member is present but not a usable public key (private members
    /// included).
    pub fn jwk(&self) -> Result<Option<Jwk>, JwtError> {
        match self.raw.get("jwk") {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Jwk::from_map(m)?)),
            Some(_) => Err(JwtError::Malformed),
        }
    }

    /// The raw header object, for parameters not exposed above.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    fn parse(bytes: &[u8], understood_crit: &[String]) -> Result<Self, JwtError> {
        let raw = json::parse_object(bytes)?;
        // RFC 7515 §4.1.1: `alg` is required; it is a case-sensitive string. Anything we cannot
        // name (none, None, NONE, HS256, …) is refused here, before any key is looked at.
        let alg = match raw.get("alg") {
            Some(Value::String(s)) => {
                Algorithm::from_name(s).ok_or(JwtError::AlgorithmNotAllowed)?
            }
            _ => return Err(JwtError::Malformed),
        };
        let kid = opt_string(&raw, "kid")?;
        let typ = opt_string(&raw, "typ")?;
        let cty = opt_string(&raw, "cty")?;
        // RFC 7515 §4.1.11: a non-empty array of names, none registered; every one must be
        // understood or the JWS is invalid.
        let crit = match raw.get("crit") {
            None => Vec::new(),
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let name = item.as_str().ok_or(JwtError::Malformed)?;
                    if REGISTERED.contains(&name) {
                        return Err(JwtError::Malformed);
                    }
                    if !understood_crit.iter().any(|u| u == name) {
                        return Err(JwtError::CritUnsupported);
                    }
                    out.push(name.to_owned());
                }
                out
            }
            Some(_) => return Err(JwtError::Malformed),
        };
        // RFC 7797: an unencoded payload (`b64: false`) changes the signing input; we never
        // accept it, even when a caller claims to understand `b64`.
        match raw.get("b64") {
            None | Some(Value::Bool(true)) => {}
            Some(_) => return Err(JwtError::Malformed),
        }
        // Nested JWTs (RFC 7519 §5.2) would need a second, differently-keyed verification.
        if cty.as_deref().is_some_and(|c| super::typ_is(c, "jwt")) {
            return Err(JwtError::Malformed);
        }
        Ok(Header {
            alg,
            kid,
            typ,
            cty,
            crit,
            raw,
        })
    }
}

fn opt_string(m: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtError> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::Malformed),
    }
}

/// A parsed compact JWS, signature not yet verified.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> Jws<'a> {
    /// Parses a compact JWS that uses no critical extensions.
    ///
    /// # Errors
    /// See [`Jws::parse_understanding`].
    pub fn parse(token: &'a str) -> Result<Self, JwtError> {
        Self::parse_understanding(token, &[])
    }

    /// Parses a compact JWS whose `crit` header may only list names from `understood_crit`.
    ///
    /// # Errors
    /// - [`JwtError::TooLarge`] above [`MAX_TOKEN_BYTES`];
    /// - [`JwtError::Malformed`] unless there are exactly three parts, each strict base64url,
    ///   and a JSON object header with string `alg`, `kid`, `typ`, `cty`; for duplicate header
    ///   members, `b64: false`, nested JWTs, or an ill-formed `crit`;
    /// - [`JwtError::AlgorithmNotAllowed`] for `none`, `HS*` and unknown algorithms;
    /// - [`JwtError::CritUnsupported`] when `crit` names anything not understood.
    pub fn parse_understanding(
        token: &'a str,
        understood_crit: &[String],
    ) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            // Two parts is not a JWS; five is a JWE, which we do not decrypt.
            return Err(JwtError::Malformed);
        };
        if h.is_empty() {
            return Err(JwtError::Malformed);
        }
        let header = Header::parse(&b64_decode(h)?, understood_crit)?;
        let payload = b64_decode(p)?;
        let signature = b64_decode(s)?;
        // `h.len() + 1 + p.len()` is within `token` because both are slices of it.
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or(JwtError::Malformed)?;
        Ok(Jws {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The decoded payload (unverified until a signature check succeeds).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// `ASCII(BASE64URL(header) || '.' || BASE64URL(payload))`, what the signature covers.
    pub fn signing_input(&self) -> &'a str {
        self.signing_input
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Verifies the signature with `key` under the header's algorithm.
    ///
    /// This does not consult an allow-list: validators check the algorithm first.
    ///
    /// # Errors
    /// [`JwtError::NoSuitableKey`] when the key cannot be used with the algorithm,
    /// [`JwtError::BadSignature`] when the signature does not verify.
    pub fn verify_with(&self, key: &Jwk) -> Result<(), JwtError> {
        key.verify(
            self.header.alg,
            self.signing_input.as_bytes(),
            &self.signature,
        )
    }
}
