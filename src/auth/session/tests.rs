//! Sessions through the whole pipeline, natively (the harness is the login tests').
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use serde_json::json;

use crate::auth::oidc::tests::{
    base_config, fake_l2, login, merge, nav, plugin, query, send, Idp, Jar, KEY1, KEY2, T0,
};
use crate::clock::{Clock as _, ManualClock};
use crate::testkit::FakeExchange;

fn logged_in(
    extra: serde_json::Value,
    refresh: Option<&str>,
    ttl: u64,
) -> (crate::plugin::Plugin, Idp, Rc<ManualClock>, Jar) {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let mut p = plugin(&merge(base_config(), extra), &idp, &clock, None);
    let mut jar = Jar::default();
    let r = login(&mut p, &mut jar, &idp, &clock, "/app", refresh, ttl);
    assert_eq!(r.status, Some(302), "{}", r.body);
    assert!(jar.get("_oidc_guard_session").is_some());
    (p, idp, clock, jar)
}

/// A login at `p` whose ID token carries `groups` groups (forwarded by a header, so kept), which
/// the test expects to fill `chunks` cookies.
fn chunked_login(p: &mut crate::plugin::Plugin, idp: &Idp, groups: usize, chunks: usize) -> Jar {
    let mut jar = Jar::default();
    let auth = nav(p, &mut jar, "/app").location.unwrap();
    let mut claims = Idp::claims(&query(&auth, "nonce").unwrap(), T0 / 1000);
    let groups: Vec<String> = (1..=groups)
        .map(|i| format!("large-claims-group-{i:03}"))
        .collect();
    claims["groups"] = json!(groups);
    idp.answer(200, idp.tokens(&idp.sign(&claims), None, 300));
    let cb = crate::auth::oidc::tests::callback(p, &mut jar, &auth, "c");
    assert_eq!(cb.status, Some(302), "{}", cb.body);
    assert_eq!(jar.session_names().len(), chunks, "{} groups", groups.len());
    jar
}

/// Replicas sharing `l2` (made on the test's clock): replica 0 logs in (tokens of 120 s,
/// refresh grace 60 s) and, at T0 + 100 s, fails to refresh (the provider is down), so it holds
/// the refresh lock of this version for 30 s and marks the refresh failed.
fn after_a_failed_refresh(
    make_l2: impl FnOnce(
        Rc<ManualClock>,
    ) -> (
        crate::store::fake::FakeL2,
        Rc<std::cell::RefCell<crate::store::fake::FakeState>>,
    ),
    replicas: usize,
) -> (
    Idp,
    Rc<ManualClock>,
    Rc<std::cell::RefCell<crate::store::fake::FakeState>>,
    Vec<crate::plugin::Plugin>,
    Jar,
) {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let (l2, state) = make_l2(clock.clone());
    let cfg = merge(base_config(), json!({"refreshGracePeriod": "60s"}));
    let mut ps: Vec<_> = (0..replicas)
        .map(|_| plugin(&cfg, &idp, &clock, Some(l2.sharing())))
        .collect();
    let mut jar = Jar::default();
    let r = login(
        &mut ps[0],
        &mut jar,
        &idp,
        &clock,
        "/app",
        Some("rt-1"),
        120,
    );
    assert_eq!(r.status, Some(302), "{}", r.body);
    clock.advance(100_000);
    idp.net.0.borrow_mut().down = true;
    assert!(nav(&mut ps[0], &mut jar.clone(), "/app").forwarded);
    idp.net.0.borrow_mut().down = false;
    (idp, clock, state, ps, jar)
}

/// The refresh-token grants the provider received.
fn refresh_grants(idp: &Idp) -> usize {
    idp.net
        .token_requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("grant_type=refresh_token"))
        .count()
}

fn is_login_redirect(s: &crate::auth::oidc::tests::Sent) -> bool {
    s.status == Some(302)
        && s.location
            .as_deref()
            .is_some_and(|l| l.starts_with("https://idp.test/auth?"))
}

#[test]
fn tampered_truncated_foreign_and_garbage_cookies_are_refused() {
    let (mut p, _idp, _clock, jar) = logged_in(json!({}), None, 300);
    let good = jar.get("_oidc_guard_session").unwrap().to_string();
    assert!(nav(&mut p, &mut jar.clone(), "/app").forwarded);

    let mut flipped = good.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, value) in [
        ("tampered", flipped.as_str()),
        ("truncated", &good[..good.len() - 5]),
        ("half", &good[..good.len() / 2]),
        ("empty", ""),
        ("garbage", "not-a-session"),
        ("chunk count without chunks", "3.abc"),
        ("huge", &"A".repeat(100_000)),
    ] {
        let mut j = Jar::default();
        j.set("_oidc_guard_session", value);
        let s = nav(&mut p, &mut j, "/app");
        assert!(is_login_redirect(&s), "{what}: {:?} {}", s.status, s.body);
        assert!(
            s.set_cookies
                .iter()
                .any(|c| c.starts_with("_oidc_guard_session=;") && c.contains("Max-Age=0")),
            "{what}"
        );
        // API clients get 401, not a redirect.
        let mut j = Jar::default();
        j.set("_oidc_guard_session", value);
        let s = send(
            &mut p,
            &mut j,
            FakeExchange::get("/api").with("Accept", "application/json"),
        );
        assert_eq!(s.status, Some(401), "{what}");
    }

    // A session of another middleware (another client ID: another identity) is refused.
    let idp2 = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let mut other = plugin(
        &merge(base_config(), json!({"clientID": "other-app"})),
        &idp2,
        &clock,
        None,
    );
    let mut j = Jar::default();
    j.set("_oidc_guard_session", &good);
    assert!(is_login_redirect(&nav(&mut other, &mut j, "/app")));
    // Same keys and client but another instanceName: refused as well.
    let mut named = plugin(
        &merge(base_config(), json!({"instanceName": "blue"})),
        &idp2,
        &clock,
        None,
    );
    let mut j = Jar::default();
    j.set("_oidc_guard_session", &good);
    assert!(is_login_redirect(&nav(&mut named, &mut j, "/app")));
    // And the same configuration on another "replica" accepts it.
    let mut twin = plugin(&base_config(), &idp2, &clock, None);
    let mut j = Jar::default();
    j.set("_oidc_guard_session", &good);
    assert!(nav(&mut twin, &mut j, "/app").forwarded);

    // Several cookies of the name (another deployment's on a parent domain, a stale one): the
    // first that opens is the session, whatever comes before it; none opening is a refusal.
    let foreign = {
        let mut j = Jar::default();
        let r = login(&mut named, &mut j, &idp2, &clock, "/app", None, 300);
        assert_eq!(r.status, Some(302), "{}", r.body);
        j.get("_oidc_guard_session").unwrap().to_string()
    };
    let with_cookies = |cookie: &str| {
        FakeExchange::get("/app")
            .with("Accept", "text/html")
            .with("Cookie", cookie)
    };
    for cookie in [
        format!("_oidc_guard_session={foreign}; _oidc_guard_session={good}"),
        format!("_oidc_guard_session=garbage; _oidc_guard_session={good}"),
        format!("_oidc_guard_session={good}; _oidc_guard_session=garbage"),
    ] {
        let s = send(&mut p, &mut Jar::default(), with_cookies(&cookie));
        assert!(s.forwarded, "{cookie}: {:?}", s.status);
        assert_eq!(
            s.ex.upstream_header("x-forwarded-user").as_deref(),
            Some("alice")
        );
    }
    let s = send(
        &mut p,
        &mut Jar::default(),
        with_cookies(&format!(
            "_oidc_guard_session={foreign}; _oidc_guard_session=x"
        )),
    );
    assert!(is_login_redirect(&s), "{:?}", s.status);
}

#[test]
fn expired_sessions_are_refused() {
    // No refresh token: the session ends with the tokens.
    let (mut p, _idp, clock, mut jar) = logged_in(json!({}), None, 120);
    clock.advance(119_000);
    assert!(nav(&mut p, &mut jar.clone(), "/app").forwarded);
    clock.advance(1_000);
    assert!(is_login_redirect(&nav(&mut p, &mut jar, "/app")));

    // sessionMaxAge bounds a session whatever its tokens say.
    let (mut p, _idp, clock, mut jar) = logged_in(json!({"sessionMaxAge": "2m"}), None, 3600);
    clock.advance(119_000);
    assert!(nav(&mut p, &mut jar.clone(), "/app").forwarded);
    clock.advance(1_000);
    assert!(is_login_redirect(&nav(&mut p, &mut jar, "/app")));
}

#[test]
fn key_rotation_opens_old_sessions_and_reseals_them() {
    let (mut old, idp, clock, jar) = logged_in(json!({}), None, 300);
    let old_cookie = jar.get("_oidc_guard_session").unwrap().to_string();
    let mut rotated = plugin(
        &merge(base_config(), json!({"sessionEncryptionKey": [KEY2, KEY1]})),
        &idp,
        &clock,
        None,
    );
    let mut j = jar.clone();
    let s = nav(&mut rotated, &mut j, "/app");
    assert!(
        s.forwarded,
        "an old-key session opens after a new key is added first"
    );
    assert_eq!(
        s.ex.upstream_header("x-forwarded-user").as_deref(),
        Some("alice")
    );
    let resealed = j.get("_oidc_guard_session").unwrap().to_string();
    assert_ne!(resealed, old_cookie, "resealed with the newest key");
    // The resealed cookie is not rewritten again, and the old key alone cannot open it.
    let s = nav(&mut rotated, &mut j.clone(), "/app");
    assert!(s.forwarded && s.set_cookies.is_empty());
    assert!(is_login_redirect(&nav(&mut old, &mut j.clone(), "/app")));
    // Once the old key is removed, old cookies are refused.
    let mut new_only = plugin(
        &merge(base_config(), json!({"sessionEncryptionKey": KEY2})),
        &idp,
        &clock,
        None,
    );
    assert!(is_login_redirect(&nav(
        &mut new_only,
        &mut jar.clone(),
        "/app"
    )));
    assert!(nav(&mut new_only, &mut j, "/app").forwarded);
}

#[test]
fn two_hundred_groups_stay_under_4k_per_cookie() {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let cfg = merge(
        base_config(),
        json!({"claimHeaders": {"X-Groups": "groups"}}),
    );
    let mut p = plugin(&cfg, &idp, &clock, None);
    let mut jar = Jar::default();
    let auth = nav(&mut p, &mut jar, "/app").location.unwrap();
    let mut claims = Idp::claims(&query(&auth, "nonce").unwrap(), T0 / 1000);
    let groups: Vec<String> = (1..=200)
        .map(|i| format!("large-claims-group-{i:03}"))
        .collect();
    claims["groups"] = json!(groups);
    let id_token = idp.sign(&claims);
    assert!(id_token.len() > 4096);
    idp.answer(200, idp.tokens(&id_token, Some("rt"), 300));
    let cb = crate::auth::oidc::tests::callback(&mut p, &mut jar, &auth, "c");
    assert_eq!(cb.status, Some(302), "{}", cb.body);
    let session_lines: Vec<&String> = cb
        .set_cookies
        .iter()
        .filter(|c| c.starts_with("_oidc_guard_session"))
        .collect();
    assert!(session_lines.len() >= 2, "chunked: {}", session_lines.len());
    for l in &session_lines {
        assert!(l.len() <= 4000, "{} bytes", l.len());
    }
    let s = nav(&mut p, &mut jar, "/app");
    assert!(s.forwarded);
    // (the pipeline caps a header value at 4096 characters: about 179 of the 200 names)
    let forwarded = s.ex.upstream_header("x-groups").unwrap();
    assert!(
        forwarded.starts_with("large-claims-group-001,large-claims-group-002,"),
        "{forwarded}"
    );
    assert!(forwarded.split(',').count() > 150);
    // Without a header forwarding them, the groups the policy asks about are all that is kept.
    let cfg = merge(
        base_config(),
        json!({"allowedRolesAndGroups": ["large-claims-group-042"]}),
    );
    let mut p = plugin(&cfg, &idp, &clock, None);
    let mut jar = Jar::default();
    let auth = nav(&mut p, &mut jar, "/app").location.unwrap();
    claims["nonce"] = json!(query(&auth, "nonce").unwrap());
    idp.answer(200, idp.tokens(&idp.sign(&claims), Some("rt"), 300));
    let cb = crate::auth::oidc::tests::callback(&mut p, &mut jar, &auth, "c");
    assert_eq!(cb.status, Some(302));
    assert_eq!(jar.session_names(), vec!["_oidc_guard_session".to_string()]);
    assert!(jar.get("_oidc_guard_session").unwrap().len() < 2000);
    assert!(nav(&mut p, &mut jar, "/app").forwarded);
}

#[test]
fn refresh_happens_once_and_other_replicas_adopt_it() {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let (l2, state) = fake_l2(&clock);
    let cfg = merge(base_config(), json!({"refreshGracePeriod": "60s"}));
    let mut a = plugin(&cfg, &idp, &clock, Some(l2.sharing()));
    let mut b = plugin(&cfg, &idp, &clock, Some(l2));
    let mut jar = Jar::default();
    let r = login(&mut a, &mut jar, &idp, &clock, "/app", Some("rt-1"), 120);
    assert_eq!(r.status, Some(302), "{}", r.body);
    let old = jar.clone();

    // Hot path: a valid session needs no L2 round trip once the revocation markers are cached.
    assert!(nav(&mut b, &mut old.clone(), "/app").forwarded);
    let calls = state.borrow().calls;
    for _ in 0..5 {
        assert!(nav(&mut b, &mut old.clone(), "/app").forwarded);
    }
    assert_eq!(
        state.borrow().calls,
        calls,
        "revocation checks served from L1 within the interval"
    );

    // Within the grace period: replica A refreshes once.
    clock.advance(61_000);
    let nonce_less = {
        let mut c = Idp::claims("ignored", clock.now_ms() / 1000);
        c.as_object_mut().unwrap().remove("nonce");
        c["groups"] = json!(["admins"]);
        c
    };
    idp.answer(200, idp.tokens(&idp.sign(&nonce_less), Some("rt-2"), 300));
    let mut ja = old.clone();
    let s = nav(&mut a, &mut ja, "/app");
    assert!(s.forwarded);
    assert!(
        s.set_cookies
            .iter()
            .any(|c| c.starts_with("_oidc_guard_session=")),
        "new cookie with the response"
    );
    let refreshes = refresh_grants;
    assert_eq!(refreshes(&idp), 1);
    let body = String::from_utf8(idp.net.token_requests().last().unwrap().body.clone()).unwrap();
    assert_eq!(
        crate::http::form::value(&body, "refresh_token").as_deref(),
        Some("rt-1")
    );

    // Replica B with the old cookie adopts the refreshed session: no second refresh.
    let mut jb = old.clone();
    let s = nav(&mut b, &mut jb, "/app");
    assert!(s.forwarded);
    assert!(s
        .set_cookies
        .iter()
        .any(|c| c.starts_with("_oidc_guard_session=")));
    assert_eq!(
        refreshes(&idp),
        1,
        "the old refresh token is never used twice"
    );
    // The adopted cookie works on both replicas without another refresh.
    assert!(nav(&mut b, &mut jb.clone(), "/app").forwarded);
    assert!(nav(&mut a, &mut jb.clone(), "/app").forwarded);
    assert_eq!(refreshes(&idp), 1);
    // The refreshed session is good until the new expiry.
    clock.advance(200_000);
    let s = nav(&mut a, &mut ja, "/app");
    assert!(s.forwarded);
    assert_eq!(refreshes(&idp), 1);
}

#[test]
fn a_refused_refresh_ends_the_session_and_a_failed_one_keeps_it() {
    let (mut p, idp, clock, jar) = logged_in(json!({}), Some("rt-1"), 120);
    clock.advance(90_000);
    // The provider is down: the session is kept while its tokens are valid.
    idp.net.0.borrow_mut().down = true;
    assert!(nav(&mut p, &mut jar.clone(), "/app").forwarded);
    idp.net.0.borrow_mut().down = false;
    // invalid_grant (with a fresh version so the lock of the failed attempt does not apply).
    let (mut p, idp, clock, mut jar) = logged_in(json!({}), Some("rt-1"), 120);
    clock.advance(90_000);
    idp.answer(400, json!({"error": "invalid_grant"}));
    let s = nav(&mut p, &mut jar, "/app");
    assert!(is_login_redirect(&s), "{:?}", s.status);
    assert!(jar.get("_oidc_guard_session").is_none());
}

#[test]
fn logout_on_one_replica_is_seen_by_the_other_within_the_interval() {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let (l2, _state) = fake_l2(&clock);
    let cfg = merge(base_config(), json!({"revocationCheckInterval": "2s"}));
    let mut a = plugin(&cfg, &idp, &clock, Some(l2.sharing()));
    let mut b = plugin(&cfg, &idp, &clock, Some(l2));
    let mut jar = Jar::default();
    login(&mut a, &mut jar, &idp, &clock, "/app", None, 3600);
    let saved = jar.clone();
    assert!(nav(&mut b, &mut saved.clone(), "/app").forwarded);
    let out = nav(&mut a, &mut jar, "/oauth2/callback/logout");
    assert_eq!(out.status, Some(302));
    // B remembered "not revoked" for at most the interval.
    clock.advance(2_001);
    assert!(is_login_redirect(&nav(&mut b, &mut saved.clone(), "/app")));
}

#[test]
fn an_unreachable_store_follows_the_fallback_policy() {
    for (fallback, forwarded, status) in [("l1", true, None), ("deny", false, Some(503))] {
        let idp = Idp::new();
        let clock = Rc::new(ManualClock::new(T0));
        let (l2, state) = fake_l2(&clock);
        let cfg = merge(
            base_config(),
            json!({"store": {"fallback": fallback}, "revocationCheckInterval": 0}),
        );
        let mut p = plugin(&cfg, &idp, &clock, Some(l2));
        let mut jar = Jar::default();
        login(&mut p, &mut jar, &idp, &clock, "/app", None, 3600);
        state.borrow_mut().fault =
            crate::store::fake::Fault::Fail(crate::store::StoreError::Unavailable("down".into()));
        let s = nav(&mut p, &mut jar, "/app");
        assert_eq!((s.forwarded, s.status), (forwarded, status), "{fallback}");
        assert!(
            jar.get("_oidc_guard_session").is_some(),
            "{fallback}: the cookie is kept"
        );
    }
}

#[test]
fn server_side_sessions_keep_only_a_ticket_in_the_cookie() {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let (l2, state) = fake_l2(&clock);
    let cfg = merge(
        base_config(),
        json!({"sessionStorage": "server", "claimHeaders": {"X-Groups": "groups"}}),
    );
    let mut a = plugin(&cfg, &idp, &clock, Some(l2.sharing()));
    let mut b = plugin(&cfg, &idp, &clock, Some(l2));
    let mut jar = Jar::default();
    let r = login(&mut a, &mut jar, &idp, &clock, "/app", Some("rt"), 3600);
    assert_eq!(r.status, Some(302), "{}", r.body);
    let ticket = jar.get("_oidc_guard_session").unwrap().to_string();
    assert_eq!(ticket.len(), 22 + 1 + 43, "{ticket}");
    // The store holds no plaintext: neither the refresh token nor a claim.
    for (_, (v, _)) in state.borrow().map.iter() {
        let text = String::from_utf8_lossy(v);
        assert!(
            !text.contains("alice@example.com") && !text.contains("\"rt\""),
            "{text}"
        );
    }
    let s = nav(&mut b, &mut jar.clone(), "/app");
    assert!(s.forwarded);
    assert_eq!(
        s.ex.upstream_header("x-groups").as_deref(),
        Some("admins,devs")
    );
    // A ticket with the wrong secret opens nothing.
    let mut forged = Jar::default();
    let (id, _) = ticket.split_once('~').unwrap();
    forged.set("_oidc_guard_session", &format!("{id}~{}", "A".repeat(43)));
    assert!(is_login_redirect(&nav(&mut b, &mut forged, "/app")));
    // Before the real ticket, a forged or unknown one does not hide it.
    for first in [
        format!("{id}~{}", "A".repeat(43)),
        format!("{}~{}", "B".repeat(22), "A".repeat(43)),
    ] {
        let s = send(
            &mut b,
            &mut Jar::default(),
            FakeExchange::get("/app").with("Accept", "text/html").with(
                "Cookie",
                &format!("_oidc_guard_session={first}; _oidc_guard_session={ticket}"),
            ),
        );
        assert!(s.forwarded, "{first}: {:?}", s.status);
    }
    // Logout removes it from the store.
    let saved = jar.clone();
    nav(&mut a, &mut jar, "/oauth2/callback/logout");
    clock.advance(6_000);
    assert!(is_login_redirect(&nav(&mut b, &mut saved.clone(), "/app")));
}

#[test]
fn our_cookies_are_kept_when_stripping_is_off() {
    let (mut p, _idp, _clock, mut jar) = logged_in(json!({"stripAuthCookies": false}), None, 300);
    jar.set("other", "1");
    let s = nav(&mut p, &mut jar, "/app");
    assert!(s
        .ex
        .upstream_header("cookie")
        .unwrap()
        .contains("_oidc_guard_session="));
}

/// `forwardAccessToken`: the session keeps the access token, the backend gets it (a client's
/// copy is replaced), and a refresh forwards the new one from then on.
#[test]
fn access_token_is_forwarded_and_follows_refreshes() {
    let (mut p, idp, clock, mut jar) = logged_in(
        json!({"forwardAccessToken": "X-Forwarded-Access-Token", "refreshGracePeriod": "60s", "excludedURLs": ["/public"]}),
        Some("rt-1"),
        120,
    );
    let s = send(
        &mut p,
        &mut jar,
        FakeExchange::get("/app").with("X-Forwarded-Access-Token", "forged"),
    );
    assert!(s.forwarded);
    assert_eq!(
        s.ex.upstream_header("x-forwarded-access-token").as_deref(),
        Some("at-1")
    );
    clock.advance(61_000);
    let mut c = Idp::claims("ignored", clock.now_ms() / 1000);
    c.as_object_mut().unwrap().remove("nonce");
    let mut answer = idp.tokens(&idp.sign(&c), Some("rt-2"), 300);
    answer["access_token"] = json!("at-2");
    idp.answer(200, answer);
    for _ in 0..2 {
        let s = nav(&mut p, &mut jar, "/app");
        assert!(s.forwarded);
        assert_eq!(
            s.ex.upstream_header("x-forwarded-access-token").as_deref(),
            Some("at-2")
        );
    }
    assert_eq!(idp.net.token_requests().len(), 2, "one login, one refresh");
    // Unauthenticated requests never forward a client's copy (here: an excluded path).
    let mut none = Jar::default();
    let s = send(
        &mut p,
        &mut none,
        FakeExchange::get("/public/x").with("X_Forwarded_Access_Token", "forged"),
    );
    assert!(s.forwarded);
    assert_eq!(s.ex.upstream_header("x_forwarded_access_token"), None);
}

/// `forwardAccessToken: Authorization` sets `Bearer <token>`, replacing what the client sent;
/// a session made before the option was set forwards no `Authorization` at all.
#[test]
fn access_token_in_authorization() {
    let cfg = json!({"forwardAccessToken": "Authorization"});
    let (mut p, _idp, _clock, mut jar) = logged_in(cfg.clone(), None, 300);
    let s = send(
        &mut p,
        &mut jar,
        FakeExchange::get("/app").with("Authorization", "Basic bWFsbG9yeTpwdw=="),
    );
    assert!(s.forwarded);
    assert_eq!(
        s.ex.upstream_header("authorization").as_deref(),
        Some("Bearer at-1")
    );
    let (_p, idp, clock, mut old) = logged_in(json!({}), None, 300);
    let mut with = plugin(&merge(base_config(), cfg), &idp, &clock, None);
    let s = send(
        &mut with,
        &mut old,
        FakeExchange::get("/app").with("Authorization", "Basic bWFsbG9yeTpwdw=="),
    );
    assert!(s.forwarded, "the older session still works");
    assert_eq!(s.ex.upstream_header("authorization"), None);
}

/// A token response without any lifetime (`expires_in` is only RECOMMENDED, and no ID token):
/// the new tokens are taken to last as long as the ones they replace, so the next requests do
/// not refresh again, each spending a token request.
#[test]
fn a_refresh_without_a_lifetime_is_not_repeated_on_every_request() {
    let (mut p, idp, clock, mut jar) =
        logged_in(json!({"refreshGracePeriod": "60s"}), Some("rt-1"), 120);
    clock.advance(61_000);
    for i in 2..10 {
        idp.answer(
            200,
            json!({"access_token": format!("at-{i}"), "token_type": "Bearer",
                   "refresh_token": format!("rt-{i}")}),
        );
    }
    for _ in 0..5 {
        assert!(nav(&mut p, &mut jar, "/app").forwarded);
        clock.advance(1_000);
    }
    let refreshes = || refresh_grants(&idp);
    assert_eq!(refreshes(), 1, "one refresh, not one per request");
    // The refreshed session lasts the old lifetime (120 s) from the refresh at T0 + 61 s, and is
    // refreshed again within the grace period of that: from T0 + 121 s (now T0 + 66 s).
    clock.advance(50_000);
    assert!(nav(&mut p, &mut jar, "/app").forwarded);
    assert_eq!(refreshes(), 1);
    clock.advance(6_000);
    assert!(nav(&mut p, &mut jar, "/app").forwarded);
    assert_eq!(refreshes(), 2);
}

/// Tokens that live shorter than `refreshGracePeriod` are refreshed half-way through their
/// lifetime, not on every request.
#[test]
fn tokens_shorter_than_the_grace_period_are_not_refreshed_on_every_request() {
    let (mut p, idp, clock, mut jar) =
        logged_in(json!({"refreshGracePeriod": "60s"}), Some("rt-1"), 30);
    for i in 2..10 {
        idp.answer(
            200,
            json!({"access_token": format!("at-{i}"), "token_type": "Bearer",
                   "refresh_token": format!("rt-{i}"), "expires_in": 30}),
        );
    }
    for _ in 0..30 {
        assert!(nav(&mut p, &mut jar, "/app").forwarded);
        clock.advance(1_000);
    }
    let refreshes = refresh_grants(&idp);
    // 30 s of requests, tokens of 30 s refreshed 15 s before expiry: at 15 s and at 30 s.
    assert!(
        (1..=2).contains(&refreshes),
        "{refreshes} refreshes in 30 s"
    );
}

/// A chunked session behind another deployment's chunked session of the same name (set for a
/// parent domain, older, so sent first) opens from its own chunks.
#[test]
fn a_chunked_session_behind_another_chunked_session_of_the_name_opens() {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let cfg = merge(
        base_config(),
        json!({"claimHeaders": {"X-Groups": "groups"}}),
    );
    let mut ours = plugin(&cfg, &idp, &clock, None);
    let mut foreign = plugin(
        &merge(cfg.clone(), json!({"instanceName": "other-deployment"})),
        &idp,
        &clock,
        None,
    );
    let f = chunked_login(&mut foreign, &idp, 200, 2);
    let o = chunked_login(&mut ours, &idp, 200, 2);
    assert!(
        nav(&mut ours, &mut o.clone(), "/app").forwarded,
        "alone it opens"
    );
    for cookie in [
        format!("{}; {}", f.header(), o.header()),
        format!("{}; {}", o.header(), f.header()),
    ] {
        let s = send(
            &mut ours,
            &mut Jar::default(),
            FakeExchange::get("/app")
                .with("Accept", "text/html")
                .with("Cookie", &cookie),
        );
        assert!(s.forwarded, "{:?} {:?}", s.status, s.set_cookies);
    }
}

/// A session whose claims were selected for another policy (another middleware with the same
/// cookie name, or this one before a change) is not judged on them: the user logs in again
/// rather than getting a 403 for groups the other policy never kept.
#[test]
fn a_session_is_not_judged_on_claims_selected_for_another_policy() {
    let (_p, idp, clock, jar) = logged_in(json!({"allowedRolesAndGroups": ["admins"]}), None, 3600);
    let mut other = plugin(
        &merge(base_config(), json!({"allowedRolesAndGroups": ["devs"]})),
        &idp,
        &clock,
        None,
    );
    let s = nav(&mut other, &mut jar.clone(), "/app");
    assert!(
        is_login_redirect(&s),
        "alice is in devs: sent to log in again; got {:?}",
        s.status
    );
    // The same policy in another process opens it (every replica shares the fingerprint).
    let mut same = plugin(
        &merge(base_config(), json!({"allowedRolesAndGroups": ["admins"]})),
        &idp,
        &clock,
        None,
    );
    assert!(nav(&mut same, &mut jar.clone(), "/app").forwarded);
}

/// A request whose tokens expired while another replica holds the refresh lock waits for that
/// replica's result: at most 2 s when nothing comes, not at all when the refresh is marked
/// failed. (The refreshed session arriving during the wait is tested with two real Traefik
/// processes in `oidc_traefik`.)
#[test]
fn a_lock_loser_with_expired_tokens_waits_for_the_winner_within_bounds() {
    // Replica A's refresh fails (the provider is down) inside the grace period: A keeps the
    // session, holds the lock for this version (30 s) and marks the refresh failed.
    let (idp, clock, state, mut ps, jar) = after_a_failed_refresh(|c| fake_l2(&c), 3);
    let marked: Vec<String> = state
        .borrow()
        .map
        .keys()
        .filter(|k| k.contains(":r:"))
        .cloned()
        .collect();
    assert_eq!(marked.len(), 1, "{:?}", state.borrow().map.keys());
    // The tokens expire (T0 + 120 s). B sees the failure mark: no second refresh, no wait, a new
    // login.
    clock.advance(21_000);
    let before = clock.now_ms();
    let s = nav(&mut ps[1], &mut jar.clone(), "/app");
    assert!(is_login_redirect(&s), "{:?}", s.status);
    assert_eq!(clock.now_ms(), before, "no wait after a marked failure");
    // Without the mark (the winner's instance was dropped mid-refresh), a replica waits 2 s at
    // most (C: B's L1 remembers the mark).
    state.borrow_mut().map.retain(|k, _| !k.contains(":r:"));
    let before = clock.now_ms();
    let s = nav(&mut ps[2], &mut jar.clone(), "/app");
    assert!(is_login_redirect(&s), "{:?}", s.status);
    let waited = clock.now_ms() - before;
    assert!((2_000..2_700).contains(&waited), "waited {waited} ms");
    let refreshes = refresh_grants(&idp);
    assert_eq!(refreshes, 1, "A's attempt only");
}

/// The wait for another replica's refresh is bounded by the clock, L2 round trips included: a
/// store answering just under its read timeout cannot stretch it (10 polls of 300 ms on top of
/// the pauses took 7 s before).
#[test]
fn the_wait_for_a_refresh_is_bounded_in_time_with_a_slow_store() {
    let (_idp, clock, state, mut ps, jar) =
        after_a_failed_refresh(crate::store::fake::FakeL2::with_manual_clock, 2);
    // The failure mark lost, the lock held: C waits for a refresh that never comes.
    state.borrow_mut().map.retain(|k, _| !k.contains(":r:"));
    clock.advance(21_000);
    state.borrow_mut().latency_ms = 300;
    let before = clock.now_ms();
    let s = nav(&mut ps[1], &mut jar.clone(), "/app");
    assert!(is_login_redirect(&s), "{:?}", s.status);
    let elapsed = clock.now_ms() - before;
    // The wait itself (2 s, its last poll included) plus the round trips before and after it.
    assert!(elapsed <= 2_000 + 300 * 7, "the request took {elapsed} ms");
}

/// A chunked session between another deployment's shorter chunked session (before it) and a
/// longer one (after it) takes its own chunk of each name.
#[test]
fn a_chunked_session_between_shorter_and_longer_foreign_ones_opens() {
    let idp = Idp::new();
    let clock = Rc::new(ManualClock::new(T0));
    let cfg = merge(
        base_config(),
        json!({"claimHeaders": {"X-Groups": "groups"}}),
    );
    let mut ours = plugin(&cfg, &idp, &clock, None);
    let other = |name: &str| {
        plugin(
            &merge(cfg.clone(), json!({"instanceName": name})),
            &idp,
            &clock,
            None,
        )
    };
    let (mut a, mut c) = (other("deployment-a"), other("deployment-c"));
    let a = chunked_login(&mut a, &idp, 200, 2);
    let o = chunked_login(&mut ours, &idp, 300, 3);
    let c = chunked_login(&mut c, &idp, 300, 3);
    let mut parts = Vec::new();
    for n in &o.session_names() {
        for j in [&a, &o, &c] {
            if let Some(v) = j.get(n) {
                parts.push(format!("{n}={v}"));
            }
        }
    }
    let s = send(
        &mut ours,
        &mut Jar::default(),
        FakeExchange::get("/app")
            .with("Accept", "text/html")
            .with("Cookie", &parts.join("; ")),
    );
    assert!(s.forwarded, "{:?} {:?}", s.status, s.set_cookies);
}
