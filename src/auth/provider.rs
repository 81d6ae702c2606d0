//! The OpenID provider as the plugin knows it: discovery metadata (OpenID Connect Discovery 1.0)
//! and the signing keys (JWKS), either static (`issuer` + `jwks`/`jwksFile`, no network at all)
//! or fetched lazily from `providerURL` and cached.
//!
//! Caching: each guest instance keeps the documents in memory (discovery for an hour, the JWKS for
//! ten minutes, stale keys kept while the provider is unreachable). When the store can seal values
//! with a secret (a session key exists), the documents are also shared through the L2 so that new
//! instances and replicas do not all hit the provider; without a secret they are not shared,
//! because an unkeyed integrity tag does not stop someone with write access to Redis from
//! planting keys. An unknown `kid` triggers one refetch, at most once every
//! [`UNKNOWN_KID_REFETCH_MS`] per instance, so a flood of tokens with made-up key ids cannot
//! turn into a flood of requests to the provider. An unreachable provider is not fatal at start-up:
//! requests that need it get 503 and the next attempt waits [`FAILURE_BACKOFF_MS`].

use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

use crate::clock::PluginClock;
use crate::config::Config;
use crate::http::url::Url;
use crate::http::LogLevel;
use crate::jwt::{Jwks, JwtError};
use crate::net::http::{Fetch, HttpRequest};
use crate::store::{Class, Namespace, TieredStore};

/// How long discovery metadata is kept.
pub const DISCOVERY_TTL_MS: u64 = 3_600_000;
/// How long a JWKS is used before it is refetched.
pub const JWKS_TTL_MS: u64 = 600_000;
/// How long a JWKS keeps being used when refetching fails.
pub const JWKS_STALE_MS: u64 = 24 * 3_600_000;
/// Minimum time between refetches caused by an unknown `kid`, per instance.
pub const UNKNOWN_KID_REFETCH_MS: u64 = 10_000;
/// After a failed fetch, wait this long before asking the provider again (per instance).
pub const FAILURE_BACKOFF_MS: u64 = 5_000;
/// Time budget for one request to the provider.
pub const FETCH_TIMEOUT_MS: u64 = 5_000;

/// The provider metadata the plugin uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// `issuer`, exactly as the provider states it (compared with `iss` in tokens).
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// `end_session_endpoint` (RP-Initiated Logout 1.0).
    pub end_session_endpoint: Option<String>,
    /// `revocation_endpoint` (RFC 7009).
    pub revocation_endpoint: Option<String>,
    /// `code_challenge_methods_supported` (RFC 8414).
    pub code_challenge_methods: Vec<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3): the provider puts `iss`
    /// in every authorization response, so a response without it is refused.
    pub iss_parameter_supported: bool,
}

/// Why the provider could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider did not answer (or not in time); retried after a back-off.
    Unreachable(String),
    /// The provider answered something invalid (status, content type, JSON, issuer mismatch).
    Invalid(String),
    /// Nothing configured to get this from (e.g. no `jwks_uri` and no static keys).
    NotConfigured(&'static str),
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::Unreachable(s) => write!(f, "identity provider unreachable: {s}"),
            ProviderError::Invalid(s) => write!(f, "identity provider answered invalid data: {s}"),
            ProviderError::NotConfigured(s) => write!(f, "not configured: {s}"),
        }
    }
}

/// Why a token could not be verified against the provider's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The provider's keys are not available (503).
    Provider(ProviderError),
    /// The token was refused (401).
    Token(JwtError),
}

/// What the provider code needs from the request pipeline.
pub struct Deps<'a> {
    /// HTTP client.
    pub fetch: &'a mut dyn Fetch,
    /// The two-tier store.
    pub store: &'a mut TieredStore,
    /// Wall clock.
    pub clock: &'a PluginClock,
    /// Log lines to emit for this request.
    pub log: &'a mut Vec<(LogLevel, String)>,
}

#[derive(Debug)]
struct Cached<T> {
    value: Rc<T>,
    fetched_ms: u64,
}

/// Per-instance provider state.
#[derive(Debug)]
pub struct ProviderState {
    provider_url: Option<String>,
    configured_issuer: Option<String>,
    overrides: Overrides,
    allow_http: bool,
    /// Whether documents are shared through the L2: only when the store seals values with a
    /// secret. With an unkeyed integrity tag anyone who can write to Redis could plant signing
    /// keys, so then they are neither written nor read.
    share: bool,
    static_jwks: Option<Rc<Jwks>>,
    metadata: Option<Cached<Metadata>>,
    jwks: Option<Cached<Jwks>>,
    last_failure_ms: Option<u64>,
    last_kid_refetch_ms: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Overrides {
    jwks_uri: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

impl ProviderState {
    /// Builds the state from the configuration. `share` says whether the store seals values
    /// with a secret (a session key exists): only then are documents shared through the L2.
    ///
    /// # Errors
    /// A static JWKS that does not parse (the configuration layer checks its syntax; this checks
    /// the keys themselves).
    pub fn new(cfg: &Config, share: bool) -> Result<Self, JwtError> {
        let p = &cfg.provider;
        let static_jwks = match &p.jwks {
            Some(text) => Some(Rc::new(Jwks::parse(text.as_bytes())?)),
            None => None,
        };
        Ok(ProviderState {
            provider_url: p.url.clone(),
            configured_issuer: p.issuer.clone(),
            overrides: Overrides {
                jwks_uri: p.jwks_uri.clone(),
                authorization_endpoint: p.authorization_endpoint.clone(),
                token_endpoint: p.token_endpoint.clone(),
                end_session_endpoint: p.end_session_endpoint.clone(),
                revocation_endpoint: p.revocation_endpoint.clone(),
            },
            allow_http: p.insecure_http,
            share,
            static_jwks,
            metadata: None,
            jwks: None,
            last_failure_ms: None,
            last_kid_refetch_ms: None,
        })
    }

    /// Whether discovery is needed at all (a `providerURL` is configured).
    pub fn discovers(&self) -> bool {
        self.provider_url.is_some()
    }

    /// The provider metadata: from discovery when `providerURL` is set (lazily, cached), else
    /// assembled from the static configuration.
    ///
    /// # Errors
    /// [`ProviderError`] when discovery fails or nothing names the issuer.
    pub fn metadata(&mut self, d: &mut Deps<'_>) -> Result<Rc<Metadata>, ProviderError> {
        let now = d.clock.now_ms();
        if let Some(c) = &self.metadata {
            if now.saturating_sub(c.fetched_ms) < DISCOVERY_TTL_MS {
                return Ok(c.value.clone());
            }
        }
        let Some(url) = self.provider_url.clone() else {
            let issuer = self
                .configured_issuer
                .clone()
                .ok_or(ProviderError::NotConfigured("issuer or providerURL"))?;
            let m = Rc::new(self.with_overrides(Metadata {
                issuer,
                authorization_endpoint: None,
                token_endpoint: None,
                jwks_uri: None,
                end_session_endpoint: None,
                revocation_endpoint: None,
                code_challenge_methods: Vec::new(),
                iss_parameter_supported: false,
            }));
            self.metadata = Some(Cached {
                value: m.clone(),
                fetched_ms: now,
            });
            return Ok(m);
        };
        // Shared copy first (only when sealed with the session key, see `share`).
        let key = url.clone();
        if let Some(bytes) = self.shared_get(d, Namespace::DISCOVERY, &key) {
            if let Ok(m) = self.parse_metadata(&url, &bytes) {
                let m = Rc::new(m);
                self.metadata = Some(Cached {
                    value: m.clone(),
                    fetched_ms: now,
                });
                return Ok(m);
            }
        }
        let stale = self.metadata.as_ref().map(|c| c.value.clone());
        match self.fetch_metadata(&url, d) {
            Ok((m, raw)) => {
                let m = Rc::new(m);
                self.metadata = Some(Cached {
                    value: m.clone(),
                    fetched_ms: now,
                });
                self.shared_set(d, Namespace::DISCOVERY, &key, &raw, DISCOVERY_TTL_MS);
                Ok(m)
            }
            // Metadata rarely changes: keep serving the previous copy when the refresh fails.
            Err(e) => stale.ok_or(e),
        }
    }

    fn shared_get(&self, d: &mut Deps<'_>, ns: Namespace, key: &str) -> Option<Vec<u8>> {
        if !self.share {
            return None;
        }
        d.store.get(ns, key).ok().flatten()
    }

    fn shared_set(&self, d: &mut Deps<'_>, ns: Namespace, key: &str, value: &[u8], ttl_ms: u64) {
        if self.share {
            // Class::Confidential: sealed with AES-256-GCM under the store key, never stored
            // with a bare integrity tag.
            let _ = d.store.set(
                ns,
                key,
                value,
                Duration::from_millis(ttl_ms),
                Class::Confidential,
            );
        }
    }

    fn with_overrides(&self, mut m: Metadata) -> Metadata {
        let o = &self.overrides;
        if o.jwks_uri.is_some() {
            m.jwks_uri = o.jwks_uri.clone();
        }
        if o.authorization_endpoint.is_some() {
            m.authorization_endpoint = o.authorization_endpoint.clone();
        }
        if o.token_endpoint.is_some() {
            m.token_endpoint = o.token_endpoint.clone();
        }
        if o.end_session_endpoint.is_some() {
            m.end_session_endpoint = o.end_session_endpoint.clone();
        }
        if o.revocation_endpoint.is_some() {
            m.revocation_endpoint = o.revocation_endpoint.clone();
        }
        m
    }

    fn backoff(&self, now: u64) -> Result<(), ProviderError> {
        match self.last_failure_ms {
            Some(t) if now.saturating_sub(t) < FAILURE_BACKOFF_MS => {
                Err(ProviderError::Unreachable(
                    "an earlier attempt failed moments ago; retrying shortly".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    fn fetch_metadata(
        &mut self,
        url: &str,
        d: &mut Deps<'_>,
    ) -> Result<(Metadata, Vec<u8>), ProviderError> {
        let now = d.clock.now_ms();
        self.backoff(now)?;
        let doc_url = format!("{url}/.well-known/openid-configuration");
        let body = self.get_json(&doc_url, d)?;
        let m = self.parse_metadata(url, &body)?;
        d.log.push((
            LogLevel::Info,
            format!("oidc-guard: discovered provider {}", m.issuer),
        ));
        Ok((m, body))
    }

    /// GET a JSON document; failures start the back-off.
    fn get_json(&mut self, url: &str, d: &mut Deps<'_>) -> Result<Vec<u8>, ProviderError> {
        let now = d.clock.now_ms();
        let result = d.fetch.fetch(&HttpRequest::get_json(url, FETCH_TIMEOUT_MS));
        // The fetch waited: what follows reads the clock anew (see `RequestClock`).
        d.clock.refresh();
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.last_failure_ms = Some(now);
                let msg = format!("GET {url}: {e}");
                d.log.push((LogLevel::Warn, format!("oidc-guard: {msg}")));
                return Err(ProviderError::Unreachable(msg));
            }
        };
        if resp.status != 200 {
            self.last_failure_ms = Some(now);
            let msg = format!("GET {url}: status {}", resp.status);
            d.log.push((LogLevel::Warn, format!("oidc-guard: {msg}")));
            return Err(if resp.status >= 500 {
                ProviderError::Unreachable(msg)
            } else {
                ProviderError::Invalid(msg)
            });
        }
        self.last_failure_ms = None;
        Ok(resp.body)
    }

    /// Checks a discovery document (OpenID Connect Discovery 1.0 §4.3).
    fn parse_metadata(&self, url: &str, body: &[u8]) -> Result<Metadata, ProviderError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|_| ProviderError::Invalid("discovery document is not JSON".into()))?;
        let obj = v.as_object().ok_or_else(|| {
            ProviderError::Invalid("discovery document is not a JSON object".into())
        })?;
        let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let issuer = s("issuer")
            .ok_or_else(|| ProviderError::Invalid("discovery document has no issuer".into()))?;
        // Discovery §4.3: the issuer returned MUST be identical to the issuer used to build the
        // discovery URL (or to the configured `issuer`, for providers whose discovery URL differs).
        // A single trailing slash is tolerated because `providerURL` is stored without one.
        let expected = self
            .configured_issuer
            .clone()
            .unwrap_or_else(|| url.to_string());
        if issuer != expected && issuer.trim_end_matches('/') != expected.trim_end_matches('/') {
            return Err(ProviderError::Invalid(format!(
                "discovery issuer {issuer:?} differs from the expected {expected:?}"
            )));
        }
        let endpoint = |k: &str| -> Result<Option<String>, ProviderError> {
            match s(k) {
                None => Ok(None),
                Some(e) => {
                    let u = Url::parse(&e)
                        .map_err(|err| ProviderError::Invalid(format!("{k}: {err}")))?;
                    if !u.is_https() && !self.allow_http {
                        return Err(ProviderError::Invalid(format!("{k} is not https")));
                    }
                    Ok(Some(e))
                }
            }
        };
        let methods = obj
            .get("code_challenge_methods_supported")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(self.with_overrides(Metadata {
            issuer,
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
            jwks_uri: endpoint("jwks_uri")?,
            end_session_endpoint: endpoint("end_session_endpoint")?,
            revocation_endpoint: endpoint("revocation_endpoint")?,
            code_challenge_methods: methods,
            iss_parameter_supported: obj
                .get("authorization_response_iss_parameter_supported")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }))
    }

    /// The issuer tokens must carry.
    ///
    /// # Errors
    /// As [`ProviderState::metadata`].
    pub fn issuer(&mut self, d: &mut Deps<'_>) -> Result<String, ProviderError> {
        if !self.discovers() {
            if let Some(i) = &self.configured_issuer {
                return Ok(i.clone());
            }
        }
        Ok(self.metadata(d)?.issuer.clone())
    }

    /// The signing keys: the static JWKS, or the provider's (cached, refetched when old).
    ///
    /// # Errors
    /// [`ProviderError`] when no keys can be had.
    pub fn keys(&mut self, d: &mut Deps<'_>) -> Result<Rc<Jwks>, ProviderError> {
        if let Some(k) = &self.static_jwks {
            return Ok(k.clone());
        }
        let now = d.clock.now_ms();
        if let Some(c) = &self.jwks {
            if now.saturating_sub(c.fetched_ms) < JWKS_TTL_MS {
                return Ok(c.value.clone());
            }
        }
        match self.load_jwks(d, false) {
            Ok(k) => Ok(k),
            Err(e) => match &self.jwks {
                Some(c) if now.saturating_sub(c.fetched_ms) < JWKS_STALE_MS => Ok(c.value.clone()),
                _ => Err(e),
            },
        }
    }

    fn load_jwks(
        &mut self,
        d: &mut Deps<'_>,
        skip_shared: bool,
    ) -> Result<Rc<Jwks>, ProviderError> {
        let now = d.clock.now_ms();
        let uri = self
            .metadata(d)?
            .jwks_uri
            .clone()
            .ok_or(ProviderError::NotConfigured(
                "jwks_uri (the provider lists none)",
            ))?;
        if !skip_shared {
            if let Some(bytes) = self.shared_get(d, Namespace::JWKS, &uri) {
                if let Ok(k) = Jwks::parse(&bytes) {
                    let k = Rc::new(k);
                    self.jwks = Some(Cached {
                        value: k.clone(),
                        fetched_ms: now,
                    });
                    return Ok(k);
                }
            }
        }
        self.backoff(now)?;
        let body = self.get_json(&uri, d)?;
        let keys = Jwks::parse(&body).map_err(|e| ProviderError::Invalid(format!("JWKS: {e}")))?;
        // A set with no key we can use is still the provider's key set now (say it withdrew a
        // compromised key): it replaces the cached one rather than the old keys being served as
        // stale for a day, and a token with a new `kid` still triggers a refetch.
        let keys = Rc::new(keys);
        self.jwks = Some(Cached {
            value: keys.clone(),
            fetched_ms: now,
        });
        if keys.is_empty() {
            // Not shared: another replica should ask for itself.
            d.log.push((
                LogLevel::Warn,
                format!("oidc-guard: the provider's JWKS ({uri}) has no usable signing key; every token is refused until it has one"),
            ));
        } else {
            self.shared_set(d, Namespace::JWKS, &uri, &body, JWKS_TTL_MS);
        }
        Ok(keys)
    }

    /// Runs `verify` against the current keys; when it reports an unknown `kid` and the keys are
    /// fetched (not static), refetches them once (rate limited) and tries again.
    ///
    /// # Errors
    /// [`VerifyError::Provider`] when no keys can be had, [`VerifyError::Token`] when the token is
    /// refused.
    pub fn verify<T>(
        &mut self,
        d: &mut Deps<'_>,
        verify: impl Fn(&Jwks) -> Result<T, JwtError>,
    ) -> Result<T, VerifyError> {
        let keys = self.keys(d).map_err(VerifyError::Provider)?;
        match verify(&keys) {
            Err(JwtError::UnknownKid) if self.static_jwks.is_none() => {
                let now = d.clock.now_ms();
                let allowed = self
                    .last_kid_refetch_ms
                    .map(|t| now.saturating_sub(t) >= UNKNOWN_KID_REFETCH_MS)
                    .unwrap_or(true);
                if !allowed {
                    return Err(VerifyError::Token(JwtError::UnknownKid));
                }
                self.last_kid_refetch_ms = Some(now);
                // Straight to the provider: the shared copy is what this instance already has or
                // older.
                let fresh = self.load_jwks(d, true).map_err(VerifyError::Provider)?;
                verify(&fresh).map_err(VerifyError::Token)
            }
            other => other.map_err(VerifyError::Token),
        }
    }
}

#[cfg(test)]
mod tests;
