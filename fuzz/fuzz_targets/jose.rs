//! Tokens, JWKS documents and DPoP proofs from the network: parsing never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oidc_guard::jwt::{Claims, Jwk, Jwks, Jws, Validation};

fuzz_target!(|data: &[u8]| {
    let _ = Jwks::parse(data);
    let _ = Jwk::parse(data);
    let _ = Claims::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(jws) = Jws::parse(s) {
            let _ = jws.header().jwk();
        }
        let keys = Jwks::from_keys(Vec::new());
        let _ = Validation::new("https://issuer.test").audience("api").verify(s, &keys, 1_700_000_000);
    }
});
