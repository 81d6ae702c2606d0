//! The JWT claims set (RFC 7519 §4): the raw JSON object plus typed accessors.

use serde_json::{Map, Value};

use super::JwtError;

/// A verified token's claims.
///
/// Typed accessors return `None` when a claim is absent *or* of the wrong type; the validators
/// have already refused wrong types for every claim they check (`exp`, `nbf`, `iat`, `iss`,
/// `aud`, …), so after verification `None` means absent for those.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Parses a payload as a claims set (strict JSON object, duplicate names refused).
    ///
    /// # Errors
    /// [`JwtError::Malformed`] when the payload is not a JSON object.
    pub fn parse(payload: &[u8]) -> Result<Claims, JwtError> {
        super::json::parse_object(payload).map(Claims)
    }

    /// The raw JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The raw JSON object, owned.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// Any claim by name (e.g. `groups`, `email`, `realm_access`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A string claim by name.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A claim that is a string or an array of strings (e.g. `groups`, `roles`), as a list.
    /// Non-string array members are left out; an absent or other-typed claim gives an empty list.
    pub fn strings(&self, name: &str) -> Vec<&str> {
        match self.0.get(name) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// `iss`.
    pub fn iss(&self) -> Option<&str> {
        self.str_claim("iss")
    }

    /// `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.str_claim("sub")
    }

    /// `aud`: one string or an array of strings (RFC 7519 §4.1.3); empty when absent or invalid.
    pub fn aud(&self) -> Vec<&str> {
        self.audiences().unwrap_or_default()
    }

    /// `exp` in whole seconds (a fractional value rounded down: it expires no later).
    pub fn exp(&self) -> Option<i64> {
        self.numeric_date("exp", Round::Down).ok().flatten()
    }

    /// `nbf` in whole seconds (rounded up: valid no earlier).
    pub fn nbf(&self) -> Option<i64> {
        self.numeric_date("nbf", Round::Up).ok().flatten()
    }

    /// `iat` in whole seconds (rounded up).
    pub fn iat(&self) -> Option<i64> {
        self.numeric_date("iat", Round::Up).ok().flatten()
    }

    /// `auth_time` in whole seconds (rounded down: authenticated no later).
    pub fn auth_time(&self) -> Option<i64> {
        self.numeric_date("auth_time", Round::Down).ok().flatten()
    }

    /// `jti`.
    pub fn jti(&self) -> Option<&str> {
        self.str_claim("jti")
    }

    /// `nonce`.
    pub fn nonce(&self) -> Option<&str> {
        self.str_claim("nonce")
    }

    /// `azp`.
    pub fn azp(&self) -> Option<&str> {
        self.str_claim("azp")
    }

    /// `sid` (OIDC Front/Back-Channel Logout session ID).
    pub fn sid(&self) -> Option<&str> {
        self.str_claim("sid")
    }

    /// `cnf.jkt`: the DPoP key thumbprint the token is bound to (RFC 9449 §6.1).
    pub fn cnf_jkt(&self) -> Option<&str> {
        self.0
            .get("cnf")
            .and_then(Value::as_object)
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str)
    }

    /// Whether the token carries a `cnf` claim at all (any confirmation method).
    pub fn has_cnf(&self) -> bool {
        self.0.contains_key("cnf")
    }

    /// `events` (Security Event Tokens, back-channel logout).
    pub fn events(&self) -> Option<&Map<String, Value>> {
        self.0.get("events").and_then(Value::as_object)
    }

    /// A NumericDate claim (RFC 7519 §2): a JSON number, integer or not. Strings are refused.
    pub(crate) fn numeric_date(
        &self,
        name: &'static str,
        round: Round,
    ) -> Result<Option<i64>, JwtError> {
        let Some(v) = self.0.get(name) else {
            return Ok(None);
        };
        let Value::Number(n) = v else {
            return Err(JwtError::InvalidClaim(name));
        };
        if let Some(i) = n.as_i64() {
            return Ok(Some(i));
        }
        if n.as_u64().is_some() {
            // Beyond i64: far future.
            return Ok(Some(i64::MAX));
        }
        let f = n.as_f64().ok_or(JwtError::InvalidClaim(name))?;
        // JSON has no NaN/inf; `as` saturates out-of-range values, never panics.
        let f = match round {
            Round::Down => f.floor(),
            Round::Up => f.ceil(),
        };
        Ok(Some(f as i64))
    }

    /// `aud` as a list, refusing wrong types.
    pub(crate) fn audiences(&self) -> Result<Vec<&str>, JwtError> {
        match self.0.get("aud") {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.as_str()]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().ok_or(JwtError::InvalidClaim("aud")))
                .collect(),
            Some(_) => Err(JwtError::InvalidClaim("aud")),
        }
    }

    /// A string claim, refusing wrong types.
    pub(crate) fn checked_str(&self, name: &'static str) -> Result<Option<&str>, JwtError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(JwtError::InvalidClaim(name)),
        }
    }
}

/// How a fractional NumericDate becomes whole seconds: always towards the stricter answer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Round {
    Down,
    Up,
}
