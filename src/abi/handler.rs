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

/// Reads a host string with `call(ptr, limit) -> length`: into a buffer of `first` bytes, again
/// into one of the announced length when it did not fit. A negative or absurd length reads as
/// empty rather than trapping.
///
/// The buffer is not zeroed first: the host writes the value into it, and only the bytes it
/// wrote are kept. (Zeroing the 1 KiB header buffer was a `calloc` and a `memory.fill` per read,
/// which wazero runs as a loop of `memmove` calls.)
fn read_into(first: usize, mut call: impl FnMut(*mut u8, i32) -> i64) -> Vec<u8> {
    let mut buf: Vec<u8> = Vec::with_capacity(first);
    let mut len = clamp(call(buf.as_mut_ptr(), limit(buf.capacity())));
    if len > buf.capacity() {
        buf.reserve_exact(len);
        len = clamp(call(buf.as_mut_ptr(), limit(buf.capacity())));
        if len > buf.capacity() {
            // Grown again in between (the host wrote nothing): read as empty.
            len = 0;
        }
    }
    // SAFETY: the http-wasm ABI: a call answering a length no larger than `buf_limit` has written
    // exactly that many bytes at `buf`; `len` is at most the capacity either way.
    unsafe { buf.set_len(len) };
    buf
}

/// As [`read_into`], for the calls that answer `count << 32 | length` (a list of `count`
/// NUL-terminated strings): the bytes and the count.
fn read_list(mut call: impl FnMut(*mut u8, i32) -> i64) -> (usize, Vec<u8>) {
    let mut count = 0;
    let buf = read_into(FIRST_HEADER, |ptr, lim| {
        let r = call(ptr, lim);
        count = usize::try_from(r >> 32).unwrap_or(0);
        r & 0xffff_ffff
    });
    (count, buf)
}

fn clamp(len: i64) -> usize {
    usize::try_from(len).map_or(0, |l| if l > MAX_VALUE { 0 } else { l })
}

fn limit(capacity: usize) -> i32 {
    i32::try_from(capacity).unwrap_or(i32::MAX)
}

/// Bytes to `String` without a copy when they are UTF-8 (the usual case); invalid sequences become
/// U+FFFD.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Calls `f` with the canonical form of `name` (or `name` itself).
fn with_name<R>(name: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; 64];
    match crate::http::canonical_name(name, &mut buf) {
        Some(n) => f(&buf[..n]),
        None => f(name.as_bytes()),
    }
}

/// The NUL-terminated values of a request header, and how many there are.
fn header_raw(name: &str) -> (usize, Vec<u8>) {
    with_name(name, |n| {
        read_list(|buf, lim| {
            // SAFETY: `n` is readable and `buf` writable for the lengths passed; the host writes
            // at most `buf_limit` bytes.
            unsafe { get_header_values(REQUEST, n.as_ptr(), len32(n.len()), buf, lim) }
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

// The methods are inherent so that the request pipeline, which is compiled against this type
// in the plugin (`crate::http::Ex`), calls them directly without importing the trait; the trait
// impl below only forwards.
impl WasmExchange<'_> {
    /// The request method.
    pub fn method(&self) -> String {
        // SAFETY: `buf` is writable for the length passed.
        text(read_into(16, |buf, lim| {
            i64::from(unsafe { get_method(buf, lim) })
        }))
    }

    /// The request target (path and query).
    pub fn uri(&self) -> String {
        // SAFETY: `buf` is writable for the length passed.
        text(read_into(FIRST_SHORT, |buf, lim| {
            i64::from(unsafe { get_uri(buf, lim) })
        }))
    }

    /// Every value of request header `name`.
    pub fn header_values(&self, name: &str) -> Vec<String> {
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

    /// The first value of request header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
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

    /// Calls `visit` with every request header name.
    pub fn header_names(&self, visit: &mut dyn FnMut(&str)) {
        let (count, buf) = read_list(|buf, lim| {
            // SAFETY: `buf` is writable for the length passed; the host writes at most
            // `buf_limit` bytes.
            unsafe { get_header_names(REQUEST, buf, lim) }
        });
        // `count` NUL-terminated names; one that is not UTF-8 cannot be an identity header's.
        for name in buf.split(|&b| b == 0).take(count) {
            if let Ok(n) = std::str::from_utf8(name) {
                visit(n);
            }
        }
    }

    /// The client address, `ip:port`.
    pub fn source_addr(&self) -> String {
        text(read_into(FIRST_SHORT, |buf, lim| {
            // SAFETY: `buf` is writable for the length passed.
            i64::from(unsafe { get_source_addr(buf, lim) })
        }))
    }

    /// The request body, `None` when longer than `limit`.
    pub fn read_body(&self, limit: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in self.req.body.read_iter() {
            if out.len() + chunk.len() > limit {
                return None;
            }
            out.extend_from_slice(&chunk);
        }
        Some(out)
    }

    /// Sets (replaces) a request header.
    pub fn set_header(&self, name: &str, value: &str) {
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

    /// Removes a request header.
    pub fn remove_header(&self, name: &str) {
        // SAFETY: `n` is readable for the length passed; the host only reads it.
        with_name(name, |n| unsafe {
            remove_header(REQUEST, n.as_ptr(), len32(n.len()))
        });
    }

    /// Adds a response header.
    pub fn add_response_header(&self, name: &str, value: &str) {
        self.resp.header.add(name.as_bytes(), value.as_bytes());
    }

    /// Sends the response: headers, status, body.
    pub fn send(&self, status: u16, headers: &[(String, String)], body: &[u8]) {
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

    /// Writes a line to Traefik's log.
    pub fn log(&self, level: LogLevel, message: &str) {
        host_log(level, message);
    }
}

impl Exchange for WasmExchange<'_> {
    fn method(&self) -> String {
        WasmExchange::method(self)
    }

    fn uri(&self) -> String {
        WasmExchange::uri(self)
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        WasmExchange::header_values(self, name)
    }

    fn header(&self, name: &str) -> Option<String> {
        WasmExchange::header(self, name)
    }

    fn header_names(&self, visit: &mut dyn FnMut(&str)) {
        WasmExchange::header_names(self, visit);
    }

    fn source_addr(&self) -> String {
        WasmExchange::source_addr(self)
    }

    fn read_body(&self, limit: usize) -> Option<Vec<u8>> {
        WasmExchange::read_body(self, limit)
    }

    fn set_header(&self, name: &str, value: &str) {
        WasmExchange::set_header(self, name, value);
    }

    fn remove_header(&self, name: &str) {
        WasmExchange::remove_header(self, name);
    }

    fn add_response_header(&self, name: &str, value: &str) {
        WasmExchange::add_response_header(self, name, value);
    }

    fn send(&self, status: u16, headers: &[(String, String)], body: &[u8]) {
        WasmExchange::send(self, status, headers, body);
    }

    fn log(&self, level: LogLevel, message: &str) {
        WasmExchange::log(self, level, message);
    }
}

/// Writes a line through Traefik's logger (usable outside a request, e.g. at start-up).
pub fn host_log(level: LogLevel, message: &str) {
    log::write(level as i32, crate::http::log_line(message).as_bytes());
}
