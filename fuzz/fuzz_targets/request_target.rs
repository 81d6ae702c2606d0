//! Request targets, cookies, query strings and URLs from clients: never a panic, a normalised
//! path is always absolute and free of dot segments, and cookies found by position are the
//! cookies parsed.
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
    // The cookies found by position read back as the ones parsed, over one or two headers.
    let (a, b) = s.split_at(s.char_indices().nth(s.chars().count() / 2).map_or(0, |(i, _)| i));
    for headers in [vec![s.to_string()], vec![a.to_string(), b.to_string()]] {
        let spans = cookie::Spans::of(&headers);
        assert!(spans.pairs(&headers).eq(cookie::pairs(&headers)), "{headers:?}");
    }
    let _ = form::parse(&s);
    let _ = url::Url::parse(&s);
});
