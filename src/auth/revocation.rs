//! Revocation markers in the store, shared by RP-initiated logout, back-channel logout and the
//! session check.
//!
//! Keys (namespace [`Namespace::REVOCATION`]):
//! - `s:<session id>`: one of our sessions ended (RP-initiated logout at `logoutURL`);
//! - `p:<sid>`: the provider's session `sid` ended (back-channel logout with `sid`);
//! - `u:<sub>`: every session of `sub` established before the stored time (ms) ended
//!   (back-channel logout without `sid`).
//!
//! Writes must reach the L2 (class [`Class::Revocation`]); reads go through the tiered store, whose
//! hybrid L1 keeps both hits and misses for at most the revocation-check interval
//! (`revocationCheckInterval`, default 5 s), so each instance asks the L2 at most once per
//! interval per key and a logout is seen by every replica within that interval.

use std::time::Duration;

use crate::store::{Class, Namespace, StoreError, TieredStore};

fn sid_key(session_id: &str) -> String {
    format!("s:{session_id}")
}

fn provider_sid_key(sid: &str) -> String {
    format!("p:{sid}")
}

fn sub_key(sub: &str) -> String {
    format!("u:{sub}")
}

/// Marks one of our sessions as ended.
///
/// # Errors
/// [`StoreError`] when the marker could not be written to the L2 (it is still recorded in this
/// instance's L1).
pub fn revoke_session(
    store: &mut TieredStore,
    session_id: &str,
    ttl: Duration,
) -> Result<(), StoreError> {
    store.set(
        Namespace::REVOCATION,
        &sid_key(session_id),
        b"1",
        ttl,
        Class::Revocation,
    )
}

/// Marks the provider session `sid` as ended (back-channel logout).
///
/// # Errors
/// As [`revoke_session`].
pub fn revoke_provider_sid(
    store: &mut TieredStore,
    sid: &str,
    ttl: Duration,
) -> Result<(), StoreError> {
    store.set(
        Namespace::REVOCATION,
        &provider_sid_key(sid),
        b"1",
        ttl,
        Class::Revocation,
    )
}

/// Ends every session of `sub` established at or before `at_ms` (back-channel logout by `sub`).
///
/// # Errors
/// As [`revoke_session`].
pub fn revoke_subject(
    store: &mut TieredStore,
    sub: &str,
    at_ms: u64,
    ttl: Duration,
) -> Result<(), StoreError> {
    store.set(
        Namespace::REVOCATION,
        &sub_key(sub),
        at_ms.to_string().as_bytes(),
        ttl,
        Class::Revocation,
    )
}

/// A session as the revocation check sees it.
#[derive(Debug, Clone, Copy)]
pub struct SessionRef<'a> {
    /// Our session id.
    pub session_id: &'a str,
    /// The provider's `sid` from the ID token, if any.
    pub provider_sid: Option<&'a str>,
    /// The subject.
    pub sub: &'a str,
    /// When the session was established (ms since the epoch).
    pub login_ms: u64,
}

/// A "not revoked" verdict and what it rests on, so the requests that follow can reuse it without
/// building the marker keys and looking each up again: the L1 as it was when the verdict was
/// reached (its generation), up to the time a fresh check would have to ask again (hybrid: the
/// first expiry among the markers' L1 entries; memory: never; redis: at once). A check made while
/// it [`Clearance::holds`] reads the same entries and reaches the same verdict, so reusing it
/// changes nothing the revocation-check interval promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clearance {
    generation: u64,
    until_ms: u64,
}

impl Clearance {
    /// Whether a check now would reach the same verdict.
    pub fn holds(&self, store: &TieredStore, now_ms: u64) -> bool {
        self.generation == store.l1_generation() && now_ms < self.until_ms
    }
}

/// Checks the session's markers: `None` when it has been revoked, else its [`Clearance`].
///
/// # Errors
/// [`StoreError`] when the store cannot answer (the caller decides: the fallback policy has
/// already been applied by the store).
pub fn check(store: &mut TieredStore, s: SessionRef<'_>) -> Result<Option<Clearance>, StoreError> {
    // All markers in one read: one round trip in redis mode (a pipeline of GETs), none on an
    // L1 hit in hybrid mode.
    let ours = sid_key(s.session_id);
    let subject = sub_key(s.sub);
    let provider = s.provider_sid.map(provider_sid_key);
    let mut keys: Vec<&str> = vec![&ours, &subject];
    if let Some(p) = &provider {
        keys.push(p);
    }
    let found = store.get_many(Namespace::REVOCATION, &keys)?;
    let mut found = found.into_iter();
    if found.next().flatten().is_some() {
        return Ok(None);
    }
    if let Some(v) = found.next().flatten() {
        let at: u64 = std::str::from_utf8(&v)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(u64::MAX);
        if s.login_ms <= at {
            return Ok(None);
        }
    }
    if found.next().flatten().is_some() {
        return Ok(None);
    }
    // After the read: it may itself have changed the L1 (hybrid caches what the L2 said).
    Ok(Some(Clearance {
        generation: store.l1_generation(),
        until_ms: store.unchanged_until(Namespace::REVOCATION, &keys),
    }))
}

/// Whether the session has been revoked (the tests' view of [`check`]).
#[cfg(test)]
pub(crate) fn is_revoked(store: &mut TieredStore, s: SessionRef<'_>) -> Result<bool, StoreError> {
    Ok(check(store, s)?.is_none())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::store::{Mode, Sealer, TieredConfig};
    use std::rc::Rc;

    fn memory_store(clock: Rc<ManualClock>) -> TieredStore {
        TieredStore::new(
            TieredConfig::new(Mode::Memory, "id"),
            None,
            Sealer::integrity(),
            clock,
        )
    }

    const S: SessionRef<'static> = SessionRef {
        session_id: "a",
        provider_sid: Some("p1"),
        sub: "alice",
        login_ms: 500,
    };

    /// Memory mode: a clearance holds until anything in the L1 changes, whenever that is; a
    /// marker written for this very session then shows at the next check.
    #[test]
    fn a_clearance_holds_while_the_l1_is_unchanged() {
        let clock = Rc::new(ManualClock::new(1_000_000));
        let mut st = memory_store(clock.clone());
        let c = check(&mut st, S).unwrap().expect("not revoked");
        clock.advance(86_400_000);
        assert!(c.holds(&st, clock.now_ms()), "nothing changed, a day later");
        revoke_session(&mut st, "b", Duration::from_secs(60)).unwrap();
        assert!(!c.holds(&st, clock.now_ms()), "another session's marker");
        let c = check(&mut st, S).unwrap().expect("still not revoked");
        assert!(c.holds(&st, clock.now_ms()));
        revoke_provider_sid(&mut st, "p1", Duration::from_secs(60)).unwrap();
        assert!(!c.holds(&st, clock.now_ms()));
        assert_eq!(check(&mut st, S).unwrap(), None, "revoked");
    }

    /// Hybrid mode: a clearance holds only until the first of the markers' L1 entries expires
    /// (then the L2 is due again), so a logout written by another replica is seen as soon as it
    /// would be without the clearance; redis mode never keeps one.
    #[test]
    fn a_clearance_ends_when_the_l2_is_due_and_never_holds_in_redis_mode() {
        use crate::store::fake::FakeL2;
        let clock = Rc::new(ManualClock::new(1_000_000));
        let mut cfg = TieredConfig::new(Mode::Hybrid, "id");
        cfg.negative_ttl = Duration::from_secs(5);
        let (fake, _state) = FakeL2::with_manual_clock(Rc::clone(&clock));
        let other_l2 = fake.sharing();
        let mut st = TieredStore::new(
            cfg.clone(),
            Some(Box::new(fake)),
            Sealer::integrity(),
            clock.clone(),
        );
        let mut other = TieredStore::new(
            cfg,
            Some(Box::new(other_l2)),
            Sealer::integrity(),
            clock.clone(),
        );
        let c = check(&mut st, S).unwrap().expect("not revoked");
        clock.advance(4_999);
        assert!(c.holds(&st, clock.now_ms()));
        revoke_session(&mut other, "a", Duration::from_secs(60)).unwrap();
        assert!(
            c.holds(&st, clock.now_ms()),
            "within the interval, as the L1 would answer"
        );
        assert_eq!(
            check(&mut st, S).unwrap().map(|_| ()),
            Some(()),
            "the L1 answers alike"
        );
        clock.advance(1);
        assert!(!c.holds(&st, clock.now_ms()), "the interval is over");
        assert_eq!(check(&mut st, S).unwrap(), None, "the L2 has the marker");

        let (fake, _state) = FakeL2::with_manual_clock(Rc::clone(&clock));
        let mut redis = TieredStore::new(
            TieredConfig::new(Mode::Redis, "id"),
            Some(Box::new(fake)),
            Sealer::integrity(),
            clock.clone(),
        );
        let c = check(&mut redis, S).unwrap().expect("not revoked");
        assert!(!c.holds(&redis, clock.now_ms()));
    }

    #[test]
    fn markers() {
        let clock = Rc::new(ManualClock::new(1_000_000));
        let mut st = TieredStore::new(
            TieredConfig::new(Mode::Memory, "id"),
            None,
            Sealer::integrity(),
            clock,
        );
        let s = SessionRef {
            session_id: "a",
            provider_sid: Some("p1"),
            sub: "alice",
            login_ms: 500,
        };
        assert!(!is_revoked(&mut st, s).unwrap());
        revoke_session(&mut st, "b", Duration::from_secs(60)).unwrap();
        assert!(!is_revoked(&mut st, s).unwrap());
        revoke_provider_sid(&mut st, "p1", Duration::from_secs(60)).unwrap();
        assert!(is_revoked(&mut st, s).unwrap());
        let s2 = SessionRef {
            session_id: "c",
            provider_sid: None,
            sub: "bob",
            login_ms: 500,
        };
        revoke_subject(&mut st, "bob", 400, Duration::from_secs(60)).unwrap();
        assert!(
            !is_revoked(&mut st, s2).unwrap(),
            "a login after the logout stays valid"
        );
        revoke_subject(&mut st, "bob", 600, Duration::from_secs(60)).unwrap();
        assert!(is_revoked(&mut st, s2).unwrap());
        revoke_session(&mut st, "a", Duration::from_secs(60)).unwrap();
        assert!(is_revoked(
            &mut st,
            SessionRef {
                provider_sid: None,
                ..s
            }
        )
        .unwrap());
    }
}
