//! Wall-clock time, injected so that TTL logic is testable.
//!
//! Under wazero, monotonic time (`Instant`) advances by a fixed step per read when the guest has
//! no sockets, so every TTL, breaker timeout and token time check uses the wall clock.

use std::sync::atomic::{AtomicU32, Ordering};
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

    /// Forgets a reading kept for reuse (see [`RequestClock`]); the next one asks the host.
    fn refresh(&self) {}

    /// Waits `d` ([`pause`]), then forgets the kept reading.
    fn sleep(&self, d: std::time::Duration) {
        pause(d);
        self.refresh();
    }
}

/// Waits `d`: in the guest one `poll_oneoff` clock subscription that never traps
/// ([`crate::net::sys::sleep`]), natively `std::thread::sleep`.
pub fn pause(d: std::time::Duration) {
    #[cfg(target_arch = "wasm32")]
    crate::net::sys::sleep(d);
    #[cfg(not(target_arch = "wasm32"))]
    std::thread::sleep(d);
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

/// Requests started in this instance, counted by the `handle_request` export
/// ([`begin_request`]): a [`RequestClock`] keeps a reading only within the request it was made in.
static REQUEST_EPOCH: AtomicU32 = AtomicU32::new(0);

/// Marks the start of a request (called by `http_wasm_exports!` before anything else runs).
pub fn begin_request() {
    REQUEST_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The system clock, read at most once per request and once after each wait: a reading is kept
/// until the next request starts ([`begin_request`]) or the code that waited (an L2 round trip, a
/// fetch from the provider) calls [`refresh`](RequestClock::refresh). One request's checks thus
/// all see the same instant, and a wait is never hidden from what follows it. The epoch, not a
/// call in the plugin's pipeline, ends a reading, so any guest built on this crate (the test
/// probes too) reads time anew per request.
///
/// Why: the plugin's Traefik artifact imports sockets, so Traefik gives it stealthrocket/wasi-go
/// for WASI, where one `clock_time_get` costs ≈ 0.7 µs of host CPU (the perf-map harness: wazergo's
/// wrappers, wasi-go's `ClockTimeGet`, the vDSO). A valid-session request read it twice (the
/// session's age, then the store for the revocation marker), a cached bearer request once; an
/// L2 round trip reads it around the wait anyway.
#[derive(Debug, Default)]
pub struct RequestClock {
    /// The kept reading in milliseconds (0: none) and the request it belongs to.
    kept: std::cell::Cell<(u64, u32)>,
}

impl RequestClock {
    /// Milliseconds since the Unix epoch: the kept reading, or a new one (then kept).
    pub fn now_ms(&self) -> u64 {
        let epoch = REQUEST_EPOCH.load(Ordering::Relaxed);
        match self.kept.get() {
            (kept, at) if kept != 0 && at == epoch => kept,
            _ => {
                let now = SystemClock.now_ms();
                self.kept.set((now, epoch));
                now
            }
        }
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Microseconds since the Unix epoch, always read anew (latency figures time a wait).
    pub fn now_us(&self) -> u64 {
        SystemClock.now_us()
    }

    /// Forgets the kept reading.
    pub fn refresh(&self) {
        self.kept.set((0, 0));
    }

    /// Waits `d` ([`pause`]), then forgets the kept reading.
    pub fn sleep(&self, d: std::time::Duration) {
        pause(d);
        self.refresh();
    }
}

impl Clock for RequestClock {
    fn now_ms(&self) -> u64 {
        RequestClock::now_ms(self)
    }

    fn now_us(&self) -> u64 {
        RequestClock::now_us(self)
    }

    fn refresh(&self) {
        RequestClock::refresh(self);
    }
}

/// The clock the plugin reads. In the wasm artifact it is [`RequestClock`] itself, so a reading
/// is a direct call rather than one through a vtable (see `crate::http::Ex` for what an indirect
/// call costs under Traefik); natively it is any [`Clock`], so tests can set the time.
#[cfg(target_arch = "wasm32")]
pub type PluginClock = RequestClock;
/// See the wasm32 definition.
#[cfg(not(target_arch = "wasm32"))]
pub type PluginClock = dyn Clock;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_clock_keeps_its_reading_until_refreshed() {
        let c = RequestClock::default();
        let first = c.now_ms();
        assert!(first > 1_600_000_000_000, "a wall-clock reading: {first}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.now_ms(), first, "kept");
        assert_eq!(c.now_secs(), first / 1000);
        // Latency figures are never the kept reading.
        assert!(c.now_us() >= (first + 20) * 1000);
        Clock::refresh(&c);
        let second = c.now_ms();
        assert!(second >= first + 20, "read anew: {first} → {second}");
        // A new request reads anew too, without a refresh.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.now_ms(), second);
        begin_request();
        assert!(c.now_ms() >= second + 20, "a new request's reading");
    }
}

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

    /// Moves the clock forward instead of waiting.
    fn sleep(&self, d: std::time::Duration) {
        self.advance(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
}
