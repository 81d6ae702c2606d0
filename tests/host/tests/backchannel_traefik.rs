//! Back-channel logout end to end: a real `oidc-provider` (its `backchannelLogout` feature), two
//! real Traefik 3.7.15 processes (`GOMAXPROCS=1`) sharing a real redis-server in hybrid mode,
//! and a scripted browser.
//!
//! The browser logs in through replica A; its session works on both replicas. The user then
//! signs out *at the provider*; the provider POSTs a logout token to A's back-channel endpoint
//! (through a relay that records it), and the session stops working on A and on B within the
//! revocation-check interval. The recorded logout token, replayed to B, is refused.
//!
//! Needs `make build` (dist/) and `scripts/deps.sh test` (Traefik, redis-server, the IdP's npm
//! packages).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oidc_guard_testhost::backend::Backend;
use oidc_guard_testhost::browser::{Browser, Request as Nav};
use oidc_guard_testhost::idp::{Client, Idp, IdpOptions};
use oidc_guard_testhost::servers::{Flavor, RedisServer, ServerConfig};
use oidc_guard_testhost::traefik::{Traefik, TraefikConfig};
use oidc_guard_testhost::util::echoed_headers;
use serde_json::json;

const SESSION_KEY: &str = "backchannel-test-session-key-0123456789abcdef";
const BCL_PATH: &str = "/oauth2/backchannel-logout";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

/// GET `path` on a replica as an API client with `cookie`: the status and the user the backend
/// saw, if it was reached.
fn api_get(t: &Traefik, path: &str, cookie: &str) -> (u16, Option<String>) {
    let mut resp = agent()
        .get(&format!("{}{path}", t.url()))
        .header("Accept", "application/json")
        .header("Cookie", cookie)
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let user = echoed_headers(&body)
        .into_iter()
        .find(|(k, _)| k == "x-forwarded-user")
        .map(|(_, v)| v);
    (status, user)
}

fn post_logout(t: &Traefik, body: &[u8]) -> (u16, String, Option<String>) {
    let mut resp = agent()
        .post(&format!("{}{BCL_PATH}", t.url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body)
        .unwrap();
    let status = resp.status().as_u16();
    let cc = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        resp.body_mut().read_to_string().unwrap_or_default(),
        cc,
    )
}

/// A relay in front of A's back-channel endpoint: forwards each POST unchanged, answers the
/// provider with A's status, and hands the body to the test.
fn relay(target: String) -> (String, mpsc::Receiver<(Vec<u8>, u16)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}{BCL_PATH}",
        l.local_addr().unwrap().port()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut rd = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            rd.read_line(&mut line).unwrap();
            let (mut len, mut ct) = (0usize, String::new());
            loop {
                let mut h = String::new();
                rd.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    } else if k.eq_ignore_ascii_case("content-type") {
                        ct = v.trim().to_string();
                    }
                }
            }
            let mut body = vec![0; len];
            rd.read_exact(&mut body).unwrap();
            let resp = agent()
                .post(&target)
                .header("Content-Type", &ct)
                .send(&body[..])
                .unwrap();
            let status = resp.status().as_u16();
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tx.send((body, status));
        }
    });
    (url, rx)
}

#[test]
fn provider_logout_ends_the_session_on_both_replicas_and_a_replayed_token_is_refused() {
    let t0 = Instant::now();
    let redis = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let backend = Backend::start();
    // Ports first: the client's redirect and back-channel URIs name replica A.
    let port_a = oidc_guard_testhost::util::free_port();
    let app = format!("http://127.0.0.1:{port_a}");
    let (relay_url, logouts) = relay(format!("{app}{BCL_PATH}"));
    let idp = Idp::start(
        IdpOptions::default().client(
            Client::new("app", "app secret", &format!("{app}/oauth2/callback"))
                .backchannel_logout(&relay_url, true),
        ),
    )
    .unwrap();
    let guard = json!({
        "providerURL": idp.issuer(),
        "clientID": "app",
        "clientSecret": "app secret",
        "sessionEncryptionKey": SESSION_KEY,
        "backchannelLogout": {"enabled": true, "path": BCL_PATH},
        "revocationCheckInterval": "1s",
        "redis": {"address": redis.addr(), "cacheMode": "hybrid"},
    });
    let replica = |port: Option<u16>| {
        let mut c = TraefikConfig::default()
            .middleware("guard", guard.clone())
            .route("app", "PathPrefix(`/`)", &["guard"], &backend.url())
            .gomaxprocs(1);
        c.port = port;
        c
    };
    let (ca, cb) = (replica(Some(port_a)), replica(None));
    let (a, b) = {
        let ha = std::thread::spawn(move || ca.start());
        let hb = std::thread::spawn(move || cb.start());
        // Both joined before either is unwrapped: a replica that started is then dropped (and
        // killed) when the other failed, instead of outliving the test process.
        let (ra, rb) = (ha.join(), hb.join());
        (ra.unwrap(), rb.unwrap())
    };
    for t in [&a, &b] {
        t.wait_route("/ready");
    }
    eprintln!("set-up: {:?}", t0.elapsed());

    // Log in through A.
    let mut browser = Browser::new();
    let page = browser.send(Nav::get(&format!("{app}/app/home"))).unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let cookie: String = browser.jar().header_with_prefix("_oidc_guard_session");
    assert!(!cookie.is_empty(), "no session cookie");
    // The session works on both replicas.
    for t in [&a, &b] {
        let (status, user) = api_get(t, "/app/data", &cookie);
        assert_eq!(status, 200);
        assert_eq!(user.as_deref(), Some("alice"));
    }

    // The user signs out at the provider (not through the plugin): the provider sends the
    // back-channel logout to A.
    let disco = idp.discovery().unwrap();
    let end_session = disco["end_session_endpoint"].as_str().unwrap().to_string();
    let confirm = browser.get(&end_session).unwrap();
    browser.submit_form(&confirm, None).unwrap();
    let (token_body, status) = logouts
        .recv_timeout(Duration::from_secs(15))
        .expect("the provider sent a back-channel logout");
    assert_eq!(status, 200, "A accepted the provider's logout token");
    let stats = idp.stats().unwrap();
    assert_eq!(stats.backchannel_logouts_sent, 1, "{stats:?}");
    assert_eq!(stats.backchannel_logout_errors, 0, "{stats:?}");
    assert!(
        a.log_text()
            .contains("back-channel logout: ended provider session"),
        "{}",
        a.log_text()
    );

    // The session ends on both replicas within the revocation-check interval (1 s here): every
    // pooled instance re-checks at most that long after its last look.
    let logged_out = Instant::now();
    let mut first_refusal = [None, None];
    while logged_out.elapsed() < Duration::from_secs(5) && first_refusal.iter().any(Option::is_none)
    {
        for (i, t) in [&a, &b].into_iter().enumerate() {
            let (status, user) = api_get(t, "/app/data", &cookie);
            assert!(status < 500, "{status}");
            if status != 200 {
                assert_eq!(user, None);
                first_refusal[i].get_or_insert(logged_out.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "session refused after the back-channel logout: A {:?}, B {:?}",
        first_refusal[0], first_refusal[1]
    );
    assert!(
        first_refusal.iter().all(Option::is_some),
        "the session still works somewhere"
    );
    // Past the interval (plus margin), no instance of either replica accepts it any more.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(logged_out.elapsed()));
    for _ in 0..10 {
        for t in [&a, &b] {
            let (status, user) = api_get(t, "/app/data", &cookie);
            assert!(
                status != 200 && status < 500 && user.is_none(),
                "{status} {user:?}"
            );
        }
    }

    // The recorded logout token, replayed to B (and to A): refused.
    for t in [&b, &a] {
        let (status, body, cc) = post_logout(t, &token_body);
        assert_eq!(status, 400, "{body}");
        assert_eq!(body.trim(), "{\"error\":\"invalid_request\"}");
        assert_eq!(cc.as_deref(), Some("no-store"));
    }
    assert!(
        b.log_text().contains("replayed"),
        "B refused it as a replay: {}",
        b.log_text()
    );
    // Garbage and GET are refused too, without a 5xx.
    assert_eq!(post_logout(&b, b"logout_token=abc.def.ghi").0, 400);
    let r = agent()
        .get(&format!("{}{BCL_PATH}", b.url()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // A fresh login works again afterwards (the revocation named the ended session only).
    let mut browser2 = Browser::new();
    let page = browser2
        .send(Nav::get(&format!("{app}/app/again")))
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let cookie2: String = browser2.jar().header_with_prefix("_oidc_guard_session");
    assert_eq!(api_get(&b, "/app/data", &cookie2).0, 200);
    for t in [&a, &b] {
        let log = t.log_text();
        assert!(
            !log.contains("wasm stack trace") && !log.contains("panic"),
            "{log}"
        );
    }
    eprintln!("total: {:?}", t0.elapsed());
}
