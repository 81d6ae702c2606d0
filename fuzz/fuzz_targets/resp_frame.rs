//! RESP replies from a server (or from another request's socket, in Traefik ≤ 3.7.15): `check`
//! and `parse` must agree and never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oidc_guard::resp::frame::{check, parse};

fuzz_target!(|data: &[u8]| {
    let c = check(data);
    let p = parse(data);
    match (c, p) {
        (Ok(n), Ok((_, m))) => assert_eq!(n, m, "check and parse disagree on the frame length"),
        (Ok(_), Err(e)) => panic!("check accepted what parse refused: {e:?}"),
        (Err(_), Ok(_)) => panic!("parse accepted what check refused"),
        (Err(_), Err(_)) => {}
    }
});
