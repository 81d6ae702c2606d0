//! L1: the in-guest TTL cache, bounded by entry count and by bytes, LRU among live entries.
//!
//! One per guest instance (each pooled instance has its own linear memory), so nothing here is
//! shared between requests that run concurrently; see DESIGN.md "Store semantics".
//!
//! Layout: a dense `Vec` of entries (the slab) doubly linked by index in recency order
//! (head = most recently used), and a `HashMap` from key to slab index. Removal swaps the last
//! entry into the hole, so the slab never has gaps and a sweep is a linear scan. Keys are shared
//! between the map and the slab through an `Rc<str>`, so they are stored once.
//!
//! Time is passed in by the caller (`now_ms`, wall clock from [`crate::clock::Clock`]): one clock
//! read per store operation, and tests drive it with a fake clock.
//!
//! Expired entries are never returned. They are reclaimed lazily (a `get` that finds one removes
//! it), by a small incremental sweep on every `put`, and by a full sweep before a live entry would
//! be evicted while an expired one might still hold space ([`L1::put`] keeps a lower bound on the
//! earliest expiry so that the full sweep runs only when something may actually have expired).
//!
//! Byte accounting counts key + value lengths (the payload), not allocator overhead. With the
//! defaults (10 000 entries, 4 MiB) the bookkeeping adds roughly 100 B per entry (slab entry,
//! map slot, `Rc` header), about 1 MiB at worst, so a full L1 stays near 5 MiB, inside the 8 MiB
//! per-instance budget.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// "No entry" in the recency links.
const NIL: usize = usize::MAX;

/// How many slab slots a `put` inspects for expired entries (the incremental sweep).
const SWEEP_STEP: usize = 2;

/// Bounds of an [`L1`] cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1Config {
    /// The largest number of entries (live or not yet reclaimed).
    pub max_entries: usize,
    /// The largest sum of key and value lengths, in bytes. A single entry larger than this is
    /// refused.
    pub max_bytes: usize,
}

impl L1Config {
    /// Default entry bound: 10 000 entries.
    pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
    /// Default byte bound: 4 MiB of keys and values.
    pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;
}

impl Default for L1Config {
    fn default() -> Self {
        Self {
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// What an insertion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// The value was stored.
    Stored,
    /// [`L1::put_if_absent`] only: a live entry already exists; nothing changed.
    Present,
    /// The value was not stored: its TTL is zero or it is larger than the byte bound. Any previous
    /// value under the key was removed, so a stale value never outlives a refused overwrite.
    Refused,
}

/// Counters kept by the cache itself (per guest instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L1Stats {
    /// `get` calls that returned a live value.
    pub hits: u64,
    /// `get` calls that found nothing live.
    pub misses: u64,
    /// Live entries dropped to make room (LRU).
    pub evictions: u64,
    /// Expired entries reclaimed.
    pub expired: u64,
}

#[derive(Debug)]
struct Entry {
    key: Rc<str>,
    value: Vec<u8>,
    /// Absolute expiry, ms since the epoch; the entry is live while `now_ms < expires_at_ms`.
    expires_at_ms: u64,
    /// Towards the head (more recently used).
    prev: usize,
    /// Towards the tail (less recently used).
    next: usize,
    /// Never evicted for room while live (see [`L1::put_if_absent_pinned`]).
    pinned: bool,
}

impl Entry {
    fn size(&self) -> usize {
        self.key.len().saturating_add(self.value.len())
    }

    fn live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// A bounded TTL cache with LRU eviction among live entries. O(1) `get`/`put`/`remove`
/// (amortised; see the module docs for when a full sweep runs).
#[derive(Debug)]
pub struct L1 {
    cfg: L1Config,
    map: HashMap<Rc<str>, usize>,
    slab: Vec<Entry>,
    head: usize,
    tail: usize,
    bytes: usize,
    /// A lower bound on the earliest `expires_at_ms` in the slab (`u64::MAX` when empty): no entry
    /// can have expired while `now_ms` is below it.
    min_expiry_ms: u64,
    sweep_cursor: usize,
    stats: L1Stats,
    /// Counts every change of content (a value stored or replaced, an entry removed, evicted or
    /// reclaimed after expiry); recency updates do not count.
    generation: u64,
    /// Pinned entries held, and the sum of their sizes.
    pinned: usize,
    pinned_bytes: usize,
}

impl Default for L1 {
    fn default() -> Self {
        Self::new(L1Config::default())
    }
}

impl L1 {
    /// An empty cache with the given bounds. A bound of zero means nothing is ever stored.
    pub fn new(cfg: L1Config) -> Self {
        Self {
            cfg,
            map: HashMap::new(),
            slab: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            min_expiry_ms: u64::MAX,
            sweep_cursor: 0,
            stats: L1Stats::default(),
            generation: 0,
            pinned: 0,
            pinned_bytes: 0,
        }
    }

    /// The bounds this cache was built with.
    pub fn config(&self) -> L1Config {
        self.cfg
    }

    /// The live value under `key`, which becomes the most recently used. An expired entry is
    /// removed and reported as absent.
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<&[u8]> {
        let Some(&i) = self.map.get(key) else {
            self.stats.misses += 1;
            return None;
        };
        if !self.slab[i].live(now_ms) {
            self.remove_at(i);
            self.stats.expired += 1;
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        self.touch(i);
        Some(&self.slab[i].value)
    }

    /// The live entry's remaining lifetime, without touching recency or counters.
    pub fn remaining(&self, key: &str, now_ms: u64) -> Option<Duration> {
        let &i = self.map.get(key)?;
        let e = &self.slab[i];
        e.live(now_ms)
            .then(|| Duration::from_millis(e.expires_at_ms - now_ms))
    }

    /// Stores `value` under `key` for `ttl`, replacing any previous value, evicting the least
    /// recently used live entries if a bound requires it.
    pub fn put(&mut self, key: &str, value: &[u8], ttl: Duration, now_ms: u64) -> Insert {
        self.insert_with(key, value, ttl, now_ms, false, false)
    }

    /// Stores `value` under `key` for `ttl` only if no live entry exists under `key`.
    pub fn put_if_absent(&mut self, key: &str, value: &[u8], ttl: Duration, now_ms: u64) -> Insert {
        self.insert_with(key, value, ttl, now_ms, true, false)
    }

    /// As [`L1::put_if_absent`], for a *pinned* entry: one no other entry can evict while it is
    /// live. For what this cache alone remembers and must not forget early: single-use markers
    /// (one pushed out by newer entries would let its token be used again) and revocations (a
    /// logged-out session would open again). At most half the entries and half the bytes may be
    /// pinned; beyond that the insert is [`Insert::Refused`], and the caller refuses too.
    pub fn put_if_absent_pinned(
        &mut self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        now_ms: u64,
    ) -> Insert {
        self.insert_with(key, value, ttl, now_ms, true, true)
    }

    /// As [`L1::put`], for a pinned entry (see [`L1::put_if_absent_pinned`]).
    pub fn put_pinned(&mut self, key: &str, value: &[u8], ttl: Duration, now_ms: u64) -> Insert {
        self.insert_with(key, value, ttl, now_ms, false, true)
    }

    /// The number of pinned entries held (expired ones not yet reclaimed included).
    pub fn pinned(&self) -> usize {
        self.pinned
    }

    /// Removes `key`; `true` when a live entry was removed.
    pub fn remove(&mut self, key: &str, now_ms: u64) -> bool {
        match self.map.get(key) {
            Some(&i) => {
                let live = self.slab[i].live(now_ms);
                self.remove_at(i);
                live
            }
            None => false,
        }
    }

    /// When the live entry under `key` expires (ms), if there is one.
    pub fn expires_at(&self, key: &str, now_ms: u64) -> Option<u64> {
        let &i = self.map.get(key)?;
        let e = &self.slab[i];
        e.live(now_ms).then_some(e.expires_at_ms)
    }

    /// A number that changes whenever the content changes: two reads of a key with the same
    /// generation between them, each before the entry's expiry, give the same answer.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number of entries held (expired ones not yet reclaimed included).
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The sum of key and value lengths held, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The cache's counters.
    pub fn stats(&self) -> L1Stats {
        self.stats
    }

    /// Removes every expired entry now. Runs on its own when space is needed; callers may also run
    /// it at a quiet moment.
    pub fn sweep(&mut self, now_ms: u64) {
        let mut i = 0;
        let mut min = u64::MAX;
        while i < self.slab.len() {
            if self.slab[i].live(now_ms) {
                min = min.min(self.slab[i].expires_at_ms);
                i += 1;
            } else {
                // `remove_at` moves the last entry into `i`: look at `i` again.
                self.remove_at(i);
                self.stats.expired += 1;
            }
        }
        self.min_expiry_ms = min;
    }

    fn insert_with(
        &mut self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        now_ms: u64,
        only_if_absent: bool,
        pin: bool,
    ) -> Insert {
        let existing = self.map.get(key).copied();
        if only_if_absent {
            if let Some(i) = existing {
                if self.slab[i].live(now_ms) {
                    return Insert::Present;
                }
            }
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let size = key.len().saturating_add(value.len());
        if ttl_ms == 0 || size > self.cfg.max_bytes || self.cfg.max_entries == 0 {
            if let Some(i) = existing {
                self.remove_at(i);
            }
            return Insert::Refused;
        }
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        self.incremental_sweep(now_ms);
        if pin && !self.pin_room(key, size, now_ms) {
            if let Some(&i) = self.map.get(key) {
                self.remove_at(i);
            }
            return Insert::Refused;
        }

        // The incremental sweep may have moved or removed the existing entry: look it up again.
        // A replaced value goes first, then the new one is stored like any other (so making
        // room, which moves live pinned entries to the head, can never evict the entry being
        // written).
        if let Some(&i) = self.map.get(key) {
            self.remove_at(i);
        }

        if !self.make_room(1, size, now_ms) {
            return Insert::Refused;
        }
        let key: Rc<str> = Rc::from(key);
        let i = self.slab.len();
        self.slab.push(Entry {
            key: Rc::clone(&key),
            value: value.to_vec(),
            expires_at_ms,
            prev: NIL,
            next: NIL,
            pinned: pin,
        });
        if pin {
            self.pinned += 1;
            self.pinned_bytes += size;
        }
        self.map.insert(key, i);
        self.generation += 1;
        self.link_front(i);
        self.bytes += size;
        self.min_expiry_ms = self.min_expiry_ms.min(expires_at_ms);
        Insert::Stored
    }

    /// Whether one more pinned entry of `size` bytes under `key` fits the pinned bounds (half
    /// the entries, half the bytes), after reclaiming expired entries if needed. An entry
    /// already pinned under `key` is replaced, so it does not count.
    fn pin_room(&mut self, key: &str, size: usize, now_ms: u64) -> bool {
        let fits = |s: &Self| {
            let replaced = match s.map.get(key) {
                Some(&i) if s.slab[i].pinned => (1, s.slab[i].size()),
                _ => (0, 0),
            };
            s.pinned - replaced.0 < (s.cfg.max_entries / 2).max(1)
                && s.pinned_bytes - replaced.1 + size <= s.cfg.max_bytes / 2
        };
        if fits(self) {
            return true;
        }
        if now_ms >= self.min_expiry_ms {
            self.sweep(now_ms);
            return fits(self);
        }
        false
    }

    /// Evicts until `extra_entries` more entries and `extra_bytes` more bytes fit. Expired entries
    /// go first (full sweep, only when one may exist), then live ones from the LRU end, passing
    /// over live pinned entries (moved to the head, so the next eviction does not walk them
    /// again). The head (the entry being written) is never evicted. `false` when the room could
    /// not be made (everything else is pinned).
    fn make_room(&mut self, extra_entries: usize, extra_bytes: usize, now_ms: u64) -> bool {
        let over = |s: &Self| {
            s.slab.len() + extra_entries > s.cfg.max_entries
                || s.bytes + extra_bytes > s.cfg.max_bytes
        };
        if !over(self) {
            return true;
        }
        if now_ms >= self.min_expiry_ms {
            self.sweep(now_ms);
        }
        let mut passed = 0;
        while over(self) && self.tail != NIL {
            if extra_entries == 0 && self.tail == self.head {
                return false;
            }
            let t = self.tail;
            if self.slab[t].pinned && self.slab[t].live(now_ms) {
                passed += 1;
                if passed > self.pinned {
                    return false;
                }
                self.touch(t);
                continue;
            }
            if self.slab[t].live(now_ms) {
                self.stats.evictions += 1;
            } else {
                self.stats.expired += 1;
            }
            self.remove_at(t);
        }
        !over(self)
    }

    fn incremental_sweep(&mut self, now_ms: u64) {
        if now_ms < self.min_expiry_ms {
            return;
        }
        for _ in 0..SWEEP_STEP {
            if self.slab.is_empty() {
                return;
            }
            if self.sweep_cursor >= self.slab.len() {
                self.sweep_cursor = 0;
            }
            let i = self.sweep_cursor;
            if self.slab[i].live(now_ms) {
                self.sweep_cursor += 1;
            } else {
                self.remove_at(i);
                self.stats.expired += 1;
            }
        }
    }

    /// Moves `i` to the head (most recently used).
    fn touch(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    fn link_front(&mut self, i: usize) {
        let old = self.head;
        self.slab[i].prev = NIL;
        self.slab[i].next = old;
        if old != NIL {
            self.slab[old].prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.slab[i].prev, self.slab[i].next);
        if p != NIL {
            self.slab[p].next = n;
        } else {
            self.head = n;
        }
        if n != NIL {
            self.slab[n].prev = p;
        } else {
            self.tail = p;
        }
        self.slab[i].prev = NIL;
        self.slab[i].next = NIL;
    }

    /// Removes the entry at slab index `i`, moving the last entry into its place.
    fn remove_at(&mut self, i: usize) {
        self.generation += 1;
        self.unlink(i);
        let removed = self.slab.swap_remove(i);
        self.map.remove(&*removed.key);
        self.bytes -= removed.size();
        if removed.pinned {
            self.pinned -= 1;
            self.pinned_bytes -= removed.size();
        }
        if self.slab.is_empty() {
            self.min_expiry_ms = u64::MAX;
        }
        // The former last entry now lives at `i`: repoint its neighbours and its map slot.
        if i < self.slab.len() {
            let (p, n) = (self.slab[i].prev, self.slab[i].next);
            if p != NIL {
                self.slab[p].next = i;
            } else {
                self.head = i;
            }
            if n != NIL {
                self.slab[n].prev = i;
            } else {
                self.tail = i;
            }
            if let Some(slot) = self.map.get_mut(&*self.slab[i].key) {
                *slot = i;
            }
        }
    }

    /// Checks every internal invariant (tests only).
    #[cfg(test)]
    fn check(&self) {
        assert_eq!(self.map.len(), self.slab.len());
        let mut n = 0;
        let mut bytes = 0;
        let (mut pinned, mut pinned_bytes) = (0, 0);
        let mut prev = NIL;
        let mut cur = self.head;
        while cur != NIL {
            let e = &self.slab[cur];
            assert_eq!(e.prev, prev);
            assert_eq!(self.map.get(&*e.key), Some(&cur));
            assert!(e.expires_at_ms >= self.min_expiry_ms);
            bytes += e.size();
            if e.pinned {
                pinned += 1;
                pinned_bytes += e.size();
            }
            n += 1;
            prev = cur;
            cur = e.next;
        }
        assert_eq!(self.tail, prev);
        assert_eq!(n, self.slab.len());
        assert_eq!(bytes, self.bytes);
        assert_eq!((pinned, pinned_bytes), (self.pinned, self.pinned_bytes));
        assert!(self.slab.len() <= self.cfg.max_entries);
        assert!(self.bytes <= self.cfg.max_bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn small(entries: usize, bytes: usize) -> L1 {
        L1::new(L1Config {
            max_entries: entries,
            max_bytes: bytes,
        })
    }

    #[test]
    fn generation_counts_changes_of_content_only() {
        let mut c = small(2, 1000);
        let g0 = c.generation();
        assert_eq!(c.get("a", 0), None);
        assert_eq!(c.generation(), g0, "a miss changes nothing");
        c.put("a", b"1", secs(10), 0);
        let g1 = c.generation();
        assert_ne!(g1, g0, "a new entry");
        assert_eq!(c.get("a", 1), Some(&b"1"[..]));
        assert_eq!(c.generation(), g1, "a hit (recency only) changes nothing");
        c.put("a", b"2", secs(10), 1);
        let g2 = c.generation();
        assert_ne!(g2, g1, "a replaced value");
        assert_eq!(c.put_if_absent("a", b"3", secs(10), 1), Insert::Present);
        assert_eq!(c.generation(), g2, "a refused put_if_absent");
        c.put("b", b"1", secs(10), 1);
        let g3 = c.generation();
        c.put("c", b"1", secs(10), 1);
        assert!(c.generation() > g3 + 1, "an entry added and one evicted");
        let g4 = c.generation();
        assert!(c.remove("c", 2));
        assert_ne!(c.generation(), g4, "a removal");
        let g5 = c.generation();
        assert_eq!(c.get("b", 20_000), None);
        assert_ne!(c.generation(), g5, "an expired entry reclaimed");
        let g6 = c.generation();
        assert_eq!(c.put("z", b"1", Duration::ZERO, 20_000), Insert::Refused);
        assert_eq!(c.generation(), g6, "a refused put of a new key");
        assert_eq!(
            c.expires_at("a", 20_000),
            None,
            "expired entries have no expiry"
        );
        c.put("a", b"1", secs(5), 20_000);
        assert_eq!(c.expires_at("a", 20_000), Some(25_000));
    }

    #[test]
    fn get_put_remove() {
        let mut c = L1::default();
        assert_eq!(c.get("a", T0), None);
        assert_eq!(c.put("a", b"1", secs(10), T0), Insert::Stored);
        assert_eq!(c.get("a", T0), Some(&b"1"[..]));
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), 2);
        assert!(c.remove("a", T0));
        assert!(!c.remove("a", T0));
        assert_eq!(c.get("a", T0), None);
        assert_eq!(c.bytes(), 0);
        assert!(c.is_empty());
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (1, 2));
        c.check();
    }

    #[test]
    fn expiry_is_exclusive_and_lazy() {
        let mut c = L1::default();
        c.put("a", b"v", Duration::from_millis(1500), T0);
        assert_eq!(c.get("a", T0 + 1499), Some(&b"v"[..]));
        assert_eq!(
            c.remaining("a", T0 + 1000),
            Some(Duration::from_millis(500))
        );
        // Live while now < expiry: at exactly the expiry it is gone.
        assert_eq!(c.get("a", T0 + 1500), None);
        assert_eq!(c.len(), 0, "the expired entry is reclaimed by the get");
        assert_eq!(c.stats().expired, 1);
        assert_eq!(c.remaining("a", T0), None);
        c.check();
    }

    #[test]
    fn sub_millisecond_ttl_truncates_to_zero_and_is_refused() {
        let mut c = L1::default();
        c.put("a", b"old", secs(5), T0);
        assert_eq!(
            c.put("a", b"new", Duration::from_micros(999), T0),
            Insert::Refused
        );
        assert_eq!(
            c.get("a", T0),
            None,
            "a refused overwrite leaves no stale value"
        );
        c.check();
    }

    #[test]
    fn zero_ttl_is_refused_and_removes_previous() {
        let mut c = L1::default();
        c.put("a", b"old", secs(5), T0);
        assert_eq!(c.put("a", b"new", Duration::ZERO, T0), Insert::Refused);
        assert_eq!(c.get("a", T0), None);
        assert_eq!(c.bytes(), 0);
        assert_eq!(
            c.put_if_absent("b", b"x", Duration::ZERO, T0),
            Insert::Refused
        );
        assert!(c.is_empty());
        c.check();
    }

    #[test]
    fn per_entry_ttl() {
        let mut c = L1::default();
        c.put("short", b"1", secs(1), T0);
        c.put("long", b"2", secs(100), T0);
        assert_eq!(c.get("short", T0 + 2000), None);
        assert_eq!(c.get("long", T0 + 2000), Some(&b"2"[..]));
        assert_eq!(c.get("long", T0 + 100_000), None);
    }

    #[test]
    fn huge_value_refused() {
        let mut c = small(10, 100);
        assert_eq!(c.put("k", &[0; 99], secs(1), T0), Insert::Stored);
        assert_eq!(c.bytes(), 100, "exactly at the cap fits");
        assert_eq!(c.put("j", &[0; 99], secs(1), T0), Insert::Stored);
        assert_eq!(c.get("k", T0), None, "k was evicted to fit j");
        assert_eq!(
            c.put("k3", &[0; 99], secs(1), T0),
            Insert::Refused,
            "101 bytes"
        );
        assert_eq!(
            c.get("j", T0).map(<[u8]>::len),
            Some(99),
            "refusal evicts nothing"
        );
        assert_eq!(
            c.put_if_absent("k4", &[0; 200], secs(1), T0),
            Insert::Refused
        );
        assert_eq!(c.len(), 1);
        c.check();
    }

    #[test]
    fn zero_bounds_store_nothing() {
        let mut c = small(0, 100);
        assert_eq!(c.put("a", b"1", secs(1), T0), Insert::Refused);
        let mut c = small(10, 0);
        assert_eq!(c.put("a", b"1", secs(1), T0), Insert::Refused);
        assert_eq!(
            c.put("", b"", secs(1), T0),
            Insert::Stored,
            "an empty entry has size 0"
        );
        c.check();
    }

    #[test]
    fn lru_eviction_order_by_entries() {
        let mut c = small(3, 1 << 20);
        c.put("a", b"1", secs(10), T0);
        c.put("b", b"2", secs(10), T0);
        c.put("c", b"3", secs(10), T0);
        // Use a: LRU order is now b, c, a.
        assert!(c.get("a", T0).is_some());
        c.put("d", b"4", secs(10), T0);
        assert_eq!(c.get("b", T0), None, "b was least recently used");
        assert!(c.get("c", T0).is_some());
        // Order: a, d, c (c most recent). Replacing a refreshes it.
        c.put("a", b"11", secs(10), T0);
        c.put("e", b"5", secs(10), T0);
        assert_eq!(c.get("d", T0), None);
        assert_eq!(c.get("a", T0), Some(&b"11"[..]));
        assert_eq!(c.stats().evictions, 2);
        c.check();
    }

    #[test]
    fn byte_accounting_with_replacement() {
        let mut c = small(100, 20);
        c.put("ab", b"12345", secs(10), T0); // 7
        c.put("cd", b"12345", secs(10), T0); // 14
        assert_eq!(c.bytes(), 14);
        // Shrink a: 2 + 1.
        c.put("ab", b"1", secs(10), T0);
        assert_eq!(c.bytes(), 10);
        // Grow a to 2 + 15 = 17: cd must go (17 + 7 > 20), a itself stays.
        assert_eq!(c.put("ab", &[7; 15], secs(10), T0), Insert::Stored);
        assert_eq!(c.bytes(), 17);
        assert_eq!(c.get("cd", T0), None);
        assert_eq!(c.get("ab", T0).map(<[u8]>::len), Some(15));
        // Grow a past the cap on its own: refused and removed.
        assert_eq!(c.put("ab", &[7; 19], secs(10), T0), Insert::Refused);
        assert_eq!(c.bytes(), 0);
        c.check();
    }

    #[test]
    fn expired_entries_go_before_live_ones() {
        let mut c = small(3, 1 << 20);
        c.put("live-old", b"1", secs(100), T0);
        c.put("dies", b"2", secs(1), T0 + 1);
        c.put("live-new", b"3", secs(100), T0 + 2);
        // Full: adding one more must reclaim "dies" (expired), not the LRU live entry.
        c.put("x", b"4", secs(100), T0 + 5000);
        assert!(c.get("live-old", T0 + 5000).is_some());
        assert!(c.get("live-new", T0 + 5000).is_some());
        assert_eq!(c.stats().evictions, 0);
        assert_eq!(c.stats().expired, 1);
        c.check();
    }

    #[test]
    fn pinned_entries_are_passed_over_and_bounded() {
        let mut c = L1::new(L1Config {
            max_entries: 8,
            max_bytes: 1 << 20,
        });
        assert_eq!(
            c.put_if_absent_pinned("m1", b"1", secs(10), T0),
            Insert::Stored
        );
        assert_eq!(c.put_pinned("m2", b"1", secs(10), T0), Insert::Stored);
        for i in 0..50 {
            assert_eq!(c.put(&format!("k{i}"), b"v", secs(10), T0), Insert::Stored);
            c.check();
        }
        assert!(c.get("m1", T0).is_some() && c.get("m2", T0).is_some());
        assert_eq!(
            c.put_if_absent_pinned("m1", b"2", secs(10), T0),
            Insert::Present
        );
        // Half the entries at most; a pinned value replaced in place does not count twice.
        assert_eq!(c.put_pinned("m3", b"1", secs(10), T0), Insert::Stored);
        assert_eq!(c.put_pinned("m4", b"1", secs(10), T0), Insert::Stored);
        assert_eq!(c.put_pinned("m4", b"22", secs(20), T0), Insert::Stored);
        assert_eq!(c.pinned(), 4);
        assert_eq!(c.put_pinned("m5", b"1", secs(10), T0), Insert::Refused);
        assert_eq!(
            c.put_if_absent_pinned("m5", b"1", secs(10), T0),
            Insert::Refused
        );
        c.check();
        // Unpinning by a plain put, and expiry, give the room back.
        assert_eq!(c.put("m4", b"1", secs(10), T0), Insert::Stored);
        assert_eq!(c.pinned(), 3);
        assert_eq!(c.put_pinned("m5", b"1", secs(10), T0), Insert::Stored);
        for m in ["m6", "m7", "m8", "m9"] {
            assert_eq!(
                c.put_pinned(m, b"1", secs(10), T0 + 10_000),
                Insert::Stored,
                "{m}"
            );
        }
        assert_eq!(
            c.put_pinned("m10", b"1", secs(10), T0 + 10_000),
            Insert::Refused
        );
        assert_eq!(c.get("m1", T0 + 10_000), None);
        c.check();
    }

    #[test]
    fn put_if_absent_respects_live_entries_only() {
        let mut c = L1::default();
        assert_eq!(c.put_if_absent("j", b"1", secs(1), T0), Insert::Stored);
        assert_eq!(
            c.put_if_absent("j", b"2", secs(1), T0 + 999),
            Insert::Present
        );
        assert_eq!(c.get("j", T0 + 999), Some(&b"1"[..]));
        assert_eq!(
            c.put_if_absent("j", b"3", secs(1), T0 + 1000),
            Insert::Stored
        );
        assert_eq!(c.get("j", T0 + 1000), Some(&b"3"[..]));
        c.check();
    }

    #[test]
    fn incremental_sweep_reclaims_without_pressure() {
        let mut c = L1::default();
        for i in 0..50 {
            c.put(&format!("k{i}"), b"v", secs(1), T0);
        }
        for i in 0..50 {
            c.put(&format!("n{i}"), b"v", secs(100), T0 + 2000);
        }
        assert!(
            c.len() < 100,
            "puts reclaimed some expired entries: {}",
            c.len()
        );
        c.sweep(T0 + 2000);
        assert_eq!(c.len(), 50);
        c.check();
    }

    /// A model test: random operations against a naive reference implementation.
    #[test]
    fn matches_reference_model() {
        // Reference: a Vec in recency order (front = most recent).
        struct Model {
            v: Vec<(String, Vec<u8>, u64)>,
            max_e: usize,
            max_b: usize,
        }
        impl Model {
            fn size(&self) -> usize {
                self.v.iter().map(|(k, v, _)| k.len() + v.len()).sum()
            }
            fn get(&mut self, k: &str, now: u64) -> Option<Vec<u8>> {
                let p = self.v.iter().position(|(kk, _, _)| kk == k)?;
                let e = self.v.remove(p);
                if now >= e.2 {
                    return None;
                }
                let out = e.1.clone();
                self.v.insert(0, e);
                Some(out)
            }
            fn put(&mut self, k: &str, val: &[u8], ttl: u64, now: u64, nx: bool) -> Insert {
                let p = self.v.iter().position(|(kk, _, _)| kk == k);
                if nx {
                    if let Some(p) = p {
                        if now < self.v[p].2 {
                            return Insert::Present;
                        }
                    }
                }
                if let Some(p) = p {
                    self.v.remove(p);
                }
                if ttl == 0 || k.len() + val.len() > self.max_b || self.max_e == 0 {
                    return Insert::Refused;
                }
                self.v.insert(0, (k.to_string(), val.to_vec(), now + ttl));
                let over = |m: &Self| m.v.len() > m.max_e || m.size() > m.max_b;
                if over(self) {
                    self.v.retain(|e| now < e.2);
                }
                while over(self) {
                    self.v.pop();
                }
                Insert::Stored
            }
        }

        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..20 {
            let (me, mb) = (1 + rnd(12) as usize, 8 + rnd(80) as usize);
            let mut c = small(me, mb);
            let mut m = Model {
                v: vec![],
                max_e: me,
                max_b: mb,
            };
            let mut now = T0;
            for step in 0..2000 {
                now += rnd(300);
                let k = format!("k{}", rnd(20));
                match rnd(5) {
                    0 | 1 => {
                        let got = c.get(&k, now).map(<[u8]>::to_vec);
                        assert_eq!(got, m.get(&k, now), "round {round} step {step} get {k}");
                    }
                    2 | 3 => {
                        let val = vec![step as u8; rnd(30) as usize];
                        let ttl = rnd(3000);
                        let nx = rnd(2) == 0;
                        let r = if nx {
                            c.put_if_absent(&k, &val, Duration::from_millis(ttl), now)
                        } else {
                            c.put(&k, &val, Duration::from_millis(ttl), now)
                        };
                        assert_eq!(
                            r,
                            m.put(&k, &val, ttl, now, nx),
                            "round {round} step {step}"
                        );
                    }
                    _ => {
                        let live = m.get(&k, now).is_some();
                        m.v.retain(|e| e.0 != k);
                        assert_eq!(c.remove(&k, now), live);
                    }
                }
                c.check();
                // The same live entries, with the same values.
                let mut live_c: Vec<_> = c
                    .slab
                    .iter()
                    .filter(|e| e.live(now))
                    .map(|e| (e.key.to_string(), e.value.clone()))
                    .collect();
                let mut live_m: Vec<_> =
                    m.v.iter()
                        .filter(|e| now < e.2)
                        .map(|e| (e.0.clone(), e.1.clone()))
                        .collect();
                live_c.sort();
                live_m.sort();
                assert_eq!(live_c, live_m, "round {round} step {step}");
            }
        }
    }
}
