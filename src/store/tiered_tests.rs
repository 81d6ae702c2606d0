//! Tests of the tiered store, with a manual clock and the fake L2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::store::breaker::BreakerState;
use crate::store::envelope::SealKey;
use crate::store::fake::{FakeL2, FakeState, Fault};

const T0: u64 = 1_700_000_000_000;
const ID: &str = "mw1";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn aead() -> Sealer {
    Sealer::aead(&SealKey::new([0x11; 32]))
}

struct Rig {
    clock: Rc<ManualClock>,
    l2: Rc<RefCell<FakeState>>,
    /// A second fake over the same state, for "another instance".
    spare: Option<FakeL2>,
    cfg: TieredConfig,
}

impl Rig {
    fn new(mode: Mode, tweak: impl FnOnce(&mut TieredConfig)) -> (TieredStore, Rig) {
        let clock = Rc::new(ManualClock::new(T0));
        let (fake, l2) = FakeL2::with_manual_clock(Rc::clone(&clock));
        let spare = Some(fake.sharing());
        let mut cfg = TieredConfig::new(mode, ID);
        cfg.breaker.threshold = 3;
        cfg.breaker.timeout = secs(10);
        cfg.max_retries = 0;
        tweak(&mut cfg);
        let store = TieredStore::new(cfg.clone(), Some(Box::new(fake)), aead(), clock.clone());
        (
            store,
            Rig {
                clock,
                l2,
                spare,
                cfg,
            },
        )
    }

    /// Another guest instance of the same middleware, on the same L2.
    fn other_instance(&mut self) -> TieredStore {
        let fake = self.spare.take().unwrap();
        TieredStore::new(
            self.cfg.clone(),
            Some(Box::new(fake)),
            aead(),
            self.clock.clone(),
        )
    }

    fn calls(&self) -> u64 {
        self.l2.borrow().calls
    }

    fn fault(&self, f: Fault) {
        self.l2.borrow_mut().fault = f;
    }

    fn down(&self) {
        self.fault(Fault::Fail(StoreError::Unavailable(
            "connection refused".into(),
        )));
    }
}

fn full(key: &str) -> String {
    format!("oidc-guard:{ID}:{key}")
}

// ---- keys -----------------------------------------------------------------------------------

#[test]
fn keys_carry_prefix_identity_and_namespace() {
    let (mut s, rig) = Rig::new(Mode::Redis, |c| c.key_prefix = "p/".into());
    assert_eq!(s.full_key(Namespace::SESSION, "abc"), "p/mw1:sess:abc");
    s.set(Namespace::JWKS, "k", b"v", secs(10), Class::Cache)
        .unwrap();
    assert!(rig.l2.borrow().map.contains_key("p/mw1:jwks:k"));
}

#[test]
fn two_middlewares_do_not_see_each_other() {
    let (mut a, mut rig) = Rig::new(Mode::Redis, |_| {});
    a.set(Namespace::SESSION, "s", b"A", secs(10), Class::Confidential)
        .unwrap();
    let mut cfg = rig.cfg.clone();
    cfg.identity = "mw2".into();
    let b_fake = rig.spare.take().unwrap();
    let mut b = TieredStore::new(cfg, Some(Box::new(b_fake)), aead(), rig.clock.clone());
    assert_eq!(b.get(Namespace::SESSION, "s").unwrap(), None);
}

// ---- modes ----------------------------------------------------------------------------------

#[test]
fn memory_mode_never_touches_l2() {
    let (mut s, rig) = Rig::new(Mode::Memory, |_| {});
    s.set(Namespace::SESSION, "a", b"1", secs(10), Class::Confidential)
        .unwrap();
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get(Namespace::SESSION, "b").unwrap(), None);
    assert_eq!(
        s.set_if_absent(Namespace::JTI, "j", secs(10), Class::SingleUse)
            .unwrap(),
        SetOutcome::Won
    );
    assert_eq!(
        s.set_if_absent(Namespace::JTI, "j", secs(10), Class::SingleUse)
            .unwrap(),
        SetOutcome::AlreadyUsed
    );
    s.delete(Namespace::SESSION, "a").unwrap();
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), None);
    assert_eq!(s.ping().unwrap(), Duration::ZERO);
    assert_eq!(rig.calls(), 0);
    assert_eq!(s.snapshot().status(), "healthy");
    assert!(!s.snapshot().l2_configured);
}

#[test]
fn memory_mode_ttl_expiry_and_size_limit() {
    let (mut s, rig) = Rig::new(Mode::Memory, |c| c.l1.max_bytes = 100);
    s.set(Namespace::SESSION, "a", b"1", secs(2), Class::Cache)
        .unwrap();
    rig.clock.advance(1999);
    assert!(s.get(Namespace::SESSION, "a").unwrap().is_some());
    rig.clock.advance(1);
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), None);
    assert_eq!(
        s.set(Namespace::SESSION, "big", &[0; 200], secs(2), Class::Cache),
        Err(StoreError::TooLarge)
    );
}

#[test]
fn redis_mode_sends_every_operation_to_l2() {
    let (mut s, rig) = Rig::new(Mode::Redis, |_| {});
    s.set(
        Namespace::SESSION,
        "a",
        b"session",
        secs(10),
        Class::Confidential,
    )
    .unwrap();
    assert_eq!(rig.calls(), 1);
    for i in 0..3 {
        assert_eq!(
            s.get(Namespace::SESSION, "a").unwrap(),
            Some(b"session".to_vec())
        );
        assert_eq!(rig.calls(), 2 + i);
    }
    assert_eq!(s.snapshot().l1_entries, 0, "no L1 in redis mode");
    // The L2 holds a sealed envelope, not the value.
    let stored = rig.l2.borrow().map[&full("sess:a")].0.clone();
    assert_eq!(stored[0], crate::store::envelope::VERSION_SEALED);
    assert!(!stored.windows(7).any(|w| w == b"session"));
    s.delete(Namespace::SESSION, "a").unwrap();
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), None);
    let snap = s.snapshot();
    assert_eq!((snap.l2.hits, snap.l2.misses), (3, 1));
}

#[test]
fn redis_mode_ttl_expiry() {
    let (mut s, rig) = Rig::new(Mode::Redis, |_| {});
    s.set(Namespace::JWKS, "a", b"v", secs(3), Class::Cache)
        .unwrap();
    rig.clock.advance(2999);
    assert!(s.get(Namespace::JWKS, "a").unwrap().is_some());
    rig.clock.advance(1);
    assert_eq!(s.get(Namespace::JWKS, "a").unwrap(), None);
}

#[test]
fn hybrid_reads_l1_then_l2_and_fills_l1() {
    let (mut s, mut rig) = Rig::new(Mode::Hybrid, |_| {});
    let mut other = rig.other_instance();
    other
        .set(Namespace::SESSION, "a", b"v", secs(60), Class::Confidential)
        .unwrap();
    let c0 = rig.calls();
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), Some(b"v".to_vec()));
    assert_eq!(rig.calls(), c0 + 1, "one L2 round trip per read");
    for _ in 0..5 {
        assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), Some(b"v".to_vec()));
    }
    assert_eq!(rig.calls(), c0 + 1, "later reads are L1 hits");
    let snap = s.snapshot();
    assert_eq!((snap.l1.hits, snap.l2.hits), (5, 1));
}

#[test]
fn get_many_reads_l1_first_then_the_misses_in_one_l2_operation() {
    let (mut s, mut rig) = Rig::new(Mode::Hybrid, |_| {});
    let mut other = rig.other_instance();
    for k in ["a", "b"] {
        other
            .set(
                Namespace::REVOCATION,
                k,
                k.as_bytes(),
                secs(60),
                Class::Revocation,
            )
            .unwrap();
    }
    assert_eq!(
        s.get(Namespace::REVOCATION, "a").unwrap(),
        Some(b"a".to_vec())
    );
    let c0 = rig.calls();
    let got = s.get_many(Namespace::REVOCATION, &["a", "b", "c"]).unwrap();
    assert_eq!(got, vec![Some(b"a".to_vec()), Some(b"b".to_vec()), None]);
    // "a" came from L1; "b" and "c" from the L2 (the fake answers get_many key by key, the
    // Redis client pipelines them: see resp_native).
    assert_eq!(rig.calls(), c0 + 2);
    let c1 = rig.calls();
    assert_eq!(
        s.get_many(Namespace::REVOCATION, &["a", "b", "c"]).unwrap(),
        got
    );
    assert_eq!(
        rig.calls(),
        c1,
        "hits and remembered misses are served by L1"
    );
    // Fallback: deny fails, l1 answers what L1 knows.
    rig.clock.advance(10_000);
    rig.down();
    assert_eq!(
        s.get_many(Namespace::REVOCATION, &["a", "b"]).unwrap(),
        vec![None, None]
    );
    let (mut d, rig2) = Rig::new(Mode::Redis, |c| c.fallback = Fallback::Deny);
    rig2.down();
    assert!(d.get_many(Namespace::REVOCATION, &["a"]).is_err());
}

#[test]
fn hybrid_writes_l2_then_l1() {
    let (mut s, mut rig) = Rig::new(Mode::Hybrid, |_| {});
    s.set(Namespace::SESSION, "a", b"v", secs(60), Class::Confidential)
        .unwrap();
    assert!(rig.l2.borrow().map.contains_key(&full("sess:a")));
    let c = rig.calls();
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), Some(b"v".to_vec()));
    assert_eq!(rig.calls(), c, "served from L1");
    // Another instance reads it from L2.
    let mut other = rig.other_instance();
    assert_eq!(
        other.get(Namespace::SESSION, "a").unwrap(),
        Some(b"v".to_vec())
    );
}

#[test]
fn hybrid_l1_never_outlives_the_l2_value() {
    let (mut s, mut rig) = Rig::new(Mode::Hybrid, |c| c.l1_max_ttl = secs(3600));
    let mut writer = rig.other_instance();
    writer
        .set(Namespace::SESSION, "a", b"v", secs(3), Class::Confidential)
        .unwrap();
    rig.clock.advance(2000);
    // Filled with at most the 1 s the value has left.
    assert!(s.get(Namespace::SESSION, "a").unwrap().is_some());
    let left = s.l1.remaining(&full("sess:a"), rig.clock.now_ms()).unwrap();
    assert!(left <= Duration::from_millis(1000), "{left:?}");
    rig.clock.advance(999);
    assert!(s.get(Namespace::SESSION, "a").unwrap().is_some());
    rig.clock.advance(1);
    let c = rig.calls();
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), None);
    assert_eq!(
        rig.calls(),
        c + 1,
        "L1 expired with the L2 value; the L2 was asked"
    );
}

#[test]
fn hybrid_l1_ttl_is_capped_by_l1_max_ttl() {
    let (mut s, mut rig) = Rig::new(Mode::Hybrid, |c| c.l1_max_ttl = secs(5));
    let mut writer = rig.other_instance();
    writer
        .set(
            Namespace::SESSION,
            "a",
            b"v1",
            secs(3600),
            Class::Confidential,
        )
        .unwrap();
    assert_eq!(
        s.get(Namespace::SESSION, "a").unwrap(),
        Some(b"v1".to_vec())
    );
    writer
        .set(
            Namespace::SESSION,
            "a",
            b"v2",
            secs(3600),
            Class::Confidential,
        )
        .unwrap();
    rig.clock.advance(4999);
    assert_eq!(
        s.get(Namespace::SESSION, "a").unwrap(),
        Some(b"v1".to_vec()),
        "stale within the cap"
    );
    rig.clock.advance(1);
    assert_eq!(
        s.get(Namespace::SESSION, "a").unwrap(),
        Some(b"v2".to_vec()),
        "seen after the cap"
    );
    // Own writes are capped too.
    s.set(
        Namespace::SESSION,
        "b",
        b"x",
        secs(3600),
        Class::Confidential,
    )
    .unwrap();
    let left = s.l1.remaining(&full("sess:b"), rig.clock.now_ms()).unwrap();
    assert!(left <= secs(5));
}

#[test]
fn hybrid_remembers_misses_for_negative_ttl() {
    let (mut s, mut rig) = Rig::new(Mode::Hybrid, |c| c.negative_ttl = secs(5));
    let mut other = rig.other_instance();
    assert_eq!(s.get(Namespace::REVOCATION, "sid").unwrap(), None);
    let c = rig.calls();
    assert_eq!(s.get(Namespace::REVOCATION, "sid").unwrap(), None);
    assert_eq!(rig.calls(), c, "the miss was remembered");
    other
        .set(
            Namespace::REVOCATION,
            "sid",
            b"1",
            secs(600),
            Class::Revocation,
        )
        .unwrap();
    rig.clock.advance(4999);
    assert_eq!(s.get(Namespace::REVOCATION, "sid").unwrap(), None);
    rig.clock.advance(1);
    assert_eq!(
        s.get(Namespace::REVOCATION, "sid").unwrap(),
        Some(b"1".to_vec()),
        "a revocation elsewhere is seen within negative_ttl"
    );
    // A local write replaces a remembered miss at once.
    assert_eq!(s.get(Namespace::REVOCATION, "other").unwrap(), None);
    s.set(
        Namespace::REVOCATION,
        "other",
        b"1",
        secs(600),
        Class::Revocation,
    )
    .unwrap();
    assert_eq!(
        s.get(Namespace::REVOCATION, "other").unwrap(),
        Some(b"1".to_vec())
    );
}

#[test]
fn hybrid_delete_reaches_both_tiers() {
    let (mut s, mut rig) = Rig::new(Mode::Hybrid, |_| {});
    s.set(Namespace::SESSION, "a", b"v", secs(60), Class::Confidential)
        .unwrap();
    s.delete(Namespace::SESSION, "a").unwrap();
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), None);
    let mut other = rig.other_instance();
    assert_eq!(other.get(Namespace::SESSION, "a").unwrap(), None);
    assert!(!rig.l2.borrow().map.contains_key(&full("sess:a")));
}

// ---- single use -----------------------------------------------------------------------------

#[test]
fn single_use_is_cluster_wide() {
    for mode in [Mode::Redis, Mode::Hybrid] {
        let (mut a, mut rig) = Rig::new(mode, |_| {});
        let mut b = rig.other_instance();
        assert_eq!(
            a.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
                .unwrap(),
            SetOutcome::Won
        );
        assert_eq!(
            b.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
                .unwrap(),
            SetOutcome::AlreadyUsed
        );
        assert_eq!(
            a.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
                .unwrap(),
            SetOutcome::AlreadyUsed
        );
        rig.clock.advance(60_000);
        assert_eq!(
            b.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
                .unwrap(),
            SetOutcome::Won
        );
    }
}

#[test]
fn single_use_refuses_while_l2_down() {
    for mode in [Mode::Redis, Mode::Hybrid] {
        let (mut s, rig) = Rig::new(mode, |_| {});
        rig.down();
        for _ in 0..5 {
            assert_eq!(
                s.set_if_absent(Namespace::DPOP, "p", secs(60), Class::SingleUse)
                    .unwrap(),
                SetOutcome::Unavailable
            );
        }
        assert_eq!(s.snapshot().l2.single_use_refusals, 5);
        assert_eq!(s.snapshot().breaker.state, BreakerState::Open);
    }
}

#[test]
fn single_use_per_instance_only_when_accepted() {
    for mode in [Mode::Redis, Mode::Hybrid] {
        let (mut s, rig) = Rig::new(mode, |c| c.insecure_accept_per_instance = true);
        // Won while the L2 worked: remembered for the outage.
        assert_eq!(
            s.set_if_absent(Namespace::JTI, "before", secs(60), Class::SingleUse)
                .unwrap(),
            SetOutcome::Won
        );
        rig.down();
        assert_eq!(
            s.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
                .unwrap(),
            SetOutcome::Won
        );
        assert_eq!(
            s.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
                .unwrap(),
            SetOutcome::AlreadyUsed
        );
        assert_eq!(
            s.set_if_absent(Namespace::JTI, "before", secs(60), Class::SingleUse)
                .unwrap(),
            SetOutcome::AlreadyUsed
        );
        assert_eq!(s.snapshot().l2.single_use_refusals, 0);
    }
}

#[test]
fn single_use_ignores_fallback_l1_but_locks_follow_it() {
    let (mut s, rig) = Rig::new(Mode::Hybrid, |c| c.fallback = Fallback::L1);
    rig.down();
    assert_eq!(
        s.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
            .unwrap(),
        SetOutcome::Unavailable
    );
    assert_eq!(
        s.set_if_absent(Namespace::LOCK, "r", secs(5), Class::Cache)
            .unwrap(),
        SetOutcome::Won
    );
    assert_eq!(
        s.set_if_absent(Namespace::LOCK, "r", secs(5), Class::Cache)
            .unwrap(),
        SetOutcome::AlreadyUsed
    );

    let (mut s, rig) = Rig::new(Mode::Hybrid, |c| c.fallback = Fallback::Deny);
    rig.down();
    assert_eq!(
        s.set_if_absent(Namespace::LOCK, "r", secs(5), Class::Cache)
            .unwrap(),
        SetOutcome::Unavailable
    );
}

#[test]
fn a_remembered_miss_is_not_a_marker() {
    let (mut s, rig) = Rig::new(Mode::Hybrid, |c| c.insecure_accept_per_instance = true);
    assert_eq!(s.get(Namespace::JTI, "j").unwrap(), None); // remembered miss in L1
    rig.down();
    assert_eq!(
        s.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
            .unwrap(),
        SetOutcome::Won
    );
}

#[test]
fn no_l2_configured_never_downgrades() {
    let clock = Rc::new(ManualClock::new(T0));
    let cfg = TieredConfig::new(Mode::Hybrid, ID);
    let mut s = TieredStore::new(cfg, None, aead(), clock);
    assert_eq!(
        s.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
            .unwrap(),
        SetOutcome::Unavailable
    );
    assert!(s
        .set(
            Namespace::REVOCATION,
            "r",
            b"1",
            secs(60),
            Class::Revocation
        )
        .is_err());
}

// ---- failures, fallback, breaker --------------------------------------------------------------

#[test]
fn fallback_l1_serves_cached_and_session_data() {
    let (mut s, rig) = Rig::new(Mode::Hybrid, |c| c.fallback = Fallback::L1);
    s.set(
        Namespace::SESSION,
        "old",
        b"o",
        secs(3),
        Class::Confidential,
    )
    .unwrap();
    rig.down();
    // Written during the outage: kept in L1 with its full TTL.
    s.set(
        Namespace::SESSION,
        "new",
        b"n",
        secs(600),
        Class::Confidential,
    )
    .unwrap();
    assert_eq!(
        s.get(Namespace::SESSION, "old").unwrap(),
        Some(b"o".to_vec())
    );
    assert_eq!(
        s.get(Namespace::SESSION, "new").unwrap(),
        Some(b"n".to_vec())
    );
    assert_eq!(s.get(Namespace::SESSION, "unknown").unwrap(), None);
    rig.clock.advance(300_000);
    assert_eq!(
        s.get(Namespace::SESSION, "new").unwrap(),
        Some(b"n".to_vec())
    );
    assert!(s.snapshot().l2.fallbacks >= 2);
    assert_eq!(s.snapshot().status(), "degraded");
}

#[test]
fn fallback_l1_in_redis_mode() {
    let (mut s, rig) = Rig::new(Mode::Redis, |_| {});
    s.set(Namespace::SESSION, "a", b"v", secs(60), Class::Confidential)
        .unwrap();
    rig.down();
    assert_eq!(
        s.get(Namespace::SESSION, "a").unwrap(),
        None,
        "redis mode keeps nothing in L1"
    );
    s.set(Namespace::SESSION, "a", b"w", secs(60), Class::Confidential)
        .unwrap();
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), Some(b"w".to_vec()));
    // Back up: the L2 is the truth again, and the outage copy is dropped on the next write.
    rig.fault(Fault::None);
    rig.clock.advance(10_000);
    assert_eq!(s.get(Namespace::SESSION, "a").unwrap(), Some(b"v".to_vec()));
    s.set(Namespace::SESSION, "a", b"x", secs(60), Class::Confidential)
        .unwrap();
    assert_eq!(s.snapshot().l1_entries, 0);
}

#[test]
fn fallback_deny_fails_operations() {
    let (mut s, rig) = Rig::new(Mode::Hybrid, |c| c.fallback = Fallback::Deny);
    s.set(
        Namespace::SESSION,
        "cached",
        b"c",
        secs(60),
        Class::Confidential,
    )
    .unwrap();
    rig.down();
    assert!(matches!(
        s.get(Namespace::SESSION, "x"),
        Err(StoreError::Unavailable(_))
    ));
    assert!(s
        .set(Namespace::SESSION, "y", b"v", secs(60), Class::Confidential)
        .is_err());
    assert_eq!(
        s.snapshot().l1_entries,
        1,
        "nothing kept in L1 for the failed write"
    );
    // An L1 hit is still an L1 hit: deny applies when the L2 must be asked.
    assert_eq!(
        s.get(Namespace::SESSION, "cached").unwrap(),
        Some(b"c".to_vec())
    );
    for _ in 0..3 {
        let _ = s.get(Namespace::SESSION, "x");
    }
    assert_eq!(s.get(Namespace::SESSION, "x"), Err(StoreError::CircuitOpen));
    assert_eq!(s.snapshot().status(), "unhealthy");
}

#[test]
fn revocation_and_delete_failures_are_reported() {
    let (mut s, rig) = Rig::new(Mode::Hybrid, |c| c.fallback = Fallback::L1);
    rig.down();
    assert!(s
        .set(
            Namespace::REVOCATION,
            "sid",
            b"1",
            secs(600),
            Class::Revocation
        )
        .is_err());
    // Honoured here all the same.
    assert_eq!(
        s.get(Namespace::REVOCATION, "sid").unwrap(),
        Some(b"1".to_vec())
    );
    assert!(s.delete(Namespace::SESSION, "a").is_err());
}

#[test]
fn breaker_opens_half_opens_and_closes() {
    let (mut s, rig) = Rig::new(Mode::Redis, |_| {});
    rig.down();
    for i in 0..3 {
        let _ = s.get(Namespace::JWKS, &format!("k{i}"));
    }
    assert_eq!(rig.calls(), 3);
    let ev = s.drain_events();
    assert!(matches!(ev[0], StoreEvent::L2Failing { .. }), "{ev:?}");
    assert!(
        matches!(
            ev[1],
            StoreEvent::Breaker(BreakerEvent {
                from: BreakerState::Closed,
                to: BreakerState::Open,
                ..
            })
        ),
        "{ev:?}"
    );
    assert_eq!(ev.len(), 2, "{ev:?}");
    // Open: the L2 is not asked.
    for _ in 0..10 {
        assert_eq!(s.get(Namespace::JWKS, "k").unwrap(), None);
    }
    assert_eq!(rig.calls(), 3);
    assert_eq!(s.snapshot().breaker.state, BreakerState::Open);
    // Timeout passes, L2 still down: one trial, reopened.
    rig.clock.advance(10_000);
    let _ = s.get(Namespace::JWKS, "k");
    assert_eq!(rig.calls(), 4);
    let ev = s.drain_events();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(matches!(
        ev[0],
        StoreEvent::Breaker(BreakerEvent {
            to: BreakerState::HalfOpen,
            ..
        })
    ));
    assert!(matches!(
        ev[1],
        StoreEvent::Breaker(BreakerEvent {
            from: BreakerState::HalfOpen,
            to: BreakerState::Open,
            ..
        })
    ));
    assert_eq!(s.snapshot().breaker.opens, 2);
    // L2 back: after the timeout, the trial closes it.
    rig.fault(Fault::None);
    rig.clock.advance(9_999);
    let _ = s.get(Namespace::JWKS, "k");
    assert_eq!(rig.calls(), 4);
    rig.clock.advance(1);
    let _ = s.get(Namespace::JWKS, "k");
    assert_eq!(rig.calls(), 5);
    let ev = s.drain_events();
    assert!(
        matches!(
            ev[1],
            StoreEvent::Breaker(BreakerEvent {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed,
                ..
            })
        ),
        "{ev:?}"
    );
    assert_eq!(s.snapshot().breaker.state, BreakerState::Closed);
    assert_eq!(s.snapshot().status(), "healthy");
    assert!(ev[1].to_string().contains("half-open -> closed"));
}

#[test]
fn retries_count_once_in_the_breaker() {
    let (mut s, rig) = Rig::new(Mode::Redis, |c| c.max_retries = 2);
    rig.l2.borrow_mut().fail_next = 2;
    s.set(Namespace::JWKS, "k", b"v", secs(60), Class::Cache)
        .unwrap();
    assert_eq!(rig.calls(), 3);
    let snap = s.snapshot();
    assert_eq!(
        (
            snap.l2.retries,
            snap.l2.errors,
            snap.breaker.consecutive_failures
        ),
        (2, 2, 0)
    );
    rig.l2.borrow_mut().fail_next = 3;
    assert!(
        s.get(Namespace::JWKS, "k").unwrap().is_none(),
        "failed, answered from (empty) L1"
    );
    let snap = s.snapshot();
    assert_eq!(
        (
            snap.l2.retries,
            snap.l2.errors,
            snap.breaker.consecutive_failures
        ),
        (4, 5, 1)
    );
}

#[test]
fn a_timeout_is_a_failure() {
    let (mut s, rig) = Rig::new(Mode::Redis, |c| c.fallback = Fallback::Deny);
    rig.fault(Fault::Timeout);
    assert_eq!(s.get(Namespace::SESSION, "a"), Err(StoreError::Timeout));
    assert_eq!(s.snapshot().breaker.consecutive_failures, 1);
}

#[test]
fn a_timeout_is_not_retried() {
    // Found by redis_wasm.rs: with the defaults (readTimeout 1 s, maxRetries 1) a SIGSTOPped
    // server held each request for 2 s, beyond the documented readTimeout bound.
    let (mut s, rig) = Rig::new(Mode::Redis, |c| {
        c.max_retries = 2;
        c.fallback = Fallback::Deny;
    });
    rig.fault(Fault::Timeout);
    assert_eq!(s.get(Namespace::SESSION, "a"), Err(StoreError::Timeout));
    assert_eq!(rig.calls(), 1, "one attempt");
    let snap = s.snapshot();
    assert_eq!((snap.l2.retries, snap.l2.errors), (0, 1));
    // Other failures still are.
    rig.down();
    assert!(s.get(Namespace::SESSION, "a").is_err());
    assert_eq!(rig.calls(), 4);
}

// ---- integrity --------------------------------------------------------------------------------

#[test]
fn a_mixed_up_reply_is_refused_and_counted() {
    for fallback in [Fallback::L1, Fallback::Deny] {
        let (mut s, rig) = Rig::new(Mode::Hybrid, |c| c.fallback = fallback);
        s.set(
            Namespace::SESSION,
            "victim",
            b"someone else's session",
            secs(60),
            Class::Confidential,
        )
        .unwrap();
        rig.fault(Fault::MixUp);
        // Whatever the fallback: read as "absent", a revocation marker would mean "not revoked".
        let got = s.get(Namespace::SESSION, "attacker");
        assert_eq!(got, Err(StoreError::Integrity), "{fallback:?}");
        let got = s.get_many(Namespace::SESSION, &["attacker", "other"]);
        assert_eq!(got, Err(StoreError::Integrity), "{fallback:?}");
        let snap = s.snapshot();
        assert_eq!(snap.l2.integrity_failures, 2);
        assert_eq!(snap.l2.errors, 2);
        // The L2 answered: not an outage, the breaker does not count it.
        assert_eq!(snap.breaker.consecutive_failures, 0);
        let ev = s.drain_events();
        assert!(
            ev.contains(&StoreEvent::Integrity { namespace: "sess" }),
            "{ev:?}"
        );
        assert!(
            !ev.iter().any(|e| e.to_string().contains("attacker")),
            "keys are not logged"
        );
    }
}

#[test]
fn a_read_can_skip_a_remembered_miss() {
    let (mut s, mut rig) = Rig::new(Mode::Hybrid, |_| {});
    assert_eq!(s.get(Namespace::SESSION, "r:1"), Ok(None));
    // Another replica publishes the value after this one remembered the miss.
    let other = rig.spare.take().unwrap();
    let mut b = TieredStore::new(
        rig.cfg.clone(),
        Some(Box::new(other)),
        aead(),
        rig.clock.clone(),
    );
    b.set(
        Namespace::SESSION,
        "r:1",
        b"v2",
        secs(60),
        Class::Confidential,
    )
    .unwrap();
    assert_eq!(
        s.get(Namespace::SESSION, "r:1"),
        Ok(None),
        "the miss is remembered"
    );
    assert_eq!(
        s.get_unless_absent_cached(Namespace::SESSION, "r:1"),
        Ok(Some(b"v2".to_vec()))
    );
}

#[test]
fn garbage_tampering_and_foreign_keys_are_refused() {
    let (mut s, mut rig) = Rig::new(Mode::Redis, |c| c.fallback = Fallback::Deny);
    rig.fault(Fault::Garbage(vec![1, 2, 3]));
    assert_eq!(s.get(Namespace::SESSION, "a"), Err(StoreError::Integrity));
    rig.fault(Fault::Garbage(Vec::new()));
    assert_eq!(s.get(Namespace::SESSION, "a"), Err(StoreError::Integrity));
    rig.fault(Fault::None);
    s.set(Namespace::SESSION, "a", b"v", secs(60), Class::Confidential)
        .unwrap();
    // Flip one ciphertext byte in the L2.
    {
        let mut st = rig.l2.borrow_mut();
        let v = &mut st.map.get_mut(&full("sess:a")).unwrap().0;
        let last = v.len() - 1;
        v[last] ^= 1;
    }
    assert_eq!(s.get(Namespace::SESSION, "a"), Err(StoreError::Integrity));
    // A value sealed under another secret (another deployment sharing the Redis) is refused.
    let fake = rig.spare.take().unwrap();
    let mut foreign = TieredStore::new(
        rig.cfg.clone(),
        Some(Box::new(fake)),
        Sealer::aead(&SealKey::new([0x22; 32])),
        rig.clock.clone(),
    );
    foreign
        .set(Namespace::SESSION, "b", b"v", secs(60), Class::Confidential)
        .unwrap();
    assert_eq!(s.get(Namespace::SESSION, "b"), Err(StoreError::Integrity));
    assert_eq!(s.snapshot().l2.integrity_failures, 4);
}

#[test]
fn integrity_only_sealer_for_bearer_only_configs() {
    let clock = Rc::new(ManualClock::new(T0));
    let (fake, state) = FakeL2::new(clock.clone());
    let cfg = TieredConfig::new(Mode::Hybrid, ID);
    let mut s = TieredStore::new(cfg, Some(Box::new(fake)), Sealer::integrity(), clock);
    s.set(Namespace::JWKS, "k", b"jwks", secs(60), Class::Cache)
        .unwrap();
    assert_eq!(s.get(Namespace::JWKS, "k").unwrap(), Some(b"jwks".to_vec()));
    assert_eq!(
        state.borrow().map[&full("jwks:k")].0[0],
        crate::store::envelope::VERSION_TAGGED
    );
    assert_eq!(
        s.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
            .unwrap(),
        SetOutcome::Won
    );
    // Confidential data is refused without a sealing key.
    assert!(matches!(
        s.set(Namespace::SESSION, "s", b"v", secs(60), Class::Confidential),
        Err(StoreError::Refused(_))
    ));
}

#[test]
fn zero_ttl_writes_are_refused() {
    let (mut s, _rig) = Rig::new(Mode::Hybrid, |_| {});
    assert!(matches!(
        s.set(Namespace::SESSION, "a", b"v", Duration::ZERO, Class::Cache),
        Err(StoreError::Refused(_))
    ));
    assert!(matches!(
        s.set_if_absent(Namespace::JTI, "a", Duration::ZERO, Class::SingleUse),
        Err(StoreError::Refused(_))
    ));
}

#[test]
fn end_request_reaches_the_l2_after_it_was_used() {
    let (mut s, rig) = Rig::new(Mode::Hybrid, |_| {});
    // Nothing reached the L2 (an L1 hit, or no store operation at all): nothing to close.
    s.end_request();
    assert_eq!(rig.l2.borrow().ended, 0);
    let _ = s.get(Namespace::SESSION, "a");
    s.end_request();
    assert_eq!(rig.l2.borrow().ended, 1);
    s.end_request();
    assert_eq!(rig.l2.borrow().ended, 1, "once per request that used it");
    // An L1 hit does not reach the L2 either.
    s.set(
        Namespace::SESSION,
        "b",
        b"v",
        Duration::from_secs(60),
        Class::Cache,
    )
    .unwrap();
    s.end_request();
    assert_eq!(rig.l2.borrow().ended, 2, "the set reached the L2");
    assert!(s.get(Namespace::SESSION, "b").unwrap().is_some());
    s.end_request();
    assert_eq!(rig.l2.borrow().ended, 2, "an L1 hit did not");
}

// ---- metrics ------------------------------------------------------------------------------

#[test]
fn metrics_rendering_snapshot() {
    let (mut s, rig) = Rig::new(Mode::Hybrid, |c| c.l1.max_entries = 100);
    rig.l2.borrow_mut().latency_ms = 2;
    s.set(
        Namespace::SESSION,
        "a",
        b"0123456789",
        secs(60),
        Class::Confidential,
    )
    .unwrap();
    s.get(Namespace::SESSION, "a").unwrap(); // L1 hit
    s.get(Namespace::SESSION, "b").unwrap(); // L1 miss, L2 miss (remembered: 21 + 1 bytes)
    assert_eq!(s.ping().unwrap(), Duration::ZERO);
    rig.down();
    let _ = s.get(Namespace::SESSION, "c"); // L2 error, fallback
                                            // L1 look-up (a miss), then the L2 fails: refused.
    assert_eq!(
        s.set_if_absent(Namespace::JTI, "j", secs(60), Class::SingleUse)
            .unwrap(),
        SetOutcome::Unavailable
    );

    let snap = s.snapshot();
    let health: serde_json::Value = serde_json::from_str(&snap.health_json()).unwrap();
    let expected = serde_json::json!({
        "status": "degraded",
        "scope": "guest instance",
        "cache": {
            "mode": "hybrid",
            "fallback": "l1",
            "redis": {
                "configured": true,
                "connected": false,
                "latency": "2ms",
                "latency_us": 2000,
                "latency_p50_us": 2000,
                "latency_p99_us": 2000,
                "hits": 0,
                "misses": 1,
                "errors": 2,
                "integrity_failures": 0
            },
            "memory": {
                "entries": 2,
                "size": "54B",
                "bytes": 54,
                "max_entries": 100,
                "max_bytes": 4194304,
                "hits": 1,
                "misses": 3,
                "evictions": 0
            },
            "circuit_breaker": {"state": "closed", "failures": 2, "opens": 0, "last_transition_ms": 0},
            "single_use_refusals": 1,
            "fallbacks": 1
        }
    });
    assert_eq!(health, expected, "{}", snap.health_json());

    let prom = snap.prometheus();
    let expected_lines = [
        "# HELP oidc_guard_store_l1_hits_total L1 reads that found a live entry (this guest instance).",
        "# TYPE oidc_guard_store_l1_hits_total counter",
        "oidc_guard_store_l1_hits_total 1",
        "oidc_guard_store_l1_misses_total 3",
        "oidc_guard_store_l1_entries 2",
        "oidc_guard_store_l1_bytes 54",
        "oidc_guard_store_l2_hits_total 0",
        "oidc_guard_store_l2_misses_total 1",
        "oidc_guard_store_l2_errors_total 2",
        "oidc_guard_store_l2_integrity_failures_total 0",
        "oidc_guard_store_l2_up 0",
        "oidc_guard_store_l2_last_latency_seconds 0.002",
        "oidc_guard_store_single_use_refusals_total 1",
        "# TYPE oidc_guard_store_breaker_state gauge",
        "oidc_guard_store_breaker_state 0",
        "oidc_guard_store_breaker_consecutive_failures 2",
        "oidc_guard_store_breaker_opens_total 0",
        "# TYPE oidc_guard_store_l2_latency_seconds summary",
        "oidc_guard_store_l2_latency_seconds{quantile=\"0.5\"} 0.002",
        "oidc_guard_store_l2_latency_seconds{quantile=\"0.99\"} 0.002",
        "oidc_guard_store_l2_latency_seconds_sum 0.006",
        "oidc_guard_store_l2_latency_seconds_count 3",
        "oidc_guard_store_info{mode=\"hybrid\",fallback=\"l1\",scope=\"guest_instance\"} 1",
    ];
    for line in expected_lines {
        assert!(
            prom.lines().any(|l| l == line),
            "missing {line:?} in\n{prom}"
        );
    }
    // Every sample has HELP and TYPE lines.
    let samples: Vec<_> = prom.lines().filter(|l| !l.starts_with('#')).collect();
    for l in &samples {
        let name = l.split(['{', ' ']).next().unwrap();
        let base = name.trim_end_matches("_sum").trim_end_matches("_count");
        assert!(
            prom.contains(&format!("# TYPE {base} ")),
            "no TYPE for {name}"
        );
        assert!(
            prom.contains(&format!("# HELP {base} ")),
            "no HELP for {name}"
        );
    }
    assert!(prom
        .lines()
        .filter(|l| l.starts_with("# HELP"))
        .all(|l| l.contains("this guest instance")));
}

/// What only this instance's L1 remembers — a used `jti`, a revocation — is never pushed out by
/// newer entries while live: a replay of the token, or the logged-out session, would pass. When
/// no more may be pinned, single-use checks refuse rather than forget.
#[test]
fn per_instance_markers_and_revocations_are_not_evicted() {
    let (mut s, _rig) = Rig::new(Mode::Memory, |c| {
        c.l1 = L1Config {
            max_entries: 100,
            max_bytes: 1 << 20,
        };
    });
    let hour = secs(3600);
    let marker = |s: &mut TieredStore, k: &str| {
        s.set_if_absent(Namespace::JTI, k, hour, Class::SingleUse)
            .unwrap()
    };
    assert_eq!(marker(&mut s, "at:victim"), SetOutcome::Won);
    s.set(
        Namespace::REVOCATION,
        "s:victim",
        b"1",
        hour,
        Class::Revocation,
    )
    .unwrap();
    // Far more cached values and locks than the L1 holds: they evict one another, never the two.
    for i in 0..1000 {
        s.set(Namespace::JWKS, &format!("k{i}"), b"v", hour, Class::Cache)
            .unwrap();
        let _ = s.set_if_absent(Namespace::LOCK, &format!("l{i}"), hour, Class::Cache);
    }
    assert_eq!(marker(&mut s, "at:victim"), SetOutcome::AlreadyUsed);
    assert_eq!(
        s.get(Namespace::REVOCATION, "s:victim").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    // Other markers fill the pinned half (50, the two above included), then are refused.
    let outcomes: Vec<SetOutcome> = (0..60).map(|i| marker(&mut s, &format!("p{i}"))).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == SetOutcome::Won).count(),
        48
    );
    assert!(outcomes[48..].iter().all(|o| *o == SetOutcome::Unavailable));
    assert_eq!(marker(&mut s, "at:victim"), SetOutcome::AlreadyUsed);
    assert_eq!(marker(&mut s, "p0"), SetOutcome::AlreadyUsed);
    assert!(s
        .set(
            Namespace::REVOCATION,
            "s:other",
            b"1",
            hour,
            Class::Revocation
        )
        .is_err());
    // Cached values still find room next to the pinned half.
    s.set(Namespace::JWKS, "fresh", b"v", hour, Class::Cache)
        .unwrap();
    assert!(s.get(Namespace::JWKS, "fresh").unwrap().is_some());
    // Once they expire, markers are reclaimed and new ones recorded.
    _rig.clock.advance(3_600_001);
    assert_eq!(marker(&mut s, "p59"), SetOutcome::Won);
}
