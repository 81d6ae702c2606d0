//! Bearer tokens, one-time tokens and DPoP in real Traefik 3.7.15: two Traefik processes
//! (`GOMAXPROCS=1`, platform report §4) load the plugin from `dist/oidc-guard/` and share one real
//! redis-server in hybrid mode — two replicas of one deployment.
//!
//! - a one-time token used at A is refused at B (and at A again);
//! - a normal bearer token works on both, any number of times (no false replay);
//! - DPoP: a valid proof is accepted, the same proof replayed on the other replica is refused,
//!   a wrong `htu`/`htm`/key is refused;
//! - every attack token of issue 6 is refused with 401 on both replicas, never a 5xx, and the
//!   backend never sees any of them.
//!
//! Needs `make build` (dist/) and `scripts/deps.sh test` (Traefik, redis-server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bearer_support;

use std::time::{Duration, Instant};

use bearer_support::{
    attack_tokens, bound_claims, claims, dpop_proof, dpop_proof_at, jwks, now, unique, Key, AUD,
    ISS,
};
use oidc_guard_testhost::backend::Backend;
use oidc_guard_testhost::servers::{Flavor, RedisServer, ServerConfig};
use oidc_guard_testhost::traefik::{Traefik, TraefikConfig};
use oidc_guard_testhost::util::echoed_headers;
use serde_json::{json, Value};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn challenges(&self) -> String {
        self.headers
            .iter()
            .filter(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

fn get(t: &Traefik, path: &str, headers: &[(&str, &str)]) -> Reply {
    let url = format!("{}{path}", t.url());
    let mut req = agent().get(&url);
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

fn bearer(t: &Traefik, path: &str, token: &str) -> Reply {
    get(t, path, &[("Authorization", &format!("Bearer {token}"))])
}

/// The middlewares of one replica: `/ott` takes one-time tokens, `/api` normal and DPoP-bound
/// tokens and forwards the token in `X-Access-Token`. Both in hybrid mode over the shared Redis.
fn replica(redis: &str, prefix: &str, keys: &[&Key], backend: &Backend) -> TraefikConfig {
    let base = |bearer: Value| {
        json!({
            "issuer": ISS,
            "jwks": jwks(keys),
            "bearer": bearer,
            "claimHeaders": {"X-Email": "email"},
            "redis": {"address": redis, "keyPrefix": prefix, "cacheMode": "hybrid"},
        })
    };
    TraefikConfig::default()
        .middleware(
            "ott",
            base(json!({"enabled": true, "audience": AUD, "oneTimeTokens": true})),
        )
        .middleware("api", {
            let mut api =
                base(json!({"enabled": true, "audience": AUD, "dpop": {"enabled": true}}));
            api["forwardAccessToken"] = json!("X-Access-Token");
            api
        })
        .route("ott", "PathPrefix(`/ott`)", &["ott"], &backend.url())
        .route("api", "PathPrefix(`/api`)", &["api"], &backend.url())
        .gomaxprocs(1)
}

#[test]
fn two_traefik_replicas_share_replay_detection_through_redis() {
    let t0 = Instant::now();
    let redis = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let backend = Backend::start();
    let key = Key::es256("k1");
    let rsa = Key::rsa("rsa-1", "RS256");
    let prefix = format!("{}:", unique("e2e"));
    let (a, b) = {
        let (ca, cb) = (
            replica(&redis.addr(), &prefix, &[&key, &rsa], &backend),
            replica(&redis.addr(), &prefix, &[&key, &rsa], &backend),
        );
        let ha = std::thread::spawn(move || ca.start());
        let hb = std::thread::spawn(move || cb.start());
        // Both joined before either is unwrapped: a replica that started is then dropped (and
        // killed) when the other failed, instead of outliving the test process.
        let (ra, rb) = (ha.join(), hb.join());
        (ra.unwrap(), rb.unwrap())
    };
    for t in [&a, &b] {
        assert_eq!(t.wait_route("/api/ready"), 401);
        assert_eq!(t.wait_route("/ott/ready"), 401);
    }
    eprintln!("set-up: {:?}", t0.elapsed());

    // --- A normal bearer token: any number of times on both replicas.
    let normal = key.access_token(&claims("alice", 300));
    for i in 0..15 {
        for t in [&a, &b] {
            let r = bearer(t, "/api/orders", &normal);
            assert_eq!(r.status, 200, "use {i}: {}", r.body);
            let seen = echoed_headers(&r.body);
            assert!(
                seen.contains(&("x-forwarded-user".into(), "alice".into())),
                "{seen:?}"
            );
        }
    }

    // `forwardAccessToken: X-Access-Token` on /api: the backend gets the token there, not the
    // client's copy.
    let r = get(
        &a,
        "/api/orders",
        &[
            ("Authorization", &format!("Bearer {normal}")),
            ("X-Access-Token", "forged"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens: Vec<String> = echoed_headers(&r.body)
        .into_iter()
        .filter(|(k, _)| k == "x-access-token")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(tokens, vec![normal.clone()]);

    // --- A one-time token: once in the cluster.
    let ott = key.access_token(&claims("bob", 300));
    let r = bearer(&a, "/ott/pay", &ott);
    assert_eq!(r.status, 200, "{}", r.body);
    for t in [&b, &a, &b] {
        let r = bearer(t, "/ott/pay", &ott);
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            r.challenges().contains("invalid_token"),
            "{}",
            r.challenges()
        );
    }
    assert!(
        b.log_text().contains("one-time token already used"),
        "B's log says why"
    );
    // Its marker is in Redis under the replicas' prefix, with a TTL until exp + skew.
    let markers = redis.cli(&["--scan", "--pattern", &format!("{prefix}*:jti:at:*")]);
    assert_eq!(markers.lines().count(), 1, "{markers}");
    let ttl: i64 = redis
        .cli(&["PTTL", markers.lines().next().unwrap()])
        .trim()
        .parse()
        .unwrap();
    assert!((300_000..=361_000).contains(&ttl), "marker TTL {ttl} ms");
    // Another one-time token, first used at B.
    let ott2 = key.access_token(&claims("bob", 300));
    assert_eq!(bearer(&b, "/ott/pay", &ott2).status, 200);
    assert_eq!(bearer(&a, "/ott/pay", &ott2).status, 401);

    // --- DPoP. The client addresses http://api.test/... through either replica.
    let client = Key::es256("client");
    let bound = key.access_token(&bound_claims("carol", &client));
    let htu = "http://api.test/api/orders";
    let dpop_get = |t: &Traefik, proof: &str| {
        get(
            t,
            "/api/orders?page=1",
            &[
                ("Host", "api.test"),
                ("Authorization", &format!("DPoP {bound}")),
                ("DPoP", proof),
            ],
        )
    };
    let proof = dpop_proof(&client, "GET", htu, &bound);
    let r = dpop_get(&a, &proof);
    assert_eq!(r.status, 200, "{} {:?}", r.body, r.headers);
    let seen = echoed_headers(&r.body);
    assert!(seen.contains(&("x-forwarded-user".into(), "carol".into())));
    // The bound token in X-Access-Token too; `Authorization` keeps its DPoP scheme.
    assert!(
        seen.contains(&("x-access-token".into(), bound.clone())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("authorization".into(), format!("DPoP {bound}"))),
        "{seen:?}"
    );
    // The same proof at B: replayed.
    let r = dpop_get(&b, &proof);
    assert_eq!(r.status, 401);
    assert!(
        r.challenges().contains("invalid_dpop_proof"),
        "{}",
        r.challenges()
    );
    assert!(
        b.log_text().contains("replayed proof"),
        "refused as a replay, not for another reason"
    );
    // Fresh proofs work on both.
    for t in [&b, &a] {
        assert_eq!(
            dpop_get(t, &dpop_proof(&client, "GET", htu, &bound)).status,
            200
        );
    }
    // Wrong htu (scheme, path, host), wrong htm, stale iat, another key, no proof, the bound
    // token as a plain bearer token.
    let other = Key::es256("other-client");
    let cases = [
        (
            "htu scheme",
            dpop_proof(&client, "GET", "https://api.test/api/orders", &bound),
            "invalid_dpop_proof",
        ),
        (
            "htu path",
            dpop_proof(&client, "GET", "http://api.test/api/admin", &bound),
            "invalid_dpop_proof",
        ),
        (
            "htu host",
            dpop_proof(&client, "GET", "http://evil.test/api/orders", &bound),
            "invalid_dpop_proof",
        ),
        (
            "htm",
            dpop_proof(&client, "POST", htu, &bound),
            "invalid_dpop_proof",
        ),
        (
            "iat",
            dpop_proof_at(&client, "GET", htu, &bound, now() - 600, &unique("p")),
            "invalid_dpop_proof",
        ),
        (
            "ath",
            dpop_proof(&client, "GET", htu, &normal),
            "invalid_dpop_proof",
        ),
        (
            "key",
            dpop_proof(&other, "GET", htu, &bound),
            "invalid_token",
        ),
    ];
    for (what, proof, error) in &cases {
        for t in [&a, &b] {
            let r = dpop_get(t, proof);
            assert_eq!(r.status, 401, "{what}: {}", r.body);
            assert!(r.challenges().contains(error), "{what}: {}", r.challenges());
        }
    }
    let r = get(
        &a,
        "/api/orders",
        &[
            ("Host", "api.test"),
            ("Authorization", &format!("DPoP {bound}")),
        ],
    );
    assert_eq!(
        (r.status, r.challenges().contains("invalid_dpop_proof")),
        (401, true),
        "no proof"
    );
    let r = bearer(&b, "/api/orders", &bound);
    assert_eq!(
        (r.status, r.challenges().contains("invalid_token")),
        (401, true),
        "bound token as Bearer"
    );

    // --- Attack tokens: 401 on both replicas, never 5xx, never reaching the backend.
    let hits = backend.hits();
    for (what, token) in attack_tokens(&key, &rsa) {
        for t in [&a, &b] {
            let path = if what.len() % 2 == 0 {
                "/api/x"
            } else {
                "/ott/x"
            };
            let r = bearer(t, path, &token);
            assert_eq!(r.status, 401, "{what} at {path}: {}", r.body);
            assert!(
                r.challenges().contains("invalid_token"),
                "{what}: {}",
                r.challenges()
            );
        }
    }
    assert_eq!(backend.hits(), hits, "an attack token reached the backend");
    for t in [&a, &b] {
        let log = t.log_text();
        assert!(
            !log.contains("wasm stack trace") && !log.contains("panic"),
            "{log}"
        );
    }
    eprintln!("total: {:?}", t0.elapsed());
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// What a one-time token costs over a normal one in real Traefik (hybrid mode, GOMAXPROCS=1):
/// client-side latency medians of sequential requests, each with a fresh EdDSA token (cheap to
/// verify, so the store round trip — connect, SET NX PX + read-back, close — stands out).
/// Run with `cargo test -p oidc-guard-testhost --test bearer_traefik -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run explicitly"]
fn bench_one_time_token_round_trip() {
    const N: usize = 300;
    let redis = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let backend = Backend::start();
    let key = Key::ed25519("ed");
    let prefix = format!("{}:", unique("bench"));
    let t = replica(&redis.addr(), &prefix, &[&key], &backend)
        .route("nomw", "PathPrefix(`/nomw`)", &[], &backend.url())
        .start();
    t.wait_route("/api/ready");
    t.wait_route("/ott/ready");
    let fresh = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| key.access_token(&claims("alice", 300)))
            .collect()
    };
    let time = |path: &str, tokens: &[String], expect: u16| -> Vec<Duration> {
        tokens
            .iter()
            .map(|tok| {
                let t0 = Instant::now();
                let r = if tok.is_empty() {
                    get(&t, path, &[])
                } else {
                    bearer(&t, path, tok)
                };
                let d = t0.elapsed();
                assert_eq!(r.status, expect, "{path}: {}", r.body);
                d
            })
            .collect()
    };
    // Warm-up: instances, connections.
    time("/api/w", &fresh(50), 200);
    time("/ott/w", &fresh(50), 200);
    let cached = vec![key.access_token(&claims("alice", 300)); N];
    let rows = [
        (
            "no middleware",
            time("/nomw/x", &vec![String::new(); N], 200),
        ),
        ("cached normal token", time("/api/x", &cached, 200)),
        (
            "fresh normal token (EdDSA verify)",
            time("/api/x", &fresh(N), 200),
        ),
        (
            "fresh one-time token (verify + Redis SET NX)",
            time("/ott/x", &fresh(N), 200),
        ),
    ];
    println!("sequential request latency through Traefik 3.7.15 (GOMAXPROCS=1, hybrid, local Redis), median of {N}:");
    for (what, v) in rows {
        println!("  {what:<46} {:>7.3} ms", median_ms(v));
    }
}
