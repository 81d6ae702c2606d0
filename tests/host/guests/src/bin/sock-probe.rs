//! A guest that drives `oidc_guard::net::tcp` (WasiDialer over the WasmEdge socket extension):
//! - `/dial`: headers `x-host`, `x-port`, `x-connect-ms`, `x-read-ms`, `x-expect` (bytes to read;
//!   0 reads until EOF), `x-deadline-ms` (optional overall deadline); the body is sent first;
//! - `/resolve`: header `x-host`;
//! - `/leak`: dials and forgets the stream (its socket stays open in this instance).
//!
//! It answers 200 with a JSON result; errors carry the `io::ErrorKind` name.
#![allow(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::io::{Read, Write};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use oidc_guard::net::tcp::WasiDialer;
    use oidc_guard::net::Timeouts;
    use oidc_guard_test_guests::hh::{self, REQ};
    use serde_json::{json, Value};

    fn now_ms() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    }

    fn num(name: &str, default: u64) -> u64 {
        hh::header(REQ, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn fail(stage: &str, e: &std::io::Error, start: u128) -> Value {
        json!({"ok": false, "stage": stage, "kind": format!("{:?}", e.kind()), "err": e.to_string(),
            "rawOsError": e.raw_os_error(), "elapsedMs": (now_ms() - start) as u64})
    }

    fn dial(leak: bool) -> Value {
        let start = now_ms();
        let host = hh::header(REQ, "x-host").unwrap_or_else(|| "127.0.0.1".into());
        let port = num("x-port", 0) as u16;
        let timeouts = Timeouts {
            connect: Duration::from_millis(num("x-connect-ms", 2000)),
            read: Duration::from_millis(num("x-read-ms", 2000)),
            write: Duration::from_millis(num("x-read-ms", 2000)),
        };
        let mut s = match WasiDialer.connect(&host, port, &timeouts) {
            Ok(s) => s,
            Err(e) => return fail("connect", &e, start),
        };
        let connect_ms = (now_ms() - start) as u64;
        if let Some(d) = hh::header(REQ, "x-deadline-ms").and_then(|v| v.parse().ok()) {
            s.set_deadline(Some(Duration::from_millis(d)));
        }
        let (body, _) = hh::read_body(REQ, 64 * 1024);
        if !body.is_empty() {
            if let Err(e) = s.write_all(&body) {
                return fail("write", &e, start);
            }
        }
        if leak {
            // Keep the socket open past this request: only the host can close it now.
            let peer = s.peer().to_string();
            std::mem::forget(s);
            return json!({"ok": true, "leaked": peer});
        }
        let expect = num("x-expect", 0) as usize;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut reads = 0u32;
        while expect == 0 || got.len() < expect {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    reads += 1;
                    got.extend_from_slice(&buf[..n]);
                }
                Err(e) => {
                    let mut v = fail("read", &e, start);
                    v["data"] = json!(String::from_utf8_lossy(&got));
                    return v;
                }
            }
        }
        let peer = s.peer().to_string();
        json!({"ok": true, "data": String::from_utf8_lossy(&got), "reads": reads, "peer": peer,
            "connectMs": connect_ms, "elapsedMs": (now_ms() - start) as u64})
    }

    fn resolve() -> Value {
        let host = hh::header(REQ, "x-host").unwrap_or_default();
        match WasiDialer::resolve(&host, 80) {
            Ok(addrs) => {
                json!({"ok": true, "addrs": addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>()})
            }
            Err(e) => fail("resolve", &e, now_ms()),
        }
    }

    pub fn handle_request() -> i64 {
        let out = match hh::path().as_str() {
            "/dial" => dial(false),
            "/leak" => dial(true),
            "/resolve" => resolve(),
            "/sleep" => {
                // Clock-only poll_oneoff and fd_write on stdout: not sockets, so the host hands
                // them to wasmtime-wasi.
                let ms = num("x-ms", 100);
                let start = now_ms();
                std::thread::sleep(Duration::from_millis(ms));
                println!("slept {ms} ms");
                json!({"ok": true, "elapsedMs": (now_ms() - start) as u64})
            }
            _ => json!({"ok": false, "err": "unknown path"}),
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
