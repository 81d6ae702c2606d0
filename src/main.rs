//! The wasm entry point.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

#[cfg(target_arch = "wasm32")]
mod entry {
    use http_wasm_guest::{host::{Request, Response, admin}, register, Guest};
    struct P;
    impl Guest for P {
        fn handle_request(&self, req: &Request, resp: &Response) -> (bool, i32) {
            let cfg = admin::config();
            if req.uri().starts_with(b"/public") {
                req.header.set(b"X-Cfg", &cfg);
                return (true, 0);
            }
            resp.header.set(b"WWW-Authenticate", b"Bearer");
            resp.set_status(401);
            resp.body.write(b"no\n");
            (false, 0)
        }
    }
    pub fn main() {
        http_wasm_guest::host::log::write(2, b"oidc-guard starting");
        let cfg = http_wasm_guest::host::admin::config();
        if cfg.windows(3).any(|w| w == b"bad") {
            http_wasm_guest::host::log::write(2, b"oidc-guard: bad config");
            std::process::exit(1);
        }
        register(P);
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    entry::main();
}
