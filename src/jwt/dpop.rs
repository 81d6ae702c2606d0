//! DPoP proof validation, RFC 9449 §4.3.
//!
//! The proof is a JWT signed with the key in its own `jwk` header; what binds it to anything is
//! the request (`htm`, `htu`), the time (`iat`), the access token (`ath`) and the token's
//! `cnf.jkt` (the key's RFC 7638 thumbprint). Replay (`jti` seen before) is checked by the caller
//! through the store, cluster-wide.

use super::alg::AlgSet;
use super::claims::{Claims, Round};
use super::jwk::JwkError;
use super::jws::Jws;
use super::{b64_encode, ct_eq, typ_is, DpopError, JwtError};

/// Default acceptance window for a proof's `iat`: this many seconds in the past…
pub const DEFAULT_IAT_PAST_SECS: u64 = 60;
/// …and this many in the future (clock skew of the client).
pub const DEFAULT_IAT_FUTURE_SECS: u64 = 5;

/// The DPoP checks that do not depend on the request.
#[derive(Debug, Clone)]
pub struct DpopValidation {
    algorithms: AlgSet,
    iat_past: u64,
    iat_future: u64,
}

impl Default for DpopValidation {
    fn default() -> Self {
        DpopValidation {
            algorithms: AlgSet::all(),
            iat_past: DEFAULT_IAT_PAST_SECS,
            iat_future: DEFAULT_IAT_FUTURE_SECS,
        }
    }
}

/// What the proof must match, from the request being authorised.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// The HTTP method, compared case-sensitively with `htm` (RFC 9110 §9.1).
    pub method: &'a str,
    /// The request's absolute URI (scheme, host, path; query and fragment are ignored).
    pub uri: &'a str,
    /// The access token presented with the proof, if any: `ath` must be its hash.
    pub access_token: Option<&'a str>,
    /// The access token's `cnf.jkt`, if the token is DPoP-bound: the proof's key must match.
    pub expected_jkt: Option<&'a str>,
    /// The DPoP nonce the server handed out, if it uses nonces (§8).
    pub nonce: Option<&'a str>,
}

/// A valid DPoP proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    jkt: String,
    jti: String,
    iat: i64,
}

impl DpopProof {
    /// The RFC 7638 thumbprint of the proof's key (compare with the token's `cnf.jkt`).
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The proof's `jti`: the caller records it single-use (cluster-wide) until `iat` leaves the
    /// window.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The proof's `iat`, seconds.
    pub fn iat(&self) -> i64 {
        self.iat
    }
}

impl DpopValidation {
    /// Every supported algorithm, `iat` window 60 s past / 5 s future.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the algorithm allow-list (all of ours are asymmetric, as §4.3 step 5 requires).
    #[must_use]
    pub fn algorithms(mut self, algorithms: AlgSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// Sets the `iat` window: at most `past` seconds old and `future` seconds ahead.
    #[must_use]
    pub fn iat_window(mut self, past: u64, future: u64) -> Self {
        self.iat_past = past;
        self.iat_future = future;
        self
    }

    /// How long a proof stays acceptable after its `iat`: the TTL for its `jti` replay marker.
    pub fn replay_ttl_secs(&self) -> u64 {
        self.iat_past.saturating_add(self.iat_future)
    }

    /// Verifies a DPoP proof against the request (RFC 9449 §4.3, steps numbered as there).
    ///
    /// # Errors
    /// A [`JwtError`] naming the first check that failed; DPoP-specific reasons as
    /// [`JwtError::Dpop`].
    pub fn verify(
        &self,
        proof: &str,
        req: &DpopRequest<'_>,
        now: u64,
    ) -> Result<DpopProof, JwtError> {
        // Steps 1–2: exactly one DPoP header (the caller), a well-formed JWT.
        let jws = Jws::parse(proof)?;
        let header = jws.header();
        // Step 4: typ is dpop+jwt.
        if !header.typ().is_some_and(|t| typ_is(t, "dpop+jwt")) {
            return Err(JwtError::WrongType);
        }
        // Step 5: alg is asymmetric, not none, and allowed.
        if !self.algorithms.contains(header.alg()) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        // Step 7: the jwk is a public key (Jwk::from_map refuses private members); step 3 (jwk
        // present).
        let jwk = match header.jwk() {
            Ok(Some(k)) => k,
            Ok(None) => return Err(DpopError::MissingJwk.into()),
            Err(JwtError::Key(JwkError::PrivateKey | JwkError::Symmetric)) => {
                return Err(DpopError::PrivateKeyInJwk.into())
            }
            Err(e) => return Err(e),
        };
        // Step 13 (the key is the one the access token is bound to), checked before the
        // signature: a hash instead of a public-key operation, so a proof signed with some
        // other (say 8192-bit RSA) key is refused for the price of one SHA-256.
        let jkt = jwk.thumbprint();
        if let Some(want) = req.expected_jkt {
            if !ct_eq(jkt.as_bytes(), want.as_bytes()) {
                return Err(DpopError::KeyMismatch.into());
            }
        }
        // Step 6: the signature verifies with that key, whose type fits alg.
        jws.verify_with(&jwk)?;
        let c = Claims::parse(jws.payload())?;
        // Step 3: jti, htm, htu, iat present.
        let jti = c.checked_str("jti")?.ok_or(JwtError::MissingClaim("jti"))?;
        if jti.is_empty() {
            return Err(JwtError::InvalidClaim("jti"));
        }
        let htm = c.checked_str("htm")?.ok_or(JwtError::MissingClaim("htm"))?;
        let htu = c.checked_str("htu")?.ok_or(JwtError::MissingClaim("htu"))?;
        let iat = c
            .numeric_date("iat", Round::Up)?
            .ok_or(JwtError::MissingClaim("iat"))?;
        // Step 8: htm matches the method.
        if htm != req.method {
            return Err(DpopError::WrongMethod.into());
        }
        // Step 9: htu matches the URI without query and fragment, after RFC 3986 §6.2.2/§6.2.3
        // normalisation.
        match (normalize_htu(htu), normalize_htu(req.uri)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return Err(DpopError::WrongUri.into()),
        }
        // Step 10: the server's nonce, when it issued one.
        if let Some(want) = req.nonce {
            let got = c
                .checked_str("nonce")?
                .ok_or(JwtError::MissingClaim("nonce"))?;
            if !ct_eq(got.as_bytes(), want.as_bytes()) {
                return Err(DpopError::NonceMismatch.into());
            }
        }
        // Step 11: iat within the window.
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let past = i64::try_from(self.iat_past).unwrap_or(i64::MAX);
        let future = i64::try_from(self.iat_future).unwrap_or(i64::MAX);
        if iat < now_i.saturating_sub(past) || iat > now_i.saturating_add(future) {
            return Err(DpopError::IatOutOfWindow.into());
        }
        // Step 12: ath = base64url(SHA-256(ASCII(access token))).
        if let Some(token) = req.access_token {
            let ath = c.checked_str("ath")?.ok_or(JwtError::MissingClaim("ath"))?;
            let want =
                b64_encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
            if !ct_eq(ath.as_bytes(), want.as_bytes()) {
                return Err(DpopError::AthMismatch.into());
            }
        }
        Ok(DpopProof {
            jkt,
            jti: jti.to_owned(),
            iat,
        })
    }
}

/// Normalises an `http`/`https` URI for `htu` comparison: drops query and fragment, lowercases
/// scheme and host (§6.2.2.1), drops the default port and makes an empty path `/` (§6.2.3),
/// uppercases percent-encoding hex digits and decodes percent-encoded unreserved characters
/// (§6.2.2.1–2). Refuses userinfo, other schemes and bad percent-encoding. Dot segments are not
/// resolved: a proof for `/a/../b` does not match `/b`.
pub(crate) fn normalize_htu(uri: &str) -> Option<String> {
    let uri = uri.split('#').next().unwrap_or_default();
    let uri = uri.split('?').next().unwrap_or_default();
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // Split off the port: after the last ':' that is not inside an IPv6 literal.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority.get(i..).unwrap_or_default().contains(']') => {
            let (h, p) = authority.split_at(i);
            (h, p.get(1..).unwrap_or_default())
        }
        _ => (authority, ""),
    };
    if host.is_empty() {
        return None;
    }
    // An empty port ("host:") means the default one (§6.2.3); otherwise a decimal u16, written
    // back canonically, omitted when it is the scheme's default.
    let port: Option<u16> = if port.is_empty() {
        None
    } else if port.bytes().all(|b| b.is_ascii_digit()) {
        Some(port.parse().ok()?)
    } else {
        return None;
    };
    let mut out = String::with_capacity(uri.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    if let Some(p) = port.filter(|p| *p != default_port) {
        out.push(':');
        out.push_str(&p.to_string());
    }
    out.push_str(&normalize_percent(path)?);
    Some(out)
}

fn normalize_percent(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            let v = hi * 16 + lo;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v);
            } else {
                out.push(b'%');
                out.extend_from_slice(format!("{v:02X}").as_bytes());
            }
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
