//! Every refusal path of the bearer and DPoP code, natively, through the whole pipeline
//! ([`Plugin::handle`]) with a manual clock, a shared fake L2 (two plugins = two replicas) and a
//! scripted provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::rc::Rc;

use ring::signature as sig;
use serde_json::{json, Value};

use crate::clock::ManualClock;
use crate::config::{Config, Platform};
use crate::http::Exchange as _;
use crate::jwt::Jwk;
use crate::plugin::{Parts, Plugin};
use crate::store::fake::{FakeL2, FakeState, Fault};
use crate::store::StoreError;
use crate::testkit::{b64, EcKey, FakeExchange, ScriptedFetch};

const ISS: &str = "https://idp.test";
const AUD: &str = "api";
const NOW_MS: u64 = 1_700_000_000_000;
const NOW: i64 = 1_700_000_000;
const RSA_PKCS8: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/rsa2048.pk8.der"
));

/// Two replicas (or one) of a bearer-only guard sharing one L2 and one clock.
struct World {
    key: EcKey,
    clock: Rc<ManualClock>,
    l2: Rc<RefCell<FakeState>>,
    fake: FakeL2,
    cfg: Value,
}

fn base_cfg(key: &EcKey, extra: Value) -> Value {
    let mut jwks: Value = serde_json::from_str(&key.jwks()).unwrap();
    jwks["keys"].as_array_mut().unwrap().push(rsa_jwk());
    let mut cfg = json!({
        "issuer": ISS,
        "jwks": jwks,
        "bearer": {"enabled": true, "audience": AUD},
        "claimHeaders": {"X-Email": "email"},
    });
    merge(&mut cfg, extra);
    cfg
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            match (b.get_mut(&k), v) {
                (Some(Value::Object(bo)), Value::Object(vo)) => {
                    for (k2, v2) in vo {
                        bo.insert(k2, v2);
                    }
                }
                (_, v) => {
                    b.insert(k, v);
                }
            }
        }
    }
}

impl World {
    fn new(extra: Value) -> World {
        let key = EcKey::generate("k1");
        let clock = Rc::new(ManualClock::new(NOW_MS));
        let (fake, l2) = FakeL2::new(clock.clone());
        let cfg = base_cfg(&key, extra);
        World {
            key,
            clock,
            l2,
            fake,
            cfg,
        }
    }

    /// One replica: its own instance state, the shared L2.
    fn replica(&self) -> Plugin {
        self.replica_with(ScriptedFetch::default())
    }

    /// The world's configuration, parsed.
    fn config(&self) -> Config {
        Config::parse(
            self.cfg.to_string().as_bytes(),
            &|_| None,
            &|_| Err(std::io::ErrorKind::NotFound.into()),
            Platform {
                bridge_present: true,
            },
        )
        .unwrap()
    }

    fn replica_with(&self, fetch: ScriptedFetch) -> Plugin {
        let cfg = self.config();
        let parts = Parts {
            clock: self.clock.clone(),
            l2: Some(Box::new(self.fake.sharing())),
            fetch: Box::new(fetch),
        };
        let mut p = Plugin::with_parts(cfg, parts);
        assert!(p.guard().is_some(), "{:?}", p.startup_messages());
        p
    }

    fn claims(&self) -> Value {
        json!({"iss": ISS, "aud": AUD, "sub": "alice", "email": "alice@example.com",
               "exp": NOW + 300, "iat": NOW - 10, "jti": "t-1"})
    }

    fn token(&self, claims: &Value) -> String {
        self.key.sign(json!({"typ": "at+jwt"}), claims)
    }
}

fn get(uri: &str, auth: &str) -> FakeExchange {
    FakeExchange::get(uri)
        .with("Host", "api.test")
        .with("Authorization", auth)
        .with("Accept", "application/json")
}

fn www(ex: &FakeExchange) -> Vec<String> {
    ex.sent_header("www-authenticate")
}

fn assert_invalid_token(p: &mut Plugin, ex: &FakeExchange, what: &str) {
    assert!(!p.handle(ex), "{what}: forwarded");
    assert_eq!(ex.status(), Some(401), "{what}");
    assert!(
        www(ex)[0].contains("error=\"invalid_token\""),
        "{what}: {:?}",
        www(ex)
    );
    assert_eq!(ex.upstream_header("x-forwarded-user"), None, "{what}");
}

fn counters(p: &mut Plugin) -> super::Counters {
    p.guard().unwrap().bearer.counters()
}

// -------------------------------------------------------------------------------------------
// Credentials

#[test]
fn a_valid_token_is_accepted_cached_and_identifies_the_user() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    let t = w.token(&w.claims());
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let ex = get("/api/orders?access_token=ignored", &format!("{scheme} {t}"))
            .with("X-Forwarded-User", "mallory");
        assert!(p.handle(&ex), "{scheme}: {:?}", ex.sent.borrow());
        assert_eq!(
            ex.upstream_header("x-forwarded-user").as_deref(),
            Some("alice")
        );
        assert_eq!(
            ex.upstream_header("x-email").as_deref(),
            Some("alice@example.com")
        );
    }
    let c = counters(&mut p);
    assert_eq!((c.verifications, c.cache_hits), (1, 2), "{c:?}");
    assert_eq!(p.guard().unwrap().bearer.cached_tokens(), 1);
}

#[test]
fn no_credential_gets_a_challenge_without_error() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    for ex in [
        FakeExchange::get("/api").with("Accept", "application/json"),
        FakeExchange::get("/api?access_token=x").with("Accept", "application/json"),
        get("/api", "Basic YWxpY2U6cHc="),
    ] {
        assert!(!p.handle(&ex));
        assert_eq!(ex.status(), Some(401));
        assert_eq!(www(&ex), vec!["Bearer realm=\"oidc-guard\"".to_string()]);
    }
    // With DPoP on, a DPoP challenge is added (RFC 9449 §7.1).
    let w = World::new(json!({"bearer": {"dpop": {"enabled": true}}}));
    let mut p = w.replica();
    let ex = FakeExchange::get("/api").with("Accept", "application/json");
    assert!(!p.handle(&ex));
    let ch = www(&ex);
    assert_eq!(ch.len(), 2, "{ch:?}");
    assert!(
        ch[1].starts_with("DPoP algs=") && !ch[1].contains("error"),
        "{ch:?}"
    );
}

#[test]
fn malformed_credentials_are_refused() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    let t = w.token(&w.claims());
    // Two credentials: 400 invalid_request (RFC 6750 §3.1).
    let ex = get("/api", &format!("Bearer {t}")).with("Authorization", &format!("Bearer {t}"));
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(400));
    assert!(www(&ex)[0].contains("invalid_request"));
    let ex = get("/api", "Basic YWxpY2U6cHc=").with("Authorization", &format!("Bearer {t}"));
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(400));
    // A scheme without a token.
    for h in ["Bearer", "Bearer    "] {
        let ex = get("/api", h);
        assert!(!p.handle(&ex));
        assert_eq!(ex.status(), Some(400), "{h:?}");
    }
    // Not a b64token.
    for h in [
        format!("Bearer {t} extra"),
        format!("Bearer {t},x"),
        "Bearer a\"b".to_string(),
        "Bearer ==".to_string(),
    ] {
        assert_invalid_token(&mut p, &get("/api", &h), &h);
    }
    // DPoP scheme while DPoP is off: an unsupported method, 401 without an error code.
    let ex = get("/api", &format!("DPoP {t}"));
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(401));
    assert_eq!(www(&ex), vec!["Bearer realm=\"oidc-guard\"".to_string()]);
    assert_eq!(
        counters(&mut p).verifications,
        0,
        "nothing malformed reached verification"
    );
}

#[test]
fn the_size_cap_applies_before_any_parsing() {
    let w = World::new(json!({"bearer": {"maxTokenSize": 2048}}));
    let mut p = w.replica();
    let mut c = w.claims();
    c["pad"] = json!("x".repeat(3000));
    let big = w.token(&c);
    assert_invalid_token(&mut p, &get("/api", &format!("Bearer {big}")), "oversized");
    assert_eq!(counters(&mut p).verifications, 0);
    // 100 KB of anything.
    let junk = "a".repeat(100 * 1024);
    assert_invalid_token(&mut p, &get("/api", &format!("Bearer {junk}")), "100 KB");
    assert_eq!(counters(&mut p).verifications, 0);
}

// -------------------------------------------------------------------------------------------
// Attack cases (issue 6): every one 401 invalid_token, never forwarded, never 5xx.

fn rsa_pair() -> sig::RsaKeyPair {
    sig::RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap()
}

fn rsa_jwk() -> Value {
    let kp = rsa_pair();
    let c: sig::RsaPublicKeyComponents<Vec<u8>> = kp.public().into();
    json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
}

fn rs256(header: &Value, claims: &Value) -> String {
    rs256_raw(header, claims.to_string().as_bytes())
}

/// An RS256 token over an arbitrary payload (validly signed garbage).
fn rs256_raw(header: &Value, payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let kp = rsa_pair();
    let mut s = vec![0u8; kp.public().modulus_len()];
    kp.sign(
        &sig::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut s,
    )
    .unwrap();
    format!("{input}.{}", b64(&s))
}

fn attack_tokens(w: &World) -> Vec<(&'static str, String)> {
    let c = w.claims();
    let good = w.token(&c);
    let (h, p, _) = {
        let mut it = good.split('.');
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    };
    let with = |k: &str, v: Value| {
        let mut c = c.clone();
        c[k] = v;
        c
    };
    // HS256 keyed with the RSA public key's bytes (the classic key-confusion attack).
    let rsa_pub = rsa_pair().public().as_ref().to_vec();
    let hs_input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "kid": "rsa-1", "typ": "at+jwt"})
            .to_string()
            .as_bytes()),
        b64(c.to_string().as_bytes())
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rsa_pub),
        hs_input.as_bytes(),
    );
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt"})
            .to_string()
            .as_bytes()),
        p
    );
    vec![
        ("alg none", none),
        (
            "HS256 with the RSA public key",
            format!("{hs_input}.{}", b64(mac.as_ref())),
        ),
        (
            "unknown kid",
            EcKey::generate("k-unknown").sign(json!({"typ": "at+jwt"}), &c),
        ),
        (
            "crit header",
            w.key
                .sign(json!({"typ": "at+jwt", "crit": ["exp"], "exp": 1}), &c),
        ),
        ("expired", w.token(&with("exp", json!(NOW - 120)))),
        ("not yet valid", w.token(&with("nbf", json!(NOW + 600)))),
        (
            "wrong iss",
            w.token(&with("iss", json!("https://evil.test"))),
        ),
        ("wrong aud", w.token(&with("aud", json!("other-api")))),
        ("stripped signature", format!("{h}.{p}.")),
        (
            "tampered signature",
            format!(
                "{h}.{p}.{}",
                good.split('.')
                    .nth(2)
                    .map(|s| {
                        let mut b = s.as_bytes().to_vec();
                        b[5] = if b[5] == b'A' { b'B' } else { b'A' };
                        String::from_utf8(b).unwrap()
                    })
                    .unwrap()
            ),
        ),
        (
            "payload a JSON string, not an object",
            w.key.sign(json!({"typ": "at+jwt"}), &json!("x")),
        ),
        (
            "validly signed non-JSON payload",
            rs256_raw(&json!({"alg": "RS256", "kid": "rsa-1"}), b"not json"),
        ),
        (
            "validly signed payload with duplicate claims",
            rs256_raw(
                &json!({"alg": "RS256", "kid": "rsa-1"}),
                format!(
                    r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","sub":"admin","exp":{}}}"#,
                    NOW + 300
                )
                .as_bytes(),
            ),
        ),
        (
            "RS256 wrong iss",
            rs256(
                &json!({"alg": "RS256", "kid": "rsa-1"}),
                &with("iss", json!("https://evil.test")),
            ),
        ),
        (
            "ID token as access token",
            w.key.sign(json!({}), &with("nonce", json!("n-1"))),
        ),
        (
            "logout token as access token",
            w.key.sign(
                json!({"typ": "logout+jwt"}),
                &with(
                    "events",
                    json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
                ),
            ),
        ),
        (
            "missing exp",
            w.token(&{
                let mut c = c.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        ("five parts (JWE)", format!("{h}.{p}.a.b.c")),
    ]
}

#[test]
fn attack_tokens_are_refused_with_401() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    // Sanity: the RSA key verifies a good token (so the RS256 refusal above is about iss).
    let ok = rs256(&json!({"alg": "RS256", "kid": "rsa-1"}), &w.claims());
    assert!(p.handle(&get("/api", &format!("Bearer {ok}"))));
    for (what, t) in attack_tokens(&w) {
        assert_invalid_token(&mut p, &get("/api", &format!("Bearer {t}")), what);
        let logs = p.guard().unwrap().log.clone();
        assert!(logs.is_empty(), "logs are flushed per request");
    }
}

#[test]
fn refusal_reasons_go_to_the_log_not_the_response() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    let mut c = w.claims();
    c["exp"] = json!(NOW - 120);
    let ex = get("/api", &format!("Bearer {}", w.token(&c)));
    assert!(!p.handle(&ex));
    let body = String::from_utf8(ex.sent.borrow().as_ref().unwrap().2.clone()).unwrap();
    assert_eq!(body.trim(), "{\"error\":\"invalid_token\"}");
    assert!(
        ex.logs.borrow().iter().any(|(_, m)| m.contains("expired")),
        "{:?}",
        ex.logs.borrow()
    );
}

#[test]
fn refused_tokens_are_remembered_briefly() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    let forged = format!("{}x", &w.token(&w.claims())[..200]);
    let stripped = w.token(&{
        let mut c = w.claims();
        c["iss"] = json!("https://evil.test");
        c
    });
    for _ in 0..5 {
        assert_invalid_token(
            &mut p,
            &get("/api", &format!("Bearer {stripped}")),
            "wrong iss",
        );
    }
    let c = counters(&mut p);
    assert_eq!((c.verifications, c.refused_cached), (1, 4), "{c:?}");
    w.clock.advance(super::REFUSED_TTL_MS + 1);
    assert_invalid_token(
        &mut p,
        &get("/api", &format!("Bearer {stripped}")),
        "wrong iss",
    );
    assert_eq!(
        counters(&mut p).verifications,
        2,
        "verified again after the negative TTL"
    );
    assert_invalid_token(&mut p, &get("/api", &format!("Bearer {forged}")), "forged");
}

/// Junk refused before any signature check is not remembered: refusing it again costs less than
/// an entry, and a flood of it must not fill (and churn) the refused-token cache.
#[test]
fn refusals_before_the_signature_are_not_remembered() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    let hs = format!(
        "{}.{}.c2ln",
        b64(br#"{"alg":"HS256","typ":"at+jwt"}"#),
        b64(w.claims().to_string().as_bytes())
    );
    for t in ["junk", "a.b.c", hs.as_str()] {
        for _ in 0..3 {
            assert_invalid_token(&mut p, &get("/api", &format!("Bearer {t}")), t);
        }
    }
    let c = counters(&mut p);
    assert_eq!(c.refused_cached, 0, "{c:?}");
}

/// A full map evicts an eighth of its entries at once, so the next inserts find room without a
/// pass over the map.
#[test]
fn a_full_cache_evicts_in_batches() {
    let mut m = super::TtlMap::<[u8; 32], u32>::new(64, 1 << 20);
    for i in 0..64u8 {
        assert!(m.insert([i; 32], 0, 10_000 + u64::from(i), 10, 0));
    }
    assert_eq!(m.len(), 64);
    assert!(m.insert([200; 32], 0, 20_000, 10, 0));
    assert_eq!(m.len(), 64 - 8 + 1, "eight evicted, one added");
    for i in 0..8u8 {
        assert_eq!(m.get(&[i; 32], 0), None, "the soonest-expiring went");
    }
    assert_eq!(m.get(&[8; 32], 0), Some(0));
    for i in 0..7u8 {
        assert!(m.insert([210 + i; 32], 0, 20_000, 10, 0));
    }
    assert_eq!(m.len(), 64, "room for seven more without evicting");
}

#[test]
fn unknown_kid_refusals_are_not_remembered() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    let t = EcKey::generate("k-new").sign(json!({"typ": "at+jwt"}), &w.claims());
    for _ in 0..3 {
        assert_invalid_token(&mut p, &get("/api", &format!("Bearer {t}")), "unknown kid");
    }
    assert_eq!(counters(&mut p).refused_cached, 0);
}

#[test]
fn cached_tokens_expire_with_the_token() {
    let w = World::new(json!({}));
    let mut p = w.replica();
    let mut c = w.claims();
    c["exp"] = json!(NOW + 30);
    let t = w.token(&c);
    assert!(p.handle(&get("/api", &format!("Bearer {t}"))));
    // Within exp + the 60 s skew the validation accepts, the cache serves it.
    w.clock.advance(80_000);
    assert!(p.handle(&get("/api", &format!("Bearer {t}"))));
    assert_eq!(counters(&mut p).verifications, 1);
    w.clock.advance(11_000);
    assert_invalid_token(
        &mut p,
        &get("/api", &format!("Bearer {t}")),
        "expired after caching",
    );
}

#[test]
fn the_cache_is_bounded() {
    let mut m = super::TtlMap::<[u8; 32], u32>::new(4, 1000);
    for i in 0..10u8 {
        assert!(m.insert([i; 32], u32::from(i), 1000 + u64::from(i), 10, 0));
        assert!(m.len() <= 4);
    }
    // The soonest-expiring entries went first.
    assert_eq!(m.get(&[9; 32], 0), Some(9));
    assert_eq!(m.get(&[0; 32], 0), None);
    // Bytes bound: one entry larger than the bound is refused; big entries evict others.
    assert!(!m.insert([50; 32], 0, 5000, 2000, 0));
    assert!(m.insert([51; 32], 0, 5000, 500, 0));
    assert!(m.bytes <= 1000);
    // Expired entries are never returned and are swept before live ones are evicted.
    let mut m = super::TtlMap::<[u8; 32], u32>::new(2, 10_000);
    assert!(m.insert([1; 32], 1, 100, 1, 0));
    assert!(m.insert([2; 32], 2, 5000, 1, 0));
    assert_eq!(m.get(&[1; 32], 100), None);
    assert!(m.insert([3; 32], 3, 5000, 1, 200));
    assert!(m.insert([4; 32], 4, 6000, 1, 200));
    assert_eq!(m.len(), 2);
    assert_eq!(m.get(&[4; 32], 200), Some(4));
}

#[test]
fn id_tokens_and_untyped_tokens() {
    let w = World::new(json!({"bearer": {"requireAccessTokenType": true}}));
    let mut p = w.replica();
    let untyped = w.key.sign(json!({}), &w.claims());
    assert_invalid_token(
        &mut p,
        &get("/api", &format!("Bearer {untyped}")),
        "typ required",
    );
    let jwt = w.key.sign(json!({"typ": "JWT"}), &w.claims());
    assert_invalid_token(
        &mut p,
        &get("/api", &format!("Bearer {jwt}")),
        "typ JWT with at+jwt required",
    );
    assert!(p.handle(&get("/api", &format!("Bearer {}", w.token(&w.claims())))));
    // Without the requirement an untyped token is fine, an ID token (nonce, at_hash) is not.
    let w = World::new(json!({}));
    let mut p = w.replica();
    assert!(p.handle(&get(
        "/api",
        &format!("Bearer {}", w.key.sign(json!({}), &w.claims()))
    )));
    let mut id = w.claims();
    id["at_hash"] = json!("abc");
    assert_invalid_token(
        &mut p,
        &get("/api", &format!("Bearer {}", w.key.sign(json!({}), &id))),
        "ID token",
    );
}

/// With browser login on, `bearer.audience` defaults to the client ID, which is an ID token's
/// `aud`: an ID token from a refresh (no `nonce`, no `at_hash`) must still not pass as an access
/// token (RFC 8725 §3.11), while an access token for the client ID does.
#[test]
fn an_id_token_of_the_login_client_is_not_an_access_token() {
    let mut w = World::new(json!({
        "authorizationEndpoint": "https://idp.test/auth",
        "tokenEndpoint": "https://idp.test/token",
        "clientID": "app",
        "clientSecret": "s3cret",
        "sessionEncryptionKey": "first-session-key-0123456789abcdef",
    }));
    // The default audience: the client ID.
    w.cfg["bearer"].as_object_mut().unwrap().remove("audience");
    let mut p = w.replica();
    let mut id = w.claims();
    id["aud"] = json!("app");
    id["azp"] = json!("app");
    id["sid"] = json!("s-1");
    id["auth_time"] = json!(NOW - 100);
    let refreshed = w.key.sign(json!({"typ": "JWT"}), &id);
    let ex = get("/api", &format!("Bearer {refreshed}"));
    assert_invalid_token(&mut p, &ex, "refreshed ID token");
    let mut access = id.clone();
    access["scope"] = json!("openid orders");
    access["jti"] = json!("t-2");
    let ex = get(
        "/api",
        &format!("Bearer {}", w.key.sign(json!({"typ": "JWT"}), &access)),
    );
    assert!(p.handle(&ex), "an access token for the client ID");
    assert_eq!(
        ex.upstream_header("x-forwarded-user").as_deref(),
        Some("alice")
    );
    access["jti"] = json!("t-3");
    let ex = get("/api", &format!("Bearer {}", w.token(&access)));
    assert!(p.handle(&ex), "typed at+jwt");
}

#[test]
fn an_unreachable_provider_is_503_not_401() {
    let key = EcKey::generate("k1");
    let mut cfg = base_cfg(&key, json!({"providerURL": ISS}));
    cfg.as_object_mut().unwrap().remove("jwks");
    cfg.as_object_mut().unwrap().remove("issuer");
    let w = World {
        cfg,
        ..World::new(json!({}))
    };
    let mut p = w.replica_with(ScriptedFetch {
        down: true,
        ..Default::default()
    });
    let t = key.sign(json!({"typ": "at+jwt"}), &w.claims());
    let ex = get("/api", &format!("Bearer {t}"));
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(503));
    // A provider that answers garbage: 502.
    let mut p = w.replica_with(ScriptedFetch::default().route(
        &format!("{ISS}/.well-known/openid-configuration"),
        200,
        "nope",
    ));
    let ex = get("/api", &format!("Bearer {t}"));
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(502));
    // Discovery works, the JWKS comes from it, the token is accepted; a new kid refetches once.
    let disc = json!({"issuer": ISS, "jwks_uri": format!("{ISS}/jwks")}).to_string();
    let fetch = ScriptedFetch::default()
        .route(
            &format!("{ISS}/.well-known/openid-configuration"),
            200,
            &disc,
        )
        .route(&format!("{ISS}/jwks"), 200, &key.jwks());
    let mut p = w.replica_with(fetch);
    assert!(p.handle(&get("/api", &format!("Bearer {t}"))));
}

// -------------------------------------------------------------------------------------------
// Policy and identity

#[test]
fn the_policy_applies_to_bearer_identities() {
    let w = World::new(json!({"allowedUsers": ["bob"]}));
    let mut p = w.replica();
    let ex = get("/api", &format!("Bearer {}", w.token(&w.claims())));
    assert!(!p.handle(&ex));
    assert_eq!(ex.status(), Some(403));
    assert!(www(&ex)[0].contains("insufficient_scope"));
    let w = World::new(json!({"userIdentifierClaim": "email"}));
    let mut p = w.replica();
    let mut claims = w.claims();
    claims["email_verified"] = json!(true);
    let ex = get("/api", &format!("Bearer {}", w.token(&claims)));
    assert!(p.handle(&ex));
    assert_eq!(
        ex.upstream_header("x-forwarded-user").as_deref(),
        Some("alice@example.com")
    );
    // An address the provider did not say it verified identifies no one.
    for verified in [json!(false), json!(null)] {
        claims["email_verified"] = verified;
        let ex = get("/api", &format!("Bearer {}", w.token(&claims)));
        assert!(!p.handle(&ex));
        assert_eq!(ex.upstream_header("x-forwarded-user"), None);
    }
}

// -------------------------------------------------------------------------------------------
// One-time tokens and (no) false replay

#[test]
fn normal_tokens_are_reusable_on_every_replica() {
    let w = World::new(json!({}));
    let (mut a, mut b) = (w.replica(), w.replica());
    let t = w.token(&w.claims());
    for _ in 0..5 {
        assert!(a.handle(&get("/api", &format!("Bearer {t}"))));
        assert!(b.handle(&get("/api", &format!("Bearer {t}"))));
    }
    assert_eq!(
        w.l2.borrow().calls,
        0,
        "a normal bearer token needs no store round trip"
    );
}

#[test]
fn one_time_tokens_are_used_once_in_the_cluster() {
    let w = World::new(json!({"bearer": {"oneTimeTokens": true}}));
    let (mut a, mut b) = (w.replica(), w.replica());
    let t = w.token(&w.claims());
    assert!(a.handle(&get("/api", &format!("Bearer {t}"))));
    assert_invalid_token(
        &mut b,
        &get("/api", &format!("Bearer {t}")),
        "second use on B",
    );
    assert_invalid_token(
        &mut a,
        &get("/api", &format!("Bearer {t}")),
        "second use on A (verified-token cache)",
    );
    // The marker lives until exp + skew, keyed on a hash of the jti (not of the token).
    let ttl = {
        let st = w.l2.borrow();
        let (k, (_, exp)) = st.map.iter().find(|(k, _)| k.contains(":jti:at:")).unwrap();
        assert!(!k.contains("t-1"), "the raw jti is not in the key");
        exp - NOW_MS
    };
    assert_eq!(ttl, (300 + 60) * 1000);
    // Another token with the same claims but another signature string (ECDSA is randomised):
    // same jti, refused.
    let t2 = w.token(&w.claims());
    assert_ne!(t, t2);
    assert_invalid_token(
        &mut b,
        &get("/api", &format!("Bearer {t2}")),
        "same jti, other signature",
    );
    // A new jti works once.
    let mut c = w.claims();
    c["jti"] = json!("t-2");
    assert!(b.handle(&get("/api", &format!("Bearer {}", w.token(&c)))));
}

#[test]
fn one_time_tokens_need_a_jti() {
    let w = World::new(json!({"bearer": {"oneTimeTokens": true}}));
    let mut a = w.replica();
    for jti in [None, Some(json!("")), Some(json!(7))] {
        let mut c = w.claims();
        match jti {
            None => {
                c.as_object_mut().unwrap().remove("jti");
            }
            Some(v) => c["jti"] = v,
        }
        assert_invalid_token(
            &mut a,
            &get("/api", &format!("Bearer {}", w.token(&c))),
            "no usable jti",
        );
    }
}

#[test]
fn one_time_tokens_are_refused_with_503_while_the_store_is_down_and_not_consumed() {
    let w = World::new(json!({"bearer": {"oneTimeTokens": true}}));
    let mut a = w.replica();
    let t = w.token(&w.claims());
    w.l2.borrow_mut().fault = Fault::Fail(StoreError::Unavailable("down".into()));
    let ex = get("/api", &format!("Bearer {t}"));
    assert!(!a.handle(&ex));
    assert_eq!(ex.status(), Some(503));
    w.l2.borrow_mut().fault = Fault::None;
    // The breaker may hold the next call back briefly; once it lets calls through, the token
    // works (it was never recorded) exactly once.
    w.clock.advance(60_000);
    assert!(a.handle(&get("/api", &format!("Bearer {t}"))));
    assert_invalid_token(&mut a, &get("/api", &format!("Bearer {t}")), "second use");
}

// -------------------------------------------------------------------------------------------
// DPoP

struct Dpop {
    key: EcKey,
    jkt: String,
}

impl Dpop {
    fn new() -> Dpop {
        let key = EcKey::generate("dpop");
        let jkt = Jwk::from_map(key.jwk().as_object().unwrap())
            .unwrap()
            .thumbprint();
        Dpop { key, jkt }
    }

    fn proof(&self, htm: &str, htu: &str, token: &str, jti: &str, iat: i64) -> String {
        let mut jwk = self.key.jwk();
        jwk.as_object_mut().unwrap().remove("kid");
        let ath = crate::crypto::sha256_b64(token.as_bytes());
        self.key.sign(
            json!({"typ": "dpop+jwt", "jwk": jwk}),
            &json!({"htm": htm, "htu": htu, "iat": iat, "jti": jti, "ath": ath}),
        )
    }
}

fn dpop_world(extra: Value) -> World {
    let mut e = json!({"bearer": {"dpop": {"enabled": true}}});
    merge(&mut e, extra);
    World::new(e)
}

fn bound_token(w: &World, d: &Dpop) -> String {
    let mut c = w.claims();
    c["cnf"] = json!({"jkt": d.jkt});
    w.token(&c)
}

fn dpop_req(method: &str, uri: &str, token: &str, proof: &str) -> FakeExchange {
    let mut ex = get(uri, &format!("DPoP {token}")).with("DPoP", proof);
    ex.method = method.into();
    ex
}

fn assert_invalid_proof(p: &mut Plugin, ex: &FakeExchange, what: &str) {
    assert!(!p.handle(ex), "{what}: forwarded");
    assert_eq!(ex.status(), Some(401), "{what}");
    let ch = www(ex);
    assert!(
        ch.iter()
            .any(|c| c.starts_with("DPoP ") && c.contains("error=\"invalid_dpop_proof\"")),
        "{what}: {ch:?}"
    );
    assert!(
        !ch.iter()
            .any(|c| c.starts_with("Bearer ") && c.contains("error=")),
        "{what}: {ch:?}"
    );
}

#[test]
fn dpop_valid_proofs_are_accepted_once_cluster_wide() {
    let w = dpop_world(json!({}));
    let (mut a, mut b) = (w.replica(), w.replica());
    let d = Dpop::new();
    let t = bound_token(&w, &d);
    let proof = d.proof("GET", "http://api.test/api/orders", &t, "p-1", NOW);
    assert!(a.handle(&dpop_req("GET", "/api/orders?page=2", &t, &proof)));
    // The same proof again, on the other replica and on this one: replay.
    assert_invalid_proof(
        &mut b,
        &dpop_req("GET", "/api/orders", &t, &proof),
        "replayed on B",
    );
    assert_invalid_proof(
        &mut a,
        &dpop_req("GET", "/api/orders", &t, &proof),
        "replayed on A",
    );
    // A fresh proof works on B; the token itself is reusable (not a one-time token).
    let proof2 = d.proof("GET", "http://api.test/api/orders", &t, "p-2", NOW);
    assert!(b.handle(&dpop_req("GET", "/api/orders", &t, &proof2)));
    // The proof marker lives for the iat window (60 s past + 60 s future).
    let st = w.l2.borrow();
    let (_, (_, exp)) = st.map.iter().find(|(k, _)| k.contains(":dpop:")).unwrap();
    assert_eq!(exp - NOW_MS, 120_000);
}

#[test]
fn dpop_proofs_must_fit_the_request() {
    let w = dpop_world(json!({}));
    let mut a = w.replica();
    let d = Dpop::new();
    let t = bound_token(&w, &d);
    let other = Dpop::new();
    let uri = "http://api.test/api/orders";
    let cases: Vec<(&str, FakeExchange)> = vec![
        ("wrong htm", dpop_req("POST", "/api/orders", &t, &d.proof("GET", uri, &t, "j1", NOW))),
        ("wrong htu path", dpop_req("GET", "/api/orders", &t, &d.proof("GET", "http://api.test/api/admin", &t, "j2", NOW))),
        ("wrong htu host", dpop_req("GET", "/api/orders", &t, &d.proof("GET", "http://evil.test/api/orders", &t, "j3", NOW))),
        ("wrong htu scheme", dpop_req("GET", "/api/orders", &t, &d.proof("GET", "https://api.test/api/orders", &t, "j4", NOW))),
        ("iat too old", dpop_req("GET", "/api/orders", &t, &d.proof("GET", uri, &t, "j5", NOW - 120))),
        ("iat in the future", dpop_req("GET", "/api/orders", &t, &d.proof("GET", uri, &t, "j6", NOW + 120))),
        ("ath of another token", dpop_req("GET", "/api/orders", &t, &d.proof("GET", uri, "other-token", "j7", NOW))),
        ("no DPoP header", get("/api/orders", &format!("DPoP {t}"))),
        ("two DPoP headers", dpop_req("GET", "/api/orders", &t, &d.proof("GET", uri, &t, "j8", NOW)).with("DPoP", &d.proof("GET", uri, &t, "j9", NOW))),
        ("not a JWT", dpop_req("GET", "/api/orders", &t, "abc")),
        ("typ not dpop+jwt", dpop_req("GET", "/api/orders", &t, &d.key.sign(json!({"typ": "JWT", "jwk": d.key.jwk()}), &json!({"htm": "GET", "htu": uri, "iat": NOW, "jti": "j10", "ath": crate::crypto::sha256_b64(t.as_bytes())})))),
    ];
    for (what, ex) in &cases {
        assert_invalid_proof(&mut a, ex, what);
    }
    // The proof of another key: the token's binding fails, which RFC 9449 §7.1 answers with
    // invalid_token.
    let ex = dpop_req(
        "GET",
        "/api/orders",
        &t,
        &other.proof("GET", uri, &t, "j11", NOW),
    );
    assert_invalid_token(&mut a, &ex, "key of another client");
    // A proof for the right request still works after all these refusals (the token was not
    // spoiled), and the scheme is taken from X-Forwarded-Proto.
    let ex = dpop_req(
        "GET",
        "/api/orders",
        &t,
        &d.proof("GET", "https://api.test/api/orders", &t, "j12", NOW),
    )
    .with("X-Forwarded-Proto", "https");
    assert!(a.handle(&ex), "{:?}", ex.logs.borrow());
    // Ports and case in the authority are normalised; a lowercase method is not "GET".
    let ex = dpop_req(
        "GET",
        "/api/orders",
        &t,
        &d.proof("GET", "HTTP://API.test:80/api/orders", &t, "j13", NOW),
    );
    assert!(a.handle(&ex), "{:?}", ex.logs.borrow());
    let ex = dpop_req(
        "get",
        "/api/orders",
        &t,
        &d.proof("GET", uri, &t, "j14", NOW),
    );
    assert_invalid_proof(&mut a, &ex, "method case");
    // A Host that would shift the authority into the path.
    let ex = dpop_req("GET", "/orders", &t, &d.proof("GET", uri, &t, "j15", NOW));
    ex.set_header("Host", "api.test/api");
    assert_invalid_proof(&mut a, &ex, "Host with a slash");
}

/// `forceHTTPS` behind a TLS-terminating load balancer (Traefik sees http): the `htu` is https,
/// without browser login too.
#[test]
fn force_https_sets_the_dpop_scheme_without_browser_login() {
    let w = dpop_world(json!({"forceHTTPS": true}));
    let mut a = w.replica();
    let d = Dpop::new();
    let t = bound_token(&w, &d);
    let https = "https://api.test/api/orders";
    let ex = dpop_req(
        "GET",
        "/api/orders",
        &t,
        &d.proof("GET", https, &t, "f1", NOW),
    )
    .with("X-Forwarded-Proto", "http");
    assert!(a.handle(&ex), "{:?}", ex.logs.borrow());
    let http = "http://api.test/api/orders";
    let ex = dpop_req(
        "GET",
        "/api/orders",
        &t,
        &d.proof("GET", http, &t, "f2", NOW),
    );
    assert_invalid_proof(&mut a, &ex, "http htu with forceHTTPS");
}

#[test]
fn dpop_bindings_decide_the_scheme() {
    let w = dpop_world(json!({}));
    let mut a = w.replica();
    let d = Dpop::new();
    let t = bound_token(&w, &d);
    // A bound token as a plain bearer token: the downgrade RFC 9449 §7.2 forbids.
    assert_invalid_token(
        &mut a,
        &get("/api", &format!("Bearer {t}")),
        "bound token as Bearer",
    );
    // An unbound token with the DPoP scheme.
    let plain = w.token(&w.claims());
    let ex = dpop_req(
        "GET",
        "/api",
        &plain,
        &d.proof("GET", "http://api.test/api", &plain, "u1", NOW),
    );
    assert_invalid_token(&mut a, &ex, "unbound token as DPoP");
    // A plain bearer token is fine unless DPoP is required.
    assert!(a.handle(&get("/api", &format!("Bearer {plain}"))));
    let w2 = dpop_world(json!({"bearer": {"dpop": {"enabled": true, "required": true}}}));
    let mut r = w2.replica();
    assert_invalid_token(
        &mut r,
        &get("/api", &format!("Bearer {}", w2.token(&w2.claims()))),
        "dpop.required",
    );
    // A binding we cannot check (mTLS) is refused rather than ignored, DPoP on or off.
    for w in [World::new(json!({})), dpop_world(json!({}))] {
        let mut p = w.replica();
        let mut c = w.claims();
        c["cnf"] = json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"});
        assert_invalid_token(
            &mut p,
            &get("/api", &format!("Bearer {}", w.token(&c))),
            "mTLS-bound",
        );
        // A bound token is refused as Bearer even when DPoP is off.
        let d = Dpop::new();
        assert_invalid_token(
            &mut p,
            &get("/api", &format!("Bearer {}", bound_token(&w, &d))),
            "bound, DPoP off",
        );
    }
}

#[test]
fn dpop_and_one_time_tokens_together() {
    let w = dpop_world(json!({"bearer": {"oneTimeTokens": true}}));
    let (mut a, mut b) = (w.replica(), w.replica());
    let d = Dpop::new();
    let t = bound_token(&w, &d);
    // A bad proof does not burn the one-time token.
    let bad = dpop_req(
        "GET",
        "/api",
        &t,
        &d.proof("POST", "http://api.test/api", &t, "x1", NOW),
    );
    assert_invalid_proof(&mut a, &bad, "bad proof");
    assert!(a.handle(&dpop_req(
        "GET",
        "/api",
        &t,
        &d.proof("GET", "http://api.test/api", &t, "x2", NOW)
    )));
    assert_invalid_token(
        &mut b,
        &dpop_req(
            "GET",
            "/api",
            &t,
            &d.proof("GET", "http://api.test/api", &t, "x3", NOW),
        ),
        "used token, fresh proof",
    );
}

#[test]
fn dpop_replay_checks_refuse_while_the_store_is_down() {
    let w = dpop_world(json!({}));
    let mut a = w.replica();
    let d = Dpop::new();
    let t = bound_token(&w, &d);
    w.l2.borrow_mut().fault = Fault::Fail(StoreError::Unavailable("down".into()));
    let ex = dpop_req(
        "GET",
        "/api",
        &t,
        &d.proof("GET", "http://api.test/api", &t, "s1", NOW),
    );
    assert!(!a.handle(&ex));
    assert_eq!(ex.status(), Some(503));
}

/// `forwardAccessToken` naming a header other than `Authorization`: a bearer or DPoP request's
/// token goes there (a client's copy is replaced); named `Authorization`, the client's own
/// header is left as it came (a DPoP request keeps its scheme).
#[test]
fn forward_access_token_carries_the_bearer_token() {
    let w = dpop_world(json!({"forwardAccessToken": "X-Access-Token"}));
    let mut a = w.replica();
    let t = w.token(&w.claims());
    let ex = get("/api/x", &format!("Bearer {t}")).with("X-Access-Token", "forged");
    assert!(a.handle(&ex), "{:?}", ex.logs.borrow());
    assert_eq!(ex.upstream_header("x-access-token"), Some(t.clone()));
    assert_eq!(
        ex.upstream_header("authorization"),
        Some(format!("Bearer {t}"))
    );
    // A DPoP-bound token: the same token, the `DPoP` scheme kept in `Authorization`.
    let d = Dpop::new();
    let bound = bound_token(&w, &d);
    let ex = dpop_req(
        "GET",
        "/api/x",
        &bound,
        &d.proof("GET", "http://api.test/api/x", &bound, "fa-1", NOW),
    )
    .with("X-Access-Token", "forged");
    assert!(a.handle(&ex), "{:?}", ex.logs.borrow());
    assert_eq!(ex.upstream_header("x-access-token"), Some(bound.clone()));
    assert_eq!(
        ex.upstream_header("authorization"),
        Some(format!("DPoP {bound}"))
    );
    // A refused token forwards nothing.
    let ex = get("/api/x", "Bearer not.a.token").with("X-Access-Token", "forged");
    assert!(!a.handle(&ex));
    assert_eq!(ex.status(), Some(401));

    // Named `Authorization`: the client's header is the token already, and stays as sent.
    let w = World::new(json!({"forwardAccessToken": "Authorization"}));
    let mut a = w.replica();
    let t = w.token(&w.claims());
    let ex = get("/api/x", &format!("Bearer {t}"));
    assert!(a.handle(&ex));
    assert_eq!(
        ex.upstream_header("authorization"),
        Some(format!("Bearer {t}"))
    );
    // Without the option, a client's copy of such a header is not touched (it is nobody's).
    let w = World::new(json!({}));
    let mut a = w.replica();
    let ex = get("/api/x", &format!("Bearer {}", w.token(&w.claims())))
        .with("X-Access-Token", "client's");
    assert!(a.handle(&ex));
    assert_eq!(
        ex.upstream_header("x-access-token"),
        Some("client's".to_string())
    );
}

// -------------------------------------------------------------------------------------------
// Hot-path cost

/// Native cost of the hot paths through the whole pipeline (a fake exchange: no host calls).
/// `cargo test --release --lib auth::bearer::tests::hot_path_cost -- --ignored --nocapture`
/// (`make bench` runs it).
#[test]
#[ignore = "benchmark; run explicitly"]
fn hot_path_cost() {
    let w = World::new(json!({"excludedURLs": ["/public"], "store": {"mode": "memory"}}));
    let mut p = w.replica();
    let t = format!("Bearer {}", w.token(&w.claims()));
    let n = 20_000u32;
    for (what, path, auth) in [
        ("excluded", "/public/x", ""),
        ("cached bearer", "/api/x", t.as_str()),
        ("no credential", "/api/x", ""),
    ] {
        let mk = || {
            let ex = FakeExchange::get(path).with("Host", "api.test");
            if auth.is_empty() {
                ex.with("Accept", "application/json")
            } else {
                ex.with("Authorization", auth)
            }
        };
        for _ in 0..100 {
            p.handle(&mk());
        }
        let exs: Vec<FakeExchange> = (0..n).map(|_| mk()).collect();
        let t0 = std::time::Instant::now();
        for ex in &exs {
            p.handle(ex);
        }
        println!(
            "{what:<16} {:>8.2} µs/request",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        );
    }
}

/// Host calls per request on the hot paths, pinned so a change that adds one is noticed. Under
/// Traefik's wazero a call costs ≈ 0.1–0.3 µs plus ≈ 2.5 ns per byte the guest touches, so the
/// hot paths read only what they use (no method, no cookies) and set identity headers with one
/// call each (a set replaces whatever the client sent; only the headers left unset are removed).
/// The other spellings of the identity headers (`X_Forwarded_User`) are removed blind, one call
/// each: cheaper than listing the header names while there are few.
#[test]
fn hot_paths_make_few_host_calls() {
    use crate::http::{Exchange, LogLevel};
    struct Counting<'a>(&'a FakeExchange, RefCell<Vec<String>>);
    impl Counting<'_> {
        fn note(&self, what: &str) {
            self.1.borrow_mut().push(what.to_string());
        }
    }
    impl Exchange for Counting<'_> {
        fn method(&self) -> String {
            self.note("method");
            self.0.method()
        }
        fn uri(&self) -> String {
            self.note("uri");
            self.0.uri()
        }
        fn header_values(&self, name: &str) -> Vec<String> {
            self.note(&format!("header_values {name}"));
            self.0.header_values(name)
        }
        fn header_names(&self, visit: &mut dyn FnMut(&str)) {
            self.note("header_names");
            self.0.header_names(visit);
        }
        fn source_addr(&self) -> String {
            self.note("source_addr");
            self.0.source_addr()
        }
        fn read_body(&self, limit: usize) -> Option<Vec<u8>> {
            self.note("read_body");
            self.0.read_body(limit)
        }
        fn set_header(&self, name: &str, value: &str) {
            self.note(&format!("set_header {name}"));
            self.0.set_header(name, value);
        }
        fn remove_header(&self, name: &str) {
            self.note(&format!("remove_header {name}"));
            self.0.remove_header(name);
        }
        fn add_response_header(&self, name: &str, value: &str) {
            self.note(&format!("add_response_header {name}"));
            self.0.add_response_header(name, value);
        }
        fn send(&self, status: u16, headers: &[(String, String)], body: &[u8]) {
            self.note("send");
            self.0.send(status, headers, body);
        }
        fn log(&self, level: LogLevel, message: &str) {
            self.note("log");
            self.0.log(level, message);
        }
    }
    let w = World::new(json!({"excludedURLs": ["/public"], "store": {"mode": "memory"}}));
    let mut p = w.replica();
    let t = format!("Bearer {}", w.token(&w.claims()));
    assert!(p.handle(&get("/api/x", &t)));
    for (what, ex, expected) in [
        (
            "excluded",
            FakeExchange::get("/public/x").with("Host", "api.test"),
            vec![
                "uri",
                "remove_header X-Forwarded-User",
                "remove_header X-Email",
                "remove_header X_forwarded-User",
                "remove_header X-Forwarded_user",
                "remove_header X_forwarded_user",
                "remove_header X_email",
            ],
        ),
        (
            "cached bearer",
            get("/api/x", &t),
            vec![
                "uri",
                "header_values Authorization",
                "set_header X-Forwarded-User",
                "set_header X-Email",
                "remove_header X_forwarded-User",
                "remove_header X-Forwarded_user",
                "remove_header X_forwarded_user",
                "remove_header X_email",
            ],
        ),
    ] {
        let c = Counting(&ex, RefCell::new(Vec::new()));
        assert!(p.handle(&c), "{what}");
        assert_eq!(c.1.into_inner(), expected, "{what}");
    }
}

#[test]
fn credentials_are_split_and_trimmed_as_bytes() {
    assert_eq!(super::trim_blanks(b" \t tok \t"), b"tok");
    assert_eq!(super::trim_blanks(b"\t \t"), b"");
    assert_eq!(super::trim_blanks(b"a b"), b"a b");
    // A form feed is not whitespace here (Go refuses it in a header value anyway).
    assert_eq!(super::trim_blanks(b"\x0ctok"), b"\x0ctok");
    let cfg = World::new(json!({})).config();
    let b = cfg.bearer.clone().unwrap();
    let one = |v: &'static [u8]| super::credential(&[v], &b);
    assert!(matches!(one(b"Bearer  abc "), Ok(Some((super::Scheme::Bearer, t))) if t == b"abc"));
    assert!(matches!(one(b"bEaReR abc"), Ok(Some((super::Scheme::Bearer, t))) if t == b"abc"));
    assert!(matches!(one(b"Basic abc"), Ok(None)));
    assert!(matches!(
        one(b"Bearer"),
        Err(super::Refusal::InvalidRequest(_))
    ));
    assert!(
        matches!(one(b"Bearer \xff\xfe"), Ok(Some((super::Scheme::Bearer, t))) if t == b"\xff\xfe")
    );
    assert!(matches!(
        super::credential(&[b"Bearer a", b"Bearer b"], &b),
        Err(super::Refusal::InvalidRequest(_))
    ));
    // Not text: refused as a b64token once made text, never a panic.
    assert!(super::check_b64token(&super::text(b"ab\xffcd")).is_err());
}
