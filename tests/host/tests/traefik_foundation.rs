//! The plugin in real Traefik 3.7.15: it loads from `dist/oidc-guard/`, excluded paths reach the
//! backend, protected paths are refused, spoofed identity headers never reach the backend, and a
//! refused configuration keeps its route closed (and says why in Traefik's log).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use oidc_guard_testhost::backend::Backend;
use oidc_guard_testhost::traefik::TraefikConfig;
use oidc_guard_testhost::util::echoed_headers;
use serde_json::json;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A bearer-only configuration written the way users write YAML (typed values: Traefik
/// stringifies them on the way to the guest).
fn guard_config() -> serde_json::Value {
    json!({
        "issuer": "https://idp.example.com",
        "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},
        "bearer": {"enabled": true, "audience": "api", "maxTokenSize": 8192},
        "excludedURLs": ["/public"],
        "claimHeaders": {"X-User-Email": "email"},
        "sessionMaxAge": 3600,
    })
}

#[test]
fn plugin_guards_a_route_in_real_traefik() {
    let backend = Backend::start();
    let t = TraefikConfig::default()
        .middleware("guard", guard_config())
        .route("protected", "PathPrefix(`/`)", &["guard"], &backend.url())
        .start();
    t.wait_route("/public/ready");

    // An excluded path reaches the backend; spoofed identity headers are removed on the way,
    // in every spelling a CGI/WSGI backend would read as the same variable.
    let r = get(
        &format!("{}/public/page?x=1", t.url()),
        &[
            ("X-Forwarded-User", "mallory"),
            ("X-User-Email", "mallory@evil.test"),
            ("X_Forwarded_User", "mallory"),
            ("x_user_email", "mallory@evil.test"),
            ("X_Request_Tag", "kept"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = echoed_headers(&r.body);
    for spoofed in [
        "x-forwarded-user",
        "x-user-email",
        "x_forwarded_user",
        "x_user_email",
    ] {
        assert!(
            !seen.iter().any(|(k, _)| k == spoofed),
            "spoofed {spoofed} reached the backend: {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|(k, _)| k == "x_request_tag"),
        "an unrelated underscore header is forwarded: {seen:?}"
    );

    // Protected paths are refused before the backend sees them.
    let hits = backend.hits();
    for (path, accept) in [
        ("/admin", "application/json"),
        ("/admin", "text/html"),
        ("/public/../admin", "application/json"),
    ] {
        let r = get(
            &format!("{}{path}", t.url()),
            &[("Accept", accept), ("X-Forwarded-User", "mallory")],
        );
        assert_eq!(r.status, 401, "{path} {accept}: {}", r.body);
        let challenge = header(&r, "www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    }
    // A token that is not a JWT: 401 invalid_token.
    let r = get(
        &format!("{}/admin", t.url()),
        &[("Authorization", "Bearer abc.def.ghi")],
    );
    assert_eq!(r.status, 401);
    assert!(header(&r, "www-authenticate")
        .unwrap_or_default()
        .contains("invalid_token"));
    assert_eq!(
        backend.hits(),
        hits,
        "a refused request reached the backend"
    );
}

#[test]
fn a_refused_configuration_keeps_the_route_closed() {
    let backend = Backend::start();
    let mut bad = guard_config();
    bad["alowedUsers"] = json!(["alice@example.com"]); // typo: must never mean "allow everyone"
    let t = TraefikConfig::default()
        .middleware("broken", bad)
        .route(
            "guarded",
            "PathPrefix(`/admin`)",
            &["broken"],
            &backend.url(),
        )
        // A catch-all route without the middleware: if Traefik dropped the guarded router, its
        // requests would fall through to this one, unauthenticated.
        .route("open", "PathPrefix(`/`)", &[], &backend.url())
        .priority(1)
        .start();
    t.wait_route("/admin");
    let hits = backend.hits();
    for _ in 0..3 {
        let r = get(
            &format!("{}/admin/x", t.url()),
            &[("X-Forwarded-User", "mallory")],
        );
        assert_eq!(r.status, 500, "{}", r.body);
        assert!(
            !r.body.contains("alowedUsers"),
            "the reason belongs in the log, not the response"
        );
    }
    assert_eq!(backend.hits(), hits, "traffic passed a misconfigured guard");
    let log = t.log_text();
    assert!(
        log.contains("alowedUsers") && log.contains("allowedUsers"),
        "the log must name the bad key and the closest known key:\n{log}"
    );
    // The open route still works (Traefik itself is fine).
    assert_eq!(get(&format!("{}/other", t.url()), &[]).status, 200);
}
