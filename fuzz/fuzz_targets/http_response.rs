//! HTTP/1.1 responses from the identity provider: bounded, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oidc_guard::net::http::read_response;

fuzz_target!(|data: &[u8]| {
    let _ = read_response(&mut &data[..], false);
});
