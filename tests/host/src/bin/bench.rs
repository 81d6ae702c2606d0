//! `make bench`: throughput of real Traefik 3.7.15 on 127.0.0.1 with and without the plugin, in
//! the same run, against the same echo backend. Each scenario is run several times in
//! alternating order with wrk, each next to the same request (same headers) sent to the
//! no-middleware route of the same Traefik; medians, and ratios to both, are printed.
//!
//! Each measured run follows an unmeasured one of `--warmup` seconds (default 1) on the same
//! route with the same request: while the other route ran, Go's GC emptied Traefik's pool of
//! guest instances (a `sync.Pool`), and the first request on each new instance starts it and
//! verifies the token once. That cost (≈ 1.6 ms per instance for the plugin, ≈ 0.14 ms for the
//! reference guest, times ≈ 33 instances at `-c32`) is not the per-request cost the scenarios
//! name; the in-guest benchmarks report it (first sight per algorithm). `--warmup 0` measures
//! it along.
//!
//! Then each scenario that has such a pair runs once more, interleaved with it in one wrk load of
//! `--interleave` seconds (default 30; 0 skips it): every connection sends the no-middleware
//! request and the scenario's in alternating phases of `--phase-ms` (default 500), all threads
//! switching together, and the requests sent per phase are counted. Both sides then see the same
//! host moment by moment; back-to-back runs see a shared host's speed change between them (on a
//! noisy VM, the bare route alone moved by 2× between 4-s runs). Each B phase's count over the
//! mean of the A phases either side of it gives one ratio; the table has their median and
//! quartiles, and total over total.
//!
//! Usage: see [`USAGE`] (`bench --help`).
//!
//! A/B of two builds: with `OIDC_GUARD_BENCH_B=<plugin folder>` (a `plugin.wasm` and its
//! `.traefik.yml`), the memory-mode scenarios also run on a second Traefik loading that folder,
//! named with a `-b` suffix, in the same repetitions (`--only` names match them too).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use oidc_guard_testhost::backend::Backend;
use oidc_guard_testhost::browser::{Browser, Request as Nav};
use oidc_guard_testhost::idp::{Client, Idp, IdpOptions};
use oidc_guard_testhost::servers::{Flavor, RedisServer, ServerConfig};
use oidc_guard_testhost::tokens::{now, SigningKey};
use oidc_guard_testhost::traefik::{Traefik, TraefikConfig};
use oidc_guard_testhost::util::{free_port, scratch_dir, workspace_root};
use oidc_guard_testhost::wasm::guests::test_guest;
use oidc_guard_testhost::wrk::{self, median, WrkRun};
use serde_json::{json, Value};

struct Args {
    secs: u32,
    warmup: u32,
    reps: usize,
    conns: u32,
    threads: u32,
    only: Option<Vec<String>>,
    interleave: u32,
    phase_ms: u32,
    calibrate: bool,
}

const USAGE: &str = "usage: bench [--secs N] [--warmup N] [--reps N] [--conns N] [--threads N]
             [--only name,name] [--interleave SECS] [--phase-ms MS] [--calibrate]
  --secs N          seconds per measured wrk run (default 5)
  --warmup N        unmeasured seconds before each run (default 1)
  --reps N          paired runs per scenario, alternating order (default 3; 0: interleaved only)
  --conns, --threads  wrk connections and threads (default 32, 2)
  --only a,b        only these scenarios (and their baselines)
  --interleave SECS one interleaved load per scenario (default 30; 0 skips it)
  --phase-ms MS     phase length of the interleaved load (default 500, at least 50)
  --calibrate       also interleave each baseline with itself (an A/A check of the method)
environment: OIDC_GUARD_WASM (plugin), OIDC_GUARD_BENCH_B (a second plugin folder, A/B),
  OIDC_GUARD_TRAEFIK_PPROF=1 (Go CPU profiles into target/pprof/)";

/// The value after an option, as a number; a missing or malformed one ends the run with usage.
fn number<T: std::str::FromStr>(option: &str, value: Option<String>) -> T {
    match value.map(|v| v.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("bench: {option} needs a number\n{USAGE}");
            std::process::exit(2);
        }
    }
}

fn args() -> Args {
    let mut a = Args {
        secs: 5,
        warmup: 1,
        reps: 3,
        conns: 32,
        threads: 2,
        only: None,
        interleave: 30,
        phase_ms: 500,
        calibrate: false,
    };
    let mut v = std::env::args().skip(1);
    while let Some(opt) = v.next() {
        let opt = opt.as_str();
        match opt {
            "--secs" => a.secs = number(opt, v.next()),
            "--warmup" => a.warmup = number(opt, v.next()),
            "--reps" => a.reps = number(opt, v.next()),
            "--conns" => a.conns = number(opt, v.next()),
            "--threads" => a.threads = number(opt, v.next()),
            "--only" => {
                let names = v.next().unwrap_or_default();
                a.only = Some(names.split(',').map(str::to_string).collect());
            }
            "--interleave" => a.interleave = number(opt, v.next()),
            "--phase-ms" => a.phase_ms = number::<u32>(opt, v.next()).max(50),
            "--calibrate" => a.calibrate = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("bench: unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
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

const SESSION_KEY: &str = "oidc-guard-bench-session-key-0123456789abcdef";

/// Browser login settings for the bench IdP's client `bench` on `origin`.
fn login_config(idp: &Idp) -> Value {
    json!({
        "providerURL": idp.issuer(),
        "clientID": "bench",
        "clientSecret": "bench-secret",
        "sessionEncryptionKey": SESSION_KEY,
        "scopes": ["openid", "profile", "email", "groups"],
        "excludedURLs": ["/g/public"],
        "claimHeaders": {"X-Forwarded-Email": "email"},
    })
}

/// Logs a scripted browser in through Traefik and returns the session's `Cookie` header.
fn login(traefik: &Traefik, path: &str) -> (String, Duration) {
    let mut b = Browser::new();
    let t0 = std::time::Instant::now();
    let page = b
        .send(Nav::get(&format!("{}{path}", traefik.url())))
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(
        page.status,
        200,
        "login failed at {}: {}\nhops: {:?}\n{}",
        page.url,
        page.text(),
        page.hops
            .iter()
            .map(|h| (h.url.clone(), h.status))
            .collect::<Vec<_>>(),
        traefik.log_text()
    );
    let cookie = b.jar().header_with_prefix("_oidc_guard_");
    (cookie, took)
}

fn h(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// A Traefik loading the near-empty reference guest (`tests/host/guests/src/bin/reference.rs`)
/// instead of the plugin: its ratio is the ceiling of any http-wasm middleware on this machine.
fn reference_group(backend: &Backend) -> Group {
    let wasm = test_guest("reference").unwrap();
    let dir = scratch_dir("bench-reference");
    std::fs::copy(
        workspace_root().join("dist/oidc-guard/.traefik.yml"),
        dir.join(".traefik.yml"),
    )
    .unwrap();
    std::fs::copy(wasm, dir.join("plugin.wasm")).unwrap();
    let mut cfg = TraefikConfig::default()
        .middleware("reference", json!({}))
        .middleware("reference-names", json!({"listNames": true}))
        .route("nomw", "PathPrefix(`/nomw`)", &[], &backend.url())
        .route("ref", "PathPrefix(`/ref/`)", &["reference"], &backend.url())
        .route(
            "refnames",
            "PathPrefix(`/refnames/`)",
            &["reference-names"],
            &backend.url(),
        );
    cfg.plugin_dir = Some(dir);
    let t = cfg.start();
    t.wait_route("/nomw/ready");
    t.wait_route("/ref/ready");
    t.wait_route("/refnames/ready");
    Group {
        title: "reference: a near-empty http-wasm guest, default GOMAXPROCS".into(),
        traefik: t,
        scenarios: vec![
            Scenario {
                name: "baseline-ref",
                what: "no middleware",
                path: "/nomw/x".into(),
                headers: vec![],
                expect: 200,
            },
            Scenario {
                name: "reference",
                what: "near-empty guest: remove one header, read Authorization, set one",
                path: "/ref/x".into(),
                headers: vec![h("Authorization", "Bearer x")],
                expect: 200,
            },
            Scenario {
                name: "reference-names",
                what: "the same, listing the header names first",
                path: "/refnames/x".into(),
                headers: vec![h("Authorization", "Bearer x")],
                expect: 200,
            },
        ],
    }
}

fn memory_group(
    backend: &Backend,
    idp: &Idp,
    port: u16,
    logins: &mut Vec<Duration>,
    plugin_b: Option<&std::path::Path>,
) -> Group {
    // The B side's names: leaked, once per run.
    let name = |n: &'static str| -> &'static str {
        match plugin_b {
            Some(_) => Box::leak(format!("{n}-b").into_boxed_str()),
            None => n,
        }
    };
    let key = SigningKey::es256("bench");
    let mut cfg = TraefikConfig::default()
        .middleware("guard", memory_config(&key))
        .middleware("sso", login_config(idp))
        .route("nomw", "PathPrefix(`/nomw`)", &[], &backend.url())
        .route("guarded", "PathPrefix(`/g/`)", &["guard"], &backend.url())
        .route("sso", "PathPrefix(`/`)", &["sso"], &backend.url())
        .priority(1);
    cfg.port = Some(port);
    cfg.plugin_dir = plugin_b.map(|p| p.to_path_buf());
    let t = cfg.start();
    t.wait_route("/nomw/ready");
    t.wait_route("/g/public/ready");
    let token = bearer_token(&key, "bench-1");
    let mut cookie = String::new();
    for _ in 0..5 {
        let (c, took) = login(&t, "/s/x");
        logins.push(took);
        cookie = c;
    }
    Group {
        title: match plugin_b {
            Some(p) => format!(
                "memory mode, default GOMAXPROCS, plugin B ({})",
                p.display()
            ),
            None => "memory mode, default GOMAXPROCS".into(),
        },
        traefik: t,
        scenarios: vec![
            Scenario {
                name: name("baseline"),
                what: "no middleware",
                path: "/nomw/x".into(),
                headers: vec![],
                expect: 200,
            },
            Scenario {
                name: name("excluded"),
                what: "plugin, excluded path (pass-through)",
                path: "/g/public/x".into(),
                headers: vec![],
                expect: 200,
            },
            Scenario {
                name: name("refused"),
                what: "plugin, no credential (401)",
                path: "/g/x".into(),
                headers: vec![h("Accept", "application/json")],
                expect: 401,
            },
            Scenario {
                name: name("bearer"),
                what: "plugin, cached valid bearer token (ES256)",
                path: "/g/x".into(),
                headers: vec![h("Authorization", &format!("Bearer {token}"))],
                expect: 200,
            },
            Scenario {
                name: name("session"),
                what: "plugin, valid session cookie (browser login, cookie storage)",
                path: "/s/x".into(),
                headers: vec![h("Cookie", &cookie)],
                expect: 200,
            },
        ],
    }
}

fn redis_group(
    backend: &Backend,
    redis: &RedisServer,
    idp: &Idp,
    port: u16,
    threads: u32,
) -> Group {
    let key = SigningKey::es256("bench");
    let redis_cfg =
        |mode: &str| json!({"address": format!("127.0.0.1:{}", redis.port), "cacheMode": mode});
    let mut hybrid = memory_config(&key);
    hybrid["redis"] = redis_cfg("hybrid");
    let mut onetime = memory_config(&key);
    onetime["redis"] = redis_cfg("hybrid");
    onetime["bearer"]["oneTimeTokens"] = json!(true);
    let mut sso_hybrid = login_config(idp);
    sso_hybrid["redis"] = redis_cfg("hybrid");
    let mut sso_redis = login_config(idp);
    sso_redis["redis"] = redis_cfg("redis");
    sso_redis["callbackURL"] = json!("/r/oauth2/callback");
    sso_redis["cookiePrefix"] = json!("_oidc_guard_r_");
    let mut cfg = TraefikConfig::default()
        .middleware("guard", hybrid)
        .middleware("onetime", onetime)
        .middleware("sso", sso_hybrid)
        .middleware("sso-redis", sso_redis)
        .route("nomw", "PathPrefix(`/nomw`)", &[], &backend.url())
        .route("guarded", "PathPrefix(`/g/`)", &["guard"], &backend.url())
        .route("onetime", "PathPrefix(`/o/`)", &["onetime"], &backend.url())
        .route(
            "sso-redis",
            "PathPrefix(`/r/`)",
            &["sso-redis"],
            &backend.url(),
        )
        .route("sso", "PathPrefix(`/`)", &["sso"], &backend.url())
        .priority(1)
        .gomaxprocs(1);
    cfg.port = Some(port);
    let t = cfg.start();
    t.wait_route("/nomw/ready");
    t.wait_route("/g/public/ready");
    let token = bearer_token(&key, "bench-2");
    let (cookie, _) = login(&t, "/s/x");
    let (redis_cookie, _) = login(&t, "/r/x");
    // One-time tokens: a fresh token per request, handed out by a wrk script.
    let script = write_onetime_script(&key, ONETIME_PER_RUN * 4, threads);
    Group {
        title: "Redis on 127.0.0.1, GOMAXPROCS=1".into(),
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
                what: "hybrid, cached valid bearer token",
                path: "/g/x".into(),
                headers: vec![h("Authorization", &format!("Bearer {token}"))],
                expect: 200,
            },
            Scenario {
                name: "hybrid-session",
                what: "hybrid, valid session cookie (revocation read from L1, L2 every 5 s)",
                path: "/s/x".into(),
                headers: vec![h("Cookie", &cookie)],
                expect: 200,
            },
            Scenario {
                name: "redis-session",
                what: "redis mode, valid session cookie (one Redis round trip per request)",
                path: "/r/x".into(),
                headers: vec![h("Cookie", &redis_cookie)],
                expect: 200,
            },
            Scenario {
                name: "onetime",
                what: "hybrid, one-time ES256 token (signature check + one Redis round trip each)",
                path: "/o/x".into(),
                headers: vec![h("X-Wrk-Script", &script)],
                expect: 200,
            },
        ],
    }
}

/// Tokens reserved for one wrk run of the one-time scenario (each run starts at its own offset,
/// `ONETIME_OFFSET`, so no run replays another's tokens).
const ONETIME_PER_RUN: usize = 40_000;

/// A wrk Lua script that sends each one-time token once: thread `i` of `threads` takes every
/// `threads`-th token from `ONETIME_OFFSET` on (a token seen twice shows as non-2xx).
fn write_onetime_script(key: &SigningKey, n: usize, threads: u32) -> String {
    let dir = oidc_guard_testhost::util::scratch_dir("bench-onetime");
    let tokens: Vec<String> = (0..n)
        .map(|i| bearer_token(key, &format!("ot-{}-{i}", now())))
        .collect();
    std::fs::write(dir.join("tokens.txt"), tokens.join("\n")).unwrap();
    let lua = format!(
        r#"local tokens = {{}}
for line in io.lines("{}") do tokens[#tokens + 1] = line end
local counter = 0
local threads = 0
local base = tonumber(os.getenv("ONETIME_OFFSET") or "0")
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  me = id
  step = {threads}
end
function request()
  local t = tokens[(base + counter * step + me) % #tokens + 1]
  counter = counter + 1
  return wrk.format("GET", nil, {{["Authorization"] = "Bearer " .. t}})
end
"#,
        dir.join("tokens.txt").display(),
        threads = threads
    );
    let path = dir.join("onetime.lua");
    std::fs::write(&path, lua).unwrap();
    path.display().to_string()
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
    if s.headers.iter().any(|(k, _)| k == "X-Wrk-Script") {
        return;
    }
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

/// Each repetition's scenario throughput over its pair's in the same repetition: the two ran
/// back to back, so a host that is busier in one repetition moves both.
fn paired_ratios(runs: &[WrkRun], baseline: &[WrkRun]) -> Vec<f64> {
    runs.iter()
        .zip(baseline)
        .filter(|(_, b)| b.rps > 0.0)
        .map(|(r, b)| r.rps / b.rps)
        .collect()
}

/// `median [min–max]` of a few ratios.
fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.3} [{min:.3}–{max:.3}]", median(v))
}

/// Traefik's CPU profile over the next `secs` seconds, into `file`.
fn capture_profile(port: u16, secs: u32, file: &std::path::Path) {
    let url = format!("http://127.0.0.1:{port}/debug/pprof/profile?seconds={secs}");
    let out = Command::new("curl")
        .args(["-sS", "--create-dirs", "-o"])
        .arg(file)
        .arg(&url)
        .status();
    if !matches!(out, Ok(st) if st.success()) {
        eprintln!("warning: no profile from {url}");
    }
}

/// The interleaved runs (see the module doc): each scenario with a no-middleware pair, once.
fn interleaved(a: &Args, groups: &[Group]) {
    let dir = scratch_dir("bench-interleave");
    println!(
        "## Interleaved: one wrk -t{} -c{} -d{}s load per scenario, alternating {} ms phases of the same request without middleware (A) and through the scenario's route (B)",
        a.threads, a.conns, a.interleave, a.phase_ms
    );
    println!("| group | scenario | B phases | **B/A per B phase**: median [quartiles] | B/A, total over total | non-2xx/3xx |");
    println!("|---|---|---:|---:|---:|---:|");
    for g in groups {
        let Some(base) = g.scenarios.iter().find(|s| s.name.starts_with("baseline")) else {
            continue;
        };
        // The no-middleware request against itself first: the method's own bias and spread.
        for s in &g.scenarios {
            let scripted = s.headers.iter().any(|(k, _)| k == "X-Wrk-Script");
            if scripted || (s.name.starts_with("baseline") && !a.calibrate) {
                continue;
            }
            let profile = g.traefik.pprof_port.map(|port| {
                let file =
                    workspace_root().join(format!("target/pprof/{}-interleaved.pb.gz", s.name));
                let secs = a.interleave.saturating_sub(2).max(1);
                std::thread::spawn(move || capture_profile(port, secs, &file))
            });
            let r = wrk::run_interleaved(
                &g.traefik.url(),
                (&base.path, &s.path),
                (a.threads, a.conns, a.interleave),
                a.phase_ms,
                &s.headers,
                &dir,
            );
            if let Some(h) = profile {
                let _ = h.join();
            }
            let q = r.ratios();
            let quartiles = quartiles(&q);
            let overall = r.overall();
            eprintln!(
                "  interleaved {:<14} {} B phases, median {:.3}, total over total {:.3}",
                s.name,
                q.len(),
                quartiles.1,
                overall
            );
            println!(
                "| {} | {} | {} | {:.3} [{:.3}–{:.3}] | {:.3} | {} |",
                g.title,
                s.name,
                q.len(),
                quartiles.1,
                quartiles.0,
                quartiles.2,
                overall,
                r.non2xx
            );
        }
    }
    println!();
}

/// First quartile, median and third quartile (by the nearest rank; zeros when empty).
fn quartiles(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
    if s.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (at(0.25), median(&s), at(0.75))
}

fn main() {
    let a = args();
    let backend = Backend::start();
    let redis = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let plugin_b = std::env::var_os("OIDC_GUARD_BENCH_B").map(std::path::PathBuf::from);
    let client = |p: u16| {
        Client::new(
            "bench",
            "bench-secret",
            &format!("http://127.0.0.1:{p}/oauth2/callback"),
        )
        .redirect_uri(&format!("http://127.0.0.1:{p}/r/oauth2/callback"))
    };
    let idp = Idp::start(
        IdpOptions::default()
            .client(
                client(p1)
                    .redirect_uri(&format!("http://127.0.0.1:{p2}/oauth2/callback"))
                    .redirect_uri(&format!("http://127.0.0.1:{p2}/r/oauth2/callback"))
                    .redirect_uri(&format!("http://127.0.0.1:{p3}/oauth2/callback")),
            )
            .access_token_ttl(3600)
            .id_token_ttl(3600),
    )
    .unwrap();
    let mut logins = Vec::new();
    let mut groups = vec![
        reference_group(&backend),
        memory_group(&backend, &idp, p1, &mut logins, None),
        redis_group(&backend, &redis, &idp, p2, a.threads),
    ];
    if let Some(b) = &plugin_b {
        let mut b_logins = Vec::new();
        groups.insert(2, memory_group(&backend, &idp, p3, &mut b_logins, Some(b)));
    }
    for g in &mut groups {
        if let Some(only) = &a.only {
            g.scenarios.retain(|s| {
                let a_name = s.name.strip_suffix("-b").unwrap_or(s.name);
                only.iter().any(|o| o == a_name) || s.name.starts_with("baseline")
            });
        }
    }
    let mut results: BTreeMap<&'static str, Vec<WrkRun>> = BTreeMap::new();
    let mut cpu_per_req: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    // Per scenario, the same request (same headers) to the group's no-middleware route, run
    // next to it in every repetition: the token or cookie a request carries costs Traefik and
    // the echo backend (which echoes every header into its body) the same with or without the
    // plugin, and is not the plugin's cost.
    let mut same: BTreeMap<&'static str, Vec<WrkRun>> = BTreeMap::new();
    let mut same_cpu: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    println!(
        "wrk -t{} -c{} -d{}s after an unmeasured {}-s warm-up, {} repetitions per scenario, alternating order",
        a.threads, a.conns, a.secs, a.warmup, a.reps
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
            let base_path = g
                .scenarios
                .iter()
                .find(|s| s.name.starts_with("baseline"))
                .map(|s| s.path.clone());
            for s in order {
                let script = s
                    .headers
                    .iter()
                    .find(|(k, _)| k == "X-Wrk-Script")
                    .map(|(_, v)| v.as_str());
                let pair = match &base_path {
                    Some(p) if !s.name.starts_with("baseline") && script.is_none() => {
                        Some(p.as_str())
                    }
                    _ => None,
                };
                // The pair runs before the scenario in even repetitions and after it in odd
                // ones, so that neither side always runs on a warmer or busier host.
                let mut runs = vec![(s.path.as_str(), false)];
                if let Some(p) = pair {
                    if rep % 2 == 0 {
                        runs.insert(0, (p, true));
                    } else {
                        runs.push((p, true));
                    }
                }
                for (path, is_pair) in runs {
                    let url = format!("{}{}", g.traefik.url(), path);
                    // One-time tokens are spent by any request: no warm-up for a script.
                    if a.warmup > 0 && script.is_none() {
                        wrk::run(&url, a.threads, a.conns, a.warmup, &s.headers);
                    }
                    let profile = g.traefik.pprof_port.map(|port| {
                        let file = workspace_root().join(format!(
                            "target/pprof/{}-{}{rep}.pb.gz",
                            s.name,
                            if is_pair { "nomw-" } else { "" }
                        ));
                        let secs = a.secs.saturating_sub(1).max(1);
                        std::thread::spawn(move || capture_profile(port, secs, &file))
                    });
                    let before = cpu_us(g.traefik.pid());
                    let r = if let Some(script) = script {
                        let offset = (rep * ONETIME_PER_RUN).to_string();
                        wrk::run_script(
                            &url,
                            a.threads,
                            a.conns,
                            a.secs,
                            script,
                            &[("ONETIME_OFFSET", &offset)],
                        )
                    } else {
                        wrk::run(&url, a.threads, a.conns, a.secs, &s.headers)
                    };
                    let cpu = (cpu_us(g.traefik.pid()) - before) as f64 / r.requests.max(1) as f64;
                    if let Some(h) = profile {
                        let _ = h.join();
                    }
                    eprintln!(
                        "  rep {rep} {:<14} {:<9} {:>10.0} req/s  p50 {:.2} ms  p99 {:.2} ms  Traefik CPU {:.0} us/req  non-2xx {}",
                        s.name,
                        if is_pair { "no mw" } else { "" },
                        r.rps,
                        r.p50_ms,
                        r.p99_ms,
                        cpu,
                        r.non2xx
                    );
                    if is_pair {
                        same.entry(s.name).or_default().push(r);
                        same_cpu.entry(s.name).or_default().push(cpu);
                    } else {
                        results.entry(s.name).or_default().push(r);
                        cpu_per_req.entry(s.name).or_default().push(cpu);
                    }
                }
            }
        }
    }
    println!();
    for g in &groups {
        println!("## {}", g.title);
        println!("| scenario | what | req/s (median) | p50 ms | p99 ms | ratio to no middleware | **ratio to the same request without middleware**: median of the paired runs [min–max] | Traefik CPU µs/req | same request without middleware | non-2xx/3xx |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let base_name = g
            .scenarios
            .iter()
            .find(|s| s.name.starts_with("baseline"))
            .map(|s| s.name);
        let base = base_name
            .and_then(|n| results.get(n))
            .map(|v| median(&v.iter().map(|r| r.rps).collect::<Vec<_>>()))
            .unwrap_or(0.0);
        for s in &g.scenarios {
            let Some(v) = results.get(s.name) else {
                continue;
            };
            let cpu = cpu_per_req.get(s.name).map(|v| median(v)).unwrap_or(0.0);
            let rps = median(&v.iter().map(|r| r.rps).collect::<Vec<_>>());
            let p50 = median(&v.iter().map(|r| r.p50_ms).collect::<Vec<_>>());
            let p99 = median(&v.iter().map(|r| r.p99_ms).collect::<Vec<_>>());
            let non2xx: u64 = v.iter().map(|r| r.non2xx).sum();
            let ratio = if base > 0.0 { rps / base } else { 0.0 };
            let paired = same
                .get(s.name)
                .map(|b| spread(&paired_ratios(v, b)))
                .unwrap_or_else(|| "–".into());
            let pair_cpu = same_cpu
                .get(s.name)
                .map(|c| format!("{:.0}", median(c)))
                .unwrap_or_else(|| "–".into());
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.3} | {} | {:.0} | {} | {} |",
                s.name, s.what, rps, p50, p99, ratio, paired, cpu, pair_cpu, non2xx
            );
        }
        println!();
    }
    if a.interleave > 0 {
        interleaved(&a, &groups);
    }
    let ms: Vec<f64> = logins.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    println!(
        "Login round trip through Traefik (protected page → provider → callback → page), memory mode, {} logins: median {:.1} ms",
        ms.len(),
        median(&ms)
    );
}
