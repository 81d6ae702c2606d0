//! Bearer access tokens for APIs: the `Bearer` scheme (RFC 6750 §2.1), JWT access tokens
//! (RFC 9068), DPoP-bound tokens (RFC 9449, proofs in [`super::dpop`]) and one-time tokens.
//!
//! # Checks, in order, on every request
//!
//! 1. The credential: exactly one `Authorization` header whose scheme (case-insensitive,
//!    RFC 9110 §11.1) is `Bearer`, or `DPoP` when DPoP is enabled. Other schemes are not ours
//!    ([`Outcome::NotPresent`]: the session cookie or the 401 challenge follows). A token in the
//!    query (`access_token=`) or a form body is never read (RFC 6750 §2.2/§2.3 are optional and
//!    leak tokens into logs).
//! 2. The size cap `bearer.maxTokenSize`, before any decoding, then (on a verified-cache miss:
//!    a cached token passed it) the `b64token` syntax.
//! 3. The verdict on the token itself — signature, `iss`, `aud`, `typ`, `exp`/`nbf`/`iat`, the
//!    claims an ID token carries (RFC 9068 §4, [`AccessTokenValidation`]) — from the
//!    verified-token cache, else verified against the provider's keys (an unknown `kid` refetches
//!    the JWKS once, rate limited) and cached.
//! 4. The binding (RFC 9449 §7): a token with `cnf.jkt` needs the `DPoP` scheme and a valid proof
//!    from that key; a `DPoP`-scheme request needs a bound token; `bearer.dpop.required` refuses
//!    unbound tokens; a token bound by a confirmation method we cannot check (e.g. mTLS
//!    `x5t#S256`, RFC 8705) is refused rather than accepted as a plain bearer token.
//! 5. One-time tokens: the token's `jti` recorded atomically in the shared store; a second use
//!    anywhere in the cluster is refused. This runs on every request, cache hit or not.
//!
//! # Caches (per guest instance; never shared, so they only save work and never decide alone)
//!
//! - Verified tokens, matched on the whole token (a hit is an exact byte match, found through a
//!   [`textkey`] fingerprint — no SHA-256, which costs ≈ 5 µs per token under Traefik's wazero,
//!   and no byte-wise `memcmp`), until `exp` (plus the clock skew the validation allows) and at most
//!   [`VERIFIED_MAX_AGE_MS`], bounded by [`VERIFIED_MAX_ENTRIES`] entries and
//!   [`VERIFIED_MAX_BYTES`] bytes. Keying on the token string is sound for a cache even though
//!   ECDSA signatures are malleable: each variant is verified once on its own. Single-use checks
//!   key on `jti`, never on the token.
//! - Refused tokens, keyed by SHA-256 of the token (computed only on a verified-cache miss), for
//!   [`REFUSED_TTL_MS`] ([`REFUSED_SHORT_TTL_MS`] for a token that
//!   is not valid *yet*), bounded by [`REFUSED_MAX_ENTRIES`]: a client or attacker repeating a
//!   refused token costs one signature check per instance per 30 s, not one per request. Tokens
//!   refused for an unknown `kid` are not remembered: the provider may just have rotated its
//!   keys, and that refusal costs no signature check; nor are tokens refused before the
//!   signature check (malformed, an algorithm or `typ` or `crit` refused, no key for the
//!   algorithm), which cost less to refuse again than to remember. Distinct forged tokens each
//!   cost one verification; only the size cap and the algorithm allow-list bound that. A full
//!   cache evicts an eighth of its entries at a time, so a flood of them costs no scan per
//!   request.
//!
//! # Responses
//!
//! No credential: 401 with `WWW-Authenticate: Bearer realm=…` (and `DPoP algs=…` when DPoP is
//! enabled). Refused token: 401 `error="invalid_token"` (RFC 6750 §3.1); refused proof: 401 with
//! `DPoP error="invalid_dpop_proof"` (RFC 9449 §7.1); two credentials or an empty one: 400
//! `invalid_request`. Nothing in a response says *why*; the reason goes to Traefik's log. The
//! provider unreachable: 503 (502 when it answered garbage); the replay store unreachable for a
//! single-use check: 503 — never 401, since the token may well be valid.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;
use std::time::Duration;

use super::dpop::{self, ProofRefusal};
use super::provider::{ProviderError, VerifyError};
use crate::config::{Bearer, Config};
use crate::crypto::{sha256, sha256_b64, sha256_hex};
use crate::http::LogLevel;
use crate::jwt::{AccessTokenValidation, Claims, JwtError, Validation, DEFAULT_CLOCK_SKEW_SECS};
use crate::plugin::{Guard, Identity, Outcome, Principal, Req, Scratch, Via};
use crate::response::{BearerError, Response};
use crate::store::{Class, Namespace, SetOutcome};
use crate::textkey;

/// Longest time a verified token is served from the cache without a new signature check (keys
/// removed from the provider's JWKS stop working within this time).
pub const VERIFIED_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// Entry bound of the verified-token cache.
pub const VERIFIED_MAX_ENTRIES: usize = 1024;
/// Byte bound of the verified-token cache: per entry twice the token's length (the token as key,
/// and the decoded claims, which are smaller than the token that carried them) plus a fixed
/// overhead.
pub const VERIFIED_MAX_BYTES: usize = 2 * 1024 * 1024;
/// How long a refused token is refused without a new verification.
pub const REFUSED_TTL_MS: u64 = 30_000;
/// The same for a token refused as not valid yet (`nbf`/`iat` ahead of our clock), which may
/// become valid soon.
pub const REFUSED_SHORT_TTL_MS: u64 = 5_000;
/// Entry bound of the refused-token cache.
pub const REFUSED_MAX_ENTRIES: usize = 4096;
/// Accounting overhead per cache entry (key, expiry, map slot).
const ENTRY_OVERHEAD: usize = 96;

/// A verified token, as cached.
#[derive(Debug)]
struct Verdict {
    /// The full claims set (the policy and identity headers read it), with its memoized
    /// admission.
    principal: Rc<Principal>,
    /// `jti`, if any.
    jti: Option<String>,
    /// `exp`, seconds (always present: the validation requires it).
    exp: i64,
    /// The confirmation (RFC 7800 `cnf`) the token carries.
    binding: Binding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Binding {
    /// No `cnf`: a plain bearer token.
    None,
    /// `cnf.jkt`: bound to the DPoP key with this RFC 7638 thumbprint (RFC 9449 §6.1).
    Jkt(String),
    /// A `cnf` without `jkt` (mTLS `x5t#S256`, `jwk`, …): a binding we cannot check.
    Other,
}

/// A small map from a key (a token, or its SHA-256) to a value with an expiry, bounded by entries
/// and bytes.
///
/// When full, expired entries are swept first, then the eighth of the entries that expire
/// soonest is evicted at once: one linear pass per `max_entries / 8` inserts, so a flood of
/// distinct tokens costs a constant amount per insert, not a scan of the map each (with one
/// evicted at a time, a full 4096-entry map made each insert ≈ 26× dearer).
#[derive(Debug)]
struct TtlMap<K, V> {
    map: HashMap<K, Slot<V>, textkey::MixedKeys>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    until_ms: u64,
    bytes: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlMap<K, V> {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        TtlMap {
            // Keys are fingerprints and SHA-256 digests: mixed already.
            map: HashMap::with_hasher(textkey::MixedKeys::new()),
            max_entries,
            max_bytes,
            bytes: 0,
        }
    }

    /// The live value under `k`; an expired one is removed and never returned.
    fn get<Q: Hash + Eq + ?Sized>(&mut self, k: &Q, now_ms: u64) -> Option<V>
    where
        K: Borrow<Q>,
    {
        match self.map.get(k) {
            Some(s) if s.until_ms > now_ms => Some(s.value.clone()),
            Some(_) => {
                self.remove(k);
                None
            }
            None => None,
        }
    }

    fn remove<Q: Hash + Eq + ?Sized>(&mut self, k: &Q)
    where
        K: Borrow<Q>,
    {
        if let Some(s) = self.map.remove(k) {
            self.bytes = self.bytes.saturating_sub(s.bytes);
        }
    }

    /// Stores `value` until `until_ms`; `false` when it cannot fit at all.
    fn insert(&mut self, k: K, value: V, until_ms: u64, bytes: usize, now_ms: u64) -> bool {
        let bytes = bytes.saturating_add(ENTRY_OVERHEAD);
        if until_ms <= now_ms || self.max_entries == 0 || bytes > self.max_bytes {
            return false;
        }
        self.remove(&k);
        let mut swept = false;
        while self.map.len() >= self.max_entries
            || self.bytes.saturating_add(bytes) > self.max_bytes
        {
            if !swept {
                swept = true;
                let before = self.map.len();
                self.map.retain(|_, s| s.until_ms > now_ms);
                if self.map.len() != before {
                    self.bytes = self.map.values().map(|s| s.bytes).sum();
                }
                continue;
            }
            if self.map.is_empty() {
                break;
            }
            let mut by_expiry: Vec<(u64, K)> = self
                .map
                .iter()
                .map(|(k, s)| (s.until_ms, k.clone()))
                .collect();
            let evict = (by_expiry.len() / 8).max(1);
            if evict < by_expiry.len() {
                by_expiry.select_nth_unstable_by_key(evict, |(until, _)| *until);
            }
            for (_, k) in by_expiry.iter().take(evict) {
                self.remove(k);
            }
        }
        self.bytes = self.bytes.saturating_add(bytes);
        self.map.insert(
            k,
            Slot {
                value,
                until_ms,
                bytes,
            },
        );
        true
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Per-instance bearer state: the verified-token and refused-token caches, and the validators
/// built from the configuration.
#[derive(Debug)]
pub struct BearerState {
    /// Verified tokens by [`textkey::fingerprint`]; the entry holds the token, matched exactly.
    verified: TtlMap<u64, Rc<Verified>>,
    /// This instance's fingerprint seed.
    seed: u64,
    refused: TtlMap<[u8; 32], ()>,
    /// The access token validation for the issuer it was built for (the issuer may come from
    /// discovery, so it is built on first use and rebuilt if the issuer changes).
    validation: Option<(String, Rc<AccessTokenValidation>)>,
    dpop: crate::jwt::DpopValidation,
    counters: Counters,
}

/// A verified-token cache entry: the token and its verdict.
#[derive(Debug)]
struct Verified {
    token: Box<str>,
    verdict: Rc<Verdict>,
}

/// What the bearer path did on this instance (for tests and benchmarks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Tokens served from the verified-token cache.
    pub cache_hits: u64,
    /// Signature verifications run.
    pub verifications: u64,
    /// Tokens refused from the refused-token cache, without a verification.
    pub refused_cached: u64,
}

impl BearerState {
    /// Builds the state.
    pub fn new(cfg: &Config) -> Self {
        let dpop = match &cfg.bearer {
            Some(b) => dpop::validation(b),
            None => crate::jwt::DpopValidation::new(),
        };
        BearerState {
            verified: TtlMap::new(VERIFIED_MAX_ENTRIES, VERIFIED_MAX_BYTES),
            seed: textkey::seed(),
            refused: TtlMap::new(
                REFUSED_MAX_ENTRIES,
                REFUSED_MAX_ENTRIES * (32 + ENTRY_OVERHEAD),
            ),
            validation: None,
            dpop,
            counters: Counters::default(),
        }
    }

    /// The DPoP proof validation built from `bearer.dpop`.
    pub(crate) fn dpop_validation(&self) -> &crate::jwt::DpopValidation {
        &self.dpop
    }

    /// What happened so far on this instance.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Number of tokens in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    /// The cache's entry for exactly this token (its text and verdict).
    fn cached(&mut self, token: &[u8], now_ms: u64) -> Option<Rc<Verified>> {
        let v = self
            .verified
            .get(&textkey::fingerprint(self.seed, token), now_ms)?;
        textkey::same(v.token.as_bytes(), token).then_some(v)
    }

    /// Caches the verdict on `token` until `until_ms` (replacing a colliding entry).
    fn remember(&mut self, token: &str, verdict: Rc<Verdict>, until_ms: u64, now_ms: u64) {
        let fp = textkey::fingerprint(self.seed, token.as_bytes());
        let entry = Rc::new(Verified {
            token: Box::from(token),
            verdict,
        });
        self.verified
            .insert(fp, entry, until_ms, token.len().saturating_mul(2), now_ms);
    }

    /// Forgets the verdict on `token`.
    fn forget(&mut self, token: &str) {
        let fp = textkey::fingerprint(self.seed, token.as_bytes());
        if self
            .verified
            .map
            .get(&fp)
            .is_some_and(|s| textkey::same(s.value.token.as_bytes(), token.as_bytes()))
        {
            self.verified.remove(&fp);
        }
    }

    fn validation_for(
        &mut self,
        issuer: &str,
        b: &Bearer,
        login_client: Option<&str>,
    ) -> Rc<AccessTokenValidation> {
        if let Some((iss, v)) = &self.validation {
            if iss == issuer {
                return Rc::clone(v);
            }
        }
        let mut base = Validation::new(issuer);
        for a in &b.audiences {
            base = base.audience(a.clone());
        }
        // RFC 9068 §4: `typ: at+jwt` when required; otherwise ID tokens (and logout tokens) are
        // still told apart by their claims (see AccessTokenValidation).
        let v = Rc::new(
            AccessTokenValidation::new(base)
                .require_at_jwt(b.require_access_token_type)
                .login_client(login_client),
        );
        self.validation = Some((issuer.to_string(), Rc::clone(&v)));
        v
    }
}

/// Which `Authorization` scheme carried the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Bearer` (RFC 6750 §2.1).
    Bearer,
    /// `DPoP` (RFC 9449 §7.1).
    Dpop,
}

/// Why a request was refused; turned into a response (without the reason) and a log line (with).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Refusal {
    /// Two credentials, or a scheme without a token: 400 `invalid_request` (RFC 6750 §3.1).
    InvalidRequest(&'static str),
    /// The `DPoP` scheme while DPoP is off: 401 without an error code, as for a request that
    /// "attempted using an unsupported authentication method" (RFC 6750 §3.1).
    UnsupportedScheme,
    /// The token was refused: 401 `invalid_token`.
    Token(String),
    /// The DPoP proof was refused: 401 `invalid_dpop_proof`.
    Proof(String),
    /// The provider did not answer: 503.
    ProviderDown(String),
    /// The provider answered something invalid: 502.
    ProviderInvalid(String),
    /// The replay store could not decide a single-use check: 503.
    StoreUnavailable(&'static str),
}

impl Refusal {
    fn response(&self, dpop: bool) -> Response {
        match self {
            Refusal::InvalidRequest(_) => {
                Response::unauthorized_api(Some(BearerError::InvalidRequest), dpop)
            }
            Refusal::UnsupportedScheme => Response::unauthorized_api(None, dpop),
            Refusal::Token(_) => Response::unauthorized_api(Some(BearerError::InvalidToken), dpop),
            Refusal::Proof(_) => {
                Response::unauthorized_api(Some(BearerError::InvalidDpopProof), dpop)
            }
            Refusal::ProviderDown(_) => {
                Response::unavailable("The identity provider cannot be reached; try again shortly.")
            }
            Refusal::ProviderInvalid(_) => {
                Response::bad_gateway("The identity provider answered something invalid.")
            }
            Refusal::StoreUnavailable(_) => {
                Response::unavailable("Token replay detection is unavailable; try again shortly.")
            }
        }
    }

    fn log(&self) -> (LogLevel, String) {
        match self {
            Refusal::InvalidRequest(why) => (
                LogLevel::Info,
                format!("oidc-guard: bearer: malformed request: {why}"),
            ),
            Refusal::UnsupportedScheme => (
                LogLevel::Info,
                "oidc-guard: bearer: DPoP scheme used but bearer.dpop is off".to_string(),
            ),
            Refusal::Token(why) => (
                LogLevel::Info,
                format!("oidc-guard: bearer: token refused: {why}"),
            ),
            Refusal::Proof(why) => (
                LogLevel::Info,
                format!("oidc-guard: bearer: DPoP proof refused: {why}"),
            ),
            Refusal::ProviderDown(why) => (LogLevel::Warn, format!("oidc-guard: bearer: {why}")),
            Refusal::ProviderInvalid(why) => (LogLevel::Warn, format!("oidc-guard: bearer: {why}")),
            Refusal::StoreUnavailable(what) => (
                LogLevel::Warn,
                format!(
                    "oidc-guard: bearer: {what}: the shared store is unavailable; refused (503)"
                ),
            ),
        }
    }
}

/// Authenticates a request by its `Authorization: Bearer|DPoP` header.
///
/// [`Outcome::NotPresent`] only when the request carries no `Bearer`/`DPoP` credential at all.
pub fn authenticate(g: &mut Guard, req: &mut Req<'_>) -> Outcome {
    let cfg = Rc::clone(&g.cfg);
    let Some(b) = cfg.bearer.as_ref() else {
        return Outcome::NotPresent;
    };
    // The usual single value is read without building a list, into the instance's buffer, as
    // bytes: a token found in the verified cache is the cached text byte for byte, so it needs
    // no UTF-8 check (one over a 700-byte token was ≈ 13 % of a cached bearer request's wasm
    // operators); one that is not found is made text before anything reads it.
    let buf = std::mem::take(&mut g.scratch.auth);
    let (first, count) = req.ex.header_bytes_and_count_in("Authorization", buf);
    let outcome = authenticate_with(g, req, b, &cfg, first.as_deref(), count);
    if let Some(v) = first {
        Scratch::keep(&mut g.scratch.auth, v);
    }
    outcome
}

/// [`authenticate`] once the first `Authorization` value and the number of values are read.
fn authenticate_with(
    g: &mut Guard,
    req: &mut Req<'_>,
    b: &Bearer,
    cfg: &Config,
    first: Option<&[u8]>,
    count: usize,
) -> Outcome {
    let all: Vec<String>;
    let mut one = [&[][..]; 1];
    let values: Vec<&[u8]>;
    let values: &[&[u8]] = match first {
        None => &[],
        Some(v) if count == 1 => {
            one[0] = v;
            &one
        }
        Some(_) => {
            all = req.ex.header_values("Authorization");
            values = all.iter().map(|v| v.as_bytes()).collect();
            &values
        }
    };
    let (scheme, token) = match credential(values, b) {
        Ok(None) => return Outcome::NotPresent,
        Ok(Some(c)) => c,
        Err(r) => return refuse(g, r, b.dpop.enabled),
    };
    let now_ms = g.clock.now_ms();
    let hit = g.bearer.cached(token, now_ms);
    let missed;
    let (token, verdict) = match &hit {
        Some(hit) => {
            g.bearer.counters.cache_hits += 1;
            (&hit.token[..], Ok(Rc::clone(&hit.verdict)))
        }
        None => {
            missed = text(token);
            (&missed[..], verify_now(g, b, &missed, now_ms))
        }
    };
    match authenticate_token(g, req, b, scheme, token, verdict) {
        Ok(principal) => Outcome::Authenticated(Identity {
            principal,
            via: Via::Bearer,
            access_token: access_token(cfg, token),
        }),
        Err(r) => refuse(g, r, b.dpop.enabled),
    }
}

/// The token for the backend, when `forwardAccessToken` names another header than
/// `Authorization`: the backend finds it there whichever way the client authenticated.
/// (`Authorization` itself is left as the client sent it: a DPoP request keeps its `DPoP`
/// scheme.)
fn access_token(cfg: &Config, token: &str) -> Option<String> {
    cfg.upstream.own_token_header().map(|_| token.to_string())
}

/// A token the cache does not hold, as text (bytes that are not UTF-8 become U+FFFD, which no
/// b64token holds: it is then refused as one).
#[cold]
#[inline(never)]
fn text(token: &[u8]) -> String {
    String::from_utf8_lossy(token).into_owned()
}

#[cold]
#[inline(never)]
fn refuse(g: &mut Guard, r: Refusal, dpop: bool) -> Outcome {
    g.log.push(r.log());
    Outcome::Reply(r.response(dpop))
}

/// The one `Bearer`/`DPoP` credential of the request, if any.
///
/// `Ok(None)`: no `Authorization` header, or one with another scheme (e.g. `Basic`).
fn credential<'a>(values: &[&'a [u8]], b: &Bearer) -> Result<Option<(Scheme, &'a [u8])>, Refusal> {
    let mut found = None;
    for &v in values {
        // RFC 9110 §11.4: `credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`; the
        // scheme is case-insensitive (§11.1).
        // (`split_once(' ')` was a `memchr` call, ≈ 180 wasm operators to find the sixth byte.)
        let (scheme, rest) = match textkey::find_byte(v, b' ') {
            Some(i) => (
                v.get(..i).unwrap_or_default(),
                v.get(i + 1..).unwrap_or_default(),
            ),
            None => (v, &[][..]),
        };
        let scheme = if textkey::eq_letters_ignoring_case(scheme, b"bearer") {
            Scheme::Bearer
        } else if textkey::eq_letters_ignoring_case(scheme, b"dpop") {
            Scheme::Dpop
        } else {
            continue;
        };
        if found.is_some() || values.len() > 1 {
            // RFC 6750 §3.1: "uses more than one method for including an access token".
            return Err(Refusal::InvalidRequest(
                "more than one Authorization header",
            ));
        }
        found = Some((scheme, trim_blanks(rest)));
    }
    let Some((scheme, token)) = found else {
        return Ok(None);
    };
    if token.is_empty() {
        return Err(Refusal::InvalidRequest(
            "Authorization scheme without a token",
        ));
    }
    if scheme == Scheme::Dpop && !b.dpop.enabled {
        return Err(Refusal::UnsupportedScheme);
    }
    // Size first: nothing of an oversized token is decoded.
    if token.len() > b.max_token_size {
        return Err(Refusal::Token(format!(
            "token of {} bytes exceeds bearer.maxTokenSize ({} bytes)",
            token.len(),
            b.max_token_size
        )));
    }
    Ok(Some((scheme, token)))
}

/// `v` without leading and trailing spaces and tabs (RFC 9110 §5.6.3 whitespace).
fn trim_blanks(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Checked before a token is verified; a token found in the verified cache passed it then (the
/// cache matches the exact bytes), so a cache hit does not walk the token again.
fn check_b64token(token: &str) -> Result<(), Refusal> {
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~+/".contains(&c))
    {
        return Err(Refusal::Token("not a b64token (RFC 6750 §2.1)".to_string()));
    }
    Ok(())
}

fn authenticate_token(
    g: &mut Guard,
    req: &Req<'_>,
    b: &Bearer,
    scheme: Scheme,
    token: &str,
    verdict: Result<Rc<Verdict>, Refusal>,
) -> Result<Rc<Principal>, Refusal> {
    let verdict = verdict?;
    // RFC 9449 §7.1/§7.2 and §6.1: the binding decides which scheme and proof are needed.
    match (scheme, &verdict.binding) {
        (_, Binding::Other) => {
            return Err(Refusal::Token(
                "the token's cnf names a confirmation method other than DPoP jkt, which cannot be checked here"
                    .to_string(),
            ))
        }
        (Scheme::Bearer, Binding::Jkt(_)) => {
            return Err(Refusal::Token(
                "DPoP-bound token (cnf.jkt) presented with the Bearer scheme (RFC 9449 §7.2)".to_string(),
            ))
        }
        (Scheme::Bearer, Binding::None) if b.dpop.required => {
            return Err(Refusal::Token("token is not DPoP-bound and bearer.dpop.required is set".to_string()))
        }
        (Scheme::Dpop, Binding::None) => {
            return Err(Refusal::Token("token presented with the DPoP scheme has no cnf.jkt".to_string()))
        }
        (Scheme::Dpop, Binding::Jkt(jkt)) => match dpop::check(g, req, b, token, jkt) {
            Ok(()) => {}
            Err(ProofRefusal::Proof(why)) => return Err(Refusal::Proof(why)),
            // RFC 9449 §7.1 answers a key that is not the token's with `invalid_token`.
            Err(ProofRefusal::KeyBinding) => {
                return Err(Refusal::Token("DPoP proof key differs from the token's cnf.jkt".to_string()))
            }
            Err(ProofRefusal::StoreUnavailable) => return Err(Refusal::StoreUnavailable("DPoP proof replay check")),
        },
        (Scheme::Bearer, Binding::None) => {}
    }
    if b.one_time_tokens {
        consume_one_time(g, token, &verdict)?;
    }
    Ok(Rc::clone(&verdict.principal))
}

/// The verdict on a token the cache does not hold. Out of line, so the cache-hit path stays a
/// few compact blocks of code (see `Guard::handle`).
#[inline(never)]
fn verify_now(g: &mut Guard, b: &Bearer, token: &str, now_ms: u64) -> Result<Rc<Verdict>, Refusal> {
    check_b64token(token)?;
    let key = &sha256(token.as_bytes());
    if g.bearer.refused.get(key, now_ms).is_some() {
        g.bearer.counters.refused_cached += 1;
        return Err(Refusal::Token(
            "refused moments ago (refused-token cache)".to_string(),
        ));
    }
    let issuer = {
        let (provider, mut deps) = g.provider_deps();
        provider.issuer(&mut deps).map_err(provider_refusal)?
    };
    let login_client = g.cfg.browser.as_ref().map(|br| br.client.id.as_str());
    let validation = g.bearer.validation_for(&issuer, b, login_client);
    let now_s = now_ms / 1000;
    g.bearer.counters.verifications += 1;
    let result = {
        let (provider, mut deps) = g.provider_deps();
        provider.verify(&mut deps, |jwks| validation.verify(token, jwks, now_s))
    };
    let claims = match result {
        Ok(c) => c,
        Err(VerifyError::Provider(e)) => return Err(provider_refusal(e)),
        Err(VerifyError::Token(e)) => {
            let ttl = match e {
                // Not remembered: the provider may have rotated its keys a moment ago, and this
                // refusal costs no signature check (provider.verify rate-limits the refetch).
                JwtError::UnknownKid => 0,
                // Refused before any signature check: finding them again costs less than a
                // cache entry, and remembering them would let junk fill the cache.
                JwtError::Malformed
                | JwtError::TooLarge
                | JwtError::AlgorithmNotAllowed
                | JwtError::CritUnsupported
                | JwtError::WrongType
                | JwtError::NoSuitableKey => 0,
                JwtError::NotYetValid | JwtError::IssuedInFuture => REFUSED_SHORT_TTL_MS,
                _ => REFUSED_TTL_MS,
            };
            remember_refusal(g, key, ttl, now_ms);
            return Err(Refusal::Token(e.to_string()));
        }
    };
    let verdict = match Verdict::new(claims, b) {
        Ok(v) => Rc::new(v),
        Err(why) => {
            remember_refusal(g, key, REFUSED_TTL_MS, now_ms);
            return Err(Refusal::Token(why.to_string()));
        }
    };
    // Until the validation itself would refuse it (exp + skew), at most VERIFIED_MAX_AGE_MS.
    let exp_ms = u64::try_from(verdict.exp)
        .unwrap_or(0)
        .saturating_add(DEFAULT_CLOCK_SKEW_SECS)
        .saturating_mul(1000);
    let until = exp_ms.min(now_ms.saturating_add(VERIFIED_MAX_AGE_MS));
    g.bearer.remember(token, Rc::clone(&verdict), until, now_ms);
    Ok(verdict)
}

fn remember_refusal(g: &mut Guard, key: &[u8; 32], ttl_ms: u64, now_ms: u64) {
    if ttl_ms > 0 {
        g.bearer
            .refused
            .insert(*key, (), now_ms.saturating_add(ttl_ms), 32, now_ms);
    }
}

impl Verdict {
    fn new(claims: Claims, b: &Bearer) -> Result<Verdict, &'static str> {
        let jti = claims.jti().map(str::to_string);
        // DESIGN "Replay": a one-time token is recognised by its jti; without one it cannot be
        // used once, so it is refused rather than accepted many times.
        if b.one_time_tokens && jti.as_deref().is_none_or(str::is_empty) {
            return Err("bearer.oneTimeTokens is on and the token has no jti");
        }
        let binding = match claims.cnf_jkt() {
            Some(j) if !j.is_empty() => Binding::Jkt(j.to_string()),
            Some(_) => Binding::Other,
            None if claims.has_cnf() => Binding::Other,
            None => Binding::None,
        };
        // The validation requires exp; a missing one here would be a bug, refused all the same.
        let exp = claims.exp().ok_or("the token has no exp")?;
        Ok(Verdict {
            jti,
            exp,
            binding,
            principal: Rc::new(Principal::new(claims.into_map())),
        })
    }
}

/// Records a one-time token's `jti` in the shared store: the first use anywhere wins, every other
/// use is refused (DESIGN "Replay"). Runs on every request, the verified-token cache
/// notwithstanding.
#[inline(never)]
fn consume_one_time(g: &mut Guard, token: &str, v: &Verdict) -> Result<(), Refusal> {
    let Some(jti) = v.jti.as_deref() else {
        return Err(Refusal::Token(
            "bearer.oneTimeTokens is on and the token has no jti".to_string(),
        ));
    };
    let now_ms = g.clock.now_ms();
    // The marker must outlive every moment the token could still be accepted: exp + skew.
    let until_ms = u64::try_from(v.exp)
        .unwrap_or(0)
        .saturating_add(DEFAULT_CLOCK_SKEW_SECS)
        .saturating_mul(1000);
    let ttl = Duration::from_millis(until_ms.saturating_sub(now_ms).max(1000));
    // The key is a hash of the jti: bounded length, no separator from the token in the key.
    let marker = format!("at:{}", sha256_b64(jti.as_bytes()));
    match g
        .store
        .set_if_absent(Namespace::JTI, &marker, ttl, Class::SingleUse)
    {
        Ok(SetOutcome::Won) => Ok(()),
        Ok(SetOutcome::AlreadyUsed) => {
            g.bearer.forget(token);
            remember_refusal(g, &sha256(token.as_bytes()), REFUSED_TTL_MS, now_ms);
            Err(Refusal::Token(format!(
                "one-time token already used (jti #{})",
                sha256_hex(jti.as_bytes(), 6)
            )))
        }
        Ok(SetOutcome::Unavailable) | Err(_) => {
            Err(Refusal::StoreUnavailable("one-time token check"))
        }
    }
}

fn provider_refusal(e: ProviderError) -> Refusal {
    match e {
        ProviderError::Invalid(s) => {
            Refusal::ProviderInvalid(format!("identity provider answered invalid data: {s}"))
        }
        other => Refusal::ProviderDown(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
