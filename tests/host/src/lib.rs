//! Test support for oidc-guard: a wasmtime host that runs the built `.wasm` the way Traefik's
//! http-wasm host does, and launchers for the real servers the tests use (Redis, Sentinel,
//! Cluster, Valkey, the `oidc-provider` IdP, Traefik itself).
//!
//! Servers listen on 127.0.0.1 ports of their own, are waited for until ready, and are stopped by
//! pid when dropped.
#![allow(missing_docs)]
// Test support: a failed set-up or assertion is meant to panic the test.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub use oidc_guard_backend as backend;
pub mod browser;
pub mod idp;
pub mod servers;
pub mod tokens;
pub mod traefik;
pub mod util;
pub mod wasm;
pub mod wrk;
