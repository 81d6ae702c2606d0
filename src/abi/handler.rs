//! [`Exchange`] over the http-wasm host.
//!
//! Registration, logging, the body and the response go through the `http-wasm-guest` crate. The
//! request reads that every request makes (method, URI, a header's values) and the request-header
//! writes go through the `http_handler` imports below instead: under Traefik's wazero each pass
//! over a byte costs ≈ 2.5 ns, and the crate's reads make three of them per value (a NUL split, a
//! copy into a box, a copy into a `String`). Here the host writes straight into the buffer that
//! becomes the `String`: one pass (the UTF-8 check). Header names are sent in canonical form
//! (`Authorization`), which the host's Go `http.Header` would otherwise canonicalise into a new
//! allocation on every call. See BENCHMARKS.md ("guest code per request").
#![allow(unsafe_code)]

use http_wasm_guest::host::{log, Request, Response};

use crate::http::{Exchange, LogLevel};

// The http-wasm host functions this module calls itself (the ABI of http-wasm 0.x; Traefik's
// `http-wasm-host-go`). The `http-wasm-guest` crate declares the same imports; the linker
// merges them.
#[link(wasm_import_module = "http_handler")]
extern "C" {
    fn get_method(buf: *mut u8, buf_limit: i32) -> i32;
    fn get_uri(buf: *mut u8, buf_limit: i32) -> i32;
    fn get_source_addr(buf: *mut u8, buf_limit: i32) -> i32;
    fn get_header_names(kind: i32, buf: *mut u8, buf_limit: i32) -> i64;
    fn get_header_values(
        kind: i32,
        name: *const u8,
        name_len: i32,
        buf: *mut u8,
        buf_limit: i32,
    ) -> i64;
    fn set_header_value(
        kind: i32,
        name: *const u8,
        name_len: i32,
        value: *const u8,
        value_len: i32,
    );
    fn remove_header(kind: i32, name: *const u8, name_len: i32);
}

/// `header_kind` of the request headers.
const REQUEST: i32 = 0;
/// The most the guest reads of one host value. Traefik refuses request heads over 1 MiB
/// (`maxHeaderBytes`), so nothing legitimate is longer.
const MAX_VALUE: usize = 1 << 20;
/// First buffer sizes: most values fit, a longer one costs a second call of the announced size.
const FIRST_SHORT: usize = 256;
const FIRST_HEADER: usize = 1024;

/// Reads a host string with `call(buf, limit) -> length`: into a buffer of `first` bytes, again
/// into one of the announced length when it did not fit. A negative or absurd length reads as
/// empty rather than trapping.
fn read_into(first: usize, mut call: impl FnMut(&mut [u8]) -> i64) -> Vec<u8> {
    let mut buf = vec![0u8; first];
    let mut len = clamp(call(&mut buf));
    if len > buf.len() {
        buf.resize(len, 0);
        // The value may have changed in between: never trust a length beyond the buffer.
        len = clamp(call(&mut buf)).min(buf.len());
    }
    buf.truncate(len);
    buf
}

/// As [`read_into`], for the calls that answer `count << 32 | length` (a list of `count`
/// NUL-terminated strings): the bytes and the count.
fn read_list(mut call: impl FnMut(&mut [u8]) -> i64) -> (usize, Vec<u8>) {
    let mut count = 0;
    let buf = read_into(FIRST_HEADER, |buf| {
        let r = call(buf);
        count = usize::try_from(r >> 32).unwrap_or(0);
        r & 0xffff_ffff
    });
    (count, buf)
}

fn clamp(len: i64) -> usize {
    usize::try_from(len).map_or(0, |l| if l > MAX_VALUE { 0 } else { l })
}

fn limit(buf: &[u8]) -> i32 {
    i32::try_from(buf.len()).unwrap_or(i32::MAX)
}

/// Bytes to `String` without a copy when they are UTF-8 (the usual case); invalid sequences become
/// U+FFFD.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A header name in Go's canonical form (`x-forwarded-user` → `X-Forwarded-User`), so the
/// host's `http.Header` finds it without canonicalising it into a new string. Names with a byte
/// Go would not canonicalise (not an RFC 9110 token character) are passed as they are, which is
/// what Go does with them too.
fn canonical(name: &str, out: &mut [u8; 64]) -> Option<usize> {
    let b = name.as_bytes();
    if b.len() > out.len()
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c))
    {
        return None;
    }
    let mut upper = true;
    for (o, &c) in out.iter_mut().zip(b) {
        *o = if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        };
        upper = c == b'-';
    }
    Some(b.len())
}

/// Calls `f` with the canonical form of `name` (or `name` itself).
fn with_name<R>(name: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; 64];
    match canonical(name, &mut buf) {
        Some(n) => f(&buf[..n]),
        None => f(name.as_bytes()),
    }
}

/// The NUL-terminated values of a request header, and how many there are.
fn header_raw(name: &str) -> (usize, Vec<u8>) {
    with_name(name, |n| {
        read_list(|buf| {
            // SAFETY: `n` is readable and `buf` writable for the lengths passed; the host writes
            // at most `buf_limit` bytes.
            unsafe {
                get_header_values(
                    REQUEST,
                    n.as_ptr(),
                    len32(n.len()),
                    buf.as_mut_ptr(),
                    limit(buf),
                )
            }
        })
    })
}

fn len32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The current request and response as the http-wasm host exposes them.
pub struct WasmExchange<'a> {
    resp: &'a Response,
    req: &'a Request,
}

impl<'a> WasmExchange<'a> {
    /// Wraps the host's request and response.
    pub fn new(req: &'a Request, resp: &'a Response) -> Self {
        Self { resp, req }
    }
}

impl Exchange for WasmExchange<'_> {
    fn method(&self) -> String {
        // SAFETY: `buf` is writable for the length passed.
        text(read_into(16, |buf| {
            i64::from(unsafe { get_method(buf.as_mut_ptr(), limit(buf)) })
        }))
    }

    fn uri(&self) -> String {
        // SAFETY: `buf` is writable for the length passed.
        text(read_into(FIRST_SHORT, |buf| {
            i64::from(unsafe { get_uri(buf.as_mut_ptr(), limit(buf)) })
        }))
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        let (count, mut buf) = header_raw(name);
        if count == 0 {
            return Vec::new();
        }
        if count == 1 && buf.last() == Some(&0) {
            buf.pop();
            return vec![text(buf)];
        }
        // The buffer holds `count` NUL-terminated values.
        let mut values: Vec<String> = buf.split(|&b| b == 0).map(|v| text(v.to_vec())).collect();
        values.truncate(count);
        values
    }

    fn header(&self, name: &str) -> Option<String> {
        let (count, mut buf) = header_raw(name);
        if count == 0 {
            return None;
        }
        // One value (the usual case): it is the buffer up to its terminating NUL, taken without
        // a copy; several: the first.
        if count == 1 && buf.last() == Some(&0) {
            buf.pop();
        } else {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            buf.truncate(end);
        }
        Some(text(buf))
    }

    fn header_names(&self, visit: &mut dyn FnMut(&str)) {
        let (count, buf) = read_list(|buf| {
            // SAFETY: `buf` is writable for the length passed; the host writes at most
            // `buf_limit` bytes.
            unsafe { get_header_names(REQUEST, buf.as_mut_ptr(), limit(buf)) }
        });
        // `count` NUL-terminated names; one that is not UTF-8 cannot be an identity header's.
        for name in buf.split(|&b| b == 0).take(count) {
            if let Ok(n) = std::str::from_utf8(name) {
                visit(n);
            }
        }
    }

    fn source_addr(&self) -> String {
        text(read_into(FIRST_SHORT, |buf| {
            // SAFETY: `buf` is writable for the length passed.
            i64::from(unsafe { get_source_addr(buf.as_mut_ptr(), limit(buf)) })
        }))
    }

    fn read_body(&self, limit: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in self.req.body.read_iter() {
            if out.len() + chunk.len() > limit {
                return None;
            }
            out.extend_from_slice(&chunk);
        }
        Some(out)
    }

    fn set_header(&self, name: &str, value: &str) {
        with_name(name, |n| {
            // SAFETY: both slices are readable for the lengths passed; the host only reads them.
            unsafe {
                set_header_value(
                    REQUEST,
                    n.as_ptr(),
                    len32(n.len()),
                    value.as_ptr(),
                    len32(value.len()),
                );
            }
        });
    }

    fn remove_header(&self, name: &str) {
        // SAFETY: `n` is readable for the length passed; the host only reads it.
        with_name(name, |n| unsafe {
            remove_header(REQUEST, n.as_ptr(), len32(n.len()))
        });
    }

    fn add_response_header(&self, name: &str, value: &str) {
        self.resp.header.add(name.as_bytes(), value.as_bytes());
    }

    fn send(&self, status: u16, headers: &[(String, String)], body: &[u8]) {
        // Without the buffer-response feature the host writes the head when the status is set:
        // every header first, then the status, then the body.
        for (k, v) in headers {
            self.resp.header.add(k.as_bytes(), v.as_bytes());
        }
        self.resp.set_status(i32::from(status));
        if !body.is_empty() {
            self.resp.body.write(body);
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        host_log(level, message);
    }
}

/// Writes a line through Traefik's logger (usable outside a request, e.g. at start-up).
pub fn host_log(level: LogLevel, message: &str) {
    log::write(level as i32, crate::http::log_line(message).as_bytes());
}
