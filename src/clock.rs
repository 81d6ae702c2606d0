//! Wall-clock time, injected so that TTL logic is testable.
//!
//! Under wazero, monotonic time (`Instant`) advances by a fixed step per read when the guest has
//! no sockets, so every TTL, breaker timeout and token time check uses the wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Whole seconds since the Unix epoch (JWT `NumericDate`).
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Microseconds since the Unix epoch, for latency figures (a sub-millisecond L2 round trip).
    /// Defaults to millisecond precision.
    fn now_us(&self) -> u64 {
        self.now_ms().saturating_mul(1000)
    }
}

/// The system's wall clock (`clock_time_get(REALTIME)` in the guest).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

// Inherent, so the plugin (compiled against this type in the wasm artifact, see [`PluginClock`])
// calls them without the trait in scope; the `Clock` impl forwards.
impl SystemClock {
    /// Milliseconds since the Unix epoch.
    #[cfg(target_arch = "wasm32")]
    pub fn now_ms(&self) -> u64 {
        // A reading the host refuses reads as the epoch rather than trap.
        crate::abi::handler::wall_clock_ns().map_or(0, |ns| ns / 1_000_000)
    }

    /// Milliseconds since the Unix epoch.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn now_ms(&self) -> u64 {
        // A clock before 1970 is a host bug; treat it as the epoch rather than trap.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Microseconds since the Unix epoch.
    pub fn now_us(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemClock::now_ms(self)
    }

    fn now_us(&self) -> u64 {
        SystemClock::now_us(self)
    }
}

/// The clock the plugin reads. In the wasm artifact it is [`SystemClock`] itself, so a reading
/// is a direct call rather than one through a vtable (see `crate::http::Ex` for what an indirect
/// call costs under Traefik); natively it is any [`Clock`], so tests can set the time.
#[cfg(target_arch = "wasm32")]
pub type PluginClock = SystemClock;
/// See the wasm32 definition.
#[cfg(not(target_arch = "wasm32"))]
pub type PluginClock = dyn Clock;

/// A settable clock for tests.
#[derive(Debug, Default)]
pub struct ManualClock(std::cell::Cell<u64>);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        Self(std::cell::Cell::new(ms))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.set(self.0.get().saturating_add(ms));
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: u64) {
        self.0.set(ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}
