//! Browser sessions: sealed cookies (or server-side tickets), revocation checks, refresh.
//!
//! # Where a session lives
//!
//! - `sessionStorage: cookie` (default): the [`Session`] serialised as JSON and sealed with
//!   AES-256-GCM ([`seal`]) under a key derived from `sessionEncryptionKey`; associated data binds
//!   it to this middleware (its derived identity: issuer, client, cookie name, `instanceName`,
//!   and the fingerprint of its claim selection, [`data::selection_fingerprint`]) and to the
//!   cookie name, so a session cookie of another middleware is refused. The sealed text is
//!   split into cookies of at most 4000 bytes each ([`chunks`]).
//! - `sessionStorage: server`: the cookie holds a ticket `<id>~<secret>` (128-bit id, 256-bit
//!   secret); the shared store holds, under the id, only the session sealed with a key derived
//!   from the secret (and the store seals it again with its own key). Whoever reads the store
//!   cannot use a ticket without the secret, which only the browser has.
//!
//! # Key rotation
//!
//! `sessionEncryptionKey` may list several keys, newest first. The newest seals; every key opens
//! (each sealed value names its key by a 4-byte id, so exactly one AES-GCM open is tried). A
//! session opened with an older key is sealed again with the newest and the browser gets the new
//! cookie with the response. (Server-side tickets are sealed with the secret in the cookie, so
//! rotation does not touch them; the store's own envelope key is the newest key's, so stored
//! tickets do not survive a rotation: those users log in again.)
//!
//! # Per request (the hot path)
//!
//! One base64 decode, one AES-GCM open, one JSON parse, the expiry checks and the revocation check
//! ([`crate::auth::revocation::check`]). A cookie this instance opened before is found in its
//! cache by its exact text (no decode, open or parse), and its last "not revoked" verdict is
//! reused while a new check would read the same L1 entries ([`revocation::Clearance`]); the
//! expiry checks run on every request. In memory mode nothing leaves the guest; in hybrid
//! mode the revocation markers are read through the L1, which keeps hits and misses for at most
//! `revocationCheckInterval`, so each instance asks the L2 at most once per interval per key and
//! a logout on another replica is seen within that interval. When the store cannot answer, its
//! fallback policy decides: with `fallback: l1` (default) revocations written on other replicas
//! are not seen until the L2 is back (sessions keep working); with `fallback: deny` the request
//! is answered 503 (sessions cannot be checked, so none is accepted).
//!
//! # Refresh
//!
//! When the tokens expire within `refreshGracePeriod` (tokens that live no longer than that:
//! half-way through their lifetime, not on every request) and the session has a refresh token,
//! the session is refreshed with `grant_type=refresh_token` (RFC 6749 §6). Providers that rotate
//! refresh tokens (OAuth 2.0 Security BCP, RFC 9700 §4.14.2) revoke the whole grant when a used
//! refresh token comes back, so exactly one refresh may happen per session version across every
//! replica:
//!
//! 1. a request first looks for the refreshed session another replica published under
//!    `r:<session id>:<generation>` and adopts it (the browser gets the new cookie);
//! 2. otherwise it takes the lock `refresh:<session id>:<generation>` with set-if-absent; the
//!    winner calls the token endpoint and publishes the refreshed session (sealed, 5 minutes);
//! 3. losers keep using the current session while its tokens are valid; once they have expired,
//!    a loser waits (up to 2 s) for the winner's publication and adopts it, so the parallel
//!    requests of a page or an app coming back after the tokens expired do not end the session.
//!
//! The lock is never released early (a refresh whose outcome is unknown must not be retried with
//! the same token); it expires after [`LOCK_TTL`]. In memory mode (no L2) lock and publication are
//! per guest instance: concurrent requests on two instances can both refresh, which a provider
//! that rotates refresh tokens answers by revoking the grant (the session then ends at its
//! expiry). Use an L2 (hybrid mode) with refresh tokens in production.
//!
//! A refresh refused with `invalid_grant` ends the session (a browser goes back to login); any
//! other failure keeps the session until its tokens expire.

pub mod bench;
pub(crate) mod chunks;
pub mod data;
pub(crate) mod seal;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

pub use data::Session;

use crate::auth::oidc::{flow, token};
use crate::auth::revocation::{self, Clearance};
use crate::config::{Browser, Config, CookieSecure, NamePrefix, SessionStorage};
use crate::http::cookie::{self, CookieAttrs};
use crate::http::LogLevel;
use crate::jwt::{IdTokenValidation, Validation};
use crate::plugin::{Guard, Identity, Keys, Outcome, Principal, Req, Via};
use crate::response::Response;
use crate::store::{Class, Namespace, SetOutcome};
use crate::textkey;
use seal::{Purpose, Sealer};

/// How long the refresh lock of one session version is held (longer than a token request may
/// take: the provider client gives up after 5 s).
pub const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a refreshed session stays published for requests still carrying the old cookie.
pub const PUBLISH_TTL: Duration = Duration::from_secs(300);
/// Published refreshes followed in one request (a cookie several refreshes old).
const MAX_ADOPTIONS: usize = 4;
/// How long a request whose tokens expired waits for the refresh another replica makes.
const PUBLICATION_WAIT: Duration = Duration::from_millis(2_000);

/// Opened session cookies remembered per instance.
const CACHE_ENTRIES: usize = 16;

/// Per-instance session bookkeeping: the sealers (AES key schedules computed once per instance)
/// and a small cache of opened session cookies.
///
/// The cache maps the exact cookie text to the session it opened to, so the requests of one
/// browser on one instance pay the base64 decode, the AES-GCM open and the JSON parse once.
/// A lookup compares the presented text with the cached text under the same fingerprint, in a
/// time that depends only on the length (a hit needs the whole sealed value, which only its owner
/// has). Nothing is skipped on a hit but the decryption and, while its [`Clearance`] holds, the
/// revocation lookups: expiry and refresh are checked on every request.
#[derive(Debug)]
pub struct SessionState {
    sealers: Option<Sealers>,
    /// Opened session cookies by the [`textkey`] fingerprint of their text (randomly seeded per
    /// instance); the entry keeps the text, compared in full only on a fingerprint match, so the
    /// time a lookup takes says nothing useful about how close a guessed cookie is to a cached
    /// one.
    cache: HashMap<u64, Cached, textkey::MixedKeys>,
    seed: u64,
    uses: u64,
    /// The ID token cookie's name and the login-flow cookies' prefix (see [`hint_cookie_name`],
    /// [`flow::flow_cookie_prefix`]), made once: every forwarded session request looks for them.
    hint_cookie: String,
    flow_prefix: String,
    /// What sessions and tickets are sealed for: the middleware's identity and the
    /// [`data::selection_fingerprint`] of its claim selection, made once.
    seal_identity: String,
}

/// One opened session cookie.
struct Cached {
    text: Box<str>,
    session: Rc<Session>,
    /// What it proves, with its memoized admission (policy verdict, header values).
    principal: Rc<Principal>,
    stale_key: bool,
    /// The session's last "not revoked" verdict (see [`revocation::Clearance`]).
    clearance: Option<Clearance>,
    last_use: u64,
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cached(<redacted>)")
    }
}

/// The sealers of one instance.
#[derive(Debug)]
pub(crate) struct Sealers {
    /// Session cookies.
    pub session: Sealer,
    /// Login-flow cookies.
    pub flow: Sealer,
}

impl SessionState {
    /// Builds the state.
    pub fn new(cfg: &Config) -> Self {
        let (hint_cookie, flow_prefix, seal_identity) =
            cfg.browser.as_ref().map_or_else(Default::default, |b| {
                (
                    hint_cookie_name(b),
                    flow::flow_cookie_prefix(&b.session.cookie_prefix),
                    format!("{}:{}", cfg.identity(), data::selection_fingerprint(cfg)),
                )
            });
        SessionState {
            sealers: None,
            cache: HashMap::with_hasher(textkey::MixedKeys::new()),
            seed: textkey::seed(),
            uses: 0,
            hint_cookie,
            flow_prefix,
            seal_identity,
        }
    }

    /// The sealers, built from the derived keys on first use.
    pub(crate) fn sealers(&mut self, keys: &Keys) -> &Sealers {
        self.sealers.get_or_insert_with(|| Sealers {
            session: Sealer::new(Purpose::Session, &keys.session),
            flow: Sealer::new(Purpose::Flow, &keys.flow),
        })
    }

    /// The cached session of exactly this cookie text.
    fn cached(&mut self, text: &str) -> Option<Loaded> {
        self.uses += 1;
        let key = textkey::fingerprint(self.seed, text.as_bytes());
        let hit = self
            .cache
            .get_mut(&key)
            .filter(|c| textkey::same(c.text.as_bytes(), text.as_bytes()))?;
        hit.last_use = self.uses;
        Some(Loaded {
            session: hit.session.clone(),
            principal: Some(hit.principal.clone()),
            stale_key: hit.stale_key,
            ticket_secret: None,
            cache_key: Some(key),
            clearance: hit.clearance,
        })
    }

    /// Keeps the "not revoked" verdict of the cached session under `key`.
    fn clear(&mut self, key: u64, clearance: Clearance) {
        if let Some(c) = self.cache.get_mut(&key) {
            c.clearance = Some(clearance);
        }
    }

    /// Remembers an opened session cookie; returns its principal and its key in the cache.
    fn remember(
        &mut self,
        text: String,
        session: Rc<Session>,
        stale_key: bool,
    ) -> (Rc<Principal>, u64) {
        if self.cache.len() >= CACHE_ENTRIES {
            // Least recently used out (16 entries: a scan is cheaper than bookkeeping).
            if let Some(oldest) = self
                .cache
                .iter()
                .min_by_key(|(_, c)| c.last_use)
                .map(|(k, _)| *k)
            {
                self.cache.remove(&oldest);
            }
        }
        self.uses += 1;
        let principal = Rc::new(Principal::new(session.claims.clone()));
        let key = textkey::fingerprint(self.seed, text.as_bytes());
        self.cache.insert(
            key,
            Cached {
                text: text.into_boxed_str(),
                session,
                principal: principal.clone(),
                stale_key,
                clearance: None,
                last_use: self.uses,
            },
        );
        (principal, key)
    }
}

/// The attributes of the session cookie for this request (`Secure` follows the effective scheme
/// when `cookieSecure: auto`).
pub(crate) fn cookie_attrs(cfg: &Config, b: &Browser, req: &Req<'_>) -> CookieAttrs {
    let s = &b.session;
    CookieAttrs {
        path: s.cookie_path.clone(),
        domain: s.cookie_domain.clone(),
        secure: secure(cfg, b, req),
        http_only: true,
        same_site: match s.same_site {
            crate::config::SameSite::Lax => cookie::SameSite::Lax,
            crate::config::SameSite::Strict => cookie::SameSite::Strict,
            crate::config::SameSite::None => cookie::SameSite::None,
        },
    }
}

/// Whether cookies get `Secure` for this request.
pub(crate) fn secure(cfg: &Config, b: &Browser, req: &Req<'_>) -> bool {
    // RFC 6265bis §4.1.3: a `__Secure-`/`__Host-` name needs `Secure` whatever the scheme
    // (the configuration refuses `cookieSecure: false` with such a prefix).
    if b.session.name_prefix != NamePrefix::None {
        return true;
    }
    match b.session.cookie_secure {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => flow::https(cfg, req),
    }
}

/// Why a presented session was not accepted (for the log).
enum Refusal {
    /// Not a valid session for this middleware.
    Invalid(String),
    /// Valid once, over now (expired, revoked, refresh refused).
    Ended(&'static str),
    /// A server-side session the store no longer has: the cookie is left alone (the store may
    /// only be unreachable), the request simply has no session.
    Gone,
    /// The store cannot answer: 503, the cookie is kept.
    Unavailable(String),
}

/// A session as loaded from the request.
struct Loaded {
    session: Rc<Session>,
    /// The cached principal of this very session (same `Rc`), when there is one.
    principal: Option<Rc<Principal>>,
    /// Sealed with an older key: write it again with the newest.
    stale_key: bool,
    /// Server-side: the ticket secret (to write the ticket again after a refresh).
    ticket_secret: Option<String>,
    /// Its key in [`SessionState`]'s cache, when it is cached there.
    cache_key: Option<u64>,
    /// Its last "not revoked" verdict, if it has one.
    clearance: Option<Clearance>,
}

/// Authenticates a request by its session cookie.
// Out of line (as the other credential paths): see `Guard::handle`.
#[inline(never)]
pub fn authenticate(g: &mut Guard, req: &mut Req<'_>) -> Outcome {
    let cfg = g.cfg.clone();
    let Some(b) = cfg.browser.as_ref() else {
        return Outcome::NotPresent;
    };
    let loaded = match load(g, req, b) {
        Ok(Some(l)) => l,
        Ok(None) => return Outcome::NotPresent,
        Err(r) => return refuse(g, req, &cfg, b, r),
    };
    let Loaded {
        mut session,
        principal: cached_principal,
        stale_key,
        ticket_secret,
        cache_key,
        clearance,
    } = loaded;
    let loaded_session = Rc::clone(&session);
    let now_ms = g.clock.now_ms();
    let now = now_ms / 1000;
    if now >= session.max {
        return refuse(
            g,
            req,
            &cfg,
            b,
            Refusal::Ended("the session reached sessionMaxAge"),
        );
    }
    // A cached session's last "not revoked" verdict stands while a check would read the same L1
    // entries (see `revocation::Clearance`): a valid session then builds no marker keys.
    if !clearance.is_some_and(|c| c.holds(&g.store, now_ms)) {
        match revocation::check(&mut g.store, session.revocation_ref()) {
            Ok(Some(c)) => {
                if let Some(key) = cache_key {
                    g.sessions.clear(key, c);
                }
            }
            Ok(None) => {
                return refuse(
                    g,
                    req,
                    &cfg,
                    b,
                    Refusal::Ended("the session was logged out"),
                )
            }
            Err(e) => {
                // `fallback: deny` and the L2 cannot answer: no session can be checked.
                g.log.push((
                    LogLevel::Warn,
                    format!("oidc-guard: session revocation check failed: {e}"),
                ));
                return Outcome::Reply(Response::unavailable(
                    "The session store is unavailable; try again shortly.",
                ));
            }
        }
    }
    let mut rewrite = stale_key;
    let mut new_id_token = None;
    if session.refresh_token.is_some() && refresh_due(&session, now, b) {
        match refresh(g, &cfg, b, Rc::unwrap_or_clone(session)) {
            Refreshed::Current(s) => session = Rc::new(s),
            Refreshed::Adopted(s) => {
                session = Rc::new(s);
                // Server-side: the winner already wrote the ticket; only cookies change.
                rewrite |= b.session.storage == SessionStorage::Cookie;
            }
            Refreshed::New(s, t) => {
                session = Rc::new(s);
                new_id_token = t;
                rewrite = true;
            }
            Refreshed::Ended(why) => return refuse(g, req, &cfg, b, Refusal::Ended(why)),
        }
    }
    if now >= session.expires {
        return refuse(
            g,
            req,
            &cfg,
            b,
            Refusal::Ended("the tokens expired and were not refreshed"),
        );
    }
    if rewrite {
        if let Err(e) = persist(
            g,
            req,
            &cfg,
            b,
            &session,
            ticket_secret.as_deref(),
            new_id_token.as_deref(),
        ) {
            g.log.push((
                LogLevel::Warn,
                format!("oidc-guard: could not write the session again: {e}"),
            ));
        }
    }
    // The cached principal only while the session is the one it was made from (a refresh
    // replaces the session and its claims).
    let principal = match cached_principal {
        Some(p) if Rc::ptr_eq(&session, &loaded_session) => p,
        _ => Rc::new(Principal::new(session.claims.clone())),
    };
    Outcome::Authenticated(Identity {
        principal,
        via: Via::Session,
        access_token: cfg
            .upstream
            .access_token_header
            .as_ref()
            .and(session.access_token.clone()),
    })
}

/// Removes oidc-guard's own cookies (session and its chunks, the ID token cookie, login flows)
/// from the `Cookie` header of a request forwarded to the backend, when browser login is on and
/// `stripAuthCookies` (default): after a session or a bearer token, and on excluded paths and
/// CORS preflights. (The access token, when forwarded, is set with the identity headers.)
pub fn strip_own_cookies(g: &mut Guard, req: &mut Req<'_>) {
    let Some(b) = g.cfg.browser.as_ref() else {
        return;
    };
    if !b.session.strip_auth_cookies {
        return;
    }
    let name = b.session.cookie_name.as_str();
    let (hint, flow_prefix) = (&g.sessions.hint_cookie, &g.sessions.flow_prefix);
    let ours = |k: &str| {
        chunks::is_chunk_of(k, name)
            || chunks::is_chunk_of(k, hint)
            || textkey::starts_with(k.as_bytes(), flow_prefix.as_bytes())
    };
    let (mut mine, mut others) = (false, false);
    for (k, _) in req.cookie_pairs() {
        if ours(k) {
            mine = true;
        } else {
            others = true;
        }
    }
    if !mine {
        return;
    }
    // Only ours (a browser that visits this site alone): the header goes, nothing to rebuild.
    if !others {
        req.ex.remove_header("Cookie");
        return;
    }
    match cookie::rebuild(req.cookie_pairs(), ours) {
        Some(v) => req.ex.set_header("Cookie", &v),
        None => req.ex.remove_header("Cookie"),
    }
}

/// Records the refusal, deletes the cookies that carried it (so the browser stops sending
/// them), and lets the pipeline start a login or answer 401.
fn refuse(g: &mut Guard, req: &mut Req<'_>, cfg: &Config, b: &Browser, r: Refusal) -> Outcome {
    let msg = match r {
        Refusal::Invalid(why) => format!("oidc-guard: session cookie refused: {why}"),
        Refusal::Ended(why) => format!("oidc-guard: session ended: {why}"),
        Refusal::Gone => {
            g.log.push((
                LogLevel::Debug,
                "oidc-guard: the server-side session of the ticket is gone".into(),
            ));
            return Outcome::NotPresent;
        }
        Refusal::Unavailable(why) => {
            g.log.push((
                LogLevel::Warn,
                format!("oidc-guard: session store unavailable: {why}"),
            ));
            return Outcome::Reply(Response::unavailable(
                "The session store is unavailable; try again shortly.",
            ));
        }
    };
    g.log.push((LogLevel::Debug, msg));
    let attrs = cookie_attrs(cfg, b, req);
    let lines = chunks::clear(&b.session.cookie_name, &attrs, req.cookies());
    req.set_cookies.extend(lines);
    Outcome::NotPresent
}

/// Most cookies of the session's name tried in one request.
const MAX_SAME_NAME: usize = 4;

/// Loads the session the request carries: `Ok(None)` when it carries none.
///
/// A browser sends every cookie whose domain and path match, so a request can carry several of
/// the session's name: another deployment's with `cookieDomain` set to a parent domain, one left
/// from an older configuration. The first that opens is the session; trying only the first
/// would send the user round the login forever (the foreign cookie cannot be deleted from here).
fn load(g: &mut Guard, req: &Req<'_>, b: &Browser) -> Result<Option<Loaded>, Refusal> {
    let name = b.session.cookie_name.as_str();
    // (`textkey::same`, not `==`: see `textkey::starts_with`.)
    let values = req
        .cookie_pairs()
        .filter(|(k, _)| textkey::same(k.as_bytes(), name.as_bytes()))
        .map(|(_, v)| v)
        .take(MAX_SAME_NAME);
    let mut first_refusal = None;
    // The chunk counts of the chunked values before this one (all refused: the first that opens
    // is returned).
    let mut chunked = [0usize; MAX_SAME_NAME];
    let mut n_chunked = 0;
    for value in values {
        match load_one(g, req, b, value, chunked.get(..n_chunked).unwrap_or(&[])) {
            Ok(loaded) => return Ok(Some(loaded)),
            // The store cannot answer: the other cookies cannot be checked either.
            Err(r @ Refusal::Unavailable(_)) => return Err(r),
            Err(r) => {
                if let (Some(n), Some(slot)) = (chunks::count(value), chunked.get_mut(n_chunked)) {
                    *slot = n;
                    n_chunked += 1;
                }
                first_refusal.get_or_insert(r);
            }
        }
    }
    first_refusal.map_or(Ok(None), Err)
}

/// Opens one cookie value of the session's name; `before`: the chunk counts of the chunked values
/// of the name that came before it (see [`chunks::assemble`]).
fn load_one(
    g: &mut Guard,
    req: &Req<'_>,
    b: &Browser,
    value: &str,
    before: &[usize],
) -> Result<Loaded, Refusal> {
    let name = b.session.cookie_name.as_str();
    match b.session.storage {
        SessionStorage::Cookie => {
            // A value in one cookie (the usual case) is looked up as it is, without a copy.
            let text: Cow<'_, str> = if !chunks::may_be_chunked(value) {
                Cow::Borrowed(value)
            } else {
                Cow::Owned(
                    chunks::assemble(req.cookies(), name, value, before).ok_or_else(|| {
                        Refusal::Invalid(
                            "a chunk of the session cookie is missing or malformed".into(),
                        )
                    })?,
                )
            };
            if let Some(loaded) = g.sessions.cached(&text) {
                return Ok(loaded);
            }
            let identity = g.sessions.seal_identity.clone();
            let sealer = &g.sessions.sealers(&g.keys).session;
            let opened = sealer
                .open(&identity, name, &text)
                .map_err(|e| Refusal::Invalid(format!("{e} ({NOT_OURS})")))?;
            let session = Session::decode(&opened.plaintext)
                .ok_or_else(|| Refusal::Invalid("the sealed value is not a session".into()))?;
            let session = Rc::new(session);
            let (principal, key) =
                g.sessions
                    .remember(text.into_owned(), session.clone(), opened.stale_key);
            Ok(Loaded {
                session,
                principal: Some(principal),
                stale_key: opened.stale_key,
                ticket_secret: None,
                cache_key: Some(key),
                clearance: None,
            })
        }
        SessionStorage::Server => {
            let (id, secret) = parse_ticket(value)
                .ok_or_else(|| Refusal::Invalid("not a session ticket".into()))?;
            let stored = match g.store.get(Namespace::SESSION, &ticket_key(id)) {
                Ok(Some(v)) => v,
                Ok(None) => return Err(Refusal::Gone),
                Err(e) => return Err(Refusal::Unavailable(e.to_string())),
            };
            let identity = g.sessions.seal_identity.clone();
            let opened = ticket_sealer(secret)
                .open(&identity, id, std::str::from_utf8(&stored).unwrap_or(""))
                .map_err(|_| {
                    Refusal::Invalid(format!(
                        "the ticket's secret does not open the stored session ({NOT_OURS})"
                    ))
                })?;
            let session = Session::decode(&opened.plaintext)
                .filter(|s| s.id == id)
                .ok_or_else(|| {
                    Refusal::Invalid("the stored value is not this ticket's session".into())
                })?;
            Ok(Loaded {
                session: Rc::new(session),
                principal: None,
                stale_key: false,
                ticket_secret: Some(secret.to_string()),
                cache_key: None,
                clearance: None,
            })
        }
    }
}

/// The likely causes of a session that does not open, for the log: sessions are sealed for the
/// middleware's identity and its claim selection ([`data::selection_fingerprint`]).
const NOT_OURS: &str = "tampered, sealed with a key no longer listed, or sealed by another middleware with this cookie name or by this one under another access policy or other claimHeaders; give each middleware its own cookiePrefix and instanceName";

fn ticket_key(id: &str) -> String {
    format!("t:{id}")
}

fn ticket_sealer(secret: &str) -> Sealer {
    let key = crate::crypto::derive_key(secret.as_bytes(), "session-ticket");
    Sealer::new(Purpose::Ticket, &[key])
}

/// `<id>~<secret>`: a 22-character and a 43-character base64url string (128 and 256 bits).
fn parse_ticket(text: &str) -> Option<(&str, &str)> {
    let (id, secret) = text.split_once('~')?;
    let b64 = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    (id.len() == 22 && secret.len() == 43 && b64(id) && b64(secret)).then_some((id, secret))
}

/// Writes `session` for the browser: sealed cookies, or the ticket in the store plus its cookie.
/// `ticket_secret` is the secret of an existing ticket (server-side sessions keep their ticket
/// across refreshes); `None` draws a new one. `id_token` (cookie sessions) is written to the
/// logout-path cookie for `id_token_hint`.
///
/// # Errors
/// A log-safe message when the session cannot be written (too large for cookies, store refused,
/// random source failed).
pub(crate) fn persist(
    g: &mut Guard,
    req: &mut Req<'_>,
    cfg: &Config,
    b: &Browser,
    session: &Session,
    ticket_secret: Option<&str>,
    id_token: Option<&str>,
) -> Result<(), String> {
    let now = g.clock.now_ms() / 1000;
    let max_age = session.max.saturating_sub(now).max(1);
    let attrs = cookie_attrs(cfg, b, req);
    let name = b.session.cookie_name.as_str();
    let plaintext = session.encode().map_err(|e| e.to_string())?;
    let identity = cfg.identity().to_string();
    match b.session.storage {
        SessionStorage::Cookie => {
            let seal_identity = g.sessions.seal_identity.clone();
            let sealed = g
                .sessions
                .sealers(&g.keys)
                .session
                .seal(&seal_identity, name, &plaintext)
                .map_err(|e| e.to_string())?;
            let lines = chunks::write(name, &sealed, &attrs, max_age, req.cookies())?;
            req.set_cookies.extend(lines);
            if let Some(t) = id_token {
                let hint_name = hint_cookie_name(b);
                let plain = format!("{}\n{t}", session.id);
                let sealed = g
                    .sessions
                    .sealers(&g.keys)
                    .session
                    .seal(&identity, &hint_name, plain.as_bytes())
                    .map_err(|e| e.to_string())?;
                let hint_attrs = hint_attrs(cfg, b, req);
                match chunks::write(&hint_name, &sealed, &hint_attrs, max_age, req.cookies()) {
                    Ok(lines) => req.set_cookies.extend(lines),
                    // Logout then sends client_id without id_token_hint.
                    Err(why) => g.log.push((
                        LogLevel::Info,
                        format!("oidc-guard: the ID token is not kept for logout: {why}"),
                    )),
                }
            }
        }
        SessionStorage::Server => {
            let secret = match ticket_secret {
                Some(s) => s.to_string(),
                None => crate::rand::token::<32>().map_err(|e| e.to_string())?,
            };
            let sealed = ticket_sealer(&secret)
                .seal(&g.sessions.seal_identity, &session.id, &plaintext)
                .map_err(|e| e.to_string())?;
            g.store
                .set(
                    Namespace::SESSION,
                    &ticket_key(&session.id),
                    sealed.as_bytes(),
                    Duration::from_secs(max_age),
                    Class::Confidential,
                )
                .map_err(|e| format!("storing the session ticket: {e}"))?;
            if ticket_secret.is_none() {
                let value = format!("{}~{secret}", session.id);
                req.set_cookies
                    .push(cookie::set_cookie(name, &value, &attrs, Some(max_age)));
                req.set_cookies.extend(
                    chunks::clear(name, &attrs, req.cookies())
                        .into_iter()
                        .skip(1),
                );
            }
        }
    }
    Ok(())
}

/// The cookie holding the ID token for `id_token_hint` (cookie sessions): `<prefix>idt`.
///
/// Under a `__Host-` prefix it is `__Secure-<rest of the prefix>idt` instead: a `__Host-` cookie
/// must have `Path=/` and would then ride along on every request, while this one is wanted at
/// the logout path only. Not being `__Host-` it could be planted by a sibling subdomain, which
/// gains little: with a session only the hint sealed for it is used; without one a planted hint
/// names another ID token to the provider's logout.
fn hint_cookie_name(b: &Browser) -> String {
    let prefix = &b.session.cookie_prefix;
    match (b.session.name_prefix, prefix.get(NamePrefix::HOST.len()..)) {
        (NamePrefix::Host, Some(rest)) => format!("{}{rest}idt", NamePrefix::SECURE),
        _ => format!("{prefix}idt"),
    }
}

/// The ID token cookie is scoped to the logout path: browsers send it there only, so it costs
/// nothing on other requests.
fn hint_attrs(cfg: &Config, b: &Browser, req: &Req<'_>) -> CookieAttrs {
    CookieAttrs {
        path: b.login.logout.path().to_string(),
        ..cookie_attrs(cfg, b, req)
    }
}

/// Ends the session the request carries (RP-initiated logout): writes its revocation marker,
/// removes server-side data, deletes the cookies. Returns the session, if one was presented, and
/// the ID token for `id_token_hint`, if one was kept (and belongs to that session).
pub(crate) fn end(g: &mut Guard, req: &mut Req<'_>) -> (Option<Session>, Option<String>) {
    let cfg = g.cfg.clone();
    let Some(b) = cfg.browser.as_ref() else {
        return (None, None);
    };
    let loaded = load(g, req, b).ok().flatten();
    let attrs = cookie_attrs(&cfg, b, req);
    let lines = chunks::clear(&b.session.cookie_name, &attrs, req.cookies());
    req.set_cookies.extend(lines);
    let session = loaded.map(|l| Rc::unwrap_or_clone(l.session));
    let mut hint = session.as_ref().and_then(|s| s.id_token.clone());
    if b.session.storage == SessionStorage::Cookie {
        let hint_name = hint_cookie_name(b);
        if let Some(text) = chunks::read(req.cookies(), &hint_name) {
            let identity = cfg.identity().to_string();
            let opened = g
                .sessions
                .sealers(&g.keys)
                .session
                .open(&identity, &hint_name, &text);
            if let Ok(o) = opened {
                let plain = String::from_utf8(o.plaintext).unwrap_or_default();
                if let Some((id, token)) = plain.split_once('\n') {
                    if session.as_ref().is_none_or(|s| s.id == id) {
                        hint = Some(token.to_string());
                    }
                }
            }
            let lines = chunks::clear(&hint_name, &hint_attrs(&cfg, b, req), req.cookies());
            req.set_cookies.extend(lines);
        }
    }
    let Some(session) = session else {
        return (None, hint);
    };
    let now = g.clock.now_ms() / 1000;
    // The marker must outlive every copy of the session: until its absolute end.
    let ttl = Duration::from_secs(session.max.saturating_sub(now).max(1));
    if let Err(e) = revocation::revoke_session(&mut g.store, &session.id, ttl) {
        g.log.push((
            LogLevel::Warn,
            format!("oidc-guard: logout: the revocation marker did not reach the shared store ({e}); other replicas accept the session until it expires"),
        ));
    }
    if b.session.storage == SessionStorage::Server {
        let _ = g.store.delete(Namespace::SESSION, &ticket_key(&session.id));
    }
    (Some(session), hint)
}

/// The outcome of a refresh attempt.
enum Refreshed {
    /// Not refreshed now (another request holds the lock, or the provider failed): the current
    /// session.
    Current(Session),
    /// Another replica refreshed it: its published version.
    Adopted(Session),
    /// Refreshed by this request, with the new ID token if the provider sent one.
    New(Session, Option<String>),
    /// The provider refused the refresh token: the session is over.
    Ended(&'static str),
}

/// Whether the session's tokens are to be refreshed now: within `refreshGracePeriod` of their
/// expiry; tokens that live no longer than the grace period half-way through their lifetime, or
/// they would be refreshed on every request (each refresh is a token request, and its tokens
/// would be inside the grace period from the start).
fn refresh_due(s: &Session, now: u64, b: &Browser) -> bool {
    let grace = b.session.refresh_grace_period.as_secs();
    let lifetime = s.expires.saturating_sub(s.issued);
    let lead = if s.issued > 0 && lifetime <= grace {
        lifetime / 2
    } else {
        grace
    };
    now.saturating_add(lead) >= s.expires
}

/// What the refresh lock's holder published for one session version (`r:<id>:<generation>`).
enum Published {
    /// The refreshed session.
    Session(Box<Session>),
    /// The refresh failed ([`REFRESH_FAILED`]): nobody refreshes this version until the lock
    /// expires.
    Failed,
    /// Nothing (yet).
    Nothing,
}

/// What marks a failed refresh in place of the refreshed session (never a session's JSON).
const REFRESH_FAILED: &[u8] = b"-";

/// What another replica published for `version` of `session`.
///
/// Not from a remembered miss: in hybrid mode a cached "absent" can outlive the other replica's
/// lock (negativeTTL may exceed LOCK_TTL), and refreshing twice spends a rotated refresh token.
fn published(g: &mut Guard, session: &Session, version: &str) -> Published {
    let Ok(Some(bytes)) = g
        .store
        .get_unless_absent_cached(Namespace::SESSION, &format!("r:{version}"))
    else {
        return Published::Nothing;
    };
    if bytes == REFRESH_FAILED {
        return Published::Failed;
    }
    Session::decode(&bytes)
        .filter(|n| n.id == session.id && n.generation == session.generation.saturating_add(1))
        .map_or(Published::Nothing, |s| Published::Session(Box::new(s)))
}

/// Waits for the refreshed session of the replica that holds the refresh lock, when the current
/// tokens have expired and cannot serve meanwhile: the parallel requests of a page or an app
/// coming back after the tokens expired would otherwise each end the session (and delete the
/// cookies the winner's response sets). Polls with a growing pause, [`PUBLICATION_WAIT`] at
/// most; stops at once when the winner marks its refresh failed.
fn await_publication(g: &mut Guard, session: &Session, version: &str) -> Option<Session> {
    // Bounded by the clock, not by the pauses: each poll may wait on the L2 as well.
    let wait_ms = u64::try_from(PUBLICATION_WAIT.as_millis()).unwrap_or(u64::MAX);
    let deadline = g.clock.now_ms().saturating_add(wait_ms);
    let mut pause = Duration::from_millis(20);
    loop {
        let left = deadline.saturating_sub(g.clock.now_ms());
        if left == 0 {
            return None;
        }
        g.clock.sleep(pause.min(Duration::from_millis(left)));
        pause = (pause * 2).min(Duration::from_millis(320));
        match published(g, session, version) {
            Published::Session(next) => return Some(*next),
            Published::Failed => return None,
            Published::Nothing => {}
        }
    }
}

/// Tells the requests waiting for this version's refresh ([`await_publication`]) that none is
/// coming.
fn publish_failure(g: &mut Guard, version: &str) {
    // Best effort: without it the waiters give up after PUBLICATION_WAIT.
    let _ = g.store.set(
        Namespace::SESSION,
        &format!("r:{version}"),
        REFRESH_FAILED,
        LOCK_TTL,
        Class::Confidential,
    );
}

fn refresh(g: &mut Guard, cfg: &Config, b: &Browser, mut session: Session) -> Refreshed {
    let mut adopted = false;
    for _ in 0..MAX_ADOPTIONS {
        let version = format!("{}:{}", session.id, session.generation);
        // 1. Already refreshed elsewhere (or failed there: not again with the same token)?
        match published(g, &session, &version) {
            Published::Session(next) => {
                session = *next;
                adopted = true;
                let now = g.clock.now_ms() / 1000;
                if session.refresh_token.is_some() && refresh_due(&session, now, b) {
                    continue;
                }
                break;
            }
            Published::Failed => break,
            Published::Nothing => {}
        }
        // 2. Take the lock for this version.
        let outcome = g.store.set_if_absent(
            Namespace::LOCK,
            &format!("refresh:{version}"),
            LOCK_TTL,
            Class::Cache,
        );
        if outcome == Ok(SetOutcome::AlreadyUsed) && g.clock.now_ms() / 1000 >= session.expires {
            // 3. Another replica refreshes; these tokens have expired: wait for its result.
            let since = g.clock.now_ms();
            let next = await_publication(g, &session, &version);
            let waited = g.clock.now_ms().saturating_sub(since);
            g.log.push((
                LogLevel::Debug,
                format!(
                    "oidc-guard: waited {waited} ms for the refresh another request makes: {}",
                    if next.is_some() {
                        "adopted"
                    } else {
                        "none came"
                    }
                ),
            ));
            if let Some(next) = next {
                session = next;
                adopted = true;
            }
            break;
        }
        if outcome != Ok(SetOutcome::Won) {
            break;
        }
        return match refresh_now(g, cfg, b, &session) {
            Ok((next, id_token)) => {
                if let Ok(bytes) = next.encode() {
                    if let Err(e) = g.store.set(
                        Namespace::SESSION,
                        &format!("r:{version}"),
                        &bytes,
                        PUBLISH_TTL,
                        Class::Confidential,
                    ) {
                        g.log.push((
                            LogLevel::Warn,
                            format!("oidc-guard: refresh: the refreshed session could not be shared ({e}); requests with the old cookie on other replicas keep the old session until it expires"),
                        ));
                    }
                }
                Refreshed::New(next, id_token)
            }
            Err(RefreshError::Ended(why)) => {
                publish_failure(g, &version);
                Refreshed::Ended(why)
            }
            Err(RefreshError::Failed(why)) => {
                publish_failure(g, &version);
                g.log.push((LogLevel::Warn, format!("oidc-guard: refresh failed: {why}; the session is used until its tokens expire")));
                if adopted {
                    Refreshed::Adopted(session)
                } else {
                    Refreshed::Current(session)
                }
            }
        };
    }
    if adopted {
        Refreshed::Adopted(session)
    } else {
        Refreshed::Current(session)
    }
}

enum RefreshError {
    Ended(&'static str),
    Failed(String),
}

/// One refresh at the token endpoint (RFC 6749 §6), and the refreshed ID token's checks
/// (OIDC Core 12.2).
fn refresh_now(
    g: &mut Guard,
    cfg: &Config,
    b: &Browser,
    old: &Session,
) -> Result<(Session, Option<String>), RefreshError> {
    let Some(rt) = old.refresh_token.clone() else {
        return Err(RefreshError::Failed("no refresh token".into()));
    };
    let (issuer, endpoint) = {
        let (p, mut d) = g.provider_deps();
        let md = p
            .metadata(&mut d)
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        let issuer = p
            .issuer(&mut d)
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        (issuer, md.token_endpoint.clone())
    };
    let endpoint = endpoint
        .ok_or_else(|| RefreshError::Failed("the provider has no token_endpoint".into()))?;
    let resp = token::request(
        g,
        &b.client,
        &endpoint,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .map_err(|e| match e {
        // RFC 6749 §5.2: the refresh token is invalid, expired or revoked.
        token::TokenError::Refused { ref error, .. } if error == "invalid_grant" => {
            RefreshError::Ended("the provider refused the refresh token (invalid_grant)")
        }
        other => RefreshError::Failed(other.to_string()),
    })?;
    let now_ms = g.clock.now_ms();
    let now = now_ms / 1000;
    let mut next = old.clone();
    next.generation = old.generation.saturating_add(1);
    if let Some(rt) = resp.refresh_token.clone() {
        next.refresh_token = Some(rt);
    }
    if cfg.upstream.access_token_header.is_some() {
        next.access_token = Some(resp.access_token.clone());
    }
    let mut expires = resp.expires_in.map(|s| now.saturating_add(s));
    if let Some(id_token) = resp.id_token.as_deref() {
        let validation = IdTokenValidation::new(Validation::new(issuer), b.client.id.clone());
        let (p, mut d) = g.provider_deps();
        let claims = p
            .verify(&mut d, |keys| validation.verify(id_token, keys, None, now))
            .map_err(|e| {
                RefreshError::Failed(format!("the refreshed ID token was refused: {e:?}"))
            })?;
        // OIDC Core 12.2: same iss (checked), same sub, same aud (checked).
        if claims.sub() != Some(old.sub.as_str()) {
            return Err(RefreshError::Ended(
                "the refreshed ID token names another subject",
            ));
        }
        if let Some(exp) = claims.exp().and_then(|e| u64::try_from(e).ok()) {
            expires = Some(expires.map_or(exp, |e| e.min(exp)));
        }
        if let Some(sid) = claims.sid() {
            next.provider_sid = Some(sid.to_string());
        }
        next.claims = data::select_claims(cfg, claims.as_map());
        if b.session.storage == SessionStorage::Server {
            next.id_token = Some(id_token.to_string());
        }
    }
    // Without any lifetime (`expires_in` is only RECOMMENDED, RFC 6749 §5.1, and no ID token
    // came) the new tokens are taken to last as long as the ones they replace. Should that not
    // make sense (an issue time not before the old expiry), the old expiry stays and the refresh
    // token goes: that expiry is inside the grace period (this refresh was made for it), so
    // keeping both would refresh again on every request; the session ends then instead.
    next.issued = now;
    next.expires = match expires {
        Some(e) => e,
        None if old.issued > 0 && old.issued < old.expires => {
            now.saturating_add(old.expires - old.issued)
        }
        None => {
            next.refresh_token = None;
            old.expires
        }
    }
    .min(next.max);
    let cookie_hint = resp
        .id_token
        .filter(|_| b.session.storage == SessionStorage::Cookie);
    Ok((next, cookie_hint))
}
