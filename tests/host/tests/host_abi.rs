//! The wasmtime test host against real `.wasm` files: the http-wasm handler ABI as Traefik
//! implements it, instance pooling, the host bridge (memory and a real redis-server), and the
//! WasmEdge socket extension over real TCP through the guest's `WasiDialer`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use oidc_guard_testhost::servers::{Flavor, RedisServer, ServerConfig};
use oidc_guard_testhost::wasm::{
    guests, Bridge, Fault, Middleware, Request, SocketAbi, UpstreamResponse,
};
use serde_json::{json, Value};

fn probe() -> PathBuf {
    guests::test_guest("probe").unwrap()
}

fn bridge_probe() -> PathBuf {
    guests::test_guest("bridge-probe").unwrap()
}

fn sock_probe() -> PathBuf {
    guests::test_guest("sock-probe").unwrap()
}

fn probe_mw() -> Middleware {
    Middleware::builder(probe())
        .config(json!({"k": "v<&>"}))
        .build()
        .unwrap()
}

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

// ---------------------------------------------------------------------------------------------
// http_handler ABI
// ---------------------------------------------------------------------------------------------

#[test]
fn the_guest_sees_the_request_as_traefik_presents_it() {
    let mw = probe_mw();
    let ex = mw.send(
        Request::post("/echo?chunk=4&x=%2F", "0123456789")
            .header("Host", "app.example:8443")
            .header("X-Multi", "a")
            .header("x-multi", "b")
            .header("Accept", "application/json")
            .source("192.0.2.7:41000"),
    );
    assert_eq!(ex.status, 200, "{}", ex.text());
    let v = ex.json().unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/echo?chunk=4&x=%2F");
    assert_eq!(v["proto"], "HTTP/1.1");
    assert_eq!(v["source"], "192.0.2.7:41000");
    // Go marshals the config with sorted keys and HTML-escaped <, >, &.
    assert_eq!(v["config"], r#"{"k":"v\u003c\u0026\u003e"}"#);
    // Names lower-cased and sorted, `host` from r.Host.
    assert_eq!(v["names"], json!(["accept", "host", "x-multi"]));
    assert_eq!(v["values"]["x-multi"], json!(["a", "b"]));
    assert_eq!(v["values"]["host"], json!(["app.example:8443"]));
    // A too-small buffer gets nothing; the full length comes back.
    assert_eq!(v["smallBufferUntouched"], true);
    assert_eq!(v["uriLen"], "/echo?chunk=4&x=%2F".len());
    assert_eq!(v["namesCount"], 3);
    assert_eq!(
        v["namesLen"],
        "accept".len() + "host".len() + "x-multi".len() + 3
    );
    // The read loop fills the buffer until EOF, which arrives with the last bytes.
    assert_eq!(v["body"], "0123456789");
    assert_eq!(v["reads"], json!([[4, false], [4, false], [2, true]]));
    assert_eq!(v["logEnabled"], 1);

    let v = mw
        .send(Request::post("/echo?chunk=5", "0123456789"))
        .json()
        .unwrap();
    assert_eq!(v["reads"], json!([[5, false], [5, true]]));
    let v = mw.send(Request::get("/echo")).json().unwrap();
    assert_eq!(v["reads"], json!([[0, true]]));
    // Go's EscapedPath re-escapes what a raw path may not contain.
    let v = mw.send(Request::get("/echo/a|b?q")).json().unwrap();
    assert_eq!(v["uri"], "/echo/a%7Cb?q");
    assert!(mw.logged(0, "probe started"));
}

#[test]
fn headers_set_after_the_status_are_not_sent() {
    let mw = probe_mw();
    let ex = mw.send(Request::get("/status-then-header"));
    assert_eq!(ex.status, 201);
    assert_eq!(ex.header("x-before"), Some("1"));
    assert_eq!(ex.header("x-after"), None, "headers: {:?}", ex.headers);
    assert_eq!(ex.text(), "done");
}

#[test]
fn a_trap_answers_500_with_the_error_and_the_instance_is_reused_as_it_was() {
    let mw = probe_mw();
    let ex = mw.send(Request::get("/trap"));
    assert_eq!(ex.status, 500);
    let trap = ex.trap.clone().unwrap();
    assert!(ex.text().contains("unreachable"), "body: {}", ex.text());
    assert!(ex.text().contains(&trap[..20.min(trap.len())]));
    // Headers set before the trap are in the map when handleErr writes the head.
    assert_eq!(ex.header("x-before"), Some("1"));
    // The same instance serves the next request, with the memory the trap left.
    let ex2 = mw.send(Request::get("/count"));
    assert_eq!(ex2.instance, ex.instance);
    assert_eq!(ex2.text(), "2");
    assert_eq!(mw.instances_created(), 1);

    // When the status was already sent, the 500 is superfluous: the client keeps 202 and gets
    // the error text as the body.
    let ex = mw.send(Request::get("/trap?status"));
    assert_eq!(ex.status, 202);
    assert!(ex.text().contains("unreachable"));
}

#[test]
fn start_failures_fail_the_build_like_traefik() {
    let err = Middleware::builder(probe())
        .config(json!({"start": "exit1"}))
        .build()
        .unwrap_err();
    assert!(format!("{err:#}").contains("exit_code(1)"), "{err:#}");
    let err = Middleware::builder(probe())
        .config(json!({"start": "trap"}))
        .build()
        .unwrap_err();
    assert!(format!("{err:#}").contains("unreachable"), "{err:#}");
    // exit(0) in _start: wazero hands back a closed module without an error; every request on
    // it fails.
    let mw = Middleware::builder(probe())
        .config(json!({"start": "exit0"}))
        .build()
        .unwrap();
    let ex = mw.send(Request::get("/count"));
    assert_eq!(ex.status, 500);
    assert!(ex.text().contains("exit_code(0)"));
}

#[test]
fn get_status_code_and_response_mutation_after_next_trap_without_buffering() {
    let mw = probe_mw();
    let ex = mw.send(Request::get("/get-status"));
    assert_eq!(ex.status, 500);
    assert!(
        ex.text().contains("bufferingResponseWriter"),
        "{}",
        ex.text()
    );

    let ex = mw.send_with(Request::get("/forward-mutate"), |_| {
        UpstreamResponse::status(203).body("up")
    });
    assert_eq!(ex.status, 203);
    assert_eq!(ex.text(), "up");
    let rt = ex.response_trap.clone().unwrap();
    assert!(
        rt.contains("can't set response header after next handler"),
        "{rt}"
    );
    assert_eq!(ex.header("x-late"), None);
}

#[test]
fn set_uri_with_an_invalid_uri_traps() {
    let mw = probe_mw();
    let ex = mw.send(Request::get("/bad-uri"));
    assert_eq!(ex.status, 500);
    assert!(
        ex.text().contains("invalid URI for request"),
        "{}",
        ex.text()
    );
}

#[test]
fn the_upstream_receives_the_request_as_the_guest_modified_it() {
    let mw = probe_mw();
    let ex = mw.send(
        Request::post("/forward", "original")
            .header("X-Remove", "gone")
            .header("x-new-method", "PUT")
            .header("x-new-uri", "/new/p%2Fath?q=1")
            .header("x-new-body", "rewritten"),
    );
    assert_eq!(ex.status, 200);
    let up = ex.upstream.clone().unwrap();
    assert_eq!(up.method, "PUT");
    assert_eq!(up.uri, "/new/p%2Fath?q=1");
    assert_eq!(up.header("x-added"), Some("yes"));
    assert_eq!(up.header_values("x-multi"), vec!["a", "b"]);
    assert_eq!(up.header("x-remove"), None);
    assert_eq!(up.body, b"rewritten");
    // The default upstream echoes what it received.
    let echo = ex.json().unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body"], "rewritten");
    assert!(mw.logged(0, "handle_response ctx=42 is_error=0"));

    let ex = mw.send_with(Request::get("/forward"), |_| UpstreamResponse::Fail);
    assert!(ex.upstream.is_some());
    assert!(mw.logged(0, "handle_response ctx=42 is_error=1"));
}

#[test]
fn buffer_response_lets_handle_response_rewrite_status_headers_and_body() {
    let mw = probe_mw();
    let ex = mw.send_with(Request::get("/buffered"), |_| {
        UpstreamResponse::status(200)
            .header("X-Up", "1")
            .body("hello")
    });
    assert_eq!(ex.status, 299);
    assert_eq!(ex.text(), "HELLO");
    assert_eq!(ex.header("x-resp-ctx"), Some("7"));
    assert_eq!(ex.header("x-status-seen"), Some("200"));
    assert_eq!(ex.header("x-up"), Some("1"));
}

#[test]
fn reading_the_body_before_next_follows_the_buffer_request_bug() {
    let mw = probe_mw();
    let body = "0123456789";
    // Without buffer_request the body was consumed: the upstream reads nothing.
    let ex = mw.send(Request::post("/read-then-next", body));
    let up = ex.upstream.unwrap();
    assert_eq!(up.header("x-guest-read"), Some("10"));
    assert_eq!(up.body, b"");
    // With buffer_request, read in one call: the read that hit EOF is kept, all of it.
    let ex = mw.send(Request::post("/read-then-next?buffer", body));
    assert_eq!(ex.upstream.unwrap().body, body.as_bytes());
    // In small reads only the last one (which returned EOF with data) is kept.
    let ex = mw.send(Request::post("/read-then-next?buffer&chunk=3", body));
    assert_eq!(ex.upstream.unwrap().body, b"9");
}

#[test]
fn next_zero_with_a_context_leaks_the_instance() {
    let mw = probe_mw();
    let ex = mw.send(Request::get("/leak-ctx"));
    assert_eq!(ex.status, 200);
    assert_eq!(mw.instances_leaked(), 1);
    assert_eq!(mw.idle(), 0);
    let ex = mw.send(Request::get("/count"));
    assert_eq!(ex.text(), "1", "a fresh instance");
    assert_eq!(mw.instances_created(), 2);
}

#[test]
fn exit_during_a_request_closes_the_instance_on_the_wazero_path() {
    let mw = probe_mw();
    let ex = mw.send(Request::get("/exit"));
    assert_eq!(ex.status, 500);
    assert!(ex.text().contains("exit_code(3)"), "{}", ex.text());
    let ex2 = mw.send(Request::get("/count"));
    assert_eq!(ex2.instance, ex.instance);
    assert_eq!(ex2.status, 500, "the dead instance went back to the pool");
}

#[test]
fn logs_are_captured_per_middleware_with_levels() {
    let mw = probe_mw();
    mw.take_logs();
    let ex = mw.send(Request::get("/log"));
    let logs = mw.logs();
    let levels: Vec<i32> = logs.iter().map(|l| l.level).collect();
    assert_eq!(levels, vec![-1, 0, 1, 2, 3]);
    assert!(logs.iter().all(|l| l.instance == ex.instance));
    assert_eq!(logs[4].level_name(), "fatal");
    assert_eq!(logs[0].message, "level -1");
}

#[test]
fn trailers_use_the_response_header_map() {
    let mw = probe_mw();
    let ex = mw.send(Request::get("/trailers"));
    // Request trailer names are read from the response map (host-go's nethttp does this).
    assert_eq!(ex.text(), r#"["x-t"]"#);
    assert_eq!(ex.trailers, vec![("X-T".to_string(), "v".to_string())]);
    assert!(ex.header("trailer:x-t").is_none());
}

#[test]
fn envs_and_mounts_reach_the_guest() {
    let dir = std::env::temp_dir().join(unique("mount"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret.txt");
    std::fs::write(&file, "s3cret").unwrap();
    let d = dir.to_str().unwrap();
    let f = file.to_str().unwrap();
    let mw = Middleware::builder(probe())
        .env("OIDC_T", "value")
        .mount(&format!("{d}:ro"))
        .build()
        .unwrap();
    let v = mw
        .send(
            Request::get("/env")
                .header("x-name", "OIDC_T")
                .header("x-file", f),
        )
        .json()
        .unwrap();
    assert_eq!(v["env"], "value");
    assert_eq!(v["file"]["Ok"], "s3cret", "{v}");
    assert!(
        v["write"]["Err"].is_string(),
        "a read-only mount refused the write: {v}"
    );
    // host:guest mounts are fine on the wazero path…
    let mw = Middleware::builder(probe())
        .mount(&format!("{d}:/secrets:ro"))
        .build()
        .unwrap();
    let v = mw
        .send(Request::get("/env").header("x-file", "/secrets/secret.txt"))
        .json()
        .unwrap();
    assert_eq!(v["file"]["Ok"], "s3cret", "{v}");
    // …but not for a guest with sockets (wasi-go needs host == guest).
    let err = Middleware::builder(sock_probe())
        .mount(&format!("{d}:/secrets"))
        .build()
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("virtual filesystems are not supported"),
        "{err:#}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn features_enabled_in_start_apply_to_every_request() {
    let mw = Middleware::builder(probe())
        .config(json!({"features": "2"}))
        .build()
        .unwrap();
    assert_eq!(mw.features(), 2);
    // buffer_response is on: get_status_code no longer traps.
    let ex = mw.send(Request::get("/get-status"));
    assert_eq!(
        (ex.status, ex.text()),
        (200, "200".to_string()),
        "{:?}",
        ex.trap
    );
}

#[test]
fn exported_functions_can_be_timed_for_micro_benchmarks() {
    let mw = probe_mw();
    let (r, took) = mw
        .with_instance(|g| g.call::<i32, i32>("bench_spin", 1000))
        .unwrap();
    let (r2, _) = mw
        .with_instance(|g| g.call::<i32, i32>("bench_spin", 1000))
        .unwrap();
    assert_eq!(r, r2);
    assert!(took < Duration::from_secs(1));
    let ex = mw.send(Request::get("/count"));
    assert!(ex.timing.handle_request > Duration::ZERO);
    assert!(ex.timing.total >= ex.timing.handle_request);
    assert!(ex.memory_bytes >= 64 * 1024);
}

#[test]
fn concurrent_requests_run_on_instances_of_their_own_and_instances_are_reused() {
    const N: usize = 8;
    let mw = probe_mw();
    let barrier = Arc::new(Barrier::new(N));
    let ids: Vec<u64> = (0..N)
        .map(|_| {
            let (mw, barrier) = (mw.clone(), barrier.clone());
            thread::spawn(move || {
                // Every request holds its instance in the upstream until all N are in flight.
                mw.send_with(Request::get("/forward"), |_| {
                    barrier.wait();
                    UpstreamResponse::status(200)
                })
                .instance
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), N, "ids: {ids:?}");
    assert_eq!(mw.instances_created(), N as u64);
    assert_eq!(mw.idle(), N);
    for _ in 0..20 {
        assert_eq!(mw.send(Request::get("/count")).status, 200);
    }
    assert_eq!(
        mw.instances_created(),
        N as u64,
        "sequential requests reuse pooled instances"
    );
    mw.drop_idle();
    assert_eq!(mw.instances_alive(), 0);
    assert_eq!(mw.send(Request::get("/count")).text(), "1");
    assert_eq!(mw.instances_created(), N as u64 + 1);
}

#[test]
fn a_guest_without_the_http_wasm_exports_is_refused() {
    // The socket probe has them; a plain wasm file (the build's dependency info) has not: use
    // a module built from WAT-free bytes: an empty module.
    let dir = std::env::temp_dir().join(unique("empty-wasm"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("empty.wasm");
    std::fs::write(&p, b"\0asm\x01\0\0\0").unwrap();
    let err = Middleware::builder(&p).build().unwrap_err();
    assert!(
        format!("{err:#}").contains("doesn't export func[handle_request]"),
        "{err:#}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// The plugin artifacts
// ---------------------------------------------------------------------------------------------

/// The `.traefik.yml` test data: bearer-only, static issuer and inline JWKS.
fn bearer_only_config() -> Value {
    json!({"issuer": "https://idp.example.com",
        "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "sample",
            "x": "nWMVQCCEQTvvPG_zsXt0WL-tOHa0kAKMOMOOgFuilY8"}]},
        "bearer": {"enabled": true, "audience": "api"}})
}

#[test]
fn the_traefik_artifact_imports_only_its_hosts_modules_and_refuses_unauthenticated_api_calls() {
    let wasm = guests::plugin(guests::Artifact::Traefik).unwrap();
    let imports = oidc_guard_testhost::wasm::imports(&wasm).unwrap();
    for i in &imports.imports {
        eprintln!(
            "traefik artifact imports {}.{} {}",
            i.module, i.name, i.signature
        );
    }
    for m in imports.modules() {
        assert!(
            m == "http_handler" || m == "wasi_snapshot_preview1",
            "unexpected import module {m}"
        );
    }
    assert_ne!(imports.sockets, SocketAbi::V1);
    let mw = Middleware::builder(&wasm)
        .config(bearer_only_config())
        .build()
        .unwrap();
    let ex = mw.send(Request::get("/api/orders").header("Accept", "application/json"));
    assert_eq!(ex.status, 401, "{}", ex.text());
    assert!(
        ex.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{:?}",
        ex.headers
    );
    assert!(ex.upstream.is_none());
    assert!(ex.trap.is_none());
}

#[test]
fn the_bridge_artifact_builds_and_imports_only_its_hosts_modules() {
    let wasm = guests::plugin(guests::Artifact::Bridge).unwrap();
    let imports = oidc_guard_testhost::wasm::imports(&wasm).unwrap();
    for i in &imports.imports {
        eprintln!(
            "bridge artifact imports {}.{} {}",
            i.module, i.name, i.signature
        );
    }
    for m in imports.modules() {
        assert!(
            m == "http_handler" || m == "wasi_snapshot_preview1" || m == "oidc_guard_bridge_v1",
            "unexpected import module {m}"
        );
    }
    let mw = Middleware::builder(&wasm)
        .config(bearer_only_config())
        .build()
        .unwrap();
    let ex = mw.send(Request::get("/api").header("Accept", "application/json"));
    assert!(ex.trap.is_none(), "{:?}", ex.trap);
    assert_eq!(ex.status, 401, "{}", ex.text());
}

// ---------------------------------------------------------------------------------------------
// The host bridge
// ---------------------------------------------------------------------------------------------

fn kv(mw: &Middleware, op: &str, key: &str, ttl_ms: Option<u64>, value: &str) -> Value {
    let mut req = Request::post(&format!("/kv/{op}"), value).header("x-key", key);
    if let Some(t) = ttl_ms {
        req = req.header("x-ttl-ms", &t.to_string());
    }
    let ex = mw.send(req);
    assert_eq!(
        ex.status,
        200,
        "{} {}",
        ex.text(),
        ex.trap.clone().unwrap_or_default()
    );
    assert!(ex.trap.is_none());
    ex.json().unwrap()
}

fn bridge_semantics(bridge: Bridge) {
    let mw = Middleware::builder(bridge_probe())
        .bridge(bridge)
        .build()
        .unwrap();
    assert!(mw.imports().bridge);
    let k = unique("sem");
    assert_eq!(kv(&mw, "get", &k, None, "")["found"], false);
    assert_eq!(kv(&mw, "ttl", &k, None, "")["found"], false);
    assert_eq!(kv(&mw, "exists", &k, None, "")["exists"], false);
    assert_eq!(kv(&mw, "set", &k, Some(60_000), "v1")["ok"], true);
    let g = kv(&mw, "get", &k, None, "");
    assert_eq!(
        (g["found"].clone(), g["text"].clone()),
        (json!(true), json!("v1"))
    );
    let ttl = g["ttlMs"].as_u64().unwrap();
    assert!((59_000..=60_000).contains(&ttl), "ttl {ttl}");
    let t = kv(&mw, "ttl", &k, None, "")["ttlMs"].as_u64().unwrap();
    assert!((59_000..=60_000).contains(&t));
    assert_eq!(kv(&mw, "exists", &k, None, "")["exists"], true);
    assert_eq!(kv(&mw, "setnx", &k, Some(60_000), "v2")["stored"], false);
    assert_eq!(kv(&mw, "get", &k, None, "")["text"], "v1");
    assert_eq!(kv(&mw, "del", &k, None, "")["existed"], true);
    assert_eq!(kv(&mw, "del", &k, None, "")["existed"], false);
    assert_eq!(kv(&mw, "setnx", &k, Some(150), "v3")["stored"], true);
    // A value larger than the guest's first buffer (1 KiB) takes the retry path.
    let big = "x".repeat(5000);
    let kb = unique("big");
    kv(&mw, "set", &kb, Some(60_000), &big);
    assert_eq!(kv(&mw, "get", &kb, None, "")["text"], big.as_str());
    assert_eq!(kv(&mw, "ping", "", None, "")["ok"], true);
    // Wall-clock TTLs expire.
    thread::sleep(Duration::from_millis(400));
    assert_eq!(kv(&mw, "get", &k, None, "")["found"], false);
    assert_eq!(kv(&mw, "setnx", &k, Some(60_000), "v4")["stored"], true);
}

#[test]
fn bridge_get_set_set_nx_ttl_delete_exists_ping_in_memory() {
    bridge_semantics(Bridge::memory());
}

#[test]
fn bridge_get_set_set_nx_ttl_delete_exists_ping_against_redis() {
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    bridge_semantics(Bridge::redis(format!("redis://{}/", server.addr())));
    // Keys really are in Redis.
    assert!(server.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() >= 2);
}

#[test]
fn the_memory_bridge_is_shared_by_every_middleware_of_the_process() {
    let a = Middleware::builder(bridge_probe())
        .bridge(Bridge::memory())
        .build()
        .unwrap();
    let b = Middleware::builder(bridge_probe())
        .bridge(Bridge::memory())
        .build()
        .unwrap();
    let c = Middleware::builder(bridge_probe())
        .bridge(Bridge::isolated_memory())
        .build()
        .unwrap();
    let k = unique("shared");
    kv(&a, "set", &k, Some(60_000), "from-a");
    assert_eq!(kv(&b, "get", &k, None, "")["text"], "from-a");
    assert_eq!(kv(&c, "get", &k, None, "")["found"], false);
}

fn set_nx_race(bridge: Bridge) {
    const N: usize = 32;
    let mw = Middleware::builder(bridge_probe())
        .bridge(bridge)
        .build()
        .unwrap();
    // Every request waits in the host before its kv_set_nx, so all N hold an instance at once.
    mw.faults()
        .inject_for("kv_set_nx", Fault::Delay(Duration::from_millis(300)));
    let k = unique("race");
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (mw, barrier, k) = (mw.clone(), barrier.clone(), k.clone());
            thread::spawn(move || {
                barrier.wait();
                kv(&mw, "setnx", &k, Some(60_000), &format!("nonce-{i}"))
            })
        })
        .collect();
    let results: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<usize> = (0..N).filter(|i| results[*i]["stored"] == true).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().all(|r| r["ok"] == true));
    assert!(
        mw.instances_created() >= N as u64,
        "created {}",
        mw.instances_created()
    );
    mw.faults().clear();
    assert_eq!(
        kv(&mw, "get", &k, None, "")["text"],
        format!("nonce-{}", winners[0])
    );
}

#[test]
fn set_if_absent_is_atomic_across_32_instances_in_memory() {
    set_nx_race(Bridge::isolated_memory());
}

#[test]
fn set_if_absent_is_atomic_across_32_instances_against_redis() {
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    set_nx_race(Bridge::redis(format!("redis://{}/", server.addr())));
}

#[test]
fn malformed_bridge_replies_are_refused_without_a_trap() {
    let mw = Middleware::builder(bridge_probe())
        .bridge(Bridge::isolated_memory())
        .build()
        .unwrap();
    let k = unique("bad");
    kv(&mw, "set", &k, Some(60_000), "value");
    let refused = |fault: Fault, function: &str, op: &str, needle: &str| {
        mw.faults().clear();
        mw.faults().inject_for(function, fault.clone());
        let v = kv(&mw, op, &k, Some(60_000), "v");
        mw.faults().clear();
        assert_eq!(v["ok"], false, "{fault:?} accepted: {v}");
        assert!(
            v["err"].as_str().unwrap().contains(needle),
            "{fault:?}: {v}"
        );
        v
    };
    let v = refused(Fault::Status(-7), "kv_get", "get", "unknown status -7");
    assert_eq!(v["protocolErrors"], 1);
    refused(Fault::Status(2), "kv_set", "set", "unknown status 2");
    refused(
        Fault::ClaimLength(2 << 20),
        "kv_get",
        "get",
        "more than the 1048576 accepted",
    );
    refused(Fault::ClaimLength(-4), "kv_get", "get", "length of -4");
    refused(Fault::NeverFits, "kv_get", "get", "does not fit twice");
    refused(Fault::BadTtl(-9), "kv_get", "get", "TTL of -9");
    refused(Fault::BadTtl(-9), "kv_ttl", "ttl", "TTL of -9");
    refused(Fault::Garbage, "kv_set_nx", "setnx", "unknown status 23130");
    refused(Fault::Garbage, "kv_exists", "exists", "unknown status");
    refused(Fault::Status(-1), "kv_ping", "ping", "cannot be reached");
    refused(Fault::Status(-2), "kv_get", "get", "timed out");
    // Garbage bytes as a value are opaque to the L2 (the tiered layer's envelope refuses them);
    // they must not trap either.
    mw.faults().inject_for("kv_get", Fault::Garbage);
    let v = kv(&mw, "get", &k, None, "");
    assert_eq!(v["ok"], true);
    mw.faults().clear();
    // Every failure above was answered by the guest (200 JSON), none by a trap.
    assert_eq!(mw.instances_created(), 1);
    assert_eq!(kv(&mw, "get", &k, None, "")["text"], "value");
}

/// A one-shot HTTP server answering every request with `body`; counts requests.
fn http_server(body: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (port, hits)
}

#[test]
fn http_fetch_performs_the_exchange_once_even_when_the_reply_needs_a_bigger_buffer() {
    let body = format!("{{\"keys\":\"{}\"}}", "k".repeat(40_000)).into_bytes();
    let (port, hits) = http_server(body.clone());
    let mw = Middleware::builder(bridge_probe()).build().unwrap();
    let doc = json!({"method": "GET", "url": format!("http://127.0.0.1:{port}/jwks"),
        "headers": [["Accept", "application/json"]], "timeoutMs": 3000});
    let v = mw
        .send(Request::post("/fetch", doc.to_string()))
        .json()
        .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bodyLen"], body.len());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the retry must not fetch again"
    );

    // A refused connection is a transport failure, not a response.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let doc =
        json!({"method": "GET", "url": format!("http://127.0.0.1:{closed}/"), "timeoutMs": 1000});
    let v = mw
        .send(Request::post("/fetch", doc.to_string()))
        .json()
        .unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["err"].as_str().unwrap().contains("could not be reached"),
        "{v}"
    );

    // Garbage from the host is refused.
    mw.faults().inject_for("http_fetch", Fault::Garbage);
    let doc =
        json!({"method": "GET", "url": format!("http://127.0.0.1:{port}/"), "timeoutMs": 1000});
    let v = mw
        .send(Request::post("/fetch", doc.to_string()))
        .json()
        .unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["err"].as_str().unwrap().contains("malformed"), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------

fn dial(mw: &Middleware, headers: &[(&str, String)], body: &str) -> (Value, Duration) {
    let mut req = Request::post("/dial", body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let t = Instant::now();
    let ex = mw.send(req);
    let elapsed = t.elapsed();
    assert_eq!(ex.status, 200, "{} {:?}", ex.text(), ex.trap);
    (ex.json().unwrap(), elapsed)
}

fn echo_server(addr: &str) -> Option<u16> {
    let l = TcpListener::bind(addr).ok()?;
    let port = l.local_addr().ok()?.port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Some(port)
}

#[test]
fn the_socket_guest_imports_only_v2_socket_calls() {
    let imports = oidc_guard_testhost::wasm::imports(&sock_probe()).unwrap();
    assert_eq!(imports.sockets, SocketAbi::V2);
    let wasi = imports.names("wasi_snapshot_preview1");
    for banned in ["sock_getlocaladdr", "sock_getpeeraddr", "sock_accept"] {
        assert!(!wasi.iter().any(|n| n == banned), "imports {banned}");
    }
    for needed in [
        "sock_open",
        "sock_connect",
        "sock_getaddrinfo",
        "sock_send",
        "sock_recv",
        "poll_oneoff",
    ] {
        assert!(
            wasi.iter().any(|n| n == needed),
            "does not import {needed}: {wasi:?}"
        );
    }
    let getsockopt = imports
        .imports
        .iter()
        .find(|i| i.name == "sock_getsockopt")
        .unwrap();
    assert_eq!(getsockopt.signature, "(i32, i32, i32, i32, i32) -> (i32)");
}

#[test]
fn wasi_dialer_talks_to_a_real_echo_server_and_closes_its_socket() {
    let port = echo_server("127.0.0.1:0").unwrap();
    let mw = Middleware::builder(sock_probe()).build().unwrap();
    assert!(mw.uses_sockets());
    let (v, _) = dial(
        &mw,
        &[
            ("x-host", "127.0.0.1".into()),
            ("x-port", port.to_string()),
            ("x-expect", "11".into()),
        ],
        "hello world",
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["data"], "hello world");
    assert_eq!(
        mw.open_sockets(),
        0,
        "the stream closed its socket when dropped"
    );
    assert_eq!(mw.sockets_opened(), 1);

    // Names resolve through sock_getaddrinfo (/etc/hosts included).
    let ex = mw.send(Request::get("/resolve").header("x-host", "localhost"));
    let v = ex.json().unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["addrs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "127.0.0.1" || a == "::1"),
        "{v}"
    );
    let (v, _) = dial(
        &mw,
        &[
            ("x-host", "localhost".into()),
            ("x-port", port.to_string()),
            ("x-expect", "2".into()),
        ],
        "hi",
    );
    assert_eq!(v["data"], "hi", "{v}");
    let ex = mw.send(Request::get("/resolve").header("x-host", "no-such-host.invalid"));
    let v = ex.json().unwrap();
    assert_eq!(v["kind"], "NotFound", "{v}");

    // IPv6 literal, when the machine has ::1.
    if let Some(p6) = echo_server("[::1]:0") {
        let (v, _) = dial(
            &mw,
            &[
                ("x-host", "::1".into()),
                ("x-port", p6.to_string()),
                ("x-expect", "3".into()),
            ],
            "six",
        );
        assert_eq!(v["data"], "six", "{v}");
    }
}

#[test]
fn non_socket_wasi_calls_still_reach_wasmtime_wasi_in_a_socket_guest() {
    let mw = Middleware::builder(sock_probe()).build().unwrap();
    let ex = mw.send(Request::get("/sleep").header("x-ms", "120"));
    let v = ex.json().unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["elapsedMs"].as_u64().unwrap() >= 119, "a real sleep: {v}");
    assert!(String::from_utf8_lossy(&mw.stdout()).contains("slept 120 ms"));
}

#[test]
fn a_server_that_never_answers_times_the_read_out() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        thread::sleep(Duration::from_secs(4));
        drop(s);
    });
    let mw = Middleware::builder(sock_probe()).build().unwrap();
    let read = Duration::from_millis(700);
    let (v, elapsed) = dial(
        &mw,
        &[
            ("x-host", "127.0.0.1".into()),
            ("x-port", port.to_string()),
            ("x-read-ms", read.as_millis().to_string()),
            ("x-expect", "1".into()),
        ],
        "PING\r\n",
    );
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["stage"], "read");
    assert_eq!(v["kind"], "TimedOut", "{v}");
    let guest_ms = v["elapsedMs"].as_u64().unwrap();
    assert!(guest_ms >= 690, "timed out early: {guest_ms} ms");
    assert!(elapsed < read + Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(mw.open_sockets(), 0);
    held.join().unwrap();
}

#[test]
fn the_overall_deadline_holds_across_partial_reads() {
    // A server that trickles one byte every 150 ms: each read makes progress within its 500 ms
    // timeout, the 1 s deadline still ends the exchange.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        for _ in 0..40 {
            if s.write_all(b"x").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(150));
        }
    });
    let mw = Middleware::builder(sock_probe()).build().unwrap();
    let (v, elapsed) = dial(
        &mw,
        &[
            ("x-host", "127.0.0.1".into()),
            ("x-port", port.to_string()),
            ("x-read-ms", "500".into()),
            ("x-deadline-ms", "1000".into()),
            ("x-expect", "100".into()),
        ],
        "",
    );
    assert_eq!(v["kind"], "TimedOut", "{v}");
    let got = v["data"].as_str().unwrap().len();
    assert!(
        (4..=9).contains(&got),
        "read {got} bytes before the deadline: {v}"
    );
    assert!(elapsed < Duration::from_millis(2000), "took {elapsed:?}");
}

#[test]
fn connect_refused_is_an_error_not_a_hang() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mw = Middleware::builder(sock_probe()).build().unwrap();
    let (v, elapsed) = dial(
        &mw,
        &[("x-host", "127.0.0.1".into()), ("x-port", port.to_string())],
        "",
    );
    assert_eq!(v["ok"], false);
    assert_eq!(v["stage"], "connect");
    assert_eq!(v["kind"], "ConnectionRefused", "{v}");
    assert!(elapsed < Duration::from_secs(1));
    assert_eq!(mw.open_sockets(), 0);
}

#[test]
fn sockets_left_open_are_closed_when_the_instance_is_dropped() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mw = Middleware::builder(sock_probe()).build().unwrap();
    let ex = mw.send(
        Request::post("/leak", "")
            .header("x-host", "127.0.0.1")
            .header("x-port", &port.to_string()),
    );
    assert_eq!(ex.json().unwrap()["ok"], true, "{}", ex.text());
    let (mut leaked_side, _) = l.accept().unwrap();
    assert_eq!(
        mw.open_sockets(),
        1,
        "the leaked socket is still open in its instance"
    );
    // Each instance has its own table; dropping the instance closes what it left open.
    mw.drop_idle();
    assert_eq!(mw.open_sockets(), 0);
    leaked_side
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 1];
    let n = leaked_side.read(&mut b).unwrap();
    assert_eq!(n, 0, "the peer saw EOF");
}

/// `textkey`'s scans (cache-key comparison, the ASCII check of every header the plugin reads,
/// the cookie and `Authorization` splits) in the wasm build, where they take the wasm SIMD path:
/// the guest compares them with byte loops on texts of every length up to 300 bytes.
#[test]
fn textkey_scans_in_wasm_agree_with_byte_loops() {
    let mw = Middleware::builder(guests::test_guest("textkey-probe").unwrap())
        .build()
        .unwrap();
    let ex = mw.send(Request::get("/check"));
    assert_eq!(ex.status, 200, "{}", ex.text());
    let v = ex.json().unwrap();
    assert_eq!(v["simd"], json!(true), "the wasm build has simd128: {v}");
    assert_eq!(v["failures"], json!([]), "{v}");
    assert!(v["checks"].as_u64().unwrap() > 200_000, "{v}");
}
