//! Bearer tokens in the built Traefik artifact, run by the wasmtime host the way Traefik runs it:
//! memory mode with a static inline JWKS (no socket, no store), every algorithm accepted, every
//! attack token refused with 401 and never a trap or a 5xx; the verified-token cache serving
//! repeats; and (ignored, run explicitly) the in-guest cost of a first-sight verification per
//! algorithm against a cache hit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bearer_support;

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
                .header("X-Forwarded-User", "mallory"),
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
    let mw = traefik_guard(config(&jwk_keys, json!({})));
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
