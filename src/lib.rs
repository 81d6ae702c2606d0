//! oidc-guard: an OpenID Connect guard for Traefik, built as an http-wasm guest.
//!
//! # Layout
//!
//! - [`config`]: the middleware JSON plus `REDIS_*` environment → a validated [`config::Config`].
//! - [`http`]: the [`http::Exchange`] trait the request logic sees (so it runs natively in unit
//!   tests), path normalisation, header helpers.
//! - [`abi`]: the only `extern` blocks besides [`net`]: the http-wasm handler glue and the host
//!   key/value bridge (`wit/`).
//! - [`net`]: WasmEdge sockets, TLS (rustls) and a small HTTP/1.1 client for the Traefik artifact.
//! - [`store`]: the two-tier store: L1 TTL cache, tiered modes, circuit breaker, sealed values.
//! - [`textkey`]: fingerprints and word-wise equality for caches keyed by tokens and cookies.
//! - [`resp`]: a Redis/Valkey client (RESP2) generic over its byte stream: AUTH/ACL, SELECT,
//!   Sentinel, Cluster.
//! - [`jwt`]: JOSE: compact JWS parsing, JWK/JWKS, signature verification, claim checks.
//! - [`auth`]: OIDC login, sessions, bearer tokens, DPoP, logout, authorization policy.
//! - [`plugin`]: one request in, one decision out.
#![deny(unsafe_code)]

pub mod abi;
pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod http;
pub mod jwt;
pub mod net;
pub mod plugin;
pub mod rand;
pub mod resp;
pub mod response;
pub mod store;
#[cfg(test)]
pub(crate) mod testkit;
pub mod textkey;
