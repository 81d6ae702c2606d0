//! Issue 4 in real Traefik 3.7.15: the plugin (Traefik artifact, built from this tree) with its
//! in-guest Redis client.
//!
//! - Two Traefik processes (`GOMAXPROCS=1`) share one Redis and see each other's store writes: a
//!   one-time token (`bearer.oneTimeTokens`) used at one is refused at the other.
//! - Without `GOMAXPROCS=1` (Traefik ≤ 3.7.15 shares one socket table between a middleware's
//!   instances, traefik#11629): 10,000 one-time tokens, each sent twice, 32 concurrent
//!   connections across both processes — no token is ever allowed twice; refusal and error rates
//!   are printed.
//! - Round trips per request counted on the wire, and commands from `INFO commandstats`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod store_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oidc_guard_testhost::backend::Backend;
use oidc_guard_testhost::servers::{Flavor, RedisServer, ServerConfig};
use oidc_guard_testhost::tokens::{now, SigningKey};
use oidc_guard_testhost::traefik::{Traefik, TraefikConfig};
use oidc_guard_testhost::util::{scratch_dir, workspace_root};
use oidc_guard_testhost::wasm::guests::{self, Artifact};
use serde_json::{json, Value};
use store_support::{command_delta, commandstats, unique, TurnProxy};

/// A Traefik plugin folder with this tree's Traefik artifact.
fn plugin_dir() -> PathBuf {
    let dir = scratch_dir("plugin-under-test");
    std::fs::copy(
        workspace_root().join(".traefik.yml"),
        dir.join(".traefik.yml"),
    )
    .unwrap();
    std::fs::copy(
        guests::plugin(Artifact::Traefik).unwrap(),
        dir.join("plugin.wasm"),
    )
    .unwrap();
    dir
}

fn guard_config(
    key: &SigningKey,
    redis_addr: &str,
    mode: &str,
    one_time: bool,
    instance: &str,
) -> Value {
    json!({
        "issuer": "https://idp.example.com",
        "jwks": key.jwks(),
        "bearer": {"enabled": true, "audience": "api", "oneTimeTokens": one_time},
        "instanceName": instance,
        "store": {"mode": mode},
        "redis": {"address": redis_addr},
        "health": {"path": "/.oidc-guard/health", "metricsPath": "/.oidc-guard/metrics"},
    })
}

fn start_traefik(plugin: &Path, cfg: Value, backend: &Backend, gomaxprocs: Option<u32>) -> Traefik {
    let mut t = TraefikConfig::default().middleware("guard", cfg).route(
        "api",
        "PathPrefix(`/`)",
        &["guard"],
        &backend.url(),
    );
    t.plugin_dir = Some(plugin.to_path_buf());
    t.gomaxprocs = gomaxprocs;
    let t = t.start();
    t.wait_route("/.oidc-guard/health");
    t
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = agent.get(url).header("Accept", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    match req.call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

fn token(key: &SigningKey, jti: &str) -> String {
    let n = now();
    key.sign(
        &json!({}),
        &json!({"iss": "https://idp.example.com", "aud": "api", "sub": format!("user-{jti}"),
            "iat": n, "exp": n + 900, "jti": jti}),
    )
}

fn health(t: &Traefik) -> Value {
    let (s, b) = get(&agent(), &format!("{}/.oidc-guard/health", t.url()), None);
    assert_eq!(s, 200, "{b}");
    serde_json::from_str(&b).unwrap()
}

#[test]
fn two_traefik_processes_share_one_redis() {
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let backend = Backend::start();
    let plugin = plugin_dir();
    let key = SigningKey::eddsa("k1");
    let cfg = guard_config(&key, &server.addr(), "hybrid", true, &unique("two"));
    let a = start_traefik(&plugin, cfg.clone(), &backend, Some(1));
    let b = start_traefik(&plugin, cfg, &backend, Some(1));
    for t in [&a, &b] {
        let h = health(t);
        assert_eq!(h["cache"]["mode"], "hybrid", "{h}");
        assert_eq!(h["cache"]["redis"]["connected"], true, "{h}");
    }
    let clients_before = server
        .info_field("stats", "total_connections_received")
        .unwrap();
    let ag = agent();
    // A token used at A is refused at B, and the other way round.
    for (first, second, tag) in [(&a, &b, "ab"), (&b, &a, "ba")] {
        let t = token(&key, &format!("two-{tag}"));
        let (s, body) = get(&ag, &format!("{}/api", first.url()), Some(&t));
        assert_eq!(s, 200, "first use: {body}\n{}", first.log_text());
        let (s, body) = get(&ag, &format!("{}/api", second.url()), Some(&t));
        assert_eq!(s, 401, "second use at the other process: {body}");
        let (s, _) = get(&ag, &format!("{}/api", first.url()), Some(&t));
        assert_eq!(s, 401, "third use at the first process");
    }
    let markers = server.cli(&["KEYS", "*:jti:*"]);
    assert_eq!(markers.lines().count(), 2, "{markers}");
    let clients_after = server
        .info_field("stats", "total_connections_received")
        .unwrap();
    assert!(clients_after.parse::<u64>().unwrap() > clients_before.parse::<u64>().unwrap());
    // Both processes see each other's writes: a plain (reusable) bearer token still works on both.
    let cfg2 = guard_config(&key, &server.addr(), "hybrid", false, &unique("two-reuse"));
    drop((a, b));
    let a = start_traefik(&plugin, cfg2.clone(), &backend, Some(1));
    let b = start_traefik(&plugin, cfg2, &backend, Some(1));
    let t = token(&key, "reusable");
    for tr in [&a, &b, &a, &b] {
        assert_eq!(get(&ag, &format!("{}/api", tr.url()), Some(&t)).0, 200);
    }
    let log = format!("{}\n{}", a.log_text(), b.log_text());
    assert!(!log.contains("panic"), "{log}");
}

/// What the load run saw: per token, how many of its two uses were allowed; per request, the
/// statuses.
#[derive(Debug, Default)]
struct Tally {
    /// Tokens allowed exactly once (the expected outcome).
    once: u64,
    /// Tokens allowed on both uses: must be 0.
    twice: u64,
    /// Tokens never allowed (a refusal or error on the first use; the second use is then
    /// correctly refused as used, or also failed).
    never: u64,
    /// Tokens allowed on the second use only (their first use failed without recording them).
    second_only: u64,
    /// Request statuses: (status, count); 0 = transport error.
    statuses: Vec<(u16, u64)>,
    /// Up to 5 bodies of 5xx answers.
    examples: Vec<String>,
    /// 500s whose body is a guest trap (`wasm error: ...`).
    guest_traps: u64,
    /// 500s whose body is a Go panic in the host recovered by wazero (`runtime error: ...`).
    host_panics: u64,
}

fn load(
    a: &Traefik,
    b: &Traefik,
    key: &SigningKey,
    tokens: usize,
    concurrency: usize,
    tag: &str,
) -> Tally {
    let minted: Vec<String> = (0..tokens)
        .map(|i| token(key, &format!("{tag}-{i}")))
        .collect();
    let next = AtomicUsize::new(0);
    let urls = [format!("{}/api", a.url()), format!("{}/api", b.url())];
    let started = Instant::now();
    // (first status, second status) per token.
    let outcomes: Vec<(usize, u16, u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                let (next, minted, urls) = (&next, &minted, &urls);
                s.spawn(move || {
                    let ag = agent();
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(t) = minted.get(i) else { break };
                        // First use at A or B; the second at the other process, or the same one.
                        let first = i % 2;
                        let second = if i % 4 < 2 { 1 - first } else { first };
                        let (s1, b1) = get(&ag, &urls[first], Some(t));
                        let (s2, b2) = get(&ag, &urls[second], Some(t));
                        let note = match (s1 >= 500 || s1 == 0, s2 >= 500 || s2 == 0) {
                            (true, _) => {
                                format!("{s1} {}", b1.chars().take(200).collect::<String>())
                            }
                            (_, true) => {
                                format!("{s2} {}", b2.chars().take(200).collect::<String>())
                            }
                            _ => String::new(),
                        };
                        out.push((i, s1, s2, note));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let took = started.elapsed();
    let mut t = Tally::default();
    let mut bump = |st: u16| match t.statuses.iter_mut().find(|(s, _)| *s == st) {
        Some((_, n)) => *n += 1,
        None => t.statuses.push((st, 1)),
    };
    for (_, s1, s2, _) in &outcomes {
        bump(*s1);
        bump(*s2);
    }
    for (_, s1, s2, note) in &outcomes {
        match (*s1 == 200, *s2 == 200) {
            (true, true) => t.twice += 1,
            (true, false) => t.once += 1,
            (false, true) => t.second_only += 1,
            (false, false) => t.never += 1,
        }
        if note.contains("wasm error") {
            t.guest_traps += 1;
        } else if note.contains("runtime error") {
            t.host_panics += 1;
        }
        if !note.is_empty() && t.examples.len() < 5 {
            t.examples.push(note.clone());
        }
    }
    t.statuses.sort_unstable();
    let n = tokens as f64;
    let requests = 2.0 * n;
    let pct = |c: u64, of: f64| 100.0 * c as f64 / of;
    let errors: u64 = t
        .statuses
        .iter()
        .filter(|(s, _)| *s >= 500 || *s == 0)
        .map(|(_, c)| c)
        .sum();
    println!(
        "one-time tokens ({tag}): {tokens} tokens × 2 requests, {concurrency} concurrent connections across 2 Traefik processes, {:.1} s ({:.0} requests/s)",
        took.as_secs_f64(),
        requests / took.as_secs_f64()
    );
    println!(
        "  per token : allowed once {:.3} %, ALLOWED TWICE {}, first use failed and second allowed {:.3} %, never allowed {:.3} %",
        pct(t.once, n),
        t.twice,
        pct(t.second_only, n),
        pct(t.never, n)
    );
    println!(
        "  refusal rate (first uses not allowed) {:.3} %, error rate (5xx or transport errors per request) {:.3} %, statuses {:?}; 500s: guest traps {}, host (wasi-go) panics {}",
        pct(t.second_only + t.never, n),
        pct(errors, requests),
        t.statuses,
        t.guest_traps,
        t.host_panics
    );
    for e in &t.examples {
        println!("  example: {e}");
    }
    t
}

fn log_summary(t: &Traefik) -> String {
    let log = t.log_text();
    let count = |needle: &str| log.matches(needle).count();
    format!(
        "integrity failures logged {}, L2 failures logged {}, breaker opened {}, traps/panics {}",
        count("failed its integrity check"),
        count("L2 operation failed"),
        count("-> open"),
        count("panic") + count("wasm error") + count("unreachable")
    )
}

#[test]
fn ten_thousand_one_time_tokens_at_default_gomaxprocs_are_never_allowed_twice() {
    let tokens: usize = std::env::var("ONE_TIME_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let backend = Backend::start();
    let plugin = plugin_dir();
    let key = SigningKey::eddsa("k1");
    for (gomaxprocs, n) in [(None, tokens), (Some(1), tokens / 5)] {
        let cfg = guard_config(&key, &server.addr(), "hybrid", true, &unique("load"));
        let a = start_traefik(&plugin, cfg.clone(), &backend, gomaxprocs);
        let b = start_traefik(&plugin, cfg, &backend, gomaxprocs);
        let tag = match gomaxprocs {
            None => "default GOMAXPROCS".to_string(),
            Some(g) => format!("GOMAXPROCS={g}"),
        };
        let hits = backend.hits();
        let tally = load(&a, &b, &key, n, 32, &tag);
        // What the backend received is what the clients were allowed: no request passed the
        // guard while its client was told otherwise (a trap after forwarding, say).
        let allowed_requests = tally
            .statuses
            .iter()
            .find(|(s, _)| *s == 200)
            .map_or(0, |(_, c)| *c);
        assert_eq!(
            backend.hits() - hits,
            allowed_requests,
            "{tag}: backend hits vs 200 answers"
        );
        println!("  Traefik A: {}", log_summary(&a));
        println!("  Traefik B: {}", log_summary(&b));
        assert_eq!(tally.twice, 0, "{tag}: a one-time token was allowed twice");
        assert_eq!(tally.once + tally.second_only + tally.never, n as u64);
        assert!(tally.once > 0, "{tag}: no first use was allowed at all");
        let first_ok = tally.once + tally.second_only;
        // Every allowed use left its marker in Redis (nothing was allowed on a per-instance
        // decision).
        let markers: u64 = server
            .cli(&[
                "EVAL",
                "return #redis.call('KEYS', ARGV[1])",
                "0",
                "*:jti:*",
            ])
            .parse()
            .unwrap();
        assert!(
            markers >= first_ok,
            "{tag}: {markers} markers for {first_ok} allowed tokens"
        );
        server.cli(&["FLUSHALL"]);
    }
}

#[test]
fn round_trips_per_request_in_traefik() {
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let proxy = TurnProxy::start(server.port);
    let backend = Backend::start();
    let plugin = plugin_dir();
    let key = SigningKey::eddsa("k1");
    let ag = agent();
    let mut report = Vec::new();
    for (mode, one_time) in [
        ("redis", true),
        ("hybrid", true),
        ("redis", false),
        ("hybrid", false),
    ] {
        let cfg = guard_config(&key, &proxy.addr(), mode, one_time, &unique("rt"));
        let t = start_traefik(&plugin, cfg, &backend, Some(1));
        let reusable = token(&key, &format!("reusable-{mode}"));
        // Warm up: the instance has verified the reusable token once.
        assert_eq!(
            get(&ag, &format!("{}/api", t.url()), Some(&reusable)).0,
            200
        );
        let n = 20u64;
        let (t0, s0) = (proxy.turns(), commandstats(&server));
        for i in 0..n {
            let tok = if one_time {
                token(&key, &format!("rt-{mode}-{i}"))
            } else {
                reusable.clone()
            };
            let (s, body) = get(&ag, &format!("{}/api", t.url()), Some(&tok));
            assert_eq!(s, 200, "{body}");
        }
        let (t1, s1) = (proxy.turns(), commandstats(&server));
        let cmds: Vec<(String, u64)> = command_delta(&s0, &s1)
            .into_iter()
            .filter(|(c, _)| c != "info")
            .collect();
        let per = (t1 - t0) as f64 / n as f64;
        report.push(format!(
            "Traefik, {mode} mode, {} bearer: {per:.2} round trips per request; commands per request {:?}",
            if one_time { "one-time" } else { "cached reusable" },
            cmds.iter().map(|(c, k)| (c.clone(), *k as f64 / n as f64)).collect::<Vec<_>>()
        ));
        // At most one round trip per store operation: a one-time token costs exactly one (SET NX
        // + GET pipelined), a reusable token verified before costs none.
        assert_eq!(
            per,
            if one_time { 1.0 } else { 0.0 },
            "{mode} one-time={one_time}: {cmds:?}"
        );
    }
    for r in report {
        println!("{r}");
    }
}
