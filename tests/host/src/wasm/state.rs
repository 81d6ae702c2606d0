//! Per-instance and per-request host state (`Store<InstanceState>`), and the middleware-wide
//! state every instance shares.

use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};

use wasmtime_wasi::p1::WasiP1Ctx;

use super::bridge::{Bridge, Faults};
use super::gohttp::{GoHeader, RequestTarget, ResponseWriter};
use super::sockets::SocketTable;

/// http-wasm features (`api/handler/features.go`).
pub mod feature {
    /// `FeatureBufferRequest`.
    pub const BUFFER_REQUEST: u32 = 1;
    /// `FeatureBufferResponse`.
    pub const BUFFER_RESPONSE: u32 = 2;
    /// `FeatureTrailers`.
    pub const TRAILERS: u32 = 4;
}

/// One line the guest logged through `http_handler.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// http-wasm level: -1 debug, 0 info, 1 warn, 2 error, 3 none (Traefik logs it as fatal).
    pub level: i32,
    /// The message (lossy UTF-8).
    pub message: String,
    /// Which instance logged it.
    pub instance: u64,
}

impl LogRecord {
    /// The level's name as Traefik's logger prints it (zerolog level = http-wasm level + 1).
    pub fn level_name(&self) -> &'static str {
        match self.level {
            -1 => "debug",
            0 => "info",
            1 => "warn",
            2 => "error",
            3 => "fatal",
            _ => "unknown",
        }
    }
}

/// State shared by every instance of one middleware.
pub(crate) struct Shared {
    /// What `get_config` returns.
    pub config: Vec<u8>,
    /// Everything logged through `http_handler.log`.
    pub logs: Mutex<Vec<LogRecord>>,
    /// `middleware.features` (updated by `enable_features` during `_start`).
    pub features: AtomicU32,
    /// The bridge backing.
    pub bridge: Bridge,
    /// Bridge fault injection.
    pub faults: Faults,
    /// Sockets currently open in all instances of this middleware.
    pub open_sockets: Arc<AtomicUsize>,
    /// Sockets ever opened.
    pub sockets_opened: Arc<AtomicUsize>,
    /// Print log lines to stderr as they arrive.
    pub echo_logs: bool,
    /// The guest imports WasmEdge sockets (Traefik's wasi-go path).
    pub wasi_go: bool,
}

/// Where the request body reader reads from (fixed at the first `read_body(Request)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodySource {
    /// The client's body (Go `http.body`: EOF arrives together with the last bytes).
    Original,
    /// The client's body behind `bufferingRequestBody` (same, plus the capture bug).
    Wrapped,
    /// A body written by the guest (`bytes.Buffer`: EOF only on an empty read).
    Replaced,
}

/// The request body as the host sees it.
#[derive(Debug, Default)]
pub(crate) struct RequestBody {
    pub original: Vec<u8>,
    pub pos: usize,
    /// `bufferingRequestBody` is in place (buffer_request was enabled).
    pub wrapped: bool,
    /// What `bufferingRequestBody.Read` captured (only reads that returned data with an error).
    pub captured: Vec<u8>,
    /// The guest wrote the request body (`RequestBodyWriter` replaced `r.Body`).
    pub replaced: Option<Vec<u8>>,
    pub replaced_pos: usize,
    pub reader: Option<BodySource>,
}

impl RequestBody {
    /// One `Read(p)` call on the current reader: `(n, eof)`.
    fn read_once(&mut self, src: BodySource, out: &mut [u8]) -> (usize, bool) {
        match src {
            BodySource::Original | BodySource::Wrapped => {
                let remaining = self.original.len().saturating_sub(self.pos);
                let n = remaining.min(out.len());
                if let (Some(dst), Some(src_bytes)) =
                    (out.get_mut(..n), self.original.get(self.pos..self.pos + n))
                {
                    dst.copy_from_slice(src_bytes);
                }
                self.pos += n;
                // Go's http.body returns io.EOF together with the last bytes.
                let eof = self.pos >= self.original.len();
                if src == BodySource::Wrapped && eof && n > 0 {
                    // bufferingRequestBody.Read keeps only reads where err != nil && n > 0.
                    if let Some(b) = out.get(..n) {
                        self.captured.extend_from_slice(b);
                    }
                }
                (n, eof)
            }
            BodySource::Replaced => {
                let buf = self.replaced.as_deref().unwrap_or_default();
                let remaining = buf.len().saturating_sub(self.replaced_pos);
                if remaining == 0 {
                    return (0, !out.is_empty());
                }
                let n = remaining.min(out.len());
                if let (Some(dst), Some(s)) = (
                    out.get_mut(..n),
                    buf.get(self.replaced_pos..self.replaced_pos + n),
                ) {
                    dst.copy_from_slice(s);
                }
                self.replaced_pos += n;
                (n, false)
            }
        }
    }

    /// The host's `readBody` loop: read until the buffer is full or EOF.
    pub fn read(&mut self, out: &mut [u8]) -> (usize, bool) {
        let src = *self.reader.get_or_insert(if self.replaced.is_some() {
            BodySource::Replaced
        } else if self.wrapped {
            BodySource::Wrapped
        } else {
            BodySource::Original
        });
        let mut n = 0;
        while n < out.len() {
            let (k, eof) = match out.get_mut(n..) {
                Some(rest) => self.read_once(src, rest),
                None => (0, true),
            };
            n += k;
            if eof {
                return (n, true);
            }
        }
        (n, false)
    }

    /// What the next handler receives as the body.
    pub fn for_upstream(&self) -> Vec<u8> {
        if let Some(r) = &self.replaced {
            return r.get(self.replaced_pos..).unwrap_or_default().to_vec();
        }
        if self.wrapped && !self.captured.is_empty() {
            return self.captured.clone();
        }
        self.original.get(self.pos..).unwrap_or_default().to_vec()
    }
}

/// `bufferingResponseWriter`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Buffered {
    pub status: u32,
    pub body: Vec<u8>,
}

/// One request in flight on one instance.
#[derive(Debug)]
pub(crate) struct RequestState {
    pub method: Vec<u8>,
    pub target: RequestTarget,
    pub proto: Vec<u8>,
    pub host: Vec<u8>,
    pub header: GoHeader,
    pub remote_addr: Vec<u8>,
    pub body: RequestBody,
    /// The client-facing writer.
    pub client: ResponseWriter,
    /// nethttp's `bufferingResponseWriter`, when buffer_response is on.
    pub buffered: Option<Buffered>,
    /// The handler-level features (`handler.requestState.features`).
    pub features: u32,
    /// nethttp's `requestState.features`.
    pub nethttp_features: u32,
    pub after_next: bool,
    pub request_body_writer: bool,
    pub response_body_writer: bool,
    /// `ResponseBodyReader`: a snapshot of the buffered body and a read position.
    pub response_body_reader: Option<(Vec<u8>, usize)>,
}

impl RequestState {
    /// nethttp's `requestState.enableFeatures`.
    pub fn nethttp_enable(&mut self, features: u32) {
        self.nethttp_features |= features;
        if features & feature::BUFFER_REQUEST != 0 {
            // Go wraps again on every call; a single wrap is modelled.
            self.body.wrapped = true;
        }
        if self.nethttp_features & feature::BUFFER_RESPONSE != 0 && self.buffered.is_none() {
            self.buffered = Some(Buffered::default());
        }
    }

    /// `bufferingResponseWriter.release()`.
    pub fn release(&mut self) {
        if let Some(b) = self.buffered.take() {
            if b.status != 0 {
                self.client
                    .write_header(u16::try_from(b.status).unwrap_or(u16::MAX));
            }
            if !b.body.is_empty() {
                self.client.write(&b.body);
            }
            // Keep the wrapper so that late writes (after a handle_response trap) still buffer.
            self.buffered = Some(Buffered::default());
        }
    }
}

/// What a `Store` holds for one guest instance.
pub struct InstanceState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) req: Option<Box<RequestState>>,
    pub(crate) sockets: SocketTable,
    pub(crate) kv: Option<redis::Connection>,
    /// The response of the last `http_fetch` that did not fit, served to an identical retry.
    pub(crate) pending_fetch: Option<(Vec<u8>, Vec<u8>)>,
    /// [`super::engine::traces_wasm_ops`]: the fuel at the last mark, and the operators run
    /// before each host call of the current `handle_request`.
    pub(crate) ops_mark: u64,
    pub(crate) ops_trace: Vec<(&'static str, u64)>,
}
