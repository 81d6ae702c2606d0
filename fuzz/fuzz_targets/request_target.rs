//! Request targets, cookies, query strings and URLs from clients: never a panic, and a
//! normalised path is always absolute and free of dot segments.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oidc_guard::http::{cookie, form, path, url};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    // Every clean path, the plain ones (a length into the target) included.
    if let Some(p) = path::normalize(&s).as_clean(&s) {
        assert!(p.starts_with('/'), "{p:?}");
        assert!(!p.split('/').any(|seg| seg == "." || seg == ".."), "{p:?}");
        assert!(!p.contains("//"), "{p:?}");
    }
    let _ = cookie::parse(&[s.to_string()]);
    let _ = form::parse(&s);
    let _ = url::Url::parse(&s);
});
