//! The process-wide wasmtime `Engine`, compiled `Module`s cached per `.wasm` file, and the two
//! `Linker`s (built once): one for guests on Traefik's wazero path (no socket import) and one
//! for guests on the wasi-go path (they import the WasmEdge socket extension).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use anyhow::{anyhow, Context as _, Result};
use wasmtime::{Config, Engine, ExternType, Linker, Module, ValType};

use super::state::InstanceState;

/// The engine every middleware of the process uses.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut c = Config::new();
        c.cranelift_opt_level(wasmtime::OptLevel::Speed);
        c.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
        c.consume_fuel(counts_wasm_ops());
        if std::env::var_os("OIDC_GUARD_PERFMAP").is_some_and(|v| v == "1") {
            // `perf record` then names the guest's functions (/tmp/perf-PID.map).
            c.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        Engine::new(&c).unwrap_or_default()
    })
}

/// Whether the engine counts the wasm operators a call runs (wasmtime's fuel, one unit per
/// operator): set `OIDC_GUARD_WASM_OPS=1`. Off by default (counting slows every call a little).
/// [`super::middleware::Timing::wasm_ops`] then holds the count of each `handle_request`.
pub fn counts_wasm_ops() -> bool {
    std::env::var_os("OIDC_GUARD_WASM_OPS").is_some_and(|v| v == "1")
}

/// Whether each `handle_request` also prints the wasm operators the guest ran between its
/// `http_handler` calls (`OIDC_GUARD_WASM_OPS_TRACE=1`, with [`counts_wasm_ops`] on): where a
/// request's operators go, phase by phase. WASI calls (the clock) are not marked.
pub fn traces_wasm_ops() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        counts_wasm_ops() && std::env::var_os("OIDC_GUARD_WASM_OPS_TRACE").is_some_and(|v| v == "1")
    })
}

/// Which WasmEdge socket ABI a guest's imports select in Traefik (wasi-go's
/// `DetectSocketsExtension`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketAbi {
    /// No trigger import: Traefik runs the guest on wazero's own WASI.
    None,
    /// WasmEdge V1 (a 2-param `sock_accept` or a 4-param `sock_getlocaladdr`/`sock_getpeeraddr`).
    V1,
    /// WasmEdge V2.
    V2,
}

/// One import of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Module name (`http_handler`, `wasi_snapshot_preview1`, …).
    pub module: String,
    /// Field name.
    pub name: String,
    /// `(i32, i32) -> i64` style signature, or the kind for non-functions.
    pub signature: String,
    /// Number of parameters (functions only).
    pub params: usize,
}

/// What a module imports, and what that means for the host.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// Every import, in module order.
    pub imports: Vec<Import>,
    /// The socket ABI Traefik would select.
    pub sockets: SocketAbi,
    /// Whether `oidc_guard_bridge_v1` is imported.
    pub bridge: bool,
}

impl ImportSummary {
    /// The distinct import module names.
    pub fn modules(&self) -> Vec<String> {
        let mut m: Vec<String> = self.imports.iter().map(|i| i.module.clone()).collect();
        m.sort();
        m.dedup();
        m
    }

    /// The imported function names of `module`.
    pub fn names(&self, module: &str) -> Vec<String> {
        self.imports
            .iter()
            .filter(|i| i.module == module)
            .map(|i| i.name.clone())
            .collect()
    }
}

fn val(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}

/// The imports of `module`, and the socket ABI Traefik would pick for it.
pub fn summarize(module: &Module) -> ImportSummary {
    const TRIGGERS: [&str; 11] = [
        "sock_open",
        "sock_bind",
        "sock_connect",
        "sock_listen",
        "sock_send_to",
        "sock_recv_from",
        "sock_getsockopt",
        "sock_setsockopt",
        "sock_getlocaladdr",
        "sock_getpeeraddr",
        "sock_getaddrinfo",
    ];
    let mut imports = Vec::new();
    let mut trigger = false;
    let mut v1 = false;
    for imp in module.imports() {
        let (signature, params) = match imp.ty() {
            ExternType::Func(f) => {
                let p: Vec<&str> = f.params().map(|t| val(&t)).collect();
                let r: Vec<&str> = f.results().map(|t| val(&t)).collect();
                (format!("({}) -> ({})", p.join(", "), r.join(", ")), p.len())
            }
            ExternType::Memory(_) => ("memory".to_string(), 0),
            ExternType::Table(_) => ("table".to_string(), 0),
            ExternType::Global(_) => ("global".to_string(), 0),
            _ => ("other".to_string(), 0),
        };
        if imp.module() == "wasi_snapshot_preview1" {
            let name = imp.name();
            if TRIGGERS.contains(&name) || (name == "sock_accept" && params == 2) {
                trigger = true;
            }
            if (name == "sock_accept" && params == 2)
                || ((name == "sock_getlocaladdr" || name == "sock_getpeeraddr") && params == 4)
            {
                v1 = true;
            }
        }
        imports.push(Import {
            module: imp.module().to_string(),
            name: imp.name().to_string(),
            signature,
            params,
        });
    }
    let sockets = match (trigger, v1) {
        (false, _) => SocketAbi::None,
        (true, true) => SocketAbi::V1,
        (true, false) => SocketAbi::V2,
    };
    let bridge = imports.iter().any(|i| i.module == super::bridge::MODULE);
    ImportSummary {
        imports,
        sockets,
        bridge,
    }
}

struct Cached {
    len: u64,
    modified: Option<SystemTime>,
    module: Module,
    summary: Arc<ImportSummary>,
}

/// The compiled module for `path` (compiled once per process and file version), and its imports.
///
/// # Errors
/// When the file cannot be read or does not compile.
pub fn load(path: &Path) -> Result<(Module, Arc<ImportSummary>)> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let (len, modified) = (meta.len(), meta.modified().ok());
    let cache = CACHE.get_or_init(Default::default);
    let mut g = cache.lock().map_err(|_| anyhow!("module cache poisoned"))?;
    if let Some(c) = g.get(path) {
        if c.len == len && c.modified == modified {
            return Ok((c.module.clone(), c.summary.clone()));
        }
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let module =
        Module::new(engine(), &bytes).map_err(|e| anyhow!("wasm: error compiling guest: {e:?}"))?;
    let summary = Arc::new(summarize(&module));
    g.insert(
        path.to_path_buf(),
        Cached {
            len,
            modified,
            module: module.clone(),
            summary: summary.clone(),
        },
    );
    Ok((module, summary))
}

/// The imports of the `.wasm` at `path`.
///
/// # Errors
/// As [`load`].
pub fn imports(path: &Path) -> Result<ImportSummary> {
    Ok((*load(path)?.1).clone())
}

fn build_linker(sockets: bool) -> Result<Linker<InstanceState>> {
    let mut l: Linker<InstanceState> = Linker::new(engine());
    wasmtime_wasi::p1::add_to_linker_sync(&mut l, |s: &mut InstanceState| &mut s.wasi)
        .map_err(|e| anyhow!("adding WASI: {e:?}"))?;
    super::http_handler::add(&mut l).map_err(|e| anyhow!("adding http_handler: {e:?}"))?;
    super::bridge::add(&mut l).map_err(|e| anyhow!("adding the bridge: {e:?}"))?;
    super::prof::add(&mut l).map_err(|e| anyhow!("adding the profile hooks: {e:?}"))?;
    if sockets {
        l.allow_shadowing(true);
        super::sockets::add(&mut l).map_err(|e| anyhow!("adding sockets: {e:?}"))?;
        l.allow_shadowing(false);
    }
    Ok(l)
}

/// The linker for guests with (`sockets = true`) or without the WasmEdge socket extension.
///
/// # Errors
/// When building the linker failed (a definition clash: a bug of this host).
pub fn linker(sockets: bool) -> Result<&'static Linker<InstanceState>> {
    static PLAIN: OnceLock<std::result::Result<Linker<InstanceState>, String>> = OnceLock::new();
    static SOCKETS: OnceLock<std::result::Result<Linker<InstanceState>, String>> = OnceLock::new();
    let cell = if sockets { &SOCKETS } else { &PLAIN };
    cell.get_or_init(|| build_linker(sockets).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}
