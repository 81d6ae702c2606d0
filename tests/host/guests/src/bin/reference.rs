//! The reference point of `make bench`: a near-empty guard guest built on the same
//! `http-wasm-guest` crate as the plugin. Per request it removes one header, reads
//! `Authorization`, lists the header names and sets one header — the least an http-wasm auth
//! middleware does — so its cost over no middleware is what Traefik's http-wasm host itself
//! costs (instance pool, host calls), the ceiling any plugin's throughput ratio can reach.
#![allow(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod guest {
    use http_wasm_guest::host::{Request, Response};
    use http_wasm_guest::{register, Guest};

    struct Reference;

    impl Guest for Reference {
        fn handle_request(&self, request: &Request, _response: &Response) -> (bool, i32) {
            let _ = request.header.names();
            request.header.remove(b"X-Forwarded-User");
            let seen = request.header.get(b"Authorization").is_some();
            request
                .header
                .set(b"X-Reference", if seen { b"1" } else { b"0" });
            (true, 0)
        }
    }

    pub fn main() {
        register(Reference);
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    guest::main();
}
