//! The host ABIs: the http-wasm handler (the `http-wasm-guest` crate, plus direct `http_handler`
//! imports for the per-request reads, see `handler`) and the oidc-guard host key/value bridge
//! (`wit/`). Only compiled for wasm32.

pub mod bridge;
#[cfg(target_arch = "wasm32")]
pub mod handler;
