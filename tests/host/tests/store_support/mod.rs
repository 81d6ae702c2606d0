//! Shared by `store_wasm.rs`, `redis_wasm.rs` and `redis_traefik.rs`: the store probe in both
//! artifacts, a client for it, probe configurations, and a TCP proxy that counts request/reply
//! turns (round trips) between a guest and Redis.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oidc_guard_testhost::wasm::guests::{self, workspace_root};
use oidc_guard_testhost::wasm::{Middleware, Request};
use serde_json::{json, Value};

/// Which build of the store probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// The bridge artifact's code: the L2 is the host bridge.
    Bridge,
    /// The Traefik artifact's code: the L2 is the in-guest Redis client over WasmEdge sockets.
    Traefik,
}

/// The `.wasm` of the store probe in `flavour`.
pub fn probe_wasm(flavour: Flavour) -> PathBuf {
    match flavour {
        Flavour::Bridge => guests::test_guest("store-probe").unwrap(),
        Flavour::Traefik => traefik_probe(),
    }
}

/// Builds `oidc-guard-test-guests-traefik` (once per process) into the same target directory
/// as the other guests and copies it to `target/host-wasm/out/store-probe-traefik.wasm`.
fn traefik_probe() -> PathBuf {
    static BUILT: OnceLock<Mutex<Option<Result<PathBuf, String>>>> = OnceLock::new();
    let cell = BUILT.get_or_init(|| Mutex::new(None));
    let mut g = cell.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = g.as_ref() {
        return r.clone().unwrap_or_else(|e| panic!("{e}"));
    }
    let out_dir = workspace_root().join("target/host-wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let r = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .args(["-p", "oidc-guard-test-guests-traefik"])
        .env("CARGO_TARGET_DIR", &out_dir)
        .env("CC_wasm32_wasip1", "clang")
        .env("AR_wasm32_wasip1", "llvm-ar-14")
        .output()
        .map_err(|e| format!("running cargo: {e}"))
        .and_then(|o| {
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "building store-probe-traefik failed:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                ))
            }
        })
        .and_then(|()| {
            let src = out_dir.join("wasm32-wasip1/release/store-probe-traefik.wasm");
            let dst_dir = out_dir.join("out");
            std::fs::create_dir_all(&dst_dir).map_err(|e| e.to_string())?;
            let dst = dst_dir.join("store-probe-traefik.wasm");
            // Copy then rename: another test process may be reading the previous copy.
            let tmp = dst_dir.join(format!(".store-probe-traefik.{}.tmp", std::process::id()));
            std::fs::copy(&src, &tmp).map_err(|e| format!("copy {}: {e}", src.display()))?;
            std::fs::rename(&tmp, &dst).map_err(|e| format!("rename to {}: {e}", dst.display()))?;
            Ok(dst)
        });
    *g = Some(r.clone());
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A probe configuration: browser login keys (so the store seals with AES-256-GCM and accepts
/// confidential values; discovery is lazy and never triggered), health and metrics on `/health`
/// and `/metrics`, an `instanceName` that isolates the test's keys, plus `extra` merged in.
pub fn probe_config(instance: &str, extra: Value) -> Value {
    let mut base = json!({
        "providerURL": "http://127.0.0.1:9/idp",
        "clientID": "store-probe",
        "clientSecret": "store-probe-client-secret",
        "sessionEncryptionKey": "store-probe-session-key-0123456789abcdef",
        "instanceName": instance,
        "health": {"path": "/health", "metricsPath": "/metrics"},
    });
    merge(&mut base, extra);
    base
}

/// Merges `extra` into `base`, objects recursively.
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, e) => *b = e,
    }
}

/// A unique name for keys and instances.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        now_ms() % 1_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Wall clock, ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A probe middleware and a client for it.
#[derive(Clone)]
pub struct Probe {
    /// The middleware.
    pub mw: Middleware,
}

/// One answer of the probe.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The JSON body (`null` when the body is not JSON).
    pub json: Value,
    /// The raw body.
    pub text: String,
    /// Wall time of the exchange in the host.
    pub took: Duration,
    /// The instance that served it.
    pub instance: u64,
}

impl Answer {
    /// `json[name]` as a string.
    pub fn s(&self, name: &str) -> String {
        self.json[name].as_str().unwrap_or_default().to_string()
    }

    /// `json[name]` as a number; panics when it is not one.
    pub fn n(&self, name: &str) -> u64 {
        self.json[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no number {name} in {}", self.text))
    }
}

impl Probe {
    /// Wraps a middleware.
    pub fn new(mw: Middleware) -> Self {
        Self { mw }
    }

    /// Sends `req`; panics on a trap (the guest must never trap).
    pub fn send(&self, req: Request) -> Answer {
        let uri = req.uri.clone();
        let ex = self.mw.send(req);
        assert!(ex.trap.is_none(), "{uri}: the guest trapped: {:?}", ex.trap);
        let text = ex.text();
        Answer {
            status: ex.status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            took: ex.timing.total,
            instance: ex.instance,
        }
    }

    /// `GET path`.
    pub fn call(&self, path: &str) -> Answer {
        self.send(Request::get(path))
    }

    /// `GET /store/get`.
    pub fn get(&self, ns: &str, key: &str) -> Answer {
        self.call(&format!("/store/get?ns={ns}&key={key}"))
    }

    /// `GET /store/set` with the value in the query.
    pub fn set(&self, ns: &str, key: &str, value: &str, ttl_ms: u64, class: &str) -> Answer {
        self.call(&format!(
            "/store/set?ns={ns}&key={key}&value={value}&ttl={ttl_ms}&class={class}"
        ))
    }

    /// `POST /store/set` with the value as the body.
    pub fn set_body(&self, ns: &str, key: &str, value: &[u8], ttl_ms: u64, class: &str) -> Answer {
        self.send(Request::post(
            &format!("/store/set?ns={ns}&key={key}&ttl={ttl_ms}&class={class}"),
            value.to_vec(),
        ))
    }

    /// `GET /store/setnx`.
    pub fn setnx(&self, ns: &str, key: &str, ttl_ms: u64, class: &str) -> Answer {
        self.call(&format!(
            "/store/setnx?ns={ns}&key={key}&ttl={ttl_ms}&class={class}"
        ))
    }

    /// `GET /store/del`.
    pub fn del(&self, ns: &str, key: &str) -> Answer {
        self.call(&format!("/store/del?ns={ns}&key={key}"))
    }

    /// The health document (through the plugin's pipeline).
    pub fn health(&self) -> Value {
        let a = self.call("/health");
        assert_eq!(a.status, 200, "health: {}", a.text);
        a.json
    }

    /// The Prometheus text (through the plugin's pipeline).
    pub fn metrics(&self) -> String {
        let a = self.call("/metrics");
        assert_eq!(a.status, 200, "metrics: {}", a.text);
        a.text
    }

    /// The value of metric `name` (no labels).
    pub fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics(), name)
    }

    /// The breaker state from the health document.
    pub fn breaker(&self) -> String {
        self.health()["cache"]["circuit_breaker"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Everything logged so far, one line per record.
    pub fn log_text(&self) -> String {
        self.mw
            .logs()
            .iter()
            .map(|r| format!("[{}] {}", r.level_name(), r.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The value of metric `name` (no labels) in a Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.parse().ok())?
        })
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}

/// Checks the health document's documented shape (traefikoidc's "Health Checks" fields plus
/// ours) and returns it.
pub fn assert_health_shape(h: &Value) {
    for p in [
        "/status",
        "/scope",
        "/cache/mode",
        "/cache/fallback",
        "/cache/redis/configured",
        "/cache/redis/connected",
        "/cache/redis/latency",
        "/cache/redis/latency_us",
        "/cache/redis/hits",
        "/cache/redis/misses",
        "/cache/redis/errors",
        "/cache/memory/entries",
        "/cache/memory/size",
        "/cache/memory/bytes",
        "/cache/memory/max_entries",
        "/cache/memory/max_bytes",
        "/cache/memory/hits",
        "/cache/memory/misses",
        "/cache/memory/evictions",
        "/cache/circuit_breaker/state",
        "/cache/circuit_breaker/failures",
        "/cache/circuit_breaker/opens",
        "/cache/single_use_refusals",
        "/cache/fallbacks",
    ] {
        assert!(h.pointer(p).is_some(), "health lacks {p}: {h}");
    }
    assert!(
        ["healthy", "degraded", "unhealthy", "unknown"]
            .contains(&h["status"].as_str().unwrap_or("")),
        "{h}"
    );
    assert!(
        ["closed", "open", "half-open"].contains(
            &h["cache"]["circuit_breaker"]["state"]
                .as_str()
                .unwrap_or("")
        ),
        "{h}"
    );
}

/// The metric names the Prometheus exposition must carry.
pub const METRICS: &[&str] = &[
    "oidc_guard_store_l1_hits_total",
    "oidc_guard_store_l1_misses_total",
    "oidc_guard_store_l1_evictions_total",
    "oidc_guard_store_l1_entries",
    "oidc_guard_store_l1_bytes",
    "oidc_guard_store_l2_hits_total",
    "oidc_guard_store_l2_misses_total",
    "oidc_guard_store_l2_errors_total",
    "oidc_guard_store_l2_up",
    "oidc_guard_store_breaker_state",
    "oidc_guard_store_breaker_opens_total",
    "oidc_guard_store_single_use_refusals_total",
    "oidc_guard_store_l2_latency_seconds_count",
];

/// Checks that every documented metric has a `# TYPE` line and a value.
pub fn assert_metrics_shape(text: &str) {
    for m in METRICS {
        let _ = metric(text, m);
        let base = m.trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {base} ")),
            "no TYPE for {base}:\n{text}"
        );
    }
}

/// A TCP proxy in front of a server that counts request/reply turns: a turn starts when the
/// client sends after the server last spoke (or first), so a pipeline written at once is one
/// turn however many commands it holds. Plain TCP only (a TLS handshake has turns of its own).
pub struct TurnProxy {
    /// The port the proxy listens on.
    pub port: u16,
    turns: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TurnProxy {
    /// Starts a proxy to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let turns = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, c, s) = (turns.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                // 0: nobody spoke yet, 1: client last, 2: server last.
                let last = Arc::new(Mutex::new(0u8));
                let pump = |mut from: TcpStream,
                            mut to: TcpStream,
                            me: u8,
                            last: Arc<Mutex<u8>>,
                            turns: Option<Arc<AtomicU64>>| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            {
                                let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                                if *l != me {
                                    if let Some(t) = &turns {
                                        t.fetch_add(1, Ordering::SeqCst);
                                    }
                                    *l = me;
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(client, server, 1, last.clone(), Some(t.clone()));
                pump(s2, c2, 2, last, None);
            }
        });
        Self {
            port,
            turns,
            connections,
            stop,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Request/reply turns so far.
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::SeqCst)
    }

    /// Connections so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TurnProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Total calls per command from `INFO commandstats` (`cmdstat_get:calls=3,...`), lower-case
/// command names.
pub fn commandstats(server: &oidc_guard_testhost::servers::RedisServer) -> Vec<(String, u64)> {
    let info = server.cli(&["INFO", "commandstats"]);
    info.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("cmdstat_")?;
            let (name, fields) = rest.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// The difference `after - before` of two commandstats, commands with a change only.
pub fn command_delta(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(n, a)| {
            let b = before.iter().find(|(m, _)| m == n).map_or(0, |(_, c)| *c);
            (a > &b).then(|| (n.clone(), a - b))
        })
        .collect()
}
