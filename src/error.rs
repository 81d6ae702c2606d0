//! The top-level error type. Each area has its own error enum; they convert into [`Error`].
//!
//! Messages say what was expected and what was found; they never include tokens, cookies,
//! passwords or keys.

use std::fmt;

/// Any failure while handling a request or loading the configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (names the key).
    Config(crate::config::ConfigError),
    /// The shared store failed.
    Store(crate::store::StoreError),
    /// A JOSE object (JWT, JWK, JWKS) was refused.
    Jwt(crate::jwt::JwtError),
    /// The host's random source failed.
    Random,
    /// Something else, described.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Store(e) => write!(f, "store: {e}"),
            Error::Jwt(e) => write!(f, "token: {e}"),
            Error::Random => f.write_str("the random source failed"),
            Error::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<crate::jwt::JwtError> for Error {
    fn from(e: crate::jwt::JwtError) -> Self {
        Error::Jwt(e)
    }
}
