//! The browser login, natively: the whole pipeline ([`Plugin`]) with a scripted provider (its
//! discovery document, JWKS and token endpoint answer from tables; ID tokens are minted here with
//! the test's own keys), a manual clock, and a small cookie jar.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::clock::ManualClock;
use crate::config::{Config, Platform};
use crate::net::http::{Fetch, FetchError, HttpRequest, HttpResponse};
use crate::plugin::{Parts, Plugin};
use crate::store::fake::{FakeL2, FakeState};
use crate::testkit::{b64, EcKey, FakeExchange};

pub(crate) const ISSUER: &str = "https://idp.test";
pub(crate) const TOKEN: &str = "https://idp.test/token";
pub(crate) const KEY1: &str = "first-session-key-0123456789abcdef";
pub(crate) const KEY2: &str = "second-session-key-0123456789abcdef";
pub(crate) const T0: u64 = 1_700_000_000_000;

/// The provider's side: routes, per-URL answer queues, recorded requests.
#[derive(Default)]
pub(crate) struct Net {
    routes: HashMap<String, (u16, String)>,
    queues: HashMap<String, VecDeque<(u16, String)>>,
    pub requests: Vec<HttpRequest>,
    pub down: bool,
}

#[derive(Clone, Default)]
pub(crate) struct SharedNet(pub Rc<RefCell<Net>>);

impl Fetch for SharedNet {
    fn fetch(&mut self, req: &HttpRequest) -> Result<HttpResponse, FetchError> {
        let mut n = self.0.borrow_mut();
        n.requests.push(req.clone());
        if n.down {
            return Err(FetchError::Connect("refused".into()));
        }
        let answer = n
            .queues
            .get_mut(&req.url)
            .and_then(VecDeque::pop_front)
            .or_else(|| n.routes.get(&req.url).cloned());
        let (status, body) = answer.unwrap_or((404, String::new()));
        Ok(HttpResponse {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into_bytes(),
        })
    }
}

impl SharedNet {
    pub fn token_requests(&self) -> Vec<HttpRequest> {
        self.0
            .borrow()
            .requests
            .iter()
            .filter(|r| r.url == TOKEN)
            .cloned()
            .collect()
    }
}

/// The scripted provider.
pub(crate) struct Idp {
    pub key: EcKey,
    pub net: SharedNet,
}

impl Idp {
    pub fn new() -> Idp {
        let key = EcKey::generate("k1");
        let net = SharedNet::default();
        {
            let mut n = net.0.borrow_mut();
            let disco = json!({
                "issuer": ISSUER,
                "authorization_endpoint": "https://idp.test/auth",
                "token_endpoint": TOKEN,
                "jwks_uri": "https://idp.test/jwks",
                "end_session_endpoint": "https://idp.test/session/end",
                "code_challenge_methods_supported": ["S256"],
            });
            n.routes.insert(
                format!("{ISSUER}/.well-known/openid-configuration"),
                (200, disco.to_string()),
            );
            n.routes
                .insert("https://idp.test/jwks".into(), (200, key.jwks()));
        }
        Idp { key, net }
    }

    /// ID token claims for `nonce` at `now_s` (alice, 5 minutes).
    pub fn claims(nonce: &str, now_s: u64) -> Value {
        json!({
            "iss": ISSUER, "aud": "app", "sub": "alice", "nonce": nonce,
            "iat": now_s, "exp": now_s + 300, "sid": "idp-sid-1",
            "email": "alice@example.com", "email_verified": true,
            "groups": ["admins", "devs"], "name": "Alice",
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.key.sign(json!({}), claims)
    }

    /// Queues the next token endpoint answer.
    pub fn answer(&self, status: u16, body: Value) {
        self.net
            .0
            .borrow_mut()
            .queues
            .entry(TOKEN.into())
            .or_default()
            .push_back((status, body.to_string()));
    }

    pub fn tokens(&self, id_token: &str, refresh: Option<&str>, expires_in: u64) -> Value {
        let mut v = json!({"access_token": "at-1", "token_type": "Bearer", "id_token": id_token, "expires_in": expires_in});
        if let Some(r) = refresh {
            v["refresh_token"] = json!(r);
        }
        v
    }
}

pub(crate) fn base_config() -> Value {
    json!({
        "providerURL": ISSUER,
        "clientID": "app",
        "clientSecret": "app secret/+",
        "sessionEncryptionKey": KEY1,
        "postLogoutRedirectURI": "/bye",
    })
}

pub(crate) fn merge(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// A plugin with the scripted provider; `l2` makes it hybrid over a (shared) fake L2.
pub(crate) fn plugin(
    cfg: &Value,
    idp: &Idp,
    clock: &Rc<ManualClock>,
    l2: Option<FakeL2>,
) -> Plugin {
    let platform = Platform {
        bridge_present: l2.is_some(),
    };
    let cfg = Config::parse(
        cfg.to_string().as_bytes(),
        &|_| None,
        &|_| Err(std::io::ErrorKind::NotFound.into()),
        platform,
    )
    .unwrap();
    let parts = Parts {
        clock: clock.clone(),
        l2: l2.map(|f| Box::new(f) as Box<dyn crate::store::L2>),
        fetch: Box::new(idp.net.clone()),
    };
    Plugin::with_parts(cfg, parts)
}

pub(crate) fn fake_l2(clock: &Rc<ManualClock>) -> (FakeL2, Rc<RefCell<FakeState>>) {
    FakeL2::new(clock.clone())
}

/// A cookie jar: name → value, updated from `Set-Cookie` lines.
#[derive(Default, Clone, Debug)]
pub(crate) struct Jar(pub Vec<(String, String)>);

impl Jar {
    pub fn apply(&mut self, lines: &[String]) {
        for l in lines {
            let nv = l.split(';').next().unwrap();
            let (n, v) = nv.split_once('=').unwrap();
            self.0.retain(|(k, _)| k != n);
            if !l.contains("Max-Age=0") {
                self.0.push((n.to_string(), v.to_string()));
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.0.retain(|(k, _)| k != name);
        self.0.push((name.into(), value.into()));
    }

    pub fn session_names(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("_oidc_guard_session"))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// What one request did.
pub(crate) struct Sent {
    pub forwarded: bool,
    pub status: Option<u16>,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
    pub ex: FakeExchange,
}

/// Sends a browser navigation with the jar's cookies and applies the answer's cookies.
pub(crate) fn nav(p: &mut Plugin, jar: &mut Jar, uri: &str) -> Sent {
    send(p, jar, FakeExchange::get(uri).with("Accept", "text/html"))
}

pub(crate) fn send(p: &mut Plugin, jar: &mut Jar, ex: FakeExchange) -> Sent {
    let ex = ex.with("Host", "app.test");
    let ex = if jar.0.is_empty() {
        ex
    } else {
        ex.with("Cookie", &jar.header())
    };
    let forwarded = p.handle(&ex);
    let (status, location, set_cookies, body) = if forwarded {
        let sc = ex
            .response_headers
            .borrow()
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .collect();
        (None, None, sc, String::new())
    } else {
        let body = ex
            .sent
            .borrow()
            .as_ref()
            .map(|s| String::from_utf8_lossy(&s.2).into_owned())
            .unwrap_or_default();
        (
            ex.status(),
            ex.sent_header("location").into_iter().next(),
            ex.sent_header("set-cookie"),
            body,
        )
    };
    jar.apply(&set_cookies);
    Sent {
        forwarded,
        status,
        location,
        set_cookies,
        body,
        ex,
    }
}

pub(crate) fn query(url: &str, key: &str) -> Option<String> {
    crate::http::form::value(url.split_once('?')?.1, key)
}

/// Starts a login at `uri`; returns the authorization request URL.
pub(crate) fn start(p: &mut Plugin, jar: &mut Jar, uri: &str) -> String {
    let s = nav(p, jar, uri);
    assert_eq!(s.status, Some(302), "{}", s.body);
    s.location.unwrap()
}

/// The callback for an authorization request, with the provider's answer already queued.
pub(crate) fn callback(p: &mut Plugin, jar: &mut Jar, auth_url: &str, code: &str) -> Sent {
    let state = query(auth_url, "state").unwrap();
    let uri = format!(
        "/oauth2/callback?code={code}&state={state}&iss={}",
        crate::http::form::encode(ISSUER)
    );
    nav(p, jar, &uri)
}

/// A full login as alice: returns the callback's result.
pub(crate) fn login(
    p: &mut Plugin,
    jar: &mut Jar,
    idp: &Idp,
    clock: &ManualClock,
    uri: &str,
    refresh: Option<&str>,
    ttl: u64,
) -> Sent {
    let auth = start(p, jar, uri);
    let nonce = query(&auth, "nonce").unwrap();
    let mut claims = Idp::claims(&nonce, clock.now_ms() / 1000);
    claims["exp"] = json!(clock.now_ms() / 1000 + ttl);
    idp.answer(200, idp.tokens(&idp.sign(&claims), refresh, ttl));
    callback(p, jar, &auth, "code-1")
}

use crate::clock::Clock as _;

fn setup(extra: Value) -> (Plugin, Idp, Rc<ManualClock>, Jar) {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let p = plugin(&merge(base_config(), extra), &idp, &clock, None);
    (p, idp, clock, Jar::default())
}

#[test]
fn authorization_request_follows_oidc_core_and_rfc7636() {
    let (mut p, _idp, _clock, mut jar) = setup(json!({}));
    let s = nav(&mut p, &mut jar, "/app/page?x=1&y=%2F");
    assert_eq!(s.status, Some(302));
    let loc = s.location.unwrap();
    assert!(loc.starts_with("https://idp.test/auth?"), "{loc}");
    assert_eq!(query(&loc, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&loc, "client_id").as_deref(), Some("app"));
    assert_eq!(
        query(&loc, "redirect_uri").as_deref(),
        Some("http://app.test/oauth2/callback")
    );
    assert_eq!(
        query(&loc, "scope").as_deref(),
        Some("openid profile email")
    );
    assert_eq!(
        query(&loc, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let state = query(&loc, "state").unwrap();
    let nonce = query(&loc, "nonce").unwrap();
    assert!(state.len() >= 32 && nonce.len() >= 32 && state != nonce);
    assert_eq!(query(&loc, "code_challenge").unwrap().len(), 43);
    // One flow cookie, scoped to the callback, HttpOnly, SameSite=Lax, ten minutes.
    assert_eq!(s.set_cookies.len(), 1);
    let c = &s.set_cookies[0];
    assert!(
        c.starts_with(&format!("_oidc_guard_flow_{}=", &state[..12])),
        "{c}"
    );
    assert!(
        c.contains("Path=/oauth2/callback")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Lax")
            && c.contains("Max-Age=600"),
        "{c}"
    );
    assert!(
        !c.contains("Secure"),
        "plain http request: no Secure under cookieSecure auto"
    );
    // A second tab gets its own state and cookie.
    let s2 = nav(&mut p, &mut jar, "/other");
    let state2 = query(s2.location.as_deref().unwrap(), "state").unwrap();
    assert_ne!(state, state2);
    assert_eq!(jar.0.len(), 2);
}

/// The sealed session is a credential: no request the plugin forwards carries it, whether its
/// session authenticated it or not (an excluded path, a CORS preflight).
#[test]
fn own_cookies_never_reach_the_backend() {
    let (mut p, idp, clock, mut jar) = setup(json!({
        "excludedURLs": ["/public"],
        "skipAuthPreflight": true,
        "bearer": {"enabled": true},
    }));
    let cb = login(&mut p, &mut jar, &idp, &clock, "/app", None, 300);
    assert_eq!(cb.status, Some(302), "{}", cb.body);
    jar.set("other", "kept");
    let public = nav(&mut p, &mut jar, "/public/x");
    let mut claims = Idp::claims("-", clock.now_ms() / 1000);
    claims.as_object_mut().unwrap().remove("nonce");
    claims["scope"] = json!("openid");
    let api = send(
        &mut p,
        &mut jar,
        FakeExchange::get("/api").with("Authorization", &format!("Bearer {}", idp.sign(&claims))),
    );
    let mut preflight = FakeExchange::get("/api")
        .with("Origin", "https://x.test")
        .with("Access-Control-Request-Method", "GET");
    preflight.method = "OPTIONS".into();
    let preflight = send(&mut p, &mut jar, preflight);
    let app = nav(&mut p, &mut jar, "/app");
    for (what, s) in [
        ("excluded", public),
        ("preflight", preflight),
        ("session", app),
        ("bearer", api),
    ] {
        assert!(s.forwarded, "{what}");
        assert_eq!(
            s.ex.upstream_header("cookie").as_deref(),
            Some("other=kept"),
            "{what}"
        );
    }
    // Only ours: the header goes.
    jar.0.retain(|(k, _)| k != "other");
    let s = nav(&mut p, &mut jar, "/public/y");
    assert!(s.forwarded);
    assert_eq!(s.ex.upstream_header("cookie"), None);
    // stripAuthCookies: false forwards them as sent.
    let (mut p, idp, clock, mut jar) =
        setup(json!({"excludedURLs": ["/public"], "stripAuthCookies": false}));
    login(&mut p, &mut jar, &idp, &clock, "/app", None, 300);
    let s = nav(&mut p, &mut jar, "/public/x");
    assert!(s
        .ex
        .upstream_header("cookie")
        .is_some_and(|c| c.contains("_oidc_guard_session=")));
}

#[test]
fn full_login_then_session_then_logout() {
    let (mut p, idp, clock, mut jar) = setup(json!({"claimHeaders": {"X-Email": "email"}}));
    let auth = start(&mut p, &mut jar, "/app/page?x=1");
    let nonce = query(&auth, "nonce").unwrap();
    let challenge = query(&auth, "code_challenge").unwrap();
    let id_token = idp.sign(&Idp::claims(&nonce, T0 / 1000));
    idp.answer(200, idp.tokens(&id_token, Some("rt-1"), 300));
    let cb = callback(&mut p, &mut jar, &auth, "the-code");
    assert_eq!(cb.status, Some(302), "{}", cb.body);
    assert_eq!(cb.location.as_deref(), Some("/app/page?x=1"));
    // The flow cookie is deleted, the session cookie set.
    assert!(cb
        .set_cookies
        .iter()
        .any(|c| c.starts_with("_oidc_guard_flow_") && c.contains("Max-Age=0")));
    let session = cb
        .set_cookies
        .iter()
        .find(|c| c.starts_with("_oidc_guard_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/")
            && session.contains("Max-Age=86400"),
        "{session}"
    );

    // The ID token (for id_token_hint) in a cookie of its own, sent only to the logout path.
    let hint = cb
        .set_cookies
        .iter()
        .find(|c| c.starts_with("_oidc_guard_idt="))
        .unwrap();
    assert!(
        hint.contains("Path=/oauth2/callback/logout;") && hint.contains("HttpOnly"),
        "{hint}"
    );
    assert!(!hint.contains(&id_token), "sealed");
    assert!(
        session.len() < 800,
        "the session cookie stays small: {} bytes",
        session.len()
    );

    // The token request: client_secret_basic (form-encoded id and secret), the code, the same
    // redirect_uri, the PKCE verifier whose S256 is the challenge.
    let reqs = idp.net.token_requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    let auth_header = r
        .headers
        .iter()
        .find(|(k, _)| k == "Authorization")
        .map(|(_, v)| v.clone())
        .unwrap();
    let creds = base64::engine::general_purpose::STANDARD
        .decode(auth_header.trim_start_matches("Basic "))
        .unwrap();
    assert_eq!(String::from_utf8(creds).unwrap(), "app:app%20secret%2F%2B");
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert_eq!(
        crate::http::form::value(&body, "grant_type").as_deref(),
        Some("authorization_code")
    );
    assert_eq!(
        crate::http::form::value(&body, "code").as_deref(),
        Some("the-code")
    );
    assert_eq!(
        crate::http::form::value(&body, "redirect_uri").as_deref(),
        Some("http://app.test/oauth2/callback")
    );
    let verifier = crate::http::form::value(&body, "code_verifier").unwrap();
    assert_eq!(crate::crypto::sha256_b64(verifier.as_bytes()), challenge);
    assert!(crate::http::form::value(&body, "client_secret").is_none());

    // The session: forwarded with the identity, spoofed headers replaced, our cookies stripped.
    jar.set("other", "kept");
    let s = send(
        &mut p,
        &mut jar,
        FakeExchange::get("/app/page")
            .with("X-Forwarded-User", "mallory")
            .with("X-Email", "m@evil"),
    );
    assert!(s.forwarded);
    assert_eq!(
        s.ex.upstream_header("x-forwarded-user").as_deref(),
        Some("alice")
    );
    assert_eq!(
        s.ex.upstream_header("x-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        s.ex.upstream_header("cookie").as_deref(),
        Some("other=kept")
    );
    assert!(
        s.set_cookies.is_empty(),
        "nothing to rewrite: {:?}",
        s.set_cookies
    );

    // Logout: cookies cleared, marker written, redirect to end_session_endpoint.
    let saved = jar.clone();
    let out = nav(&mut p, &mut jar, "/oauth2/callback/logout");
    assert_eq!(out.status, Some(302));
    let loc = out.location.unwrap();
    assert!(loc.starts_with("https://idp.test/session/end?"), "{loc}");
    assert_eq!(
        query(&loc, "id_token_hint").as_deref(),
        Some(id_token.as_str())
    );
    assert_eq!(query(&loc, "client_id").as_deref(), Some("app"));
    assert_eq!(
        query(&loc, "post_logout_redirect_uri").as_deref(),
        Some("http://app.test/bye")
    );
    assert!(query(&loc, "state").is_some());
    assert!(out
        .set_cookies
        .iter()
        .any(|c| c.starts_with("_oidc_guard_session=;") && c.contains("Max-Age=0")));
    assert!(jar.get("_oidc_guard_session").is_none());
    // The old cookie replayed is refused (revoked), even though it still opens.
    let mut replay = saved;
    let s = nav(&mut p, &mut replay, "/app/page");
    assert_eq!(s.status, Some(302));
    assert!(s.location.unwrap().starts_with("https://idp.test/auth?"));
    let _ = clock;
}

/// RFC 6265bis §4.1.3: under a `__Host-` prefix every cookie the plugin sets is one a browser
/// keeps (`Secure` even on plain http, `Path=/`, no `Domain`), except the ID-token cookie, which
/// becomes `__Secure-` so that it can stay scoped to the logout path.
#[test]
fn host_prefix_cookies_are_ones_browsers_keep() {
    let (mut p, idp, clock, mut jar) = setup(json!({"cookiePrefix": "__Host-og_"}));
    let auth = start(&mut p, &mut jar, "/app/page");
    let flow = jar.0.iter().find(|(k, _)| k.starts_with("__Host-og_flow_"));
    assert!(flow.is_some(), "{:?}", jar.0);
    let nonce = query(&auth, "nonce").unwrap();
    let id_token = idp.sign(&Idp::claims(&nonce, T0 / 1000));
    idp.answer(200, idp.tokens(&id_token, Some("rt-1"), 300));
    let cb = callback(&mut p, &mut jar, &auth, "the-code");
    assert_eq!(cb.status, Some(302), "{}", cb.body);
    let names: Vec<&str> = cb
        .set_cookies
        .iter()
        .map(|c| c.split('=').next().unwrap())
        .collect();
    assert!(names.contains(&"__Host-og_session"), "{names:?}");
    assert!(names.contains(&"__Secure-og_idt"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("__Host-og_flow_")));
    for c in &cb.set_cookies {
        assert!(c.contains("; Secure") && !c.contains("Domain="), "{c}");
        if c.starts_with("__Host-") {
            assert!(c.contains("; Path=/;"), "{c}");
        } else {
            assert!(c.contains("; Path=/oauth2/callback/logout;"), "{c}");
        }
    }
    let s = nav(&mut p, &mut jar, "/app/page");
    assert!(s.forwarded);
    assert_eq!(
        s.ex.upstream_header("x-forwarded-user").as_deref(),
        Some("alice")
    );
    let out = nav(&mut p, &mut jar, "/oauth2/callback/logout");
    assert_eq!(out.status, Some(302));
    assert_eq!(
        query(out.location.as_deref().unwrap(), "id_token_hint").as_deref(),
        Some(id_token.as_str())
    );
    for name in ["__Host-og_session", "__Secure-og_idt"] {
        let c = out
            .set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=;")))
            .unwrap();
        assert!(c.contains("Max-Age=0") && c.contains("; Secure"), "{c}");
        assert!(jar.get(name).is_none(), "{name}");
    }
    let _ = clock;
}

#[test]
fn logout_from_another_site_asks_first() {
    let (mut p, idp, clock, mut jar) = setup(json!({}));
    let cb = login(&mut p, &mut jar, &idp, &clock, "/app", None, 300);
    assert_eq!(cb.status, Some(302), "{}", cb.body);
    let logout = |site: Option<&str>, origin: Option<&str>, method: &str| {
        let mut ex = FakeExchange::get("/oauth2/callback/logout").with("Accept", "text/html");
        ex.method = method.into();
        if let Some(s) = site {
            ex = ex.with("Sec-Fetch-Site", s);
        }
        if let Some(o) = origin {
            ex = ex.with("Origin", o);
        }
        ex
    };
    // A link, an image or a form on another site (or a sibling subdomain): a page to confirm,
    // the session untouched.
    for (site, origin, method) in [
        (Some("cross-site"), None, "GET"),
        (Some("same-site"), None, "GET"),
        (Some("cross-site"), Some("https://evil.test"), "POST"),
        (None, Some("https://evil.test"), "POST"),
        (None, Some("null"), "POST"),
    ] {
        let out = send(&mut p, &mut jar, logout(site, origin, method));
        assert_eq!(out.status, Some(200), "{site:?} {origin:?}: {}", out.body);
        assert!(out.set_cookies.is_empty(), "{:?}", out.set_cookies);
        assert!(
            out.body
                .contains("<form method=\"post\" action=\"/oauth2/callback/logout\">"),
            "{}",
            out.body
        );
        assert_eq!(
            nav(&mut p, &mut jar, "/app").status,
            None,
            "still signed in"
        );
    }
    // The page's button (same origin), the user typing the URL, a browser without Fetch
    // Metadata on this origin, a script: logged out. A fresh session each time.
    for (site, origin) in [
        (Some("same-origin"), Some("http://app.test")),
        (Some("none"), None),
        (None, Some("http://app.test")),
        (None, None),
    ] {
        let mut j = Jar::default();
        let cb = login(&mut p, &mut j, &idp, &clock, "/app", None, 300);
        assert_eq!(cb.status, Some(302), "{}", cb.body);
        assert_eq!(nav(&mut p, &mut j, "/app").status, None, "signed in");
        let out = send(&mut p, &mut j, logout(site, origin, "POST"));
        assert_eq!(out.status, Some(302), "{site:?} {origin:?}: {}", out.body);
        assert!(out
            .location
            .unwrap()
            .starts_with("https://idp.test/session/end?"));
        assert_eq!(nav(&mut p, &mut j, "/app").status, Some(302), "signed out");
    }
}

#[test]
fn parallel_logins_in_two_tabs_both_complete() {
    let (mut p, idp, clock, mut jar) = setup(json!({}));
    let a = start(&mut p, &mut jar, "/a");
    let b = start(&mut p, &mut jar, "/b");
    for (auth, back) in [(&b, "/b"), (&a, "/a")] {
        let nonce = query(auth, "nonce").unwrap();
        idp.answer(
            200,
            idp.tokens(
                &idp.sign(&Idp::claims(&nonce, clock.now_ms() / 1000)),
                None,
                300,
            ),
        );
        let cb = callback(&mut p, &mut jar, auth, "c");
        assert_eq!(cb.location.as_deref(), Some(back), "{}", cb.body);
    }
}

#[test]
fn state_and_code_and_jti_replays_are_refused() {
    let (mut p, idp, clock, mut jar) = setup(json!({}));
    let auth = start(&mut p, &mut jar, "/a");
    let flow_cookie = jar.0.clone();
    let nonce = query(&auth, "nonce").unwrap();
    let mut claims = Idp::claims(&nonce, clock.now_ms() / 1000);
    claims["jti"] = json!("id-token-1");
    let id_token = idp.sign(&claims);
    idp.answer(200, idp.tokens(&id_token, None, 300));
    assert_eq!(callback(&mut p, &mut jar, &auth, "c1").status, Some(302));

    // Same callback again with the flow cookie put back: the state is single-use.
    let mut replay = Jar(flow_cookie);
    let r = callback(&mut p, &mut replay, &auth, "c1");
    assert_eq!(r.status, Some(400), "{}", r.body);
    assert_eq!(
        idp.net.token_requests().len(),
        1,
        "a replayed state never reaches the token endpoint"
    );

    // Without the flow cookie: nothing to match.
    let r = callback(&mut p, &mut Jar::default(), &auth, "c1");
    assert_eq!(r.status, Some(400));

    // A code the provider refuses (already used): 400, no session.
    let mut j2 = Jar::default();
    let auth2 = start(&mut p, &mut j2, "/a");
    idp.answer(400, json!({"error": "invalid_grant"}));
    let r = callback(&mut p, &mut j2, &auth2, "c1");
    assert_eq!(r.status, Some(400));
    assert!(j2.get("_oidc_guard_session").is_none());

    // The same ID token (same jti) in a new flow: refused even with the right nonce.
    let mut j3 = Jar::default();
    let auth3 = start(&mut p, &mut j3, "/a");
    let mut c3 = Idp::claims(&query(&auth3, "nonce").unwrap(), clock.now_ms() / 1000);
    c3["jti"] = json!("id-token-1");
    idp.answer(200, idp.tokens(&idp.sign(&c3), None, 300));
    let r = callback(&mut p, &mut j3, &auth3, "c3");
    assert_eq!(r.status, Some(400), "{}", r.body);
    assert!(j3.get("_oidc_guard_session").is_none());
}

/// RFC 6749 §3.1: a callback carrying `state`, `code` or `iss` twice is refused before anything
/// is sent to the token endpoint, wherever the second copy is.
#[test]
fn callback_parameters_given_twice_are_refused() {
    let (mut p, idp, _clock, mut jar) = setup(json!({}));
    let auth = start(&mut p, &mut jar, "/a");
    let state = query(&auth, "state").unwrap();
    let iss = crate::http::form::encode(ISSUER);
    let filler = "x=1&".repeat(300);
    for uri in [
        format!("/oauth2/callback?code=c&state={state}&iss={iss}&state=other"),
        format!("/oauth2/callback?code=c&state={state}&iss={iss}&{filler}code=d"),
        format!("/oauth2/callback?code=c&state={state}&iss={iss}&iss=https%3A%2F%2Fevil.test"),
    ] {
        let r = nav(&mut p, &mut jar.clone(), &uri);
        assert_eq!(r.status, Some(400), "{uri}: {}", r.body);
    }
    assert!(idp.net.token_requests().is_empty());
}

/// An HS256 token (forged with a public value as the secret) and `alg: none`.
fn forged(claims: &Value, alg: &str) -> String {
    let h = b64(json!({"alg": alg, "kid": "k1"}).to_string().as_bytes());
    let c = b64(claims.to_string().as_bytes());
    if alg == "none" {
        return format!("{h}.{c}.");
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"public-key-as-secret");
    let sig = ring::hmac::sign(&key, format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", b64(sig.as_ref()))
}

#[test]
fn id_token_variants_are_refused() {
    type Mint = Box<dyn Fn(&Idp, Value) -> String>;
    let variants: Vec<(&str, Mint)> = vec![
        (
            "wrong iss",
            Box::new(|i, mut c| {
                c["iss"] = json!("https://evil.test");
                i.sign(&c)
            }),
        ),
        (
            "wrong aud",
            Box::new(|i, mut c| {
                c["aud"] = json!("other-app");
                i.sign(&c)
            }),
        ),
        (
            "untrusted extra aud",
            Box::new(|i, mut c| {
                c["aud"] = json!(["app", "other"]);
                c["azp"] = json!("app");
                i.sign(&c)
            }),
        ),
        (
            "azp mismatch",
            Box::new(|i, mut c| {
                c["azp"] = json!("other");
                i.sign(&c)
            }),
        ),
        (
            "expired",
            Box::new(|i, mut c| {
                c["exp"] = json!(T0 / 1000 - 3600);
                c["iat"] = json!(T0 / 1000 - 7200);
                i.sign(&c)
            }),
        ),
        (
            "issued in the future",
            Box::new(|i, mut c| {
                c["iat"] = json!(T0 / 1000 + 3600);
                c["exp"] = json!(T0 / 1000 + 7200);
                i.sign(&c)
            }),
        ),
        (
            "wrong nonce",
            Box::new(|i, mut c| {
                c["nonce"] = json!("another-login");
                i.sign(&c)
            }),
        ),
        (
            "no nonce",
            Box::new(|i, mut c| {
                c.as_object_mut().unwrap().remove("nonce");
                i.sign(&c)
            }),
        ),
        (
            "no sub",
            Box::new(|i, mut c| {
                c.as_object_mut().unwrap().remove("sub");
                i.sign(&c)
            }),
        ),
        ("alg none", Box::new(|_, c| forged(&c, "none"))),
        ("alg HS256", Box::new(|_, c| forged(&c, "HS256"))),
        (
            "other key",
            Box::new(|_, c| EcKey::generate("k1").sign(json!({}), &c)),
        ),
        (
            "access token typ",
            Box::new(|i, c| i.key.sign(json!({"typ": "at+jwt"}), &c)),
        ),
        (
            "tampered",
            Box::new(|i, c| {
                let t = i.sign(&c);
                let (a, b) = t.rsplit_once('.').unwrap();
                format!("{a}x.{b}")
            }),
        ),
    ];
    for (what, make) in variants {
        let (mut p, idp, clock, mut jar) = setup(json!({}));
        let auth = start(&mut p, &mut jar, "/a");
        let claims = Idp::claims(&query(&auth, "nonce").unwrap(), clock.now_ms() / 1000);
        idp.answer(200, idp.tokens(&make(&idp, claims), None, 300));
        let r = callback(&mut p, &mut jar, &auth, "c");
        assert_eq!(r.status, Some(400), "{what}: {}", r.body);
        assert!(jar.get("_oidc_guard_session").is_none(), "{what}");
        let logs = r.ex.logs.borrow();
        assert!(
            logs.iter().any(|(_, l)| l.contains("login callback")),
            "{what}: {logs:?}"
        );
    }
}

#[test]
fn eddsa_id_tokens_are_accepted() {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed1", "x": b64(pair.public_key().as_ref())});
    let (mut p, idp, clock, mut jar) = setup(json!({}));
    idp.net.0.borrow_mut().routes.insert(
        "https://idp.test/jwks".into(),
        (200, json!({"keys": [jwk]}).to_string()),
    );
    let auth = start(&mut p, &mut jar, "/a");
    let claims = Idp::claims(&query(&auth, "nonce").unwrap(), clock.now_ms() / 1000);
    let h = b64(json!({"alg": "EdDSA", "kid": "ed1"}).to_string().as_bytes());
    let c = b64(claims.to_string().as_bytes());
    let sig = pair.sign(format!("{h}.{c}").as_bytes());
    idp.answer(
        200,
        idp.tokens(&format!("{h}.{c}.{}", b64(sig.as_ref())), None, 300),
    );
    let r = callback(&mut p, &mut jar, &auth, "c");
    assert_eq!(r.status, Some(302), "{}", r.body);
    assert!(jar.get("_oidc_guard_session").is_some());
}

#[test]
fn provider_errors_are_shown_without_reflection() {
    let (mut p, _idp, _clock, mut jar) = setup(json!({}));
    let auth = start(&mut p, &mut jar, "/a");
    let state = query(&auth, "state").unwrap();
    let r = nav(&mut p, &mut jar, &format!("/oauth2/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state={state}"));
    assert_eq!(r.status, Some(403));
    assert!(
        !r.body.contains("<script>") && !r.body.contains("alert"),
        "{}",
        r.body
    );
    assert!(r
        .set_cookies
        .iter()
        .any(|c| c.starts_with("_oidc_guard_flow_") && c.contains("Max-Age=0")));
    let r = nav(
        &mut p,
        &mut jar,
        "/oauth2/callback?error=%3Cimg%20src%3Dx%3E",
    );
    assert_eq!(r.status, Some(400));
    assert!(!r.body.contains("<img"), "{}", r.body);
    // No state at all, and a state that is no cookie name.
    assert_eq!(
        nav(&mut p, &mut jar, "/oauth2/callback?code=x").status,
        Some(400)
    );
    assert_eq!(
        nav(
            &mut p,
            &mut jar,
            "/oauth2/callback?code=x&state=%3B%20a%3Db"
        )
        .status,
        Some(400)
    );
}

#[test]
fn mix_up_iss_parameter_is_refused() {
    let (mut p, idp, clock, mut jar) = setup(json!({}));
    let auth = start(&mut p, &mut jar, "/a");
    let state = query(&auth, "state").unwrap();
    idp.answer(
        200,
        idp.tokens(
            &idp.sign(&Idp::claims(
                &query(&auth, "nonce").unwrap(),
                clock.now_ms() / 1000,
            )),
            None,
            300,
        ),
    );
    let r = nav(
        &mut p,
        &mut jar,
        &format!("/oauth2/callback?code=c&state={state}&iss=https%3A%2F%2Fevil.test"),
    );
    assert_eq!(r.status, Some(400));
    assert!(
        idp.net.token_requests().is_empty(),
        "RFC 9207: refused before the code is used"
    );
}

#[test]
fn a_provider_that_always_sends_iss_must_send_it() {
    let (mut p, idp, clock, mut jar) = setup(json!({}));
    {
        let mut n = idp.net.0.borrow_mut();
        let url = format!("{ISSUER}/.well-known/openid-configuration");
        let mut disco: Value = serde_json::from_str(&n.routes[&url].1).unwrap();
        disco["authorization_response_iss_parameter_supported"] = json!(true);
        n.routes.insert(url, (200, disco.to_string()));
    }
    // No iss: refused before the code is used.
    let auth = start(&mut p, &mut jar, "/a");
    let state = query(&auth, "state").unwrap();
    let r = nav(
        &mut p,
        &mut jar,
        &format!("/oauth2/callback?code=c&state={state}"),
    );
    assert_eq!(r.status, Some(400));
    assert!(
        idp.net.token_requests().is_empty(),
        "RFC 9207 §2.4: refused before the code is used"
    );
    // With iss (as `login` sends it): accepted.
    let r = login(&mut p, &mut jar, &idp, &clock, "/a", None, 300);
    assert_eq!(r.status, Some(302), "{}", r.body);
    assert_eq!(idp.net.token_requests().len(), 1);
}

#[test]
fn provider_down_gives_503_not_a_loop() {
    let (mut p, idp, _clock, mut jar) = setup(json!({}));
    idp.net.0.borrow_mut().down = true;
    let r = nav(&mut p, &mut jar, "/a");
    assert_eq!(r.status, Some(503));
    assert!(r.location.is_none());
    // API clients still get 401.
    let r = send(
        &mut p,
        &mut jar,
        FakeExchange::get("/a").with("Accept", "application/json"),
    );
    assert_eq!(r.status, Some(401));
}

#[test]
fn return_urls_and_redirect_uris() {
    let (mut p, _idp, _clock, mut jar) = setup(json!({}));
    // A protocol-relative target returns to "/".
    let ex = FakeExchange::get("//evil.example/x").with("Accept", "text/html");
    let s = send(&mut p, &mut jar, ex);
    assert_eq!(s.status, Some(302));
    // (the return path is sealed in the flow cookie; completing the login shows it)

    // forceHTTPS: https redirect URI and Secure cookies; X-Forwarded-Host only from trusted peers.
    let (mut p, _idp, _clock, mut jar) =
        setup(json!({"forceHTTPS": true, "trustedProxies": ["10.0.0.0/8"]}));
    let mut ex = FakeExchange::get("/a")
        .with("Accept", "text/html")
        .with("X-Forwarded-Host", "evil.example");
    ex.source = "192.0.2.1:1".into();
    let s = send(&mut p, &mut jar, ex);
    let loc = s.location.unwrap();
    assert_eq!(
        query(&loc, "redirect_uri").as_deref(),
        Some("https://app.test/oauth2/callback")
    );
    assert!(s.set_cookies[0].contains("Secure"));
    let mut ex = FakeExchange::get("/a")
        .with("Accept", "text/html")
        .with("X-Forwarded-Host", "public.example");
    ex.source = "10.1.2.3:1".into();
    let s = send(&mut p, &mut jar, ex);
    assert_eq!(
        query(&s.location.unwrap(), "redirect_uri").as_deref(),
        Some("https://public.example/oauth2/callback")
    );

    // X-Forwarded-Proto https (Traefik sets it from the connection).
    let (mut p, _idp, _clock, mut jar) = setup(json!({"callbackURL": "/cb"}));
    let s = send(
        &mut p,
        &mut jar,
        FakeExchange::get("/a")
            .with("Accept", "text/html")
            .with("X-Forwarded-Proto", "https"),
    );
    assert_eq!(
        query(&s.location.unwrap(), "redirect_uri").as_deref(),
        Some("https://app.test/cb")
    );
    // An absolute callbackURL is used as is.
    let (mut p, _idp, _clock, mut jar) = setup(json!({"callbackURL": "https://auth.example/cb"}));
    let s = nav(&mut p, &mut jar, "/a");
    assert_eq!(
        query(&s.location.unwrap(), "redirect_uri").as_deref(),
        Some("https://auth.example/cb")
    );
}

#[test]
fn return_to_is_same_origin_after_login() {
    let (mut p, idp, clock, mut jar) = setup(json!({}));
    let r = login(
        &mut p,
        &mut jar,
        &idp,
        &clock,
        "//evil.example/x",
        None,
        300,
    );
    assert_eq!(r.location.as_deref(), Some("/"));
}

#[test]
fn client_secret_post_and_public_clients() {
    for (method, secret, expect_secret) in [
        ("client_secret_post", Some("s3"), true),
        ("none", None, false),
    ] {
        let mut cfg = merge(base_config(), json!({"tokenEndpointAuthMethod": method}));
        match secret {
            Some(s) => cfg["clientSecret"] = json!(s),
            None => {
                cfg.as_object_mut().unwrap().remove("clientSecret");
            }
        }
        let idp = Idp::new();
        let clock = Rc::new(ManualClock::new(T0));
        let mut p = plugin(&cfg, &idp, &clock, None);
        let mut jar = Jar::default();
        let r = login(&mut p, &mut jar, &idp, &clock, "/a", None, 300);
        assert_eq!(r.status, Some(302), "{method}: {}", r.body);
        let req = &idp.net.token_requests()[0];
        assert!(
            !req.headers.iter().any(|(k, _)| k == "Authorization"),
            "{method}"
        );
        let body = String::from_utf8(req.body.clone()).unwrap();
        assert_eq!(
            crate::http::form::value(&body, "client_id").as_deref(),
            Some("app")
        );
        assert_eq!(
            crate::http::form::value(&body, "client_secret").is_some(),
            expect_secret,
            "{method}"
        );
    }
}

#[test]
fn users_outside_the_policy_get_403_at_the_callback() {
    let (mut p, idp, clock, mut jar) = setup(json!({"allowedUsers": ["bob@example.org"]}));
    let r = login(&mut p, &mut jar, &idp, &clock, "/a", None, 300);
    assert_eq!(r.status, Some(403), "{}", r.body);
    assert!(r.body.contains("not allowed"));
    assert!(jar.get("_oidc_guard_session").is_none());
}
