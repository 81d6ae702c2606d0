//! A small HTTP/1.1 client for the identity provider's endpoints (discovery, JWKS, token,
//! revocation): one request per connection (`Connection: close`), `Content-Length` or chunked
//! bodies, bounded sizes, timeouts from the [`Dialer`]'s streams, TLS through [`super::tls`].
//!
//! Used by the Traefik artifact over WasmEdge sockets and natively in tests over `std::net`.
//! The bridge artifact asks the host instead (`http_fetch` in `wit/`), behind the same
//! [`Fetch`] trait.

use std::io::{Read, Write as _};

use crate::http::url::Url;

/// An HTTP request to the identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Extra headers (Host, Content-Length and Connection are set by the client).
    pub headers: Vec<(String, String)>,
    /// Body (for POST).
    pub body: Vec<u8>,
    /// Overall time budget in milliseconds (connect + each read/write).
    pub timeout_ms: u64,
}

impl HttpRequest {
    /// A GET with `Accept: application/json`.
    pub fn get_json(url: &str, timeout_ms: u64) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            headers: vec![("Accept".into(), "application/json".into())],
            body: Vec::new(),
            timeout_ms,
        }
    }

    /// A form POST with `Accept: application/json`.
    pub fn post_form(url: &str, body: String, timeout_ms: u64) -> Self {
        Self {
            method: "POST".into(),
            url: url.into(),
            headers: vec![
                ("Accept".into(), "application/json".into()),
                (
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
            ],
            body: body.into_bytes(),
            timeout_ms,
        }
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order, names as received.
    pub headers: Vec<(String, String)>,
    /// Body (already de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the media type is JSON (`application/json` or `application/*+json`).
    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .map(|ct| {
                let mt = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mt == "application/json"
                    || (mt.starts_with("application/") && mt.ends_with("+json"))
            })
            .unwrap_or(false)
    }
}

/// Why a fetch failed (transport level; HTTP error statuses are responses).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// Bad URL.
    Url(String),
    /// Could not connect or the connection broke.
    Connect(String),
    /// TLS failed (handshake, certificate).
    Tls(String),
    /// No answer in time.
    Timeout,
    /// The response is not valid HTTP/1.x or exceeds the limits.
    Protocol(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Url(s) => write!(f, "bad URL: {s}"),
            FetchError::Connect(s) => write!(f, "connection failed: {s}"),
            FetchError::Tls(s) => write!(f, "TLS failed: {s}"),
            FetchError::Timeout => f.write_str("timed out"),
            FetchError::Protocol(s) => write!(f, "invalid HTTP response: {s}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Something that performs HTTP requests for the plugin.
pub trait Fetch {
    /// Performs `req`. No connection outlives the call (sockets cannot outlive a request under
    /// Traefik).
    ///
    /// # Errors
    /// [`FetchError`] for transport failures.
    fn fetch(&mut self, req: &HttpRequest) -> Result<HttpResponse, FetchError>;
}

/// Largest response body accepted (JWKS and discovery documents are a few KB).
pub const MAX_BODY: usize = 1 << 20;
const MAX_HEAD: usize = 64 * 1024;

/// Writes `req` to `stream` and reads the response.
///
/// # Errors
/// [`FetchError`] when writing, reading or parsing fails.
pub fn exchange(
    stream: &mut dyn super::Stream,
    url: &Url,
    req: &HttpRequest,
) -> Result<HttpResponse, FetchError> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method,
        url.target(),
        url.authority()
    );
    for (k, v) in &req.headers {
        if k.bytes().any(|b| b == b'\r' || b == b'\n' || b == b':')
            || v.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            return Err(FetchError::Protocol("header with CR/LF".into()));
        }
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if req.method != "GET" || !req.body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("User-Agent: oidc-guard\r\nConnection: close\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&req.body);
    // The whole exchange, not only each read, is bounded by the request's timeout.
    let mut stream = super::Deadline::new(
        stream,
        std::time::Duration::from_millis(req.timeout_ms.max(1)),
    );
    stream.write_all(&out).map_err(io_err)?;
    stream.flush().map_err(io_err)?;
    read_response(&mut stream, req.method == "HEAD")
}

fn io_err(e: std::io::Error) -> FetchError {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => FetchError::Timeout,
        _ => FetchError::Connect(e.to_string()),
    }
}

/// Reads and parses one response from `r` (the connection is closed afterwards).
///
/// # Errors
/// [`FetchError`] when the bytes are not a valid, bounded HTTP/1.x response.
pub fn read_response(r: &mut dyn Read, head_only: bool) -> Result<HttpResponse, FetchError> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    // Read until the end of the head.
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(FetchError::Protocol("response head too large".into()));
        }
        let n = r.read(&mut chunk).map_err(io_err)?;
        if n == 0 {
            return Err(FetchError::Protocol(
                "connection closed before the response head".into(),
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = std::str::from_utf8(buf.get(..head_end).unwrap_or_default())
        .map_err(|_| FetchError::Protocol("response head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(FetchError::Protocol("not an HTTP/1.x status line".into()));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| FetchError::Protocol("bad status code".into()))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| FetchError::Protocol("header line without colon".into()))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let mut rest = buf.split_off(head_end + 4);
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        resp.body = read_chunked(r, rest)?;
        return Ok(resp);
    }
    let length = match resp.header("content-length") {
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| FetchError::Protocol("bad Content-Length".into()))?,
        ),
        None => None,
    };
    if let Some(len) = length {
        if len > MAX_BODY {
            return Err(FetchError::Protocol("response body too large".into()));
        }
        while rest.len() < len {
            let n = r.read(&mut chunk).map_err(io_err)?;
            if n == 0 {
                return Err(FetchError::Protocol("connection closed mid-body".into()));
            }
            rest.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        rest.truncate(len);
    } else {
        // Delimited by the end of the connection.
        loop {
            let n = r.read(&mut chunk).map_err(io_err)?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if rest.len() > MAX_BODY {
                return Err(FetchError::Protocol("response body too large".into()));
            }
        }
    }
    resp.body = rest;
    Ok(resp)
}

fn read_chunked(r: &mut dyn Read, mut buf: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut pos = 0usize;
    let mut fill = |buf: &mut Vec<u8>| -> Result<(), FetchError> {
        let n = r.read(&mut chunk).map_err(io_err)?;
        if n == 0 {
            return Err(FetchError::Protocol("connection closed mid-chunk".into()));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if buf.len() > MAX_BODY + MAX_HEAD {
            return Err(FetchError::Protocol("response body too large".into()));
        }
        Ok(())
    };
    loop {
        // The size line: hex digits, optional extensions. Its end is searched only in the bytes
        // not searched yet, and it is bounded, so a peer that never ends it costs linear work.
        let mut searched = pos;
        let line_end = loop {
            let from = searched.saturating_sub(1).max(pos);
            if let Some(i) = find(buf.get(from..).unwrap_or_default(), b"\r\n") {
                break from + i;
            }
            if buf.len() - pos > MAX_CHUNK_LINE {
                return Err(FetchError::Protocol("chunk size line too long".into()));
            }
            searched = buf.len();
            fill(&mut buf)?;
        };
        let line = std::str::from_utf8(buf.get(pos..line_end).unwrap_or_default())
            .map_err(|_| FetchError::Protocol("bad chunk size".into()))?;
        let size = chunk_size(line.split(';').next().unwrap_or("").trim())
            .ok_or_else(|| FetchError::Protocol("bad chunk size".into()))?;
        pos = line_end + 2;
        if size == 0 {
            return Ok(body);
        }
        // Checked arithmetic: a size near usize::MAX must not wrap the bounds below (a wrapped
        // `pos + size` pointed back at the same size line and looped forever without reading).
        if size > MAX_BODY.saturating_sub(body.len()) {
            return Err(FetchError::Protocol("response body too large".into()));
        }
        let end = pos + size; // both ≤ MAX_BODY + MAX_HEAD + MAX_CHUNK_LINE: no overflow
        while buf.len() < end + 2 {
            fill(&mut buf)?;
        }
        body.extend_from_slice(buf.get(pos..end).unwrap_or_default());
        if buf.get(end..end + 2) != Some(b"\r\n") {
            return Err(FetchError::Protocol("chunk not followed by CRLF".into()));
        }
        pos = end + 2;
    }
}

/// The longest chunk-size line accepted (size plus extensions).
const MAX_CHUNK_LINE: usize = 1024;

/// A chunk size: 1–8 hex digits (RFC 9112 §7.1; no sign, nothing a body under `MAX_BODY` needs
/// more digits for).
fn chunk_size(hex: &str) -> Option<usize> {
    if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A [`Fetch`] with no network (native builds without injected parts): every request fails.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unreachable;

impl Fetch for Unreachable {
    fn fetch(&mut self, _req: &HttpRequest) -> Result<HttpResponse, FetchError> {
        Err(FetchError::Connect("no network in this build".into()))
    }
}

/// [`Fetch`] over a [`super::Dialer`] (WasmEdge sockets in the Traefik artifact, `std::net` in
/// tests), with TLS from [`super::tls`] for `https` URLs. One connection per request.
pub struct NetFetch {
    dialer: Box<dyn super::Dialer>,
    tls: Option<super::tls::TlsConfig>,
    tls_error: Option<String>,
}

impl NetFetch {
    /// A client trusting the public roots plus `ca_pem`; `insecure_skip_verify` turns
    /// certificate checks off (tests only). A TLS configuration that cannot be built is reported
    /// on the first `https` request rather than here.
    pub fn new(
        dialer: Box<dyn super::Dialer>,
        ca_pem: Option<Vec<u8>>,
        insecure_skip_verify: bool,
    ) -> Self {
        let mut opts = super::tls::TlsOptions::new();
        opts.ca_pem = ca_pem.filter(|c| !c.is_empty());
        opts.insecure_skip_verify = insecure_skip_verify;
        match super::tls::TlsConfig::new(&opts) {
            Ok(t) => NetFetch {
                dialer,
                tls: Some(t),
                tls_error: None,
            },
            Err(e) => NetFetch {
                dialer,
                tls: None,
                tls_error: Some(e.to_string()),
            },
        }
    }
}

impl Fetch for NetFetch {
    fn fetch(&mut self, req: &HttpRequest) -> Result<HttpResponse, FetchError> {
        let url = Url::parse(&req.url).map_err(|e| FetchError::Url(e.to_string()))?;
        let t = std::time::Duration::from_millis(req.timeout_ms.max(1));
        let timeouts = super::Timeouts {
            connect: t,
            read: t,
            write: t,
        };
        let mut stream = self
            .dialer
            .dial(&url.host, url.port, &timeouts)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    FetchError::Timeout
                }
                _ => FetchError::Connect(format!("{}:{}: {e}", url.host, url.port)),
            })?;
        if url.is_https() {
            let tls = self
                .tls
                .as_ref()
                .ok_or_else(|| FetchError::Tls(self.tls_error.clone().unwrap_or_default()))?;
            let budget = std::time::Duration::from_millis(req.timeout_ms.max(1));
            let mut s = tls
                .connect(&url.host, stream, budget)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                        FetchError::Timeout
                    }
                    _ => FetchError::Tls(e.to_string()),
                })?;
            exchange(&mut s, &url, req)
        } else {
            exchange(&mut stream, &url, req)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn parse(bytes: &[u8]) -> Result<HttpResponse, FetchError> {
        read_response(&mut &bytes[..], false)
    }

    #[test]
    fn content_length_and_chunked() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{}");
        assert!(r.is_json());
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope"[..]));
    }

    #[test]
    fn chunk_sizes_that_would_wrap_or_never_end_are_refused() {
        let mut big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n".to_vec();
        big.extend_from_slice(&[b'a'; 100]);
        for size in [
            "FFFFFFF4",
            "FFFFFFFFFFFFFFEC",
            "+5",
            "-1",
            " ",
            "0x10",
            "123456789",
        ] {
            let mut b = big.clone();
            b.extend_from_slice(format!("\r\n{size}\r\n").as_bytes());
            b.extend_from_slice(&[b'b'; 64]);
            let err = parse(&b).unwrap_err();
            assert!(matches!(err, FetchError::Protocol(_)), "{size}: {err:?}");
        }
        // A size line that never ends: refused once it passes its bound, not read to MAX_BODY.
        let mut b = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1".to_vec();
        b.extend_from_slice(&vec![b'0'; MAX_BODY]);
        let err = parse(&b).unwrap_err();
        assert!(format!("{err:?}").contains("too long"), "{err:?}");
        // A CRLF split across two reads is still found.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(out.len()).min(3);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let raw =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n";
        let r = read_response(&mut Dribble(raw), false).unwrap();
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn refuses_garbage() {
        for b in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 999 X\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200",
        ] {
            assert!(parse(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(parse(huge.as_bytes()).is_err());
    }
}
