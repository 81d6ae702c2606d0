//! Bearer tokens in the built Traefik artifact, run by the wasmtime host the way Traefik runs it:
//! memory mode with a static inline JWKS (no socket, no store), every algorithm accepted, every
//! attack token refused with 401 and never a trap or a 5xx; the verified-token cache serving
//! repeats; and (ignored, run explicitly) the in-guest cost of a first-sight verification per
//! algorithm against a cache hit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bearer_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bearer_support::{attack_tokens, claims, jwks, Key, AUD, ISS};
use oidc_guard_testhost::wasm::{guests, Exchange, Middleware, Request};
use serde_json::{json, Value};

fn config(keys: &[&Key], extra: Value) -> Value {
    let mut c = json!({
        "issuer": ISS,
        "jwks": jwks(keys),
        "bearer": {"enabled": true, "audience": AUD},
        "claimHeaders": {"X-Email": "email"},
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn traefik_guard(cfg: Value) -> Middleware {
    let wasm = guests::plugin(guests::Artifact::Traefik).unwrap();
    Middleware::builder(&wasm).config(cfg).build().unwrap()
}

fn call(mw: &Middleware, token: &str) -> Exchange {
    mw.send(Request::get("/api/orders").header("Authorization", &format!("Bearer {token}")))
}

fn assert_refused(ex: &Exchange, what: &str) {
    assert!(ex.trap.is_none(), "{what}: trap {:?}", ex.trap);
    assert_eq!(ex.status, 401, "{what}: {}", ex.text());
    let ch = ex.header("www-authenticate").unwrap_or_default();
    assert!(ch.contains("error=\"invalid_token\""), "{what}: {ch}");
    assert!(ex.upstream.is_none(), "{what}: reached the upstream");
}

#[test]
fn every_algorithm_is_accepted_and_every_attack_refused_in_the_guest() {
    let keys = [
        Key::rsa("rsa-1", "RS256"),
        Key::rsa("rsa-1", "PS256"),
        Key::es256("ec-256"),
        Key::es384("ec-384"),
        Key::es512("ec-521"),
        Key::ed25519("ed-1"),
    ];
    // The two RSA entries share one public key: list it once.
    let jwk_keys: Vec<&Key> = keys.iter().skip(1).collect();
    let mw = traefik_guard(config(&jwk_keys, json!({})));
    for k in &keys {
        let t = k.access_token(&claims("alice", 300));
        let ex = mw.send(
            Request::get("/api/orders")
                .header("Authorization", &format!("Bearer {t}"))
                .header("X-Forwarded-User", "mallory")
                .header("X_Forwarded_User", "mallory"),
        );
        assert!(ex.trap.is_none(), "{}: {:?}", k.alg, ex.trap);
        assert_eq!(ex.status, 200, "{}: {}", k.alg, ex.text());
        let up = ex.upstream.as_ref().unwrap();
        assert_eq!(up.header("x-forwarded-user"), Some("alice"), "{}", k.alg);
        assert_eq!(up.header("x-email"), Some("alice@example.com"));
        assert_eq!(
            up.header_values("x-forwarded-user").len(),
            1,
            "spoofed copy removed"
        );
        assert_eq!(
            up.header("x_forwarded_user"),
            None,
            "underscore spelling removed"
        );
    }
    let attacks = attack_tokens(&keys[2], &keys[1]);
    assert!(attacks.len() >= 20);
    for (what, t) in &attacks {
        let ex = call(&mw, t);
        assert_refused(&ex, what);
    }
    // Every refusal twice more (the refused-token cache answers) and still no trap.
    for (what, t) in &attacks {
        assert_refused(&call(&mw, t), what);
    }
    assert!(
        mw.logs()
            .iter()
            .any(|l| l.message.contains("token refused")),
        "reasons are logged"
    );
}

#[test]
fn a_normal_token_is_reusable_and_served_from_the_cache() {
    let k = Key::es256("ec-256");
    let mw = traefik_guard(config(&[&k], json!({})));
    let t = k.access_token(&claims("alice", 300));
    let first = call(&mw, &t);
    assert_eq!(first.status, 200, "{}", first.text());
    for _ in 0..20 {
        let ex = call(&mw, &t);
        assert_eq!(ex.status, 200);
    }
    // No store in memory mode, no socket ever.
    assert_eq!(mw.sockets_opened(), 0);
}

/// The plugin keeps a request's target and `Authorization` buffers on the instance for the next
/// request: what one request read never shows in the next one on that instance (a shorter target
/// after a longer one, no credential after a token, a shorter token after a longer one), and a
/// target larger than the kept size works and leaves the next request unaffected.
#[test]
fn one_request_never_sees_the_previous_ones_values_on_an_instance() {
    let k = Key::es256("ec-256");
    let mw = traefik_guard(config(&[&k], json!({"excludedURLs": ["/pub"]})));
    let mut bob = claims("bob", 300);
    bob["email"] = json!("b@x");
    let (alice, bob) = (k.access_token(&claims("alice", 300)), k.access_token(&bob));
    let long = format!("/api/{}", "x".repeat(600));
    let huge = format!("/api/{}?q={}", "y".repeat(9000), "z".repeat(100));
    let send = |path: &str, token: Option<&str>| {
        let mut r = Request::get(path).header("Accept", "application/json");
        if let Some(t) = token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        mw.send(r)
    };
    let user = |ex: &Exchange| {
        ex.upstream
            .as_ref()
            .and_then(|u| u.header("X-Forwarded-User").map(str::to_string))
    };
    let ex = send(&long, Some(&alice));
    assert_eq!(ex.status, 200, "{}", ex.text());
    assert_eq!(user(&ex).as_deref(), Some("alice"));
    assert_eq!(ex.upstream.as_ref().unwrap().uri, long);
    let ex = send("/pub", None);
    assert_eq!(ex.status, 200, "the short excluded path matches as sent");
    assert_eq!(user(&ex), None);
    let ex = send("/api", None);
    assert_eq!(ex.status, 401, "no credential after a token: {}", ex.text());
    let ex = send("/api/b", Some(&bob));
    assert_eq!(user(&ex).as_deref(), Some("bob"));
    let ex = send(&huge, Some(&alice));
    assert_eq!(user(&ex).as_deref(), Some("alice"));
    assert_eq!(ex.upstream.as_ref().unwrap().uri, huge);
    let ex = send("/pub/x", Some("not-a-token"));
    assert_eq!(ex.status, 200, "excluded: the credential is not looked at");
    assert_eq!(user(&ex), None);
    let ex = send("/api/c", Some(&bob));
    assert_eq!(user(&ex).as_deref(), Some("bob"));
    assert_eq!(
        mw.instances_created(),
        1,
        "every request ran on one instance"
    );
}

/// A tiny provider: discovery and a JWKS that the test can replace (key rotation), with a count
/// of requests per path, and an off switch (the provider down).
#[derive(Clone)]
struct TinyProvider {
    port: u16,
    jwks: Arc<Mutex<String>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    down: Arc<Mutex<bool>>,
}

impl TinyProvider {
    fn start(jwks: Value) -> TinyProvider {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let p = TinyProvider {
            port,
            jwks: Arc::new(Mutex::new(jwks.to_string())),
            hits: Arc::default(),
            down: Arc::default(),
        };
        let me = p.clone();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                *me.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                let (status, body) = if *me.down.lock().unwrap() {
                    (503, String::new())
                } else if path == "/.well-known/openid-configuration" {
                    let iss = me.issuer();
                    (
                        200,
                        json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")}).to_string(),
                    )
                } else if path == "/jwks" {
                    (200, me.jwks.lock().unwrap().clone())
                } else {
                    (404, String::new())
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(body.as_bytes());
            }
        });
        p
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

#[test]
fn keys_from_discovery_rotation_and_a_provider_that_is_down() {
    let k1 = Key::es256("k1");
    let k2 = Key::es256("k2");
    let idp = TinyProvider::start(jwks(&[&k1]));
    let cfg = json!({"providerURL": idp.issuer(), "bearer": {"enabled": true, "audience": AUD}});
    let wasm = guests::plugin(guests::Artifact::Traefik).unwrap();
    let mw = Middleware::builder(&wasm).config(cfg).build().unwrap();
    let mut c = claims("alice", 300);
    c["iss"] = json!(idp.issuer());
    // Nothing is fetched before a token needs it; then discovery and the JWKS once.
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 0);
    let ex = call(&mw, &k1.access_token(&c));
    assert_eq!(ex.status, 200, "{} {:?}", ex.text(), mw.logs());
    for _ in 0..10 {
        let mut c2 = c.clone();
        c2["jti"] = json!(bearer_support::unique("j"));
        assert_eq!(call(&mw, &k1.access_token(&c2)).status, 200);
    }
    assert_eq!(
        (
            idp.hits("/.well-known/openid-configuration"),
            idp.hits("/jwks")
        ),
        (1, 1)
    );
    // The provider rotates to k2: the first token with the new kid refetches the JWKS once.
    *idp.jwks.lock().unwrap() = jwks(&[&k1, &k2]).to_string();
    assert_eq!(call(&mw, &k2.access_token(&c)).status, 200);
    assert_eq!(idp.hits("/jwks"), 2);
    // A flood of made-up kids does not become a flood of JWKS requests (one per 10 s at most).
    for i in 0..20 {
        let t = Key::es256(&format!("made-up-{i}")).access_token(&c);
        assert_refused(&call(&mw, &t), "unknown kid");
    }
    assert!(idp.hits("/jwks") <= 3, "{}", idp.hits("/jwks"));
    // Cached tokens keep working while the provider is down; a new instance that has no keys
    // yet answers 503, not 401.
    *idp.down.lock().unwrap() = true;
    assert_eq!(call(&mw, &k1.access_token(&c)).status, 200);
    let cold = Middleware::builder(&wasm)
        .config(json!({"providerURL": idp.issuer(), "bearer": {"enabled": true, "audience": AUD}}))
        .build()
        .unwrap();
    let ex = call(&cold, &k1.access_token(&c));
    assert!(ex.trap.is_none());
    assert_eq!(ex.status, 503, "{}", ex.text());
}

/// DESIGN budget: ≤ 8 MiB of linear memory per instance with the default bounds. One instance
/// is driven until every per-instance cache is past its bound — the verified-token cache
/// (1024 entries), the refused-token cache (4096), the L1 (4096 entries / 2 MiB, here holding
/// one-time-token markers, pinned up to half of it) — with 1.6 KB tokens, and its memory is read
/// after every request.
#[test]
fn an_instance_stays_within_8_mib_with_every_cache_full() {
    const BUDGET: usize = 8 * 1024 * 1024;
    let key = Key::ed25519("ed");
    let mw = traefik_guard(config(
        &[&key],
        json!({"bearer": {"enabled": true, "audience": AUD, "oneTimeTokens": true},
               "replay": {"insecureAllowPerInstance": true}}),
    ));
    let groups: Vec<String> = (0..60).map(|i| format!("group-number-{i:04}")).collect();
    let big = |sub: &str, iss: &str| {
        let mut c = claims(sub, 600);
        c["iss"] = json!(iss);
        c["groups"] = json!(groups);
        c
    };
    let mut peak = 0usize;
    let mut instances = std::collections::HashSet::new();
    let mut drive = |token: String, expect: u16| {
        let ex = call(&mw, &token);
        assert!(ex.trap.is_none(), "trap {:?}", ex.trap);
        assert_eq!(ex.status, expect, "{}", ex.text());
        peak = peak.max(ex.memory_bytes);
        instances.insert(ex.instance);
    };
    let first = key.access_token(&big("alice", ISS));
    assert!(first.len() > 1500, "{} B token", first.len());
    // Valid one-time tokens: a verified-cache entry and an L1 marker each. The markers are
    // pinned (never evicted while live: only this instance remembers them), at most half the
    // L1's 4096 entries; past that the check refuses (503) rather than forget a used token.
    let mut accepted = Vec::new();
    for i in 0..4500 {
        let t = key.access_token(&big(&format!("user-{i}"), ISS));
        drive(t.clone(), if i < 2048 { 200 } else { 503 });
        if i == 0 || i == 2047 {
            accepted.push(t);
        }
    }
    // Validly signed tokens from another issuer: a refused-cache entry each.
    for i in 0..4500 {
        drive(
            key.access_token(&big(&format!("mallory-{i}"), "https://evil.example.com")),
            401,
        );
    }
    // Replay detection still works with every cache full: the first and the last tokens
    // accepted are refused again (with eviction, 4500 newer entries had pushed them out).
    for t in accepted {
        drive(t, 401);
    }
    drive(first, 503);
    println!(
        "peak linear memory of {} instance(s): {peak} bytes ({:.2} MiB)",
        instances.len(),
        peak as f64 / 1048576.0
    );
    assert!(peak <= BUDGET, "{peak} bytes > 8 MiB");
}

/// Median of a list of durations, in microseconds.
fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// First-sight verification vs cache hit, in the guest (wasmtime/Cranelift, not Traefik's
/// wazero; relative figures carry over, absolute ones do not). Run with
/// `cargo test -p oidc-guard-testhost --test bearer_wasm -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run explicitly"]
fn bench_first_sight_and_cache_hit_per_algorithm() {
    const N: usize = 60;
    let keys = [
        Key::rsa("rsa-1", "RS256"),
        Key::rsa("rsa-1", "PS256"),
        Key::es256("ec-256"),
        Key::es384("ec-384"),
        Key::es512("ec-521"),
        Key::ed25519("ed-1"),
    ];
    let jwk_keys: Vec<&Key> = keys.iter().skip(1).collect();
    let mw = traefik_guard(config(
        &jwk_keys,
        json!({"excludedURLs": ["/public"], "bearer": {"enabled": true, "audience": AUD, "dpop": {"enabled": true}},
               "replay": {"insecureAllowPerInstance": true}}),
    ));
    // Warm the single instance up.
    let warm = keys[2].access_token(&claims("alice", 300));
    for _ in 0..20 {
        assert_eq!(call(&mw, &warm).status, 200);
    }
    let no_token: Vec<Duration> = (0..N)
        .map(|_| {
            mw.send(Request::get("/api").header("Accept", "application/json"))
                .timing
                .handle_request
        })
        .collect();
    println!("in-guest handle_request, median of {N} (wasmtime/Cranelift):");
    println!(
        "  no token (401 challenge)            {:>9.1} µs",
        median_us(no_token)
    );
    let excluded: Vec<Duration> = (0..N)
        .map(|_| mw.send(Request::get("/public/x")).timing.handle_request)
        .collect();
    println!(
        "  excluded path (forwarded)           {:>9.1} µs",
        median_us(excluded)
    );
    for k in &keys {
        let tokens: Vec<String> = (0..N)
            .map(|_| k.access_token(&claims("alice", 300)))
            .collect();
        let first: Vec<Duration> = tokens
            .iter()
            .map(|t| {
                let ex = call(&mw, t);
                assert_eq!(ex.status, 200, "{}", k.alg);
                ex.timing.handle_request
            })
            .collect();
        let hit: Vec<Duration> = (0..N)
            .map(|_| {
                let ex = call(&mw, &tokens[0]);
                assert_eq!(ex.status, 200);
                ex.timing.handle_request
            })
            .collect();
        println!(
            "  {:<6} first sight {:>9.1} µs   cache hit {:>7.1} µs   ({} B token)",
            k.alg,
            median_us(first),
            median_us(hit),
            tokens[0].len()
        );
    }
    // DPoP (memory mode, per-instance replay markers): a cached bound token with a fresh ES256
    // proof per request, i.e. one proof verification per request.
    let client = Key::es256("client");
    let bound = keys[5].access_token(&bearer_support::bound_claims("alice", &client));
    let dpop: Vec<Duration> = (0..N)
        .map(|_| {
            let proof =
                bearer_support::dpop_proof(&client, "GET", "http://localhost/api/orders", &bound);
            let ex = mw.send(
                Request::get("/api/orders")
                    .header("Authorization", &format!("DPoP {bound}"))
                    .header("DPoP", &proof),
            );
            assert_eq!(ex.status, 200, "{}", ex.text());
            ex.timing.handle_request
        })
        .collect();
    println!(
        "  DPoP: cached EdDSA token + fresh ES256 proof {:>9.1} µs",
        median_us(dpop)
    );
    // A refused forged token, first sight and from the refused-token cache.
    let forged: Vec<String> = (0..N)
        .map(|_| {
            let mut c = claims("mallory", 300);
            c["iss"] = json!("https://evil.example.com");
            keys[2].access_token(&c)
        })
        .collect();
    let first: Vec<Duration> = forged
        .iter()
        .map(|t| call(&mw, t).timing.handle_request)
        .collect();
    let again: Vec<Duration> = (0..N)
        .map(|_| call(&mw, &forged[0]).timing.handle_request)
        .collect();
    println!(
        "  ES256 refused (wrong iss): first {:>9.1} µs   refused-cache hit {:>7.1} µs",
        median_us(first),
        median_us(again)
    );
}

/// The wasm operators one `handle_request` runs (wasmtime fuel: one unit per operator), for the
/// requests `make bench` sends through Traefik: the plugin with `make bench`'s memory-mode
/// configuration, and the near-empty reference guest. Deterministic, unlike a time: it shows
/// what a change to the hot path did to the guest's own work. Needs `OIDC_GUARD_WASM_OPS=1`
/// (the engine counts only then); `make bench` sets it.
#[test]
#[ignore = "benchmark; run explicitly with OIDC_GUARD_WASM_OPS=1"]
fn bench_wasm_ops_per_request() {
    assert!(
        oidc_guard_testhost::wasm::counts_wasm_ops(),
        "set OIDC_GUARD_WASM_OPS=1"
    );
    let key = Key::es256("ec-256");
    let mw = traefik_guard(json!({
        "issuer": ISS,
        "jwks": jwks(&[&key]),
        "bearer": {"enabled": true, "audience": AUD},
        "excludedURLs": ["/public"],
    }));
    let token = key.access_token(&claims("alice", 300));
    let first = call(&mw, &token);
    assert_eq!(first.status, 200, "{}", first.text());
    let ops = |ex: &Exchange| ex.timing.wasm_ops.expect("the engine counts wasm ops");
    let hit = call(&mw, &token);
    assert_eq!(hit.status, 200);
    assert_eq!(hit.instance, first.instance, "one instance");
    let excluded = mw.send(Request::get("/public/x"));
    assert_eq!(excluded.status, 200);
    let reference = Middleware::builder(guests::test_guest("reference").unwrap())
        .build()
        .unwrap();
    let r = reference
        .send(Request::get("/api/orders").header("Authorization", &format!("Bearer {token}")));
    assert_eq!(r.status, 200);
    println!("wasm operators per handle_request (wasmtime fuel):");
    println!(
        "  plugin, first sight of an ES256 token   {:>9}",
        ops(&first)
    );
    println!("  plugin, cached bearer token             {:>9}", ops(&hit));
    println!(
        "  plugin, excluded path                   {:>9}",
        ops(&excluded)
    );
    println!("  near-empty reference guest              {:>9}", ops(&r));
}

/// The plugin reads the clock once per request and keeps the reading only for that request
/// (`RequestClock`): a cached token stops being served on the same instance once its `exp` plus
/// the 60-s clock skew has passed (RFC 7519 §4.1.4), however many requests it was served before.
#[test]
fn a_cached_token_is_refused_on_the_same_instance_once_it_expired() {
    let key = Key::es256("ec-256");
    let mw = traefik_guard(config(&[&key], json!({})));
    let n = bearer_support::now();
    // Expired 58 s ago: within the skew for about two more seconds.
    let mut c = claims("alice", 0);
    c["iat"] = json!(n - 100);
    c["exp"] = json!(n - 58);
    let token = key.access_token(&c);
    let first = call(&mw, &token);
    assert_eq!(first.status, 200, "{}", first.text());
    let again = call(&mw, &token);
    assert_eq!(again.status, 200);
    assert_eq!(again.instance, first.instance, "one instance");
    std::thread::sleep(Duration::from_millis(3_200));
    let late = call(&mw, &token);
    assert_eq!(late.instance, first.instance, "the instance that cached it");
    assert_refused(&late, "expired while cached");
}

/// Header values are read as ASCII without the UTF-8 check, which runs only when another byte
/// is there: a token that differs from a cached one only by a non-ASCII character (in its middle,
/// where the cache's fingerprint does not look) is refused, and the cached one still admitted.
#[test]
fn a_token_with_non_ascii_text_is_refused_next_to_its_cached_twin() {
    let key = Key::es256("ec-256");
    let mw = traefik_guard(config(&[&key], json!({})));
    let token = key.access_token(&claims("alice", 300));
    let first = call(&mw, &token);
    assert_eq!(first.status, 200, "{}", first.text());
    let mid = token.len() / 2;
    // Same length in bytes: 'é' is two bytes, in place of two ASCII ones.
    let twin = format!("{}é{}", &token[..mid], &token[mid + 2..]);
    assert_eq!(twin.len(), token.len());
    let refused = call(&mw, &twin);
    assert_eq!(
        refused.instance, first.instance,
        "the instance that cached the token"
    );
    assert_refused(&refused, "non-ASCII twin of a cached token");
    let again = call(&mw, &token);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        again
            .upstream
            .as_ref()
            .and_then(|u| u.header("x-forwarded-user")),
        Some("alice")
    );
}
