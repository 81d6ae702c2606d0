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

    use http_wasm_guest::host::{admin, Request, Response};
    use http_wasm_guest::{register, Guest};
    use oidc_guard::abi::handler::{host_log, WasmExchange};
    use oidc_guard::plugin::Plugin;

    thread_local! {
        static STATE: RefCell<Option<Box<Plugin>>> = const { RefCell::new(None) };
    }

    fn build() -> Box<Plugin> {
        let config = admin::config();
        let plugin = Plugin::from_host_config(&config);
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

    struct Entry;

    impl Guest for Entry {
        fn handle_request(&self, request: &Request, response: &Response) -> (bool, i32) {
            let mut plugin = take().unwrap_or_else(build);
            let next = plugin.handle(&WasmExchange::new(request, response));
            put(plugin);
            // req_ctx must be 0 when next is false, or the host never returns the instance to
            // its pool.
            (next, 0)
        }
    }

    pub fn main() {
        put(build());
        register(Entry);
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    entry::main();
}
