//! The tiered store: modes, breaker, fallback, single-use checks, envelopes, metrics.
//!
//! # Modes (DESIGN.md "Store semantics")
//!
//! - `memory`: L1 only. Single-use checks are per instance (the config layer refuses one-time
//!   tokens and DPoP without an L2 unless per-instance detection is explicitly accepted).
//! - `redis`: every operation goes to the L2; the L1 is used only as the fallback while the L2 is
//!   unavailable (`fallback: l1`).
//! - `hybrid`: reads L1 → L2 → fill L1 with a TTL no longer than the value's remaining lifetime
//!   (from the envelope's expiry) nor `l1_max_ttl`; L2 misses are remembered in L1 for
//!   `negative_ttl` (so a revocation check does not cost a round trip per request); writes go to
//!   L2 then L1. One L2 round trip per read.
//!
//! # Keys and envelopes
//!
//! Keys are `<keyPrefix><identity>:<namespace>:<key>`. Every L2 value is an envelope
//! ([`super::envelope`]) bound to that full key, so a reply that belongs to another key or request
//! (Traefik ≤ 3.7.15 can hand one request another's socket bytes, platform report §4) fails the
//! check: it counts as an L2 error and an integrity failure, and never becomes a value or a win.
//! Set-if-absent writes a fresh nonce each time; the L2 confirms a win by reading it back.
//!
//! # Failures
//!
//! An operation is tried `1 + max_retries` times (a timeout is never retried: `readTimeout` bounds
//! a request's wait for the store); the breaker counts **one** failure per operation
//! (after its retries), so `circuitBreakerThreshold` counts failed operations, not attempts. While
//! the breaker is open the L2 is not asked. What happens when the L2 cannot answer:
//!
//! | operation | `fallback: l1` (default) | `fallback: deny` |
//! |---|---|---|
//! | `get` | answered from L1 | error |
//! | `set` ([`Class::Cache`], [`Class::Confidential`]) | stored in L1 only, full TTL | error, L1 copy dropped |
//! | `set` ([`Class::Revocation`]) | stored in L1 **and** an error | same |
//! | `delete` | removed from L1 **and** an error | same |
//! | `set_if_absent` ([`Class::SingleUse`]) | [`SetOutcome::Unavailable`] unless `insecure_accept_per_instance` (then L1) | same |
//! | `set_if_absent` (other classes, e.g. locks) | decided in L1 | [`SetOutcome::Unavailable`] |
//!
//! Changes other replicas must see (a revocation, a delete) are reported when they did not reach
//! the L2, never silently kept in L1 only. All state here (L1, breaker, counters) is per guest
//! instance.

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use super::breaker::{Breaker, BreakerConfig, BreakerEvent};
use super::envelope::{OpenError, Opened, Sealer};
use super::l1::{Insert, L1Config, L1};
use super::metrics::{L2Counters, Snapshot};
use super::{StoreError, L2};
use crate::clock::PluginClock;

/// L1 entry tags: the L1 holds either a value or the memory of an L2 miss.
const L1_ABSENT: u8 = 0;
const L1_VALUE: u8 = 1;

/// At most this many events wait for [`TieredStore::drain_events`]; later ones are counted.
const MAX_EVENTS: usize = 32;

/// Where values live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// L1 only.
    Memory,
    /// Every operation to the L2; L1 only as the fallback.
    Redis,
    /// L1 in front of the L2.
    Hybrid,
}

impl Mode {
    /// `memory`, `redis` or `hybrid` (the `cacheMode` values).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Memory => "memory",
            Mode::Redis => "redis",
            Mode::Hybrid => "hybrid",
        }
    }

    /// Parses a `cacheMode` value (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [Mode::Memory, Mode::Redis, Mode::Hybrid]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// What cached and session data do while the L2 is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Answer from L1 (the seeds' behaviour).
    L1,
    /// Fail the operation.
    Deny,
}

impl Fallback {
    /// `l1` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::L1 => "l1",
            Fallback::Deny => "deny",
        }
    }
}

/// A key namespace: the part of the key that says what kind of record it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Namespace(&'static str);

impl Namespace {
    /// Server-side session tickets.
    pub const SESSION: Self = Self("sess");
    /// ID token / access token `jti` replay markers.
    pub const JTI: Self = Self("jti");
    /// Revocation markers (logout).
    pub const REVOCATION: Self = Self("rev");
    /// Locks (refresh).
    pub const LOCK: Self = Self("lock");
    /// Cached JWKS.
    pub const JWKS: Self = Self("jwks");
    /// Cached discovery documents.
    pub const DISCOVERY: Self = Self("disc");
    /// Authorization request state markers.
    pub const STATE: Self = Self("state");
    /// DPoP proof `jti` markers.
    pub const DPOP: Self = Self("dpop");

    /// Another namespace. It must not contain `:` (namespaces are fixed names, not input).
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// What kind of record an operation writes; decides sealing and failure behaviour (see the
/// module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Cached data (JWKS, discovery, verdicts) and locks: fallback policy applies.
    Cache,
    /// Confidential data (sessions, refresh tokens): must be sealed with AES-256-GCM (refused
    /// when the store has no sealing key); fallback policy applies.
    Confidential,
    /// A revocation marker: a `set` must reach the L2, or the caller is told.
    Revocation,
    /// A single-use check (one-time tokens, DPoP proofs, logout tokens, ID token `jti`, state):
    /// refused while the L2 is unavailable unless per-instance detection is accepted.
    SingleUse,
}

/// The result of [`TieredStore::set_if_absent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// This call stored the marker: first use.
    Won,
    /// The marker exists: already used (or the lock is held).
    AlreadyUsed,
    /// The store could not decide (L2 unavailable and no per-instance fallback allowed, or the
    /// marker could not be recorded): treat as refused.
    Unavailable,
}

/// Something worth one log line; drained by the request pipeline with
/// [`TieredStore::drain_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// The breaker changed state.
    Breaker(BreakerEvent),
    /// An L2 reply failed its envelope check (the key is not logged: it can hold a session id).
    Integrity {
        /// The namespace of the key asked for.
        namespace: &'static str,
    },
    /// The first failed L2 operation after a success.
    L2Failing {
        /// What failed.
        error: StoreError,
    },
    /// Events were dropped because nobody drained them.
    Dropped(u64),
}

impl fmt::Display for StoreEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreEvent::Breaker(e) => e.fmt(f),
            StoreEvent::Integrity { namespace } => write!(
                f,
                "store: an L2 reply for a `{namespace}` key failed its integrity check \
                 (a reply meant for another key or request, or tampering); refused"
            ),
            StoreEvent::L2Failing { error } => write!(f, "store: L2 operation failed: {error}"),
            StoreEvent::Dropped(n) => write!(f, "store: {n} store events were not logged"),
        }
    }
}

/// The store's settings (the config layer maps `redis.*` onto these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TieredConfig {
    /// Where values live (`cacheMode`).
    pub mode: Mode,
    /// `keyPrefix`, prepended verbatim.
    pub key_prefix: String,
    /// The middleware's derived identity (so two middlewares never see each other's data).
    pub identity: String,
    /// L1 bounds.
    pub l1: L1Config,
    /// Hybrid mode: the longest an L2 value is served from L1 without asking the L2 again; this
    /// bounds how long a change made on another replica stays unseen here.
    pub l1_max_ttl: Duration,
    /// Hybrid mode: how long an L2 miss is remembered in L1 (capped by `l1_max_ttl`; zero
    /// disables). A revocation written elsewhere is seen here within this time.
    pub negative_ttl: Duration,
    /// Extra attempts after a failed L2 attempt (`maxRetries`).
    pub max_retries: u32,
    /// Breaker settings.
    pub breaker: BreakerConfig,
    /// What cached and session data do while the L2 is unavailable.
    pub fallback: Fallback,
    /// Let single-use checks fall back to this instance's L1 while the L2 is unavailable. A token
    /// replayed against another instance then goes undetected: off by default.
    pub insecure_accept_per_instance: bool,
}

impl TieredConfig {
    /// Default `keyPrefix`.
    pub const DEFAULT_KEY_PREFIX: &'static str = "oidc-guard:";
    /// Default L1 max TTL in hybrid mode: 5 s, the revocation-check interval.
    pub const DEFAULT_L1_MAX_TTL: Duration = Duration::from_secs(5);
    /// Default retries: 1 (each attempt may wait up to `readTimeout`).
    pub const DEFAULT_MAX_RETRIES: u32 = 1;

    /// Defaults for `mode` and `identity`.
    pub fn new(mode: Mode, identity: impl Into<String>) -> Self {
        Self {
            mode,
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_string(),
            identity: identity.into(),
            l1: L1Config::default(),
            l1_max_ttl: Self::DEFAULT_L1_MAX_TTL,
            negative_ttl: Self::DEFAULT_L1_MAX_TTL,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            breaker: BreakerConfig::default(),
            fallback: Fallback::L1,
            insecure_accept_per_instance: false,
        }
    }
}

/// What the L1 holds for a key.
enum L1Read {
    Value(Vec<u8>),
    Absent,
    Miss,
}

/// The two-tier store. One per middleware per guest instance.
pub struct TieredStore {
    cfg: TieredConfig,
    /// `<keyPrefix><identity>:`
    scope: String,
    l1: L1,
    l2: Option<Box<dyn L2>>,
    /// Whether the L2 was used since the last [`TieredStore::end_request`]: most requests (an
    /// L1 hit in hybrid mode) never reach it, and then have nothing to close.
    l2_used: bool,
    sealer: Sealer,
    clock: Rc<PluginClock>,
    breaker: Breaker,
    counters: L2Counters,
    events: Vec<StoreEvent>,
    dropped_events: u64,
}

impl fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredStore")
            .field("mode", &self.cfg.mode)
            .field("l2", &self.l2.is_some())
            .field("sealer", &self.sealer)
            .field("breaker", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl TieredStore {
    /// A store. `l2` is required for `redis` and `hybrid` modes: without one, every L2 operation
    /// fails as unavailable (and the failure rules apply), never silently downgrading to
    /// per-instance replay detection. `sealer` decides the envelope ([`Sealer::aead`] when a key
    /// exists).
    pub fn new(
        cfg: TieredConfig,
        l2: Option<Box<dyn L2>>,
        sealer: Sealer,
        clock: Rc<PluginClock>,
    ) -> Self {
        let scope = format!("{}{}:", cfg.key_prefix, cfg.identity);
        Self {
            l1: L1::new(cfg.l1),
            breaker: Breaker::new(cfg.breaker),
            cfg,
            scope,
            l2,
            l2_used: false,
            sealer,
            clock,
            counters: L2Counters::default(),
            events: Vec::new(),
            dropped_events: 0,
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    /// The full key for `ns` and `key`: `<keyPrefix><identity>:<namespace>:<key>`.
    pub fn full_key(&self, ns: Namespace, key: &str) -> String {
        let mut k = String::with_capacity(self.scope.len() + ns.0.len() + 1 + key.len());
        k.push_str(&self.scope);
        k.push_str(ns.0);
        k.push(':');
        k.push_str(key);
        k
    }

    /// The value under `ns`/`key`, if any.
    ///
    /// # Errors
    /// With `fallback: deny`, the L2's error when it cannot answer (an integrity failure is
    /// [`StoreError::Integrity`], an open breaker [`StoreError::CircuitOpen`]).
    pub fn get(&mut self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_with(ns, key, true)
    }

    /// As [`TieredStore::get`], but a cached "absent" in L1 (hybrid) is not believed: the L2 is
    /// asked. For reads that decide whether to do something only one replica may do (has another
    /// replica already refreshed this session?), where a remembered miss could outlive the lock.
    ///
    /// # Errors
    /// As [`TieredStore::get`].
    pub fn get_unless_absent_cached(
        &mut self,
        ns: Namespace,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_with(ns, key, false)
    }

    fn get_with(
        &mut self,
        ns: Namespace,
        key: &str,
        trust_absent: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.full_key(ns, key);
        let now = self.clock.now_ms();
        if self.cfg.mode != Mode::Redis {
            match self.l1_read(&full, now) {
                L1Read::Value(v) => return Ok(Some(v)),
                L1Read::Absent if trust_absent || self.cfg.mode == Mode::Memory => return Ok(None),
                L1Read::Absent => {}
                L1Read::Miss if self.cfg.mode == Mode::Memory => return Ok(None),
                L1Read::Miss => {}
            }
        }
        let res = self.l2_op(ns, |l2, sealer, now| {
            open_reply(sealer, &full, l2.get(&full)?, now)
        });
        match res {
            Ok(found) => Ok(self.after_l2_read(&full, found, now)),
            Err(e) => self.fallback_read(&full, e, now),
        }
    }

    /// Reads several keys of one namespace: L1 first (hybrid), then every miss in **one** L2
    /// operation ([`L2::get_many`], one round trip for Redis). Values in the order of `keys`;
    /// the fallback policy applies as for [`TieredStore::get`].
    ///
    /// # Errors
    /// [`StoreError`] when the L2 cannot answer and the fallback is `deny`.
    pub fn get_many(
        &mut self,
        ns: Namespace,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let fulls: Vec<String> = keys.iter().map(|k| self.full_key(ns, k)).collect();
        let now = self.clock.now_ms();
        let mut out: Vec<Option<Vec<u8>>> = vec![None; fulls.len()];
        let mut missing: Vec<usize> = Vec::new();
        for (i, full) in fulls.iter().enumerate() {
            if self.cfg.mode == Mode::Redis {
                missing.push(i);
                continue;
            }
            match self.l1_read(full, now) {
                L1Read::Value(v) => out[i] = Some(v),
                L1Read::Absent => {}
                L1Read::Miss if self.cfg.mode == Mode::Memory => {}
                L1Read::Miss => missing.push(i),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let asked: Vec<&str> = missing
            .iter()
            .filter_map(|i| fulls.get(*i).map(String::as_str))
            .collect();
        let res = self.l2_op(ns, |l2, sealer, now| {
            let values = l2.get_many(&asked)?;
            if values.len() != asked.len() {
                return Err(StoreError::Protocol(
                    "get_many answered a different number of values".into(),
                ));
            }
            values
                .into_iter()
                .zip(&asked)
                .map(|(v, full)| open_reply(sealer, full, v, now))
                .collect::<Result<Vec<_>, _>>()
        });
        match res {
            Ok(found) => {
                for (i, f) in missing.into_iter().zip(found) {
                    if let Some(full) = fulls.get(i) {
                        let v = self.after_l2_read(full, f, now);
                        if let Some(slot) = out.get_mut(i) {
                            *slot = v;
                        }
                    }
                }
                Ok(out)
            }
            Err(e) => {
                for i in missing {
                    if let Some(full) = fulls.get(i) {
                        let v = self.fallback_read(full, e.clone(), now)?;
                        if let Some(slot) = out.get_mut(i) {
                            *slot = v;
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// A number that changes whenever this instance's L1 changes content (see
    /// [`L1::generation`]).
    pub fn l1_generation(&self) -> u64 {
        self.l1.generation()
    }

    /// Until when (ms) a [`TieredStore::get_many`] of `keys` would give the answer it just gave,
    /// as long as [`TieredStore::l1_generation`] stays the same: memory mode reads only the L1,
    /// so for as long as it is unchanged; hybrid mode until the first of the keys' L1 entries
    /// expires (then the L2 is due again), or now when one has none; redis mode asks the L2 every
    /// time, so now.
    pub fn unchanged_until(&self, ns: Namespace, keys: &[&str]) -> u64 {
        let now = self.clock.now_ms();
        match self.cfg.mode {
            Mode::Memory => u64::MAX,
            Mode::Redis => now,
            Mode::Hybrid => keys
                .iter()
                .map(|k| {
                    self.l1
                        .expires_at(&self.full_key(ns, k), now)
                        .unwrap_or(now)
                })
                .min()
                .unwrap_or(now),
        }
    }

    /// Counts and caches (hybrid) what the L2 answered for `full`.
    fn after_l2_read(&mut self, full: &str, found: Option<Opened>, now: u64) -> Option<Vec<u8>> {
        match found {
            Some(opened) => {
                self.counters.hits += 1;
                if self.cfg.mode == Mode::Hybrid {
                    // Never serve from L1 past the writer's expiry, nor longer than l1_max_ttl.
                    let left = Duration::from_millis(opened.expires_at_ms.saturating_sub(now));
                    let ttl = left.min(self.cfg.l1_max_ttl);
                    self.l1_write(full, L1_VALUE, &opened.payload, ttl, now, false);
                }
                Some(opened.payload)
            }
            None => {
                self.counters.misses += 1;
                if self.cfg.mode == Mode::Hybrid {
                    let ttl = self.cfg.negative_ttl.min(self.cfg.l1_max_ttl);
                    self.l1_write(full, L1_ABSENT, b"", ttl, now, false);
                }
                None
            }
        }
    }

    /// What a read answers when the L2 failed with `e`: the fallback policy.
    fn fallback_read(
        &mut self,
        full: &str,
        e: StoreError,
        now: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // An integrity failure is not an outage: the L2 answered with a value that is not ours
        // (planted by another writer, or a reply that belongs to another request). Falling back
        // would read it as "absent" — for a revocation marker, "not revoked" — so it is an error
        // whatever the fallback: a mixed-up reply can only become a refusal.
        if e == StoreError::Integrity {
            return Err(e);
        }
        match self.cfg.fallback {
            Fallback::Deny => Err(e),
            Fallback::L1 => {
                self.counters.fallbacks += 1;
                // Hybrid mode already looked in L1; redis mode looks now.
                match self.cfg.mode {
                    Mode::Redis => match self.l1_read(full, now) {
                        L1Read::Value(v) => Ok(Some(v)),
                        L1Read::Absent | L1Read::Miss => Ok(None),
                    },
                    Mode::Memory | Mode::Hybrid => Ok(None),
                }
            }
        }
    }

    /// Stores `value` under `ns`/`key` for `ttl`.
    ///
    /// # Errors
    /// [`StoreError::Refused`] for a zero TTL, or for a [`Class::Confidential`] value when the
    /// store has no sealing key; [`StoreError::TooLarge`] when the value cannot be stored where
    /// it must go; the L2's error for a [`Class::Revocation`] (or [`Class::SingleUse`]) value
    /// that did not reach the L2 (it is kept in L1 for this instance all the same), and for any
    /// value with `fallback: deny`.
    pub fn set(
        &mut self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Duration,
        class: Class,
    ) -> Result<(), StoreError> {
        self.check_write(ttl, class)?;
        let full = self.full_key(ns, key);
        let now = self.clock.now_ms();
        // What only this L1 will remember must not be evicted by other entries while live.
        let pin = matches!(class, Class::Revocation | Class::SingleUse);
        if self.cfg.mode == Mode::Memory {
            return match self.l1_write(&full, L1_VALUE, value, ttl, now, pin) {
                Insert::Stored | Insert::Present => Ok(()),
                Insert::Refused if pin => Err(StoreError::Unavailable(
                    "the instance's L1 holds as many revocations and single-use markers as it may (half its entries or bytes); use Redis or raise store.l1.maxEntries".into(),
                )),
                Insert::Refused => Err(StoreError::TooLarge),
            };
        }
        let envelope = self.sealer.seal(&full, value, expiry(now, ttl))?;
        let res = self.l2_op(ns, |l2, _, _| l2.set(&full, &envelope, ttl));
        match res {
            Ok(()) => {
                match self.cfg.mode {
                    Mode::Hybrid => {
                        let t = ttl.min(self.cfg.l1_max_ttl);
                        self.l1_write(&full, L1_VALUE, value, t, now, false);
                    }
                    // A copy left from an earlier outage must not resurface in the next one.
                    Mode::Redis | Mode::Memory => {
                        self.l1.remove(&full, now);
                    }
                }
                Ok(())
            }
            Err(e) if pin => {
                // Honour it on this instance at least, and tell the caller it did not propagate.
                self.l1_write(&full, L1_VALUE, value, ttl, now, true);
                Err(e)
            }
            Err(e) => match self.cfg.fallback {
                Fallback::Deny => {
                    self.l1.remove(&full, now);
                    Err(e)
                }
                Fallback::L1 => {
                    self.counters.fallbacks += 1;
                    match self.l1_write(&full, L1_VALUE, value, ttl, now, false) {
                        Insert::Refused => Err(e),
                        Insert::Stored | Insert::Present => Ok(()),
                    }
                }
            },
        }
    }

    /// Atomically records a marker under `ns`/`key` for `ttl` if none exists: the single-use check
    /// (with [`Class::SingleUse`]) or a lock (with [`Class::Cache`]).
    ///
    /// # Errors
    /// [`StoreError::Refused`] for a zero TTL or a failed random source (nothing else: an
    /// unavailable L2 is [`SetOutcome::Unavailable`] or a per-instance decision).
    pub fn set_if_absent(
        &mut self,
        ns: Namespace,
        key: &str,
        ttl: Duration,
        class: Class,
    ) -> Result<SetOutcome, StoreError> {
        self.check_write(ttl, class)?;
        let full = self.full_key(ns, key);
        let now = self.clock.now_ms();
        let single_use = class == Class::SingleUse;
        if self.cfg.mode == Mode::Memory {
            return Ok(self.l1_marker(&full, ttl, now, single_use));
        }
        // A marker this instance saw (won, or recorded per instance) is final: no round trip.
        if single_use && self.cfg.mode == Mode::Hybrid {
            if let L1Read::Value(_) = self.l1_read(&full, now) {
                return Ok(SetOutcome::AlreadyUsed);
            }
        }
        // Empty payload; the envelope's random nonce makes the value unique to this call, and the
        // L2 confirms a win by reading it back (see `L2::set_if_absent`). Retries resend the same
        // value, so a win whose reply was lost is still recognised.
        let envelope = self.sealer.seal(&full, b"", expiry(now, ttl))?;
        let res = self.l2_op(ns, |l2, _, _| l2.set_if_absent(&full, &envelope, ttl));
        match res {
            Ok(true) => {
                if single_use && self.cfg.insecure_accept_per_instance {
                    // Remembered for per-instance detection during a later outage.
                    self.l1_write(&full, L1_VALUE, b"", ttl, now, true);
                }
                Ok(SetOutcome::Won)
            }
            Ok(false) => Ok(SetOutcome::AlreadyUsed),
            Err(_) => {
                let per_instance = if single_use {
                    self.cfg.insecure_accept_per_instance
                } else {
                    self.cfg.fallback == Fallback::L1
                };
                if per_instance {
                    self.counters.fallbacks += 1;
                    Ok(self.l1_marker(&full, ttl, now, single_use))
                } else {
                    if single_use {
                        self.counters.single_use_refusals += 1;
                    }
                    Ok(SetOutcome::Unavailable)
                }
            }
        }
    }

    /// Deletes `ns`/`key` from L1 and L2.
    ///
    /// # Errors
    /// The L2's error when the delete did not reach it (the L1 copy is removed all the same):
    /// other replicas still see the value, so the caller must know.
    pub fn delete(&mut self, ns: Namespace, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(ns, key);
        let now = self.clock.now_ms();
        self.l1.remove(&full, now);
        if self.cfg.mode == Mode::Memory {
            return Ok(());
        }
        self.l2_op(ns, |l2, _, _| l2.delete(&full).map(|_| ()))
    }

    /// Asks the L2 whether it answers (health endpoint), through the breaker, and records the
    /// round trip. `Ok(ZERO)` in memory mode.
    ///
    /// # Errors
    /// The L2's error, or [`StoreError::CircuitOpen`].
    pub fn ping(&mut self) -> Result<Duration, StoreError> {
        if self.cfg.mode == Mode::Memory {
            return Ok(Duration::ZERO);
        }
        self.l2_op(Namespace::new("ping"), |l2, _, _| l2.ping())
    }

    /// Ends the request: the L2, if this request used it, closes its connections (sockets must
    /// not outlive a request).
    pub fn end_request(&mut self) {
        if !std::mem::take(&mut self.l2_used) {
            return;
        }
        if let Some(l2) = self.l2.as_deref_mut() {
            l2.end_request();
        }
    }

    /// Whether there are events for [`drain_events`](Self::drain_events).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || self.dropped_events > 0
    }

    /// Events since the last call, oldest first, for the log.
    pub fn drain_events(&mut self) -> Vec<StoreEvent> {
        let mut out = std::mem::take(&mut self.events);
        if self.dropped_events > 0 {
            out.push(StoreEvent::Dropped(self.dropped_events));
            self.dropped_events = 0;
        }
        out
    }

    /// The figures for health and metrics (this guest instance).
    pub fn snapshot(&self) -> Snapshot {
        let l1 = self.l1.config();
        Snapshot {
            mode: self.cfg.mode.as_str(),
            fallback: self.cfg.fallback.as_str(),
            l2_configured: self.cfg.mode != Mode::Memory && self.l2.is_some(),
            l1: self.l1.stats(),
            l1_entries: self.l1.len(),
            l1_bytes: self.l1.bytes(),
            l1_max_entries: l1.max_entries,
            l1_max_bytes: l1.max_bytes,
            l2: self.counters,
            breaker: self.breaker.stats(),
        }
    }

    fn check_write(&self, ttl: Duration, class: Class) -> Result<(), StoreError> {
        if ttl.is_zero() {
            return Err(StoreError::Refused(
                "a store write needs a TTL above zero".into(),
            ));
        }
        if class == Class::Confidential
            && self.cfg.mode != Mode::Memory
            && !self.sealer.is_confidential()
        {
            return Err(StoreError::Refused(
                "confidential values need a sealing key (sessionEncryptionKey)".into(),
            ));
        }
        Ok(())
    }

    fn l1_read(&mut self, full: &str, now: u64) -> L1Read {
        match self.l1.get(full, now) {
            None => L1Read::Miss,
            Some([L1_VALUE, rest @ ..]) => L1Read::Value(rest.to_vec()),
            Some(_) => L1Read::Absent,
        }
    }

    /// Stores `tag` + `value`; `pin`: never evicted by other entries while live (see
    /// [`L1::put_if_absent_pinned`]), for what only this L1 will remember.
    fn l1_write(
        &mut self,
        full: &str,
        tag: u8,
        value: &[u8],
        ttl: Duration,
        now: u64,
        pin: bool,
    ) -> Insert {
        let mut v = Vec::with_capacity(1 + value.len());
        v.push(tag);
        v.extend_from_slice(value);
        if pin {
            self.l1.put_pinned(full, &v, ttl, now)
        } else {
            self.l1.put(full, &v, ttl, now)
        }
    }

    /// A marker decided in this instance's L1: pinned when it is a single-use marker (a lock may
    /// be evicted; a used `jti` pushed out by newer entries would be accepted again), and then
    /// [`SetOutcome::Unavailable`] (refused) when no more may be pinned.
    fn l1_marker(&mut self, full: &str, ttl: Duration, now: u64, single_use: bool) -> SetOutcome {
        // A remembered L2 miss is not a marker: replace it.
        if let L1Read::Absent = self.l1_read(full, now) {
            self.l1.remove(full, now);
        }
        let inserted = if single_use {
            self.l1.put_if_absent_pinned(full, &[L1_VALUE], ttl, now)
        } else {
            self.l1.put_if_absent(full, &[L1_VALUE], ttl, now)
        };
        match inserted {
            Insert::Stored => SetOutcome::Won,
            Insert::Present => SetOutcome::AlreadyUsed,
            Insert::Refused => SetOutcome::Unavailable,
        }
    }

    /// Runs `op` against the L2 through the breaker, with retries, counting and timing.
    fn l2_op<T>(
        &mut self,
        ns: Namespace,
        mut op: impl FnMut(&mut dyn L2, &Sealer, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let now = self.clock.now_ms();
        let (admitted, ev) = self.breaker.admit(now);
        if let Some(ev) = ev {
            push_event(
                &mut self.events,
                &mut self.dropped_events,
                StoreEvent::Breaker(ev),
            );
        }
        if !admitted {
            return Err(StoreError::CircuitOpen);
        }
        let mut last = StoreError::Unavailable("no L2 is configured".into());
        if let Some(l2) = self.l2.as_deref_mut() {
            self.l2_used = true;
            for attempt in 0..=self.cfg.max_retries {
                if attempt > 0 {
                    self.counters.retries += 1;
                }
                let t0 = self.clock.now_us();
                let result = op(l2, &self.sealer, now);
                // The round trip took time: the breaker and what follows read the clock anew.
                self.clock.refresh();
                match result {
                    Ok(v) => {
                        let dt = self.clock.now_us().saturating_sub(t0);
                        self.counters.latency.record(dt);
                        self.counters.last_ok = Some(true);
                        if let Some(ev) = self.breaker.success(self.clock.now_ms()) {
                            push_event(
                                &mut self.events,
                                &mut self.dropped_events,
                                StoreEvent::Breaker(ev),
                            );
                        }
                        return Ok(v);
                    }
                    // The L2 answered; the value is simply too large for it. Not an outage.
                    Err(StoreError::TooLarge) => return Err(StoreError::TooLarge),
                    // The L2 answered with a value that does not open: counted, reported and
                    // retried (a reply that belonged to another request's socket comes right on
                    // a new connection), but not an outage — garbage planted under one key must
                    // not open the breaker for every key.
                    Err(StoreError::Integrity) => {
                        self.counters.errors += 1;
                        self.counters.integrity_failures += 1;
                        let ev = StoreEvent::Integrity { namespace: ns.0 };
                        push_event(&mut self.events, &mut self.dropped_events, ev);
                        last = StoreError::Integrity;
                    }
                    Err(e) => {
                        self.counters.errors += 1;
                        // A timeout is not retried: the request already waited `readTimeout`
                        // for this operation, and `readTimeout` is the longest a request waits
                        // for the store (a stopped server would otherwise hold every request
                        // for `(1 + maxRetries) × readTimeout`).
                        let timed_out = e == StoreError::Timeout;
                        last = e;
                        if timed_out {
                            break;
                        }
                    }
                }
            }
        }
        if last == StoreError::Integrity {
            return Err(last);
        }
        // One breaker failure per operation, whatever the retries.
        if self.breaker.stats().consecutive_failures == 0 {
            let ev = StoreEvent::L2Failing {
                error: last.clone(),
            };
            push_event(&mut self.events, &mut self.dropped_events, ev);
        }
        self.counters.last_ok = Some(false);
        if let Some(ev) = self.breaker.failure(self.clock.now_ms()) {
            push_event(
                &mut self.events,
                &mut self.dropped_events,
                StoreEvent::Breaker(ev),
            );
        }
        Err(last)
    }
}

fn push_event(events: &mut Vec<StoreEvent>, dropped: &mut u64, ev: StoreEvent) {
    if events.len() < MAX_EVENTS {
        events.push(ev);
    } else {
        *dropped += 1;
    }
}

/// Absolute expiry for a TTL, rounded up to whole milliseconds like the L2 does.
fn expiry(now_ms: u64, ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    now_ms.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "tiered_tests.rs"]
mod tests;

/// What an L2 read answered for `full`, opened: an absent or expired value is `None`; a value
/// sealed for another key (or tampered with) is an integrity error, never used.
fn open_reply(
    sealer: &Sealer,
    full: &str,
    reply: Option<Vec<u8>>,
    now_ms: u64,
) -> Result<Option<Opened>, StoreError> {
    match reply {
        None => Ok(None),
        Some(bytes) => match sealer.open(full, &bytes, now_ms) {
            Ok(o) => Ok(Some(o)),
            Err(OpenError::Expired) => Ok(None),
            Err(OpenError::Invalid) => Err(StoreError::Integrity),
        },
    }
}
