//! The host key/value bridge `oidc_guard_bridge_v1` (wit/README.md), backed by a process-wide
//! in-memory map or by a real Redis/Valkey, plus `http_fetch` performed with ureq, and a fault
//! switch that makes the bridge misbehave on purpose.
//!
//! Out-of-range pointers are answered with `-3 invalid` and never written through. Values that do
//! not fit the guest's buffer are not written; `out_len` carries the full length (the guest calls
//! again). For `http_fetch`, the response that did not fit is kept and served to the next call
//! with an identical request document, so a retry never performs the HTTP exchange twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use wasmtime::{Caller, Linker};

use super::memory;
use super::state::InstanceState;

/// The import module name.
pub const MODULE: &str = "oidc_guard_bridge_v1";

/// Status codes (wit/README.md).
pub mod status {
    /// ok / found / stored / existed.
    pub const OK: i32 = 0;
    /// not found / not stored.
    pub const NOT_FOUND: i32 = 1;
    /// The backing store cannot be reached.
    pub const UNAVAILABLE: i32 = -1;
    /// It did not answer in time.
    pub const TIMEOUT: i32 = -2;
    /// Bad arguments.
    pub const INVALID: i32 = -3;
    /// The value exceeds the host's limit.
    pub const TOO_LARGE: i32 = -4;
    /// Anything else.
    pub const INTERNAL: i32 = -5;
}

/// Longest key the host accepts.
pub const MAX_KEY: usize = 4096;
/// Largest value the host accepts (and the guest reads).
pub const MAX_VALUE: usize = 1 << 20;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
struct MemEntry {
    value: Vec<u8>,
    /// Absolute expiry in wall-clock ms since the epoch.
    expires_ms: Option<u64>,
}

impl MemEntry {
    fn live(&self, now: u64) -> bool {
        self.expires_ms.is_none_or(|e| e > now)
    }

    fn ttl(&self, now: u64) -> i64 {
        self.expires_ms.map_or(-1, |e| e.saturating_sub(now) as i64)
    }
}

/// An in-memory key/value map with wall-clock TTLs; clones share the map.
#[derive(Debug, Clone, Default)]
pub struct MemoryKv {
    map: Arc<Mutex<HashMap<Vec<u8>, MemEntry>>>,
}

impl MemoryKv {
    /// The process-wide map: every middleware and instance of this process that uses it sees
    /// the same data (the "embedded default" of the bridge).
    pub fn process() -> Self {
        static P: OnceLock<MemoryKv> = OnceLock::new();
        P.get_or_init(MemoryKv::default).clone()
    }

    /// A fresh map, private to whoever holds its clones.
    pub fn isolated() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Vec<u8>, MemEntry>, u64) -> R) -> R {
        let now = now_ms();
        let mut g = match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g, now)
    }

    /// The live value and its remaining TTL in ms (-1: no expiry).
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, i64)> {
        self.with(|m, now| match m.get(key) {
            Some(e) if e.live(now) => Some((e.value.clone(), e.ttl(now))),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        })
    }

    /// Stores `value`; `ttl_ms` 0 means no expiry.
    pub fn set(&self, key: &[u8], value: &[u8], ttl_ms: i64) {
        self.with(|m, now| {
            m.insert(
                key.to_vec(),
                MemEntry {
                    value: value.to_vec(),
                    expires_ms: expiry(now, ttl_ms),
                },
            );
        });
    }

    /// Stores `value` only if `key` is absent (atomic under the map's lock).
    pub fn set_nx(&self, key: &[u8], value: &[u8], ttl_ms: i64) -> bool {
        self.with(|m, now| {
            if m.get(key).is_some_and(|e| e.live(now)) {
                return false;
            }
            m.insert(
                key.to_vec(),
                MemEntry {
                    value: value.to_vec(),
                    expires_ms: expiry(now, ttl_ms),
                },
            );
            true
        })
    }

    /// Deletes `key`; whether a live entry existed.
    pub fn delete(&self, key: &[u8]) -> bool {
        self.with(|m, now| m.remove(key).is_some_and(|e| e.live(now)))
    }

    /// The remaining TTL of a live entry (-1: no expiry).
    pub fn ttl(&self, key: &[u8]) -> Option<i64> {
        self.get(key).map(|(_, t)| t)
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.with(|m, now| m.values().filter(|e| e.live(now)).count())
    }

    /// Whether no live entry exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn expiry(now: u64, ttl_ms: i64) -> Option<u64> {
    (ttl_ms > 0).then(|| now.saturating_add(ttl_ms as u64))
}

/// A Redis/Valkey backing, reached with the `redis` crate (one connection per guest instance).
#[derive(Debug, Clone)]
pub struct RedisKv {
    /// `redis://[user:pass@]host:port[/db]`.
    pub url: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

/// What backs the bridge of one middleware.
#[derive(Debug, Clone)]
pub enum Bridge {
    /// An in-memory map (see [`MemoryKv::process`] and [`MemoryKv::isolated`]).
    Memory(MemoryKv),
    /// A real Redis or Valkey.
    Redis(RedisKv),
}

impl Bridge {
    /// The process-wide in-memory map.
    pub fn memory() -> Self {
        Bridge::Memory(MemoryKv::process())
    }

    /// A fresh in-memory map.
    pub fn isolated_memory() -> Self {
        Bridge::Memory(MemoryKv::isolated())
    }

    /// A Redis/Valkey server (`redis://127.0.0.1:6379`), 2 s timeouts.
    pub fn redis(url: impl Into<String>) -> Self {
        Bridge::Redis(RedisKv {
            url: url.into(),
            timeout: Duration::from_secs(2),
        })
    }
}

impl Default for Bridge {
    fn default() -> Self {
        Bridge::memory()
    }
}

/// A misbehaviour of the bridge, for tests of the guest's reply validation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Return this status without doing anything (any value, including unknown ones).
    Status(i32),
    /// Sleep this long, then behave normally.
    Delay(Duration),
    /// `kv_get`/`http_fetch`: do the operation, answer 0 with `out_len` = this, write nothing.
    ClaimLength(i32),
    /// `kv_get`/`http_fetch`: always claim one byte more than the buffer holds.
    NeverFits,
    /// `kv_get`: a random value; `http_fetch`: random non-JSON bytes; other functions: the
    /// status 0x5a5a.
    Garbage,
    /// `kv_get`/`kv_ttl`: report this TTL.
    BadTtl(i64),
}

#[derive(Debug, Clone)]
struct Rule {
    fault: Fault,
    function: Option<String>,
    remaining: Option<u32>,
}

/// The fault switch of one middleware; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<Vec<Rule>>>);

impl Faults {
    fn push(&self, rule: Rule) {
        if let Ok(mut g) = self.0.lock() {
            g.push(rule);
        }
    }

    /// Every bridge function misbehaves until [`Faults::clear`].
    pub fn inject(&self, fault: Fault) {
        self.push(Rule {
            fault,
            function: None,
            remaining: None,
        });
    }

    /// `function` (e.g. `"kv_get"`) misbehaves until [`Faults::clear`].
    pub fn inject_for(&self, function: &str, fault: Fault) {
        self.push(Rule {
            fault,
            function: Some(function.into()),
            remaining: None,
        });
    }

    /// The next `times` calls of `function` (or of any function) misbehave.
    pub fn inject_times(&self, function: Option<&str>, fault: Fault, times: u32) {
        self.push(Rule {
            fault,
            function: function.map(Into::into),
            remaining: Some(times),
        });
    }

    /// Back to normal.
    pub fn clear(&self) {
        if let Ok(mut g) = self.0.lock() {
            g.clear();
        }
    }

    fn take(&self, function: &str) -> Vec<Fault> {
        let Ok(mut g) = self.0.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in g.iter_mut() {
            if r.function.as_deref().is_some_and(|f| f != function) {
                continue;
            }
            match r.remaining.as_mut() {
                Some(0) => continue,
                Some(n) => *n -= 1,
                None => {}
            }
            out.push(r.fault.clone());
        }
        g.retain(|r| r.remaining != Some(0));
        out
    }
}

/// The active faults of one call, after any delay was served.
struct Active(Vec<Fault>);

impl Active {
    fn status(&self) -> Option<i32> {
        self.0.iter().find_map(|f| {
            if let Fault::Status(s) = f {
                Some(*s)
            } else {
                None
            }
        })
    }
    fn has(&self, f: &Fault) -> bool {
        self.0.contains(f)
    }
    fn claim(&self) -> Option<i32> {
        self.0.iter().find_map(|f| {
            if let Fault::ClaimLength(n) = f {
                Some(*n)
            } else {
                None
            }
        })
    }
    fn ttl(&self) -> Option<i64> {
        self.0.iter().find_map(|f| {
            if let Fault::BadTtl(t) = f {
                Some(*t)
            } else {
                None
            }
        })
    }
}

fn faults(st: &InstanceState, function: &str) -> Active {
    let fs = st.shared.faults.take(function);
    for f in &fs {
        if let Fault::Delay(d) = f {
            std::thread::sleep(*d);
        }
    }
    Active(fs)
}

fn garbage(len: usize) -> Vec<u8> {
    static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut x = SEED.fetch_add(0x9e37_79b9, Ordering::Relaxed) ^ now_ms();
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0xff) as u8
        })
        .collect()
}

/// Why a backing operation failed.
#[derive(Debug)]
enum KvErr {
    Unavailable,
    Timeout,
    Internal,
}

impl KvErr {
    fn status(&self) -> i32 {
        match self {
            KvErr::Unavailable => status::UNAVAILABLE,
            KvErr::Timeout => status::TIMEOUT,
            KvErr::Internal => status::INTERNAL,
        }
    }

    fn from_redis(e: &redis::RedisError) -> Self {
        if e.is_timeout() {
            KvErr::Timeout
        } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
            KvErr::Unavailable
        } else {
            KvErr::Internal
        }
    }
}

fn redis_conn<'a>(
    st: &'a mut InstanceState,
    r: &RedisKv,
) -> Result<&'a mut redis::Connection, KvErr> {
    if st.kv.is_none() {
        let client = redis::Client::open(r.url.as_str()).map_err(|_| KvErr::Internal)?;
        let conn = client
            .get_connection_with_timeout(r.timeout)
            .map_err(|e| KvErr::from_redis(&e))?;
        conn.set_read_timeout(Some(r.timeout))
            .map_err(|e| KvErr::from_redis(&e))?;
        conn.set_write_timeout(Some(r.timeout))
            .map_err(|e| KvErr::from_redis(&e))?;
        st.kv = Some(conn);
    }
    st.kv.as_mut().ok_or(KvErr::Internal)
}

/// Runs one Redis exchange; a failure drops the connection so the next call reconnects.
fn with_redis<T>(
    st: &mut InstanceState,
    r: &RedisKv,
    f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
) -> Result<T, KvErr> {
    let conn = redis_conn(st, r)?;
    match f(conn) {
        Ok(v) => Ok(v),
        Err(e) => {
            st.kv = None;
            Err(KvErr::from_redis(&e))
        }
    }
}

fn op_get(st: &mut InstanceState, key: &[u8]) -> Result<Option<(Vec<u8>, i64)>, KvErr> {
    match st.shared.bridge.clone() {
        Bridge::Memory(m) => Ok(m.get(key)),
        Bridge::Redis(r) => {
            let (v, ttl): (Option<Vec<u8>>, i64) = with_redis(st, &r, |c| {
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(key)
                    .cmd("PTTL")
                    .arg(key)
                    .query(c)
            })?;
            Ok(v.map(|v| (v, if ttl < 0 { -1 } else { ttl })))
        }
    }
}

fn op_set(
    st: &mut InstanceState,
    key: &[u8],
    val: &[u8],
    ttl_ms: i64,
    nx: bool,
) -> Result<bool, KvErr> {
    match st.shared.bridge.clone() {
        Bridge::Memory(m) => {
            if nx {
                Ok(m.set_nx(key, val, ttl_ms))
            } else {
                m.set(key, val, ttl_ms);
                Ok(true)
            }
        }
        Bridge::Redis(r) => with_redis(st, &r, |c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(val);
            if ttl_ms > 0 {
                cmd.arg("PX").arg(ttl_ms);
            }
            if nx {
                cmd.arg("NX");
            }
            let reply: Option<String> = cmd.query(c)?;
            Ok(reply.is_some())
        }),
    }
}

fn op_delete(st: &mut InstanceState, key: &[u8]) -> Result<bool, KvErr> {
    match st.shared.bridge.clone() {
        Bridge::Memory(m) => Ok(m.delete(key)),
        Bridge::Redis(r) => {
            with_redis(st, &r, |c| redis::cmd("DEL").arg(key).query::<i64>(c)).map(|n| n > 0)
        }
    }
}

fn op_ttl(st: &mut InstanceState, key: &[u8]) -> Result<Option<i64>, KvErr> {
    match st.shared.bridge.clone() {
        Bridge::Memory(m) => Ok(m.ttl(key)),
        Bridge::Redis(r) => {
            let t: i64 = with_redis(st, &r, |c| redis::cmd("PTTL").arg(key).query(c))?;
            Ok(match t {
                -2 => None,
                t if t < 0 => Some(-1),
                t => Some(t),
            })
        }
    }
}

fn op_exists(st: &mut InstanceState, key: &[u8]) -> Result<bool, KvErr> {
    match st.shared.bridge.clone() {
        Bridge::Memory(m) => Ok(m.get(key).is_some()),
        Bridge::Redis(r) => {
            with_redis(st, &r, |c| redis::cmd("EXISTS").arg(key).query::<i64>(c)).map(|n| n > 0)
        }
    }
}

fn op_ping(st: &mut InstanceState) -> Result<(), KvErr> {
    match st.shared.bridge.clone() {
        Bridge::Memory(_) => Ok(()),
        Bridge::Redis(r) => {
            let pong: String = with_redis(st, &r, |c| redis::cmd("PING").query(c))?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(KvErr::Internal)
            }
        }
    }
}

/// Reads the key, answering `-3` for an out-of-range pointer or an over-long key.
fn key(data: &[u8], ptr: i32, len: i32) -> Result<Vec<u8>, i32> {
    if len < 0 || len as usize > MAX_KEY {
        return Err(status::INVALID);
    }
    memory::range(data.len(), ptr as u32, len as u32)
        .and_then(|r| data.get(r))
        .map(<[u8]>::to_vec)
        .ok_or(status::INVALID)
}

fn in_bounds(data: &[u8], ptr: i32, len: i32) -> bool {
    len >= 0 && memory::range(data.len(), ptr as u32, len as u32).is_some()
}

fn put_i32(data: &mut [u8], ptr: i32, v: i32) {
    memory::try_write(data, ptr as u32, &v.to_le_bytes());
}

fn put_i64(data: &mut [u8], ptr: i32, v: i64) {
    memory::try_write(data, ptr as u32, &v.to_le_bytes());
}

/// Writes a sized reply: `out_len` always, the bytes only when they fit.
fn put_sized(
    data: &mut [u8],
    buf: i32,
    cap: i32,
    out_len: i32,
    value: &[u8],
    act: &Active,
) -> bool {
    if let Some(n) = act.claim() {
        put_i32(data, out_len, n);
        return false;
    }
    if act.has(&Fault::NeverFits) {
        put_i32(data, out_len, cap.saturating_add(1));
        return false;
    }
    put_i32(
        data,
        out_len,
        i32::try_from(value.len()).unwrap_or(i32::MAX),
    );
    if value.len() <= cap as usize {
        memory::try_write(data, buf as u32, value);
        return true;
    }
    false
}

type Res<T> = wasmtime::Result<T>;

/// Adds `oidc_guard_bridge_v1` to `linker`.
///
/// # Errors
/// When a definition clashes.
pub(crate) fn add(linker: &mut Linker<InstanceState>) -> Res<()> {
    linker.func_wrap(
        MODULE,
        "kv_get",
        |mut caller: Caller<'_, InstanceState>,
         k: i32,
         kl: i32,
         buf: i32,
         cap: i32,
         out_len: i32,
         out_ttl: i32|
         -> Res<i32> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let key = match key(data, k, kl) {
                Ok(k) => k,
                Err(s) => return Ok(s),
            };
            if !in_bounds(data, buf, cap)
                || !in_bounds(data, out_len, 4)
                || !in_bounds(data, out_ttl, 8)
            {
                return Ok(status::INVALID);
            }
            let act = faults(st, "kv_get");
            if let Some(s) = act.status() {
                return Ok(s);
            }
            let found = match op_get(st, &key) {
                Ok(f) => f,
                Err(e) => return Ok(e.status()),
            };
            let Some((mut value, ttl)) = found else {
                return Ok(status::NOT_FOUND);
            };
            if act.has(&Fault::Garbage) {
                let n = (garbage(1).first().copied().unwrap_or(7) as usize) % (cap.max(1) as usize);
                value = garbage(n);
            }
            put_sized(data, buf, cap, out_len, &value, &act);
            put_i64(data, out_ttl, act.ttl().unwrap_or(ttl));
            Ok(status::OK)
        },
    )?;

    for (name, nx) in [("kv_set", false), ("kv_set_nx", true)] {
        linker.func_wrap(
            MODULE,
            name,
            move |mut caller: Caller<'_, InstanceState>,
                  k: i32,
                  kl: i32,
                  v: i32,
                  vl: i32,
                  ttl_ms: i64|
                  -> Res<i32> {
                let mem = memory::of(&mut caller)?;
                let (data, st) = mem.data_and_store_mut(&mut caller);
                let key = match key(data, k, kl) {
                    Ok(k) => k,
                    Err(s) => return Ok(s),
                };
                if !in_bounds(data, v, vl) || ttl_ms < 0 {
                    return Ok(status::INVALID);
                }
                if vl as usize > MAX_VALUE {
                    return Ok(status::TOO_LARGE);
                }
                let value = memory::read(data, v as u32, vl as u32, "value")?.to_vec();
                let act = faults(st, name);
                if let Some(s) = act.status() {
                    return Ok(s);
                }
                if act.has(&Fault::Garbage) {
                    return Ok(0x5a5a);
                }
                match op_set(st, &key, &value, ttl_ms, nx) {
                    Ok(true) => Ok(status::OK),
                    Ok(false) => Ok(status::NOT_FOUND),
                    Err(e) => Ok(e.status()),
                }
            },
        )?;
    }

    for name in ["kv_delete", "kv_exists"] {
        linker.func_wrap(
            MODULE,
            name,
            move |mut caller: Caller<'_, InstanceState>, k: i32, kl: i32| -> Res<i32> {
                let mem = memory::of(&mut caller)?;
                let (data, st) = mem.data_and_store_mut(&mut caller);
                let key = match key(data, k, kl) {
                    Ok(k) => k,
                    Err(s) => return Ok(s),
                };
                let act = faults(st, name);
                if let Some(s) = act.status() {
                    return Ok(s);
                }
                if act.has(&Fault::Garbage) {
                    return Ok(0x5a5a);
                }
                let r = if name == "kv_delete" {
                    op_delete(st, &key)
                } else {
                    op_exists(st, &key)
                };
                Ok(match r {
                    Ok(true) => status::OK,
                    Ok(false) => status::NOT_FOUND,
                    Err(e) => e.status(),
                })
            },
        )?;
    }

    linker.func_wrap(
        MODULE,
        "kv_ttl",
        |mut caller: Caller<'_, InstanceState>, k: i32, kl: i32, out_ttl: i32| -> Res<i32> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let key = match key(data, k, kl) {
                Ok(k) => k,
                Err(s) => return Ok(s),
            };
            if !in_bounds(data, out_ttl, 8) {
                return Ok(status::INVALID);
            }
            let act = faults(st, "kv_ttl");
            if let Some(s) = act.status() {
                return Ok(s);
            }
            if act.has(&Fault::Garbage) {
                return Ok(0x5a5a);
            }
            match op_ttl(st, &key) {
                Ok(Some(t)) => {
                    put_i64(data, out_ttl, act.ttl().unwrap_or(t));
                    Ok(status::OK)
                }
                Ok(None) => Ok(status::NOT_FOUND),
                Err(e) => Ok(e.status()),
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "kv_ping",
        |mut caller: Caller<'_, InstanceState>| -> Res<i32> {
            let st = caller.data_mut();
            let act = faults(st, "kv_ping");
            if let Some(s) = act.status() {
                return Ok(s);
            }
            if act.has(&Fault::Garbage) {
                return Ok(0x5a5a);
            }
            Ok(match op_ping(st) {
                Ok(()) => status::OK,
                Err(e) => e.status(),
            })
        },
    )?;

    linker.func_wrap(
        MODULE,
        "http_fetch",
        |mut caller: Caller<'_, InstanceState>,
         rq: i32,
         rql: i32,
         buf: i32,
         cap: i32,
         out_len: i32|
         -> Res<i32> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            if !in_bounds(data, rq, rql)
                || !in_bounds(data, buf, cap)
                || !in_bounds(data, out_len, 4)
            {
                return Ok(status::INVALID);
            }
            let request = memory::read(data, rq as u32, rql as u32, "request")?.to_vec();
            let act = faults(st, "http_fetch");
            if let Some(s) = act.status() {
                return Ok(s);
            }
            let response = match st.pending_fetch.take() {
                Some((r, resp)) if r == request => resp,
                _ => match fetch(&request) {
                    Ok(resp) => resp,
                    Err(s) => return Ok(s),
                },
            };
            let response = if act.has(&Fault::Garbage) {
                garbage(64)
            } else {
                response
            };
            if !put_sized(data, buf, cap, out_len, &response, &act) {
                st.pending_fetch = Some((request, response));
            }
            Ok(status::OK)
        },
    )?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct FetchRequest {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    #[serde(rename = "timeoutMs", default)]
    timeout_ms: Option<u64>,
}

/// Performs one HTTP exchange for the guest; `Err(status)` on a bad document or transport error.
fn fetch(doc: &[u8]) -> Result<Vec<u8>, i32> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let req: FetchRequest = serde_json::from_slice(doc).map_err(|_| status::INVALID)?;
    let body = match &req.body {
        Some(b) => b64.decode(b).map_err(|_| status::INVALID)?,
        None => Vec::new(),
    };
    let timeout = Duration::from_millis(req.timeout_ms.unwrap_or(5000).max(1));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(req.url.as_str());
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder.body(body).map_err(|_| status::INVALID)?;
    let mut resp = agent.run(request).map_err(|e| match e {
        ureq::Error::Timeout(_) => status::TIMEOUT,
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => status::TIMEOUT,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            status::UNAVAILABLE
        }
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => status::INVALID,
        _ => status::INTERNAL,
    })?;
    let status_code = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_VALUE as u64)
        .read_to_vec()
        .map_err(|_| status::TOO_LARGE)?;
    let doc = serde_json::json!({
        "status": status_code,
        "headers": headers,
        "body": b64.encode(body),
    });
    serde_json::to_vec(&doc).map_err(|_| status::INTERNAL)
}
