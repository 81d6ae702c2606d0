//! Configuration: the middleware's JSON (from Traefik's `get_config`) plus the `REDIS_*`
//! environment → one validated [`Config`].
//!
//! - One table of keys ([`keys`]) drives the parser, the unknown-key check ("did you mean…") and
//!   the generated reference `docs/config-reference.md`.
//! - Values are accepted typed or stringified, because Traefik's file provider and labels turn
//!   scalars into strings ([`value`]).
//! - YAML wins over the environment; an environment variable only fills a key the YAML leaves
//!   unset. Environment reads and file reads are injected, so tests need neither.
//! - Everything that can be wrong is collected: [`ConfigError`] lists every problem, each naming
//!   its key, and never echoes a secret.
//! - The result is typed and grouped (parse, don't validate): browser login exists only with its
//!   client, session key and endpoints; a Redis L2 only with an address or sentinels.
//!
//! Regenerate the reference after changing the table:
//! `UPDATE_CONFIG_REFERENCE=1 cargo test -p oidc-guard config_reference`.

mod build;
pub(crate) mod keys;
mod raw;
pub mod reference;
pub(crate) mod value;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

pub use crate::http::LogLevel;
pub use value::{HostPort, IpNet, PathOrUrl};

/// What the host offers, which changes defaults (an L2 exists whenever the host bridge does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Platform {
    /// The host key/value bridge is present (the bridge artifact).
    pub bridge_present: bool,
}

/// One problem with the configuration, naming its key (or environment variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key as the user wrote it (`redis.db`, `REDIS_DB`, `(configuration)`).
    pub key: String,
    /// What was expected and what was found (never a secret's value).
    pub message: String,
}

impl KeyError {
    pub(crate) fn new(key: &str, message: impl Into<String>) -> Self {
        KeyError {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The configuration was refused; holds every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    errors: Vec<KeyError>,
}

impl ConfigError {
    pub(crate) fn new(errors: Vec<KeyError>) -> Self {
        ConfigError { errors }
    }

    /// Every problem found, in the order found.
    pub fn errors(&self) -> &[KeyError] {
        &self.errors
    }

    /// Whether one of the errors names `key` (as written by the user, or an env var name).
    pub fn mentions(&self, key: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.key == key || e.message.contains(key))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A secret string (client secret, session key, password, private key). `Debug` and `Display`
/// print `<redacted>`; [`Secret::expose`] is the only way to the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(s: String) -> Self {
        Secret(s)
    }

    /// The secret value, for the code that uses it (KDF, AUTH, token request).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never true for a parsed secret).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The session keys, newest first: the first seals, every one opens (rotation). Never empty, each
/// at least [`SessionKeys::MIN_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    sealing: Secret,
    older: Vec<Secret>,
}

impl SessionKeys {
    /// Minimum key length in bytes (of UTF-8).
    pub const MIN_LEN: usize = 32;

    /// The key that seals new sessions.
    pub fn sealing(&self) -> &Secret {
        &self.sealing
    }

    /// Every key that may open a session, the sealing key first.
    pub fn all(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.sealing).chain(self.older.iter())
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The OpenID provider and how its keys are found.
    pub provider: Provider,
    /// Browser login (code flow and sessions); `None` for a bearer-only guard.
    pub browser: Option<Browser>,
    /// API access with bearer JWTs; `None` when off.
    pub bearer: Option<Bearer>,
    /// Who is allowed once authenticated.
    pub policy: Policy,
    /// Identity headers sent to the backend.
    pub upstream: Upstream,
    /// Path prefixes that bypass authentication (matched on normalised paths).
    pub excluded_urls: Vec<String>,
    /// Peers whose `X-Forwarded-*` headers are honoured.
    pub trusted_proxies: Vec<IpNet>,
    /// `forceHTTPS`: the request's scheme is taken as `https` (redirect URIs, cookies, DPoP
    /// `htu`), with browser login or without.
    pub force_https: bool,
    /// Let CORS preflights through unauthenticated.
    pub skip_auth_preflight: bool,
    /// Single-use checks.
    pub replay: Replay,
    /// Back-channel logout receiver; `None` when off.
    pub backchannel_logout: Option<BackchannelLogout>,
    /// Health and metrics paths.
    pub health: Health,
    /// The two-tier store.
    pub store: Store,
    /// Redis/Valkey as the L2 (Traefik artifact); `None` when not used.
    pub redis: Option<Redis>,
    /// Optional name mixed into the identity.
    pub instance_name: Option<String>,
    /// Lowest level logged.
    pub log_level: LogLevel,
    /// Things the operator should know (each names its key); the caller logs them at start-up.
    pub warnings: Vec<String>,
    identity: String,
}

impl Config {
    /// Parses and validates the middleware configuration.
    ///
    /// `json` is what Traefik's `get_config` returned; `env` looks up an environment variable
    /// (only those listed in the plugin's `settings.envs` exist in the guest); `read_file` reads a
    /// file through a `settings.mounts` directory; `platform` says whether the host bridge exists.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem found, each naming its key.
    pub fn parse(
        json: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
        read_file: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
        platform: Platform,
    ) -> Result<Config, ConfigError> {
        build::parse(json, env, read_file, platform)
    }

    /// The middleware's identity: a short hex SHA-256 of the issuer (or provider URL), the client
    /// ID (or bearer audiences), the session cookie name and `instanceName`. Derived, not random,
    /// so replicas agree and rolling deploys keep their store keys and sessions.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// The OpenID provider.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Provider {
    /// `providerURL` without a trailing `/`; discovery reads `<url>/.well-known/openid-configuration`.
    /// `None` for static setups.
    pub url: Option<String>,
    /// Expected `iss`, exactly as configured; `None` means "the discovery document's issuer".
    pub issuer: Option<String>,
    /// Static JWKS JSON (from `jwks` or `jwksFile`): no key discovery.
    pub jwks: Option<String>,
    /// JWKS location without discovery.
    pub jwks_uri: Option<String>,
    /// `authorization_endpoint` override.
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint` override.
    pub token_endpoint: Option<String>,
    /// `end_session_endpoint` override.
    pub end_session_endpoint: Option<String>,
    /// `revocation_endpoint` override.
    pub revocation_endpoint: Option<String>,
    /// Extra PEM trust anchors for the provider's TLS (`caFile` + `caCertPEM`); empty for none.
    pub ca_pem: Vec<u8>,
    /// Skip certificate verification for the provider.
    pub insecure_skip_verify: bool,
    /// Some provider URL is plain `http://` (a warning was recorded).
    pub insecure_http: bool,
}

/// Browser login: the client, the login flow and the session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Browser {
    /// The OAuth client.
    pub client: Client,
    /// The login and logout flow.
    pub login: Login,
    /// The session cookie.
    pub session: Session,
}

/// The OAuth 2.0 client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// `client_secret`; `None` only with [`TokenEndpointAuth::None`].
    pub secret: Option<Secret>,
    /// How the client authenticates at the token endpoint.
    pub auth_method: TokenEndpointAuth,
}

/// Client authentication at the token endpoint (OIDC Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenEndpointAuth {
    /// HTTP Basic with the client ID and secret (the default).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A public client: `client_id` only (PKCE required).
    None,
}

/// The login and logout flow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Login {
    /// Redirect URI (path: scheme and host come from the request).
    pub callback: PathOrUrl,
    /// Path (or URL) that ends the session.
    pub logout: PathOrUrl,
    /// `post_logout_redirect_uri` sent at logout.
    pub post_logout_redirect_uri: Option<PathOrUrl>,
    /// Scopes requested, `openid` first.
    pub scopes: Vec<String>,
    /// PKCE S256.
    pub pkce: bool,
}

/// `Secure` attribute of the cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSecure {
    /// When the effective scheme is https (or `forceHTTPS`).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// What a cookie-name prefix makes browsers require of a cookie (RFC 6265bis §4.1.3; browsers
/// match the prefix case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePrefix {
    /// No prefix rule.
    None,
    /// `__Secure-`: the cookie must be `Secure`.
    Secure,
    /// `__Host-`: `Secure`, no `Domain`, `Path=/`. Such a cookie can be set only by this very
    /// host, so a sibling subdomain cannot plant one (cookie tossing).
    Host,
}

impl NamePrefix {
    /// The `__Host-` prefix.
    pub const HOST: &'static str = "__Host-";
    /// The `__Secure-` prefix.
    pub const SECURE: &'static str = "__Secure-";

    /// The rule `cookie_prefix` (the start of every cookie name) falls under.
    pub fn of(cookie_prefix: &str) -> NamePrefix {
        let starts = |p: &str| {
            cookie_prefix
                .get(..p.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(p))
        };
        if starts(Self::HOST) {
            NamePrefix::Host
        } else if starts(Self::SECURE) {
            NamePrefix::Secure
        } else {
            NamePrefix::None
        }
    }
}

/// `SameSite` attribute of the cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `Lax` (the default: the callback is a top-level GET).
    Lax,
    /// `Strict`.
    Strict,
    /// `None` (requires `Secure`).
    None,
}

/// Where the session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStorage {
    /// Sealed in (chunked) cookies.
    Cookie,
    /// A ticket in the cookie, the sealed session in the shared store.
    Server,
}

/// The session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// Sealing and opening keys.
    pub keys: SessionKeys,
    /// Prefix of every cookie name.
    pub cookie_prefix: String,
    /// The browser rule that prefix falls under (`__Host-`, `__Secure-`).
    pub name_prefix: NamePrefix,
    /// The session cookie's name (`<prefix>session`).
    pub cookie_name: String,
    /// `Domain` attribute.
    pub cookie_domain: Option<String>,
    /// `Path` attribute.
    pub cookie_path: String,
    /// `Secure` attribute.
    pub cookie_secure: CookieSecure,
    /// `SameSite` attribute.
    pub same_site: SameSite,
    /// Absolute session lifetime.
    pub max_age: Duration,
    /// Cookie or server-side ticket.
    pub storage: SessionStorage,
    /// How often an instance asks the store whether a session was revoked.
    pub revocation_check_interval: Duration,
    /// Refresh this long before the tokens expire.
    pub refresh_grace_period: Duration,
    /// Remove our cookies from the forwarded request.
    pub strip_auth_cookies: bool,
}

/// Who is allowed once authenticated. All lists empty = every authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Policy {
    /// Allowed values of [`Policy::user_claim`].
    pub allowed_users: Vec<String>,
    /// Allowed e-mail domains (lower case, no `@`).
    pub allowed_user_domains: Vec<String>,
    /// Roles or groups, at least one required.
    pub allowed_roles_and_groups: Vec<String>,
    /// Claim that identifies the user.
    pub user_claim: String,
    /// Claim with roles.
    pub role_claim: String,
    /// Claim with groups.
    pub group_claim: String,
}

/// A header sent to the backend with a claim's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// Header name.
    pub header: String,
    /// Claim name.
    pub claim: String,
}

/// Identity headers sent to the backend (inbound copies are always removed first).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upstream {
    /// `X-Forwarded-User`, set to [`Policy::user_claim`].
    pub user_header: String,
    /// Configured claim headers.
    pub claim_headers: Vec<ClaimHeader>,
    /// The header carrying the access token to the backend (`forwardAccessToken`): a browser
    /// session's, or a bearer request's own token. `Authorization` gets `Bearer <token>` (session
    /// requests only), any other the token alone.
    pub access_token_header: Option<String>,
}

impl Upstream {
    /// The `forwardAccessToken` header when it is not `Authorization`: a header of the plugin's
    /// own, which every authenticated request fills (a bearer request with its own token) and
    /// which is stripped from clients like the identity headers. (`Authorization` carries the
    /// client's own token on bearer requests, and is left as it came there.)
    pub fn own_token_header(&self) -> Option<&str> {
        self.access_token_header
            .as_deref()
            .filter(|h| !h.eq_ignore_ascii_case("authorization"))
    }
}

/// Bearer JWT access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bearer {
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// Each token's `jti` usable once cluster-wide.
    pub one_time_tokens: bool,
    /// Require `typ: at+jwt`.
    pub require_access_token_type: bool,
    /// Larger tokens are refused before parsing.
    pub max_token_size: usize,
    /// DPoP.
    pub dpop: Dpop,
}

/// DPoP (RFC 9449).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dpop {
    /// Accept DPoP-bound tokens.
    pub enabled: bool,
    /// Refuse tokens that are not DPoP-bound.
    pub required: bool,
    /// Accepted distance between a proof's `iat` and now.
    pub iat_window: Duration,
}

/// Single-use checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replay {
    /// Check single-use artifacts.
    pub enabled: bool,
    /// Marker lifetime for artifacts without `exp`.
    pub ttl: Duration,
    /// Accept per-instance detection when no shared L2 is configured or reachable.
    pub insecure_allow_per_instance: bool,
}

/// Back-channel logout receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackchannelLogout {
    /// Path the provider posts to.
    pub path: String,
}

/// Health and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Health {
    /// JSON health path.
    pub path: Option<String>,
    /// Prometheus text path.
    pub metrics_path: Option<String>,
    /// Allowed client networks (empty: everyone).
    pub allowed_sources: Vec<IpNet>,
}

/// Store mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// L1 only.
    Memory,
    /// Every operation to L2.
    Redis,
    /// L1 in front of L2.
    Hybrid,
}

/// What backs the L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Kind {
    /// No L2.
    None,
    /// Redis/Valkey spoken in-guest ([`Config::redis`] is `Some`).
    Redis,
    /// The host key/value bridge.
    Bridge,
}

/// What cached and session data do while the breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Serve them from L1.
    L1,
    /// Refuse.
    Deny,
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that open it.
    pub threshold: u32,
    /// Time open before a probe.
    pub timeout: Duration,
}

/// The two-tier store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Store {
    /// Mode.
    pub mode: StoreMode,
    /// What the L2 is (never `None` in `redis`/`hybrid` mode).
    pub l2: L2Kind,
    /// L1 entry bound.
    pub l1_max_entries: usize,
    /// L1 byte bound.
    pub l1_max_bytes: usize,
    /// Behaviour while the breaker is open.
    pub fallback: Fallback,
    /// The breaker; `None` when disabled.
    pub breaker: Option<Breaker>,
    /// Prefix of every L2 key (followed by the identity).
    pub key_prefix: String,
}

impl Store {
    /// Whether single-use markers are shared by every instance (an L2 that the mode uses).
    pub fn shared(&self) -> bool {
        self.mode != StoreMode::Memory && self.l2 != L2Kind::None
    }
}

/// How Redis is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server.
    Standalone(HostPort),
    /// Sentinels that name the master.
    Sentinel {
        /// Sentinel addresses.
        hosts: Vec<HostPort>,
        /// Master name.
        master: String,
        /// Sentinel ACL user.
        username: Option<String>,
        /// Sentinel password.
        password: Option<Secret>,
    },
    /// Redis Cluster.
    Cluster {
        /// Seed nodes.
        seeds: Vec<HostPort>,
        /// MOVED/ASK redirects followed per operation.
        max_redirects: u32,
    },
}

/// TLS to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisTls {
    /// PEM trust anchors (`None`: built-in roots).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain.
    pub client_cert_pem: Option<Vec<u8>>,
    /// PEM client private key.
    pub client_key_pem: Option<Secret>,
    /// Skip verification.
    pub insecure_skip_verify: bool,
    /// SNI and verified name (`None`: the host of the address).
    pub server_name: Option<String>,
}

/// Redis/Valkey as the L2.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Redis {
    /// Standalone, Sentinel or Cluster.
    pub topology: Topology,
    /// ACL user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// Database number.
    pub db: u32,
    /// Retries per operation within a request.
    pub max_retries: u32,
    /// Connect (TCP + TLS) timeout.
    pub dial_timeout: Duration,
    /// Reply timeout.
    pub read_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// TLS; `None` for plain TCP.
    pub tls: Option<RedisTls>,
}
