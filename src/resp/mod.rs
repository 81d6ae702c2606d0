//! A Redis/Valkey client (RESP2) generic over its byte stream, used as the store's L2 in the
//! Traefik artifact.
//!
//! # Layout
//!
//! - [`frame`]: the RESP2 codec: bounded two-phase decoding, command encoding.
//! - [`connection`]: one connection: pipelines in one write, a reply buffer of its own.
//! - [`cluster`]: CRC16 key slots, hash tags, the slot map, `MOVED`/`ASK` parsing.
//! - [`client`]: [`RedisClient`]: standalone, Sentinel and Cluster topologies, `AUTH`/`SELECT`
//!   pipelined with the first command, retries, the [`crate::store::L2`] implementation.
//!
//! Connections are opened through a [`crate::net::Dialer`] (WasmEdge sockets in the guest,
//! `std::net` natively) and optionally wrapped in TLS ([`crate::net::tls`]). They never outlive
//! a request ([`crate::store::L2::end_request`]); only the discovered Sentinel master and the
//! Cluster slot map are kept in memory, per instance.
//!
//! Key prefixes are the caller's business: keys are sent exactly as given.

use std::fmt;

use crate::net::tls::TlsOptions;
use crate::net::Timeouts;

pub mod client;
pub mod cluster;
pub mod connection;
pub mod frame;

pub use client::{RedisClient, RedisStats};
pub use cluster::NodeAddr;
pub use frame::{Command, Frame};

/// A password (Redis `AUTH`, Sentinel `AUTH`). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }

    /// The password itself, for sending in `AUTH`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Where the Sentinels are and which master to ask them for.
#[derive(Debug, Clone, Default)]
pub struct SentinelOptions {
    /// Sentinel addresses (`host:port`; the port defaults to 26379), asked in this order.
    pub hosts: Vec<String>,
    /// The master's name as configured in the Sentinels (`sentinel monitor <name> ...`).
    pub master: String,
    /// ACL user for the Sentinels (Redis 6.2+), if any.
    pub username: Option<String>,
    /// Password for the Sentinels (`requirepass` in sentinel.conf), if any.
    pub password: Option<Password>,
}

/// Everything the client needs, as supplied by the configuration layer.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Server addresses (`host:port`, `[v6]:port`, or `host` for port 6379). Standalone: the
    /// first is used. Cluster: seeds asked for the slot map, in order. Ignored with Sentinel.
    pub addresses: Vec<String>,
    /// ACL user (Redis 6+): `AUTH <username> <password>`; without it `AUTH <password>`.
    pub username: Option<String>,
    /// Password; no `AUTH` is sent when neither this nor `username` is set.
    pub password: Option<Password>,
    /// Database number (`SELECT`, sent only when not 0; must be 0 in cluster mode).
    pub db: u32,
    /// TLS to the servers (and to the Sentinels); `None` for plain TCP.
    pub tls: Option<TlsOptions>,
    /// Find the master through Sentinels.
    pub sentinel: Option<SentinelOptions>,
    /// Route keys by hash slot across a Redis Cluster.
    pub cluster_mode: bool,
    /// Cluster redirections (`MOVED`/`ASK`) followed per operation.
    pub max_redirects: u32,
    /// Extra attempts after a connection failure (never after a refusal or a timeout).
    pub max_retries: u32,
    /// Connect, read and write timeouts for each connection.
    pub timeouts: Timeouts,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            addresses: vec!["127.0.0.1:6379".into()],
            username: None,
            password: None,
            db: 0,
            tls: None,
            sentinel: None,
            cluster_mode: false,
            max_redirects: 3,
            max_retries: 2,
            timeouts: Timeouts::default(),
        }
    }
}

/// Why [`RedisOptions`] cannot be used. Messages name the option.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// An address does not parse; names the option and the reason.
    Address(&'static str, String),
    /// No address to connect to.
    NoAddress(&'static str),
    /// Options that cannot be combined.
    Conflict(&'static str),
    /// The TLS options are unusable.
    Tls(crate::net::tls::TlsError),
}

impl fmt::Display for RedisConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisConfigError::Address(key, why) => write!(f, "{key}: {why}"),
            RedisConfigError::NoAddress(key) => write!(f, "{key}: expected at least one address"),
            RedisConfigError::Conflict(why) => f.write_str(why),
            RedisConfigError::Tls(e) => write!(f, "tls: {e}"),
        }
    }
}

impl std::error::Error for RedisConfigError {}
