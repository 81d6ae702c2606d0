//! Bearer access tokens (RFC 6750, RFC 9068) and DPoP (RFC 9449). (Being written: every token is
//! refused for now.)

use crate::config::Config;
use crate::plugin::{Guard, Outcome, Req};
use crate::response::{BearerError, Response};

/// Per-instance bearer state: verified-token and negative caches.
#[derive(Debug, Default)]
pub struct BearerState {}

impl BearerState {
    /// Builds the state.
    pub fn new(_cfg: &Config) -> Self {
        BearerState {}
    }
}

/// Authenticates a request by its `Authorization: Bearer|DPoP` header.
pub fn authenticate(g: &mut Guard, req: &mut Req<'_>) -> Outcome {
    let Some(h) = req.ex.header("authorization") else {
        return Outcome::NotPresent;
    };
    let scheme = h.split(' ').next().unwrap_or("").to_ascii_lowercase();
    if scheme != "bearer" && scheme != "dpop" {
        return Outcome::NotPresent;
    }
    let dpop = g.cfg.bearer.as_ref().map(|b| b.dpop.enabled).unwrap_or(false);
    Outcome::Reply(Response::unauthorized_api(Some(BearerError::InvalidToken), dpop))
}
