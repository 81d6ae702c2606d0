//! A guest that builds the store exactly as the plugin does — `Config::parse` on `get_config`,
//! `Parts::for_host`, `Guard::new` — and maps requests onto `guard.store`, so store behaviour is
//! tested through the same construction code, in wasm, for both artifacts:
//!
//! - built by `oidc-guard-test-guests` (feature `bridge` of the plugin) as `store-probe.wasm`:
//!   the L2 is the host bridge `oidc_guard_bridge_v1`;
//! - built by `oidc-guard-test-guests-traefik` (default features) as `store-probe-traefik.wasm`:
//!   the L2 is the in-guest Redis client over WasmEdge sockets.
//!
//! Endpoints (query parameters; a `POST` body is the value when `value` is absent):
//! - `/store/get|set|setnx|del|ping?ns=&key=&ttl=<ms>&class=cache|confidential|revocation|singleuse&value=`
//!   — `at=<epoch ms>` waits until then before the operation (so concurrent requests overlap and
//!   each runs in an instance of its own). 200 with a JSON result; **503** when the store refused
//!   (an error, or an undecidable set-if-absent); a trap would be the host's 500.
//! - `/info`: mode, identity, artifact.
//! - `/bench/micro?iters=N`: `oidc_guard::store::bench::run_all(N)` inside the guest.
//! - `/bench/ops?op=get|set|setnx&n=N&keys=K&reconnect=0|1&class=`: N real store operations timed
//!   one by one with the wall clock (p50/p90/p99); `reconnect=1` ends the request between
//!   operations, so each one opens its connection (and TLS handshake) again, as a request does.
//! - anything else goes through the plugin's own pipeline (`Guard::handle`), e.g. the configured
//!   `health.path` and `health.metricsPath`.
//!
//! After every store operation the store's request ends (connections closed) and its events are
//! logged exactly as the pipeline logs them.
#![allow(missing_docs)]
// `traefik-artifact` is a feature of the Traefik-flavoured crate only.
#![allow(unexpected_cfgs)]

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::cell::RefCell;
    use std::time::Duration;

    use oidc_guard::abi::handler::{host_config, host_log, WasmExchange};
    use oidc_guard::clock::SystemClock;
    use oidc_guard::config::{Config, Platform};
    use oidc_guard::http::LogLevel;
    use oidc_guard::plugin::{Guard, Parts};
    use oidc_guard::store::{Class, Namespace, SetOutcome, StoreError};
    use serde_json::{json, Value};

    /// Which artifact this probe was built as.
    const BRIDGE: bool = !cfg!(feature = "traefik-artifact");

    enum State {
        Ready(Box<Guard>),
        Refused(String),
    }

    thread_local! {
        static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    }

    fn build() -> State {
        let json = host_config();
        let env = |k: &str| std::env::var(k).ok();
        let read = |p: &str| std::fs::read(p);
        let platform = Platform {
            bridge_present: BRIDGE,
        };
        let cfg = match Config::parse(&json, &env, &read, platform) {
            Ok(c) => c,
            Err(e) => {
                let m = format!("store-probe: configuration refused: {e}");
                host_log(LogLevel::Error, &m);
                return State::Refused(m);
            }
        };
        for w in &cfg.warnings {
            host_log(LogLevel::Warn, &format!("oidc-guard: {w}"));
        }
        let parts = match Parts::for_host(&cfg) {
            Ok(p) => p,
            Err(m) => {
                host_log(LogLevel::Error, &format!("store-probe: {m}"));
                return State::Refused(m);
            }
        };
        match Guard::new(cfg, parts) {
            Ok(g) => {
                host_log(
                    LogLevel::Info,
                    &format!(
                        "store-probe: ready (identity {}, store mode {}, bridge {BRIDGE})",
                        g.cfg.identity(),
                        g.store.mode().as_str()
                    ),
                );
                State::Ready(Box::new(g))
            }
            Err(m) => {
                host_log(LogLevel::Error, &format!("store-probe: {m}"));
                State::Refused(m)
            }
        }
    }

    fn take() -> Option<State> {
        STATE.with(|s| s.try_borrow_mut().ok().and_then(|mut g| g.take()))
    }

    fn put(st: State) {
        STATE.with(|s| {
            if let Ok(mut g) = s.try_borrow_mut() {
                *g = Some(st);
            }
        });
    }

    pub fn start() {
        put(build());
    }

    fn hex(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }

    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match (
                b[i],
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                (b'+', _, _) => {
                    out.push(b' ');
                    i += 1;
                }
                (c, _, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    struct Query(Vec<(String, String)>);

    impl Query {
        fn parse(q: &str) -> Self {
            Query(
                q.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (decode(k), decode(v))
                    })
                    .collect(),
            )
        }

        fn get(&self, name: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }

        fn num(&self, name: &str, default: u64) -> u64 {
            self.get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        }
    }

    fn namespace(name: &str) -> Namespace {
        match name {
            "sess" => Namespace::SESSION,
            "jti" => Namespace::JTI,
            "rev" => Namespace::REVOCATION,
            "lock" => Namespace::LOCK,
            "jwks" => Namespace::JWKS,
            "disc" => Namespace::DISCOVERY,
            "state" => Namespace::STATE,
            "dpop" => Namespace::DPOP,
            _ => Namespace::new("probe"),
        }
    }

    fn class(name: Option<&str>, default: Class) -> Class {
        match name {
            Some("cache") => Class::Cache,
            Some("confidential") => Class::Confidential,
            Some("revocation") => Class::Revocation,
            Some("singleuse") => Class::SingleUse,
            _ => default,
        }
    }

    fn outcome(o: SetOutcome) -> &'static str {
        match o {
            SetOutcome::Won => "won",
            SetOutcome::AlreadyUsed => "already-used",
            SetOutcome::Unavailable => "unavailable",
        }
    }

    fn err(e: &StoreError) -> (u16, Value) {
        (
            503,
            json!({"ok": false, "err": e.to_string(), "debug": format!("{e:?}")}),
        )
    }

    /// One store operation; the status and the JSON reply.
    fn store_op(g: &mut Guard, op: &str, q: &Query, body: &[u8]) -> (u16, Value) {
        let ns = namespace(q.get("ns").unwrap_or("probe"));
        let key = q.get("key").unwrap_or("k").to_string();
        let ttl = Duration::from_millis(q.num("ttl", 60_000));
        let value: Vec<u8> = match q.get("value") {
            Some(v) => v.as_bytes().to_vec(),
            None => body.to_vec(),
        };
        match op {
            "get" => match g.store.get(ns, &key) {
                Ok(Some(v)) => (
                    200,
                    json!({"ok": true, "found": true, "len": v.len(),
                        "value": String::from_utf8_lossy(&v)}),
                ),
                Ok(None) => (200, json!({"ok": true, "found": false})),
                Err(e) => err(&e),
            },
            "set" => {
                let c = class(q.get("class"), Class::Cache);
                match g.store.set(ns, &key, &value, ttl, c) {
                    Ok(()) => (200, json!({"ok": true})),
                    Err(e) => err(&e),
                }
            }
            "setnx" => {
                let c = class(q.get("class"), Class::SingleUse);
                match g.store.set_if_absent(ns, &key, ttl, c) {
                    Ok(o) => {
                        let status = if o == SetOutcome::Unavailable {
                            503
                        } else {
                            200
                        };
                        (status, json!({"ok": status == 200, "outcome": outcome(o)}))
                    }
                    Err(e) => err(&e),
                }
            }
            "del" => match g.store.delete(ns, &key) {
                Ok(()) => (200, json!({"ok": true})),
                Err(e) => err(&e),
            },
            "ping" => match g.store.ping() {
                Ok(d) => (200, json!({"ok": true, "rttUs": d.as_micros() as u64})),
                Err(e) => err(&e),
            },
            _ => (404, json!({"ok": false, "err": "unknown store operation"})),
        }
    }

    fn percentile(sorted: &[u64], p: usize) -> u64 {
        if sorted.is_empty() {
            return 0;
        }
        let i = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len()) - 1;
        sorted.get(i).copied().unwrap_or(0)
    }

    /// `n` real store operations, each timed with the wall clock (µs).
    fn bench_ops(g: &mut Guard, q: &Query) -> Value {
        let op = q.get("op").unwrap_or("get").to_string();
        let n = q.num("n", 200).max(1);
        let keys = q.num("keys", 1).max(1);
        let reconnect = q.num("reconnect", 0) == 1;
        let c = class(
            q.get("class"),
            if op == "setnx" {
                Class::SingleUse
            } else {
                Class::Cache
            },
        );
        let ns = Namespace::new("bench");
        let prefix = q.get("prefix").unwrap_or("b").to_string();
        let ttl = Duration::from_millis(q.num("ttl", 600_000));
        let value = vec![b'v'; q.num("size", 256) as usize];
        if op == "get" {
            for k in 0..keys {
                let _ = g.store.set(ns, &format!("{prefix}{k}"), &value, ttl, c);
            }
            g.store.end_request();
        }
        let clock = SystemClock;
        let mut lat = Vec::with_capacity(n as usize);
        let mut errors = 0u64;
        let mut found = 0u64;
        let run = clock.now_us();
        for i in 0..n {
            let key = if op == "setnx" {
                format!("{prefix}{}-{i}", run)
            } else {
                format!("{prefix}{}", i % keys)
            };
            let t0 = clock.now_us();
            let ok = match op.as_str() {
                "get" => match g.store.get(ns, &key) {
                    Ok(Some(_)) => {
                        found += 1;
                        true
                    }
                    Ok(None) => true,
                    Err(_) => false,
                },
                "set" => g.store.set(ns, &key, &value, ttl, c).is_ok(),
                "setnx" => matches!(g.store.set_if_absent(ns, &key, ttl, c), Ok(SetOutcome::Won)),
                _ => false,
            };
            if reconnect {
                g.store.end_request();
            }
            lat.push(clock.now_us().saturating_sub(t0));
            if !ok {
                errors += 1;
            }
        }
        let total: u64 = lat.iter().sum();
        lat.sort_unstable();
        json!({"op": op, "n": n, "keys": keys, "reconnect": reconnect, "errors": errors,
            "found": found, "meanUs": total / n, "minUs": lat.first().copied().unwrap_or(0),
            "p50Us": percentile(&lat, 50), "p90Us": percentile(&lat, 90),
            "p99Us": percentile(&lat, 99), "maxUs": lat.last().copied().unwrap_or(0)})
    }

    fn reply(ex: &WasmExchange<'_>, status: u16, v: &Value) {
        ex.send(
            status,
            &[("Content-Type".to_string(), "application/json".to_string())],
            v.to_string().as_bytes(),
        );
    }

    /// Ends the store's request and logs its events as the pipeline does.
    fn finish(g: &mut Guard) {
        g.store.end_request();
        for ev in g.store.drain_events() {
            host_log(LogLevel::Warn, &format!("oidc-guard: store: {ev}"));
        }
    }

    fn serve(g: &mut Guard, ex: &WasmExchange<'_>) -> bool {
        let uri = ex.uri();
        let (path, query) = uri.split_once('?').unwrap_or((uri.as_str(), ""));
        let q = Query::parse(query);
        if let Some(at) = q.get("at").and_then(|a| a.parse::<u64>().ok()) {
            let now = SystemClock.now_ms();
            if at > now {
                std::thread::sleep(Duration::from_millis((at - now).min(10_000)));
            }
        }
        if let Some(op) = path.strip_prefix("/store/") {
            let body = ex.read_body(1 << 20).unwrap_or_default();
            let t0 = SystemClock.now_us();
            let (status, mut v) = store_op(g, op, &q, &body);
            let took = SystemClock.now_us().saturating_sub(t0);
            let ns = namespace(q.get("ns").unwrap_or("probe"));
            v["fullKey"] = json!(g.store.full_key(ns, q.get("key").unwrap_or("k")));
            v["tookUs"] = json!(took);
            let snap = g.store.snapshot();
            v["breaker"] = json!(snap.breaker.state.as_str());
            // Every L2 attempt this instance made: answered (hit or miss) or failed.
            v["l2Attempts"] = json!(snap.l2.hits + snap.l2.misses + snap.l2.errors);
            finish(g);
            reply(ex, status, &v);
            return false;
        }
        match path {
            "/info" => {
                let s = g.store.snapshot();
                let v = json!({"ok": true, "mode": s.mode, "fallback": s.fallback,
                    "identity": g.cfg.identity(), "bridge": BRIDGE,
                    "l1MaxEntries": s.l1_max_entries, "l1MaxBytes": s.l1_max_bytes});
                reply(ex, 200, &v);
                false
            }
            "/bench/micro" => {
                let iters = q.num("iters", 100_000);
                let r: Vec<Value> = oidc_guard::store::bench::run_all(iters)
                    .into_iter()
                    .map(|b| json!({"name": b.name, "iterations": b.iterations, "nsPerOp": b.ns_per_op}))
                    .collect();
                reply(ex, 200, &json!({"ok": true, "results": r}));
                false
            }
            "/bench/ops" => {
                let v = bench_ops(g, &q);
                finish(g);
                reply(ex, 200, &v);
                false
            }
            // The plugin's own pipeline: health, metrics, and everything else.
            _ => g.handle(ex),
        }
    }

    pub fn handle_request(ex: &WasmExchange<'_>) -> bool {
        let st = take().unwrap_or_else(build);
        let (next, st) = match st {
            State::Ready(mut g) => (serve(&mut g, ex), State::Ready(g)),
            State::Refused(m) => {
                reply(ex, 500, &json!({"ok": false, "err": m}));
                (false, State::Refused(m))
            }
        };
        put(st);
        next
    }
}

// The plugin's own exports, around the probe's handler.
#[cfg(target_arch = "wasm32")]
oidc_guard::http_wasm_exports!(guest::handle_request);

fn main() {
    #[cfg(target_arch = "wasm32")]
    {
        guest::start();
    }
}
