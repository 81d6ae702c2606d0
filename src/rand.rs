//! Cryptographically secure randomness (WASI `random_get` in the guest).

use crate::error::Error;

/// Fills `buf` with random bytes.
///
/// # Errors
/// [`Error::Random`] when the host's random source fails; callers refuse the request.
pub fn fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::getrandom(buf).map_err(|_| Error::Random)
}

/// `N` random bytes.
///
/// # Errors
/// As [`fill`].
pub fn bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    fill(&mut b)?;
    Ok(b)
}

/// A random URL-safe token of `N` random bytes, base64url without padding.
///
/// # Errors
/// As [`fill`].
pub fn token<const N: usize>() -> Result<String, Error> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes::<N>()?))
}
