//! Micro-benchmarks of the store: plain functions returning nanoseconds per operation, so the
//! bench harness can run them inside the wasm guest (wasmtime host) and natively (the ignored
//! test `store::bench::tests::print_native_numbers`).
//!
//! Time is read from the given [`Clock`]'s `now_us` (wall clock; `Instant` is not usable in the
//! guest). Each figure is the mean over `iterations`, so pick enough iterations for the run to
//! last well over a millisecond.

use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use super::envelope::{SealKey, Sealer};
use super::fake::FakeL2;
use super::l1::{L1Config, L1};
use super::tiered::{Class, Mode, Namespace, TieredConfig, TieredStore};
use crate::clock::{Clock, PluginClock, RequestClock};

/// One benchmark's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchResult {
    /// What was measured.
    pub name: &'static str,
    /// Operations timed.
    pub iterations: u64,
    /// Mean nanoseconds per operation.
    pub ns_per_op: u64,
}

/// Distinct keys the benchmarks cycle through.
const KEYS: usize = 1024;
/// A value the size of a small server-side session.
const VALUE_LEN: usize = 256;

fn keys() -> Vec<String> {
    // Shaped like real full keys: prefix, identity, namespace, a base64url hash.
    (0..KEYS)
        .map(|i| format!("oidc-guard:3f9a1c0e5b7d:sess:{i:043}"))
        .collect()
}

fn per_op(clock: &dyn Clock, iterations: u64, mut f: impl FnMut(usize)) -> u64 {
    let n = iterations.max(1);
    let t0 = clock.now_us();
    for i in 0..n {
        f(i as usize % KEYS);
    }
    let dt = clock.now_us().saturating_sub(t0);
    dt.saturating_mul(1000) / n
}

/// `L1::get` of a live entry (1 024 entries of 256 B), ns/op.
pub fn l1_get(clock: &dyn Clock, iterations: u64) -> u64 {
    let keys = keys();
    let now = clock.now_ms();
    let mut l1 = L1::new(L1Config::default());
    for k in &keys {
        l1.put(k, &[7; VALUE_LEN], Duration::from_secs(3600), now);
    }
    per_op(clock, iterations, |i| {
        black_box(l1.get(black_box(&keys[i]), now).map(<[u8]>::len));
    })
}

/// `L1::put` replacing a live entry, ns/op.
pub fn l1_put(clock: &dyn Clock, iterations: u64) -> u64 {
    let keys = keys();
    let now = clock.now_ms();
    let mut l1 = L1::new(L1Config::default());
    let value = [7u8; VALUE_LEN];
    per_op(clock, iterations, |i| {
        black_box(l1.put(black_box(&keys[i]), &value, Duration::from_secs(3600), now));
    })
}

fn hybrid(clock: Rc<PluginClock>, l1_entries: usize) -> TieredStore {
    let mut cfg = TieredConfig::new(Mode::Hybrid, "3f9a1c0e5b7d");
    cfg.l1.max_entries = l1_entries;
    cfg.negative_ttl = Duration::ZERO;
    cfg.l1_max_ttl = Duration::from_secs(3600);
    // The fake takes any clock; in the wasm build `clock` is the concrete system clock.
    let fake_clock: Rc<dyn Clock> = clock.clone();
    let (l2, _) = FakeL2::new(fake_clock);
    let sealer = Sealer::aead(&SealKey::new([0x5a; 32]));
    TieredStore::new(cfg, Some(Box::new(l2)), sealer, clock)
}

fn short_keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("{i:043}")).collect()
}

/// Hybrid `get` answered from L1 (clock read, key build, lookup, copy), ns/op.
pub fn hybrid_hit(clock: Rc<PluginClock>, iterations: u64) -> u64 {
    let keys = short_keys();
    let mut s = hybrid(Rc::clone(&clock), KEYS);
    for k in &keys {
        let _ = s.set(
            Namespace::SESSION,
            k,
            &[7; VALUE_LEN],
            Duration::from_secs(3600),
            Class::Confidential,
        );
    }
    per_op(&*clock, iterations, |i| {
        // One request's clock reading, as in the plugin (see `RequestClock`).
        clock.refresh();
        black_box(s.get(Namespace::SESSION, black_box(&keys[i])).ok());
    })
}

/// Hybrid `get` that misses L1 and is answered by an in-memory L2 (AES-256-GCM open, L1 fill):
/// the store's own cost of a miss, without any network, ns/op.
pub fn hybrid_miss(clock: Rc<PluginClock>, iterations: u64) -> u64 {
    let keys = short_keys();
    // An L1 of one entry: cycling through the keys always misses.
    let mut s = hybrid(Rc::clone(&clock), 1);
    for k in &keys {
        let _ = s.set(
            Namespace::SESSION,
            k,
            &[7; VALUE_LEN],
            Duration::from_secs(3600),
            Class::Confidential,
        );
    }
    per_op(&*clock, iterations, |i| {
        // One request's clock reading, as in the plugin (see `RequestClock`).
        clock.refresh();
        black_box(s.get(Namespace::SESSION, black_box(&keys[i])).ok());
    })
}

/// Every benchmark on the system clock.
pub fn run_all(iterations: u64) -> Vec<BenchResult> {
    let clock: Rc<PluginClock> = Rc::new(RequestClock::default());
    let r = |name, ns_per_op| BenchResult {
        name,
        iterations,
        ns_per_op,
    };
    vec![
        r("l1_get", l1_get(&*clock, iterations)),
        r("l1_put", l1_put(&*clock, iterations)),
        r("hybrid_hit", hybrid_hit(Rc::clone(&clock), iterations)),
        r("hybrid_miss", hybrid_miss(clock, iterations)),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn benchmarks_run_and_measure_something() {
        let r = run_all(2000);
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(|b| b.iterations == 2000));
    }

    /// `cargo test --release --lib store::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn print_native_numbers() {
        for _ in 0..2 {
            for b in run_all(200_000) {
                println!("{:<12} {:>8} ns/op", b.name, b.ns_per_op);
            }
        }
    }
}
