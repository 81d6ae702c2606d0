//! The circuit breaker in front of the L2.
//!
//! CLOSED → OPEN after `threshold` consecutive failed operations → HALF-OPEN once `timeout` has
//! passed on the wall clock → one trial operation: success → CLOSED, failure → OPEN again.
//!
//! The state lives in one guest instance. Traefik pools instances and creates and drops them at
//! will, so each instance learns about an outage on its own (up to `threshold` failures each) and
//! figures in health and metrics are per instance. Time comes from the caller (`now_ms`, wall
//! clock: monotonic time is not usable in the guest).
//!
//! Every state change is returned exactly once as a [`BreakerEvent`] for the caller to log.

use std::fmt;
use std::time::Duration;

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed operations that open the breaker (`circuitBreakerThreshold`). Zero
    /// disables the breaker: it never opens.
    pub threshold: u32,
    /// How long the breaker stays open before one trial is let through
    /// (`circuitBreakerTimeout`).
    pub timeout: Duration,
}

impl BreakerConfig {
    /// Default threshold: 5 consecutive failures (as traefikoidc).
    pub const DEFAULT_THRESHOLD: u32 = 5;
    /// Default open time: 30 s. Shorter than traefikoidc's 60 s because single-use checks
    /// refuse while the breaker is open.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            threshold: Self::DEFAULT_THRESHOLD,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Operations go to the L2.
    Closed,
    /// The L2 is not asked until the timeout has passed.
    Open,
    /// One trial operation is let through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    /// The gauge value exported in metrics: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerEvent {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Consecutive failures at the time of the change.
    pub consecutive_failures: u32,
}

impl fmt::Display for BreakerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store circuit breaker {} -> {} after {} consecutive L2 failures (this guest instance)",
            self.from, self.to, self.consecutive_failures
        )?;
        match self.to {
            BreakerState::Open => f.write_str(
                "; cached and session data fall back to L1 unless fallback is deny; \
                 single-use checks refuse unless per-instance detection is accepted",
            ),
            BreakerState::HalfOpen => f.write_str("; trying the L2 once"),
            BreakerState::Closed => f.write_str("; L2 back in use"),
        }
    }
}

/// Counters for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerStats {
    /// The current state.
    pub state: BreakerState,
    /// Failed operations since the last success.
    pub consecutive_failures: u32,
    /// How many times the breaker has opened (from CLOSED or HALF-OPEN).
    pub opens: u64,
    /// When the state last changed, ms since the epoch (0 = never).
    pub last_transition_ms: u64,
}

/// The circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    opens: u64,
    opened_at_ms: u64,
    last_transition_ms: u64,
    /// HALF-OPEN only: when the trial was let through (`None` = not yet).
    trial_at_ms: Option<u64>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opens: 0,
            opened_at_ms: 0,
            last_transition_ms: 0,
            trial_at_ms: None,
        }
    }

    /// The current state (without advancing OPEN → HALF-OPEN; see [`Breaker::admit`]).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Counters for health and metrics.
    pub fn stats(&self) -> BreakerStats {
        BreakerStats {
            state: self.state,
            consecutive_failures: self.consecutive_failures,
            opens: self.opens,
            last_transition_ms: self.last_transition_ms,
        }
    }

    /// Whether an operation may go to the L2 now, and the state change this caused, if any.
    /// Every admitted operation must be followed by [`Breaker::success`] or
    /// [`Breaker::failure`].
    pub fn admit(&mut self, now_ms: u64) -> (bool, Option<BreakerEvent>) {
        let timeout_ms = u64::try_from(self.cfg.timeout.as_millis()).unwrap_or(u64::MAX);
        match self.state {
            BreakerState::Closed => (true, None),
            BreakerState::Open => {
                if now_ms.saturating_sub(self.opened_at_ms) >= timeout_ms {
                    let ev = self.transition(BreakerState::HalfOpen, now_ms);
                    self.trial_at_ms = Some(now_ms);
                    (true, Some(ev))
                } else {
                    (false, None)
                }
            }
            BreakerState::HalfOpen => match self.trial_at_ms {
                None => {
                    self.trial_at_ms = Some(now_ms);
                    (true, None)
                }
                // A trial whose result never came back (the instance trapped mid-operation, or
                // a caller bug) must not wedge the breaker: allow another after the timeout.
                Some(t) if now_ms.saturating_sub(t) >= timeout_ms => {
                    self.trial_at_ms = Some(now_ms);
                    (true, None)
                }
                Some(_) => (false, None),
            },
        }
    }

    /// Records an operation the L2 answered.
    pub fn success(&mut self, now_ms: u64) -> Option<BreakerEvent> {
        self.consecutive_failures = 0;
        match self.state {
            BreakerState::Closed => None,
            BreakerState::Open | BreakerState::HalfOpen => {
                Some(self.transition(BreakerState::Closed, now_ms))
            }
        }
    }

    /// Records an operation the L2 failed (after its retries: one failure per operation).
    pub fn failure(&mut self, now_ms: u64) -> Option<BreakerEvent> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.state {
            BreakerState::Closed => {
                if self.cfg.threshold > 0 && self.consecutive_failures >= self.cfg.threshold {
                    Some(self.open(now_ms))
                } else {
                    None
                }
            }
            BreakerState::HalfOpen => Some(self.open(now_ms)),
            BreakerState::Open => None,
        }
    }

    fn open(&mut self, now_ms: u64) -> BreakerEvent {
        self.opens += 1;
        self.opened_at_ms = now_ms;
        self.transition(BreakerState::Open, now_ms)
    }

    fn transition(&mut self, to: BreakerState, now_ms: u64) -> BreakerEvent {
        let ev = BreakerEvent {
            from: self.state,
            to,
            at_ms: now_ms,
            consecutive_failures: self.consecutive_failures,
        };
        self.state = to;
        self.last_transition_ms = now_ms;
        self.trial_at_ms = None;
        ev
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn breaker(threshold: u32, timeout_s: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            threshold,
            timeout: Duration::from_secs(timeout_s),
        })
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let c = ManualClock::new(1_000_000);
        let mut b = breaker(3, 10);
        assert_eq!(b.failure(c.now_ms()), None);
        assert_eq!(b.failure(c.now_ms()), None);
        // A success resets the count.
        assert_eq!(b.success(c.now_ms()), None);
        assert_eq!(b.failure(c.now_ms()), None);
        assert_eq!(b.failure(c.now_ms()), None);
        assert_eq!(b.admit(c.now_ms()), (true, None));
        let ev = b.failure(c.now_ms()).unwrap();
        assert_eq!(
            (ev.from, ev.to, ev.consecutive_failures),
            (BreakerState::Closed, BreakerState::Open, 3)
        );
        assert_eq!(b.stats().opens, 1);
        assert_eq!(b.stats().last_transition_ms, 1_000_000);
        // Further failures while open are counted but reported nothing more.
        assert_eq!(b.failure(c.now_ms()), None);
        assert_eq!(b.stats().consecutive_failures, 4);
    }

    #[test]
    fn half_open_after_timeout_then_close_on_success() {
        let c = ManualClock::new(5_000);
        let mut b = breaker(1, 10);
        assert!(b.failure(c.now_ms()).is_some());
        c.advance(9_999);
        assert_eq!(b.admit(c.now_ms()), (false, None));
        c.advance(1);
        let (ok, ev) = b.admit(c.now_ms());
        assert!(ok);
        let ev = ev.unwrap();
        assert_eq!(
            (ev.from, ev.to),
            (BreakerState::Open, BreakerState::HalfOpen)
        );
        // Only one trial at a time.
        assert_eq!(b.admit(c.now_ms()), (false, None));
        let ev = b.success(c.now_ms()).unwrap();
        assert_eq!(
            (ev.from, ev.to),
            (BreakerState::HalfOpen, BreakerState::Closed)
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.stats().consecutive_failures, 0);
        assert_eq!(b.admit(c.now_ms()), (true, None));
    }

    #[test]
    fn failed_trial_reopens_and_restarts_the_timeout() {
        let c = ManualClock::new(0);
        let mut b = breaker(2, 5);
        b.failure(c.now_ms());
        b.failure(c.now_ms());
        c.advance(5_000);
        assert!(b.admit(c.now_ms()).0);
        let ev = b.failure(c.now_ms()).unwrap();
        assert_eq!(
            (ev.from, ev.to),
            (BreakerState::HalfOpen, BreakerState::Open)
        );
        assert_eq!(b.stats().opens, 2);
        c.advance(4_999);
        assert_eq!(b.admit(c.now_ms()), (false, None));
        c.advance(1);
        assert!(b.admit(c.now_ms()).0);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn lost_trial_does_not_wedge() {
        let c = ManualClock::new(0);
        let mut b = breaker(1, 5);
        b.failure(0);
        c.advance(5_000);
        assert!(b.admit(c.now_ms()).0);
        // The trial's result never arrives.
        c.advance(4_000);
        assert!(!b.admit(c.now_ms()).0);
        c.advance(1_000);
        assert!(b.admit(c.now_ms()).0);
    }

    #[test]
    fn zero_threshold_never_opens() {
        let mut b = breaker(0, 5);
        for i in 0..100 {
            assert_eq!(b.failure(i), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(100).0);
    }

    #[test]
    fn events_render_for_the_log() {
        let mut b = breaker(1, 5);
        let ev = b.failure(0).unwrap();
        let s = ev.to_string();
        assert!(s.contains("closed -> open"), "{s}");
        assert!(s.contains("this guest instance"), "{s}");
        assert_eq!(BreakerState::HalfOpen.gauge(), 1);
    }
}
