//! The request pipeline: one request in, one decision out (being written; this is the
//! foundation's placeholder behaviour: everything is refused with 401).

use crate::http::{Exchange, LogLevel};

/// The per-instance plugin state.
pub struct Plugin {
    startup: Vec<(LogLevel, String)>,
}

impl Plugin {
    /// Builds the plugin from the middleware's JSON configuration. Never fails: an invalid
    /// configuration yields a plugin that refuses every request.
    pub fn from_host_config(_json: &[u8]) -> Plugin {
        Plugin { startup: vec![(LogLevel::Info, "oidc-guard: starting".to_string())] }
    }

    /// Lines to log once when the instance starts.
    pub fn startup_messages(&self) -> &[(LogLevel, String)] {
        &self.startup
    }

    /// Handles one request; `true` forwards it to the next handler.
    pub fn handle(&mut self, ex: &dyn Exchange) -> bool {
        ex.send(
            401,
            &[("WWW-Authenticate".to_string(), "Bearer".to_string())],
            b"unauthorized\n",
        );
        false
    }
}
