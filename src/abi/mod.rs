//! The host ABIs: the http-wasm handler (the `http_handler` imports and the plugin's exports,
//! declared directly, see `handler`) and the oidc-guard host key/value bridge (`wit/`). Only
//! compiled for wasm32.

pub mod bridge;
#[cfg(target_arch = "wasm32")]
pub mod handler;
