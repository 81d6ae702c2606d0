//! [`Exchange`] over the http-wasm host, and the plugin's two exports.
//!
//! Everything goes through the `http_handler` imports declared below, with no guest library in
//! between: under Traefik's wazero each pass over a byte costs ≈ 2.5 ns and an indirect call can
//! cost up to ≈ 1 µs (its three dependent loads miss the caches between two requests on an
//! instance), and the `http-wasm-guest` crate made both kinds of cost per request: three passes
//! per value read (a NUL split, a copy into a box, a copy into a `String`) and a `Box<dyn Guest>`
//! call in each export. Here the host writes straight into the buffer that becomes the `String`
//! (one pass: the UTF-8 check), and [`http_wasm_exports!`](crate::http_wasm_exports) calls the
//! plugin directly. Header names are sent as the caller spells them, without a pass over their
//! bytes here: the pipeline names headers in Go's canonical form (`Authorization`, the configured
//! identity headers canonicalised once at start-up), which the host's Go `http.Header` takes as
//! it is, without the new allocation a lower-case name costs it. See BENCHMARKS.md ("guest code
//! per request").
#![allow(unsafe_code)]

use std::marker::PhantomData;

use crate::http::{Exchange, LogLevel};

// The http-wasm host functions (the ABI of http-wasm 0.x; Traefik's `http-wasm-host-go`).
#[link(wasm_import_module = "http_handler")]
extern "C" {
    fn log(level: i32, buf: *const u8, len: i32);
    fn get_config(buf: *mut u8, buf_limit: i32) -> i32;
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
    fn add_header_value(
        kind: i32,
        name: *const u8,
        name_len: i32,
        value: *const u8,
        value_len: i32,
    );
    fn remove_header(kind: i32, name: *const u8, name_len: i32);
    fn read_body(kind: i32, buf: *mut u8, buf_limit: i32) -> i64;
    fn write_body(kind: i32, body: *const u8, len: i32);
    fn set_status_code(code: i32);
}

// The WASI wall clock, read directly: through `std::time::SystemTime` a reading went through
// wasi-libc's `clock_gettime`, a `timespec`, a checked subtraction and a 128-bit division, ≈ 5 %
// of the guest's time on a cached bearer request under wazero. (The same import wasi-libc uses.)
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    #[link_name = "clock_time_get"]
    fn wasi_clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
}

/// WASI `CLOCKID_REALTIME`.
const CLOCK_REALTIME: u32 = 0;

/// Wall-clock nanoseconds since the Unix epoch; `None` when the host refuses the reading.
pub fn wall_clock_ns() -> Option<u64> {
    let mut t = 0u64;
    // SAFETY: `t` is writable for the 8 bytes the call writes.
    let errno = unsafe { wasi_clock_time_get(CLOCK_REALTIME, 1, &mut t) };
    (errno == 0).then_some(t)
}

/// Defines the exports the http-wasm host calls per request, `handle_request` and
/// `handle_response`, around `$handle: fn(&WasmExchange) -> bool` (whether the request goes on
/// to the next handler). A macro because only the plugin's binary may define them (the test
/// guests link this library next to their own exports), and because a call through a registered
/// function pointer or trait object is the indirect call this module exists to avoid.
#[macro_export]
macro_rules! http_wasm_exports {
    ($handle:path) => {
        /// http-wasm: called once per request; answers `req_ctx << 32 | next`.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn handle_request() -> i64 {
            // A new request: clock readings kept by the last one are stale.
            $crate::clock::begin_request();
            // req_ctx is always 0: `handle_response` needs no context, and when `next` is false
            // a non-zero req_ctx keeps the host from returning the instance to its pool.
            i64::from($handle(&$crate::abi::handler::WasmExchange::new()))
        }

        /// http-wasm: called after the next handler when `handle_request` answered `next`; the
        /// plugin changes nothing in responses it passed on.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn handle_response(_req_ctx: i32, _is_error: i32) {}
    };
}

/// `header_kind` / `body_kind` of the request.
const REQUEST: i32 = 0;
/// `header_kind` / `body_kind` of the response.
const RESPONSE: i32 = 1;
/// The most the guest reads of one host value. Traefik refuses request heads over 1 MiB
/// (`maxHeaderBytes`), so nothing legitimate is longer.
const MAX_VALUE: usize = 1 << 20;
/// First buffer sizes: most values fit, a longer one costs a second call of the announced size.
const FIRST_SHORT: usize = 256;
const FIRST_HEADER: usize = 1024;
const FIRST_CONFIG: usize = 4096;
/// The most the guest reads of its configuration (inline JWKS and key files can be large).
const MAX_CONFIG: usize = 16 << 20;
/// Request bodies are read in chunks of this size.
const BODY_CHUNK: usize = 4096;

/// Reads a host string with `call(ptr, limit) -> length`: into a buffer of `first` bytes, again
/// into one of the announced length when it did not fit. A negative or absurd length reads as
/// empty rather than trapping.
///
/// The buffer is not zeroed first: the host writes the value into it, and only the bytes it
/// wrote are kept. (Zeroing the 1 KiB header buffer was a `calloc` and a `memory.fill` per read,
/// which wazero runs as a loop of `memmove` calls.)
fn read_into(first: usize, call: impl FnMut(*mut u8, i32) -> i64) -> Vec<u8> {
    read_into_max(first, MAX_VALUE, call)
}

/// As [`read_into`], with `max` in place of [`MAX_VALUE`].
fn read_into_max(first: usize, max: usize, call: impl FnMut(*mut u8, i32) -> i64) -> Vec<u8> {
    read_reusing(Vec::new(), first, max, call)
}

/// As [`read_into_max`], into `buf`'s allocation (its contents are dropped): a request's
/// buffers are kept for the next request, which then allocates nothing (a `dlmalloc`/`dlfree`
/// pair cost ≈ 0.5 µs under Traefik, its bookkeeping cold in the caches between requests).
fn read_reusing(
    mut buf: Vec<u8>,
    first: usize,
    max: usize,
    mut call: impl FnMut(*mut u8, i32) -> i64,
) -> Vec<u8> {
    let clamp = |len: i64| usize::try_from(len).map_or(0, |l| if l > max { 0 } else { l });
    buf.clear();
    if buf.capacity() < first {
        buf.reserve_exact(first);
    }
    let mut len = clamp(call(buf.as_mut_ptr(), len32(buf.capacity())));
    if len > buf.capacity() {
        buf.reserve_exact(len);
        len = clamp(call(buf.as_mut_ptr(), len32(buf.capacity())));
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
fn read_list(call: impl FnMut(*mut u8, i32) -> i64) -> (usize, Vec<u8>) {
    read_list_reusing(Vec::new(), call)
}

/// As [`read_list`], into `buf`'s allocation (see [`read_reusing`]).
fn read_list_reusing(buf: Vec<u8>, mut call: impl FnMut(*mut u8, i32) -> i64) -> (usize, Vec<u8>) {
    let mut count = 0;
    let buf = read_reusing(buf, FIRST_HEADER, MAX_VALUE, |ptr, lim| {
        let r = call(ptr, lim);
        count = usize::try_from(r >> 32).unwrap_or(0);
        r & 0xffff_ffff
    });
    (count, buf)
}

/// Bytes to `String` without a copy when they are UTF-8 (the usual case); invalid sequences become
/// U+FFFD.
///
/// Header values and targets are ASCII: that is checked eight bytes at a time, four words per
/// step, before the general UTF-8 check, which then runs only on text that holds other bytes.
/// (`String::from_utf8` alone cost ≈ 2.5 wasm operators per byte, ≈ 1 000 per 400-byte token or
/// session cookie, ≈ 17 % of a cached bearer request's.)
fn text(bytes: Vec<u8>) -> String {
    if crate::textkey::is_ascii(&bytes) {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        return unsafe { String::from_utf8_unchecked(bytes) };
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The NUL-terminated values of a request header, and how many there are, into `buf`'s
/// allocation.
fn header_raw_in(name: &str, buf: Vec<u8>) -> (usize, Vec<u8>) {
    read_list_reusing(buf, |buf, lim| {
        // SAFETY: `name` is readable and `buf` writable for the lengths passed; the host writes
        // at most `buf_limit` bytes.
        unsafe { get_header_values(REQUEST, name.as_ptr(), len32(name.len()), buf, lim) }
    })
}

/// Calls a host function taking `(kind, name, value)` as pointer/length pairs. Always inlined:
/// `call` is then a constant and the call direct (a function pointer to an import that survived
/// would be a `call_indirect`, which this module avoids).
#[inline(always)]
fn name_value(
    call: unsafe extern "C" fn(i32, *const u8, i32, *const u8, i32),
    kind: i32,
    name: &[u8],
    value: &[u8],
) {
    // SAFETY: both slices are readable for the lengths passed; the host only reads them.
    unsafe {
        call(
            kind,
            name.as_ptr(),
            len32(name.len()),
            value.as_ptr(),
            len32(value.len()),
        );
    }
}

fn len32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The current request and response as the http-wasm host exposes them (the host knows which
/// request is current: the value only marks that one is).
pub struct WasmExchange<'a>(PhantomData<&'a ()>);

impl WasmExchange<'_> {
    /// The exchange of the request being handled.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl Default for WasmExchange<'_> {
    fn default() -> Self {
        Self::new()
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
        self.uri_in(Vec::new())
    }

    /// The request target, read into `buf`'s allocation.
    pub fn uri_in(&self, buf: Vec<u8>) -> String {
        // SAFETY: `buf` is writable for the length passed.
        text(read_reusing(buf, FIRST_SHORT, MAX_VALUE, |buf, lim| {
            i64::from(unsafe { get_uri(buf, lim) })
        }))
    }

    /// Every value of request header `name`.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.header_values_in(name, Vec::new())
    }

    /// Every value of request header `name`, into `out`'s allocations: the list's, and its first
    /// value's as the buffer the host writes into (a request then allocates nothing for its
    /// `Cookie` header).
    pub fn header_values_in(&self, name: &str, mut out: Vec<String>) -> Vec<String> {
        let buf = if out.is_empty() {
            Vec::new()
        } else {
            out.swap_remove(0).into_bytes()
        };
        out.clear();
        let (count, mut buf) = header_raw_in(name, buf);
        if count == 1 && buf.last() == Some(&0) {
            buf.pop();
            out.push(text(buf));
        } else if count > 0 {
            // The buffer holds `count` NUL-terminated values.
            out.extend(buf.split(|&b| b == 0).take(count).map(|v| text(v.to_vec())));
        }
        out
    }

    /// The first value of request header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_and_count_in(name, Vec::new()).0
    }

    /// The first value of request header `name` and how many values it has, read into `buf`'s
    /// allocation.
    pub fn header_and_count_in(&self, name: &str, buf: Vec<u8>) -> (Option<String>, usize) {
        let (value, count) = self.header_bytes_and_count_in(name, buf);
        (value.map(text), count)
    }

    /// As [`header_and_count_in`](Self::header_and_count_in), the bytes unchecked.
    pub fn header_bytes_and_count_in(&self, name: &str, buf: Vec<u8>) -> (Option<Vec<u8>>, usize) {
        let (count, mut buf) = header_raw_in(name, buf);
        if count == 0 {
            return (None, 0);
        }
        // One value (the usual case): it is the buffer up to its terminating NUL, taken without
        // a copy; several: the first.
        if count == 1 && buf.last() == Some(&0) {
            buf.pop();
        } else {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            buf.truncate(end);
        }
        (Some(buf), count)
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
        let mut chunk = vec![0u8; BODY_CHUNK];
        loop {
            // SAFETY: `chunk` is writable for the length passed; the host writes at most that.
            let r = unsafe { read_body(REQUEST, chunk.as_mut_ptr(), len32(chunk.len())) };
            // `eof << 32 | length`; a length past the buffer is a host fault: read as the end.
            let eof = (r >> 32) != 0;
            let n = usize::try_from(r & 0xffff_ffff)
                .ok()
                .filter(|&n| n <= chunk.len())
                .unwrap_or(0);
            if out.len() + n > limit {
                return None;
            }
            out.extend_from_slice(&chunk[..n]);
            if eof || n == 0 {
                return Some(out);
            }
        }
    }

    /// Sets (replaces) a request header.
    pub fn set_header(&self, name: &str, value: &str) {
        name_value(set_header_value, REQUEST, name.as_bytes(), value.as_bytes());
    }

    /// Removes a request header.
    pub fn remove_header(&self, name: &str) {
        // SAFETY: `name` is readable for the length passed; the host only reads it.
        unsafe { remove_header(REQUEST, name.as_ptr(), len32(name.len())) };
    }

    /// Adds a response header.
    pub fn add_response_header(&self, name: &str, value: &str) {
        name_value(
            add_header_value,
            RESPONSE,
            name.as_bytes(),
            value.as_bytes(),
        );
    }

    /// Sends the response: headers, status, body.
    pub fn send(&self, status: u16, headers: &[(String, String)], body: &[u8]) {
        // Without the buffer-response feature the host writes the head when the status is set:
        // every header first, then the status, then the body.
        for (k, v) in headers {
            self.add_response_header(k, v);
        }
        // SAFETY: plain values; `body` is readable for the length passed and only read.
        unsafe {
            set_status_code(i32::from(status));
            if !body.is_empty() {
                write_body(RESPONSE, body.as_ptr(), len32(body.len()));
            }
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

    fn header_values_in(&self, name: &str, out: Vec<String>) -> Vec<String> {
        WasmExchange::header_values_in(self, name, out)
    }

    fn header(&self, name: &str) -> Option<String> {
        WasmExchange::header(self, name)
    }

    fn uri_in(&self, buf: Vec<u8>) -> String {
        WasmExchange::uri_in(self, buf)
    }

    fn header_and_count_in(&self, name: &str, buf: Vec<u8>) -> (Option<String>, usize) {
        WasmExchange::header_and_count_in(self, name, buf)
    }

    fn header_bytes_and_count_in(&self, name: &str, buf: Vec<u8>) -> (Option<Vec<u8>>, usize) {
        WasmExchange::header_bytes_and_count_in(self, name, buf)
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
    let line = crate::http::log_line(message);
    // SAFETY: `line` is readable for the length passed; the host only reads it.
    unsafe { log(level as i32, line.as_ptr(), len32(line.len())) };
}

/// The middleware's configuration (Traefik's `plugin` block as JSON), empty when the host
/// announces more than [`MAX_CONFIG`] bytes.
pub fn host_config() -> Vec<u8> {
    read_into_max(FIRST_CONFIG, MAX_CONFIG, |buf, lim| {
        // SAFETY: `buf` is writable for the length passed; the host writes at most that.
        i64::from(unsafe { get_config(buf, lim) })
    })
}
