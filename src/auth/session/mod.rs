//! Browser sessions: sealed cookies (or server-side tickets), revocation checks, refresh.
//! (Being written: no session is recognised for now.)

use crate::config::Config;
use crate::plugin::{Guard, Identity, Outcome, Req};

/// Per-instance session bookkeeping.
#[derive(Debug, Default)]
pub struct SessionState {}

impl SessionState {
    /// Builds the state.
    pub fn new(_cfg: &Config) -> Self {
        SessionState {}
    }
}

/// Authenticates a request by its session cookie.
pub fn authenticate(_g: &mut Guard, _req: &mut Req<'_>) -> Outcome {
    Outcome::NotPresent
}

/// Adjusts the forwarded request of an authenticated session (strips the plugin's cookies,
/// forwards the access token when configured).
pub fn prepare_upstream(_g: &mut Guard, _req: &mut Req<'_>, _identity: &Identity) {}
