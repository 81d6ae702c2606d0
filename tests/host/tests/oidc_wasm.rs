//! Browser login with the built `.wasm` in the wasmtime host (http-wasm as Traefik runs it),
//! against the real `oidc-provider` on 127.0.0.1 (and, for ID tokens the test mints with its own
//! keys, a tiny scripted provider). The scripted browser logs in through a real port that hands
//! each request to the guest ([`oidc_common::Front`]).
//!
//! - the Traefik artifact (WasmEdge sockets to the provider), memory mode: login, identity
//!   headers, refused cookies, key rotation, 200 groups, logout, the in-guest cost of a request
//!   with a valid session;
//! - the bridge artifact, hybrid mode over one shared store for two "replicas": exactly one
//!   refresh under parallel requests to both, logout seen by the other within the revocation
//!   interval, state and code replays;
//! - RS256/ES256/EdDSA ID tokens, expiry, and minted ID tokens with a wrong `iss`/`aud`/`exp`/`alg`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oidc_common;

use std::time::{Duration, Instant};

use oidc_common::{cookie_header, forged, median_us, param, Front, ScriptedIdp, KEY1, KEY2};
use oidc_guard_testhost::browser::{Browser, Request as Nav};
use oidc_guard_testhost::idp::{Client, Idp, IdpOptions};
use oidc_guard_testhost::util::echoed_headers;
use oidc_guard_testhost::wasm::{guests, Bridge, Middleware, Request};
use serde_json::{json, Value};

fn guard(idp_issuer: &str, client: &str, secret: &str, extra: Value) -> Value {
    let mut v = json!({
        "providerURL": idp_issuer,
        "clientID": client,
        "clientSecret": secret,
        "sessionEncryptionKey": KEY1,
        "scopes": ["openid", "profile", "email", "groups"],
        "excludedURLs": ["/public"],
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn build(artifact: guests::Artifact, cfg: &Value, bridge: Option<Bridge>) -> Middleware {
    let wasm = guests::plugin(artifact).unwrap();
    let mut b = Middleware::builder(&wasm).config(cfg.clone());
    if let Some(br) = bridge {
        b = b.bridge(br);
    }
    b.build().unwrap()
}

fn session_cookie(b: &Browser) -> String {
    let c = cookie_header(b, "_oidc_guard_session");
    assert!(!c.is_empty(), "no session cookie in the jar");
    c
}

/// Whether the guest answered a browser with a redirect to the provider's login.
fn sent_to_login(ex: &oidc_guard_testhost::wasm::Exchange, issuer: &str) -> bool {
    ex.status == 302
        && ex
            .header("location")
            .is_some_and(|l| l.starts_with(&format!("{issuer}/auth")))
}

fn nav(cookie: &str) -> Request {
    Request::get("/app")
        .header("Accept", "text/html")
        .header("Cookie", cookie)
}

#[test]
fn login_session_rotation_refusals_and_logout_in_the_guest() {
    let (listener, port) = Front::bind();
    let app = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(
        IdpOptions::default()
            .client(
                Client::new("app", "app secret", &format!("{app}/oauth2/callback"))
                    .post_logout_redirect_uri(&format!("{app}/public/bye")),
            )
            .access_token_ttl(300)
            .id_token_ttl(300),
    )
    .unwrap();
    let cfg = guard(
        idp.issuer(),
        "app",
        "app secret",
        json!({"postLogoutRedirectURI": "/public/bye", "claimHeaders": {"X-Email": "email", "X-Groups": "groups"}}),
    );
    let mw = build(guests::Artifact::Traefik, &cfg, None);
    let front = Front::serve(listener, mw.clone());

    // Full login: protected page → provider → callback → the page first asked for.
    let mut b = Browser::new();
    let t0 = Instant::now();
    let page = b
        .send(Nav::get(&front.url("/app/page?x=1")).header("X-Forwarded-User", "mallory"))
        .unwrap();
    let login_time = t0.elapsed();
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.url, front.url("/app/page?x=1"));
    let seen = echoed_headers(&page.text());
    let user: Vec<&String> = seen
        .iter()
        .filter(|(k, _)| k == "x-forwarded-user")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        user,
        vec!["alice"],
        "the backend sees the identity, never the spoofed header: {seen:?}"
    );
    assert!(seen
        .iter()
        .any(|(k, v)| k == "x-email" && v == "alice@example.com"));
    assert!(
        !seen
            .iter()
            .any(|(k, v)| k == "cookie" && v.contains("_oidc_guard")),
        "our cookies are stripped: {seen:?}"
    );
    eprintln!(
        "login round trip through the wasm guest: {:.1} ms",
        login_time.as_secs_f64() * 1e3
    );
    let cookie = session_cookie(&b);

    // The in-guest cost of a request with a valid session (memory mode: no socket I/O).
    let mut session_times = Vec::new();
    let mut public_times = Vec::new();
    let mut session_ops = None;
    for _ in 0..200 {
        let ex = mw.send(nav(&cookie));
        assert_eq!(ex.status, 200);
        session_times.push(ex.timing.handle_request);
        session_ops = ex.timing.wasm_ops;
        let ex = mw.send(Request::get("/public/x"));
        public_times.push(ex.timing.handle_request);
    }
    // An excluded path does not get the sealed session either: it is a credential.
    let ex = mw.send(Request::get("/public/x").header("Cookie", &format!("{cookie}; other=kept")));
    assert_eq!(ex.status, 200, "{}", ex.text());
    assert_eq!(
        ex.upstream.as_ref().and_then(|u| u.header("cookie")),
        Some("other=kept")
    );
    // Paths that only look excluded: Tomcat and Spring read the last three as `/admin`.
    for path in [
        "/public/../admin",
        "/public/..;/admin",
        "/public/;/../admin",
        "/public/%3b/../admin",
    ] {
        let ex = mw.send(Request::get(path).header("Accept", "application/json"));
        assert_eq!(ex.status, 401, "{path}: {}", ex.text());
        assert!(ex.upstream.is_none(), "{path} reached the backend");
    }
    let (sess_us, pub_us) = (median_us(session_times), median_us(public_times));
    eprintln!("handle_request median: valid session {sess_us:.1} µs, excluded path {pub_us:.1} µs (wasmtime, debug host)");
    if let Some(ops) = session_ops {
        eprintln!("wasm operators of a valid-session request: {ops} (OIDC_GUARD_WASM_OPS=1)");
    }
    let sockets = mw.sockets_opened();
    for _ in 0..20 {
        assert_eq!(mw.send(nav(&cookie)).status, 200);
    }
    assert_eq!(
        mw.sockets_opened(),
        sockets,
        "a valid session needs no socket"
    );

    // Refused cookies: tampered, truncated, garbage → login (browser) or 401 (API).
    let value = cookie.split_once('=').unwrap().1.to_string();
    let mut flipped = value.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(flipped).unwrap(),
        value[..value.len() - 8].to_string(),
        "garbage".into(),
    ] {
        let c = format!("_oidc_guard_session={bad}");
        let ex = mw.send(nav(&c));
        assert!(
            sent_to_login(&ex, idp.issuer()),
            "{} {:?}",
            ex.status,
            ex.header("location")
        );
        assert!(ex
            .header_values("set-cookie")
            .iter()
            .any(|s| s.starts_with("_oidc_guard_session=;")));
        let ex = mw.send(
            Request::get("/api")
                .header("Accept", "application/json")
                .header("Cookie", &c),
        );
        assert_eq!(ex.status, 401);
    }
    // Another middleware (another client: another identity) refuses this session.
    let other = build(
        guests::Artifact::Traefik,
        &guard(idp.issuer(), "other-app", "x", json!({})),
        None,
    );
    assert!(sent_to_login(&other.send(nav(&cookie)), idp.issuer()));

    // The same middleware with another policy: the session's claims were chosen for the old
    // one (no `groups` kept), so it is refused and the browser logs in again, never a 403.
    let stricter = build(
        guests::Artifact::Traefik,
        &guard(
            idp.issuer(),
            "app",
            "app secret",
            json!({"allowedRolesAndGroups": ["admins"]}),
        ),
        None,
    );
    assert!(sent_to_login(&stricter.send(nav(&cookie)), idp.issuer()));

    // Key rotation: a new key first, the old one still listed.
    let mut rotated_cfg = cfg.clone();
    rotated_cfg["sessionEncryptionKey"] = json!([KEY2, KEY1]);
    let rotated = build(guests::Artifact::Traefik, &rotated_cfg, None);
    let ex = rotated.send(nav(&cookie));
    assert_eq!(ex.status, 200, "an old-key session opens");
    // First-sight cost: 20 distinct valid cookies in turn (more than the per-instance cache of
    // opened sessions holds), so every request decrypts and parses its cookie.
    let mut distinct = Vec::new();
    for _ in 0..20 {
        let ex = rotated.send(nav(&cookie));
        let c = ex
            .header_values("set-cookie")
            .into_iter()
            .find(|s| s.starts_with("_oidc_guard_session="))
            .unwrap();
        distinct.push(c.split(';').next().unwrap().to_string());
    }
    let mut miss_times = Vec::new();
    for i in 0..200 {
        let ex = rotated.send(nav(&distinct[i % distinct.len()]));
        assert_eq!(ex.status, 200);
        assert!(ex.header_values("set-cookie").is_empty());
        miss_times.push(ex.timing.handle_request);
    }
    eprintln!(
        "handle_request median, every cookie opened (no cache hit): {:.1} µs; cookie {} bytes",
        median_us(miss_times),
        distinct[0].len()
    );
    let resealed = ex
        .header_values("set-cookie")
        .into_iter()
        .find(|s| s.starts_with("_oidc_guard_session="))
        .expect("resealed with the newest key")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(resealed, cookie);
    let ex = rotated.send(nav(&resealed));
    assert_eq!(ex.status, 200);
    assert!(ex.header_values("set-cookie").is_empty(), "resealed once");
    assert!(
        sent_to_login(&mw.send(nav(&resealed)), idp.issuer()),
        "the old key alone cannot open it"
    );

    // 200 groups: every cookie stays under 4 KB, the backend gets the groups.
    idp.set_default_user("large").unwrap();
    let mut big = Browser::new();
    let page = big.get(&front.url("/app")).unwrap();
    idp.set_default_user("alice").unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let ours: Vec<_> = big
        .set_cookie_log()
        .iter()
        .filter(|r| r.name.starts_with("_oidc_guard"))
        .collect();
    assert!(
        ours.iter()
            .filter(|r| r.name.starts_with("_oidc_guard_session"))
            .count()
            >= 2,
        "chunked"
    );
    for r in &ours {
        assert!(r.size() <= 4096, "{} is {} bytes", r.name, r.size());
    }
    let groups = echoed_headers(&page.text())
        .into_iter()
        .find(|(k, _)| k == "x-groups")
        .unwrap()
        .1;
    assert!(
        groups.starts_with("large-claims-group-001,large-claims-group-002"),
        "{groups}"
    );

    // RP-initiated logout: the provider's end_session_endpoint, then back to postLogoutRedirectURI.
    let confirm = b.get(&front.url("/oauth2/callback/logout")).unwrap();
    assert_eq!(
        confirm.status,
        200,
        "the provider's logout confirmation: {}",
        confirm.text()
    );
    let hop = &confirm.hops[0];
    assert_eq!(hop.status, 302);
    let to = hop.location.clone().unwrap();
    assert!(
        to.starts_with(&format!("{}/session/end", idp.issuer())),
        "{to}"
    );
    assert_eq!(param(&to, "client_id").as_deref(), Some("app"));
    assert_eq!(
        param(&to, "post_logout_redirect_uri"),
        Some(format!("{app}/public/bye"))
    );
    assert!(param(&to, "id_token_hint").is_some() && param(&to, "state").is_some());
    assert!(
        b.jar().get("_oidc_guard_session").is_none(),
        "cookies cleared"
    );
    let done = b.submit_form(&confirm, None).unwrap();
    assert!(
        done.url.starts_with(&front.url("/public/bye")),
        "{}",
        done.url
    );
    assert_eq!(done.status, 200);
    assert_eq!(idp.stats().unwrap().end_sessions, 1);
    // The logged-out session replayed: refused (revoked on this instance; across replicas see
    // the hybrid test).
    assert!(sent_to_login(&mw.send(nav(&cookie)), idp.issuer()));
}

#[test]
fn one_refresh_across_two_replicas_logout_and_replays() {
    let (la, pa) = Front::bind();
    let app = format!("http://127.0.0.1:{pa}");
    let idp = Idp::start(
        IdpOptions::default()
            .client(Client::new(
                "app",
                "app-secret",
                &format!("{app}/oauth2/callback"),
            ))
            .access_token_ttl(20)
            .id_token_ttl(20),
    )
    .unwrap();
    let cfg = guard(
        idp.issuer(),
        "app",
        "app-secret",
        json!({"refreshGracePeriod": "17s", "revocationCheckInterval": "1s"}),
    );
    // Two replicas sharing one store (the host bridge backed by one in-memory map).
    let store = Bridge::isolated_memory();
    let a = build(guests::Artifact::Bridge, &cfg, Some(store.clone()));
    let bmw = build(guests::Artifact::Bridge, &cfg, Some(store));
    let front = Front::serve(la, a.clone());

    let mut b = Browser::new();
    let page = b.get(&front.url("/app")).unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let logged_in = Instant::now();
    let cookie = session_cookie(&b);
    assert_eq!(
        bmw.send(nav(&cookie)).status,
        200,
        "the session works on the other replica"
    );
    idp.reset_stats().unwrap();

    // Within the grace period: parallel requests to both replicas, one refresh in all.
    std::thread::sleep(Duration::from_millis(3_500).saturating_sub(logged_in.elapsed()));
    let mut handles = Vec::new();
    for i in 0..16 {
        let mw = if i % 2 == 0 { a.clone() } else { bmw.clone() };
        let c = cookie.clone();
        handles.push(std::thread::spawn(move || {
            let ex = mw.send(nav(&c));
            let fresh = ex
                .header_values("set-cookie")
                .into_iter()
                .find(|s| s.starts_with("_oidc_guard_session="))
                .map(|s| s.split(';').next().unwrap().to_string());
            (ex.status, fresh)
        }));
    }
    let results: Vec<(u16, Option<String>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    let stats = idp.stats().unwrap();
    assert_eq!(
        stats.refresh_token_grants, 1,
        "exactly one refresh: {stats:?}"
    );
    assert_eq!(stats.refresh_token_grant_errors, 0, "{stats:?}");
    let fresh = results
        .iter()
        .find_map(|(_, c)| c.clone())
        .expect("someone got the refreshed cookie");
    // Late requests with the old cookie adopt the refreshed session on either replica (an
    // instance that looked for it before it was published remembers the miss for at most the
    // revocation-check interval, and keeps using the old session meanwhile).
    for mw in [&a, &bmw] {
        let t = Instant::now();
        loop {
            let ex = mw.send(nav(&cookie));
            assert_eq!(ex.status, 200);
            if ex
                .header_values("set-cookie")
                .iter()
                .any(|s| s.starts_with("_oidc_guard_session="))
            {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "the refreshed session was not adopted"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(mw.send(nav(&fresh)).status, 200);
    }
    assert_eq!(idp.stats().unwrap().refresh_token_grants, 1);

    // Logout on A is honoured by B within the revocation-check interval (1 s) + 1 s.
    let out = a.send(Request::get("/oauth2/callback/logout").header("Cookie", &fresh));
    assert_eq!(out.status, 302);
    let t = Instant::now();
    loop {
        let ex = bmw.send(nav(&fresh));
        if sent_to_login(&ex, idp.issuer()) {
            break;
        }
        assert_eq!(ex.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "B still accepts the session after {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "logout on replica A seen by replica B after {:?}",
        t.elapsed()
    );

    // State replay: the same callback (with its login cookie put back) on the other replica.
    let mut c = Browser::new();
    let callback = format!("{app}/oauth2/callback");
    let to_callback = c
        .send(Nav::get(&front.url("/app")).until(&callback))
        .unwrap();
    let cb_url = to_callback.location().unwrap().to_string();
    let flow: Vec<(String, String)> = c
        .jar()
        .with_prefix("_oidc_guard_flow_")
        .iter()
        .map(|k| (k.name.clone(), k.value.clone()))
        .collect();
    assert_eq!(flow.len(), 1);
    let done = c.get(&cb_url).unwrap();
    assert_eq!(done.status, 200);
    let target = cb_url.strip_prefix(&app).unwrap();
    let flow_cookie = format!("{}={}", flow[0].0, flow[0].1);
    let ex = bmw.send(
        Request::get(target)
            .header("Accept", "text/html")
            .header("Cookie", &flow_cookie),
    );
    assert_eq!(
        ex.status,
        400,
        "a state is used once in the whole cluster: {}",
        ex.text()
    );

    // Code replay: a fresh login's state with an already used code.
    let mut d = Browser::new();
    let to_callback = d
        .send(Nav::get(&front.url("/app")).until(&callback))
        .unwrap();
    let state = param(to_callback.location().unwrap(), "state").unwrap();
    let old_code = param(&cb_url, "code").unwrap();
    let forged_cb = format!(
        "/oauth2/callback?code={old_code}&state={state}&iss={}",
        url_encode(idp.issuer())
    );
    let flow_cookie = cookie_header(&d, "_oidc_guard_flow_");
    let ex = a.send(
        Request::get(&forged_cb)
            .header("Accept", "text/html")
            .header("Cookie", &flow_cookie),
    );
    assert_eq!(ex.status, 400, "{}", ex.text());
    assert!(cookie_header_of(&ex, "_oidc_guard_session").is_none());
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn cookie_header_of(ex: &oidc_guard_testhost::wasm::Exchange, name: &str) -> Option<String> {
    ex.header_values("set-cookie")
        .into_iter()
        .find(|s| s.starts_with(&format!("{name}=")) && !s.contains("Max-Age=0"))
        .map(str::to_string)
}

#[test]
fn algorithms_expiry_and_minted_id_tokens() {
    // RS256, ES256 and EdDSA ID tokens from the real provider; 4-second tokens, no refresh.
    let fronts: Vec<_> = (0..3).map(|_| Front::bind()).collect();
    let algs = ["RS256", "ES256", "EdDSA"];
    let mut opts = IdpOptions::default().access_token_ttl(4).id_token_ttl(4);
    for (i, alg) in algs.iter().enumerate() {
        let uri = format!("http://127.0.0.1:{}/oauth2/callback", fronts[i].1);
        opts = opts.client(
            Client::new(&format!("app-{alg}"), "s3cret", &uri)
                .id_token_alg(alg)
                .without_refresh(),
        );
    }
    let idp = Idp::start(opts).unwrap();
    let mut served = Vec::new();
    for ((listener, _), alg) in fronts.into_iter().zip(algs) {
        let mw = build(
            guests::Artifact::Traefik,
            &guard(idp.issuer(), &format!("app-{alg}"), "s3cret", json!({})),
            None,
        );
        served.push((Front::serve(listener, mw.clone()), mw, alg));
    }
    for (front, mw, alg) in &served {
        let mut b = Browser::new();
        let t = Instant::now();
        let page = b.get(&front.url("/app")).unwrap();
        assert_eq!(page.status, 200, "{alg}: {}", page.text());
        assert_eq!(
            echoed_headers(&page.text())
                .into_iter()
                .find(|(k, _)| k == "x-forwarded-user")
                .map(|(_, v)| v)
                .as_deref(),
            Some("alice"),
            "{alg}"
        );
        let cookie = session_cookie(&b);
        if *alg == "RS256" {
            // Expired tokens without a refresh token end the session.
            std::thread::sleep(Duration::from_millis(4_600).saturating_sub(t.elapsed()));
            assert!(
                sent_to_login(&mw.send(nav(&cookie)), idp.issuer()),
                "an expired session is refused"
            );
        }
    }
    assert_eq!(idp.stats().unwrap().authorization_code_grants, 3);

    // ID tokens minted by the test: the good one passes, each bad variant is refused.
    let sidp = ScriptedIdp::start();
    let mw = build(
        guests::Artifact::Traefik,
        &guard(&sidp.issuer(), "app", "s", json!({})),
        None,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    type Variant = Box<dyn Fn(Value, &ScriptedIdp) -> String>;
    let variants: Vec<(&str, u16, Variant)> = vec![
        ("valid", 302, Box::new(|c, i| i.key.sign(&c))),
        (
            "wrong iss",
            400,
            Box::new(|mut c, i| {
                c["iss"] = json!("http://127.0.0.1:1");
                i.key.sign(&c)
            }),
        ),
        (
            "wrong aud",
            400,
            Box::new(|mut c, i| {
                c["aud"] = json!("someone-else");
                i.key.sign(&c)
            }),
        ),
        (
            "expired",
            400,
            Box::new(move |mut c, i| {
                c["exp"] = json!(now - 600);
                c["iat"] = json!(now - 900);
                i.key.sign(&c)
            }),
        ),
        ("alg none", 400, Box::new(|c, _| forged(&c, "none"))),
        ("alg HS256", 400, Box::new(|c, _| forged(&c, "HS256"))),
        (
            "wrong nonce",
            400,
            Box::new(|mut c, i| {
                c["nonce"] = json!("not-this-login");
                i.key.sign(&c)
            }),
        ),
    ];
    for (what, want, mint) in variants {
        let start = mw.send(Request::get("/app").header("Accept", "text/html"));
        assert_eq!(start.status, 302, "{what}");
        let loc = start.header("location").unwrap().to_string();
        let flow = start
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let claims = json!({"iss": sidp.issuer(), "aud": "app", "sub": "alice", "nonce": param(&loc, "nonce").unwrap(),
                            "iat": now, "exp": now + 300});
        sidp.answer_with(&mint(claims, &sidp));
        let state = param(&loc, "state").unwrap();
        let ex = mw.send(
            Request::get(&format!("/oauth2/callback?code=c-{what}&state={state}"))
                .header("Accept", "text/html")
                .header("Cookie", &flow),
        );
        assert_eq!(ex.status, want, "{what}: {}", ex.text());
        assert_eq!(
            cookie_header_of(&ex, "_oidc_guard_session").is_some(),
            want == 302,
            "{what}"
        );
    }
    assert_eq!(sidp.token_requests.lock().unwrap().len(), 7);

    // With bearer tokens on as well, the bearer audience is the client ID by default: an ID
    // token from a refresh (no nonce, no at_hash) is still no access token (RFC 8725 §3.11); an
    // access token for the client ID is.
    let mw = build(
        guests::Artifact::Traefik,
        &guard(
            &sidp.issuer(),
            "app",
            "s",
            json!({"bearer": {"enabled": true}}),
        ),
        None,
    );
    let id = json!({"iss": sidp.issuer(), "aud": "app", "azp": "app", "sub": "alice", "sid": "s-1",
                    "auth_time": now - 60, "iat": now, "exp": now + 300});
    let api = |token: &str| {
        mw.send(
            Request::get("/api/orders")
                .header("Accept", "application/json")
                .header("Authorization", &format!("Bearer {token}")),
        )
    };
    let ex = api(&sidp.key.sign(&id));
    assert!(ex.trap.is_none(), "{:?}", ex.trap);
    assert_eq!(
        ex.status,
        401,
        "a refreshed ID token as a bearer: {}",
        ex.text()
    );
    assert!(ex.upstream.is_none());
    let mut access = id.clone();
    access["scope"] = json!("openid orders");
    let ex = api(&sidp.key.sign(&access));
    assert_eq!(
        ex.status,
        200,
        "an access token for the client ID: {}",
        ex.text()
    );
    let up = ex.upstream.as_ref().unwrap();
    assert_eq!(up.header("x-forwarded-user"), Some("alice"));
}

/// Sends `OIDC_GUARD_PROFILE_N` (default 200 000) valid-session requests to one middleware, for
/// a profiler: `OIDC_GUARD_PERFMAP=1 perf record -p PID` names the guest's functions when the
/// `.wasm` keeps its name section (see BENCHMARKS.md, "Profiling the guest").
#[test]
#[ignore = "profiling aid; run explicitly"]
fn profile_valid_session_requests() {
    let (listener, port) = Front::bind();
    let app = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(
        IdpOptions::default()
            .client(Client::new(
                "app",
                "app secret",
                &format!("{app}/oauth2/callback"),
            ))
            .access_token_ttl(3600)
            .id_token_ttl(3600),
    )
    .unwrap();
    let cfg = guard(
        idp.issuer(),
        "app",
        "app secret",
        json!({"claimHeaders": {"X-Email": "email", "X-Groups": "groups"}}),
    );
    let mw = build(guests::Artifact::Traefik, &cfg, None);
    let front = Front::serve(listener, mw.clone());
    let mut b = Browser::new();
    let page = b.send(Nav::get(&front.url("/app/page"))).unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let cookie = session_cookie(&b);
    let n: u64 = std::env::var("OIDC_GUARD_PROFILE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let t0 = Instant::now();
    let mut ops = None;
    for _ in 0..n {
        let ex = mw.send(nav(&cookie));
        assert_eq!(ex.status, 200);
        ops = ex.timing.wasm_ops;
    }
    eprintln!(
        "{n} valid-session requests in {:.2} s; wasm operators of the last: {ops:?}",
        t0.elapsed().as_secs_f64()
    );
}

/// The parallel requests of an app coming back after its tokens expired, spread over two
/// replicas sharing a store: one refreshes, the others wait for its result and adopt it — every
/// request is served, none ends the session, and the provider sees one refresh grant.
#[test]
fn parallel_requests_after_the_tokens_expired_all_adopt_one_refresh() {
    let (la, pa) = Front::bind();
    let app = format!("http://127.0.0.1:{pa}");
    let idp = Idp::start(
        IdpOptions::default()
            .client(Client::new(
                "app",
                "app-secret",
                &format!("{app}/oauth2/callback"),
            ))
            .access_token_ttl(3)
            .id_token_ttl(3),
    )
    .unwrap();
    let cfg = guard(
        idp.issuer(),
        "app",
        "app-secret",
        json!({"refreshGracePeriod": "1s"}),
    );
    let store = Bridge::isolated_memory();
    let a = build(guests::Artifact::Bridge, &cfg, Some(store.clone()));
    let bmw = build(guests::Artifact::Bridge, &cfg, Some(store));
    let front = Front::serve(la, a.clone());
    let mut b = Browser::new();
    let page = b.get(&front.url("/app")).unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let logged_in = Instant::now();
    let cookie = session_cookie(&b);
    idp.reset_stats().unwrap();

    // The tokens (3 s) have expired; the refresh token has not.
    std::thread::sleep(Duration::from_millis(3_600).saturating_sub(logged_in.elapsed()));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let mw = if i % 2 == 0 { a.clone() } else { bmw.clone() };
            let c = cookie.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let ex = mw.send(
                    Request::get("/api/data")
                        .header("Accept", "application/json")
                        .header("Cookie", &c),
                );
                let cleared = ex
                    .header_values("set-cookie")
                    .iter()
                    .any(|s| s.starts_with("_oidc_guard_session=;"));
                (ex.status, cleared)
            })
        })
        .collect();
    let results: Vec<(u16, bool)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        results.iter().all(|&(s, cleared)| s == 200 && !cleared),
        "{results:?}"
    );
    let stats = idp.stats().unwrap();
    assert_eq!(
        stats.refresh_token_grants, 1,
        "one refresh grant: {stats:?}"
    );
    assert_eq!(stats.refresh_token_grant_errors, 0, "{stats:?}");
}
