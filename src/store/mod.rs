//! The two-tier store: an in-guest L1 TTL cache in front of an L2 (Redis/Valkey spoken in-guest,
//! or the host key/value bridge).
//!
//! Keys passed to an [`L2`] are complete (they already carry `keyPrefix` and the middleware's
//! identity). Values are opaque bytes; the tiered layer wraps them in an envelope that carries the
//! absolute expiry and binds the value to its key (AEAD with the key as associated data, or a
//! keyed hash), so a reply that belongs to another key or request is refused, never used.

pub mod bench;
pub mod breaker;
pub mod envelope;
pub mod fake;
pub mod l1;
pub mod metrics;
pub mod tiered;

pub use envelope::{SealKey, Sealer};
pub use tiered::{
    Class, Fallback, Mode, Namespace, SetOutcome, StoreEvent, TieredConfig, TieredStore,
};

use std::fmt;
use std::time::Duration;

/// Why a store operation failed. Nil replies and "already exists" are values, not errors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The L2 could not be reached (connect refused, DNS, closed connection).
    Unavailable(String),
    /// The L2 did not answer within the configured timeout.
    Timeout,
    /// The L2 answered something that is not a valid reply to what was asked
    /// (protocol error, wrong type, a reply that belongs to another request).
    Protocol(String),
    /// The L2 refused the command (e.g. `-NOAUTH`, `-WRONGPASS`, `-READONLY`).
    Refused(String),
    /// A stored value failed its integrity check (wrong key, tampered, truncated).
    Integrity,
    /// The circuit breaker is open; the L2 was not asked.
    CircuitOpen,
    /// The value is larger than the store accepts.
    TooLarge,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(s) => write!(f, "L2 unavailable: {s}"),
            StoreError::Timeout => f.write_str("L2 timed out"),
            StoreError::Protocol(s) => write!(f, "L2 protocol error: {s}"),
            StoreError::Refused(s) => write!(f, "L2 refused the command: {s}"),
            StoreError::Integrity => f.write_str("stored value failed its integrity check"),
            StoreError::CircuitOpen => f.write_str("circuit breaker open"),
            StoreError::TooLarge => f.write_str("value too large"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A shared key/value store reached from the guest: Redis/Valkey (in-guest RESP) or the host
/// bridge. Every method is one round trip (commands that need two are pipelined in one write).
///
/// Implementations must not keep sockets open after [`L2::end_request`]: in Traefik ≤ 3.7.15 the
/// socket table is shared between instances, and pooled instances may be dropped at any time.
pub trait L2 {
    /// The value stored under `key`, or `None` when absent.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The values stored under several keys, in order. Implementations that can answer in one
    /// round trip (a pipeline) override this; the default asks key by key.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    fn get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Stores `value` under `key` for `ttl` (rounded up to whole milliseconds, at least 1 ms).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    fn set(&mut self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// Atomically stores `value` under `key` for `ttl` only if `key` is absent; `true` when this
    /// call stored it. The caller makes `value` unique per call (it carries a random nonce), and
    /// implementations confirm a win by reading the value back in the same round trip, so a reply
    /// that belongs to another request can only turn into `false` or an error, never a wrong `true`.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    fn set_if_absent(&mut self, key: &str, value: &[u8], ttl: Duration)
        -> Result<bool, StoreError>;

    /// Deletes `key`; `true` when it existed.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    fn delete(&mut self, key: &str) -> Result<bool, StoreError>;

    /// Whether `key` exists.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    fn exists(&mut self, key: &str) -> Result<bool, StoreError>;

    /// The remaining time to live of `key`: `None` when absent, `Some(None)` when it has no expiry.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    fn ttl(&mut self, key: &str) -> Result<Option<Option<Duration>>, StoreError>;

    /// Checks that the store answers; returns the round-trip time.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    fn ping(&mut self) -> Result<Duration, StoreError>;

    /// Called once at the end of every request: close connections (sockets must not outlive a
    /// request). Cached topology (Sentinel master, Cluster slots) may be kept.
    fn end_request(&mut self) {}
}
