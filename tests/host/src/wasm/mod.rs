//! A wasmtime host that runs the oidc-guard `.wasm` the way Traefik 3.7 runs it
//! (http-wasm-host-go v0.7.0 + nethttp, wazero or wasi-go v0.8.0; see
//! `notes/platform-report.md`), plus the host bridge of `wit/`.
//!
//! # Using it
//!
//! ```no_run
//! use oidc_guard_testhost::wasm::{guests, Bridge, Fault, Middleware, Request, UpstreamResponse};
//!
//! # fn main() -> anyhow::Result<()> {
//! let wasm = guests::plugin(guests::Artifact::Traefik)?;          // or guests::test_guest("probe")?
//! let mw = Middleware::builder(&wasm)
//!     .config(serde_json::json!({"issuer": "https://idp.example"}))   // what get_config returns
//!     .env("REDIS_ADDRESS", "127.0.0.1:6379")                       // settings.envs
//!     .mount("/etc/secrets:ro")                                      // settings.mounts
//!     .bridge(Bridge::redis("redis://127.0.0.1:6379"))               // or Bridge::memory()
//!     .build()?;                                                     // runs _start once
//! let ex = mw.send(Request::get("/api").header("Accept", "application/json"));
//! assert_eq!(ex.status, 401);
//! let ex = mw.send_with(Request::get("/public"), |up| {
//!     assert_eq!(up.header("x-forwarded-user"), None);
//!     UpstreamResponse::status(204)
//! });
//! let _lines = mw.logs();                       // LogRecord { level, message, instance }
//! mw.faults().inject_for("kv_get", Fault::Status(-7));
//! let _n = (mw.instances_created(), mw.instances_alive(), mw.idle());
//! mw.drop_idle();                               // like a GC cycle emptying sync.Pool
//! # Ok(()) }
//! ```
//!
//! # What is modelled
//!
//! - `http_handler`: every function with Traefik's signature and behaviour (buffer conventions,
//!   lower-cased header names, `count<<32|len` lists, `host` from `r.Host`, the `read_body` loop,
//!   `EscapedPath`, `set_uri` validation, the head written by `set_status_code` without
//!   buffer_response, traps for `get_status_code` and response mutation after next, the
//!   buffer_request capture bug, request trailers read from the response map).
//! - Pooling: an eager instance, a pool, one instance per concurrent request, trap → 500 with the
//!   error text and the instance reused un-reset, next=0 with ctx≠0 → instance leaked, a failing
//!   lazy instance closes the middleware.
//! - WASI preview1 from wasmtime-wasi; guests that import the WasmEdge socket extension get the
//!   V2 socket calls over real TCP with wasi-go semantics and a socket table per instance.
//! - The bridge `oidc_guard_bridge_v1`, backed by memory or Redis, with fault injection.
//!
//! Not modelled: net/http's automatic `Date`, `Content-Length` and `Content-Type` sniffing,
//! Traefik's `X-Forwarded-*` headers, wazero's deterministic `random_get` and fake monotonic clock
//! for guests without sockets (here WASI always has real clocks and randomness).

pub mod bridge;
pub mod engine;
pub mod gohttp;
pub mod guests;
mod http_handler;
mod memory;
pub mod middleware;
pub mod prof;
pub mod sockets;
pub mod state;

pub use bridge::{Bridge, Fault, Faults, MemoryKv, RedisKv};
pub use engine::{counts_wasm_ops, imports, ImportSummary, SocketAbi};
pub use middleware::{
    Exchange, GuestInstance, Middleware, MiddlewareBuilder, Request, Timing, UpstreamRequest,
    UpstreamResponse,
};
pub use state::{feature, LogRecord};
