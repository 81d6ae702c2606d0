//! A guest that exercises the `http_handler` ABI of the host: what it sees, buffer conventions,
//! headers after the status, traps, pool reuse, features, bodies. Behaviour is chosen by path.
#![allow(
    unsafe_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
mod guest {
    use oidc_guard_test_guests::hh::{self, REQ, RESP};
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Requests served by this instance (instance memory survives between requests and traps).
    static COUNT: AtomicU32 = AtomicU32::new(0);
    /// The path of the request in flight, for handle_response.
    static mut PATH: String = String::new();

    fn lossy(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn echo() {
        let chunk: usize = hh::query("chunk")
            .and_then(|c| c.parse().ok())
            .unwrap_or(4096);
        let names = hh::header_names(REQ);
        let mut values = serde_json::Map::new();
        for n in &names {
            let vs: Vec<String> = hh::header_values(REQ, n).iter().map(|v| lossy(v)).collect();
            values.insert(lossy(n), json!(vs));
        }
        // Buffer conventions: a too-small buffer receives nothing, the full length comes back.
        let mut small = [0xAAu8; 4];
        // SAFETY: small is writable for 1 byte.
        let uri_len = unsafe { hh::ffi::get_uri(small.as_mut_ptr(), 1) };
        // SAFETY: as above.
        let names_cl = unsafe { hh::ffi::get_header_names(REQ, small.as_mut_ptr(), 1) } as u64;
        let untouched = small == [0xAA; 4];
        let (body, calls) = hh::read_body(REQ, chunk);
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        let out = json!({
            "method": lossy(&hh::method()),
            "uri": lossy(&hh::uri()),
            "proto": lossy(&hh::proto()),
            "source": lossy(&hh::source()),
            "config": lossy(&hh::config()),
            "names": names.iter().map(|n| lossy(n)).collect::<Vec<_>>(),
            "values": values,
            "uriLen": uri_len,
            "namesCount": names_cl >> 32,
            "namesLen": names_cl & 0xffff_ffff,
            "smallBufferUntouched": untouched,
            "body": lossy(&body),
            "reads": calls.iter().map(|(n, e)| json!([n, e])).collect::<Vec<_>>(),
            "count": n,
            "logEnabled": unsafe { hh::ffi::log_enabled(-1) },
        });
        hh::reply_json(200, &out);
    }

    pub fn handle_request() -> i64 {
        let path = hh::path();
        // SAFETY: single-threaded guest; PATH is only touched here and in handle_response.
        unsafe { PATH = path.clone() };
        match path.as_str() {
            p if p.starts_with("/echo") => echo(),
            "/count" => {
                let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
                hh::write_body(RESP, n.to_string().as_bytes());
            }
            "/status-then-header" => {
                hh::set_header(RESP, "X-Before", "1");
                hh::set_status(201);
                hh::set_header(RESP, "X-After", "1");
                hh::write_body(RESP, b"done");
            }
            "/trap" => {
                COUNT.fetch_add(1, Ordering::SeqCst);
                hh::set_header(RESP, "X-Before", "1");
                if hh::query("status").is_some() {
                    hh::set_status(202);
                }
                std::process::abort();
            }
            "/exit" => std::process::exit(3),
            "/get-status" => {
                let s = hh::status();
                hh::write_body(RESP, s.to_string().as_bytes());
            }
            "/bad-uri" => hh::set_uri("no-slash"),
            "/log" => {
                for l in -1..=3 {
                    hh::log(l, &format!("level {l}"));
                }
            }
            "/leak-ctx" => return 5 << 32,
            "/env" => {
                let name = hh::header(REQ, "x-name").unwrap_or_default();
                let file = hh::header(REQ, "x-file").unwrap_or_default();
                let out = json!({
                    "env": std::env::var(&name).ok(),
                    "file": std::fs::read_to_string(&file).map_err(|e| e.to_string()),
                    "write": std::fs::write(format!("{file}.new"), b"x").map_err(|e| e.kind().to_string()),
                });
                hh::reply_json(200, &out);
            }
            "/forward" | "/forward-mutate" => {
                hh::set_header(REQ, "X-Added", "yes");
                hh::add_header(REQ, "X-Multi", "a");
                hh::add_header(REQ, "x-multi", "b");
                hh::remove_header(REQ, "X-Remove");
                if let Some(m) = hh::header(REQ, "x-new-method") {
                    hh::set_method(&m);
                }
                if let Some(u) = hh::header(REQ, "x-new-uri") {
                    hh::set_uri(&u);
                }
                if let Some(b) = hh::header(REQ, "x-new-body") {
                    hh::write_body(REQ, b.as_bytes());
                }
                return (42i64 << 32) | 1;
            }
            "/read-then-next" => {
                if hh::query("buffer").is_some() {
                    hh::enable(1);
                }
                let chunk: usize = hh::query("chunk")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(4096);
                let (body, _) = hh::read_body(REQ, chunk);
                hh::set_header(REQ, "X-Guest-Read", &body.len().to_string());
                return 1;
            }
            "/buffered" => {
                hh::enable(2);
                return (7i64 << 32) | 1;
            }
            "/trailers" => {
                hh::set_header(3, "X-T", "v");
                let names: Vec<String> = hh::header_names(2).iter().map(|n| lossy(n)).collect();
                hh::write_body(RESP, serde_json::to_string(&names).unwrap().as_bytes());
            }
            _ => {
                hh::set_header(RESP, "WWW-Authenticate", "Probe");
                hh::set_status(404);
            }
        }
        0
    }

    pub fn handle_response(ctx: i32, is_error: i32) {
        hh::log(0, &format!("handle_response ctx={ctx} is_error={is_error}"));
        // SAFETY: single-threaded guest.
        let path = unsafe { (*std::ptr::addr_of!(PATH)).clone() };
        match path.as_str() {
            // Without buffer_response this traps, as in Traefik.
            "/forward-mutate" => hh::set_header(RESP, "X-Late", "1"),
            "/buffered" => {
                let (body, _) = hh::read_body(RESP, 3);
                let seen = hh::status();
                hh::set_header(RESP, "X-Resp-Ctx", &ctx.to_string());
                hh::set_header(RESP, "X-Status-Seen", &seen.to_string());
                hh::set_status(299);
                hh::write_body(RESP, &body.to_ascii_uppercase());
            }
            _ => {}
        }
    }

    pub fn start() {
        let cfg = String::from_utf8_lossy(&hh::config()).into_owned();
        hh::log(0, "probe started");
        if cfg.contains("\"start\":\"exit1\"") {
            std::process::exit(1);
        }
        if cfg.contains("\"start\":\"exit0\"") {
            std::process::exit(0);
        }
        if cfg.contains("\"start\":\"trap\"") {
            std::process::abort();
        }
        if cfg.contains("\"features\":\"2\"") {
            hh::enable(2);
        }
    }
}

/// A micro-benchmark export: `n` rounds of a cheap hash, for `GuestInstance::call`.
#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub extern "C" fn bench_spin(n: i32) -> i32 {
    let mut x: u32 = 2166136261;
    for i in 0..n.max(0) as u32 {
        x = (x ^ i).wrapping_mul(16777619);
    }
    std::hint::black_box(x) as i32
}

#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub extern "C" fn handle_request() -> i64 {
    guest::handle_request()
}

#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub extern "C" fn handle_response(ctx: i32, is_error: i32) {
    guest::handle_response(ctx, is_error)
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    guest::start();
}
