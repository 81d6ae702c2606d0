//! An in-memory [`L2`] that can be told to misbehave: for unit tests and for the in-guest
//! micro-benchmarks ([`super::bench`]). Not a store for production (it is per instance).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::{StoreError, L2};
use crate::clock::{Clock, ManualClock};

/// How the fake answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answers correctly.
    #[default]
    None,
    /// Every call fails with this error.
    Fail(StoreError),
    /// Every call times out.
    Timeout,
    /// `get` answers with the value stored under another key (a reply that belongs to another
    /// request); other calls answer correctly.
    MixUp,
    /// `get` answers with these bytes whatever the key.
    Garbage(Vec<u8>),
}

/// The fake's state, shared with the test that drives it.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Key → (value, absolute expiry ms).
    pub map: HashMap<String, (Vec<u8>, u64)>,
    /// How calls are answered.
    pub fault: Fault,
    /// The next this many calls fail with [`StoreError::Unavailable`] (then `fault` applies).
    pub fail_next: u32,
    /// Calls made (every method but `end_request`).
    pub calls: u64,
    /// `end_request` calls.
    pub ended: u64,
    /// Milliseconds each call advances the manual clock by (simulated latency), if one is set.
    pub latency_ms: u64,
}

/// The fake L2.
pub struct FakeL2 {
    state: Rc<RefCell<FakeState>>,
    clock: Rc<dyn Clock>,
    manual: Option<Rc<ManualClock>>,
}

impl FakeL2 {
    /// A fake that reads `clock` for expiry, and a handle on its state.
    pub fn new(clock: Rc<dyn Clock>) -> (Self, Rc<RefCell<FakeState>>) {
        let state = Rc::new(RefCell::new(FakeState::default()));
        let fake = Self {
            state: Rc::clone(&state),
            clock,
            manual: None,
        };
        (fake, state)
    }

    /// Another fake over the same state: another guest instance reaching the same L2.
    pub fn sharing(&self) -> Self {
        Self {
            state: Rc::clone(&self.state),
            clock: Rc::clone(&self.clock),
            manual: self.manual.clone(),
        }
    }

    /// A fake on a manual clock, which it advances by [`FakeState::latency_ms`] per call.
    pub fn with_manual_clock(clock: Rc<ManualClock>) -> (Self, Rc<RefCell<FakeState>>) {
        let (mut fake, state) = Self::new(clock.clone());
        fake.manual = Some(clock);
        (fake, state)
    }

    /// Counts the call, applies latency and faults; `Ok(mixup-or-garbage reply)` for `get`.
    fn begin(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let mut s = self.state.borrow_mut();
        s.calls += 1;
        if let Some(c) = &self.manual {
            c.advance(s.latency_ms);
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(StoreError::Unavailable("fake: told to fail".into()));
        }
        match &s.fault {
            Fault::None | Fault::MixUp => Ok(None),
            Fault::Fail(e) => Err(e.clone()),
            Fault::Timeout => Err(StoreError::Timeout),
            Fault::Garbage(g) => Ok(Some(g.clone())),
        }
    }

    fn live(&self, key: &str) -> Option<Vec<u8>> {
        let now = self.clock.now_ms();
        let s = self.state.borrow();
        s.map
            .get(key)
            .filter(|(_, exp)| now < *exp)
            .map(|(v, _)| v.clone())
    }

    fn expiry(&self, ttl: Duration) -> u64 {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.clock.now_ms().saturating_add(ms)
    }
}

impl L2 for FakeL2 {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(garbage) = self.begin()? {
            return Ok(Some(garbage));
        }
        if self.state.borrow().fault == Fault::MixUp {
            let now = self.clock.now_ms();
            let s = self.state.borrow();
            let other = s
                .map
                .iter()
                .find(|(k, (_, exp))| k.as_str() != key && now < *exp)
                .map(|(_, (v, _))| v.clone());
            return Ok(other);
        }
        Ok(self.live(key))
    }

    fn set(&mut self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.begin()?;
        let exp = self.expiry(ttl);
        self.state
            .borrow_mut()
            .map
            .insert(key.to_string(), (value.to_vec(), exp));
        Ok(())
    }

    fn set_if_absent(
        &mut self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.begin()?;
        if self.live(key).is_none() {
            let exp = self.expiry(ttl);
            self.state
                .borrow_mut()
                .map
                .insert(key.to_string(), (value.to_vec(), exp));
        }
        // Confirm by reading back, as real implementations do.
        Ok(self.live(key).as_deref() == Some(value))
    }

    fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        self.begin()?;
        let existed = self.live(key).is_some();
        self.state.borrow_mut().map.remove(key);
        Ok(existed)
    }

    fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        self.begin()?;
        Ok(self.live(key).is_some())
    }

    fn ttl(&mut self, key: &str) -> Result<Option<Option<Duration>>, StoreError> {
        self.begin()?;
        let now = self.clock.now_ms();
        let s = self.state.borrow();
        Ok(s.map
            .get(key)
            .filter(|(_, exp)| now < *exp)
            .map(|(_, exp)| Some(Duration::from_millis(exp - now))))
    }

    fn ping(&mut self) -> Result<Duration, StoreError> {
        self.begin()?;
        Ok(Duration::ZERO)
    }

    fn end_request(&mut self) {
        self.state.borrow_mut().ended += 1;
    }
}
