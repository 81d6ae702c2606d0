#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use serde_json::json;

use super::*;
use crate::clock::ManualClock;
use crate::testkit::{EcKey, FakeExchange, ScriptedFetch};

pub(crate) fn plugin_with(cfg: serde_json::Value) -> Plugin {
    let cfg = Config::parse(
        cfg.to_string().as_bytes(),
        &|_| None,
        &|_| Err(std::io::ErrorKind::NotFound.into()),
        Platform::default(),
    )
    .unwrap();
    let parts = Parts {
        clock: Rc::new(ManualClock::new(1_700_000_000_000)),
        l2: None,
        fetch: Box::new(ScriptedFetch::default()),
    };
    Plugin::with_parts(cfg, parts)
}

fn bearer_only() -> serde_json::Value {
    json!({
        "issuer": "https://idp.test",
        "jwks": EcKey::generate("k").jwks(),
        "bearer": {"enabled": true, "audience": "api"},
        "excludedURLs": ["/public", "/static/"],
        "claimHeaders": {"X-Email": "email"},
        "health": {"path": "/.oidc-guard/health", "metricsPath": "/.oidc-guard/metrics"},
    })
}

#[test]
fn inbound_identity_headers_are_removed_even_on_excluded_paths() {
    let mut p = plugin_with(bearer_only());
    let ex = FakeExchange::get("/public/x")
        .with("X-Forwarded-User", "mallory")
        .with("x-email", "m@x")
        // CGI/WSGI backends read these as HTTP_X_FORWARDED_USER and HTTP_X_EMAIL.
        .with("X_Forwarded_User", "mallory")
        .with("X-Forwarded_user", "mallory")
        .with("x_EMAIL", "m@x")
        .with("X.Email", "kept")
        .with("X_Forwarded_Usr", "kept");
    assert!(p.handle(&ex));
    for h in [
        "x-forwarded-user",
        "x-email",
        "x_forwarded_user",
        "x-forwarded_user",
        "x_email",
    ] {
        assert_eq!(ex.upstream_header(h), None, "{h}");
    }
    assert_eq!(ex.upstream_header("X.Email").as_deref(), Some("kept"));
    assert_eq!(
        ex.upstream_header("X_Forwarded_Usr").as_deref(),
        Some("kept")
    );
}

#[test]
fn identity_header_aliases_differ_in_dash_underscore_and_case_only() {
    for (name, canonical, alias) in [
        ("X_Forwarded_User", "X-Forwarded-User", true),
        ("x_forwarded_user", "X-Forwarded-User", true),
        ("X-Forwarded_user", "X-Forwarded-User", true),
        // The name itself is set or removed by name, not as an alias.
        ("x-forwarded-user", "X-Forwarded-User", false),
        ("X-Forwarded-User", "X-Forwarded-User", false),
        // An operator's own underscore header: its dash spelling collides under CGI too.
        ("X-User", "X_User", true),
        ("X_User", "X_User", false),
        ("X.Forwarded.User", "X-Forwarded-User", false),
        ("X_Forwarded_Use", "X-Forwarded-User", false),
        ("X_Forwarded_Users", "X-Forwarded-User", false),
        ("X_Forwarded_Usex", "X-Forwarded-User", false),
    ] {
        assert_eq!(is_alias(name, canonical), alias, "{name} vs {canonical}");
    }
}

#[test]
fn few_aliases_are_removed_blind_and_many_found_by_listing() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let Aliases::Remove(r) = Aliases::of(&names(&["X-Forwarded-User", "X-Email"])) else {
        panic!("two short headers are removed blind");
    };
    // In Go's canonical form (upper case only after `-`), which the host's `Header.Del` would
    // turn any spelling into anyway.
    assert_eq!(
        r,
        [
            "X_forwarded-User",
            "X-Forwarded_user",
            "X_forwarded_user",
            "X_email"
        ]
    );
    // Every spelling is one `is_alias` recognises, and the other way round.
    assert!(r
        .iter()
        .all(|a| is_alias(a, "X-Forwarded-User") || is_alias(a, "X-Email")));
    assert!(matches!(
        Aliases::of(&names(&[
            "X-Forwarded-User",
            "X-Auth-Request-Email",
            "X-Auth-Request-Groups"
        ])),
        Aliases::List
    ));
    assert!(matches!(
        Aliases::of(&names(&["A-B-C-D-E-F"])),
        Aliases::List
    ));

    // Listed: a guard with many claim headers removes the spellings it finds.
    let mut cfg = bearer_only();
    cfg["claimHeaders"] = json!({
        "X-Auth-Request-Email": "email",
        "X-Auth-Request-Groups": "groups",
        "X-Auth-Request-Preferred-Username": "preferred_username",
    });
    let mut p = plugin_with(cfg);
    assert!(matches!(p.guard().unwrap().aliases, Aliases::List));
    let ex = FakeExchange::get("/public/x")
        .with("X_Auth_Request_Email", "m@x")
        .with("x-auth_request-preferred_username", "mallory")
        .with("X_Forwarded_User", "mallory")
        .with("X_Auth_Request_Tag", "kept");
    assert!(p.handle(&ex));
    for h in [
        "X_Auth_Request_Email",
        "x-auth_request-preferred_username",
        "X_Forwarded_User",
    ] {
        assert_eq!(ex.upstream_header(h), None, "{h}");
    }
    assert_eq!(
        ex.upstream_header("X_Auth_Request_Tag").as_deref(),
        Some("kept")
    );
}

#[test]
fn excluded_paths_are_normalised() {
    let mut p = plugin_with(bearer_only());
    for (uri, forwarded) in [
        ("/public", true),
        ("/public/a?b=c", true),
        ("/static/app.js", true),
        ("//public//x", true),
        ("/public/../admin", false),
        ("/public/%2e%2e/admin", false),
        ("/public%2Fadmin", false),
        ("/public%2fx", false),
        ("/public\\..\\admin", false),
        ("/publicity", false),
        ("/admin", false),
        // Tomcat and Spring strip `;…` and collapse the empty segment: `/admin` to them.
        ("/public/;/../admin", false),
        ("/public/;jsessionid=x/../admin", false),
        ("/public/%3b/../admin", false),
    ] {
        let ex = FakeExchange::get(uri).with("Accept", "application/json");
        assert_eq!(p.handle(&ex), forwarded, "{uri}");
        if !forwarded {
            assert_eq!(ex.status(), Some(401), "{uri}");
        }
    }
}

#[test]
fn api_clients_get_rfc6750_challenges_and_browsers_a_page() {
    let mut p = plugin_with(bearer_only());
    let ex = FakeExchange::get("/api").with("Accept", "application/json");
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(401));
    assert_eq!(
        ex.sent_header("www-authenticate"),
        vec!["Bearer realm=\"oidc-guard\"".to_string()]
    );

    let ex = FakeExchange::get("/api").with("Authorization", "Bearer not-a-token");
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(401));
    assert!(ex.sent_header("www-authenticate")[0].contains("error=\"invalid_token\""));

    let ex = FakeExchange::get("/page").with("Accept", "text/html,application/xhtml+xml");
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(401));
    let ct = ex.sent_header("content-type");
    assert!(ct[0].starts_with("text/html"), "{ct:?}");
}

#[test]
fn a_refused_configuration_never_forwards() {
    let cfg =
        br#"{"issuer": "https://idp.test", "bearer": {"enabled": true}, "alowedUsers": ["x"]}"#;
    let mut p = Plugin::from_host_config(cfg);
    assert!(p
        .startup_messages()
        .iter()
        .any(|(l, m)| *l == LogLevel::Error
            && m.contains("alowedUsers")
            && m.contains("allowedUsers")));
    for uri in ["/", "/public", "/.oidc-guard/health"] {
        let ex = FakeExchange::get(uri).with("X-Forwarded-User", "mallory");
        assert!(!p.handle(&ex), "{uri}");
        assert_eq!(ex.status(), Some(500));
        assert_eq!(ex.upstream_header("x-forwarded-user"), None);
    }
}

#[test]
fn health_and_metrics_answer() {
    let mut p = plugin_with(bearer_only());
    let ex = FakeExchange::get("/.oidc-guard/health");
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(200));
    let body = ex.sent.borrow().as_ref().unwrap().2.clone();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["cache"]["mode"], "memory");
    let ex = FakeExchange::get("/.oidc-guard/metrics");
    assert!(!p.handle(&ex));
    let body = String::from_utf8(ex.sent.borrow().as_ref().unwrap().2.clone()).unwrap();
    assert!(body.contains("oidc_guard_store_l1_hits_total"), "{body}");
}

#[test]
fn browser_detection() {
    let p = |ex: &FakeExchange| {
        let mut g = plugin_with(bearer_only());
        let guard = g.guard().unwrap();
        guard.request(ex).is_browser_navigation()
    };
    assert!(p(&FakeExchange::get("/").with("Accept", "text/html")));
    assert!(p(&FakeExchange::get("/").with("Sec-Fetch-Mode", "navigate")));
    assert!(p(&FakeExchange::get("/")));
    assert!(!p(
        &FakeExchange::get("/").with("Accept", "application/json")
    ));
    assert!(!p(&FakeExchange::get("/")
        .with("Sec-Fetch-Mode", "cors")
        .with("Accept", "*/*")));
    assert!(!p(
        &FakeExchange::get("/").with("X-Requested-With", "XMLHttpRequest")
    ));
    assert!(!p(&FakeExchange::get("/").with("Authorization", "Bearer x")));
    let mut post = FakeExchange::get("/");
    post.method = "POST".into();
    assert!(!p(&post));
}

#[test]
fn identity_headers_are_set_whole_or_not_at_all() {
    let key = EcKey::generate("k");
    let mut cfg = bearer_only();
    cfg["jwks"] = json!(key.jwks());
    cfg["claimHeaders"] = json!({"X-Groups": "groups", "X-Name": "name"});
    cfg["bearer"]["maxTokenSize"] = json!(60000);
    let mut p = plugin_with(cfg);
    let now = 1_700_000_000u64;
    let many: Vec<String> = (0..1400).map(|i| format!("group-{i:05}")).collect();
    let token = key.sign(
        json!({}),
        &json!({"iss": "https://idp.test", "aud": "api", "sub": "alice\r\nX-Evil: 1", "exp": now + 600,
                "iat": now, "groups": many, "name": "Alice\u{0}Smith"}),
    );
    let ex = FakeExchange::get("/api").with("Authorization", &format!("Bearer {token}"));
    assert!(p.handle(&ex), "{:?}", ex.sent.borrow());
    assert_eq!(
        ex.upstream_header("x-forwarded-user").as_deref(),
        Some("aliceX-Evil: 1"),
        "CR/LF removed"
    );
    assert_eq!(ex.upstream_header("x-name").as_deref(), Some("AliceSmith"));
    assert_eq!(
        ex.upstream_header("x-groups"),
        None,
        "a list too long for a header is left out, not cut"
    );
    assert!(ex.logs.borrow().iter().any(|(_, m)| m.contains("X-Groups")));
}

#[test]
fn marks_hold_any_index() {
    let mut m = Marks::default();
    for i in [0, 1, 63, 64, 65, 130] {
        assert!(!m.contains(i), "{i} before");
        m.set(i);
        assert!(m.contains(i), "{i} after");
    }
    for i in [2, 62, 66, 127, 128, 129, 131, 1000] {
        assert!(!m.contains(i), "{i} never set");
    }
}

#[test]
fn scratch_keeps_small_buffers_only() {
    let mut slot = Vec::new();
    Scratch::keep(&mut slot, Vec::with_capacity(1024));
    assert!(slot.capacity() >= 1024);
    Scratch::keep(&mut slot, Vec::with_capacity(Scratch::KEEP + 1));
    assert!(
        slot.capacity() < Scratch::KEEP,
        "a large buffer is not kept"
    );
}

/// What one request read never shows in the next on the same plugin: a shorter target after a
/// longer one, a request without `Authorization` after one with.
#[test]
fn one_request_never_sees_the_previous_ones_values() {
    let key = EcKey::generate("k");
    let mut cfg = bearer_only();
    cfg["jwks"] = json!(key.jwks());
    let mut p = plugin_with(cfg);
    let now = 1_700_000_000u64;
    let token = key.sign(
        json!({}),
        &json!({"iss": "https://idp.test", "aud": "api", "sub": "alice", "exp": now + 600, "iat": now}),
    );
    let long = format!("/api/{}", "x".repeat(300));
    let ex = FakeExchange::get(&long).with("Authorization", &format!("Bearer {token}"));
    assert!(p.handle(&ex));
    assert_eq!(
        ex.upstream_header("x-forwarded-user").as_deref(),
        Some("alice")
    );
    let ex = FakeExchange::get("/public").with("Accept", "application/json");
    assert!(p.handle(&ex), "the short excluded path is matched as it is");
    assert_eq!(ex.upstream_header("x-forwarded-user"), None);
    let ex = FakeExchange::get("/api").with("Accept", "application/json");
    assert!(!p.handle(&ex), "no credential: refused");
    assert_eq!(ex.status(), Some(401));
}
