//! `make bench`: throughput of real Traefik 3.7.15 on 127.0.0.1 with and without the plugin, in
//! the same run, against the same echo backend. Each scenario is run several times in
//! alternating order with wrk; medians and ratios to the no-middleware route are printed.
//!
//! Usage: `bench [--secs N] [--reps N] [--conns N] [--threads N] [--only name,name]`

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use oidc_guard_testhost::backend::Backend;
use oidc_guard_testhost::servers::{Flavor, RedisServer, ServerConfig};
use oidc_guard_testhost::tokens::{now, SigningKey};
use oidc_guard_testhost::traefik::{Traefik, TraefikConfig};
use oidc_guard_testhost::wrk::{self, median, WrkRun};
use serde_json::{json, Value};

struct Args {
    secs: u32,
    reps: usize,
    conns: u32,
    threads: u32,
    only: Option<Vec<String>>,
}

fn args() -> Args {
    let mut a = Args {
        secs: 5,
        reps: 3,
        conns: 32,
        threads: 2,
        only: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--secs" => a.secs = next.parse().unwrap_or(a.secs),
            "--reps" => a.reps = next.parse().unwrap_or(a.reps),
            "--conns" => a.conns = next.parse().unwrap_or(a.conns),
            "--threads" => a.threads = next.parse().unwrap_or(a.threads),
            "--only" => a.only = Some(next.split(',').map(str::to_string).collect()),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// One measured request shape.
struct Scenario {
    name: &'static str,
    what: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    expect: u16,
}

struct Group {
    title: String,
    traefik: Traefik,
    scenarios: Vec<Scenario>,
}

fn memory_config(key: &SigningKey) -> Value {
    json!({
        "issuer": "https://idp.bench",
        "jwks": key.jwks(),
        "bearer": {"enabled": true, "audience": "api"},
        "excludedURLs": ["/g/public"],
    })
}

fn bearer_token(key: &SigningKey, jti: &str) -> String {
    key.sign(
        &json!({}),
        &json!({"iss": "https://idp.bench", "aud": "api", "sub": "bench-user", "jti": jti,
                "iat": now(), "exp": now() + 3600}),
    )
}

fn h(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn memory_group(backend: &Backend) -> Group {
    let key = SigningKey::es256("bench");
    let t = TraefikConfig::default()
        .middleware("guard", memory_config(&key))
        .route("nomw", "PathPrefix(`/nomw`)", &[], &backend.url())
        .route("guarded", "PathPrefix(`/g`)", &["guard"], &backend.url())
        .start();
    t.wait_route("/nomw/ready");
    t.wait_route("/g/public/ready");
    let token = bearer_token(&key, "bench-1");
    Group {
        title: "memory mode, default GOMAXPROCS".into(),
        traefik: t,
        scenarios: vec![
            Scenario {
                name: "baseline",
                what: "no middleware",
                path: "/nomw/x".into(),
                headers: vec![],
                expect: 200,
            },
            Scenario {
                name: "excluded",
                what: "plugin, excluded path (pass-through)",
                path: "/g/public/x".into(),
                headers: vec![],
                expect: 200,
            },
            Scenario {
                name: "refused",
                what: "plugin, no credential (401)",
                path: "/g/x".into(),
                headers: vec![h("Accept", "application/json")],
                expect: 401,
            },
            Scenario {
                name: "bearer",
                what: "plugin, cached valid bearer token (ES256)",
                path: "/g/x".into(),
                headers: vec![h("Authorization", &format!("Bearer {token}"))],
                expect: 200,
            },
        ],
    }
}

fn hybrid_group(backend: &Backend, redis: &RedisServer) -> Group {
    let key = SigningKey::es256("bench");
    let mut cfg = memory_config(&key);
    cfg["redis"] = json!({"address": format!("127.0.0.1:{}", redis.port), "cacheMode": "hybrid"});
    let t = TraefikConfig::default()
        .middleware("guard", cfg)
        .route("nomw", "PathPrefix(`/nomw`)", &[], &backend.url())
        .route("guarded", "PathPrefix(`/g`)", &["guard"], &backend.url())
        .gomaxprocs(1)
        .start();
    t.wait_route("/nomw/ready");
    t.wait_route("/g/public/ready");
    let token = bearer_token(&key, "bench-2");
    Group {
        title: "hybrid mode (Redis), GOMAXPROCS=1".into(),
        traefik: t,
        scenarios: vec![
            Scenario {
                name: "baseline-1p",
                what: "no middleware",
                path: "/nomw/x".into(),
                headers: vec![],
                expect: 200,
            },
            Scenario {
                name: "hybrid-bearer",
                what: "plugin, cached valid bearer token, hybrid store",
                path: "/g/x".into(),
                headers: vec![h("Authorization", &format!("Bearer {token}"))],
                expect: 200,
            },
        ],
    }
}

/// User + system CPU time of a process so far, in microseconds (`/proc/<pid>/stat`).
fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, i.e. indexes 11 and 12 after the ')'.
    let clk = 100; // USER_HZ on Linux
    (ticks(11) + ticks(12)) * 1_000_000 / clk
}

fn check(group: &Group, s: &Scenario) {
    let url = format!("{}{}", group.traefik.url(), s.path);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(&url);
    for (k, v) in &s.headers {
        req = req.header(k, v);
    }
    let got = req.call().map(|r| r.status().as_u16()).unwrap_or(0);
    if got != s.expect {
        eprintln!(
            "warning: {} answers {got}, expected {}; its figures measure that answer",
            s.name, s.expect
        );
    }
}

fn main() {
    let a = args();
    let backend = Backend::start();
    let redis = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let mut groups = vec![memory_group(&backend), hybrid_group(&backend, &redis)];
    for g in &mut groups {
        if let Some(only) = &a.only {
            g.scenarios
                .retain(|s| only.iter().any(|o| o == s.name) || s.name.starts_with("baseline"));
        }
    }
    let mut results: BTreeMap<&'static str, Vec<WrkRun>> = BTreeMap::new();
    let mut cpu_per_req: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    println!(
        "wrk -t{} -c{} -d{}s, {} repetitions per scenario, alternating order",
        a.threads, a.conns, a.secs, a.reps
    );
    for g in &groups {
        for s in &g.scenarios {
            check(g, s);
        }
    }
    for rep in 0..a.reps {
        for g in &groups {
            let mut order: Vec<&Scenario> = g.scenarios.iter().collect();
            if rep % 2 == 1 {
                order.reverse();
            }
            for s in order {
                let url = format!("{}{}", g.traefik.url(), s.path);
                let before = cpu_us(g.traefik.pid());
                let r = wrk::run(&url, a.threads, a.conns, a.secs, &s.headers);
                let cpu = (cpu_us(g.traefik.pid()) - before) as f64 / r.requests.max(1) as f64;
                eprintln!(
                    "  rep {rep} {:<14} {:>10.0} req/s  p50 {:.2} ms  p99 {:.2} ms  Traefik CPU {:.0} us/req  non-2xx {}",
                    s.name, r.rps, r.p50_ms, r.p99_ms, cpu, r.non2xx
                );
                results.entry(s.name).or_default().push(r);
                cpu_per_req.entry(s.name).or_default().push(cpu);
            }
        }
    }
    println!();
    for g in &groups {
        println!("## {}", g.title);
        println!("| scenario | what | req/s (median) | p50 ms | p99 ms | throughput ratio | Traefik CPU µs/req | CPU ratio | non-2xx/3xx |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        let base_name = g
            .scenarios
            .iter()
            .find(|s| s.name.starts_with("baseline"))
            .map(|s| s.name);
        let base = base_name
            .and_then(|n| results.get(n))
            .map(|v| median(&v.iter().map(|r| r.rps).collect::<Vec<_>>()))
            .unwrap_or(0.0);
        let base_cpu = base_name
            .and_then(|n| cpu_per_req.get(n))
            .map(|v| median(v))
            .unwrap_or(0.0);
        for s in &g.scenarios {
            let Some(v) = results.get(s.name) else {
                continue;
            };
            let cpu = cpu_per_req.get(s.name).map(|v| median(v)).unwrap_or(0.0);
            let cpu_ratio = if cpu > 0.0 { base_cpu / cpu } else { 0.0 };
            let rps = median(&v.iter().map(|r| r.rps).collect::<Vec<_>>());
            let p50 = median(&v.iter().map(|r| r.p50_ms).collect::<Vec<_>>());
            let p99 = median(&v.iter().map(|r| r.p99_ms).collect::<Vec<_>>());
            let non2xx: u64 = v.iter().map(|r| r.non2xx).sum();
            let ratio = if base > 0.0 { rps / base } else { 0.0 };
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.3} | {:.0} | {:.3} | {} |",
                s.name, s.what, rps, p50, p99, ratio, cpu, cpu_ratio, non2xx
            );
        }
        println!();
    }
}
