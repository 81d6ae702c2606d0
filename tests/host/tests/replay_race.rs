//! Cluster-wide single use, in the built bridge artifact run by the wasmtime host: two
//! middlewares (two "replicas", each with its own pool of guest instances) share one store —
//! the host's in-process map, or a real redis-server — and race many concurrent uses of one
//! one-time token: exactly one is accepted. Also: a replayed DPoP proof is refused on the other
//! replica, a normal token is reusable everywhere, and a bridge that misbehaves on the
//! set-if-absent only ever causes refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bearer_support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bearer_support::{bound_claims, claims, dpop_proof, jwks, unique, Key, AUD, ISS};
use oidc_guard_testhost::servers::{Flavor, RedisServer, ServerConfig};
use oidc_guard_testhost::wasm::{guests, Bridge, Exchange, Fault, Middleware, Request};
use serde_json::{json, Value};

fn config(key: &Key, instance: &str, extra: Value) -> Value {
    let mut c = json!({
        "issuer": ISS,
        "jwks": jwks(&[key]),
        "bearer": {"enabled": true, "audience": AUD},
        "instanceName": instance,
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// Two replicas of the same middleware configuration over one bridge backing.
fn replicas(bridge: &Bridge, cfg: &Value) -> (Middleware, Middleware) {
    let wasm = guests::plugin(guests::Artifact::Bridge).unwrap();
    let build = || {
        Middleware::builder(&wasm)
            .config(cfg.clone())
            .bridge(bridge.clone())
            .build()
            .unwrap()
    };
    (build(), build())
}

fn bearer(mw: &Middleware, token: &str) -> Exchange {
    mw.send(Request::get("/api/pay").header("Authorization", &format!("Bearer {token}")))
}

fn one_time_token_race(bridge: Bridge) {
    const PER_REPLICA: usize = 12;
    let key = Key::es256("k1");
    let cfg = config(
        &key,
        &unique("race"),
        json!({"bearer": {"enabled": true, "audience": AUD, "oneTimeTokens": true}}),
    );
    let (a, b) = replicas(&bridge, &cfg);
    // Each request waits in the host just before its set-if-absent, so all of them hold a guest
    // instance of their own at the same moment and reach the store together.
    for mw in [&a, &b] {
        mw.faults()
            .inject_for("kv_set_nx", Fault::Delay(Duration::from_millis(300)));
    }
    let token = Arc::new(key.access_token(&claims("alice", 300)));
    let barrier = Arc::new(Barrier::new(2 * PER_REPLICA));
    let handles: Vec<_> = (0..2 * PER_REPLICA)
        .map(|i| {
            let mw = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (barrier, token) = (barrier.clone(), token.clone());
            thread::spawn(move || {
                barrier.wait();
                let ex = bearer(&mw, &token);
                (
                    ex.status,
                    ex.trap.clone(),
                    ex.header("www-authenticate").map(str::to_string),
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let accepted = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(accepted, 1, "{results:?}");
    for (status, trap, challenge) in &results {
        assert!(trap.is_none(), "{trap:?}");
        assert!(*status == 200 || *status == 401, "{results:?}");
        if *status == 401 {
            assert!(
                challenge
                    .as_deref()
                    .unwrap_or_default()
                    .contains("invalid_token"),
                "{challenge:?}"
            );
        }
    }
    assert!(
        a.instances_created() >= PER_REPLICA as u64 && b.instances_created() >= PER_REPLICA as u64
    );
    // Later uses, on either replica, from any pooled instance: refused.
    for mw in [&a, &b] {
        mw.faults().clear();
        for _ in 0..3 {
            assert_eq!(bearer(mw, &token).status, 401);
        }
    }
    // A fresh one-time token still works once.
    let t2 = key.access_token(&claims("alice", 300));
    assert_eq!(bearer(&b, &t2).status, 200);
    assert_eq!(bearer(&a, &t2).status, 401);
}

#[test]
fn one_time_token_race_across_two_replicas_in_memory() {
    one_time_token_race(Bridge::isolated_memory());
}

#[test]
fn one_time_token_race_across_two_replicas_against_redis() {
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    one_time_token_race(Bridge::redis(format!("redis://{}/", server.addr())));
    // The markers really are in Redis, under hashed jti keys.
    let keys = server.cli(&["--scan", "--pattern", "*:jti:at:*"]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
}

fn normal_tokens_and_dpop(bridge: Bridge) {
    let key = Key::es256("k1");
    let cfg = config(
        &key,
        &unique("dpop"),
        json!({"bearer": {"enabled": true, "audience": AUD, "dpop": {"enabled": true}}}),
    );
    let (a, b) = replicas(&bridge, &cfg);
    // A normal bearer token: any number of uses on both replicas (no false replay).
    let t = key.access_token(&claims("alice", 300));
    for _ in 0..10 {
        assert_eq!(bearer(&a, &t).status, 200);
        assert_eq!(bearer(&b, &t).status, 200);
    }
    // DPoP: a valid proof is accepted once; the same proof on the other replica is refused.
    let client = Key::es256("client");
    let bound = key.access_token(&bound_claims("alice", &client));
    let proof = dpop_proof(&client, "GET", "http://api.test/api/pay", &bound);
    let send = |mw: &Middleware, proof: &str| {
        mw.send(
            Request::get("/api/pay")
                .header("Host", "api.test")
                .header("Authorization", &format!("DPoP {bound}"))
                .header("DPoP", proof),
        )
    };
    let ok = send(&a, &proof);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let replay = send(&b, &proof);
    assert_eq!(replay.status, 401);
    let ch = replay.header_values("www-authenticate").join(" | ");
    assert!(
        ch.contains("DPoP") && ch.contains("invalid_dpop_proof"),
        "{ch}"
    );
    assert!(
        b.logs()
            .iter()
            .any(|l| l.message.contains("replayed proof")),
        "{:?}",
        b.logs()
    );
    // A fresh proof works on B.
    assert_eq!(
        send(
            &b,
            &dpop_proof(&client, "GET", "http://api.test/api/pay", &bound)
        )
        .status,
        200
    );
}

#[test]
fn dpop_proofs_once_and_normal_tokens_always_in_memory() {
    normal_tokens_and_dpop(Bridge::isolated_memory());
}

#[test]
fn dpop_proofs_once_and_normal_tokens_always_against_redis() {
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    normal_tokens_and_dpop(Bridge::redis(format!("redis://{}/", server.addr())));
}

/// The same race in the Traefik artifact, which speaks RESP to Redis itself over the WasmEdge
/// socket calls (served by the host over real TCP). No fault switch here: ES512 tokens (about
/// 13 ms to verify in a fresh instance) keep every request busy until all of them reach Redis
/// at about the same moment.
#[test]
fn one_time_token_race_across_two_replicas_in_the_traefik_artifact() {
    const PER_REPLICA: usize = 10;
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let key = Key::es512("k512");
    let cfg = config(
        &key,
        &unique("race-sockets"),
        json!({"bearer": {"enabled": true, "audience": AUD, "oneTimeTokens": true},
               "redis": {"address": server.addr(), "cacheMode": "hybrid"}}),
    );
    let wasm = guests::plugin(guests::Artifact::Traefik).unwrap();
    let build = || {
        Middleware::builder(&wasm)
            .config(cfg.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    assert!(a.uses_sockets());
    let token = Arc::new(key.access_token(&claims("alice", 300)));
    let barrier = Arc::new(Barrier::new(2 * PER_REPLICA));
    let handles: Vec<_> = (0..2 * PER_REPLICA)
        .map(|i| {
            let mw = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (barrier, token) = (barrier.clone(), token.clone());
            thread::spawn(move || {
                barrier.wait();
                let ex = bearer(&mw, &token);
                (ex.status, ex.trap.clone())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.0 == 200).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| r.1.is_none() && (r.0 == 200 || r.0 == 401)),
        "{results:?}"
    );
    // How many ran at once depends on the machine's load (the bridge variant above forces full
    // overlap); several must have, or this was no race.
    let concurrent = a.instances_created() + b.instances_created();
    eprintln!(
        "{concurrent} guest instances for {} concurrent requests",
        2 * PER_REPLICA
    );
    assert!(
        concurrent >= 6,
        "only {concurrent} instances: the requests did not overlap"
    );
    // Sockets never outlive a request.
    assert_eq!(a.open_sockets() + b.open_sockets(), 0);
    let keys = server.cli(&["--scan", "--pattern", "*:jti:at:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
}

#[test]
fn a_misbehaving_bridge_only_ever_refuses() {
    let key = Key::es256("k1");
    let cfg = config(
        &key,
        &unique("faults"),
        json!({"bearer": {"enabled": true, "audience": AUD, "oneTimeTokens": true}}),
    );
    let (a, _) = replicas(&Bridge::isolated_memory(), &cfg);
    let t = key.access_token(&claims("alice", 300));
    // "Not stored": somebody else used it.
    a.faults().inject_for("kv_set_nx", Fault::Status(1));
    assert_eq!(bearer(&a, &t).status, 401);
    // Statuses that decide nothing, garbage, an unknown status: refusals (503), never allows.
    // (After a few of them the breaker opens and answers for the store: 503 as well.)
    let t = key.access_token(&claims("alice", 300));
    for fault in [
        Fault::Garbage,
        Fault::Status(-1),
        Fault::Status(-2),
        Fault::Status(-5),
        Fault::Status(77),
    ] {
        a.faults().clear();
        a.faults().inject_for("kv_set_nx", fault.clone());
        let ex = bearer(&a, &t);
        assert!(ex.trap.is_none(), "{fault:?}: {:?}", ex.trap);
        assert_eq!(
            ex.status, 503,
            "{fault:?}: a store that cannot decide is a refusal, not an allow"
        );
        assert!(ex.upstream.is_none());
    }
    // None of that consumed the token: once the store answers, it works exactly once. The
    // breaker is per instance: let the pool drop the instance whose breaker is open (as a GC
    // cycle would), so the next request gets a fresh one.
    a.faults().clear();
    a.drop_idle();
    let t2 = t;
    let first = bearer(&a, &t2);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(bearer(&a, &t2).status, 401);
}
