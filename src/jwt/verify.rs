//! Validation of signed JWTs: the generic checks ([`Validation`]) and the rules of each kind of
//! token we accept: ID tokens, access tokens and back-channel logout tokens.
//!
//! Order everywhere: parse (size, structure, `alg` known, `crit` understood) → `alg` against the
//! allow-list → `typ` → key selection and signature → claims. Nothing from the payload is
//! believed before the signature verifies (RFC 8725 §3.1; OIDC Core 3.1.3.7 lists the claim
//! checks before the signature, but checking an unsigned claim first only helps an attacker probe).

use super::alg::AlgSet;
use super::claims::{Claims, Round};
use super::jwk::Jwks;
use super::jws::{Header, Jws};
use super::{ct_eq, typ_is, JwtError};

/// Default allowed clock skew between us and the issuer, in seconds.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;

/// The largest clock skew [`Validation::clock_skew`] accepts, in seconds; larger values are
/// lowered to it (a configuration layer should refuse them with a message instead).
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// `typ` values that name some other kind of JWT than an ID token or an access token.
const OTHER_PURPOSE_TYPES: [&str; 5] = [
    "dpop+jwt",
    "logout+jwt",
    "secevent+jwt",
    "token-introspection+jwt",
    "jwt-bearer+jwt",
];

/// The generic checks for a signed JWT: algorithm allow-list, issuer, audience, `typ`, time.
///
/// Built with [`Validation::new`] and the builder methods; verify with [`Validation::verify`] or
/// wrap it in one of the per-kind validators.
#[derive(Debug, Clone)]
pub struct Validation {
    algorithms: AlgSet,
    issuers: Vec<String>,
    audiences: Vec<String>,
    required_typ: Option<String>,
    clock_skew: u64,
    max_age: Option<u64>,
    understood_crit: Vec<String>,
}

impl Validation {
    /// Checks for tokens from `issuer` (compared as an exact string, OIDC Core 3.1.3.7 step 2),
    /// with every supported algorithm allowed, no audience yet (add one: without any, every
    /// token is refused), a clock skew of [`DEFAULT_CLOCK_SKEW_SECS`], no `typ` requirement and no
    /// maximum age.
    pub fn new(issuer: impl Into<String>) -> Self {
        Validation {
            algorithms: AlgSet::all(),
            issuers: vec![issuer.into()],
            audiences: Vec::new(),
            required_typ: None,
            clock_skew: DEFAULT_CLOCK_SKEW_SECS,
            max_age: None,
            understood_crit: Vec::new(),
        }
    }

    /// Also accepts tokens from `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens whose `aud` contains `audience` (any one of the configured audiences
    /// suffices).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        let a = audience.into();
        if !self.audiences.contains(&a) {
            self.audiences.push(a);
        }
        self
    }

    /// Replaces the algorithm allow-list.
    #[must_use]
    pub fn algorithms(mut self, algorithms: AlgSet) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// Requires the `typ` header to be `typ` (case-insensitive, `application/` optional), e.g.
    /// `at+jwt` (RFC 9068 §4).
    #[must_use]
    pub fn require_typ(mut self, typ: impl Into<String>) -> Self {
        self.required_typ = Some(typ.into());
        self
    }

    /// Sets the allowed clock skew in seconds, at most [`MAX_CLOCK_SKEW_SECS`].
    #[must_use]
    pub fn clock_skew(mut self, secs: u64) -> Self {
        self.clock_skew = secs.min(MAX_CLOCK_SKEW_SECS);
        self
    }

    /// Refuses tokens whose `iat` is more than `secs` (plus skew) in the past; `iat` becomes
    /// required.
    #[must_use]
    pub fn max_age(mut self, secs: u64) -> Self {
        self.max_age = Some(secs);
        self
    }

    /// Declares the critical header extension `name` understood (the caller then handles it).
    /// None is by default, so any `crit` header is refused (RFC 7515 §4.1.11).
    #[must_use]
    pub fn understand_crit(mut self, name: impl Into<String>) -> Self {
        self.understood_crit.push(name.into());
        self
    }

    /// The algorithm allow-list.
    pub fn allowed_algorithms(&self) -> AlgSet {
        self.algorithms
    }

    /// The accepted issuers.
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The clock skew in seconds.
    pub fn clock_skew_secs(&self) -> u64 {
        self.clock_skew
    }

    /// Verifies a JWT: structure, algorithm, `typ` (if required), signature with a key of `keys`,
    /// `iss`, `aud`, `exp` (required), `nbf`, `iat`; `now` is the wall clock in seconds.
    ///
    /// # Errors
    /// A [`JwtError`] naming the first check that failed.
    pub fn verify(&self, token: &str, keys: &Jwks, now: u64) -> Result<Verified, JwtError> {
        self.verify_typed(token, keys, now, |_| true)
    }

    /// [`Validation::verify`] with an extra rule on the `typ` header, applied before the
    /// signature is checked.
    fn verify_typed(
        &self,
        token: &str,
        keys: &Jwks,
        now: u64,
        typ_ok: impl Fn(Option<&str>) -> bool,
    ) -> Result<Verified, JwtError> {
        let jws = Jws::parse_understanding(token, &self.understood_crit)?;
        let header = jws.header();
        // RFC 8725 §3.1: the algorithm is checked against our list before any key is looked up,
        // and the key must fit it (Jwk::fits), so `alg` in the token cannot pick the verifier.
        if !self.algorithms.contains(header.alg()) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        // RFC 8725 §3.11: explicit typing keeps one kind of JWT from being used as another.
        if let Some(want) = &self.required_typ {
            if !header.typ().is_some_and(|t| typ_is(t, want)) {
                return Err(JwtError::WrongType);
            }
        }
        if !typ_ok(header.typ()) {
            return Err(JwtError::WrongType);
        }
        keys.verify(&jws)?;
        let claims = Claims::parse(jws.payload())?;
        self.check_claims(&claims, now)?;
        Ok(Verified {
            header: jws.header().clone(),
            claims,
        })
    }

    /// The claim checks shared by every kind of token.
    fn check_claims(&self, c: &Claims, now: u64) -> Result<(), JwtError> {
        // Registered string claims must be strings when present (RFC 7519 §4.1).
        for name in ["sub", "jti", "nonce", "azp", "sid"] {
            c.checked_str(name)?;
        }
        // RFC 7519 §4.1.1, OIDC Core 3.1.3.7 step 2: exact string comparison.
        let iss = c.checked_str("iss")?.ok_or(JwtError::MissingClaim("iss"))?;
        if !self.issuers.iter().any(|i| i == iss) {
            return Err(JwtError::WrongIssuer);
        }
        // RFC 7519 §4.1.3: `aud` is a string or an array of strings, and must contain us. No
        // configured audience means nothing is ours: fail closed.
        let aud = c.audiences()?;
        if aud.is_empty() && c.get("aud").is_none() {
            return Err(JwtError::MissingClaim("aud"));
        }
        if !aud
            .iter()
            .any(|a| self.audiences.iter().any(|want| want == a))
        {
            return Err(JwtError::WrongAudience);
        }
        self.check_time(c, now)
    }

    /// OIDC Core 3.1.3.7 step 3: a token "MUST be rejected if ... it contains additional
    /// audiences not trusted by the Client" — every `aud` entry must be a configured audience.
    fn only_trusted_audiences(&self, aud: &[&str]) -> Result<(), JwtError> {
        if aud.iter().all(|a| self.audiences.iter().any(|t| t == a)) {
            Ok(())
        } else {
            Err(JwtError::WrongAudience)
        }
    }

    /// `exp` (required), `nbf`, `iat` against `now` with the skew (RFC 7519 §4.1.4–6).
    fn check_time(&self, c: &Claims, now: u64) -> Result<(), JwtError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        // Bounded by MAX_CLOCK_SKEW_SECS, so the conversion cannot fail.
        let skew = i64::try_from(self.clock_skew).unwrap_or(0);
        // "the current date/time MUST be before the expiration date/time": now < exp (+ skew).
        let exp = c
            .numeric_date("exp", Round::Down)?
            .ok_or(JwtError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(skew) {
            return Err(JwtError::Expired);
        }
        // "MUST be after or equal to the not-before date/time": nbf <= now (+ skew).
        if let Some(nbf) = c.numeric_date("nbf", Round::Up)? {
            if nbf > now.saturating_add(skew) {
                return Err(JwtError::NotYetValid);
            }
        }
        let iat = c.numeric_date("iat", Round::Up)?;
        if let Some(iat) = iat {
            if iat > now.saturating_add(skew) {
                return Err(JwtError::IssuedInFuture);
            }
        }
        if let Some(max_age) = self.max_age {
            let iat = iat.ok_or(JwtError::MissingClaim("iat"))?;
            let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
            if now > iat.saturating_add(max_age).saturating_add(skew) {
                return Err(JwtError::TooOld);
            }
        }
        Ok(())
    }
}

/// A verified token: its header and claims.
#[derive(Debug, Clone)]
pub struct Verified {
    header: Header,
    claims: Claims,
}

impl Verified {
    /// The protected header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The claims, owned.
    pub fn into_claims(self) -> Claims {
        self.claims
    }
}

/// ID token validation, OpenID Connect Core 1.0 §3.1.3.7.
///
/// `typ`, when present, must not name another kind of JWT: `at+jwt` (an access token presented
/// as an ID token), `dpop+jwt`, `logout+jwt`, `secevent+jwt`, `token-introspection+jwt`,
/// `jwt-bearer+jwt` are refused; absent, `JWT` and anything else are accepted, since OIDC Core
/// does not type ID tokens.
#[derive(Debug, Clone)]
pub struct IdTokenValidation {
    base: Validation,
    client_id: String,
    max_auth_age: Option<u64>,
}

impl IdTokenValidation {
    /// ID tokens for `client_id`. The base's issuers, algorithms, skew and max age apply; its
    /// audiences are the *trusted* audiences: `client_id` is added to them and must be in `aud`,
    /// and any other `aud` entry must be one of them (step 3).
    pub fn new(base: Validation, client_id: impl Into<String>) -> Self {
        let client_id = client_id.into();
        IdTokenValidation {
            base: base.audience(client_id.clone()),
            client_id,
            max_auth_age: None,
        }
    }

    /// The `max_age` sent in the authentication request: `auth_time` becomes required and must be
    /// at most `secs` (plus skew) old (step 13, OIDC Core 3.1.2.1).
    #[must_use]
    pub fn max_auth_age(mut self, secs: u64) -> Self {
        self.max_auth_age = Some(secs);
        self
    }

    /// Verifies an ID token. `expected_nonce` is the nonce sent in the authentication request
    /// (`None` when none was sent, e.g. for ID tokens from a refresh).
    ///
    /// # Errors
    /// A [`JwtError`] naming the first check that failed.
    pub fn verify(
        &self,
        token: &str,
        keys: &Jwks,
        expected_nonce: Option<&str>,
        now: u64,
    ) -> Result<Claims, JwtError> {
        // Step 1 (decrypt a JWE): not supported; five-part tokens are refused as malformed.
        // Steps 6–8: alg on the allow-list (the client's id_token_signed_response_alg is the
        // caller's choice of list), signature with the issuer's keys: done first in
        // verify_typed, together with steps 2 (iss exact match), 3 (aud contains client_id),
        // 9 (exp) and 10 (iat not in the future, optional max age).
        // RFC 8725 §3.11: an access token (or any other typed JWT) is not an ID token.
        let v = self.base.verify_typed(token, keys, now, |typ| {
            !typ.is_some_and(|t| {
                typ_is(t, "at+jwt") || OTHER_PURPOSE_TYPES.iter().any(|o| typ_is(t, o))
            })
        })?;
        let c = v.into_claims();
        // OIDC Core 2: sub and iat are REQUIRED in an ID token.
        if c.checked_str("sub")?.is_none() {
            return Err(JwtError::MissingClaim("sub"));
        }
        if c.get("iat").is_none() {
            return Err(JwtError::MissingClaim("iat"));
        }
        // Step 3: "MUST be rejected if ... it contains additional audiences not trusted by the
        // Client".
        let aud = c.audiences()?;
        if !aud.iter().any(|a| *a == self.client_id) {
            return Err(JwtError::WrongAudience);
        }
        self.base.only_trusted_audiences(&aud)?;
        // Step 4: with several audiences, azp is required.
        let azp = c.checked_str("azp")?;
        if aud.len() > 1 && azp.is_none() {
            return Err(JwtError::MissingClaim("azp"));
        }
        // Step 5: if azp is present it must be our client_id.
        if azp.is_some_and(|a| a != self.client_id) {
            return Err(JwtError::AzpMismatch);
        }
        // Step 11: the nonce sent must come back unchanged (compared in constant time).
        if let Some(want) = expected_nonce {
            let got = c
                .checked_str("nonce")?
                .ok_or(JwtError::MissingClaim("nonce"))?;
            if !ct_eq(got.as_bytes(), want.as_bytes()) {
                return Err(JwtError::NonceMismatch);
            }
        }
        // Step 12 (acr) is the caller's policy. Step 13: auth_time against max_age.
        if let Some(max) = self.max_auth_age {
            let at = c
                .numeric_date("auth_time", Round::Down)?
                .ok_or(JwtError::MissingClaim("auth_time"))?;
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            let limit = at
                .saturating_add(i64::try_from(max).unwrap_or(i64::MAX))
                .saturating_add(i64::try_from(self.base.clock_skew).unwrap_or(0));
            if now > limit {
                return Err(JwtError::AuthTooOld);
            }
        } else {
            c.numeric_date("auth_time", Round::Down)?;
        }
        Ok(c)
    }
}

/// Access token validation, RFC 9068 (JWT profile for OAuth 2.0 access tokens).
///
/// The base's audiences are the bearer audiences (`bearer.audience`); one must be in `aud`.
///
/// Refusing an ID token presented as an access token:
/// - with [`AccessTokenValidation::require_at_jwt`] the `typ` header must be `at+jwt`
///   (RFC 9068 §4), which ID tokens never carry;
/// - without it, `typ` must be absent, `JWT` or `at+jwt`, and a token carrying `nonce`, `at_hash`,
///   `c_hash` or `s_hash` (claims only ID tokens have, OIDC Core 2 and 3.3.2.11) or `events` (a
///   logout or security event token) is refused. An ID token's `aud` is the OIDC client ID, and
///   `bearer.audience` defaults to that client ID; an ID token needs no `nonce` (OIDC Core 12.2:
///   one from a refresh should not carry it) and `at_hash` is optional. So with
///   [`AccessTokenValidation::login_client`] set, a token not typed `at+jwt` whose `aud` holds
///   the login client's ID must also carry a claim ID tokens do not: `client_id` (required by
///   RFC 9068 §2.2), `scope` or `scp` (RFC 8725 §3.11: one kind of JWT must not be taken for
///   another).
#[derive(Debug, Clone)]
pub struct AccessTokenValidation {
    base: Validation,
    require_at_jwt: bool,
    login_client: Option<String>,
}

impl AccessTokenValidation {
    /// Access tokens checked by `base`, `typ` not required.
    pub fn new(base: Validation) -> Self {
        AccessTokenValidation {
            base,
            require_at_jwt: false,
            login_client: None,
        }
    }

    /// The client ID of the browser login, whose ID tokens are refused as access tokens.
    #[must_use]
    pub fn login_client(mut self, client_id: Option<&str>) -> Self {
        self.login_client = client_id.map(str::to_string);
        self
    }

    /// Requires `typ: at+jwt` (or `application/at+jwt`).
    #[must_use]
    pub fn require_at_jwt(mut self, required: bool) -> Self {
        self.require_at_jwt = required;
        self
    }

    /// Verifies an access token.
    ///
    /// # Errors
    /// A [`JwtError`] naming the first check that failed; [`JwtError::WrongType`] or
    /// [`JwtError::UnexpectedClaim`] for an ID token or other kind of JWT.
    pub fn verify(&self, token: &str, keys: &Jwks, now: u64) -> Result<Claims, JwtError> {
        let require = self.require_at_jwt;
        let typed = std::cell::Cell::new(false);
        let v = self.base.verify_typed(token, keys, now, |typ| match typ {
            Some(t) if typ_is(t, "at+jwt") => {
                typed.set(true);
                true
            }
            Some(_) if require => false,
            None => !require,
            Some(t) => typ_is(t, "jwt"),
        })?;
        let c = v.into_claims();
        for name in ["nonce", "at_hash", "c_hash", "s_hash", "events"] {
            if c.get(name).is_some() {
                return Err(JwtError::UnexpectedClaim(name));
            }
        }
        // RFC 8725 §3.11, RFC 9068 §4: an untyped token for the login client is an ID token
        // unless it carries an access token's claim (see the type's documentation).
        if let Some(client) = self.login_client.as_deref() {
            if !typed.get()
                && c.aud().contains(&client)
                && !["client_id", "scope", "scp"]
                    .iter()
                    .any(|n| c.get(n).is_some())
            {
                return Err(JwtError::IdTokenAsAccessToken);
            }
        }
        Ok(c)
    }
}

/// The back-channel logout event member of `events` (Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Logout token validation, OpenID Connect Back-Channel Logout 1.0 §2.6.
///
/// The base's audiences hold the client ID. `exp` is required like everywhere (§2.4 of the final
/// specification makes it REQUIRED; oidc-provider 9 sends 120 s). `typ` may be absent, `JWT` or
/// `logout+jwt` (§2.4 recommends `logout+jwt`; a bare `JWT` says nothing about the purpose and
/// some providers send it); any other type, `at+jwt` in particular, is refused.
#[derive(Debug, Clone)]
pub struct LogoutTokenValidation {
    base: Validation,
}

/// A verified logout token. Its `jti` must be recorded single-use by the caller (§2.6 step 7),
/// and `iss` with `sub` or `sid` identify the sessions to end (step 8).
#[derive(Debug, Clone)]
pub struct LogoutToken {
    claims: Claims,
    jti: String,
}

impl LogoutToken {
    /// `jti` (always present).
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// `sid`, if present.
    pub fn sid(&self) -> Option<&str> {
        self.claims.sid()
    }

    /// `sub`, if present (at least one of `sid` and `sub` is).
    pub fn sub(&self) -> Option<&str> {
        self.claims.sub()
    }

    /// `iss` (always present).
    pub fn iss(&self) -> Option<&str> {
        self.claims.iss()
    }

    /// All claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}

impl LogoutTokenValidation {
    /// Logout tokens checked by `base` (issuer, client ID as audience, algorithms, skew).
    pub fn new(base: Validation) -> Self {
        LogoutTokenValidation { base }
    }

    /// Verifies a logout token.
    ///
    /// # Errors
    /// A [`JwtError`] naming the first check that failed.
    pub fn verify(&self, token: &str, keys: &Jwks, now: u64) -> Result<LogoutToken, JwtError> {
        // Step 1 (JWE) unsupported. Step 2: validate like an ID token: alg allow-list, signature,
        // iss, aud, iat, exp (verify_typed).
        let v = self.base.verify_typed(token, keys, now, |typ| match typ {
            None => true,
            Some(t) => typ_is(t, "logout+jwt") || typ_is(t, "jwt"),
        })?;
        let c = v.into_claims();
        // Step 3: iss, aud (contains the client ID: checked above; and, "in the same way as for
        // ID Tokens", no audience the client does not trust), iat and jti present.
        self.base.only_trusted_audiences(&c.audiences()?)?;
        if c.get("iat").is_none() {
            return Err(JwtError::MissingClaim("iat"));
        }
        let jti = c.checked_str("jti")?.ok_or(JwtError::MissingClaim("jti"))?;
        if jti.is_empty() {
            return Err(JwtError::InvalidClaim("jti"));
        }
        let jti = jti.to_owned();
        // Step 4: events contains the back-channel logout member, whose value is a JSON object.
        let events = match c.get("events") {
            None => return Err(JwtError::MissingClaim("events")),
            Some(e) => e.as_object().ok_or(JwtError::InvalidClaim("events"))?,
        };
        if !events
            .get(BACKCHANNEL_LOGOUT_EVENT)
            .is_some_and(serde_json::Value::is_object)
        {
            return Err(JwtError::InvalidClaim("events"));
        }
        // Step 5: sid or sub (or both).
        if c.sid().is_none() && c.sub().is_none() {
            return Err(JwtError::MissingClaim("sub or sid"));
        }
        // Step 6: a nonce would make it usable as an ID token (§2.4 prohibits it).
        if c.get("nonce").is_some() {
            return Err(JwtError::UnexpectedClaim("nonce"));
        }
        Ok(LogoutToken { claims: c, jti })
    }
}
