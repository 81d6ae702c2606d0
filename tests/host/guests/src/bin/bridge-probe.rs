//! A guest that drives `oidc_guard::abi::bridge` (the bridge FFI, `BridgeL2` and `fetch`) from
//! requests: `/kv/{get,set,setnx,del,exists,ttl,ping}` with `x-key`, `x-ttl-ms` and the body as
//! the value; `/fetch` with a JSON body `{method,url,headers,body,timeoutMs}`. It answers 200
//! with a JSON result, or with `{"ok":false,"err":…}` when the bridge refused a reply.
#![allow(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::time::Duration;

    use base64::Engine as _;
    use oidc_guard::abi::bridge::{BridgeFetch, BridgeL2};
    use oidc_guard::net::http::{Fetch, HttpRequest};
    use oidc_guard::store::L2;
    use oidc_guard_test_guests::hh::{self, REQ};
    use serde_json::{json, Value};

    fn err(e: impl std::fmt::Display, debug: impl std::fmt::Debug) -> Value {
        json!({"ok": false, "err": e.to_string(), "debug": format!("{debug:?}")})
    }

    fn kv(op: &str) -> Value {
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = hh::header(REQ, "x-key").unwrap_or_default();
        let ttl = Duration::from_millis(
            hh::header(REQ, "x-ttl-ms")
                .and_then(|t| t.parse().ok())
                .unwrap_or(60_000),
        );
        let (value, _) = hh::read_body(REQ, 64 * 1024);
        let mut l2 = BridgeL2::host();
        let r = match op {
            "get" => l2.get_with_ttl(&key).map(|v| match v {
                Some(e) => json!({"ok": true, "found": true, "value": b64.encode(&e.value),
                    "text": String::from_utf8_lossy(&e.value),
                    "ttlMs": e.ttl.map(|t| t.as_millis() as u64)}),
                None => json!({"ok": true, "found": false}),
            }),
            "set" => l2.set(&key, &value, ttl).map(|()| json!({"ok": true})),
            "setnx" => l2
                .set_if_absent(&key, &value, ttl)
                .map(|won| json!({"ok": true, "stored": won})),
            "del" => l2.delete(&key).map(|d| json!({"ok": true, "existed": d})),
            "exists" => l2.exists(&key).map(|e| json!({"ok": true, "exists": e})),
            "ttl" => l2.ttl(&key).map(|t| match t {
                None => json!({"ok": true, "found": false}),
                Some(None) => json!({"ok": true, "found": true, "ttlMs": null}),
                Some(Some(d)) => json!({"ok": true, "found": true, "ttlMs": d.as_millis() as u64}),
            }),
            "ping" => l2
                .ping()
                .map(|rtt| json!({"ok": true, "rttUs": rtt.as_micros() as u64})),
            _ => return json!({"ok": false, "err": "unknown op"}),
        };
        let protocol_errors = l2.protocol_errors();
        match r {
            Ok(mut v) => {
                v["protocolErrors"] = json!(protocol_errors);
                v
            }
            Err(e) => {
                let mut v = err(&e, &e);
                v["protocolErrors"] = json!(protocol_errors);
                v
            }
        }
    }

    fn do_fetch() -> Value {
        let b64 = base64::engine::general_purpose::STANDARD;
        let (body, _) = hh::read_body(REQ, 64 * 1024);
        let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
            return json!({"ok": false, "err": "bad request document"});
        };
        let headers = doc["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| Some((h[0].as_str()?.to_string(), h[1].as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let req = HttpRequest {
            method: doc["method"].as_str().unwrap_or("GET").to_string(),
            url: doc["url"].as_str().unwrap_or("").to_string(),
            headers,
            body: doc["body"]
                .as_str()
                .map(|b| b.as_bytes().to_vec())
                .unwrap_or_default(),
            timeout_ms: doc["timeoutMs"].as_u64().unwrap_or(5000),
        };
        match BridgeFetch.fetch(&req) {
            Ok(r) => json!({"ok": true, "status": r.status, "headers": r.headers,
                "body": String::from_utf8_lossy(&r.body), "bodyLen": r.body.len(), "bodyB64": b64.encode(&r.body)}),
            Err(e) => err(&e, &e),
        }
    }

    pub fn handle_request() -> i64 {
        let path = hh::path();
        let out = if let Some(op) = path.strip_prefix("/kv/") {
            kv(op)
        } else if path == "/fetch" {
            do_fetch()
        } else {
            json!({"ok": false, "err": "unknown path"})
        };
        hh::reply_json(200, &out);
        0
    }
}

// The plugin library links http-wasm-guest, which owns the `handle_request` and
// `handle_response` exports: register through it.
#[cfg(target_arch = "wasm32")]
struct Probe;

#[cfg(target_arch = "wasm32")]
impl http_wasm_guest::Guest for Probe {
    fn handle_request(
        &self,
        _req: &http_wasm_guest::host::Request,
        _resp: &http_wasm_guest::host::Response,
    ) -> (bool, i32) {
        guest::handle_request();
        (false, 0)
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    http_wasm_guest::register(Probe);
}
