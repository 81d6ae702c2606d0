//! Timing helper for "first-sight" verification (parse, key selection, signature, claims: what
//! a token costs before the verified-token cache knows it), used by the native benchmark test and
//! by the in-guest bench harness.
//!
//! No clock is read here: the caller passes a nanosecond timer (in the guest, the WASI realtime
//! clock; never `Instant`, which wazero advances per read).

use super::{Jwks, JwtError, Validation};

/// Verifies `token` `iterations` times with `validation` and returns the mean nanoseconds per
/// verification, measured with `timer_ns`.
///
/// # Errors
/// The verification error if the token does not verify (the first iteration is checked, so a
/// broken setup is not timed as a fast refusal).
pub fn first_sight_ns(
    token: &str,
    keys: &Jwks,
    validation: &Validation,
    now: u64,
    iterations: u32,
    timer_ns: &mut dyn FnMut() -> u64,
) -> Result<u64, JwtError> {
    validation.verify(token, keys, now)?;
    let iterations = iterations.max(1);
    let start = timer_ns();
    for _ in 0..iterations {
        // The result is used so the optimiser cannot drop the work.
        if validation.verify(token, keys, now).is_err() {
            return Err(JwtError::BadSignature);
        }
    }
    let elapsed = timer_ns().saturating_sub(start);
    Ok(elapsed / u64::from(iterations))
}
