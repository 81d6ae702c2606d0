//! The reference point of `make bench`: a near-empty guard guest built on the same
//! `http-wasm-guest` crate as the plugin. Per request it removes one header, reads
//! `Authorization` and sets one header (DESIGN's near-empty guard guest), so its cost over no
//! middleware is what Traefik's http-wasm host itself costs (instance pool, host calls): the
//! ceiling any plugin's throughput ratio can reach.
//!
//! With `listNames: true` in its configuration it also lists the request's header names first,
//! as an auth middleware that looks for spoofed headers by listing them would (`make bench`'s
//! `reference-names`): that one host call costs Traefik more than the rest of the guest.
#![allow(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod guest {
    use http_wasm_guest::host::{admin, Request, Response};
    use http_wasm_guest::{register, Guest};

    struct Reference {
        list_names: bool,
    }

    impl Guest for Reference {
        fn handle_request(&self, request: &Request, _response: &Response) -> (bool, i32) {
            if self.list_names {
                let _ = request.header.names();
            }
            request.header.remove(b"X-Forwarded-User");
            let seen = request.header.get(b"Authorization").is_some();
            request
                .header
                .set(b"X-Reference", if seen { b"1" } else { b"0" });
            (true, 0)
        }
    }

    /// `listNames` from the middleware's JSON; Traefik's file provider hands `true` over as
    /// `"true"`.
    fn list_names(config: &[u8]) -> bool {
        let v: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
        matches!(v.get("listNames"), Some(serde_json::Value::Bool(true)))
            || v.get("listNames").and_then(|b| b.as_str()) == Some("true")
    }

    pub fn main() {
        register(Reference {
            list_names: list_names(&admin::config()),
        });
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    guest::main();
}
