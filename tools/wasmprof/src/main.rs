//! `wasmprof IN.wasm OUT.wasm NAMES.txt`: instruments every function of a guest for the test
//! host's per-request profile (`tests/host/src/wasm/prof.rs`): `oidc_guard_prof.enter(f)` at
//! each function's entry, `resume(f)` after each call, `load`/`store(addr, offset, size)` before
//! each memory access, `copy(dst, src, len)` before `memory.copy` and `fill(dst, len)` before
//! `memory.fill`. NAMES.txt
//! maps `f` to the name section's names (build the plugin with `CARGO_PROFILE_RELEASE_STRIP=false`).
use std::collections::HashSet;

use walrus::ir::*;
use walrus::{FunctionId, LocalId, Module, ValType};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let mut m = Module::from_file(&a[1])?;
    let t1 = m.types.add(&[ValType::I32], &[]);
    let t3 = m
        .types
        .add(&[ValType::I32, ValType::I32, ValType::I32], &[]);
    let (enter, _) = m.add_import_func("oidc_guard_prof", "enter", t1);
    let (resume, _) = m.add_import_func("oidc_guard_prof", "resume", t1);
    let (load, _) = m.add_import_func("oidc_guard_prof", "load", t3);
    let (store, _) = m.add_import_func("oidc_guard_prof", "store", t3);
    let t2 = m.types.add(&[ValType::I32, ValType::I32], &[]);
    let (copy, _) = m.add_import_func("oidc_guard_prof", "copy", t3);
    let (fill, _) = m.add_import_func("oidc_guard_prof", "fill", t2);
    let hooks: HashSet<FunctionId> = [enter, resume, load, store, copy, fill].into();
    let mut names = String::new();
    let ids: Vec<FunctionId> = m.funcs.iter_local().map(|(id, _)| id).collect();
    let ta = m.locals.add(ValType::I32);
    let tb = m.locals.add(ValType::I32);
    let tc = m.locals.add(ValType::I32);
    let v32 = m.locals.add(ValType::I32);
    let v64 = m.locals.add(ValType::I64);
    let vf32 = m.locals.add(ValType::F32);
    let vf64 = m.locals.add(ValType::F64);
    let v128 = m.locals.add(ValType::V128);
    for (n, id) in ids.iter().enumerate() {
        let name = m
            .funcs
            .get(*id)
            .name
            .clone()
            .unwrap_or_else(|| format!("f{}", id.index()));
        names.push_str(&format!("{n}\t{name}\n"));
        let f = m.funcs.get_mut(*id).kind.unwrap_local_mut();
        let entry = f.entry_block();
        let mut seqs = vec![entry];
        let mut i = 0;
        while i < seqs.len() {
            let s = seqs[i];
            i += 1;
            for (ins, _) in &f.block(s).instrs {
                match ins {
                    Instr::Block(b) => seqs.push(b.seq),
                    Instr::Loop(l) => seqs.push(l.seq),
                    Instr::IfElse(ie) => {
                        seqs.push(ie.consequent);
                        seqs.push(ie.alternative);
                    }
                    _ => {}
                }
            }
        }
        let idx = n as i32;
        let c = |v: i32| {
            Instr::Const(Const {
                value: Value::I32(v),
            })
        };
        let call = |func| Instr::Call(Call { func });
        let get = |local: LocalId| Instr::LocalGet(LocalGet { local });
        let set = |local: LocalId| Instr::LocalSet(LocalSet { local });
        let tee = |local: LocalId| Instr::LocalTee(LocalTee { local });
        for s in seqs {
            let old = std::mem::take(&mut f.block_mut(s).instrs);
            let mut new = Vec::with_capacity(old.len() * 2);
            if s == entry {
                new.push((c(idx), Default::default()));
                new.push((call(enter), Default::default()));
            }
            for (ins, loc) in old {
                let mut after = Vec::new();
                match &ins {
                    Instr::Load(l) => {
                        for x in [
                            tee(ta),
                            get(ta),
                            c(l.arg.offset as i32),
                            c(l.kind.width() as i32),
                            call(load),
                        ] {
                            new.push((x, Default::default()));
                        }
                    }
                    Instr::Store(st) => {
                        let v = match st.kind {
                            StoreKind::I32 { .. }
                            | StoreKind::I32_8 { .. }
                            | StoreKind::I32_16 { .. } => v32,
                            StoreKind::I64 { .. }
                            | StoreKind::I64_8 { .. }
                            | StoreKind::I64_16 { .. }
                            | StoreKind::I64_32 { .. } => v64,
                            StoreKind::F32 => vf32,
                            StoreKind::F64 => vf64,
                            StoreKind::V128 => v128,
                        };
                        for x in [
                            set(v),
                            tee(ta),
                            get(ta),
                            c(st.arg.offset as i32),
                            c(st.kind.width() as i32),
                            call(store),
                            get(v),
                        ] {
                            new.push((x, Default::default()));
                        }
                    }
                    // The operands are saved and pushed again around one hook call, so that
                    // each hook runs a fixed number of operators (see `prof.rs`).
                    Instr::MemoryCopy(_) => {
                        // [dst, src, n]
                        for x in [
                            set(tc),
                            set(tb),
                            set(ta),
                            get(ta),
                            get(tb),
                            get(tc),
                            call(copy),
                            get(ta),
                            get(tb),
                            get(tc),
                        ] {
                            new.push((x, Default::default()));
                        }
                    }
                    Instr::MemoryFill(_) => {
                        // [dst, val, n]
                        for x in [
                            set(tc),
                            set(tb),
                            set(ta),
                            get(ta),
                            get(tc),
                            call(fill),
                            get(ta),
                            get(tb),
                            get(tc),
                        ] {
                            new.push((x, Default::default()));
                        }
                    }
                    Instr::Call(cl) if !hooks.contains(&cl.func) => {
                        after.push(c(idx));
                        after.push(call(resume));
                    }
                    Instr::CallIndirect(_) => {
                        after.push(c(idx));
                        after.push(call(resume));
                    }
                    _ => {}
                }
                new.push((ins, loc));
                for x in after {
                    new.push((x, Default::default()));
                }
            }
            f.block_mut(s).instrs = new;
        }
    }
    m.emit_wasm_file(&a[2])?;
    std::fs::write(&a[3], names)?;
    Ok(())
}
