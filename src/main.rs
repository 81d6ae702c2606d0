//! The wasm entry point: `_start` builds the plugin from the middleware configuration, then
//! the host calls `handle_request` once per request on this instance.
//!
//! State handling is designed around two host facts (see the README's platform notes):
//! a trap leaves the instance in Traefik's pool exactly as it was, and a trap or non-zero exit in
//! `_start` kills the whole middleware. So `_start` never fails — a bad configuration becomes a
//! plugin that refuses every request with 500 and logs why — and the per-instance state is
//! *taken out* of its cell for the duration of a request and put back afterwards: if a request
//! ever traps halfway, the next request finds the cell empty and rebuilds the state from the
//! configuration instead of using something half-updated or a `RefCell` left borrowed.

#[cfg(target_arch = "wasm32")]
mod entry {
    use std::cell::RefCell;

    use oidc_guard::abi::handler::{host_config, host_log, WasmExchange};
    use oidc_guard::plugin::Plugin;

    thread_local! {
        static STATE: RefCell<Option<Box<Plugin>>> = const { RefCell::new(None) };
    }

    #[cold]
    #[inline(never)]
    fn build() -> Box<Plugin> {
        let plugin = Plugin::from_host_config(&host_config());
        for (level, line) in plugin.startup_messages() {
            host_log(*level, line);
        }
        Box::new(plugin)
    }

    fn take() -> Option<Box<Plugin>> {
        STATE.with(|s| s.try_borrow_mut().ok().and_then(|mut g| g.take()))
    }

    fn put(p: Box<Plugin>) {
        STATE.with(|s| {
            if let Ok(mut g) = s.try_borrow_mut() {
                *g = Some(p);
            }
        });
    }

    /// One request: whether it goes on to the next handler.
    fn handle(ex: &WasmExchange<'_>) -> bool {
        let mut plugin = take().unwrap_or_else(build);
        let next = plugin.handle(ex);
        put(plugin);
        next
    }

    oidc_guard::http_wasm_exports!(handle);

    pub fn main() {
        put(build());
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    entry::main();
}
