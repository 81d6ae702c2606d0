//! The request pipeline: one request in, one decision out.
//!
//! Order matters and is the same for every request:
//!
//! 1. Inbound copies of the identity headers we set (`X-Forwarded-User`, configured claim
//!    headers) are removed **before anything else**, so no path — excluded, preflight, error —
//!    ever forwards a client-supplied identity.
//! 2. The plugin's own endpoints (health, metrics, login callback, logout, back-channel logout)
//!    are matched on the normalised path.
//! 3. CORS preflight (when `skipAuthPreflight`) and `excludedURLs` pass without authentication.
//! 4. A bearer token (`Authorization: Bearer|DPoP`) when bearer tokens are enabled, else the
//!    session cookie; then the access policy; then the identity headers are set.
//! 5. Without credentials: browsers are sent to the provider when login is configured; API
//!    clients (and browsers without login) get 401 with `WWW-Authenticate`.
//!
//! After every request the store's connections are closed (sockets never outlive a request) and
//! what happened is logged through the host.

use std::cell::{Cell, OnceCell};
use std::net::IpAddr;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::auth::provider::{Deps, ProviderState};
use crate::auth::{backchannel, bearer, oidc, policy, session};
use crate::clock::{PluginClock, RequestClock};
use crate::config::{Config, ConfigError, Platform};
use crate::http::path::{normalize_split_path, split_target, under_prefix, NormalPath};
use crate::http::{canonical_owned, cookie, Ex, LogLevel};
use crate::net::http::Fetch;
use crate::response::Response;
use crate::store::{Mode, SealKey, Sealer, TieredConfig, TieredStore, L2};

/// Largest request body read by the plugin's own endpoints (back-channel logout).
pub const MAX_BODY: usize = 64 * 1024;

/// The per-instance plugin: ready, or refusing everything because its configuration was refused.
pub struct Plugin {
    inner: Inner,
    startup: Vec<(LogLevel, String)>,
}

enum Inner {
    Ready(Box<Guard>),
    Misconfigured { logged: bool, summary: String },
}

impl Plugin {
    /// Builds the plugin from the middleware's JSON configuration, the guest's environment and
    /// its mounted files. Never fails: an invalid configuration yields a plugin that answers 500
    /// to every request (it never forwards), and the reasons are logged at start-up.
    pub fn from_host_config(json: &[u8]) -> Plugin {
        let env = |k: &str| std::env::var(k).ok();
        let read = |p: &str| std::fs::read(p);
        let platform = Platform {
            bridge_present: cfg!(feature = "bridge"),
        };
        match Config::parse(json, &env, &read, platform) {
            Ok(cfg) => match Parts::for_host(&cfg) {
                Ok(parts) => Plugin::with_parts(cfg, parts),
                Err(msg) => Plugin::refusing(cfg.warnings.clone(), msg),
            },
            Err(e) => Plugin::misconfigured(&e),
        }
    }

    /// A plugin refusing every request because of `e`.
    pub fn misconfigured(e: &ConfigError) -> Plugin {
        let mut startup = vec![(
            LogLevel::Error,
            format!(
                "oidc-guard: configuration refused ({} problem(s)); every request on this route is refused with 500 until it is fixed",
                e.errors().len()
            ),
        )];
        for ke in e.errors() {
            startup.push((LogLevel::Error, format!("oidc-guard: configuration: {ke}")));
        }
        Plugin {
            inner: Inner::Misconfigured {
                logged: false,
                summary: e.to_string(),
            },
            startup,
        }
    }

    fn refusing(warnings: Vec<String>, msg: String) -> Plugin {
        let mut startup: Vec<(LogLevel, String)> = warnings
            .into_iter()
            .map(|w| (LogLevel::Warn, format!("oidc-guard: {w}")))
            .collect();
        startup.push((
            LogLevel::Error,
            format!("oidc-guard: {msg}; every request is refused with 500"),
        ));
        Plugin {
            inner: Inner::Misconfigured {
                logged: false,
                summary: msg,
            },
            startup,
        }
    }

    /// A plugin over explicit parts (the host's real ones, or test doubles).
    pub fn with_parts(cfg: Config, parts: Parts) -> Plugin {
        let mut startup: Vec<(LogLevel, String)> = cfg
            .warnings
            .iter()
            .map(|w| (LogLevel::Warn, format!("oidc-guard: {w}")))
            .collect();
        match Guard::new(cfg, parts) {
            Ok(g) => {
                startup.push((
                    LogLevel::Info,
                    format!(
                        "oidc-guard: ready (identity {}, store mode {})",
                        g.cfg.identity(),
                        g.store.mode().as_str()
                    ),
                ));
                Plugin {
                    inner: Inner::Ready(Box::new(g)),
                    startup,
                }
            }
            Err(msg) => {
                let mut p = Plugin::refusing(Vec::new(), msg);
                startup.append(&mut p.startup);
                p.startup = startup;
                p
            }
        }
    }

    /// Lines to log once when the instance starts.
    pub fn startup_messages(&self) -> &[(LogLevel, String)] {
        &self.startup
    }

    /// Handles one request; `true` forwards it to the next handler.
    pub fn handle(&mut self, ex: &Ex<'_>) -> bool {
        match &mut self.inner {
            Inner::Ready(g) => g.handle(ex),
            Inner::Misconfigured { logged, summary } => refuse_misconfigured(ex, logged, summary),
        }
    }

    /// The ready guard, if the configuration was accepted (for tests and benchmarks).
    pub fn guard(&mut self) -> Option<&mut Guard> {
        match &mut self.inner {
            Inner::Ready(g) => Some(g),
            Inner::Misconfigured { .. } => None,
        }
    }
}

/// The replaceable parts of a guard: time, the L2, the HTTP client.
pub struct Parts {
    /// Wall clock.
    pub clock: Rc<PluginClock>,
    /// The L2 (Redis client or host bridge), if any.
    pub l2: Option<Box<dyn L2>>,
    /// The HTTP client for the provider.
    pub fetch: Box<dyn Fetch>,
}

impl Parts {
    /// The host's parts: the WasmEdge-socket Redis client and HTTP client in the Traefik
    /// artifact, the host bridge in the bridge artifact; natively, no L2 and no network.
    ///
    /// # Errors
    /// A message when the Redis client cannot be built from the configuration.
    pub fn for_host(cfg: &Config) -> Result<Parts, String> {
        Ok(Parts {
            clock: Rc::new(RequestClock::default()),
            l2: host::l2(cfg)?,
            fetch: host::fetch(cfg),
        })
    }
}

/// Secrets derived from `sessionEncryptionKey` (HKDF, one key per purpose).
pub struct Keys {
    /// Keys opening session cookies, newest first (the first seals).
    pub session: Vec<[u8; 32]>,
    /// Keys opening login-flow (state) cookies, newest first.
    pub flow: Vec<[u8; 32]>,
    /// Keys sealing values in the L2 (session tickets, refresh results, cached documents),
    /// newest first: the first seals, all open.
    pub store: Vec<[u8; 32]>,
}

impl Keys {
    fn from_config(cfg: &Config) -> Keys {
        let secrets: Vec<&str> = cfg
            .browser
            .as_ref()
            .map(|b| b.session.keys.all().map(|s| s.expose()).collect())
            .unwrap_or_default();
        let derive = |info: &str| -> Vec<[u8; 32]> {
            secrets
                .iter()
                .map(|s| crate::crypto::derive_key(s.as_bytes(), info))
                .collect()
        };
        Keys {
            session: derive("session-cookie"),
            flow: derive("login-flow-cookie"),
            store: derive("store-envelope"),
        }
    }
}

/// A ready guard: the configuration and everything that lives as long as the instance.
pub struct Guard {
    /// The validated configuration.
    pub cfg: Rc<Config>,
    /// Wall clock.
    pub clock: Rc<PluginClock>,
    /// The two-tier store.
    pub store: TieredStore,
    /// HTTP client for the provider.
    pub fetch: Box<dyn Fetch>,
    /// Discovery and keys.
    pub provider: ProviderState,
    /// Derived secrets.
    pub keys: Keys,
    /// Bearer-token caches.
    pub bearer: bearer::BearerState,
    /// Session bookkeeping (revocation checks, refresh).
    pub sessions: session::SessionState,
    /// Log lines produced while handling the current request.
    pub log: Vec<(LogLevel, String)>,
    /// Headers removed from every request before anything else.
    strip: Vec<String>,
    /// For each configured claim header, its index in `strip` (found once here: a lookup by
    /// name per request was ≈ 45 wasm operators per byte of each name compared).
    claim_marks: Vec<Option<usize>>,
    /// The index in `strip` of `forwardAccessToken`'s header, when it is stripped.
    token_mark: Option<usize>,
    /// Buffers kept from one request to the next.
    pub scratch: Scratch,
    /// Their other spellings, removed too.
    aliases: Aliases,
}

/// One request as the pipeline sees it.
pub struct Req<'a> {
    /// The host exchange.
    pub ex: &'a Ex<'a>,
    /// Method, upper case (read from the host on first use: the hot paths never need it).
    method: OnceCell<String>,
    /// The request target as received (path and query).
    pub target: String,
    /// The normalised path.
    pub path: NormalPath,
    /// The query string, if any.
    pub query: Option<String>,
    /// The `Cookie` header values (read on first use: the bearer and excluded paths never read
    /// them).
    cookie_headers: OnceCell<Vec<String>>,
    /// Where the cookies lie in those headers (found on first use).
    cookie_spans: OnceCell<cookie::Spans>,
    /// The last request's allocations for the two above (see [`Scratch`]).
    reuse_headers: Cell<Vec<String>>,
    reuse_spans: Cell<cookie::Spans>,
    /// The request's cookies as owned pairs (made on first use: a valid session needs only
    /// [`Req::cookie_pairs`]).
    cookies: OnceCell<Vec<(String, String)>>,
    /// The TCP peer's address (read from the host on first use).
    source_ip: OnceCell<Option<IpAddr>>,
    /// `Set-Cookie` values to send with the response (forwarded or not).
    pub set_cookies: Vec<String>,
    /// Which of the guard's identity headers (`Guard::strip`, by index) this request set.
    upstream_set: Marks,
}

impl Req<'_> {
    /// The request method, upper case.
    pub fn method(&self) -> &str {
        self.method
            .get_or_init(|| self.ex.method().to_ascii_uppercase())
    }

    /// The request's cookies, in order.
    pub fn cookies(&self) -> &[(String, String)] {
        self.cookies
            .get_or_init(|| cookie::parse(self.cookie_headers()))
    }

    /// The request's cookies, in order, borrowed from its `Cookie` headers.
    pub fn cookie_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let headers = self.cookie_headers();
        self.cookie_spans
            .get_or_init(|| cookie::Spans::of_in(headers, self.reuse_spans.take()))
            .pairs(headers)
    }

    fn cookie_headers(&self) -> &[String] {
        self.cookie_headers.get_or_init(|| {
            self.ex
                .header_values_in("Cookie", self.reuse_headers.take())
        })
    }

    /// The TCP peer's address (before any proxy headers).
    pub fn source_ip(&self) -> Option<IpAddr> {
        *self
            .source_ip
            .get_or_init(|| source_ip(&self.ex.source_addr()))
    }

    /// Whether the client is a browser navigating (gets a login redirect or an HTML page)
    /// rather than an API or XHR client (gets 401 with `WWW-Authenticate`).
    pub fn is_browser_navigation(&self) -> bool {
        if !matches!(self.method(), "GET" | "HEAD") {
            return false;
        }
        if self.ex.header("Authorization").is_some() {
            return false;
        }
        let lower = |n: &str| {
            self.ex
                .header(n)
                .map(|v| v.to_ascii_lowercase())
                .unwrap_or_default()
        };
        let mode = lower("Sec-Fetch-Mode");
        if !mode.is_empty() && mode != "navigate" {
            return false;
        }
        if lower("X-Requested-With") == "xmlhttprequest" {
            return false;
        }
        let accept = lower("Accept");
        if accept.contains("application/json") && !accept.contains("text/html") {
            return false;
        }
        mode == "navigate"
            || accept.contains("text/html")
            || accept.is_empty()
            || accept.contains("*/*")
    }

    /// The clean normalised path, or `None` when ambiguous.
    pub fn clean_path(&self) -> Option<&str> {
        self.path.as_clean(&self.target)
    }
}

/// What a credential proves: the claims, and — computed on first use and kept as long as the
/// credential's cache entry lives — what the policy and the identity headers make of them, so a
/// cached bearer token or session costs no claim walking on later requests.
#[derive(Debug, PartialEq)]
pub struct Principal {
    claims: Map<String, Value>,
    admission: OnceCell<Admission>,
}

/// The access decision and identity header values for one principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// `Err(reason)` when the policy refuses (the reason is for the log).
    pub allowed: Result<(), &'static str>,
    /// The value of `X-Forwarded-User` (or the configured header); `None` when the identifier
    /// claim is missing or unusable.
    pub user: Option<String>,
    /// One entry per configured claim header, in order: the value, or `None` when the claim is
    /// absent.
    pub headers: Vec<Option<HeaderValue>>,
}

/// A claim header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Set it to this.
    Set(String),
    /// The claim is longer than [`MAX_HEADER_VALUE`]: left out (never truncated) and logged.
    TooLong,
}

impl Principal {
    /// Wraps a claims set.
    pub fn new(claims: Map<String, Value>) -> Principal {
        Principal {
            claims,
            admission: OnceCell::new(),
        }
    }

    /// The claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The policy verdict and header values (computed once per principal; the configuration of a
    /// guard never changes).
    pub fn admission(&self, cfg: &Config) -> &Admission {
        self.admission.get_or_init(|| {
            let allowed = policy::check(&cfg.policy, &self.claims);
            let user = policy::user_value(&cfg.policy, &self.claims)
                .as_deref()
                .and_then(sanitize_header_value);
            let headers = cfg
                .upstream
                .claim_headers
                .iter()
                .map(|h| {
                    policy::claim_string(&self.claims, &h.claim).map(
                        |v| match sanitize_header_value(&v) {
                            Some(v) => HeaderValue::Set(v),
                            None => HeaderValue::TooLong,
                        },
                    )
                })
                .collect();
            Admission {
                allowed,
                user,
                headers,
            }
        })
    }
}

/// Who the request is from, once authenticated.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// What the credential proves (shared with the credential's cache entry).
    pub principal: Rc<Principal>,
    /// How the request authenticated.
    pub via: Via,
    /// An access token to forward upstream, if configured and available.
    pub access_token: Option<String>,
}

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A session cookie (browser login).
    Session,
    /// A bearer (or DPoP-bound) access token.
    Bearer,
}

/// What an authentication method decided.
pub enum Outcome {
    /// Authenticated.
    Authenticated(Identity),
    /// Answer with this response.
    Reply(Response),
    /// This method does not apply to the request (no credential of its kind).
    NotPresent,
}

impl Guard {
    /// Builds the guard.
    ///
    /// # Errors
    /// A message when a part cannot be built from a configuration that parsed (e.g. the static
    /// JWKS has no usable key).
    pub fn new(cfg: Config, parts: Parts) -> Result<Guard, String> {
        let keys = Keys::from_config(&cfg);
        let provider =
            ProviderState::new(&cfg, !keys.store.is_empty()).map_err(|e| format!("jwks: {e}"))?;
        let store = build_store(&cfg, &keys, parts.l2, parts.clock.clone());
        // Kept in Go's canonical spelling: the host then takes each removal as it is. The user
        // header comes first (`set_user_header` relies on it).
        let mut strip = vec![canonical_owned(&cfg.upstream.user_header)];
        // The access token's header is stripped like the identity headers, unless it is
        // `Authorization`: that one carries the client's own bearer token on other requests.
        for h in cfg
            .upstream
            .claim_headers
            .iter()
            .map(|c| c.header.as_str())
            .chain(cfg.upstream.own_token_header())
        {
            if !strip.iter().any(|s| s.eq_ignore_ascii_case(h)) {
                strip.push(canonical_owned(h));
            }
        }
        let mark = |h: &str| strip.iter().position(|s| s.eq_ignore_ascii_case(h));
        let claim_marks = cfg
            .upstream
            .claim_headers
            .iter()
            .map(|c| mark(&c.header))
            .collect();
        let token_mark = cfg.upstream.access_token_header.as_deref().and_then(mark);
        Ok(Guard {
            claim_marks,
            token_mark,
            bearer: bearer::BearerState::new(&cfg),
            sessions: session::SessionState::new(&cfg),
            cfg: Rc::new(cfg),
            clock: parts.clock,
            store,
            fetch: parts.fetch,
            provider,
            keys,
            log: Vec::new(),
            aliases: Aliases::of(&strip),
            strip,
            scratch: Scratch::default(),
        })
    }

    /// Handles one request; `true` forwards it.
    ///
    /// Everything a forwarded request with a cached credential does not need (the plugin's own
    /// endpoints, the session and login paths for a bearer request, verification, refusals,
    /// replies) is kept out of line (`#[inline(never)]`, `#[cold]`). Inlined, it made this one
    /// function 200 KB of machine code under wazero with the hot path's blocks spread across
    /// it, and an instruction-cache miss for most of them on each request.
    pub fn handle(&mut self, ex: &Ex<'_>) -> bool {
        let mut req = self.request(ex);
        let result = self.route(&mut req);
        let forward = match result {
            Step::Forward => {
                // Identity headers a client sent never reach the backend: the ones this request's
                // identity set were replaced (a set replaces every value), the others go now.
                // (A request answered here is not forwarded, so nothing needs stripping.)
                for (i, h) in self.strip.iter().enumerate() {
                    if !req.upstream_set.contains(i) {
                        ex.remove_header(h);
                    }
                }
                self.strip_aliases(ex);
                // The sealed session is a credential: no forwarded request carries it, whatever
                // let it through (a session, a bearer token, an excluded path, a preflight).
                session::strip_own_cookies(self, &mut req);
                for c in &req.set_cookies {
                    ex.add_response_header("Set-Cookie", c);
                }
                true
            }
            Step::Reply(resp) => {
                reply(resp, &req.set_cookies, ex);
                false
            }
        };
        self.finish(ex);
        let Req {
            target,
            cookie_headers,
            cookie_spans,
            reuse_headers,
            reuse_spans,
            ..
        } = req;
        Scratch::keep(&mut self.scratch.uri, target.into_bytes());
        // What the request read into, else what it did not use (a bearer request, an excluded
        // path: back as they came).
        let headers = match cookie_headers.into_inner() {
            Some(h) => Scratch::cookie_headers_to_keep(h),
            None => reuse_headers.into_inner(),
        };
        let spans = match cookie_spans.into_inner() {
            Some(s) if s.keepable() => s,
            Some(_) => cookie::Spans::default(),
            None => reuse_spans.into_inner(),
        };
        // `request` took both: the values replaced are empty and own no allocation (forgotten
        // rather than dropped: their drops were ≈ 150 wasm operators of no-op calls).
        std::mem::forget(std::mem::replace(&mut self.scratch.cookie_headers, headers));
        std::mem::forget(std::mem::replace(&mut self.scratch.cookie_spans, spans));
        forward
    }

    /// Removes the other spellings of the identity headers (see [`Aliases`]).
    fn strip_aliases(&self, ex: &Ex<'_>) {
        match &self.aliases {
            Aliases::Remove(names) => {
                for a in names {
                    ex.remove_header(a);
                }
            }
            Aliases::List => self.strip_listed_aliases(ex),
        }
    }

    #[cold]
    #[inline(never)]
    fn strip_listed_aliases(&self, ex: &Ex<'_>) {
        let mut found: Vec<String> = Vec::new();
        ex.header_names(&mut |name| {
            if self.strip.iter().any(|h| is_alias(name, h)) {
                found.push(name.to_string());
            }
        });
        for a in &found {
            ex.remove_header(a);
        }
    }

    fn request<'a>(&mut self, ex: &'a Ex<'_>) -> Req<'a> {
        let target = ex.uri_in(std::mem::take(&mut self.scratch.uri));
        let (raw_path, query) = split_target(&target);
        let path = normalize_split_path(raw_path);
        let query = query.map(str::to_string);
        Req {
            method: OnceCell::new(),
            path,
            query,
            cookie_headers: OnceCell::new(),
            cookie_spans: OnceCell::new(),
            reuse_headers: Cell::new(std::mem::take(&mut self.scratch.cookie_headers)),
            reuse_spans: Cell::new(std::mem::take(&mut self.scratch.cookie_spans)),
            cookies: OnceCell::new(),
            source_ip: OnceCell::new(),
            target,
            ex,
            set_cookies: Vec::new(),
            upstream_set: Marks::default(),
        }
    }

    fn route(&mut self, req: &mut Req<'_>) -> Step {
        // The plugin's own endpoints, matched exactly on the clean path.
        if let Some(e) = req.clean_path().and_then(|p| self.endpoint(p)) {
            return self.own_endpoint(e, req);
        }
        // CORS preflight (opt-in): OPTIONS with Origin and Access-Control-Request-Method.
        if self.cfg.skip_auth_preflight
            && req.method() == "OPTIONS"
            && req.ex.header("Origin").is_some()
            && req.ex.header("Access-Control-Request-Method").is_some()
        {
            return Step::Forward;
        }
        // excludedURLs: only clean paths can be excluded (encoded slashes, backslashes and
        // double encoding never match).
        if let Some(p) = req.clean_path() {
            if self
                .cfg
                .excluded_urls
                .iter()
                .any(|prefix| under_prefix(p, prefix))
            {
                return Step::Forward;
            }
        }
        match self.authenticate(req) {
            Ok(identity) => self.admit(req, identity),
            Err(resp) => Step::Reply(resp),
        }
    }

    /// Which of the plugin's own endpoints `path` is, if any.
    fn endpoint(&self, path: &str) -> Option<Endpoint> {
        let h = &self.cfg.health;
        if h.metrics_path.as_deref() == Some(path) {
            return Some(Endpoint::Metrics);
        }
        if h.path.as_deref() == Some(path) {
            return Some(Endpoint::Health);
        }
        if self
            .cfg
            .backchannel_logout
            .as_ref()
            .is_some_and(|bc| bc.path == path)
        {
            return Some(Endpoint::BackchannelLogout);
        }
        let b = self.cfg.browser.as_ref()?;
        if b.login.callback.path() == path {
            Some(Endpoint::Callback)
        } else if b.login.logout.path() == path {
            Some(Endpoint::Logout)
        } else {
            None
        }
    }

    #[inline(never)]
    fn own_endpoint(&mut self, e: Endpoint, req: &mut Req<'_>) -> Step {
        match e {
            Endpoint::Health | Endpoint::Metrics => {
                let h = &self.cfg.health;
                if !h.allowed_sources.is_empty()
                    && !req
                        .source_ip()
                        .map(|ip| h.allowed_sources.iter().any(|n| n.contains(&ip)))
                        .unwrap_or(false)
                {
                    return Step::Reply(Response::forbidden(false));
                }
                if e == Endpoint::Metrics {
                    return Step::Reply(Response::metrics(self.store.snapshot().prometheus()));
                }
                // The health check pings the L2 so reachability and latency are current.
                let _ = self.store.ping();
                Step::Reply(Response::json(200, self.store.snapshot().health_json()))
            }
            Endpoint::BackchannelLogout => Step::Reply(backchannel::handle(self, req)),
            Endpoint::Callback => Step::Reply(oidc::callback(self, req)),
            Endpoint::Logout => Step::Reply(oidc::logout(self, req)),
        }
    }

    fn authenticate(&mut self, req: &mut Req<'_>) -> Result<Identity, Response> {
        if self.cfg.bearer.is_some() {
            match bearer::authenticate(self, req) {
                Outcome::Authenticated(i) => return Ok(i),
                Outcome::Reply(r) => return Err(r),
                Outcome::NotPresent => {}
            }
        }
        if self.cfg.browser.is_some() {
            match session::authenticate(self, req) {
                Outcome::Authenticated(i) => return Ok(i),
                Outcome::Reply(r) => return Err(r),
                Outcome::NotPresent => {}
            }
            if req.is_browser_navigation() {
                return Err(oidc::start_login(self, req));
            }
        }
        if req.is_browser_navigation() && self.cfg.browser.is_none() {
            return Err(Response::unauthorized_page());
        }
        let dpop = self
            .cfg
            .bearer
            .as_ref()
            .map(|b| b.dpop.enabled)
            .unwrap_or(false);
        Err(Response::unauthorized_api(None, dpop))
    }

    fn admit(&mut self, req: &mut Req<'_>, identity: Identity) -> Step {
        let cfg = Rc::clone(&self.cfg);
        let adm = identity.principal.admission(&cfg);
        if let Err(reason) = adm.allowed {
            return self.deny(req, identity.via, reason);
        }
        match &adm.user {
            Some(u) => self.set_user_header(req, u),
            None => {
                // No identifier claim: refuse rather than forward an anonymous "authenticated" user.
                self.log.push((
                    LogLevel::Warn,
                    format!(
                        "oidc-guard: token has no usable {:?} claim to identify the user",
                        cfg.policy.user_claim
                    ),
                ));
                return Step::Reply(Response::forbidden(req.is_browser_navigation()));
            }
        }
        for ((h, v), mark) in cfg
            .upstream
            .claim_headers
            .iter()
            .zip(&adm.headers)
            .zip(&self.claim_marks)
        {
            match v {
                Some(HeaderValue::Set(v)) => Self::set_upstream(req, &h.header, v, *mark),
                // Never a truncated list (a cut group list could mean something else to the
                // backend): the header is left out and the operator told.
                Some(HeaderValue::TooLong) => self.log.push((
                    LogLevel::Warn,
                    format!(
                        "oidc-guard: claim {:?} is longer than {MAX_HEADER_VALUE} bytes; header {} not set",
                        h.claim, h.header
                    ),
                )),
                None => {}
            }
        }
        if let Some(h) = &cfg.upstream.access_token_header {
            let value = identity.access_token.as_ref().map(|token| {
                if h.eq_ignore_ascii_case("authorization") {
                    format!("Bearer {token}")
                } else {
                    token.clone()
                }
            });
            match value.as_deref().map(sanitize_header_value) {
                Some(Some(v)) => Self::set_upstream(req, h, &v, self.token_mark),
                Some(None) => {
                    req.ex.remove_header(h);
                    self.log.push((
                        LogLevel::Warn,
                        format!("oidc-guard: the access token is longer than {MAX_HEADER_VALUE} bytes; {h} not set"),
                    ));
                }
                // A session without an access token (made before forwardAccessToken was set):
                // the backend must not take a header the client sent for one the plugin set.
                None if identity.via == Via::Session => req.ex.remove_header(h),
                // A bearer request and `Authorization`: the client's own header stays. (Any
                // other header got the bearer token above.)
                None => {}
            }
        }
        Step::Forward
    }

    /// The 403 for a principal the access policy refuses.
    #[cold]
    #[inline(never)]
    fn deny(&mut self, req: &Req<'_>, via: Via, reason: impl std::fmt::Display) -> Step {
        self.log.push((
            LogLevel::Info,
            format!("oidc-guard: access denied: {reason}"),
        ));
        let html = via == Via::Session && req.is_browser_navigation();
        Step::Reply(match via {
            Via::Bearer => Response::forbidden(false).with_header(
                "WWW-Authenticate",
                "Bearer realm=\"oidc-guard\", error=\"insufficient_scope\"",
            ),
            Via::Session => Response::forbidden(html),
        })
    }

    /// Sets the user header (`strip[0]`, see [`Guard::new`]) without looking it up by name.
    fn set_user_header(&self, req: &mut Req<'_>, value: &str) {
        if let Some(h) = self.strip.first() {
            req.ex.set_header(h, value);
            req.upstream_set.set(0);
        }
    }

    /// Sets an identity header for the backend and notes it (`mark`: its index in `strip`), so
    /// it is not stripped afterwards.
    fn set_upstream(req: &mut Req<'_>, name: &str, value: &str, mark: Option<usize>) {
        req.ex.set_header(name, value);
        if let Some(i) = mark {
            req.upstream_set.set(i);
        }
    }

    fn finish(&mut self, ex: &Ex<'_>) {
        self.store.end_request();
        if self.store.has_events() || !self.log.is_empty() {
            self.write_log(ex);
        }
    }

    #[cold]
    #[inline(never)]
    fn write_log(&mut self, ex: &Ex<'_>) {
        for ev in self.store.drain_events() {
            self.log
                .push((LogLevel::Warn, format!("oidc-guard: store: {ev}")));
        }
        for (level, line) in self.log.drain(..) {
            ex.log(level, &line);
        }
    }

    /// Provider dependencies split from the rest of the guard (borrow helper).
    pub fn provider_deps(&mut self) -> (&mut ProviderState, Deps<'_>) {
        (
            &mut self.provider,
            Deps {
                fetch: &mut *self.fetch,
                store: &mut self.store,
                clock: self.clock.as_ref(),
                log: &mut self.log,
            },
        )
    }
}

enum Step {
    Forward,
    Reply(Response),
}

/// Buffers kept from one request to the next on an instance, so a request reads its target and
/// `Authorization` header without allocating (see `WasmExchange::uri_in`).
#[derive(Debug, Default)]
pub struct Scratch {
    uri: Vec<u8>,
    /// The `Authorization` header's buffer.
    pub auth: Vec<u8>,
    /// The `Cookie` header's list and buffer.
    cookie_headers: Vec<String>,
    /// The cookies' positions in it.
    cookie_spans: cookie::Spans,
}

impl Scratch {
    /// The largest buffer kept: a longer value's is freed, so one huge request does not pin its
    /// size on the instance.
    const KEEP: usize = 8 << 10;

    /// Keeps `buf` in `slot` unless it is larger than [`Scratch::KEEP`].
    pub fn keep(slot: &mut Vec<u8>, buf: Vec<u8>) {
        if buf.capacity() <= Self::KEEP {
            *slot = buf;
        }
    }

    /// A request's `Cookie` list to keep: freed when it holds more than one header or one above
    /// [`Scratch::KEEP`].
    fn cookie_headers_to_keep(list: Vec<String>) -> Vec<String> {
        if list.len() <= 1 && list.iter().all(|h| h.capacity() <= Self::KEEP) {
            list
        } else {
            Vec::new()
        }
    }
}

/// Sends a reply the plugin makes instead of forwarding.
#[inline(never)]
fn reply(resp: Response, set_cookies: &[String], ex: &Ex<'_>) {
    resp.with_cookies(set_cookies).send(ex);
}

/// The plugin's own endpoints (matched on the clean path before anything else).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Health,
    Metrics,
    BackchannelLogout,
    Callback,
    Logout,
}

/// A set of small indices (the identity headers a request set): the first 64 in a word, more in
/// a list that stays unallocated unless a configuration has that many headers.
#[derive(Default)]
struct Marks {
    low: u64,
    high: Vec<u64>,
}

impl Marks {
    fn set(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else {
            let (w, b) = (i / 64 - 1, i % 64);
            if self.high.len() <= w {
                self.high.resize(w + 1, 0);
            }
            self.high[w] |= 1 << b;
        }
    }

    fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.low & (1 << i) != 0
        } else {
            self.high
                .get(i / 64 - 1)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
        }
    }
}

fn build_store(
    cfg: &Config,
    keys: &Keys,
    l2: Option<Box<dyn L2>>,
    clock: Rc<PluginClock>,
) -> TieredStore {
    let s = &cfg.store;
    let mode = match s.mode {
        crate::config::StoreMode::Memory => Mode::Memory,
        crate::config::StoreMode::Redis => Mode::Redis,
        crate::config::StoreMode::Hybrid => Mode::Hybrid,
    };
    let mut tc = TieredConfig::new(mode, cfg.identity());
    tc.key_prefix = s.key_prefix.clone();
    tc.l1.max_entries = s.l1_max_entries;
    tc.l1.max_bytes = s.l1_max_bytes;
    tc.fallback = match s.fallback {
        crate::config::Fallback::L1 => crate::store::Fallback::L1,
        crate::config::Fallback::Deny => crate::store::Fallback::Deny,
    };
    match &s.breaker {
        Some(b) => {
            tc.breaker.threshold = b.threshold;
            tc.breaker.timeout = b.timeout;
        }
        None => tc.breaker.threshold = 0,
    }
    if let Some(r) = &cfg.redis {
        tc.max_retries = r.max_retries;
    }
    if let Some(b) = &cfg.browser {
        tc.l1_max_ttl = b.session.revocation_check_interval;
        tc.negative_ttl = b.session.revocation_check_interval;
    }
    tc.insecure_accept_per_instance = cfg.replay.insecure_allow_per_instance;
    let sealer = match keys.store.split_first() {
        Some((newest, older)) => {
            let older: Vec<SealKey> = older.iter().map(|k| SealKey::new(*k)).collect();
            Sealer::aead_rotating(&SealKey::new(*newest), &older)
        }
        None => Sealer::integrity(),
    };
    let l2 = if mode == Mode::Memory { None } else { l2 };
    TieredStore::new(tc, l2, sealer, clock)
}

/// Longest identity header value set for the backend.
pub const MAX_HEADER_VALUE: usize = 16 * 1024;

/// A value for a request header: control characters (CR, LF, NUL, …) removed; `None` when it is
/// longer than [`MAX_HEADER_VALUE`] (it is never truncated).
pub fn sanitize_header_value(v: &str) -> Option<String> {
    let clean: String = v.chars().filter(|c| !c.is_control()).collect();
    (clean.len() <= MAX_HEADER_VALUE).then_some(clean)
}

/// How a request loses the other spellings of the identity headers. CGI, WSGI and Rack hand
/// headers to the application as `HTTP_X_FORWARDED_USER`, where `X_Forwarded_User` and
/// `X-Forwarded_User` land too when the real header is absent (Puma by default, many WSGI
/// servers), so a client could otherwise name the user on a route where the plugin sets no
/// identity (an excluded path, a missing claim). Go's server keeps such names apart and Traefik
/// forwards them (it drops only its own `X-Forwarded-*` spellings).
enum Aliases {
    /// Every spelling, removed by name without asking which are present: a removal costs one host
    /// call, listing the header names about as much as sixteen (Go lower-cases a copy of each).
    Remove(Vec<String>),
    /// Too many spellings (headers with many dashes): list the names and remove the matches.
    List,
}

impl Aliases {
    /// More spellings than this are found by listing the header names instead.
    const MAX_REMOVE: usize = 12;

    /// The spellings of `headers` that differ from one of them in `-`/`_` only.
    fn of(headers: &[String]) -> Aliases {
        let mut out: Vec<String> = Vec::new();
        for h in headers {
            let seps: Vec<usize> = h
                .bytes()
                .enumerate()
                .filter(|&(_, c)| c == b'-' || c == b'_')
                .map(|(i, _)| i)
                .collect();
            if seps.len() > 4 {
                return Aliases::List;
            }
            for mask in 0u32..(1 << seps.len()) {
                let mut b = h.clone().into_bytes();
                for (bit, &i) in seps.iter().enumerate() {
                    if let Some(c) = b.get_mut(i) {
                        *c = if mask & (1 << bit) == 0 { b'-' } else { b'_' };
                    }
                }
                let Ok(spelling) = String::from_utf8(b) else {
                    continue;
                };
                if !headers.iter().any(|x| x.eq_ignore_ascii_case(&spelling))
                    && !out.iter().any(|x| x.eq_ignore_ascii_case(&spelling))
                {
                    out.push(canonical_owned(&spelling));
                }
            }
            if out.len() > Self::MAX_REMOVE {
                return Aliases::List;
            }
        }
        Aliases::Remove(out)
    }
}

/// Whether `name` is another spelling of the identity header `canonical`: the same once `_`
/// reads as `-` and case is ignored, but not the same name (that one is set or removed by name).
fn is_alias(name: &str, canonical: &str) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    name.len() == canonical.len()
        && !name.eq_ignore_ascii_case(canonical)
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

/// A request to a middleware whose configuration was refused: 500, and the reason logged once.
#[cold]
#[inline(never)]
fn refuse_misconfigured(ex: &Ex<'_>, logged: &mut bool, summary: &str) -> bool {
    if !*logged {
        ex.log(
            LogLevel::Error,
            &format!("oidc-guard: refusing requests: {summary}"),
        );
        *logged = true;
    }
    strip_identity_headers_default(ex);
    Response::misconfigured().send(ex);
    false
}

fn strip_identity_headers_default(ex: &Ex<'_>) {
    ex.remove_header("X-Forwarded-User");
}

fn source_ip(addr: &str) -> Option<IpAddr> {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    addr.parse::<IpAddr>().ok()
}

/// The Redis client options for a configuration with `redis.*` (none without).
pub fn redis_options(cfg: &Config) -> Option<crate::resp::RedisOptions> {
    use crate::config::Topology;
    use crate::resp::{Password, RedisOptions, SentinelOptions};
    let r = cfg.redis.as_ref()?;
    let (addresses, sentinel, cluster_mode, max_redirects) = match &r.topology {
        Topology::Standalone(hp) => (vec![hp.to_string()], None, false, 0),
        Topology::Sentinel {
            hosts,
            master,
            username,
            password,
        } => (
            Vec::new(),
            Some(SentinelOptions {
                hosts: hosts.iter().map(ToString::to_string).collect(),
                master: master.clone(),
                username: username.clone(),
                password: password.as_ref().map(|p| Password::new(p.expose())),
            }),
            false,
            0,
        ),
        Topology::Cluster {
            seeds,
            max_redirects,
        } => (
            seeds.iter().map(ToString::to_string).collect(),
            None,
            true,
            *max_redirects,
        ),
    };
    let tls = r.tls.as_ref().map(|t| {
        let mut o = crate::net::tls::TlsOptions::new();
        o.ca_pem = t.ca_pem.clone();
        o.client_cert_pem = t.client_cert_pem.clone();
        o.client_key_pem = t
            .client_key_pem
            .as_ref()
            .map(|k| k.expose().as_bytes().to_vec());
        o.insecure_skip_verify = t.insecure_skip_verify;
        o.server_name = t.server_name.clone();
        o
    });
    Some(RedisOptions {
        addresses,
        username: r.username.clone(),
        password: r.password.as_ref().map(|p| Password::new(p.expose())),
        db: r.db,
        tls,
        sentinel,
        cluster_mode,
        max_redirects,
        // The tiered store retries every operation `maxRetries` times (the client forgets the
        // Sentinel master or the slot map on each failure, so a retry rediscovers it); the client
        // retrying as well made it (1 + maxRetries)² tries.
        max_retries: 0,
        timeouts: crate::net::Timeouts {
            connect: r.dial_timeout,
            read: r.read_timeout,
            write: r.write_timeout,
        },
    })
}

/// How the host's parts are built for each artifact.
mod host {
    use crate::config::Config;
    use crate::net::http::Fetch;
    use crate::store::L2;

    /// No network natively (tests inject their own parts), but the Redis options are still
    /// checked so that a native run reports the same configuration errors as the guest.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn l2(cfg: &Config) -> Result<Option<Box<dyn L2>>, String> {
        if let Some(opts) = super::redis_options(cfg) {
            crate::resp::RedisClient::new(&opts, crate::net::StdDialer)
                .map_err(|e| format!("redis: {e}"))?;
        }
        Ok(None)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn fetch(_cfg: &Config) -> Box<dyn Fetch> {
        Box::new(crate::net::http::Unreachable)
    }

    #[cfg(all(target_arch = "wasm32", feature = "bridge"))]
    pub fn l2(_cfg: &Config) -> Result<Option<Box<dyn L2>>, String> {
        Ok(Some(Box::new(crate::abi::bridge::BridgeL2::host())))
    }

    #[cfg(all(target_arch = "wasm32", feature = "bridge"))]
    pub fn fetch(_cfg: &Config) -> Box<dyn Fetch> {
        Box::new(crate::abi::bridge::BridgeFetch)
    }

    #[cfg(all(target_arch = "wasm32", not(feature = "bridge")))]
    pub fn l2(cfg: &Config) -> Result<Option<Box<dyn L2>>, String> {
        let Some(opts) = super::redis_options(cfg) else {
            return Ok(None);
        };
        let client = crate::resp::RedisClient::new(&opts, crate::net::tcp::WasiDialer)
            .map_err(|e| format!("redis: {e}"))?;
        Ok(Some(Box::new(client)))
    }

    #[cfg(all(target_arch = "wasm32", not(feature = "bridge")))]
    pub fn fetch(cfg: &Config) -> Box<dyn Fetch> {
        let p = &cfg.provider;
        Box::new(crate::net::http::NetFetch::new(
            Box::new(crate::net::tcp::WasiDialer),
            Some(p.ca_pem.clone()),
            p.insecure_skip_verify,
        ))
    }
}

#[cfg(test)]
mod tests;
