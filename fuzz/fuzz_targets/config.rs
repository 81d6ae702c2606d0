//! The middleware configuration: any JSON (or garbage) is refused with errors or accepted, never
//! a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oidc_guard::config::{Config, Platform};

fuzz_target!(|data: &[u8]| {
    let env = |k: &str| (k.len() % 3 == 0).then(|| String::from_utf8_lossy(data).into_owned());
    let read = |_: &str| Ok(data.to_vec());
    let _ = Config::parse(data, &env, &read, Platform::default());
    let _ = Config::parse(data, &|_| None, &|_| Err(std::io::ErrorKind::NotFound.into()), Platform { bridge_present: true });
});
