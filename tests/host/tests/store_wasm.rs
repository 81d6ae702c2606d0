//! Issue 3 through the built `.wasm`: the two-tier store as the plugin builds it (`store-probe`
//! guest: `Config::parse` → `Parts::for_host` → `Guard::new`), run in the wasmtime host like
//! Traefik runs it, against three L2s:
//!
//! - the host bridge backed by the process-wide memory map (bridge artifact),
//! - the host bridge backed by a real `redis-server` (bridge artifact),
//! - a real `redis-server` spoken by the guest itself over WasmEdge sockets (Traefik artifact).
//!
//! Covered: mode semantics, TTL expiry, L1 bounds and eviction, the hybrid L1 TTL bounded by
//! the L2's remaining TTL, atomic set-if-absent across ≥ 32 concurrent instances, the circuit
//! breaker through SIGSTOP and kill + restart (fallback `l1` and `deny`, single-use refusal and
//! `replay.insecureAllowPerInstance`), health and metrics (probe and the real plugin's
//! `/.oidc-guard/health`), and malformed bridge replies.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod store_support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use oidc_guard_testhost::servers::{Flavor, RedisServer, ServerConfig};
use oidc_guard_testhost::wasm::guests::{self, Artifact};
use oidc_guard_testhost::wasm::{Bridge, Fault, MemoryKv, Middleware, RedisKv, Request};
use serde_json::{json, Value};
use store_support::{
    assert_health_shape, assert_metrics_shape, metric, now_ms, probe_config, probe_wasm, unique,
    Flavour, Probe,
};

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// An L2 for the probe, and a view of it from outside the guest.
enum Backend {
    /// The host bridge over the process-wide memory map.
    MemoryBridge,
    /// The host bridge over a real redis-server.
    RedisBridge(RedisServer),
    /// A real redis-server spoken in-guest (Traefik artifact).
    InGuest(RedisServer),
}

impl Backend {
    fn redis_bridge() -> Self {
        Backend::RedisBridge(RedisServer::start(Flavor::Redis, &ServerConfig::default()))
    }

    fn in_guest() -> Self {
        Backend::InGuest(RedisServer::start(Flavor::Redis, &ServerConfig::default()))
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::MemoryBridge => "memory bridge",
            Backend::RedisBridge(_) => "redis bridge",
            Backend::InGuest(_) => "in-guest redis",
        }
    }

    fn server(&self) -> Option<&RedisServer> {
        match self {
            Backend::MemoryBridge => None,
            Backend::RedisBridge(s) | Backend::InGuest(s) => Some(s),
        }
    }

    fn server_mut(&mut self) -> Option<&mut RedisServer> {
        match self {
            Backend::MemoryBridge => None,
            Backend::RedisBridge(s) | Backend::InGuest(s) => Some(s),
        }
    }

    /// A probe middleware on this backend (`extra` merged into the probe configuration).
    fn probe(&self, instance: &str, extra: Value) -> Probe {
        self.probe_with(instance, extra, Duration::from_secs(2))
    }

    /// As [`Backend::probe`]; `bridge_timeout` is the host bridge's Redis timeout.
    fn probe_with(&self, instance: &str, extra: Value, bridge_timeout: Duration) -> Probe {
        let mut cfg = probe_config(instance, extra);
        let mw = match self {
            Backend::MemoryBridge => Middleware::builder(probe_wasm(Flavour::Bridge))
                .config(cfg)
                .bridge(Bridge::memory()),
            Backend::RedisBridge(s) => Middleware::builder(probe_wasm(Flavour::Bridge))
                .config(cfg)
                .bridge(Bridge::Redis(RedisKv {
                    url: format!("redis://{}", s.addr()),
                    timeout: bridge_timeout,
                })),
            Backend::InGuest(s) => {
                let mut r = json!({"address": s.addr()});
                if let Some(extra_r) = cfg.get("redis").cloned() {
                    store_support::merge(&mut r, extra_r);
                }
                cfg["redis"] = r;
                Middleware::builder(probe_wasm(Flavour::Traefik)).config(cfg)
            }
        };
        let p = Probe::new(mw.build().unwrap());
        let info = p.call("/info");
        assert_eq!(
            info.status,
            200,
            "{}: {}\n{}",
            self.name(),
            info.text,
            p.log_text()
        );
        assert_eq!(info.json["bridge"], !matches!(self, Backend::InGuest(_)));
        if matches!(self, Backend::InGuest(_)) {
            assert!(
                p.mw.uses_sockets(),
                "the Traefik probe imports the socket extension"
            );
        }
        p
    }

    /// Whether the L2 holds `full_key`.
    fn exists(&self, full_key: &str) -> bool {
        match self.server() {
            None => MemoryKv::process().get(full_key.as_bytes()).is_some(),
            Some(s) => s.cli(&["EXISTS", full_key]) == "1",
        }
    }

    /// The L2's raw bytes under `full_key` (lossy text).
    fn raw(&self, full_key: &str) -> String {
        match self.server() {
            None => MemoryKv::process()
                .get(full_key.as_bytes())
                .map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
            Some(s) => s.cli(&["GET", full_key]),
        }
    }

    /// The L2's remaining TTL of `full_key`, ms (-2 absent, -1 no expiry).
    fn pttl(&self, full_key: &str) -> i64 {
        match self.server() {
            None => MemoryKv::process().ttl(full_key.as_bytes()).unwrap_or(-2),
            Some(s) => s.cli(&["PTTL", full_key]).parse().unwrap(),
        }
    }

    /// Deletes `full_key` behind the guest's back.
    fn delete(&self, full_key: &str) {
        match self.server() {
            None => {
                MemoryKv::process().delete(full_key.as_bytes());
            }
            Some(s) => {
                s.cli(&["DEL", full_key]);
            }
        }
    }
}

fn ok(a: &store_support::Answer, what: &str) {
    assert_eq!(a.status, 200, "{what}: {}", a.text);
}

fn found(a: &store_support::Answer) -> Option<String> {
    assert_eq!(a.status, 200, "get: {}", a.text);
    (a.json["found"] == true).then(|| a.s("value"))
}

// ---------------------------------------------------------------------------------------------
// Mode semantics
// ---------------------------------------------------------------------------------------------

fn mode_semantics(b: &Backend) {
    let inst = unique("modes");
    let mode = |m: &str, extra: Value| {
        let mut e = json!({"store": {"mode": m}, "revocationCheckInterval": "1s"});
        store_support::merge(&mut e, extra);
        b.probe(&inst, e)
    };

    // memory: L1 only, per instance; nothing reaches the L2.
    let (m1, m2) = (mode("memory", json!({})), mode("memory", json!({})));
    assert_eq!(m1.call("/info").s("mode"), "memory");
    let a = m1.set("probe", "k-mem", "v-mem", 60_000, "cache");
    ok(&a, "memory set");
    let full = a.s("fullKey");
    assert!(full.contains(":probe:k-mem"), "{full}");
    assert_eq!(found(&m1.get("probe", "k-mem")).as_deref(), Some("v-mem"));
    assert_eq!(
        found(&m2.get("probe", "k-mem")),
        None,
        "memory mode is per instance"
    );
    assert!(
        !b.exists(&full),
        "{}: memory mode wrote to the L2",
        b.name()
    );
    assert_eq!(m1.health()["cache"]["redis"]["configured"], false);

    // redis: every operation to the L2, values sealed, no L1 copy.
    let (r1, r2) = (mode("redis", json!({})), mode("redis", json!({})));
    assert_eq!(r1.call("/info").s("mode"), "redis");
    let a = r1.set(
        "sess",
        "k-red",
        "plaintext-session-red",
        60_000,
        "confidential",
    );
    ok(&a, "redis set");
    let full = a.s("fullKey");
    assert!(
        b.exists(&full),
        "{}: redis mode did not write the L2",
        b.name()
    );
    assert!(
        !b.raw(&full).contains("plaintext-session-red"),
        "the L2 holds the session in clear"
    );
    assert_eq!(
        found(&r2.get("sess", "k-red")).as_deref(),
        Some("plaintext-session-red"),
        "another instance reads it through the L2"
    );
    b.delete(&full);
    assert_eq!(
        found(&r1.get("sess", "k-red")),
        None,
        "redis mode has no L1: a delete in the L2 is seen at once"
    );
    assert_eq!(
        r1.health()["cache"]["memory"]["entries"],
        0,
        "redis mode keeps no L1 copy"
    );

    // hybrid: L1 in front of the L2.
    let (h1, h2) = (mode("hybrid", json!({})), mode("hybrid", json!({})));
    assert_eq!(h1.call("/info").s("mode"), "hybrid");
    let a = h1.set("sess", "k-hyb", "v-hyb", 60_000, "confidential");
    ok(&a, "hybrid set");
    let full = a.s("fullKey");
    assert!(b.exists(&full), "hybrid writes the L2");
    let hits0 = h2.metric("oidc_guard_store_l2_hits_total");
    assert_eq!(found(&h2.get("sess", "k-hyb")).as_deref(), Some("v-hyb"));
    assert_eq!(
        h2.metric("oidc_guard_store_l2_hits_total"),
        hits0 + 1.0,
        "read from the L2"
    );
    b.delete(&full);
    let l1_hits = h2.metric("oidc_guard_store_l1_hits_total");
    assert_eq!(
        found(&h2.get("sess", "k-hyb")).as_deref(),
        Some("v-hyb"),
        "hybrid serves its L1 copy"
    );
    assert_eq!(h2.metric("oidc_guard_store_l1_hits_total"), l1_hits + 1.0);
    assert_eq!(
        h2.metric("oidc_guard_store_l2_hits_total"),
        hits0 + 1.0,
        "no L2 read on an L1 hit"
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        found(&h2.get("sess", "k-hyb")),
        None,
        "after l1MaxTtl (revocationCheckInterval 1s) the L2 is asked again"
    );
    // A miss is remembered for the negative TTL (the revocation-check interval), then re-asked.
    assert_eq!(found(&h2.get("rev", "k-neg")), None);
    ok(
        &r1.set("rev", "k-neg", "revoked", 60_000, "revocation"),
        "redis-mode write",
    );
    assert_eq!(found(&h2.get("rev", "k-neg")), None, "remembered miss");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(found(&h2.get("rev", "k-neg")).as_deref(), Some("revoked"));
    // Deletes go to both tiers.
    ok(&h2.del("rev", "k-neg"), "hybrid delete");
    assert_eq!(found(&h2.get("rev", "k-neg")), None);
    assert_eq!(found(&r2.get("rev", "k-neg")), None);
}

#[test]
fn modes_over_the_memory_bridge() {
    mode_semantics(&Backend::MemoryBridge);
}

#[test]
fn modes_over_a_redis_bridge() {
    mode_semantics(&Backend::redis_bridge());
}

#[test]
fn modes_over_in_guest_redis() {
    mode_semantics(&Backend::in_guest());
}

// ---------------------------------------------------------------------------------------------
// TTL expiry
// ---------------------------------------------------------------------------------------------

fn ttl_expiry(b: &Backend) {
    let inst = unique("ttl");
    for m in ["memory", "redis", "hybrid"] {
        let p = b.probe(
            &inst,
            json!({"store": {"mode": m}, "revocationCheckInterval": "30s"}),
        );
        let key = format!("short-{m}");
        let a = p.set("probe", &key, "brief", 300, "cache");
        ok(&a, "set");
        let full = a.s("fullKey");
        assert_eq!(
            found(&p.get("probe", &key)).as_deref(),
            Some("brief"),
            "{m}"
        );
        if m != "memory" {
            let t = b.pttl(&full);
            assert!((1..=300).contains(&t), "{}: L2 TTL {t} ms", b.name());
        }
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(
            found(&p.get("probe", &key)),
            None,
            "{m}: expired entries are never returned"
        );
        if m != "memory" {
            assert!(!b.exists(&full), "{}: the L2 expired it too", b.name());
        }
    }
}

#[test]
fn ttl_expiry_in_every_mode() {
    ttl_expiry(&Backend::MemoryBridge);
    ttl_expiry(&Backend::in_guest());
}

#[test]
fn ttl_expiry_over_a_redis_bridge() {
    ttl_expiry(&Backend::redis_bridge());
}

// ---------------------------------------------------------------------------------------------
// L1 bounds
// ---------------------------------------------------------------------------------------------

#[test]
fn l1_bounds_and_lru_eviction_from_config() {
    for m in ["memory", "hybrid"] {
        let p = Backend::MemoryBridge.probe(
            &unique("l1"),
            json!({"store": {"mode": m, "l1": {"maxEntries": "16", "maxBytes": "65536"}},
                "revocationCheckInterval": "60s"}),
        );
        let info = p.call("/info");
        assert_eq!(
            (
                info.json["l1MaxEntries"].as_u64(),
                info.json["l1MaxBytes"].as_u64()
            ),
            (Some(16), Some(65536))
        );
        // Entry bound: 40 small entries into 16 slots; k0..k23 evicted, least recently used first.
        for i in 0..16 {
            ok(
                &p.set("probe", &format!("k{i}"), "x", 600_000, "cache"),
                "set",
            );
        }
        // Touch k0: it becomes the most recently used and survives the next 16 inserts... once.
        assert_eq!(found(&p.get("probe", "k0")).as_deref(), Some("x"));
        for i in 16..31 {
            ok(
                &p.set("probe", &format!("k{i}"), "x", 600_000, "cache"),
                "set",
            );
        }
        let h = p.health();
        assert_health_shape(&h);
        let mem = &h["cache"]["memory"];
        assert_eq!(mem["max_entries"], 16);
        assert_eq!(mem["max_bytes"], 65536);
        assert_eq!(mem["entries"], 16, "{h}");
        assert_eq!(mem["evictions"], 15, "{h}");
        let live = |k: &str| found(&p.get("probe", k)).is_some();
        if m == "memory" {
            assert!(live("k0"), "LRU: the touched entry survives");
            assert!(
                !live("k1") && !live("k15"),
                "the least recently used went first"
            );
            assert!(live("k16") && live("k30"));
        } else {
            // Hybrid: evicted from L1 but still in the L2.
            let before = p.metric("oidc_guard_store_l2_hits_total");
            assert!(live("k1"));
            assert_eq!(
                p.metric("oidc_guard_store_l2_hits_total"),
                before + 1.0,
                "k1 came from the L2"
            );
        }
        // Byte bound: 8000-byte values into 64 KiB.
        let big = vec![b'b'; 8000];
        for i in 0..12 {
            ok(
                &p.set_body("probe", &format!("big{i}"), &big, 600_000, "cache"),
                "set big",
            );
        }
        let h = p.health();
        let bytes = h["cache"]["memory"]["bytes"].as_u64().unwrap();
        let entries = h["cache"]["memory"]["entries"].as_u64().unwrap();
        assert!(bytes <= 65536, "L1 holds {bytes} bytes: {h}");
        assert!(entries < 12, "{h}");
        assert!(
            h["cache"]["memory"]["evictions"].as_u64().unwrap() > 15,
            "{h}"
        );
        let metrics = p.metrics();
        assert_eq!(metric(&metrics, "oidc_guard_store_l1_bytes"), bytes as f64);
        if m == "memory" {
            assert!(found(&p.get("probe", "big11")).is_some());
            assert!(found(&p.get("probe", "big0")).is_none());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hybrid: L1 TTL ≤ L2's remaining TTL
// ---------------------------------------------------------------------------------------------

fn hybrid_ttl_bounded_by_l2(b: &Backend) {
    let inst = unique("bound");
    // l1MaxTtl (the revocation-check interval) is long: only the L2's TTL can bound the copy.
    let writer = b.probe(
        &inst,
        json!({"store": {"mode": "redis"}, "revocationCheckInterval": "60s"}),
    );
    let reader = b.probe(
        &inst,
        json!({"store": {"mode": "hybrid"}, "revocationCheckInterval": "60s"}),
    );
    let a = writer.set("sess", "bounded", "v", 1200, "confidential");
    ok(&a, "writer set");
    let full = a.s("fullKey");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        found(&reader.get("sess", "bounded")).as_deref(),
        Some("v"),
        "{}",
        b.name()
    );
    let left = b.pttl(&full);
    assert!(
        (1..=500).contains(&left),
        "{}: L2 TTL left {left}",
        b.name()
    );
    assert_eq!(
        found(&reader.get("sess", "bounded")).as_deref(),
        Some("v"),
        "served from L1"
    );
    std::thread::sleep(Duration::from_millis(650));
    assert!(!b.exists(&full), "{}: the L2 expired it", b.name());
    let l2_reads = reader.metric("oidc_guard_store_l2_misses_total");
    assert_eq!(
        found(&reader.get("sess", "bounded")),
        None,
        "{}: the L1 copy outlived the L2's TTL",
        b.name()
    );
    assert_eq!(
        reader.metric("oidc_guard_store_l2_misses_total"),
        l2_reads + 1.0,
        "the L1 copy had expired, so the L2 was asked"
    );
}

#[test]
fn hybrid_l1_ttl_never_outlives_the_l2() {
    hybrid_ttl_bounded_by_l2(&Backend::MemoryBridge);
    hybrid_ttl_bounded_by_l2(&Backend::redis_bridge());
    hybrid_ttl_bounded_by_l2(&Backend::in_guest());
}

// ---------------------------------------------------------------------------------------------
// Set-if-absent across instances
// ---------------------------------------------------------------------------------------------

/// `n` concurrent set-if-absent requests for one key, each in its own instance; returns
/// (won, already used, other).
fn race(p: &Probe, key: &str, n: usize) -> (usize, usize, Vec<String>) {
    let barrier = Arc::new(Barrier::new(n));
    let at = now_ms() + 1500;
    let answers: Vec<store_support::Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (p, barrier) = (p.clone(), barrier.clone());
                s.spawn(move || {
                    barrier.wait();
                    p.call(&format!(
                        "/store/setnx?ns=jti&key={key}&ttl=60000&class=singleuse&at={at}"
                    ))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = answers.iter().filter(|a| a.s("outcome") == "won").count();
    let used = answers
        .iter()
        .filter(|a| a.s("outcome") == "already-used")
        .count();
    let other = answers
        .iter()
        .filter(|a| !["won", "already-used"].contains(&a.s("outcome").as_str()))
        .map(|a| format!("{} {}", a.status, a.text))
        .collect();
    (won, used, other)
}

fn set_if_absent_is_atomic(b: &Backend, mode: &str) {
    const N: usize = 40;
    let p = b.probe(&unique("race"), json!({"store": {"mode": mode}}));
    let before = p.mw.instances_created();
    for round in 0..3 {
        let key = format!("jti-{round}");
        let (won, used, other) = race(&p, &key, N);
        assert!(other.is_empty(), "{} {mode}: {other:?}", b.name());
        assert_eq!((won, used), (1, N - 1), "{} {mode} round {round}", b.name());
        // And afterwards, from any instance: used.
        assert_eq!(
            p.setnx("jti", &key, 60_000, "singleuse").s("outcome"),
            "already-used"
        );
    }
    let created = p.mw.instances_created() - before;
    assert!(
        created >= (N - 1) as u64,
        "{}: only {created} instances were created for {N} concurrent requests",
        b.name()
    );
    println!(
        "set-if-absent race ({}, {mode}): 3 rounds × {N} concurrent requests, {created} instances, exactly one winner each",
        b.name()
    );
}

#[test]
fn set_if_absent_is_atomic_over_the_memory_bridge() {
    set_if_absent_is_atomic(&Backend::MemoryBridge, "hybrid");
}

#[test]
fn set_if_absent_is_atomic_over_a_redis_bridge() {
    set_if_absent_is_atomic(&Backend::redis_bridge(), "redis");
}

#[test]
fn set_if_absent_is_atomic_over_in_guest_redis() {
    let b = Backend::in_guest();
    set_if_absent_is_atomic(&b, "hybrid");
    set_if_absent_is_atomic(&b, "redis");
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGSTOP / SIGCONT: the server keeps its sockets and answers nothing.
    Stop,
    /// SIGKILL, then a new server on the same port.
    KillRestart,
}

const THRESHOLD: u64 = 3;
const BREAKER_TIMEOUT: Duration = Duration::from_secs(1);
const READ_TIMEOUT_MS: u64 = 300;

fn breaker_extra(mode: &str, fallback: &str, per_instance: bool) -> Value {
    json!({
        "store": {"mode": mode, "fallback": fallback},
        "revocationCheckInterval": "60s",
        "replay": {"insecureAllowPerInstance": per_instance},
        "redis": {
            "circuitBreakerThreshold": THRESHOLD.to_string(),
            "circuitBreakerTimeout": "1s",
            "readTimeout": format!("{READ_TIMEOUT_MS}ms"),
            "writeTimeout": format!("{READ_TIMEOUT_MS}ms"),
            "dialTimeout": format!("{READ_TIMEOUT_MS}ms"),
        },
    })
}

fn breaker(mut b: Backend, outage: Outage) {
    let inst = unique("breaker");
    let bridge_timeout = Duration::from_millis(READ_TIMEOUT_MS);
    let p = b.probe_with(&inst, breaker_extra("hybrid", "l1", false), bridge_timeout);
    let deny = b.probe_with(
        &inst,
        breaker_extra("hybrid", "deny", false),
        bridge_timeout,
    );
    let lax = b.probe_with(&inst, breaker_extra("hybrid", "l1", true), bridge_timeout);
    let name = format!("{} {outage:?}", b.name());

    ok(
        &p.set("sess", "alice", "session-of-alice", 600_000, "confidential"),
        "session",
    );
    ok(
        &deny.set("sess", "bob", "session-of-bob", 600_000, "confidential"),
        "session",
    );
    let h = p.health();
    assert_health_shape(&h);
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["cache"]["redis"]["connected"], true, "{h}");
    assert_eq!(p.metric("oidc_guard_store_breaker_state"), 0.0);

    let port = b.server().unwrap().port;
    match outage {
        Outage::Stop => b.server().unwrap().pause(),
        Outage::KillRestart => b.server_mut().unwrap().kill(),
    }

    // A request stream during the outage: a cached session read, an uncached read, a write.
    let mut states = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut timings = Vec::new();
    for i in 0..8 {
        let s = p.get("sess", "alice");
        assert_eq!(
            found(&s).as_deref(),
            Some("session-of-alice"),
            "{name}: session from L1"
        );
        for a in [
            p.get("probe", &format!("uncached-{i}")),
            p.set(
                "probe",
                &format!("during-{i}"),
                "written-in-outage",
                600_000,
                "cache",
            ),
        ] {
            assert!(a.status < 500, "{name}: {} {}", a.status, a.text);
            ok(&a, "fallback l1");
            slowest = slowest.max(a.took);
            timings.push(a.took.as_millis() as u64);
            states.push(a.s("breaker"));
        }
    }
    println!("{name}: request times during the outage (ms): {timings:?}");
    // Exactly `THRESHOLD` failed operations open it.
    let first_open = states.iter().position(|s| s == "open").unwrap();
    assert_eq!(first_open as u64, THRESHOLD - 1, "{name}: {states:?}");
    assert!(
        states[first_open..].iter().all(|s| s == "open"),
        "{name}: {states:?}"
    );
    // While open the L2 is not asked.
    let prior = p.get("probe", "during-0");
    let before = prior.n("l2Attempts");
    let a = p.get("probe", "uncached-open");
    ok(&a, "open read");
    assert_eq!(
        a.instance, prior.instance,
        "{name}: counters are per instance"
    );
    assert_eq!(a.s("breaker"), "open", "{name}");
    assert_eq!(
        a.n("l2Attempts"),
        before,
        "{name}: the L2 was asked while open"
    );
    // Writes made during the outage are served from L1.
    assert_eq!(
        found(&p.get("probe", "during-0")).as_deref(),
        Some("written-in-outage")
    );
    // Each failing request waited at most its attempts' timeouts (+ 1 s): two attempts
    // (maxRetries 1) of one read timeout in the guest; through the test host's bridge each
    // attempt can also spend the host's timeout reconnecting (redis-rs connects and sets up
    // the connection within it), which is the host's business, not the guest's.
    let per_attempt = match b {
        Backend::InGuest(_) => READ_TIMEOUT_MS,
        _ => 3 * READ_TIMEOUT_MS,
    };
    assert!(
        slowest < Duration::from_millis(2 * per_attempt + 1000),
        "{name}: a request waited {slowest:?}"
    );
    let h = p.health();
    assert_eq!(h["cache"]["circuit_breaker"]["state"], "open", "{h}");
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["cache"]["redis"]["connected"], false, "{h}");
    assert!(h["cache"]["circuit_breaker"]["opens"].as_u64().unwrap() >= 1);
    assert!(h["cache"]["fallbacks"].as_u64().unwrap() >= 2, "{h}");
    assert_eq!(p.metric("oidc_guard_store_breaker_state"), 2.0);
    assert_eq!(p.metric("oidc_guard_store_l2_up"), 0.0);

    // Single-use checks refuse while the L2 is down...
    let r = p.setnx("jti", "once-during-outage", 60_000, "singleuse");
    assert_eq!(
        (r.status, r.s("outcome")),
        (503, "unavailable".to_string()),
        "{name}"
    );
    assert!(p.metric("oidc_guard_store_single_use_refusals_total") >= 1.0);
    // ...unless per-instance detection is accepted.
    assert_eq!(
        lax.setnx("jti", "lax-once", 60_000, "singleuse")
            .s("outcome"),
        "won",
        "{name}"
    );
    assert_eq!(
        lax.setnx("jti", "lax-once", 60_000, "singleuse")
            .s("outcome"),
        "already-used"
    );

    // fallback: deny refuses what needs the L2 (its L1 copy of a session still answers).
    assert_eq!(
        found(&deny.get("sess", "bob")).as_deref(),
        Some("session-of-bob")
    );
    for _ in 0..THRESHOLD + 1 {
        let r = deny.get("probe", "uncached-deny");
        assert_eq!(r.status, 503, "{name}: deny must refuse: {}", r.text);
        let r = deny.set("probe", "deny-write", "x", 60_000, "cache");
        assert_eq!(r.status, 503, "{name}: deny must refuse: {}", r.text);
    }
    let dh = deny.health();
    assert_eq!(dh["status"], "unhealthy", "{dh}");

    // Back: OPEN → HALF-OPEN → CLOSED within circuitBreakerTimeout + 1 s.
    let mut restarted = None;
    match outage {
        Outage::Stop => b.server().unwrap().resume(),
        Outage::KillRestart => {
            restarted = Some(RedisServer::start_raw(
                Flavor::Redis,
                "restarted",
                port,
                &[format!("port {port}")],
                &[],
                None,
            ));
        }
    }
    let up = Instant::now();
    let mut n = 0;
    loop {
        let a = p.get("probe", &format!("after-{n}"));
        assert!(a.status < 500, "{name}: {}", a.text);
        n += 1;
        if a.s("breaker") == "closed" {
            break;
        }
        assert!(
            up.elapsed() < BREAKER_TIMEOUT + Duration::from_secs(1),
            "{name}: breaker still {} after {:?}",
            a.s("breaker"),
            up.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed_after = up.elapsed();
    let log = p.log_text();
    for t in ["closed -> open", "open -> half-open", "half-open -> closed"] {
        assert_eq!(
            log.matches(t).count(),
            1,
            "{name}: transition {t:?} logged once:\n{log}"
        );
    }
    assert!(log.contains("L2 operation failed"), "{name}: {log}");
    let h = p.health();
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["cache"]["circuit_breaker"]["state"], "closed");
    assert_eq!(
        p.setnx("jti", "once-after", 60_000, "singleuse")
            .s("outcome"),
        "won"
    );
    println!("breaker ({name}): opened after {THRESHOLD} failed operations, closed {closed_after:?} after the server came back (timeout 1 s), slowest request during the outage {slowest:?}");
    drop(restarted);
}

#[test]
fn breaker_redis_bridge_sigstop() {
    breaker(Backend::redis_bridge(), Outage::Stop);
}

#[test]
fn breaker_redis_bridge_kill_and_restart() {
    breaker(Backend::redis_bridge(), Outage::KillRestart);
}

#[test]
fn breaker_in_guest_redis_sigstop() {
    breaker(Backend::in_guest(), Outage::Stop);
}

#[test]
fn breaker_in_guest_redis_kill_and_restart() {
    breaker(Backend::in_guest(), Outage::KillRestart);
}

// ---------------------------------------------------------------------------------------------
// Health and metrics
// ---------------------------------------------------------------------------------------------

fn figures_change(p: &Probe, mode: &str) {
    let h = p.health();
    assert_health_shape(&h);
    assert_eq!(h["cache"]["mode"], mode);
    assert_eq!(h["scope"], "guest instance");
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["cache"]["redis"]["configured"], true);
    assert_eq!(h["cache"]["redis"]["connected"], true);
    let m0 = p.metrics();
    assert_metrics_shape(&m0);
    assert!(
        m0.contains(&format!(
            "oidc_guard_store_info{{mode=\"{mode}\",fallback=\"l1\",scope=\"guest_instance\"}} 1"
        )),
        "{m0}"
    );
    assert!(p.metrics().contains("(this guest instance)"));
    let v = |t: &str, n: &str| metric(t, n);
    ok(&p.set("probe", "fig", "1", 60_000, "cache"), "set");
    assert_eq!(found(&p.get("probe", "fig")).as_deref(), Some("1"));
    assert_eq!(found(&p.get("probe", "fig-missing")), None);
    let m1 = p.metrics();
    if mode == "hybrid" {
        assert_eq!(
            v(&m1, "oidc_guard_store_l1_hits_total"),
            v(&m0, "oidc_guard_store_l1_hits_total") + 1.0
        );
        assert_eq!(
            v(&m1, "oidc_guard_store_l1_entries"),
            v(&m0, "oidc_guard_store_l1_entries") + 2.0,
            "value + remembered miss"
        );
    } else {
        assert_eq!(
            v(&m1, "oidc_guard_store_l2_hits_total"),
            v(&m0, "oidc_guard_store_l2_hits_total") + 1.0
        );
    }
    assert_eq!(
        v(&m1, "oidc_guard_store_l2_misses_total"),
        v(&m0, "oidc_guard_store_l2_misses_total") + 1.0
    );
    assert!(
        v(&m1, "oidc_guard_store_l2_latency_seconds_count")
            > v(&m0, "oidc_guard_store_l2_latency_seconds_count")
    );
    let h1 = p.health();
    assert!(h1["cache"]["redis"]["latency_us"].as_u64().is_some());
    assert!(
        h1["cache"]["redis"]["hits"].as_u64() > h["cache"]["redis"]["hits"].as_u64()
            || mode == "hybrid"
    );
    assert!(h1["cache"]["memory"]["misses"].as_u64() >= h["cache"]["memory"]["misses"].as_u64());
}

#[test]
fn health_and_metrics_show_the_figures_and_change_with_them() {
    let b = Backend::MemoryBridge;
    figures_change(
        &b.probe(&unique("fig"), json!({"store": {"mode": "hybrid"}})),
        "hybrid",
    );
    figures_change(
        &b.probe(&unique("fig"), json!({"store": {"mode": "redis"}})),
        "redis",
    );
    let g = Backend::in_guest();
    figures_change(
        &g.probe(&unique("fig"), json!({"store": {"mode": "hybrid"}})),
        "hybrid",
    );
    figures_change(
        &g.probe(&unique("fig"), json!({"store": {"mode": "redis"}})),
        "redis",
    );
    let m = b.probe(&unique("fig"), json!({"store": {"mode": "memory"}}));
    let h = m.health();
    assert_health_shape(&h);
    assert_eq!(
        (h["status"].as_str(), h["cache"]["mode"].as_str()),
        (Some("healthy"), Some("memory"))
    );
}

fn bearer_config(extra: Value) -> Value {
    let mut v = json!({"issuer": "https://idp.example.com",
        "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "sample",
            "x": "nWMVQCCEQTvvPG_zsXt0WL-tOHa0kAKMOMOOgFuilY8"}]},
        "bearer": {"enabled": true, "audience": "api"},
        "health": {"path": "/.oidc-guard/health", "metricsPath": "/.oidc-guard/metrics"}});
    store_support::merge(&mut v, extra);
    v
}

fn plugin_get(mw: &Middleware, path: &str) -> (u16, String) {
    let ex = mw.send(Request::get(path).header("Accept", "application/json"));
    assert!(ex.trap.is_none(), "{path}: trap {:?}", ex.trap);
    (ex.status, ex.text())
}

#[test]
fn the_real_plugins_health_endpoint() {
    // Bridge artifact: L2 = host bridge, default mode hybrid.
    let mw = Middleware::builder(guests::plugin(Artifact::Bridge).unwrap())
        .config(bearer_config(json!({"instanceName": unique("plugin")})))
        .bridge(Bridge::memory())
        .build()
        .unwrap();
    let (status, body) = plugin_get(&mw, "/.oidc-guard/health");
    assert_eq!(status, 200, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_health_shape(&h);
    assert_eq!(
        (h["status"].as_str(), h["cache"]["mode"].as_str()),
        (Some("healthy"), Some("hybrid")),
        "{h}"
    );
    let (status, text) = plugin_get(&mw, "/.oidc-guard/metrics");
    assert_eq!(status, 200);
    assert_metrics_shape(&text);
    // Health is the plugin's own endpoint: no token needed, a neighbouring path still is.
    assert_eq!(plugin_get(&mw, "/.oidc-guard/healthz").0, 401);

    // Traefik artifact with in-guest Redis; the breaker state shows the outage.
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let mw = Middleware::builder(guests::plugin(Artifact::Traefik).unwrap())
        .config(bearer_config(json!({"redis": {"address": server.addr(),
            "circuitBreakerThreshold": "2", "circuitBreakerTimeout": "30s", "readTimeout": "200ms"}})))
        .build()
        .unwrap();
    let (status, body) = plugin_get(&mw, "/.oidc-guard/health");
    assert_eq!(status, 200, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_health_shape(&h);
    assert_eq!(h["cache"]["mode"], "hybrid");
    assert_eq!(h["cache"]["redis"]["connected"], true, "{h}");
    assert!(h["cache"]["redis"]["latency_us"].as_u64().unwrap() > 0);
    server.pause();
    let states: Vec<String> = (0..3)
        .map(|_| {
            let (s, b) = plugin_get(&mw, "/.oidc-guard/health");
            assert_eq!(s, 200, "{b}");
            let h: Value = serde_json::from_str(&b).unwrap();
            h["cache"]["circuit_breaker"]["state"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    server.resume();
    assert_eq!(
        states,
        ["closed", "open", "open"],
        "the health ping counts as an L2 operation"
    );
    let (_, text) = plugin_get(&mw, "/.oidc-guard/metrics");
    assert_eq!(metric(&text, "oidc_guard_store_breaker_state"), 2.0);
    assert_eq!(metric(&text, "oidc_guard_store_breaker_opens_total"), 1.0);
}

// ---------------------------------------------------------------------------------------------
// Malformed bridge replies
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_bridge_replies_are_refused_and_logged_never_a_trap() {
    // Redis mode and fallback deny so every L2 error reaches the answer; no breaker.
    let p = Backend::MemoryBridge.probe(
        &unique("faults"),
        json!({"store": {"mode": "redis", "fallback": "deny"},
            "redis": {"enableCircuitBreaker": "false"}}),
    );
    ok(
        &p.set("probe", "present", "value", 600_000, "cache"),
        "seed",
    );
    let instance = p.get("probe", "present").instance;
    let cases: Vec<(&str, Fault, &str, &str)> = vec![
        (
            "kv_get",
            Fault::ClaimLength(-5),
            "get",
            "answered a length of -5",
        ),
        (
            "kv_get",
            Fault::ClaimLength(3),
            "get",
            "failed its integrity check",
        ),
        (
            "kv_get",
            Fault::ClaimLength(2_000_000),
            "get",
            "announced 2000000 bytes",
        ),
        ("kv_get", Fault::NeverFits, "get", "does not fit twice"),
        ("kv_get", Fault::Status(-7), "get", "unknown status -7"),
        ("kv_get", Fault::Status(42), "get", "unknown status 42"),
        ("kv_get", Fault::BadTtl(-9), "get", "TTL of -9"),
        (
            "kv_get",
            Fault::Garbage,
            "get",
            "failed its integrity check",
        ),
        ("kv_set", Fault::Status(99), "set", "unknown status 99"),
        ("kv_set", Fault::Garbage, "set", "unknown status 23130"),
        ("kv_set", Fault::Status(1), "set", "answered 'not stored'"),
        ("kv_set_nx", Fault::Garbage, "setnx", "unknown status 23130"),
        (
            "kv_set_nx",
            Fault::Status(-3),
            "setnx",
            "refused the arguments as invalid",
        ),
        ("kv_delete", Fault::Garbage, "del", "unknown status 23130"),
        ("kv_ping", Fault::Status(-42), "ping", "unknown status -42"),
    ];
    for (func, fault, op, needle) in cases {
        p.mw.take_logs();
        p.mw.faults().inject_for(func, fault.clone());
        let a = p.call(&format!(
            "/store/{op}?ns=probe&key=present&value=v&ttl=60000&class=cache"
        ));
        p.mw.faults().clear();
        assert_eq!(a.status, 503, "{func} {fault:?}: refused: {}", a.text);
        assert_eq!(a.json["ok"], false);
        assert_eq!(a.instance, instance, "the same instance keeps serving");
        let log = p.log_text();
        assert!(
            log.contains(needle) && log.contains("[warn]"),
            "{func} {fault:?}: expected a logged {needle:?}:\n{log}"
        );
        // A good reply right after: nothing was left half-updated.
        assert_eq!(
            found(&p.get("probe", "present")).as_deref(),
            Some("value"),
            "{func} {fault:?}"
        );
    }
    let h = p.health();
    assert!(h["cache"]["redis"]["errors"].as_u64().unwrap() >= 13, "{h}");
    assert!(
        h["cache"]["redis"]["integrity_failures"].as_u64().unwrap() >= 1,
        "{h}"
    );
    assert_eq!(
        p.mw.instances_created(),
        1,
        "no instance was lost to a trap"
    );
}
