//! Bounds-checked access to the calling guest's exported `memory`.

use std::ops::Range;

use wasmtime::{Caller, Extern, Memory};

use super::state::InstanceState;

/// The caller's exported memory.
///
/// # Errors
/// When the guest exports no memory named `memory`.
pub(crate) fn of(caller: &mut Caller<'_, InstanceState>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => wasmtime::bail!("guest doesn't export memory[memory]"),
    }
}

/// `[ptr, ptr+len)` if it lies inside a memory of `size` bytes.
pub(crate) fn range(size: usize, ptr: u32, len: u32) -> Option<Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= size).then_some(start..end)
}

/// The bytes at `[ptr, ptr+len)`, or a trap naming `what` (wazero's `mustRead`).
pub(crate) fn read<'a>(
    data: &'a [u8],
    ptr: u32,
    len: u32,
    what: &str,
) -> wasmtime::Result<&'a [u8]> {
    match range(data.len(), ptr, len).and_then(|r| data.get(r)) {
        Some(b) => Ok(b),
        None => wasmtime::bail!("out of memory reading {what}"),
    }
}

/// The mutable bytes at `[ptr, ptr+len)`, or a trap naming `what`.
pub(crate) fn slice_mut<'a>(
    data: &'a mut [u8],
    ptr: u32,
    len: u32,
    what: &str,
) -> wasmtime::Result<&'a mut [u8]> {
    match range(data.len(), ptr, len) {
        Some(r) => match data.get_mut(r) {
            Some(b) => Ok(b),
            None => wasmtime::bail!("out of memory writing {what}"),
        },
        None => wasmtime::bail!("out of memory writing {what}"),
    }
}

/// Writes `bytes` at `ptr`, or traps naming `what`.
pub(crate) fn write(data: &mut [u8], ptr: u32, bytes: &[u8], what: &str) -> wasmtime::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| wasmtime::format_err!("{what} too large"))?;
    slice_mut(data, ptr, len, what)?.copy_from_slice(bytes);
    Ok(())
}

/// Writes `bytes` at `ptr` if the whole range is inside memory; returns whether it did
/// (wazero's `Memory.Write`, whose `false` the http-wasm host ignores).
pub(crate) fn try_write(data: &mut [u8], ptr: u32, bytes: &[u8]) -> bool {
    let Ok(len) = u32::try_from(bytes.len()) else {
        return false;
    };
    match range(data.len(), ptr, len).and_then(|r| data.get_mut(r)) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// A little-endian `u32` at `ptr`.
pub(crate) fn read_u32(data: &[u8], ptr: u32, what: &str) -> wasmtime::Result<u32> {
    let b = read(data, ptr, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
