//! Store counters and the two documents built from them: a health JSON and a Prometheus text
//! exposition.
//!
//! All figures are **per guest instance**: Traefik runs each concurrent request in its own pooled
//! instance, each with its own L1, breaker and counters, and creates and drops instances at will.
//! A scrape or health probe sees whichever instance served it. Both documents say so.
//!
//! The health JSON follows the "Health Checks" section of traefikoidc's Redis cache
//! documentation (`docs/REDIS_CACHE.md`): `status`, `cache.mode`, `cache.redis.connected`,
//! `cache.redis.latency`, `cache.memory.entries`, `cache.memory.size`,
//! `cache.circuit_breaker.state`, `cache.circuit_breaker.failures`, with extra fields alongside
//! (raw numbers, counters, `scope`). There is no `pool` object: sockets do not outlive a request
//! in the guest, so there is no connection pool to describe.

use std::fmt::Write as _;

use super::breaker::{BreakerState, BreakerStats};
use super::l1::L1Stats;

/// Number of latency buckets: bucket `i` holds values below 2^i µs (the last one everything
/// above), so the histogram spans 1 µs .. ~8.4 s.
const BUCKETS: usize = 24;

/// A small log2 histogram of L2 round-trip times, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    buckets: [u64; BUCKETS],
    /// Samples recorded.
    pub count: u64,
    /// Sum of all samples, µs.
    pub sum_us: u64,
    /// The most recent sample, µs.
    pub last_us: u64,
    /// The largest sample, µs.
    pub max_us: u64,
}

impl Latency {
    /// Records one round trip of `us` microseconds.
    pub fn record(&mut self, us: u64) {
        let i = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.last_us = us;
        self.max_us = self.max_us.max(us);
    }

    /// An upper-bound approximation of the `q` quantile (0 < q ≤ 1), µs: the upper edge of the
    /// bucket that holds it (at most a factor of 2 high), never above the largest sample.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let upper = if i == 0 { 0 } else { (1u64 << i) - 1 };
                return upper.min(self.max_us);
            }
        }
        self.max_us
    }
}

/// Counters of the L2 side and of the store's decisions (per guest instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L2Counters {
    /// Reads the L2 answered with a value.
    pub hits: u64,
    /// Reads the L2 answered with nothing (or an expired value).
    pub misses: u64,
    /// Failed L2 attempts (each retry counts), integrity failures included.
    pub errors: u64,
    /// Replies that failed the envelope check (wrong key, mixed-up reply, tampering).
    pub integrity_failures: u64,
    /// Retries made after a failed attempt.
    pub retries: u64,
    /// Operations answered from L1 because the L2 was unavailable (`fallback: l1`).
    pub fallbacks: u64,
    /// Single-use checks refused because the L2 was unavailable.
    pub single_use_refusals: u64,
    /// Whether the last L2 operation succeeded (`None` before the first one).
    pub last_ok: Option<bool>,
    /// Round-trip times of successful attempts.
    pub latency: Latency,
}

/// Everything the two documents show, taken at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `memory`, `redis` or `hybrid`.
    pub mode: &'static str,
    /// `l1` or `deny`.
    pub fallback: &'static str,
    /// Whether an L2 exists.
    pub l2_configured: bool,
    /// L1 counters.
    pub l1: L1Stats,
    /// L1 entries held.
    pub l1_entries: usize,
    /// L1 bytes held (keys + values).
    pub l1_bytes: usize,
    /// L1 entry bound.
    pub l1_max_entries: usize,
    /// L1 byte bound.
    pub l1_max_bytes: usize,
    /// L2 counters.
    pub l2: L2Counters,
    /// Breaker counters.
    pub breaker: BreakerStats,
}

impl Snapshot {
    /// Whether the L2 is believed reachable: the last operation succeeded and the breaker is
    /// not open.
    pub fn l2_connected(&self) -> bool {
        self.l2_configured
            && self.l2.last_ok == Some(true)
            && self.breaker.state != BreakerState::Open
    }

    /// `healthy`; `degraded` (L2 unreachable, answering from L1); `unhealthy` (L2 unreachable
    /// and `fallback: deny`); `unknown` (an L2 exists but was never asked yet).
    pub fn status(&self) -> &'static str {
        if self.mode == "memory" || self.l2_connected() {
            "healthy"
        } else if self.l2.last_ok.is_none() && self.breaker.state == BreakerState::Closed {
            "unknown"
        } else if self.fallback == "deny" {
            "unhealthy"
        } else {
            "degraded"
        }
    }

    /// The health document (JSON), shaped like traefikoidc's.
    pub fn health_json(&self) -> String {
        // Written by hand (serde_json's `Value` would add ~20 KiB to the guest). Every string
        // here is one of our own constants or digits, so nothing needs escaping.
        let lat = &self.l2.latency;
        let b = &self.breaker;
        format!(
            concat!(
                r#"{{"status":"{status}","scope":"guest instance","cache":{{"#,
                r#""mode":"{mode}","fallback":"{fallback}","#,
                r#""redis":{{"configured":{configured},"connected":{connected},"#,
                r#""latency":"{latency}","latency_us":{last},"latency_p50_us":{p50},"#,
                r#""latency_p99_us":{p99},"hits":{l2_hits},"misses":{l2_misses},"#,
                r#""errors":{errors},"integrity_failures":{integrity}}},"#,
                r#""memory":{{"entries":{entries},"size":"{size}","bytes":{bytes},"#,
                r#""max_entries":{max_entries},"max_bytes":{max_bytes},"hits":{l1_hits},"#,
                r#""misses":{l1_misses},"evictions":{evictions}}},"#,
                r#""circuit_breaker":{{"state":"{state}","failures":{failures},"#,
                r#""opens":{opens},"last_transition_ms":{last_transition}}},"#,
                r#""single_use_refusals":{refusals},"fallbacks":{fallbacks}}}}}"#,
            ),
            status = self.status(),
            mode = self.mode,
            fallback = self.fallback,
            configured = self.l2_configured,
            connected = self.l2_connected(),
            latency = go_duration(lat.last_us),
            last = lat.last_us,
            p50 = lat.quantile_us(0.5),
            p99 = lat.quantile_us(0.99),
            l2_hits = self.l2.hits,
            l2_misses = self.l2.misses,
            errors = self.l2.errors,
            integrity = self.l2.integrity_failures,
            entries = self.l1_entries,
            size = human_bytes(self.l1_bytes),
            bytes = self.l1_bytes,
            max_entries = self.l1_max_entries,
            max_bytes = self.l1_max_bytes,
            l1_hits = self.l1.hits,
            l1_misses = self.l1.misses,
            evictions = self.l1.evictions,
            state = b.state.as_str(),
            failures = b.consecutive_failures,
            opens = b.opens,
            last_transition = b.last_transition_ms,
            refusals = self.l2.single_use_refusals,
            fallbacks = self.l2.fallbacks,
        )
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(3072);
        let mut m = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP oidc_guard_store_{name} {help} (this guest instance)."
            );
            let _ = writeln!(out, "# TYPE oidc_guard_store_{name} {kind}");
            let _ = writeln!(out, "oidc_guard_store_{name} {value}");
        };
        m(
            "l1_hits_total",
            "counter",
            "L1 reads that found a live entry",
            self.l1.hits.to_string(),
        );
        m(
            "l1_misses_total",
            "counter",
            "L1 reads that found nothing live",
            self.l1.misses.to_string(),
        );
        m(
            "l1_evictions_total",
            "counter",
            "Live L1 entries evicted to make room (LRU)",
            self.l1.evictions.to_string(),
        );
        m(
            "l1_expired_total",
            "counter",
            "Expired L1 entries reclaimed",
            self.l1.expired.to_string(),
        );
        m(
            "l1_entries",
            "gauge",
            "L1 entries held",
            self.l1_entries.to_string(),
        );
        m(
            "l1_bytes",
            "gauge",
            "L1 bytes held, keys plus values",
            self.l1_bytes.to_string(),
        );
        m(
            "l2_hits_total",
            "counter",
            "L2 reads answered with a value",
            self.l2.hits.to_string(),
        );
        m(
            "l2_misses_total",
            "counter",
            "L2 reads answered with nothing",
            self.l2.misses.to_string(),
        );
        m(
            "l2_errors_total",
            "counter",
            "Failed L2 attempts, retries and integrity failures included",
            self.l2.errors.to_string(),
        );
        m(
            "l2_integrity_failures_total",
            "counter",
            "L2 replies refused by the envelope check (wrong key, mixed-up reply, tampering)",
            self.l2.integrity_failures.to_string(),
        );
        m(
            "l2_retries_total",
            "counter",
            "L2 retries after a failed attempt",
            self.l2.retries.to_string(),
        );
        m(
            "l2_up",
            "gauge",
            "1 when the last L2 operation succeeded and the breaker is not open",
            u8::from(self.l2_connected()).to_string(),
        );
        m(
            "l2_last_latency_seconds",
            "gauge",
            "Round-trip time of the last successful L2 operation",
            seconds(self.l2.latency.last_us),
        );
        m(
            "fallbacks_total",
            "counter",
            "Operations answered from L1 because the L2 was unavailable",
            self.l2.fallbacks.to_string(),
        );
        m(
            "single_use_refusals_total",
            "counter",
            "Single-use checks refused because the L2 was unavailable",
            self.l2.single_use_refusals.to_string(),
        );
        m(
            "breaker_state",
            "gauge",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            self.breaker.state.gauge().to_string(),
        );
        m(
            "breaker_consecutive_failures",
            "gauge",
            "Consecutive failed L2 operations",
            self.breaker.consecutive_failures.to_string(),
        );
        m(
            "breaker_opens_total",
            "counter",
            "Times the circuit breaker opened",
            self.breaker.opens.to_string(),
        );
        let lat = &self.l2.latency;
        let name = "oidc_guard_store_l2_latency_seconds";
        let _ = writeln!(out, "# HELP {name} L2 round-trip time of successful attempts, quantiles approximated by a log2 histogram (this guest instance).");
        let _ = writeln!(out, "# TYPE {name} summary");
        let _ = writeln!(
            out,
            "{name}{{quantile=\"0.5\"}} {}",
            seconds(lat.quantile_us(0.5))
        );
        let _ = writeln!(
            out,
            "{name}{{quantile=\"0.99\"}} {}",
            seconds(lat.quantile_us(0.99))
        );
        let _ = writeln!(out, "{name}_sum {}", seconds(lat.sum_us));
        let _ = writeln!(out, "{name}_count {}", lat.count);
        let name = "oidc_guard_store_info";
        let _ = writeln!(
            out,
            "# HELP {name} Store configuration (this guest instance)."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(
            out,
            "{name}{{mode=\"{}\",fallback=\"{}\",scope=\"guest_instance\"}} 1",
            self.mode, self.fallback
        );
        out
    }
}

fn seconds(us: u64) -> String {
    decimal(us, 1_000_000, 6)
}

/// `value / scale` in decimal with up to `digits` fractional digits, trailing zeros trimmed.
/// Integer arithmetic only: float formatting would add tens of KiB to the guest.
fn decimal(value: u64, scale: u64, digits: usize) -> String {
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0digits$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// A duration in Go's `time.Duration` notation, as traefikoidc prints it: `0s`, `250µs`,
/// `2ms`, `2.5ms`, `1.2s`.
fn go_duration(us: u64) -> String {
    match us {
        0 => "0s".to_string(),
        1..=999 => format!("{us}µs"),
        1000..=999_999 => format!("{}ms", decimal(us, 1000, 3)),
        _ => format!("{}s", decimal(us / 1000, 1000, 3)),
    }
}

/// `512B`, `1.5KB`, `4MB` (binary multiples, one decimal, as traefikoidc's `"50MB"`).
fn human_bytes(b: usize) -> String {
    let b = b as u64;
    let tenths = |unit: u64| (b.saturating_mul(10) + unit / 2) / unit;
    if b < 1024 {
        format!("{b}B")
    } else if b < 1024 * 1024 {
        format!("{}KB", decimal(tenths(1024), 10, 1))
    } else {
        format!("{}MB", decimal(tenths(1024 * 1024), 10, 1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Latency::default();
        assert_eq!(h.quantile_us(0.5), 0);
        for _ in 0..98 {
            h.record(200); // bucket 8: 128..255
        }
        h.record(5_000);
        h.record(9_000); // bucket 14: 8192..16383
        assert_eq!(h.count, 100);
        assert_eq!(h.quantile_us(0.5), 255);
        assert_eq!(h.quantile_us(0.99), 8191);
        assert_eq!(h.quantile_us(1.0), 9_000, "capped at the largest sample");
        assert_eq!(h.last_us, 9_000);
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.max_us, u64::MAX);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(250), "250µs");
        assert_eq!(go_duration(2000), "2ms");
        assert_eq!(go_duration(2500), "2.5ms");
        assert_eq!(go_duration(1_200_000), "1.2s");
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5KB");
        assert_eq!(human_bytes(50 * 1024 * 1024), "50MB");
        assert_eq!(go_duration(1_000_000), "1s");
        assert_eq!(go_duration(1234), "1.234ms");
        assert_eq!(seconds(2000), "0.002");
        assert_eq!(seconds(1_500_000), "1.5");
        assert_eq!(seconds(0), "0");
    }
}
