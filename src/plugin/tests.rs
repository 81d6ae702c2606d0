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
        .with("x-email", "m@x");
    assert!(p.handle(&ex));
    assert_eq!(ex.upstream_header("x-forwarded-user"), None);
    assert_eq!(ex.upstream_header("x-email"), None);
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
