//! The single table of configuration keys.
//!
//! The parser (which keys exist, their aliases and environment variables, their defaults), the
//! unknown-key check with its "did you mean" suggestion, and the generated reference
//! (`docs/config-reference.md`) all read [`KEYS`], so the documentation cannot drift from the code.

/// What kind of value a key takes. Every kind accepts Traefik's stringified scalars as well as
/// native JSON types (see the module docs of [`super::value`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Any string (numbers and booleans are taken as their text).
    Str,
    /// An absolute `http://` or `https://` URL.
    Url,
    /// A path starting with `/`, or an absolute `http(s)://` URL.
    PathOrUrl,
    /// A path starting with `/`.
    Path,
    /// `true`/`false`.
    Bool,
    /// A whole number within bounds.
    Int { min: u64, max: u64 },
    /// A duration within bounds (milliseconds).
    Duration { min_ms: u64, max_ms: u64 },
    /// A list of strings: a JSON list or a comma-separated string.
    List,
    /// A list of `host:port`: a JSON list or a comma- or space-separated string.
    HostList,
    /// A list of IP addresses or CIDR blocks.
    CidrList,
    /// One of a fixed set of words (compared case-insensitively).
    Enum(&'static [&'static str]),
    /// A map of strings to strings.
    Map,
    /// Inline JWKS JSON, as a string or as a map.
    Jwks,
    /// traefikoidc's `headers` list of `{name, value}` with `{{.Claims.x}}` values.
    Headers,
    /// A secret string.
    Secret,
    /// A secret string or a list of them (newest first).
    SecretList,
    /// The path of a file holding a secret (read at start-up through a Traefik mount).
    SecretFile,
    /// The name of an environment variable holding a secret (listed in `settings.envs`).
    SecretEnv,
    /// The path of a file read at start-up through a Traefik mount.
    File,
    /// A traefikoidc feature map, accepted only when it is disabled.
    Compat,
}

impl Kind {
    /// A short type name for the reference.
    pub(crate) fn type_name(self) -> String {
        match self {
            Kind::Str => "string".into(),
            Kind::Url => "URL".into(),
            Kind::PathOrUrl => "path or URL".into(),
            Kind::Path => "path".into(),
            Kind::Bool => "bool".into(),
            Kind::Int { min, max } => format!("integer {min}–{max}"),
            Kind::Duration { min_ms, max_ms } => {
                format!("duration {}–{}", fmt_ms(min_ms), fmt_ms(max_ms))
            }
            Kind::List => "list".into(),
            Kind::HostList => "list of host:port".into(),
            Kind::CidrList => "list of IP/CIDR".into(),
            Kind::Enum(words) => words.join(" | "),
            Kind::Map => "map".into(),
            Kind::Jwks => "JWKS (string or map)".into(),
            Kind::Headers => "list of {name, value}".into(),
            Kind::Secret => "secret".into(),
            Kind::SecretList => "secret or list of secrets".into(),
            Kind::SecretFile => "file path".into(),
            Kind::SecretEnv => "env var name".into(),
            Kind::File => "file path".into(),
            Kind::Compat => "map".into(),
        }
    }
}

/// Formats milliseconds the way the reference shows them (`500ms`, `2s`, `5m`, `1h`, `30d`).
pub(crate) fn fmt_ms(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    if ms == 0 {
        "0s".into()
    } else if ms % D == 0 {
        format!("{}d", ms / D)
    } else if ms % H == 0 {
        format!("{}h", ms / H)
    } else if ms % M == 0 {
        format!("{}m", ms / M)
    } else if ms % S == 0 {
        format!("{}s", ms / S)
    } else {
        format!("{ms}ms")
    }
}

/// A key's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Def {
    /// No default: the key is optional (or required where the reference says so).
    None,
    /// A default written in the key's own syntax and parsed by the same parser as user input.
    Value(&'static str),
    /// A default computed from other keys, described in words.
    Derived(&'static str),
}

/// Whether a key does something in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// The key applies.
    Applies,
    /// Accepted (for compatibility) but has no effect in the guest, for the reason given.
    Ignored(&'static str),
    /// Accepted only when it is off (`false`, or a map with `enabled: false`), because turning it
    /// on asks for a feature the guest does not have; refused otherwise, with the reason given.
    OnlyOff(&'static str),
}

/// How an environment variable maps onto a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvForm {
    /// The variable holds the key's value.
    Direct,
    /// The variable holds the boolean opposite of the key (`REDIS_SSL_VERIFY`).
    Inverted,
    /// A catch-all used only when no direct variable is set (`REDIS_TIMEOUT`).
    Generic,
    /// A host name, combined with `REDIS_PORT` (default 6379) into `host:port`.
    HostWithPort,
}

/// An environment variable that can fill a key the YAML leaves unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EnvVar {
    pub name: &'static str,
    pub form: EnvForm,
}

const fn env(name: &'static str) -> EnvVar {
    EnvVar {
        name,
        form: EnvForm::Direct,
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeySpec {
    /// The canonical path, dot-separated for nested maps (`redis.tls.caFile`).
    pub path: &'static str,
    pub kind: Kind,
    pub default: Def,
    /// Other spellings (full paths), mostly traefikoidc's.
    pub aliases: &'static [&'static str],
    /// Environment variables that fill the key when the YAML leaves it unset, in priority order.
    pub env: &'static [EnvVar],
    /// One line for the reference.
    pub doc: &'static str,
    pub effect: Effect,
}

const fn k(path: &'static str, kind: Kind, default: Def, doc: &'static str) -> KeySpec {
    KeySpec {
        path,
        kind,
        default,
        aliases: &[],
        env: &[],
        doc,
        effect: Effect::Applies,
    }
}

impl KeySpec {
    const fn aka(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }
    const fn env(mut self, env: &'static [EnvVar]) -> Self {
        self.env = env;
        self
    }
    const fn no_effect(mut self, why: &'static str) -> Self {
        self.effect = Effect::Ignored(why);
        self
    }
    const fn only_off(mut self, why: &'static str) -> Self {
        self.effect = Effect::OnlyOff(why);
        self
    }
}

const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

const fn dur(min_ms: u64, max_ms: u64) -> Kind {
    Kind::Duration { min_ms, max_ms }
}
const fn int(min: u64, max: u64) -> Kind {
    Kind::Int { min, max }
}

const POOL_NO_EFFECT: &str = "sockets never outlive a request in the guest (Traefik shares one \
socket table between instances, traefik#11629), so there is no pool to size or age";

/// Every key, grouped as the reference shows them. The first segment of a dotted path is its
/// section; top-level keys are grouped by the `// ---` comments' order in [`SECTIONS`].
pub(crate) static KEYS: &[KeySpec] = &[
    // --- provider
    k("providerURL", Kind::Url, Def::None,
      "Base URL of the OpenID provider; discovery reads `<providerURL>/.well-known/openid-configuration` (lazily, retried; requests get 503 until it answers). `http://` is accepted with a warning."),
    k("issuer", Kind::Url, Def::Derived("the discovery document's `issuer`"),
      "Expected `iss` of every token, compared exactly. Required without `providerURL` (static setups with `jwks`/`jwksFile`/`jwksURI`)."),
    k("jwks", Kind::Jwks, Def::None,
      "Inline JWKS (`{\"keys\": [...]}`) as a JSON string or a map; disables key discovery."),
    k("jwksFile", Kind::File, Def::None,
      "Path of a JWKS JSON file read at start-up (through a Traefik `settings.mounts` entry)."),
    k("jwksURI", Kind::Url, Def::Derived("the discovery document's `jwks_uri`"),
      "Where to fetch the JWKS without discovery."),
    k("authorizationEndpoint", Kind::Url, Def::Derived("discovery"),
      "Overrides the discovered `authorization_endpoint` (required for browser login without `providerURL`)."),
    k("tokenEndpoint", Kind::Url, Def::Derived("discovery"),
      "Overrides the discovered `token_endpoint` (required for browser login without `providerURL`)."),
    k("endSessionEndpoint", Kind::Url, Def::Derived("discovery"),
      "Overrides the discovered `end_session_endpoint` used by RP-initiated logout.")
        .aka(&["oidcEndSessionURL"]),
    k("revocationEndpoint", Kind::Url, Def::Derived("discovery"),
      "Overrides the discovered `revocation_endpoint` (RFC 7009) used at logout.")
        .aka(&["revocationURL"]),
    k("caFile", Kind::File, Def::None,
      "PEM CA bundle trusted for the provider's TLS, in addition to the built-in roots.")
        .aka(&["caCertPath"]),
    k("caCertPEM", Kind::Str, Def::None,
      "Inline PEM CA bundle for the provider's TLS (combined with `caFile`)."),
    k("insecureSkipVerify", Kind::Bool, Def::Value("false"),
      "Disables certificate verification for the provider (development only; logged as a warning)."),
    k("allowPrivateIPAddresses", Kind::Bool, Def::Value("false"), "traefikoidc's SSRF switch.")
        .no_effect("oidc-guard only contacts the configured provider URL and the endpoints its discovery document names; there is no user-supplied URL to restrict"),
    // --- client
    k("clientID", Kind::Str, Def::None,
      "OAuth 2.0 client identifier. Setting it turns on browser login (authorization code flow)."),
    k("clientSecret", Kind::Secret, Def::None,
      "Client secret; required unless `tokenEndpointAuthMethod` is `none`. Or use `clientSecretFile` / `clientSecretEnv`."),
    k("clientSecretFile", Kind::SecretFile, Def::None,
      "File holding `clientSecret` (trailing newline trimmed)."),
    k("clientSecretEnv", Kind::SecretEnv, Def::None,
      "Environment variable holding `clientSecret` (list it in `settings.envs`)."),
    k("tokenEndpointAuthMethod", Kind::Enum(&["client_secret_basic", "client_secret_post", "none"]),
      Def::Value("client_secret_basic"),
      "How the client authenticates at the token endpoint (OIDC Core §9). traefikoidc always used `client_secret_post`; `none` is a public client and needs PKCE."),
    // --- login
    k("callbackURL", Kind::PathOrUrl, Def::Value("/oauth2/callback"),
      "Redirect URI: a path (scheme and host from the request, see `forceHTTPS`/`trustedProxies`) or an absolute URL."),
    k("logoutURL", Kind::PathOrUrl, Def::Derived("`callbackURL` + `/logout` (traefikoidc's rule)"),
      "Path (or URL) that ends the session (RP-initiated logout). A request from another site gets a page to confirm with a button first (logout CSRF)."),
    k("postLogoutRedirectURI", Kind::PathOrUrl, Def::None,
      "Where the provider sends the user after logout (`post_logout_redirect_uri`)."),
    k("scopes", Kind::List, Def::Derived("`openid profile email`"),
      "Scopes requested. Added to the defaults unless `overrideScopes`; `openid` is always included."),
    k("overrideScopes", Kind::Bool, Def::Value("false"),
      "Use `scopes` as given (plus `openid`) instead of adding them to the defaults."),
    k("enablePKCE", Kind::Bool, Def::Value("true"),
      "PKCE with S256 (RFC 7636). Default on (traefikoidc's default was off)."),
    k("forceHTTPS", Kind::Bool, Def::Value("false"),
      "Take the request's scheme as `https` whatever Traefik saw (traefikoidc's default was on): redirect URIs, `Secure` cookies and the DPoP `htu` (bearer-only configurations included). Set it behind a TLS-terminating load balancer that is not a trusted proxy."),
    k("trustedProxies", Kind::CidrList, Def::None,
      "Peers (IPs/CIDRs) whose `X-Forwarded-Host` is honoured for the redirect URI; from anyone else the `Host` header is used. `X-Forwarded-Proto` is always used: Traefik overwrites it for clients outside its own `entryPoints.forwardedHeaders.trustedIPs` before the plugin runs."),
    k("skipAuthPreflight", Kind::Bool, Def::Value("false"),
      "Let CORS preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) through unauthenticated (oauth2-proxy's `skip-auth-preflight`)."),
    // --- session
    k("sessionEncryptionKey", Kind::SecretList, Def::None,
      "Session key(s), each ≥ 32 bytes of UTF-8, fed through a KDF; a list rotates keys (the first seals, all open). Required for browser login; never defaulted. Or `sessionEncryptionKeyFile` (one key per line) / `sessionEncryptionKeyEnv`."),
    k("sessionEncryptionKeyFile", Kind::SecretFile, Def::None,
      "File holding the session key(s), one per line, newest first."),
    k("sessionEncryptionKeyEnv", Kind::SecretEnv, Def::None,
      "Environment variable holding one session key (list it in `settings.envs`)."),
    k("cookiePrefix", Kind::Str, Def::Value("_oidc_guard_"),
      "Prefix of the cookie names; the session cookie is `<prefix>session` (chunks `<prefix>session_1`…). A prefix starting `__Host-` (recommended on https) gives cookies no other host can set — no cookie tossing from a sibling subdomain — and needs `cookieDomain` unset, `cookiePath` `/` and `cookieSecure` not `false`; `__Secure-` needs `Secure`. Either way `Secure` is always set."),
    k("cookieDomain", Kind::Str, Def::None, "`Domain` attribute of the cookies (host-only when unset)."),
    k("cookiePath", Kind::Path, Def::Value("/"), "`Path` attribute of the cookies."),
    k("cookieSecure", Kind::Enum(&["auto", "true", "false"]), Def::Value("auto"),
      "`Secure` attribute: `auto` sets it when the effective scheme is https (or `forceHTTPS`)."),
    k("cookieSameSite", Kind::Enum(&["lax", "strict", "none"]), Def::Value("lax"),
      "`SameSite` attribute; `none` requires `Secure`."),
    k("sessionMaxAge", dur(MIN, 400 * DAY), Def::Value("24h"),
      "Absolute lifetime of a session (traefikoidc's default, 86400 s)."),
    k("sessionStorage", Kind::Enum(&["cookie", "server"]), Def::Value("cookie"),
      "`cookie`: the sealed session in (chunked) cookies; `server`: the cookie holds a ticket, the sealed session lives in the shared store (needs an L2)."),
    k("revocationCheckInterval", dur(0, HOUR), Def::Value("5s"),
      "How often an instance asks the shared store whether a session was revoked (logout on another replica); 0 = every request."),
    k("refreshGracePeriod", dur(0, HOUR), Def::Value("60s"),
      "Refresh the tokens this long before they expire; tokens that live no longer than this are refreshed half-way through their lifetime (not on every request).")
        .aka(&["refreshGracePeriodSeconds"]),
    k("stripAuthCookies", Kind::Bool, Def::Value("true"),
      "Remove oidc-guard's own cookies from every request forwarded to the backend (authenticated, excluded path, CORS preflight)."),
    // --- policy
    k("allowedUsers", Kind::List, Def::None,
      "Only these users (values of `userIdentifierClaim`, or a verified `email`) are allowed. Given but empty is an error, never \"allow everyone\"."),
    k("allowedUserDomains", Kind::List, Def::None,
      "Only users whose `email` is in one of these domains are allowed (OR with `allowedUsers`). The address counts only with `email_verified: true` in the token; a missing `email_verified` is not verified."),
    k("allowedRolesAndGroups", Kind::List, Def::None,
      "The user needs at least one of these values in `roleClaimName` or `groupClaimName`."),
    k("userIdentifierClaim", Kind::Str, Def::Value("sub"),
      "Claim that identifies the user (`X-Forwarded-User`, `allowedUsers`). traefikoidc used `email`: set `email` to keep its behaviour; then only a verified address (`email_verified: true`) identifies a user, and a token without one is refused."),
    k("roleClaimName", Kind::Str, Def::Value("roles"), "Claim holding the user's roles."),
    k("groupClaimName", Kind::Str, Def::Value("groups"), "Claim holding the user's groups."),
    // --- upstream
    k("claimHeaders", Kind::Map, Def::None,
      "Extra headers for the backend, `Header-Name: claim`. Copies arriving from the client are removed."),
    k("headers", Kind::Headers, Def::None,
      "traefikoidc's form of `claimHeaders`: `[{name: X-Email, value: \"{{.Claims.email}}\"}]`; only the exact forms `{{.Claims.name}}`, `{{.AccessToken}}` and (in `Authorization`) `Bearer {{.AccessToken}}` are accepted; the latter two set `forwardAccessToken`."),
    k("forwardAccessToken", Kind::Str, Def::None,
      "Header that carries the access token to the backend: a browser session's, or the token itself on a request authenticated by a bearer or DPoP token. `Authorization` gets `Bearer <token>` on session requests (bearer requests keep the `Authorization` they came with); any other name (e.g. `X-Forwarded-Access-Token`) gets the token alone on both, and copies from the client are removed. The session then keeps the access token (larger cookies) and refreshes it before it expires. traefikoidc's `headers` entries `{{.AccessToken}}` and `Authorization: Bearer {{.AccessToken}}` set it too."),
    k("minimalHeaders", Kind::Bool, Def::Value("false"), "traefikoidc's switch to forward fewer headers.")
        .no_effect("oidc-guard always forwards only `X-Forwarded-User` and the configured claim headers"),
    k("excludedURLs", Kind::List, Def::None,
      "Path prefixes that bypass authentication, matched on the normalised path (encoded slashes never match)."),
    // --- bearer
    k("bearer.enabled", Kind::Bool, Def::Value("false"),
      "Accept `Authorization: Bearer` JWT access tokens (RFC 9068) for APIs."),
    k("bearer.audience", Kind::List, Def::Derived("`clientID`"),
      "Accepted `aud` value(s); required when there is no `clientID`. A token whose `aud` holds the `clientID` must be typed `at+jwt` or carry `client_id`, `scope` or `scp`: otherwise it is the login client's ID token (one from a refresh has no `nonce`), refused.")
        .aka(&["audience"]),
    k("bearer.oneTimeTokens", Kind::Bool, Def::Value("false"),
      "Each token's `jti` may be used once in the whole cluster (needs a shared L2)."),
    k("bearer.requireAccessTokenType", Kind::Bool, Def::Value("false"),
      "Require the JWT header `typ: at+jwt` (RFC 9068 §4). Off by default because many providers still issue `typ: JWT`."),
    k("bearer.maxTokenSize", int(1024, 1024 * 1024), Def::Value("16384"),
      "Tokens larger than this (bytes) are refused before any parsing."),
    k("bearer.dpop.enabled", Kind::Bool, Def::Value("false"),
      "Accept DPoP-bound tokens with their proofs (RFC 9449); each proof's `jti` once cluster-wide."),
    k("bearer.dpop.required", Kind::Bool, Def::Value("false"),
      "Refuse tokens that are not DPoP-bound (implies `enabled`)."),
    k("bearer.dpop.iatWindow", dur(SEC, 10 * MIN), Def::Value("60s"),
      "How far a proof's `iat` may be from now."),
    k("strictAudienceValidation", Kind::Bool, Def::Value("false"), "traefikoidc's audience switch.")
        .no_effect("the audience is always validated strictly"),
    k("allowOpaqueTokens", Kind::Bool, Def::Value("false"), "traefikoidc's opaque-token support.")
        .only_off("oidc-guard accepts only JWT access tokens; it has no token introspection"),
    k("requireTokenIntrospection", Kind::Bool, Def::Value("false"), "traefikoidc's introspection switch.")
        .no_effect("opaque tokens are never accepted, so there is nothing to introspect"),
    // --- replay
    k("replay.enabled", Kind::Bool, Def::Value("true"),
      "Single-use checks for state, the ID token `jti`, logout tokens, DPoP proofs and one-time tokens."),
    k("disableReplayDetection", Kind::Bool, Def::Value("false"),
      "traefikoidc's inverse of `replay.enabled`."),
    k("replay.ttl", dur(SEC, 30 * DAY), Def::Value("1h"),
      "How long a single-use marker is kept when the artifact has no `exp` (others are kept until their `exp`)."),
    k("replay.insecureAllowPerInstance", Kind::Bool, Def::Value("false"),
      "Accept per-instance replay detection when no shared L2 exists or it is unreachable; replays on another instance then pass."),
    // --- backchannelLogout
    k("backchannelLogout.enabled", Kind::Bool, Def::Derived("true when a path is given"),
      "Receive OpenID Connect Back-Channel Logout 1.0 `logout_token`s.")
        .aka(&["enableBackchannelLogout"]),
    k("backchannelLogout.path", Kind::Path, Def::Value("/oauth2/backchannel-logout"),
      "Path the provider posts logout tokens to.")
        .aka(&["backchannelLogoutURL"]),
    k("enableFrontchannelLogout", Kind::Bool, Def::Value("false"), "traefikoidc's front-channel logout.")
        .only_off("front-channel logout is not implemented; use back-channel logout"),
    k("frontchannelLogoutURL", Kind::Str, Def::None, "traefikoidc's front-channel logout path.")
        .no_effect("front-channel logout is not implemented"),
    // --- health
    k("health.path", Kind::Path, Def::None,
      "Path answering the store's health as JSON (off when unset). Figures are per guest instance."),
    k("health.metricsPath", Kind::Path, Def::None,
      "Path answering Prometheus text metrics (off when unset). Figures are per guest instance."),
    k("health.allowedSources", Kind::CidrList, Def::None,
      "Client addresses allowed on the health and metrics paths (everyone when unset)."),
    // --- store
    k("store.mode", Kind::Enum(&["memory", "redis", "hybrid"]),
      Def::Derived("`hybrid` when an L2 exists (Redis enabled, or the host bridge), else `memory`"),
      "`memory`: L1 only; `redis`: every operation to L2; `hybrid`: L1 in front of L2.")
        .aka(&["redis.cacheMode"])
        .env(&[env("REDIS_CACHE_MODE")]),
    k("store.l1.maxEntries", int(16, 1_000_000), Def::Value("4096"),
      "Bound on L1 entries per instance (LRU among live entries).")
        .aka(&["redis.hybridL1Size"])
        .env(&[env("REDIS_HYBRID_L1_SIZE")]),
    k("store.l1.maxBytes", int(64 * 1024, 64 * 1024 * 1024), Def::Value("2097152"),
      "Bound on L1 bytes per instance (2 MiB fits the 8 MiB per-instance budget)."),
    k("redis.hybridL1MemoryMB", int(1, 64), Def::None,
      "traefikoidc's L1 bound in MiB; sets `store.l1.maxBytes` when that is unset.")
        .env(&[env("REDIS_HYBRID_L1_MEMORY_MB")]),
    k("store.fallback", Kind::Enum(&["l1", "deny"]), Def::Value("l1"),
      "While the breaker is open: `l1` serves cached and session data from L1; `deny` refuses. Single-use checks always refuse unless `replay.insecureAllowPerInstance`.")
        .aka(&["redis.fallback"]),
    // --- redis
    k("redis.enabled", Kind::Bool, Def::Derived("true when `address` or `sentinel.hosts` is set"),
      "Use Redis/Valkey as the L2.")
        .env(&[env("REDIS_ENABLED"), env("USE_REDIS")]),
    k("redis.address", Kind::HostList, Def::None,
      "`host:port` (port 6379 when omitted); several comma-separated seeds with `clusterMode`.")
        .env(&[env("REDIS_ADDRESS"), EnvVar { name: "REDIS_HOST", form: EnvForm::HostWithPort }]),
    k("redis.username", Kind::Str, Def::None, "ACL user name (Redis 6+).")
        .env(&[env("REDIS_USERNAME")]),
    k("redis.password", Kind::Secret, Def::None,
      "Password (`AUTH`). Or `redis.passwordFile` / `redis.passwordEnv`.")
        .env(&[env("REDIS_PASSWORD")]),
    k("redis.passwordFile", Kind::SecretFile, Def::None, "File holding `redis.password`."),
    k("redis.passwordEnv", Kind::SecretEnv, Def::None,
      "Environment variable holding `redis.password`."),
    k("redis.db", int(0, 65535), Def::Value("0"), "Database number (`SELECT`); must be 0 with `clusterMode`.")
        .env(&[env("REDIS_DB"), env("REDIS_DATABASE")]),
    k("redis.keyPrefix", Kind::Str, Def::Value("oidc-guard:"),
      "Prefix of every key (followed by the middleware's identity).")
        .env(&[env("REDIS_KEY_PREFIX")]),
    k("redis.maxRetries", int(0, 10), Def::Value("1"),
      "Retries of a failed store operation within the same request.")
        .env(&[env("REDIS_MAX_RETRIES")]),
    k("redis.poolSize", int(0, 10_000), Def::Value("10"), "Connection pool size.")
        .env(&[env("REDIS_POOL_SIZE"), env("REDIS_KEEPALIVE_POOL")])
        .no_effect(POOL_NO_EFFECT),
    k("redis.minIdleConns", int(0, 10_000), Def::Value("0"), "Idle connections kept open.")
        .env(&[env("REDIS_MIN_IDLE_CONNS")])
        .no_effect(POOL_NO_EFFECT),
    k("redis.maxConnAge", dur(0, 30 * DAY), Def::Value("0"), "Age after which a pooled connection is closed.")
        .env(&[env("REDIS_MAX_CONN_AGE")])
        .no_effect(POOL_NO_EFFECT),
    k("redis.poolTimeout", dur(0, HOUR), Def::Value("0"), "Wait for a free pooled connection.")
        .env(&[env("REDIS_POOL_TIMEOUT")])
        .no_effect(POOL_NO_EFFECT),
    k("redis.idleTimeout", dur(0, 30 * DAY), Def::Value("0"), "Close pooled connections idle this long (BunkerWeb's keepalive idle).")
        .env(&[env("REDIS_IDLE_TIMEOUT"), env("REDIS_KEEPALIVE_IDLE")])
        .no_effect(POOL_NO_EFFECT),
    k("redis.dialTimeout", dur(10, MIN), Def::Value("2s"),
      "Time to connect (TCP and TLS handshake).")
        .aka(&["redis.connectTimeout"])
        .env(&[env("REDIS_DIAL_TIMEOUT"), env("REDIS_CONNECT_TIMEOUT"),
               EnvVar { name: "REDIS_TIMEOUT", form: EnvForm::Generic }]),
    k("redis.readTimeout", dur(10, MIN), Def::Value("1s"),
      "Time a reply may take: each read waits at most this long, and a reply not complete once it has passed is abandoned (a server trickling bytes holds a request at most about twice this).")
        .env(&[env("REDIS_READ_TIMEOUT"), EnvVar { name: "REDIS_TIMEOUT", form: EnvForm::Generic }]),
    k("redis.writeTimeout", dur(10, MIN), Def::Value("1s"), "Time a write may take.")
        .env(&[env("REDIS_WRITE_TIMEOUT"), EnvVar { name: "REDIS_TIMEOUT", form: EnvForm::Generic }]),
    k("redis.enableCircuitBreaker", Kind::Bool, Def::Value("true"),
      "Stop asking the L2 after `circuitBreakerThreshold` consecutive failures, for `circuitBreakerTimeout` (per instance)."),
    k("redis.circuitBreakerThreshold", int(1, 1000), Def::Value("5"),
      "Consecutive failures that open the breaker.")
        .env(&[env("REDIS_CIRCUIT_BREAKER_THRESHOLD")]),
    k("redis.circuitBreakerTimeout", dur(100, HOUR), Def::Value("30s"),
      "Time the breaker stays open before one probe (HALF-OPEN).")
        .env(&[env("REDIS_CIRCUIT_BREAKER_TIMEOUT")]),
    k("redis.enableHealthCheck", Kind::Bool, Def::Value("false"), "traefikoidc's background health check.")
        .no_effect("the guest runs no background tasks; the breaker and `health.path` report L2 health"),
    k("redis.healthCheckInterval", dur(0, HOUR), Def::Value("30s"), "traefikoidc's health check interval.")
        .no_effect("the guest runs no background tasks"),
    k("redis.clusterMode", Kind::Bool, Def::Value("false"),
      "Redis Cluster: `address` lists seed nodes; slots are followed through MOVED/ASK.")
        .env(&[env("REDIS_CLUSTER_MODE")]),
    k("redis.maxRedirects", int(1, 16), Def::Value("3"), "MOVED/ASK redirects followed per operation.")
        .env(&[env("REDIS_MAX_REDIRECTS")]),
    k("redis.tls.enabled", Kind::Bool, Def::Derived("true when a TLS file or `serverName` is set"),
      "TLS to Redis (rustls; verification on).")
        .aka(&["redis.enableTLS"])
        .env(&[env("REDIS_TLS_ENABLED"), env("REDIS_ENABLE_TLS"), env("REDIS_SSL")]),
    k("redis.tls.insecureSkipVerify", Kind::Bool, Def::Value("false"),
      "Skip certificate verification (logged as a warning).")
        .aka(&["redis.tlsSkipVerify"])
        .env(&[env("REDIS_TLS_INSECURE_SKIP_VERIFY"), env("REDIS_TLS_SKIP_VERIFY"),
               EnvVar { name: "REDIS_SSL_VERIFY", form: EnvForm::Inverted }]),
    k("redis.tls.caFile", Kind::File, Def::None, "PEM CA bundle for the server certificate.")
        .env(&[env("REDIS_TLS_CA_FILE")]),
    k("redis.tls.certFile", Kind::File, Def::None, "PEM client certificate (with `keyFile`).")
        .env(&[env("REDIS_TLS_CERT_FILE")]),
    k("redis.tls.keyFile", Kind::File, Def::None, "PEM client private key (with `certFile`).")
        .env(&[env("REDIS_TLS_KEY_FILE")]),
    k("redis.tls.serverName", Kind::Str, Def::Derived("the host of the address"),
      "Name checked in the server certificate (SNI).")
        .env(&[env("REDIS_TLS_SERVER_NAME")]),
    k("redis.sentinel.hosts", Kind::HostList, Def::None,
      "Sentinel `host:port` list (port 26379 when omitted); turns on Sentinel discovery of the master.")
        .env(&[env("REDIS_SENTINEL_HOSTS")]),
    k("redis.sentinel.master", Kind::Str, Def::Value("mymaster"), "Master name known to the sentinels.")
        .env(&[env("REDIS_SENTINEL_MASTER")]),
    k("redis.sentinel.username", Kind::Str, Def::None, "ACL user for the sentinels.")
        .env(&[env("REDIS_SENTINEL_USERNAME")]),
    k("redis.sentinel.password", Kind::Secret, Def::None,
      "Password for the sentinels. Or `redis.sentinel.passwordFile` / `passwordEnv`.")
        .env(&[env("REDIS_SENTINEL_PASSWORD")]),
    k("redis.sentinel.passwordFile", Kind::SecretFile, Def::None,
      "File holding `redis.sentinel.password`."),
    k("redis.sentinel.passwordEnv", Kind::SecretEnv, Def::None,
      "Environment variable holding `redis.sentinel.password`."),
    // --- compat / misc
    k("rateLimit", int(0, 1_000_000), Def::Value("100"), "traefikoidc's request rate limit.")
        .no_effect("instances are pooled and share no memory, so a per-instance limit would not limit anything; use Traefik's `rateLimit` middleware"),
    k("securityHeaders", Kind::Compat, Def::None, "traefikoidc's response security headers.")
        .only_off("oidc-guard does not add response headers; use Traefik's `headers` middleware (only `enabled: false` is accepted)"),
    k("dynamicClientRegistration", Kind::Compat, Def::None, "traefikoidc's RFC 7591 client registration.")
        .only_off("dynamic client registration is not implemented; register the client and set `clientID` (only `enabled: false` is accepted)"),
    k("instanceName", Kind::Str, Def::None,
      "Optional name mixed into the middleware's identity (store keys, cookie binding) to separate two middlewares that would otherwise share it. Two middlewares on one host with the same cookie name but another access policy or other `claimHeaders` each refuse the other's session (its claims were chosen for the other) and send the browser to log in again: give them different `instanceName`s and `cookiePrefix`es."),
    k("logLevel", Kind::Enum(&["debug", "info", "warn", "error"]), Def::Value("info"),
      "Lowest level logged through Traefik's logger (`warning` is accepted for `warn`)."),
];

/// Sections in the reference, in order, with the top-level keys that belong to each.
pub(crate) static SECTIONS: &[(&str, &[&str])] = &[
    (
        "Provider",
        &[
            "providerURL",
            "issuer",
            "jwks",
            "jwksFile",
            "jwksURI",
            "authorizationEndpoint",
            "tokenEndpoint",
            "endSessionEndpoint",
            "revocationEndpoint",
            "caFile",
            "caCertPEM",
            "insecureSkipVerify",
            "allowPrivateIPAddresses",
        ],
    ),
    (
        "Client",
        &[
            "clientID",
            "clientSecret",
            "clientSecretFile",
            "clientSecretEnv",
            "tokenEndpointAuthMethod",
        ],
    ),
    (
        "Login",
        &[
            "callbackURL",
            "logoutURL",
            "postLogoutRedirectURI",
            "scopes",
            "overrideScopes",
            "enablePKCE",
            "forceHTTPS",
            "trustedProxies",
            "skipAuthPreflight",
        ],
    ),
    (
        "Session",
        &[
            "sessionEncryptionKey",
            "sessionEncryptionKeyFile",
            "sessionEncryptionKeyEnv",
            "cookiePrefix",
            "cookieDomain",
            "cookiePath",
            "cookieSecure",
            "cookieSameSite",
            "sessionMaxAge",
            "sessionStorage",
            "revocationCheckInterval",
            "refreshGracePeriod",
            "stripAuthCookies",
        ],
    ),
    (
        "Authorization policy",
        &[
            "allowedUsers",
            "allowedUserDomains",
            "allowedRolesAndGroups",
            "userIdentifierClaim",
            "roleClaimName",
            "groupClaimName",
        ],
    ),
    (
        "Upstream headers and exclusions",
        &[
            "claimHeaders",
            "headers",
            "forwardAccessToken",
            "minimalHeaders",
            "excludedURLs",
        ],
    ),
    (
        "Bearer tokens (`bearer.*`)",
        &[
            "bearer.",
            "strictAudienceValidation",
            "allowOpaqueTokens",
            "requireTokenIntrospection",
        ],
    ),
    (
        "Replay detection (`replay.*`)",
        &["replay.", "disableReplayDetection"],
    ),
    (
        "Back-channel logout (`backchannelLogout.*`)",
        &[
            "backchannelLogout.",
            "enableFrontchannelLogout",
            "frontchannelLogoutURL",
        ],
    ),
    ("Health and metrics (`health.*`)", &["health."]),
    ("Store (`store.*`)", &["store.", "redis.hybridL1MemoryMB"]),
    ("Redis / Valkey (`redis.*`)", &["redis."]),
    (
        "Other",
        &[
            "rateLimit",
            "securityHeaders",
            "dynamicClientRegistration",
            "instanceName",
            "logLevel",
        ],
    ),
];

/// The spec of a canonical path.
pub(crate) fn spec(path: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.path == path)
}

/// The section a key belongs to in the reference (index into [`SECTIONS`]).
pub(crate) fn section_of(path: &str) -> Option<usize> {
    // An exact top-level name wins over a prefix, so `redis.hybridL1MemoryMB` lands in Store.
    SECTIONS
        .iter()
        .position(|(_, members)| members.contains(&path))
        .or_else(|| {
            SECTIONS.iter().position(|(_, members)| {
                members
                    .iter()
                    .any(|m| m.ends_with('.') && path.starts_with(m))
            })
        })
}

/// Finds the key a spelled path names: canonical or alias, exact first, then ignoring ASCII case
/// (label and KV providers may change case).
pub(crate) fn resolve(path: &str) -> Option<(&'static KeySpec, &'static str)> {
    for s in KEYS {
        if s.path == path {
            return Some((s, s.path));
        }
        if let Some(a) = s.aliases.iter().find(|a| **a == path) {
            return Some((s, a));
        }
    }
    for s in KEYS {
        if s.path.eq_ignore_ascii_case(path) {
            return Some((s, s.path));
        }
        if let Some(a) = s.aliases.iter().find(|a| a.eq_ignore_ascii_case(path)) {
            return Some((s, a));
        }
    }
    None
}

/// The canonical spelling of a section (a proper prefix of a key or alias path), if `path` is one.
pub(crate) fn section(path: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for name in all_names() {
        for (i, c) in name.char_indices() {
            if c != '.' {
                continue;
            }
            let prefix = name.get(..i).unwrap_or_default();
            if prefix == path {
                return Some(prefix.to_string());
            }
            if found.is_none() && prefix.eq_ignore_ascii_case(path) {
                found = Some(prefix.to_string());
            }
        }
    }
    found
}

/// Every name a user may write (canonical paths and aliases), for suggestions.
pub(crate) fn all_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .flat_map(|s| std::iter::once(s.path).chain(s.aliases.iter().copied()))
}
