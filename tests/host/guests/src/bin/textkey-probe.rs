//! A guest that checks `oidc_guard::textkey`'s scans in wasm, where the plugin runs them: built
//! like the plugin (with `simd128` from `.cargo/config.toml`), they take the wasm SIMD path that
//! the crate's native unit tests cannot reach. Each request compares `same`, `starts_with`,
//! `is_ascii`, `find_byte` and `eq_letters_ignoring_case` with plain byte loops on texts of every
//! length up to 300 bytes, changed at every position, and answers 200 with a JSON report:
//! `{"simd": bool, "checks": n, "failures": [..]}` (at most 20 failures listed).
#![allow(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod guest {
    use oidc_guard::abi::handler::WasmExchange;
    use oidc_guard::textkey;
    use serde_json::json;

    struct Report {
        checks: u64,
        failures: Vec<String>,
    }

    impl Report {
        fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
            self.checks += 1;
            if !ok && self.failures.len() < 20 {
                self.failures.push(what());
            }
        }
    }

    /// A text of `len` bytes that varies along its length (no zero bytes, all below 0x80).
    fn text(len: usize, salt: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (0x21 + (i * 31 + salt * 7) % 0x5d) as u8)
            .collect()
    }

    fn run() -> Report {
        let mut r = Report {
            checks: 0,
            failures: Vec::new(),
        };
        for len in 0..=300usize {
            let a = text(len, 1);
            r.check(textkey::same(&a, &a.clone()), || {
                format!("same({len}) equal")
            });
            r.check(textkey::is_ascii(&a), || format!("is_ascii({len}) ascii"));
            r.check(textkey::find_byte(&a, 0).is_none(), || {
                format!("find_byte({len}) absent")
            });
            r.check(!textkey::same(&a, &text(len + 1, 1)), || {
                format!("same({len}) other length")
            });
            for i in 0..len {
                // One byte changed, in any lane of any block or in the word-at-a-time rest.
                let mut b = a.clone();
                b[i] ^= 0x40;
                r.check(!textkey::same(&a, &b), || format!("same({len}) byte {i}"));
                r.check(
                    textkey::starts_with(&b, &b[..i]) && !textkey::starts_with(&a, &b[..=i]),
                    || format!("starts_with({len}) at {i}"),
                );
                let mut high = a.clone();
                high[i] |= 0x80;
                r.check(!textkey::is_ascii(&high), || {
                    format!("is_ascii({len}) byte {i}")
                });
                // The first of two needles, and a needle's neighbour values never match.
                let mut h = a.clone();
                h[i] = b';';
                if i + 3 < len {
                    h[i + 3] = b';';
                }
                let want = h.iter().position(|c| *c == b';');
                r.check(textkey::find_byte(&h, b';') == want, || {
                    format!("find_byte({len}) at {i}")
                });
                let mut n = a.clone();
                n[i] = b';' + 1;
                r.check(
                    textkey::find_byte(&n, b';') == n.iter().position(|c| *c == b';'),
                    || format!("find_byte({len}) neighbour at {i}"),
                );
            }
        }
        for lower in [&b"bearer"[..], b"dpop", b"abcdefghijklmnopqrstuvwxyz"] {
            for i in 0..lower.len() {
                for c in 0..=255u8 {
                    let mut t = lower.to_vec();
                    t[i] = c;
                    r.check(
                        textkey::eq_letters_ignoring_case(&t, lower)
                            == t.eq_ignore_ascii_case(lower),
                        || format!("eq_letters_ignoring_case({lower:?}) byte {i} = {c:#x}"),
                    );
                }
            }
        }
        r
    }

    pub fn handle_request(ex: &WasmExchange<'_>) -> bool {
        let r = run();
        let body = json!({
            "simd": cfg!(target_feature = "simd128"),
            "checks": r.checks,
            "failures": r.failures,
        });
        ex.send(
            200,
            &[("Content-Type".into(), "application/json".into())],
            body.to_string().as_bytes(),
        );
        false
    }
}

#[cfg(target_arch = "wasm32")]
oidc_guard::http_wasm_exports!(guest::handle_request);

fn main() {}
