//! A per-request profile of a guest instrumented by `tools/wasmprof` (hooks in the import module
//! `oidc_guard_prof`: function entry, return from a call, every memory access): wasm operators
//! per function, and the distinct 64-byte lines and 4-KiB pages of linear memory each function
//! touches, printed after each `handle_request`. Needs `OIDC_GUARD_WASM_OPS=1` (fuel) and
//! `OIDC_GUARD_WASM_PROF=<the names file wasmprof wrote>`. The hooks are defined for every guest
//! and called only by an instrumented one.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use wasmtime::{Caller, Linker};

use super::state::InstanceState;

type Res<T> = wasmtime::Result<T>;

#[derive(Default)]
struct Prof {
    on: bool,
    stack: Vec<i32>,
    last_fuel: u64,
    /// Operators charged by the last hook after its call returned.
    pending: u64,
    ops: HashMap<i32, u64>,
    calls: HashMap<i32, u64>,
    lines: BTreeMap<u32, BTreeSet<i32>>,
    written: BTreeSet<u32>,
    accesses: HashMap<i32, u64>,
    /// Calls per (caller, callee).
    edges: BTreeMap<(i32, i32), u64>,
}

fn prof() -> &'static Mutex<Prof> {
    static P: OnceLock<Mutex<Prof>> = OnceLock::new();
    P.get_or_init(Default::default)
}

/// Whether profiling is on: `OIDC_GUARD_WASM_PROF` names the function-names file, and the
/// engine counts operators ([`super::engine::counts_wasm_ops`]).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        super::engine::counts_wasm_ops() && std::env::var_os("OIDC_GUARD_WASM_PROF").is_some()
    })
}

/// Starts a request's profile at `fuel`.
pub fn begin(fuel: u64) {
    if let Ok(mut p) = prof().lock() {
        *p = Prof {
            on: true,
            last_fuel: fuel,
            ..Default::default()
        };
    }
}

fn charge(
    caller: &mut Caller<'_, InstanceState>,
    before_call: u64,
    after_call: u64,
) -> Option<std::sync::MutexGuard<'static, Prof>> {
    let fuel = caller.get_fuel().ok()?;
    let mut p = prof().lock().ok()?;
    if !p.on {
        return None;
    }
    let ran = p.last_fuel.saturating_sub(fuel);
    let own = ran.saturating_sub(before_call + p.pending);
    p.pending = after_call;
    p.last_fuel = fuel;
    let top = p.stack.last().copied().unwrap_or(-1);
    *p.ops.entry(top).or_default() += own;
    Some(p)
}

fn touch(p: &mut Prof, addr: u32, len: u32, write: bool) {
    let top = p.stack.last().copied().unwrap_or(-1);
    *p.accesses.entry(top).or_default() += 1;
    if len == 0 {
        return;
    }
    let end = addr.saturating_add(len - 1);
    for line in (addr >> 6)..=(end >> 6) {
        p.lines.entry(line).or_default().insert(top);
        if write {
            p.written.insert(line);
        }
    }
}

/// Charges the operators since the last hook (`ops`: the hook's own, before and after its
/// call) and notes the `(address, length, write)` ranges of one memory access.
fn access(c: &mut Caller<'_, InstanceState>, ops: (u64, u64), ranges: &[(u32, i32, bool)]) {
    if let Some(mut p) = charge(c, ops.0, ops.1) {
        for &(addr, len, write) in ranges {
            touch(&mut p, addr, len as u32, write);
        }
    }
}

/// Adds the hooks to `linker`.
///
/// # Errors
/// On a definition clash.
pub fn add(linker: &mut Linker<InstanceState>) -> Res<()> {
    const M: &str = "oidc_guard_prof";
    linker.func_wrap(M, "enter", |mut c: Caller<'_, InstanceState>, f: i32| {
        if let Some(mut p) = charge(&mut c, 2, 0) {
            let caller = p.stack.last().copied().unwrap_or(-1);
            *p.edges.entry((caller, f)).or_default() += 1;
            p.stack.push(f);
            *p.calls.entry(f).or_default() += 1;
        }
    })?;
    linker.func_wrap(M, "resume", |mut c: Caller<'_, InstanceState>, f: i32| {
        if let Some(mut p) = charge(&mut c, 2, 0) {
            while p.stack.last().is_some_and(|t| *t != f) {
                p.stack.pop();
            }
        }
    })?;
    // The operators each hook runs before its call and after it (`tools/wasmprof`).
    linker.func_wrap(
        M,
        "load",
        |mut c: Caller<'_, InstanceState>, a: i32, off: i32, size: i32| {
            access(
                &mut c,
                (5, 0),
                &[((a as u32).wrapping_add(off as u32), size, false)],
            );
        },
    )?;
    linker.func_wrap(
        M,
        "store",
        |mut c: Caller<'_, InstanceState>, a: i32, off: i32, size: i32| {
            access(
                &mut c,
                (6, 1),
                &[((a as u32).wrapping_add(off as u32), size, true)],
            );
        },
    )?;
    linker.func_wrap(
        M,
        "copy",
        |mut c: Caller<'_, InstanceState>, dst: i32, src: i32, len: i32| {
            access(
                &mut c,
                (7, 3),
                &[(dst as u32, len, true), (src as u32, len, false)],
            );
        },
    )?;
    linker.func_wrap(
        M,
        "fill",
        |mut c: Caller<'_, InstanceState>, dst: i32, len: i32| {
            access(&mut c, (6, 3), &[(dst as u32, len, true)]);
        },
    )?;
    Ok(())
}

/// Ends the request's profile and prints it.
pub fn report() {
    let Ok(mut p) = prof().lock() else { return };
    p.on = false;
    let names: HashMap<i32, String> = std::env::var("OIDC_GUARD_WASM_PROF")
        .ok()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|t| {
            t.lines()
                .filter_map(|l| {
                    let (i, n) = l.split_once('\t')?;
                    Some((i.parse().ok()?, n.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let name = |f: &i32| names.get(f).cloned().unwrap_or_else(|| format!("#{f}"));
    let total: u64 = p.ops.values().sum();
    let pages: BTreeSet<u32> = p.lines.keys().map(|l| l >> 6).collect();
    // Lines per function (a line two functions touch counts for both).
    let mut lines: HashMap<i32, u64> = HashMap::new();
    for fs in p.lines.values() {
        for f in fs {
            *lines.entry(*f).or_default() += 1;
        }
    }
    eprintln!(
        "profile: {total} operators in {} functions ({} calls); {} distinct 64-B lines ({} written), {} 4-KiB pages",
        p.calls.len(),
        p.calls.values().sum::<u64>(),
        p.lines.len(),
        p.written.len(),
        pages.len()
    );
    eprintln!(
        "  pages: {:?}",
        pages
            .iter()
            .map(|x| format!("{:#x}", x << 12))
            .collect::<Vec<_>>()
    );
    let mut fs: Vec<i32> = p.ops.keys().chain(lines.keys()).copied().collect();
    fs.sort();
    fs.dedup();
    fs.sort_by_key(|f| std::cmp::Reverse(p.ops.get(f).copied().unwrap_or(0)));
    eprintln!("     ops  calls  lines  accesses  function");
    for f in fs {
        eprintln!(
            "  {:>6} {:>6} {:>6} {:>9}  {}",
            p.ops.get(&f).copied().unwrap_or(0),
            p.calls.get(&f).copied().unwrap_or(0),
            lines.get(&f).copied().unwrap_or(0),
            p.accesses.get(&f).copied().unwrap_or(0),
            name(&f)
        );
    }
    eprintln!("  calls: caller -> callee");
    for ((from, to), n) in &p.edges {
        eprintln!("  {n:>6}  {} -> {}", name(from), name(to));
    }
}
