//! The host ABIs: the http-wasm handler (through the `http-wasm-guest` crate) and the oidc-guard
//! host key/value bridge (`wit/`). Only compiled for wasm32.

pub mod bridge;
#[cfg(target_arch = "wasm32")]
pub mod handler;
