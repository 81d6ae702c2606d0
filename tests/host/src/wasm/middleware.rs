//! A middleware that runs one `.wasm` the way http-wasm-host-go (nethttp) runs it inside Traefik:
//! one instance created eagerly (its `_start` failing fails the build), a pool of idle instances,
//! each concurrent request on an instance of its own, traps answered with 500 and the instance
//! put back as it was.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use wasmtime::{Instance, InstancePre, Module, Store, TypedFunc};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::bridge::{Bridge, Faults};
use super::engine::{self, ImportSummary, SocketAbi};
use super::gohttp::{GoHeader, RequestTarget, TRAILER_PREFIX};
use super::sockets::SocketTable;
use super::state::{InstanceState, LogRecord, RequestBody, RequestState, Shared};

/// A request as a client sends it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// The request target as sent on the request line (`/p?q`).
    pub uri: String,
    /// `HTTP/1.1` unless set.
    pub proto: String,
    /// Header lines in order; a `Host` line becomes `r.Host`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// `r.RemoteAddr`, `ip:port`.
    pub source_addr: String,
}

impl Request {
    /// A request with `method` and `uri`, `Host: localhost`, from `127.0.0.1:50000`.
    pub fn new(method: &str, uri: &str) -> Self {
        Self {
            method: method.to_string(),
            uri: uri.to_string(),
            proto: "HTTP/1.1".to_string(),
            headers: vec![("Host".to_string(), "localhost".to_string())],
            body: Vec::new(),
            source_addr: "127.0.0.1:50000".to_string(),
        }
    }

    /// A `GET`.
    pub fn get(uri: &str) -> Self {
        Self::new("GET", uri)
    }

    /// A `POST` with a body.
    pub fn post(uri: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", uri).body(body)
    }

    /// Adds a header line (a `Host` line replaces the default host).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("host") {
            self.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
        }
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the source address.
    pub fn source(mut self, addr: &str) -> Self {
        self.source_addr = addr.to_string();
        self
    }

    /// Sets the protocol version string.
    pub fn proto(mut self, proto: &str) -> Self {
        self.proto = proto.to_string();
        self
    }
}

/// What the next handler (the upstream) received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// The method after the guest's `set_method`.
    pub method: String,
    /// `EscapedPath` + `?RawQuery` after the guest's `set_uri`.
    pub uri: String,
    /// `r.Host`.
    pub host: String,
    /// The request headers, sorted by key as Go sends them (a `Host` key the guest set is not
    /// sent: Go writes `r.Host`).
    pub headers: Vec<(String, String)>,
    /// The body the upstream can read.
    pub body: Vec<u8>,
    /// `r.RemoteAddr`.
    pub source_addr: String,
}

impl UpstreamRequest {
    /// The values of `name` (case-insensitive).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// The JSON echo the default upstream answers with.
    pub fn echo_json(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method,
            "uri": self.uri,
            "host": self.host,
            "headers": self.headers,
            "body": String::from_utf8_lossy(&self.body),
            "bodyBase64": base64::engine::general_purpose::STANDARD.encode(&self.body),
        })
    }
}

/// What the upstream answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamResponse {
    /// A response.
    Response {
        /// Status code.
        status: u16,
        /// Header lines (added to the response header map with `Add`, like ReverseProxy).
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// The next handler panicked: nothing is written and `handle_response` gets `is_error=1`.
    Fail,
}

impl UpstreamResponse {
    /// A response with `status` and an empty body.
    pub fn status(status: u16) -> Self {
        UpstreamResponse::Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header line.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let UpstreamResponse::Response { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        if let UpstreamResponse::Response { body, .. } = &mut self {
            *body = b.into();
        }
        self
    }

    /// The default upstream: 200 with a JSON echo of what it received.
    pub fn echo(req: &UpstreamRequest) -> Self {
        Self::status(200)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&req.echo_json()).unwrap_or_default())
    }
}

/// Wall times of one exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Creating (instantiating and starting) an instance for this request, if one was created.
    pub instance_create: Option<Duration>,
    /// The `handle_request` call.
    pub handle_request: Duration,
    /// The wasm operators `handle_request` ran, when the engine counts them
    /// ([`engine::counts_wasm_ops`]).
    pub wasm_ops: Option<u64>,
    /// The upstream handler.
    pub upstream: Duration,
    /// The `handle_response` call, if made.
    pub handle_response: Option<Duration>,
    /// Everything.
    pub total: Duration,
}

/// What the client received, and what the upstream received.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Status sent to the client.
    pub status: u16,
    /// Header lines sent, sorted by key as Go writes them.
    pub headers: Vec<(String, String)>,
    /// Trailers set through the trailer kinds (`Trailer:` keys), not sent as headers.
    pub trailers: Vec<(String, String)>,
    /// Body sent.
    pub body: Vec<u8>,
    /// The request the upstream received, when the guest called next.
    pub upstream: Option<UpstreamRequest>,
    /// The error text of a trap (or exit) in `handle_request`, also sent as the body.
    pub trap: Option<String>,
    /// The error text of a trap in `handle_response` (Traefik's recovery handles it).
    pub response_trap: Option<String>,
    /// The instance that served the request.
    pub instance: u64,
    /// Wall times.
    pub timing: Timing,
    /// The instance's linear memory size after the request, in bytes.
    pub memory_bytes: usize,
}

impl Exchange {
    /// Values of response header `name` (case-insensitive).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of response header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// When the body is not JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| anyhow!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Instance counters of one middleware.
#[derive(Debug, Default)]
struct Stats {
    created: AtomicU64,
    alive: AtomicUsize,
    leaked: AtomicU64,
}

/// One guest instance with its store.
pub struct GuestInstance {
    store: Store<InstanceState>,
    instance: Instance,
    handle_request: TypedFunc<(), i64>,
    handle_response: TypedFunc<(i32, i32), ()>,
    /// Set when the module was closed (proc_exit on the wazero path, exit(0) in `_start`).
    dead: Option<String>,
    id: u64,
    stats: Arc<Stats>,
}

impl Drop for GuestInstance {
    fn drop(&mut self) {
        self.stats.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GuestInstance {
    /// This instance's number (1 = the eager one).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Linear memory size in bytes.
    pub fn memory_bytes(&mut self) -> usize {
        self.instance
            .get_memory(&mut self.store, "memory")
            .map_or(0, |m| m.data_size(&self.store))
    }

    /// Number of sockets this instance holds open.
    pub fn open_sockets(&self) -> usize {
        self.store.data().sockets.len()
    }

    /// Calls an exported function with a default request (`GET /`) in context, and measures its
    /// wall time (for in-guest micro benchmarks exported by test guests).
    ///
    /// # Errors
    /// A missing export, a signature mismatch or a trap.
    pub fn call<P, R>(&mut self, name: &str, params: P) -> Result<(R, Duration)>
    where
        P: wasmtime::WasmParams,
        R: wasmtime::WasmResults,
    {
        let f = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|e| anyhow!("export {name}: {e:?}"))?;
        if self.store.data().req.is_none() {
            let nethttp = 0;
            let st = request_state(&Request::get("/"), 0, nethttp)?;
            self.store.data_mut().req = Some(Box::new(st));
        }
        let t = Instant::now();
        let r = f
            .call(&mut self.store, params)
            .map_err(|e| anyhow!("{e:?}"));
        let elapsed = t.elapsed();
        Ok((r?, elapsed))
    }
}

fn exit_code(e: &wasmtime::Error) -> Option<i32> {
    e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|x| x.0)
}

/// A mount in Traefik's `settings.mounts` form: `dir`, `host:guest`, optionally `:ro`.
#[derive(Debug, Clone)]
struct Mount {
    host: String,
    guest: String,
    read_only: bool,
}

fn parse_mount(m: &str) -> Mount {
    let (spec, read_only) = match m.strip_suffix(":ro") {
        Some(s) => (s, true),
        None => (m, false),
    };
    let (host, guest) = match spec.split_once(':') {
        Some((h, g)) => (h.to_string(), g.to_string()),
        None => (spec.to_string(), spec.to_string()),
    };
    Mount {
        host,
        guest,
        read_only,
    }
}

/// Builds a [`Middleware`].
#[derive(Debug, Clone)]
pub struct MiddlewareBuilder {
    path: std::path::PathBuf,
    config: Vec<u8>,
    envs: Vec<(String, String)>,
    mounts: Vec<String>,
    bridge: Bridge,
    echo_logs: bool,
}

/// Go's `json.Marshal` escapes `<`, `>` and `&` inside strings (they can only occur there).
fn go_json(v: &serde_json::Value) -> Vec<u8> {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .into_bytes()
}

impl MiddlewareBuilder {
    /// The middleware configuration, marshalled as Traefik does (sorted keys, HTML-escaped).
    pub fn config(mut self, v: serde_json::Value) -> Self {
        self.config = go_json(&v);
        self
    }

    /// The exact bytes `get_config` returns.
    pub fn config_raw(mut self, raw: impl Into<Vec<u8>>) -> Self {
        self.config = raw.into();
        self
    }

    /// An environment variable (one entry of `settings.envs`, with its value).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.envs.push((name.to_string(), value.to_string()));
        self
    }

    /// A `settings.mounts` entry: `/dir`, `/host:/guest`, optionally with `:ro`.
    pub fn mount(mut self, spec: &str) -> Self {
        self.mounts.push(spec.to_string());
        self
    }

    /// The bridge backing (default: the process-wide memory map).
    pub fn bridge(mut self, b: Bridge) -> Self {
        self.bridge = b;
        self
    }

    /// Print guest log lines to stderr as they arrive (also on with `OIDC_GUARD_TEST_LOG=1`).
    pub fn echo_logs(mut self, on: bool) -> Self {
        self.echo_logs = on;
        self
    }

    /// Compiles (once per process), links and creates the first instance, running `_start`.
    ///
    /// # Errors
    /// Like Traefik's middleware build: a module without the http-wasm exports, a link error
    /// (an import the host lacks, the V1 socket ABI), a mount the sockets path cannot serve, a
    /// trap or non-zero exit in `_start`.
    pub fn build(self) -> Result<Middleware> {
        let (module, imports) = engine::load(&self.path)?;
        check_exports(&module)?;
        let wasi_go = match imports.sockets {
            SocketAbi::None => false,
            SocketAbi::V2 => true,
            SocketAbi::V1 => bail!(
                "the guest imports the WasmEdge V1 socket ABI (2-param sock_accept or 4-param \
                 sock_getlocaladdr/sock_getpeeraddr); Traefik would switch every socket call to V1 \
                 and this host only implements V2"
            ),
        };
        let mounts: Vec<Mount> = self.mounts.iter().map(|m| parse_mount(m)).collect();
        if wasi_go && mounts.iter().any(|m| m.host != m.guest) {
            bail!("wasm: error instantiating wasi: virtual filesystems are not supported");
        }
        let linker = engine::linker(wasi_go)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| anyhow!("wasm: error instantiating guest: {e:?}"))?;
        let open = Arc::new(AtomicUsize::new(0));
        let opened = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            config: self.config,
            logs: Mutex::new(Vec::new()),
            features: AtomicU32::new(0),
            bridge: self.bridge,
            faults: Faults::default(),
            open_sockets: open,
            sockets_opened: opened,
            echo_logs: self.echo_logs
                || std::env::var("OIDC_GUARD_TEST_LOG").is_ok_and(|v| v == "1"),
            wasi_go,
        });
        let inner = Arc::new(Inner {
            module,
            pre,
            imports,
            shared,
            envs: self.envs,
            mounts,
            pool: Mutex::new(Vec::new()),
            stats: Arc::new(Stats::default()),
            next_id: AtomicU64::new(1),
            nethttp_features: AtomicU32::new(0),
            closed: Mutex::new(None),
            stdout: MemoryOutputPipe::new(1 << 20),
            stderr: MemoryOutputPipe::new(1 << 20),
        });
        // NewMiddleware: one instance eagerly; a failure fails the build.
        let first = inner.new_instance()?;
        inner.pool_put(first);
        // nethttp's NewHandler captures the middleware features once, after that.
        inner.nethttp_features.store(
            inner.shared.features.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
        Ok(Middleware { inner })
    }
}

fn check_exports(module: &Module) -> Result<()> {
    use wasmtime::ExternType;
    let export = |n: &str| module.exports().find(|e| e.name() == n).map(|e| e.ty());
    match export("handle_request") {
        Some(ExternType::Func(f)) => {
            let ok = f.params().len() == 0
                && f.results()
                    .map(|r| matches!(r, wasmtime::ValType::I64))
                    .collect::<Vec<_>>()
                    == [true];
            if !ok {
                bail!("wasm: guest exports the wrong signature for func[handle_request]. should be () -> (i64)");
            }
        }
        _ => bail!("wasm: guest doesn't export func[handle_request]"),
    }
    match export("handle_response") {
        Some(ExternType::Func(f)) => {
            let ok = f
                .params()
                .map(|p| matches!(p, wasmtime::ValType::I32))
                .collect::<Vec<_>>()
                == [true, true]
                && f.results().len() == 0;
            if !ok {
                bail!("wasm: guest exports the wrong signature for func[handle_response]. should be (i32, 32) -> ()");
            }
        }
        _ => bail!("wasm: guest doesn't export func[handle_response]"),
    }
    match export("memory") {
        Some(ExternType::Memory(_)) => Ok(()),
        _ => bail!("wasm: guest doesn't export memory[memory]"),
    }
}

struct Inner {
    #[allow(dead_code)]
    module: Module,
    pre: InstancePre<InstanceState>,
    imports: Arc<ImportSummary>,
    shared: Arc<Shared>,
    envs: Vec<(String, String)>,
    mounts: Vec<Mount>,
    pool: Mutex<Vec<GuestInstance>>,
    stats: Arc<Stats>,
    next_id: AtomicU64,
    nethttp_features: AtomicU32,
    /// Set when a lazily created instance failed: Traefik closes the runtime of the middleware.
    closed: Mutex<Option<String>>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Inner {
    fn wasi(&self) -> Result<wasmtime_wasi::p1::WasiP1Ctx> {
        let mut b = WasiCtxBuilder::new();
        b.envs(&self.envs);
        if self.shared.wasi_go {
            // wasi-go's defaults.
            b.args(&["wasirun-wasm-module"]);
        }
        b.stdout(self.stdout.clone());
        b.stderr(self.stderr.clone());
        for m in &self.mounts {
            let perms = if m.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&m.host, &m.guest, perms)
                .map_err(|e| anyhow!("wasm: error instantiating guest: mount {}: {e:?}", m.host))?;
        }
        Ok(b.build_p1())
    }

    fn new_instance(&self) -> Result<GuestInstance> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let state = InstanceState {
            wasi: self.wasi()?,
            shared: self.shared.clone(),
            id,
            req: None,
            sockets: SocketTable::new(
                self.shared.open_sockets.clone(),
                self.shared.sockets_opened.clone(),
            ),
            kv: None,
            pending_fetch: None,
            ops_mark: 0,
            ops_trace: Vec::new(),
        };
        let mut store = Store::new(engine::engine(), state);
        if engine::counts_wasm_ops() {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| anyhow!("wasm: fuel: {e:?}"))?;
        }
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow!("wasm: error instantiating guest: {e:?}"))?;
        self.stats.created.fetch_add(1, Ordering::SeqCst);
        self.stats.alive.fetch_add(1, Ordering::SeqCst);
        let mut dead = None;
        for name in ["_start", "_initialize"] {
            let Some(f) = instance.get_func(&mut store, name) else {
                continue;
            };
            let f = f
                .typed::<(), ()>(&store)
                .map_err(|e| anyhow!("wasm: {name}: {e:?}"));
            let r = match f {
                Ok(f) => f.call(&mut store, ()),
                Err(e) => {
                    self.stats.alive.fetch_sub(1, Ordering::SeqCst);
                    return Err(e);
                }
            };
            if let Err(e) = r {
                match exit_code(&e) {
                    // wazero returns the closed module without an error for exit code 0.
                    Some(0) => {
                        dead = Some("module closed with exit_code(0)".to_string());
                        break;
                    }
                    Some(code) => {
                        self.stats.alive.fetch_sub(1, Ordering::SeqCst);
                        bail!(
                            "wasm: error instantiating guest: module closed with exit_code({code})"
                        );
                    }
                    None => {
                        self.stats.alive.fetch_sub(1, Ordering::SeqCst);
                        bail!("wasm: error instantiating guest: {e:?}");
                    }
                }
            }
        }
        let handle_request = instance
            .get_typed_func::<(), i64>(&mut store, "handle_request")
            .map_err(|e| anyhow!("handle_request: {e:?}"));
        let handle_response = instance
            .get_typed_func::<(i32, i32), ()>(&mut store, "handle_response")
            .map_err(|e| anyhow!("handle_response: {e:?}"));
        let (handle_request, handle_response) = match (handle_request, handle_response) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                self.stats.alive.fetch_sub(1, Ordering::SeqCst);
                return Err(e);
            }
        };
        Ok(GuestInstance {
            store,
            instance,
            handle_request,
            handle_response,
            dead,
            id,
            stats: self.stats.clone(),
        })
    }

    fn pool_put(&self, g: GuestInstance) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(g);
        }
    }

    fn pool_get(&self) -> Option<GuestInstance> {
        self.pool.lock().ok().and_then(|mut p| p.pop())
    }
}

/// The request state a fresh request starts with.
fn request_state(
    req: &Request,
    handler_features: u32,
    nethttp_features: u32,
) -> Result<RequestState> {
    let target = RequestTarget::parse(req.uri.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    let mut header = GoHeader::new();
    let mut host = Vec::new();
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("host") {
            host = v.as_bytes().to_vec();
        } else {
            header.add(k.as_bytes(), v.as_bytes());
        }
    }
    let mut st = RequestState {
        method: req.method.as_bytes().to_vec(),
        target,
        proto: req.proto.as_bytes().to_vec(),
        host,
        header,
        remote_addr: req.source_addr.as_bytes().to_vec(),
        body: RequestBody {
            original: req.body.clone(),
            ..Default::default()
        },
        client: Default::default(),
        buffered: None,
        features: handler_features,
        nethttp_features: 0,
        after_next: false,
        request_body_writer: false,
        response_body_writer: false,
        response_body_reader: None,
    };
    // newRequestState: s.enableFeatures(g.features).
    st.nethttp_enable(nethttp_features);
    Ok(st)
}

/// A middleware instance of one `.wasm` with one configuration. Cheap to clone; usable from many
/// threads at once (each concurrent request runs on an instance of its own).
#[derive(Clone)]
pub struct Middleware {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Middleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Middleware")
            .field("created", &self.instances_created())
            .field("alive", &self.instances_alive())
            .finish()
    }
}

impl Middleware {
    /// Starts building a middleware for the `.wasm` at `path`.
    pub fn builder(path: impl Into<std::path::PathBuf>) -> MiddlewareBuilder {
        MiddlewareBuilder {
            path: path.into(),
            config: b"{}".to_vec(),
            envs: Vec::new(),
            mounts: Vec::new(),
            bridge: Bridge::default(),
            echo_logs: false,
        }
    }

    /// Sends `req`; if the guest calls next, the upstream answers with a JSON echo.
    pub fn send(&self, req: Request) -> Exchange {
        self.send_with(req, UpstreamResponse::echo)
    }

    /// Sends `req`; if the guest calls next, `upstream` sees the request as modified and chooses
    /// the response.
    pub fn send_with(
        &self,
        req: Request,
        upstream: impl FnOnce(&UpstreamRequest) -> UpstreamResponse,
    ) -> Exchange {
        let t0 = Instant::now();
        let mut timing = Timing::default();
        let fail = |status: u16, text: String, timing: Timing| Exchange {
            status,
            headers: Vec::new(),
            trailers: Vec::new(),
            body: text.clone().into_bytes(),
            upstream: None,
            trap: Some(text),
            response_trap: None,
            instance: 0,
            timing,
            memory_bytes: 0,
        };
        if let Some(msg) = self.inner.closed.lock().ok().and_then(|c| c.clone()) {
            return fail(500, msg, timing);
        }
        let handler_features = self.inner.shared.features.load(Ordering::SeqCst);
        let nethttp = self.inner.nethttp_features.load(Ordering::SeqCst);
        let state = match request_state(&req, handler_features, nethttp) {
            Ok(s) => s,
            // net/http refuses the request line before any handler runs.
            Err(_) => return fail(400, "400 Bad Request".into(), timing),
        };
        let mut g = match self.inner.pool_get() {
            Some(g) => g,
            None => {
                let t = Instant::now();
                match self.inner.new_instance() {
                    Ok(g) => {
                        timing.instance_create = Some(t.elapsed());
                        g
                    }
                    Err(e) => {
                        // newGuest closes the runtime: this middleware is dead until rebuilt.
                        let msg = format!("{e:#}");
                        if let Ok(mut c) = self.inner.closed.lock() {
                            *c = Some(msg.clone());
                        }
                        if let Ok(mut p) = self.inner.pool.lock() {
                            p.clear();
                        }
                        return fail(500, msg, timing);
                    }
                }
            }
        };
        g.store.data_mut().req = Some(Box::new(state));

        // handle_request
        let fuel_before = g.store.get_fuel().ok();
        if let Some(f) = fuel_before {
            g.store.data_mut().ops_mark = f;
            g.store.data_mut().ops_trace.clear();
            if super::prof::enabled() {
                super::prof::begin(f);
            }
        }
        let t = Instant::now();
        let result: std::result::Result<i64, String> = match &g.dead {
            Some(d) => Err(d.clone()),
            None => g.handle_request.call(&mut g.store, ()).map_err(|e| {
                match exit_code(&e) {
                    // wazero's proc_exit closes the module; wasi-go's panics before closing it.
                    Some(code) if !self.inner.shared.wasi_go => {
                        let msg = format!("module closed with exit_code({code})");
                        g.dead = Some(msg.clone());
                        msg
                    }
                    _ => format!("{e:?}"),
                }
            }),
        };
        timing.handle_request = t.elapsed();
        if super::prof::enabled() {
            super::prof::report();
        }
        timing.wasm_ops = fuel_before
            .zip(g.store.get_fuel().ok())
            .map(|(a, b)| a.saturating_sub(b));
        if engine::traces_wasm_ops() {
            if let Ok(f) = g.store.get_fuel() {
                let st = g.store.data_mut();
                let last = st.ops_mark.saturating_sub(f);
                let mut line: Vec<String> = st
                    .ops_trace
                    .iter()
                    .map(|(c, n)| format!("{n} {c}"))
                    .collect();
                line.push(format!("{last} return"));
                eprintln!("wasm operators, then the host call: {}", line.join(" · "));
            }
        }

        let mut upstream_req = None;
        let mut trap = None;
        let mut response_trap = None;
        let mut keep = true;
        match result {
            Err(text) => {
                // handleErr writes to the original writer, then the buffered writer releases.
                if let Some(r) = g.store.data_mut().req.as_deref_mut() {
                    r.client.write_header(500);
                    r.client.write(text.as_bytes());
                }
                trap = Some(text);
            }
            Ok(v) if v as u32 == 0 => {
                // Returned without next; a non-zero ctx makes the 64-bit value non-zero and the
                // instance is never put back (it leaks until GC).
                if v != 0 {
                    keep = false;
                }
            }
            Ok(v) => {
                let req_ctx = (v >> 32) as i32;
                let up = match g.store.data_mut().req.as_deref_mut() {
                    Some(r) => upstream_request(r),
                    None => None,
                };
                let mut is_error = 0;
                if let Some(up) = up {
                    let t = Instant::now();
                    let reply = upstream(&up);
                    timing.upstream = t.elapsed();
                    if let Some(r) = g.store.data_mut().req.as_deref_mut() {
                        match reply {
                            UpstreamResponse::Response {
                                status,
                                headers,
                                body,
                            } => {
                                for (k, v) in &headers {
                                    r.client.header.add(k.as_bytes(), v.as_bytes());
                                }
                                match r.buffered.as_mut() {
                                    Some(b) => {
                                        b.status = u32::from(status);
                                        b.body.extend_from_slice(&body);
                                    }
                                    None => {
                                        r.client.write_header(status);
                                        if !body.is_empty() {
                                            r.client.write(&body);
                                        }
                                    }
                                }
                            }
                            UpstreamResponse::Fail => is_error = 1,
                        }
                        r.after_next = true;
                    }
                    upstream_req = Some(up);
                }
                let t = Instant::now();
                let rr = match &g.dead {
                    Some(d) => Err(d.clone()),
                    None => g
                        .handle_response
                        .call(&mut g.store, (req_ctx, is_error))
                        .map_err(|e| format!("{e:?}")),
                };
                timing.handle_response = Some(t.elapsed());
                if let Err(e) = rr {
                    response_trap = Some(e);
                }
            }
        }

        let memory_bytes = g.memory_bytes();
        let state = g.store.data_mut().req.take();
        let instance = g.id;
        if keep {
            self.inner.pool_put(g);
        } else {
            self.inner.stats.leaked.fetch_add(1, Ordering::SeqCst);
            drop(g);
        }
        let Some(mut r) = state else {
            return fail(500, "request state lost".into(), timing);
        };
        r.release();
        if response_trap.is_some() && r.client.head.is_none() {
            // Traefik's recovery middleware: 500 when nothing was sent yet.
            r.client.header = GoHeader::new();
            r.client
                .header
                .set(b"Content-Type", b"text/plain; charset=utf-8");
            r.client.header.set(b"X-Content-Type-Options", b"nosniff");
            r.client.write_header(500);
            r.client.write(b"Internal Server Error\n");
        }
        r.client.finish();
        let (status, head) = r.client.head.clone().unwrap_or((200, GoHeader::new()));
        let headers = head.wire_pairs(|k| k.starts_with(TRAILER_PREFIX));
        let trailers = head
            .wire_pairs(|k| !k.starts_with(TRAILER_PREFIX))
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches("Trailer:").to_string(), v))
            .collect();
        timing.total = t0.elapsed();
        Exchange {
            status,
            headers,
            trailers,
            body: r.client.body,
            upstream: upstream_req,
            trap,
            response_trap,
            instance,
            timing,
            memory_bytes,
        }
    }

    /// Everything the guest logged so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.inner
            .shared
            .logs
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Everything the guest logged so far, emptying the log.
    pub fn take_logs(&self) -> Vec<LogRecord> {
        self.inner
            .shared
            .logs
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// Whether a log line at `level` contains `needle`.
    pub fn logged(&self, level: i32, needle: &str) -> bool {
        self.logs()
            .iter()
            .any(|r| r.level == level && r.message.contains(needle))
    }

    /// What the guest wrote to stdout (Traefik's wasi-go path prints it; wazero drops it).
    pub fn stdout(&self) -> Vec<u8> {
        self.inner.stdout.contents().to_vec()
    }

    /// What the guest wrote to stderr.
    pub fn stderr(&self) -> Vec<u8> {
        self.inner.stderr.contents().to_vec()
    }

    /// Instances created so far (including the eager one).
    pub fn instances_created(&self) -> u64 {
        self.inner.stats.created.load(Ordering::SeqCst)
    }

    /// Instances currently alive (pooled or serving).
    pub fn instances_alive(&self) -> usize {
        self.inner.stats.alive.load(Ordering::SeqCst)
    }

    /// Instances dropped because the guest returned next=0 with a non-zero ctx.
    pub fn instances_leaked(&self) -> u64 {
        self.inner.stats.leaked.load(Ordering::SeqCst)
    }

    /// Idle instances in the pool.
    pub fn idle(&self) -> usize {
        self.inner.pool.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Drops every idle instance, as a GC cycle empties Go's `sync.Pool` (their sockets close).
    pub fn drop_idle(&self) {
        let drained: Vec<GuestInstance> = self
            .inner
            .pool
            .lock()
            .map(|mut p| p.drain(..).collect())
            .unwrap_or_default();
        drop(drained);
    }

    /// Runs `f` on an idle instance (or a new one), then puts it back (micro benchmarks).
    ///
    /// # Errors
    /// When no instance can be created, or what `f` returns.
    pub fn with_instance<T>(&self, f: impl FnOnce(&mut GuestInstance) -> Result<T>) -> Result<T> {
        let mut g = match self.inner.pool_get() {
            Some(g) => g,
            None => self.inner.new_instance()?,
        };
        let r = f(&mut g);
        g.store.data_mut().req = None;
        self.inner.pool_put(g);
        r
    }

    /// The bridge fault switch.
    pub fn faults(&self) -> &Faults {
        &self.inner.shared.faults
    }

    /// The bridge backing.
    pub fn bridge(&self) -> &Bridge {
        &self.inner.shared.bridge
    }

    /// Sockets currently open in all live instances.
    pub fn open_sockets(&self) -> usize {
        self.inner.shared.open_sockets.load(Ordering::SeqCst)
    }

    /// Sockets ever opened by this middleware's instances.
    pub fn sockets_opened(&self) -> usize {
        self.inner.shared.sockets_opened.load(Ordering::SeqCst)
    }

    /// The module's imports and the socket ABI Traefik would pick.
    pub fn imports(&self) -> &ImportSummary {
        &self.inner.imports
    }

    /// Whether this guest runs on Traefik's wasi-go path (it imports sockets).
    pub fn uses_sockets(&self) -> bool {
        self.inner.shared.wasi_go
    }

    /// The middleware-wide features (`enable_features` during `_start`).
    pub fn features(&self) -> u32 {
        self.inner.shared.features.load(Ordering::SeqCst)
    }
}

/// `handleNext`: the request as the next handler receives it.
fn upstream_request(r: &mut RequestState) -> Option<UpstreamRequest> {
    let body = r.body.for_upstream();
    let mut h = r.header.clone();
    // Go writes r.Host; a "Host" key in the header map is not sent.
    h.del(b"Host");
    Some(UpstreamRequest {
        method: String::from_utf8_lossy(&r.method).into_owned(),
        uri: String::from_utf8_lossy(&r.target.uri()).into_owned(),
        host: String::from_utf8_lossy(&r.host).into_owned(),
        headers: h.wire_pairs(|k| k.starts_with(TRAILER_PREFIX)),
        body,
        source_addr: String::from_utf8_lossy(&r.remote_addr).into_owned(),
    })
}
