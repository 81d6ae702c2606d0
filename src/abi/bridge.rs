//! The host key/value bridge `oidc_guard_bridge_v1` (wit/README.md), imported by the bridge
//! artifact: the FFI (only with feature `bridge` on wasm32), [`BridgeL2`], an [`L2`] over it
//! that validates every reply, and `fetch` / [`fetch_with`] / `BridgeFetch` (a
//! [`crate::net::http::Fetch`]): one HTTP exchange performed by the host.
//!
//! Nothing the host answers is trusted: an unknown status, a length that is negative, above
//! [`MAX_REPLY`], or that does not fit twice in a row, a TTL below -1, or a fetch document that
//! does not parse, becomes an error ([`StoreError::Protocol`], [`FetchError::Protocol`]) —
//! never a trap and never a value. The raw calls sit behind [`RawBridge`], so these checks are
//! unit-tested natively with a scripted host.
#![allow(unsafe_code)]

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::store::{StoreError, L2};

/// The largest value or response the guest accepts from the host (wit/README.md).
pub const MAX_REPLY: usize = 1 << 20;
/// The longest key the host accepts.
pub const MAX_KEY: usize = 4096;
/// The first buffer size for a value.
const FIRST_VALUE_BUFFER: usize = 1024;
/// The first buffer size for a fetch response.
const FIRST_FETCH_BUFFER: usize = 16 * 1024;

/// Bridge status codes (wit/README.md).
pub mod status {
    /// ok / found / stored / existed.
    pub const OK: i32 = 0;
    /// not found / not stored.
    pub const NOT_FOUND: i32 = 1;
    /// The backing store cannot be reached.
    pub const UNAVAILABLE: i32 = -1;
    /// It did not answer in time.
    pub const TIMEOUT: i32 = -2;
    /// Bad arguments.
    pub const INVALID: i32 = -3;
    /// The value exceeds the host's limit.
    pub const TOO_LARGE: i32 = -4;
    /// Anything else.
    pub const INTERNAL: i32 = -5;
}

/// The raw host calls, one method per import, with the wit/README.md semantics: statuses are
/// returned as-is, out-parameters are written by the host (or not).
pub trait RawBridge {
    /// `kv_get`.
    fn kv_get(&mut self, key: &[u8], buf: &mut [u8], out_len: &mut i32, out_ttl: &mut i64) -> i32;
    /// `kv_set`.
    fn kv_set(&mut self, key: &[u8], value: &[u8], ttl_ms: i64) -> i32;
    /// `kv_set_nx`.
    fn kv_set_nx(&mut self, key: &[u8], value: &[u8], ttl_ms: i64) -> i32;
    /// `kv_delete`.
    fn kv_delete(&mut self, key: &[u8]) -> i32;
    /// `kv_exists`.
    fn kv_exists(&mut self, key: &[u8]) -> i32;
    /// `kv_ttl`.
    fn kv_ttl(&mut self, key: &[u8], out_ttl: &mut i64) -> i32;
    /// `kv_ping`.
    fn kv_ping(&mut self) -> i32;
    /// `http_fetch`.
    fn http_fetch(&mut self, request: &[u8], buf: &mut [u8], out_len: &mut i32) -> i32;
}

#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
mod ffi {
    #[link(wasm_import_module = "oidc_guard_bridge_v1")]
    extern "C" {
        pub fn kv_get(
            key: *const u8,
            key_len: i32,
            buf: *mut u8,
            cap: i32,
            out_len: *mut i32,
            out_ttl: *mut i64,
        ) -> i32;
        pub fn kv_set(
            key: *const u8,
            key_len: i32,
            val: *const u8,
            val_len: i32,
            ttl_ms: i64,
        ) -> i32;
        pub fn kv_set_nx(
            key: *const u8,
            key_len: i32,
            val: *const u8,
            val_len: i32,
            ttl_ms: i64,
        ) -> i32;
        pub fn kv_delete(key: *const u8, key_len: i32) -> i32;
        pub fn kv_exists(key: *const u8, key_len: i32) -> i32;
        pub fn kv_ttl(key: *const u8, key_len: i32, out_ttl: *mut i64) -> i32;
        pub fn kv_ping() -> i32;
        pub fn http_fetch(
            req: *const u8,
            req_len: i32,
            buf: *mut u8,
            cap: i32,
            out_len: *mut i32,
        ) -> i32;
    }
}

/// Lengths handed to the host: every buffer the guest passes is far below `i32::MAX` (keys are
/// checked against [`MAX_KEY`], values and buffers against [`MAX_REPLY`]); anything larger is
/// clamped, and the host can then only read less, never more.
#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
fn len32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The bridge imported from the host (bridge artifact only).
#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
#[derive(Debug, Default, Clone, Copy)]
pub struct HostBridge;

#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
impl RawBridge for HostBridge {
    fn kv_get(&mut self, key: &[u8], buf: &mut [u8], out_len: &mut i32, out_ttl: &mut i64) -> i32 {
        // SAFETY: `key` is readable and `buf` writable for the lengths passed; `out_len` and
        // `out_ttl` are writable; the host writes only inside those ranges (wit/README.md).
        unsafe {
            ffi::kv_get(
                key.as_ptr(),
                len32(key.len()),
                buf.as_mut_ptr(),
                len32(buf.len()),
                out_len,
                out_ttl,
            )
        }
    }

    fn kv_set(&mut self, key: &[u8], value: &[u8], ttl_ms: i64) -> i32 {
        // SAFETY: both slices are readable for the lengths passed; the host only reads them.
        unsafe {
            ffi::kv_set(
                key.as_ptr(),
                len32(key.len()),
                value.as_ptr(),
                len32(value.len()),
                ttl_ms,
            )
        }
    }

    fn kv_set_nx(&mut self, key: &[u8], value: &[u8], ttl_ms: i64) -> i32 {
        // SAFETY: both slices are readable for the lengths passed; the host only reads them.
        unsafe {
            ffi::kv_set_nx(
                key.as_ptr(),
                len32(key.len()),
                value.as_ptr(),
                len32(value.len()),
                ttl_ms,
            )
        }
    }

    fn kv_delete(&mut self, key: &[u8]) -> i32 {
        // SAFETY: `key` is readable for the length passed.
        unsafe { ffi::kv_delete(key.as_ptr(), len32(key.len())) }
    }

    fn kv_exists(&mut self, key: &[u8]) -> i32 {
        // SAFETY: `key` is readable for the length passed.
        unsafe { ffi::kv_exists(key.as_ptr(), len32(key.len())) }
    }

    fn kv_ttl(&mut self, key: &[u8], out_ttl: &mut i64) -> i32 {
        // SAFETY: `key` is readable for the length passed; `out_ttl` is writable.
        unsafe { ffi::kv_ttl(key.as_ptr(), len32(key.len()), out_ttl) }
    }

    fn kv_ping(&mut self) -> i32 {
        // SAFETY: no arguments.
        unsafe { ffi::kv_ping() }
    }

    fn http_fetch(&mut self, request: &[u8], buf: &mut [u8], out_len: &mut i32) -> i32 {
        // SAFETY: `request` is readable and `buf` writable for the lengths passed; `out_len` is
        // writable; the host writes only inside `buf` and to `out_len`.
        unsafe {
            ffi::http_fetch(
                request.as_ptr(),
                len32(request.len()),
                buf.as_mut_ptr(),
                len32(buf.len()),
                out_len,
            )
        }
    }
}

/// Why a sized reply (`kv_get`, `http_fetch`) was refused.
#[derive(Debug)]
enum SizedError {
    Status(i32),
    Protocol(String),
    TooLarge(usize),
}

/// Calls `call` with a buffer of `first` bytes and, if the reply does not fit, once more with a
/// buffer of the announced size. `Ok(None)` when the host answers `1` and `absent_ok`.
fn sized_call<B: RawBridge>(
    raw: &mut B,
    first: usize,
    absent_ok: bool,
    mut call: impl FnMut(&mut B, &mut [u8], &mut i32) -> i32,
) -> Result<Option<Vec<u8>>, SizedError> {
    let mut buf = vec![0u8; first];
    for attempt in 0..2 {
        // -1 marks "not written": a host that answers 0 without a length is refused.
        let mut out_len: i32 = -1;
        match call(raw, &mut buf, &mut out_len) {
            status::OK => {}
            status::NOT_FOUND if absent_ok => return Ok(None),
            s => return Err(SizedError::Status(s)),
        }
        let Ok(len) = usize::try_from(out_len) else {
            return Err(SizedError::Protocol(format!(
                "the host answered a length of {out_len}"
            )));
        };
        if len > MAX_REPLY {
            return Err(SizedError::TooLarge(len));
        }
        if len <= buf.len() {
            buf.truncate(len);
            return Ok(Some(buf));
        }
        if attempt == 1 {
            return Err(SizedError::Protocol(format!(
                "the host announced {len} bytes after announcing {} (does not fit twice)",
                buf.len()
            )));
        }
        buf = vec![0u8; len];
    }
    Err(SizedError::Protocol("unreachable retry state".into()))
}

/// The [`StoreError`] for a bridge status other than ok/absent.
fn status_error(op: &str, s: i32) -> StoreError {
    match s {
        status::UNAVAILABLE => {
            StoreError::Unavailable(format!("bridge {op}: the backing store cannot be reached"))
        }
        status::TIMEOUT => StoreError::Timeout,
        status::INVALID => StoreError::Protocol(format!(
            "bridge {op}: the host refused the arguments as invalid"
        )),
        status::TOO_LARGE => StoreError::TooLarge,
        status::INTERNAL => {
            StoreError::Unavailable(format!("bridge {op}: internal error in the host"))
        }
        other => StoreError::Protocol(format!("bridge {op}: unknown status {other}")),
    }
}

/// A value read through the bridge, with its remaining time to live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The remaining time to live; `None` when the key has no expiry.
    pub ttl: Option<Duration>,
}

/// An [`L2`] over the host bridge. Each method is one host call (two when a value does not fit
/// the first buffer), and the host call is synchronous and private to this instance, so a reply
/// cannot belong to another request; set-if-absent therefore trusts the host's atomic
/// `kv_set_nx` answer without a read-back.
#[derive(Debug)]
pub struct BridgeL2<B: RawBridge> {
    raw: B,
    protocol_errors: u64,
}

/// The [`BridgeL2`] of the bridge artifact.
#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
pub type HostL2 = BridgeL2<HostBridge>;

#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
impl BridgeL2<HostBridge> {
    /// The L2 backed by the host's bridge.
    pub fn host() -> Self {
        Self::new(HostBridge)
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    // At least 1 ms: 0 would mean "no expiry" to the host.
    let ms = ttl.as_nanos().div_ceil(1_000_000).max(1);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

impl<B: RawBridge> BridgeL2<B> {
    /// An L2 over `raw`.
    pub fn new(raw: B) -> Self {
        Self {
            raw,
            protocol_errors: 0,
        }
    }

    /// Replies refused as malformed so far (unknown statuses, bad lengths, bad TTLs).
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors
    }

    fn count<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(r, Err(StoreError::Protocol(_))) {
            self.protocol_errors += 1;
        }
        r
    }

    fn key<'k>(&self, key: &'k str) -> Result<&'k [u8], StoreError> {
        if key.len() > MAX_KEY {
            return Err(StoreError::Protocol(format!(
                "key of {} bytes is longer than the bridge's {MAX_KEY}",
                key.len()
            )));
        }
        Ok(key.as_bytes())
    }

    /// The value under `key` and its remaining time to live.
    ///
    /// # Errors
    /// [`StoreError`] for a failed or malformed reply.
    pub fn get_with_ttl(&mut self, key: &str) -> Result<Option<Entry>, StoreError> {
        let r = self.get_with_ttl_inner(key);
        self.count(r)
    }

    fn get_with_ttl_inner(&mut self, key: &str) -> Result<Option<Entry>, StoreError> {
        let k = self.key(key)?;
        let mut ttl: i64 = i64::MIN;
        let r = sized_call(&mut self.raw, FIRST_VALUE_BUFFER, true, |raw, buf, len| {
            ttl = i64::MIN;
            raw.kv_get(k, buf, len, &mut ttl)
        });
        let value = match r {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(None),
            Err(SizedError::Status(s)) => return Err(status_error("get", s)),
            Err(SizedError::TooLarge(n)) => {
                return Err(StoreError::Protocol(format!(
                    "bridge get: the host announced {n} bytes, more than the {MAX_REPLY} accepted"
                )))
            }
            Err(SizedError::Protocol(m)) => {
                return Err(StoreError::Protocol(format!("bridge get: {m}")))
            }
        };
        let ttl = match ttl {
            -1 => None,
            t if t >= 0 => Some(Duration::from_millis(t.unsigned_abs())),
            t => {
                return Err(StoreError::Protocol(format!(
                    "bridge get: the host answered a TTL of {t} ms"
                )))
            }
        };
        Ok(Some(Entry { value, ttl }))
    }

    fn set_inner(
        &mut self,
        op: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        nx: bool,
    ) -> Result<bool, StoreError> {
        let k = self.key(key)?;
        if value.len() > MAX_REPLY {
            return Err(StoreError::TooLarge);
        }
        let ms = ttl_ms(ttl);
        let s = if nx {
            self.raw.kv_set_nx(k, value, ms)
        } else {
            self.raw.kv_set(k, value, ms)
        };
        match s {
            status::OK => Ok(true),
            status::NOT_FOUND if nx => Ok(false),
            status::NOT_FOUND => Err(StoreError::Protocol(format!(
                "bridge {op}: the host answered 'not stored'"
            ))),
            s => Err(status_error(op, s)),
        }
    }

    fn flag(&mut self, op: &str, s: i32) -> Result<bool, StoreError> {
        let r = match s {
            status::OK => Ok(true),
            status::NOT_FOUND => Ok(false),
            s => Err(status_error(op, s)),
        };
        self.count(r)
    }
}

impl<B: RawBridge> L2 for BridgeL2<B> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_with_ttl(key)?.map(|e| e.value))
    }

    fn set(&mut self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let r = self.set_inner("set", key, value, ttl, false).map(|_| ());
        self.count(r)
    }

    fn set_if_absent(
        &mut self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let r = self.set_inner("set-if-absent", key, value, ttl, true);
        self.count(r)
    }

    fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        let k = self.key(key);
        let k = self.count(k)?;
        let s = self.raw.kv_delete(k);
        self.flag("delete", s)
    }

    fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        let k = self.key(key);
        let k = self.count(k)?;
        let s = self.raw.kv_exists(k);
        self.flag("exists", s)
    }

    fn ttl(&mut self, key: &str) -> Result<Option<Option<Duration>>, StoreError> {
        let k = self.key(key);
        let k = self.count(k)?;
        let mut t: i64 = i64::MIN;
        let r = match self.raw.kv_ttl(k, &mut t) {
            status::OK => match t {
                -1 => Ok(Some(None)),
                t if t >= 0 => Ok(Some(Some(Duration::from_millis(t.unsigned_abs())))),
                t => Err(StoreError::Protocol(format!(
                    "bridge ttl: the host answered a TTL of {t} ms"
                ))),
            },
            status::NOT_FOUND => Ok(None),
            s => Err(status_error("ttl", s)),
        };
        self.count(r)
    }

    fn ping(&mut self) -> Result<Duration, StoreError> {
        let start = now_us();
        let r = match self.raw.kv_ping() {
            status::OK => Ok(Duration::from_micros(
                u64::try_from(now_us().saturating_sub(start)).unwrap_or(u64::MAX),
            )),
            s => Err(status_error("ping", s)),
        };
        self.count(r)
    }
}

/// One HTTP request for the host to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method (`GET`, `POST`).
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Header lines.
    pub headers: Vec<(String, String)>,
    /// Body, if any.
    pub body: Option<Vec<u8>>,
    /// Time the host allows the whole exchange.
    pub timeout: Duration,
}

/// The host's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code (100..=599).
    pub status: u16,
    /// Header lines.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why [`fetch`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// The host could not reach the server.
    Unavailable,
    /// The exchange did not finish in time.
    Timeout,
    /// The host refused the request document.
    Invalid,
    /// The response exceeded the host's or the guest's limit.
    TooLarge,
    /// Anything else in the host.
    Internal,
    /// The host's reply was malformed (unknown status, bad length, bad document).
    Protocol(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Unavailable => f.write_str("fetch: the server could not be reached"),
            FetchError::Timeout => f.write_str("fetch: timed out"),
            FetchError::Invalid => f.write_str("fetch: the host refused the request as invalid"),
            FetchError::TooLarge => f.write_str("fetch: response too large"),
            FetchError::Internal => f.write_str("fetch: internal error in the host"),
            FetchError::Protocol(m) => write!(f, "fetch: malformed reply from the host: {m}"),
        }
    }
}

impl std::error::Error for FetchError {}

#[derive(serde::Serialize)]
struct RequestDoc<'a> {
    method: &'a str,
    url: &'a str,
    headers: &'a [(String, String)],
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(rename = "timeoutMs")]
    timeout_ms: u64,
}

#[derive(serde::Deserialize)]
struct ResponseDoc {
    status: u16,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

/// Performs `req` through `raw`'s `http_fetch`.
///
/// # Errors
/// [`FetchError`]: a transport failure reported by the host, or a malformed reply.
pub fn fetch_with<B: RawBridge>(
    raw: &mut B,
    req: &HttpRequest,
) -> Result<HttpResponse, FetchError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let doc = RequestDoc {
        method: &req.method,
        url: &req.url,
        headers: &req.headers,
        body: req.body.as_ref().map(|b| b64.encode(b)),
        timeout_ms: u64::try_from(req.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let doc = serde_json::to_vec(&doc)
        .map_err(|e| FetchError::Protocol(format!("encoding the request: {e}")))?;
    // The retry sends the identical document: the host serves the response it kept.
    let reply = sized_call(raw, FIRST_FETCH_BUFFER, false, |raw, buf, len| {
        raw.http_fetch(&doc, buf, len)
    });
    let bytes = match reply {
        Ok(Some(b)) => b,
        Ok(None) => return Err(FetchError::Protocol("no response".into())),
        Err(SizedError::Status(s)) => {
            return Err(match s {
                status::UNAVAILABLE => FetchError::Unavailable,
                status::TIMEOUT => FetchError::Timeout,
                status::INVALID => FetchError::Invalid,
                status::TOO_LARGE => FetchError::TooLarge,
                status::INTERNAL => FetchError::Internal,
                other => FetchError::Protocol(format!("unknown status {other}")),
            })
        }
        Err(SizedError::TooLarge(_)) => return Err(FetchError::TooLarge),
        Err(SizedError::Protocol(m)) => return Err(FetchError::Protocol(m)),
    };
    let parsed: ResponseDoc = serde_json::from_slice(&bytes)
        .map_err(|e| FetchError::Protocol(format!("the response document does not parse: {e}")))?;
    if !(100..=599).contains(&parsed.status) {
        return Err(FetchError::Protocol(format!(
            "status {} is not an HTTP status",
            parsed.status
        )));
    }
    let body = b64
        .decode(parsed.body.as_bytes())
        .map_err(|e| FetchError::Protocol(format!("the body is not base64: {e}")))?;
    Ok(HttpResponse {
        status: parsed.status,
        headers: parsed.headers,
        body,
    })
}

/// Performs `req` through the host (bridge artifact only).
///
/// # Errors
/// As [`fetch_with`].
#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
pub fn fetch(req: &HttpRequest) -> Result<HttpResponse, FetchError> {
    fetch_with(&mut HostBridge, req)
}

/// [`crate::net::http::Fetch`] through the host's `http_fetch`: the bridge artifact's way to
/// reach the identity provider (the host does the I/O).
#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
#[derive(Debug, Default, Clone, Copy)]
pub struct BridgeFetch;

#[cfg(all(feature = "bridge", target_arch = "wasm32"))]
impl crate::net::http::Fetch for BridgeFetch {
    fn fetch(
        &mut self,
        req: &crate::net::http::HttpRequest,
    ) -> Result<crate::net::http::HttpResponse, crate::net::http::FetchError> {
        fetch_net(&mut HostBridge, req)
    }
}

/// [`fetch_with`] with the types of [`crate::net::http`].
///
/// # Errors
/// [`crate::net::http::FetchError`]: `Timeout`, `Connect` for a transport failure the host
/// reports, `Protocol` for a malformed reply.
pub fn fetch_net<B: RawBridge>(
    raw: &mut B,
    req: &crate::net::http::HttpRequest,
) -> Result<crate::net::http::HttpResponse, crate::net::http::FetchError> {
    use crate::net::http::FetchError as NetError;
    let r = fetch_with(
        raw,
        &HttpRequest {
            method: req.method.clone(),
            url: req.url.clone(),
            headers: req.headers.clone(),
            body: (!req.body.is_empty()).then(|| req.body.clone()),
            timeout: Duration::from_millis(req.timeout_ms),
        },
    )
    .map_err(|e| match e {
        FetchError::Timeout => NetError::Timeout,
        FetchError::Invalid => NetError::Url(e.to_string()),
        FetchError::Protocol(_) | FetchError::TooLarge => NetError::Protocol(e.to_string()),
        other => NetError::Connect(other.to_string()),
    })?;
    Ok(crate::net::http::HttpResponse {
        status: r.status,
        headers: r.headers,
        body: r.body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::collections::VecDeque;

    /// One scripted answer: status, announced length, bytes written, ttl.
    type Reply = (i32, Option<i32>, Vec<u8>, Option<i64>);

    /// A host that answers from a script.
    #[derive(Default)]
    struct Scripted {
        replies: VecDeque<Reply>,
        calls: Vec<usize>,
    }

    impl Scripted {
        fn then(mut self, status: i32, len: Option<i32>, bytes: &[u8], ttl: Option<i64>) -> Self {
            self.replies.push_back((status, len, bytes.to_vec(), ttl));
            self
        }

        fn next(&mut self, buf: &mut [u8], out_len: &mut i32, out_ttl: Option<&mut i64>) -> i32 {
            self.calls.push(buf.len());
            let (s, len, bytes, ttl) = self.replies.pop_front().expect("unexpected call");
            if let Some(l) = len {
                *out_len = l;
            }
            if bytes.len() <= buf.len() {
                buf[..bytes.len()].copy_from_slice(&bytes);
            }
            if let (Some(t), Some(o)) = (ttl, out_ttl) {
                *o = t;
            }
            s
        }
    }

    impl RawBridge for Scripted {
        fn kv_get(
            &mut self,
            _k: &[u8],
            buf: &mut [u8],
            out_len: &mut i32,
            out_ttl: &mut i64,
        ) -> i32 {
            self.next(buf, out_len, Some(out_ttl))
        }
        fn kv_set(&mut self, _k: &[u8], _v: &[u8], _t: i64) -> i32 {
            self.next(&mut [], &mut 0, None)
        }
        fn kv_set_nx(&mut self, _k: &[u8], _v: &[u8], t: i64) -> i32 {
            assert!(t >= 1, "a TTL of 0 would mean no expiry");
            self.next(&mut [], &mut 0, None)
        }
        fn kv_delete(&mut self, _k: &[u8]) -> i32 {
            self.next(&mut [], &mut 0, None)
        }
        fn kv_exists(&mut self, _k: &[u8]) -> i32 {
            self.next(&mut [], &mut 0, None)
        }
        fn kv_ttl(&mut self, _k: &[u8], out: &mut i64) -> i32 {
            self.next(&mut [], &mut 0, Some(out))
        }
        fn kv_ping(&mut self) -> i32 {
            self.next(&mut [], &mut 0, None)
        }
        fn http_fetch(&mut self, _r: &[u8], buf: &mut [u8], out_len: &mut i32) -> i32 {
            self.next(buf, out_len, None)
        }
    }

    #[test]
    fn get_found_absent_and_ttl() {
        let mut l2 = BridgeL2::new(
            Scripted::default()
                .then(0, Some(3), b"abc", Some(1500))
                .then(1, None, b"", None)
                .then(0, Some(1), b"x", Some(-1)),
        );
        assert_eq!(
            l2.get_with_ttl("k").unwrap(),
            Some(Entry {
                value: b"abc".to_vec(),
                ttl: Some(Duration::from_millis(1500))
            })
        );
        assert_eq!(l2.get("k").unwrap(), None);
        assert_eq!(
            l2.get_with_ttl("k").unwrap(),
            Some(Entry {
                value: b"x".to_vec(),
                ttl: None
            })
        );
    }

    #[test]
    fn get_retries_once_with_the_announced_size() {
        let big = vec![7u8; 5000];
        let mut l2 = BridgeL2::new(
            Scripted::default()
                .then(0, Some(5000), &big, Some(10))
                .then(0, Some(5000), &big, Some(10)),
        );
        assert_eq!(l2.get("k").unwrap(), Some(big));
        assert_eq!(l2.raw.calls, vec![FIRST_VALUE_BUFFER, 5000]);
    }

    #[test]
    fn get_refuses_a_second_mismatch() {
        let mut l2 = BridgeL2::new(Scripted::default().then(0, Some(2000), b"", Some(1)).then(
            0,
            Some(2001),
            b"",
            Some(1),
        ));
        assert!(matches!(l2.get("k"), Err(StoreError::Protocol(_))));
        assert_eq!(l2.protocol_errors(), 1);
    }

    #[test]
    fn get_refuses_bad_lengths_ttls_and_statuses() {
        let mut l2 = BridgeL2::new(
            Scripted::default()
                .then(0, Some(-5), b"", Some(1))
                .then(0, Some((MAX_REPLY + 1) as i32), b"", Some(1))
                .then(0, Some(1), b"a", Some(-7))
                .then(0, None, b"", Some(1))
                .then(42, None, b"", None)
                .then(-1, None, b"", None)
                .then(-2, None, b"", None),
        );
        for _ in 0..5 {
            assert!(
                matches!(l2.get("k"), Err(StoreError::Protocol(_))),
                "malformed reply accepted"
            );
        }
        assert!(matches!(l2.get("k"), Err(StoreError::Unavailable(_))));
        assert_eq!(l2.get("k"), Err(StoreError::Timeout));
        assert_eq!(l2.protocol_errors(), 5);
    }

    #[test]
    fn set_and_flags() {
        let mut l2 = BridgeL2::new(
            Scripted::default()
                .then(0, None, b"", None)
                .then(0, None, b"", None)
                .then(1, None, b"", None)
                .then(1, None, b"", None)
                .then(0, None, b"", None)
                .then(1, None, b"", None)
                .then(9, None, b"", None),
        );
        l2.set("k", b"v", Duration::from_secs(1)).unwrap();
        assert!(l2.set_if_absent("k", b"v", Duration::ZERO).unwrap());
        assert!(!l2
            .set_if_absent("k", b"v", Duration::from_millis(1))
            .unwrap());
        assert!(matches!(
            l2.set("k", b"v", Duration::from_secs(1)),
            Err(StoreError::Protocol(_))
        ));
        assert!(l2.delete("k").unwrap());
        assert!(!l2.exists("k").unwrap());
        assert!(matches!(l2.exists("k"), Err(StoreError::Protocol(_))));
    }

    #[test]
    fn ttl_values() {
        let mut l2 = BridgeL2::new(
            Scripted::default()
                .then(0, None, b"", Some(-1))
                .then(0, None, b"", Some(20))
                .then(1, None, b"", None)
                .then(0, None, b"", Some(-3)),
        );
        assert_eq!(l2.ttl("k").unwrap(), Some(None));
        assert_eq!(l2.ttl("k").unwrap(), Some(Some(Duration::from_millis(20))));
        assert_eq!(l2.ttl("k").unwrap(), None);
        assert!(matches!(l2.ttl("k"), Err(StoreError::Protocol(_))));
    }

    #[test]
    fn long_keys_are_refused_before_the_host() {
        let mut l2 = BridgeL2::new(Scripted::default());
        let k = "k".repeat(MAX_KEY + 1);
        assert!(matches!(l2.get(&k), Err(StoreError::Protocol(_))));
        assert!(l2.raw.calls.is_empty());
    }

    #[test]
    fn ttl_rounds_up_to_a_millisecond() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
    }

    #[test]
    fn fetch_parses_and_validates() {
        let ok = br#"{"status":200,"headers":[["Content-Type","application/json"]],"body":"e30="}"#;
        let mut raw = Scripted::default()
            .then(0, Some(ok.len() as i32), ok, None)
            .then(0, Some(3), b"xyz", None)
            .then(0, Some(22), br#"{"status":9,"body":""}"#, None)
            .then(-2, None, b"", None)
            .then(77, None, b"", None);
        let req = HttpRequest {
            method: "GET".into(),
            url: "http://127.0.0.1:1/x".into(),
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(1),
        };
        let r = fetch_with(&mut raw, &req).unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("content-type")),
            (200, &b"{}"[..], Some("application/json"))
        );
        assert!(matches!(
            fetch_with(&mut raw, &req),
            Err(FetchError::Protocol(_))
        ));
        assert!(matches!(
            fetch_with(&mut raw, &req),
            Err(FetchError::Protocol(_))
        ));
        assert_eq!(fetch_with(&mut raw, &req), Err(FetchError::Timeout));
        assert!(matches!(
            fetch_with(&mut raw, &req),
            Err(FetchError::Protocol(_))
        ));
    }

    #[test]
    fn fetch_net_maps_to_the_http_client_errors() {
        use crate::net::http::{FetchError as NetError, HttpRequest as NetRequest};
        let ok = br#"{"status":201,"headers":[],"body":""}"#;
        let mut raw = Scripted::default()
            .then(0, Some(ok.len() as i32), ok, None)
            .then(-1, None, b"", None)
            .then(-2, None, b"", None)
            .then(0, Some(3), b"xyz", None);
        let req = NetRequest::get_json("http://127.0.0.1:1/x", 1000);
        assert_eq!(fetch_net(&mut raw, &req).unwrap().status, 201);
        assert!(matches!(
            fetch_net(&mut raw, &req),
            Err(NetError::Connect(_))
        ));
        assert_eq!(fetch_net(&mut raw, &req), Err(NetError::Timeout));
        assert!(matches!(
            fetch_net(&mut raw, &req),
            Err(NetError::Protocol(_))
        ));
    }
}
