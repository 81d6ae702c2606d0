//! Tests for the JOSE layer: one per error variant at least, the attack cases of RFC 8725 and
//! issue 6, and RFC 7638's thumbprint vector. Tokens are signed here with ring (RSA from the
//! committed PKCS#8 fixture, EC and Ed25519 generated per run) and p521.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use serde_json::{json, Value};

use super::dpop::normalize_htu;
use super::*;

const RSA_PKCS8: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/rsa2048.pk8.der"
));
const ISS: &str = "https://idp.example.com";
const AUD: &str = "api://orders";
const CLIENT: &str = "web-client";
const NOW: u64 = 1_700_000_000;
const NOW_I: i64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// Test keys and token minting

enum Signer {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
    P521(Box<p521::ecdsa::SigningKey>),
}

struct TestKey {
    signer: Signer,
    /// The public JWK, with `kid`.
    jwk: Value,
}

/// A CSPRNG for p521 signing, backed by ring (the plugin's p521 has no getrandom feature).
struct RingRng(SystemRandom);

impl p521::elliptic_curve::rand_core::RngCore for RingRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        ring::rand::SecureRandom::fill(&self.0, dest).unwrap();
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), p521::elliptic_curve::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl p521::elliptic_curve::rand_core::CryptoRng for RingRng {}

fn b64(b: &[u8]) -> String {
    b64_encode(b)
}

impl TestKey {
    fn rsa(kid: &str) -> TestKey {
        let kp = sig::RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap();
        let c: sig::RsaPublicKeyComponents<Vec<u8>> = kp.public().into();
        let jwk = json!({"kty": "RSA", "kid": kid, "n": b64(&c.n), "e": b64(&c.e)});
        TestKey {
            signer: Signer::Rsa(kp),
            jwk,
        }
    }

    fn ec(alg: &'static sig::EcdsaSigningAlgorithm, crv: &str, kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let point = kp.public_key().as_ref().to_vec();
        let len = (point.len() - 1) / 2;
        let jwk = json!({"kty": "EC", "crv": crv, "kid": kid,
            "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..])});
        TestKey {
            signer: Signer::Ec(kp),
            jwk,
        }
    }

    fn p256(kid: &str) -> TestKey {
        Self::ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", kid)
    }

    fn p384(kid: &str) -> TestKey {
        Self::ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", kid)
    }

    fn p521(kid: &str) -> TestKey {
        let mut rng = RingRng(SystemRandom::new());
        let sk = p521::ecdsa::SigningKey::random(&mut rng);
        let pt = p521::ecdsa::VerifyingKey::from(&sk).to_encoded_point(false);
        let jwk = json!({"kty": "EC", "crv": "P-521", "kid": kid,
            "x": b64(pt.x().unwrap()), "y": b64(pt.y().unwrap())});
        TestKey {
            signer: Signer::P521(Box::new(sk)),
            jwk,
        }
    }

    fn ed(kid: &str) -> TestKey {
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": b64(kp.public_key().as_ref())});
        TestKey {
            signer: Signer::Ed(kp),
            jwk,
        }
    }

    fn kid(&self) -> &str {
        self.jwk["kid"].as_str().unwrap()
    }

    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(kp) => {
                let pad: &'static dyn sig::RsaEncoding = match alg {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    "PS512" => &sig::RSA_PSS_SHA512,
                    // Any other alg: sign as RS256 (for mismatch tests).
                    _ => &sig::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0u8; kp.public().modulus_len()];
                kp.sign(pad, &rng, msg, &mut out).unwrap();
                out
            }
            Signer::Ec(kp) => kp.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Signer::Ed(kp) => kp.sign(msg).as_ref().to_vec(),
            Signer::P521(sk) => {
                use p521::ecdsa::signature::RandomizedSigner as _;
                let s: p521::ecdsa::Signature =
                    sk.sign_with_rng(&mut RingRng(SystemRandom::new()), msg);
                s.to_bytes().to_vec()
            }
        }
    }

    fn jwk(&self) -> Jwk {
        Jwk::from_map(self.jwk.as_object().unwrap()).unwrap()
    }
}

fn jwks(keys: &[&TestKey]) -> Jwks {
    let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    Jwks::parse(set.to_string().as_bytes()).unwrap()
}

/// A compact JWS over the given header and payload texts, signed by `key` as `alg`.
fn raw_token(header: &str, payload: &str, key: &TestKey, alg: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let s = key.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&s))
}

/// A token with header `{alg, kid}` plus `extra_header`, signed by `key`.
fn token_with(alg: &str, key: &TestKey, extra_header: Value, claims: &Value) -> String {
    let mut h = json!({"alg": alg, "kid": key.kid()});
    for (k, v) in extra_header.as_object().unwrap() {
        h[k] = v.clone();
    }
    raw_token(&h.to_string(), &claims.to_string(), key, alg)
}

fn token(alg: &str, key: &TestKey, claims: &Value) -> String {
    token_with(alg, key, json!({}), claims)
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": NOW + 300, "iat": NOW - 10,
           "jti": "jti-1", "groups": ["admins", "ops"], "email": "alice@example.com"})
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

fn without(mut c: Value, k: &str) -> Value {
    c.as_object_mut().unwrap().remove(k);
    c
}

fn base() -> Validation {
    Validation::new(ISS).audience(AUD)
}

fn rsa() -> TestKey {
    TestKey::rsa("rsa-1")
}

fn verify_rsa(tok: &str) -> Result<Verified, JwtError> {
    base().verify(tok, &jwks(&[&rsa()]), NOW)
}

// ---------------------------------------------------------------------------------------------
// Every algorithm verifies

#[test]
fn every_algorithm_verifies_and_exposes_claims() {
    let r = rsa();
    let e256 = TestKey::p256("ec-256");
    let e384 = TestKey::p384("ec-384");
    let e521 = TestKey::p521("ec-521");
    let ed = TestKey::ed("ed-1");
    let keys = jwks(&[&r, &e256, &e384, &e521, &ed]);
    let cases: [(&str, &TestKey); 11] = [
        ("RS256", &r),
        ("RS384", &r),
        ("RS512", &r),
        ("PS256", &r),
        ("PS384", &r),
        ("PS512", &r),
        ("ES256", &e256),
        ("ES384", &e384),
        ("ES512", &e521),
        ("EdDSA", &ed),
        ("Ed25519", &ed),
    ];
    for (alg, key) in cases {
        let v = base().verify(&token(alg, key, &claims()), &keys, NOW);
        let v = v.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.header().alg().name(), alg);
        assert_eq!(v.header().kid(), Some(key.kid()));
        let c = v.claims();
        assert_eq!(c.iss(), Some(ISS));
        assert_eq!(c.sub(), Some("alice"));
        assert_eq!(c.aud(), vec![AUD]);
        assert_eq!(c.exp(), Some(NOW_I + 300));
        assert_eq!(c.iat(), Some(NOW_I - 10));
        assert_eq!(c.jti(), Some("jti-1"));
        assert_eq!(c.strings("groups"), vec!["admins", "ops"]);
        assert_eq!(c.str_claim("email"), Some("alice@example.com"));
        assert_eq!(c.get("groups"), Some(&json!(["admins", "ops"])));
    }
}

#[test]
fn es512_signature_from_another_key_fails() {
    let a = TestKey::p521("k");
    let b = TestKey::p521("k");
    let tok = token("ES512", &a, &claims());
    assert_eq!(
        base().verify(&tok, &jwks(&[&b]), NOW).unwrap_err(),
        JwtError::BadSignature
    );
}

#[test]
fn verification_without_kid_tries_fitting_keys() {
    let e1 = TestKey::p256("a");
    let e2 = TestKey::p256("b");
    let r = rsa();
    let h = json!({"alg": "ES256"}).to_string();
    let tok = raw_token(&h, &claims().to_string(), &e2, "ES256");
    let v = base().verify(&tok, &jwks(&[&r, &e1, &e2]), NOW).unwrap();
    assert_eq!(v.header().kid(), None);
}

#[test]
fn candidates_are_bounded_without_kid() {
    // Five fitting keys, the signer last: only MAX_CANDIDATES are tried.
    let keys: Vec<TestKey> = (0..5).map(|i| TestKey::p256(&format!("k{i}"))).collect();
    let h = json!({"alg": "ES256"}).to_string();
    let tok = raw_token(&h, &claims().to_string(), &keys[4], "ES256");
    let refs: Vec<&TestKey> = keys.iter().collect();
    assert_eq!(
        base().verify(&tok, &jwks(&refs), NOW).unwrap_err(),
        JwtError::BadSignature
    );
    let tok = raw_token(&h, &claims().to_string(), &keys[2], "ES256");
    assert!(base().verify(&tok, &jwks(&refs), NOW).is_ok());
}

#[test]
fn kid_falls_back_to_kidless_keys_only() {
    let e = TestKey::p256("named");
    let mut anon = e.jwk.clone();
    anon.as_object_mut().unwrap().remove("kid");
    let set = Jwks::parse(json!({"keys": [anon]}).to_string().as_bytes()).unwrap();
    let tok = token("ES256", &e, &claims());
    assert!(base().verify(&tok, &set, NOW).is_ok());
    // With only named keys, an unknown kid is UnknownKid.
    let other = TestKey::p256("other");
    assert_eq!(
        base().verify(&tok, &jwks(&[&other]), NOW).unwrap_err(),
        JwtError::UnknownKid
    );
    // Key-less and named keys mixed, a token from a key the set does not have yet (the provider
    // just rotated): still UnknownKid when the key-less keys do not verify it, so the caller
    // refetches instead of calling it a bad signature.
    let mut anon_other = other.jwk.clone();
    anon_other.as_object_mut().unwrap().remove("kid");
    let third = TestKey::p256("third");
    let mixed = Jwks::parse(
        json!({"keys": [anon_other, third.jwk.clone()]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        base().verify(&tok, &mixed, NOW).unwrap_err(),
        JwtError::UnknownKid
    );
    // A known kid with a bad signature stays a bad signature.
    let h = json!({"alg": "ES256", "kid": third.kid()}).to_string();
    let forged = raw_token(&h, &claims().to_string(), &e, "ES256");
    assert_eq!(
        base().verify(&forged, &mixed, NOW).unwrap_err(),
        JwtError::BadSignature
    );
}

// ---------------------------------------------------------------------------------------------
// Structure: Malformed, TooLarge

#[test]
fn wrong_number_of_parts_is_malformed() {
    let tok = token("RS256", &rsa(), &claims());
    let parts: Vec<&str> = tok.split('.').collect();
    for bad in [
        String::new(),
        parts[0].to_string(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{tok}.x"),
        format!("{tok}.x.y"),
        format!(".{}.{}", parts[1], parts[2]),
    ] {
        assert_eq!(
            verify_rsa(&bad).unwrap_err(),
            JwtError::Malformed,
            "{bad:.40}"
        );
    }
}

#[test]
fn truncated_parts_are_refused() {
    let tok = token("RS256", &rsa(), &claims());
    let parts: Vec<&str> = tok.split('.').collect();
    // Header cut: not JSON any more (or not base64url).
    let h = &parts[0][..parts[0].len() - 3];
    assert_eq!(
        verify_rsa(&format!("{h}.{}.{}", parts[1], parts[2])).unwrap_err(),
        JwtError::Malformed
    );
    // Signature cut by one character: invalid length or bad signature, never accepted.
    let s = &parts[2][..parts[2].len() - 1];
    let e = verify_rsa(&format!("{}.{}.{s}", parts[0], parts[1])).unwrap_err();
    assert!(
        matches!(e, JwtError::Malformed | JwtError::BadSignature),
        "{e:?}"
    );
    // Signature cut by whole bytes: decodes, does not verify.
    let raw = b64_decode(parts[2]).unwrap();
    let s = b64(&raw[..raw.len() - 3]);
    assert_eq!(
        verify_rsa(&format!("{}.{}.{s}", parts[0], parts[1])).unwrap_err(),
        JwtError::BadSignature
    );
}

#[test]
fn padding_whitespace_and_foreign_alphabet_are_malformed() {
    let r = rsa();
    let tok = token("RS256", &r, &claims());
    let parts: Vec<&str> = tok.split('.').collect();
    let variants = [
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}==.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        format!("{} .{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}\n.{}", parts[0], parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            parts[2].replacen(
                |c: char| c == '-' || c == '_' || c.is_ascii_alphanumeric(),
                "+",
                1
            )
        ),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1].replacen(|c: char| c.is_ascii_alphanumeric(), "/", 1),
            parts[2]
        ),
    ];
    for bad in variants {
        assert_eq!(
            verify_rsa(&bad).unwrap_err(),
            JwtError::Malformed,
            "{bad:.60}"
        );
    }
    // Standard base64 with padding of a header that needs it.
    let h = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE,
        br#"{"alg":"RS256","kid":"rsa-1"}"#,
    );
    assert!(h.ends_with('='));
    assert_eq!(
        verify_rsa(&format!("{h}.{}.{}", parts[1], parts[2])).unwrap_err(),
        JwtError::Malformed
    );
}

#[test]
fn non_canonical_trailing_bits_are_malformed() {
    // "eA" decodes to "x"; "eB" has non-zero trailing bits and must be refused.
    assert!(b64_decode("eA").is_ok());
    assert_eq!(b64_decode("eB"), Err(JwtError::Malformed));
}

#[test]
fn header_must_be_an_object_with_string_members() {
    let r = rsa();
    let c = claims().to_string();
    for h in [
        r#"["RS256"]"#,
        r#""RS256""#,
        "null",
        "42",
        "not json",
        r#"{"alg":"RS256"} trailing"#,
        r#"{"kid":"rsa-1"}"#,
        r#"{"alg":256}"#,
        r#"{"alg":"RS256","kid":7}"#,
        r#"{"alg":"RS256","typ":["JWT"]}"#,
        r#"{"alg":"RS256","cty":"JWT"}"#,
        r#"{"alg":"RS256","b64":false}"#,
        r#"{"alg":"RS256","b64":"false"}"#,
        r#"{"alg":"RS256","alg":"RS256"}"#,
        r#"{"alg":"RS256","kid":"rsa-1","kid":"rsa-1"}"#,
    ] {
        let tok = raw_token(h, &c, &r, "RS256");
        assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::Malformed, "{h}");
    }
    // b64: true is the default and allowed.
    let tok = raw_token(r#"{"alg":"RS256","b64":true}"#, &c, &r, "RS256");
    assert!(verify_rsa(&tok).is_ok());
}

#[test]
fn duplicate_header_alg_cannot_smuggle_a_second_value() {
    // serde_json would keep the last value; we refuse the header outright.
    let r = rsa();
    let tok = raw_token(
        r#"{"alg":"none","alg":"RS256"}"#,
        &claims().to_string(),
        &r,
        "RS256",
    );
    assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::Malformed);
}

#[test]
fn non_json_payload_is_malformed() {
    let r = rsa();
    for p in [
        "not json",
        "[1,2]",
        "\"x\"",
        "",
        "{\"exp\":1",
        "{\"a\":1}{}",
    ] {
        let tok = raw_token(r#"{"alg":"RS256","kid":"rsa-1"}"#, p, &r, "RS256");
        assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::Malformed, "{p}");
    }
}

#[test]
fn duplicated_audience_forms_are_refused() {
    let r = rsa();
    let h = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let p = format!(
        r#"{{"iss":"{ISS}","aud":"other","aud":["{AUD}"],"exp":{}}}"#,
        NOW + 60
    );
    assert_eq!(
        verify_rsa(&raw_token(h, &p, &r, "RS256")).unwrap_err(),
        JwtError::Malformed
    );
    let p = format!(
        r#"{{"iss":"{ISS}","aud":["{AUD}"],"aud":"{AUD}","exp":{}}}"#,
        NOW + 60
    );
    assert_eq!(
        verify_rsa(&raw_token(h, &p, &r, "RS256")).unwrap_err(),
        JwtError::Malformed
    );
    // Duplicates nested inside a claim are refused as well.
    let p = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"cnf":{{"jkt":"a","jkt":"b"}}}}"#,
        NOW + 60
    );
    assert_eq!(
        verify_rsa(&raw_token(h, &p, &r, "RS256")).unwrap_err(),
        JwtError::Malformed
    );
    // The same audience twice in an array is harmless.
    let tok = token("RS256", &r, &with(claims(), "aud", json!([AUD, AUD])));
    assert!(verify_rsa(&tok).is_ok());
}

#[test]
fn oversized_token_is_refused_before_parsing() {
    let r = rsa();
    let big = "a".repeat(100 * 1024);
    let tok = token("RS256", &r, &with(claims(), "pad", json!(big)));
    assert!(tok.len() > MAX_TOKEN_BYTES);
    assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::TooLarge);
    // 100 KB of garbage, too.
    assert_eq!(
        verify_rsa(&"x".repeat(100_000)).unwrap_err(),
        JwtError::TooLarge
    );
}

// ---------------------------------------------------------------------------------------------
// Algorithms: AlgorithmNotAllowed, NoSuitableKey

#[test]
fn alg_none_in_any_case_is_refused() {
    let body = b64(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(json!({"alg": alg, "kid": "rsa-1"}).to_string().as_bytes());
        for tok in [format!("{h}.{body}."), format!("{h}.{body}")] {
            let e = verify_rsa(&tok).unwrap_err();
            assert!(
                matches!(e, JwtError::AlgorithmNotAllowed | JwtError::Malformed),
                "{alg}: {e:?}"
            );
        }
        assert_eq!(
            verify_rsa(&format!("{h}.{body}.")).unwrap_err(),
            JwtError::AlgorithmNotAllowed
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let r = rsa();
    let keys = jwks(&[&r]);
    // The classic key-confusion attack: HMAC keyed with the public key's bytes, in every form a
    // naive verifier might use.
    let kp = sig::RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap();
    let secrets: Vec<Vec<u8>> = vec![
        kp.public().as_ref().to_vec(),
        r.jwk.to_string().into_bytes(),
        r.jwk["n"].as_str().unwrap().as_bytes().to_vec(),
    ];
    for secret in secrets {
        for alg in ["HS256", "HS384", "HS512"] {
            let input = format!(
                "{}.{}",
                b64(json!({"alg": alg, "kid": "rsa-1"}).to_string().as_bytes()),
                b64(claims().to_string().as_bytes())
            );
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
            let tag = ring::hmac::sign(&key, input.as_bytes());
            let tok = format!("{input}.{}", b64(tag.as_ref()));
            assert_eq!(
                base().verify(&tok, &keys, NOW).unwrap_err(),
                JwtError::AlgorithmNotAllowed
            );
        }
    }
}

#[test]
fn unknown_or_miscased_algorithms_are_refused() {
    let r = rsa();
    for alg in [
        "rs256",
        "Rs256",
        "RS1",
        "ES256K",
        "EdDSA ",
        "PS256\u{0}",
        "dir",
        "RSA-OAEP",
        "",
    ] {
        let tok = raw_token(
            &json!({"alg": alg, "kid": "rsa-1"}).to_string(),
            &claims().to_string(),
            &r,
            "RS256",
        );
        assert_eq!(
            verify_rsa(&tok).unwrap_err(),
            JwtError::AlgorithmNotAllowed,
            "{alg:?}"
        );
    }
}

#[test]
fn algorithm_outside_the_configured_list_is_refused() {
    let e = TestKey::p256("ec");
    let v = base().algorithms([Algorithm::RS256].into_iter().collect());
    let tok = token("ES256", &e, &claims());
    assert_eq!(
        v.verify(&tok, &jwks(&[&e]), NOW).unwrap_err(),
        JwtError::AlgorithmNotAllowed
    );
    // An empty allow-list refuses everything.
    let v = base().algorithms(AlgSet::empty());
    assert_eq!(
        v.verify(&tok, &jwks(&[&e]), NOW).unwrap_err(),
        JwtError::AlgorithmNotAllowed
    );
}

#[test]
fn key_type_must_match_the_algorithm_family() {
    let r = rsa();
    let e = TestKey::p256("ec");
    let ed = TestKey::ed("ed");
    let keys = jwks(&[&r, &e, &ed]);
    // ES256 token naming the RSA key, RS256 naming the EC key, EdDSA naming the RSA key, ES384
    // naming a P-256 key.
    for (alg, kid) in [
        ("ES256", "rsa-1"),
        ("RS256", "ec"),
        ("EdDSA", "rsa-1"),
        ("ES384", "ec"),
        ("PS256", "ed"),
    ] {
        let h = json!({"alg": alg, "kid": kid}).to_string();
        let tok = raw_token(&h, &claims().to_string(), &e, "ES256");
        assert_eq!(
            base().verify(&tok, &keys, NOW).unwrap_err(),
            JwtError::NoSuitableKey,
            "{alg} {kid}"
        );
    }
    // Without kid and with no key of the family.
    let h = json!({"alg": "ES512"}).to_string();
    let tok = raw_token(&h, &claims().to_string(), &e, "ES256");
    assert_eq!(
        base().verify(&tok, &keys, NOW).unwrap_err(),
        JwtError::NoSuitableKey
    );
    // Jwk::verify refuses directly too.
    assert_eq!(
        r.jwk().verify(Algorithm::ES256, b"m", &[0; 64]),
        Err(JwtError::NoSuitableKey)
    );
}

#[test]
fn jwk_alg_member_restricts_the_algorithm() {
    let r = rsa();
    let mut j = r.jwk.clone();
    j["alg"] = json!("RS256");
    let set = Jwks::parse(json!({"keys": [j]}).to_string().as_bytes()).unwrap();
    assert!(base()
        .verify(&token("RS256", &r, &claims()), &set, NOW)
        .is_ok());
    assert_eq!(
        base()
            .verify(&token("PS256", &r, &claims()), &set, NOW)
            .unwrap_err(),
        JwtError::NoSuitableKey
    );
    // EdDSA and Ed25519 name the same primitive.
    let ed = TestKey::ed("ed");
    let mut j = ed.jwk.clone();
    j["alg"] = json!("EdDSA");
    let set = Jwks::parse(json!({"keys": [j]}).to_string().as_bytes()).unwrap();
    assert!(base()
        .verify(&token("Ed25519", &ed, &claims()), &set, NOW)
        .is_ok());
}

// ---------------------------------------------------------------------------------------------
// Keys: UnknownKid, Key(JwkError), JWKS handling

#[test]
fn unknown_kid_is_distinct() {
    let r = rsa();
    let h = json!({"alg": "RS256", "kid": "rotated-away"}).to_string();
    let tok = raw_token(&h, &claims().to_string(), &r, "RS256");
    assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::UnknownKid);
    assert!(jwks(&[&r]).contains_kid("rsa-1"));
    assert!(!jwks(&[&r]).contains_kid("rotated-away"));
}

fn jwk_err(v: Value) -> JwkError {
    Jwk::from_map(v.as_object().unwrap()).unwrap_err()
}

#[test]
fn jwk_errors() {
    let r = rsa();
    let n = r.jwk["n"].as_str().unwrap();
    // 1024-bit and 9000-bit moduli.
    let small = b64(&[0xc1; 128]);
    let large = b64(&[0xc1; 1125]);
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": small, "e": "AQAB"})),
        JwkError::RsaTooSmall
    );
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": large, "e": "AQAB"})),
        JwkError::RsaTooLarge
    );
    // A 2047-bit modulus written with a leading zero octet is still too small.
    let mut b = vec![0u8, 0x7f];
    b.extend_from_slice(&[0xff; 255]);
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": b64(&b), "e": "AQAB"})),
        JwkError::RsaTooSmall
    );
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": n, "e": "AA"})),
        JwkError::Malformed
    );
    assert_eq!(jwk_err(json!({"kty": "RSA", "n": n})), JwkError::Malformed);
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": format!("{n}="), "e": "AQAB"})),
        JwkError::Malformed
    );
    assert_eq!(
        jwk_err(json!({"kty": "oct", "k": "c2VjcmV0"})),
        JwkError::Symmetric
    );
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": n, "e": "AQAB", "d": "AQAB"})),
        JwkError::PrivateKey
    );
    let mut ec = TestKey::p256("x").jwk;
    ec["d"] = json!("AAAA");
    assert_eq!(jwk_err(ec), JwkError::PrivateKey);
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": n, "e": "AQAB", "use": "enc"})),
        JwkError::NotForVerification
    );
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": n, "e": "AQAB", "key_ops": ["sign"]})),
        JwkError::NotForVerification
    );
    assert_eq!(
        jwk_err(json!({"kty": "RSA", "n": n, "e": "AQAB", "key_ops": "verify"})),
        JwkError::Malformed
    );
    assert!(Jwk::from_map(
        json!({"kty": "RSA", "n": n, "e": "AQAB", "use": "sig", "key_ops": ["verify"]})
            .as_object()
            .unwrap()
    )
    .is_ok());
    assert_eq!(jwk_err(json!({"kty": "foo"})), JwkError::UnsupportedKeyType);
    assert_eq!(jwk_err(json!({"n": n})), JwkError::Malformed);
    assert_eq!(
        jwk_err(json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"})),
        JwkError::UnsupportedCurve
    );
    assert_eq!(
        jwk_err(json!({"kty": "OKP", "crv": "Ed448", "x": "AA"})),
        JwkError::UnsupportedCurve
    );
    assert_eq!(
        jwk_err(json!({"kty": "OKP", "crv": "X25519", "x": b64(&[1; 32])})),
        JwkError::UnsupportedCurve
    );
    assert_eq!(
        jwk_err(json!({"kty": "EC", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[1; 32])})),
        JwkError::WrongLength
    );
    assert_eq!(
        jwk_err(json!({"kty": "EC", "crv": "P-521", "x": b64(&[1; 65]), "y": b64(&[1; 66])})),
        JwkError::WrongLength
    );
    assert_eq!(
        jwk_err(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[1; 31])})),
        JwkError::WrongLength
    );
    assert_eq!(Jwk::parse(b"[]").unwrap_err(), JwkError::Malformed);
    // The error converts into JwtError::Key and displays without key material.
    let e: JwtError = JwkError::RsaTooSmall.into();
    assert_eq!(e, JwtError::Key(JwkError::RsaTooSmall));
    assert!(!e.to_string().contains(&small));
}

#[test]
fn jwks_skips_unusable_keys_instead_of_failing() {
    let r = rsa();
    let e = TestKey::p256("ec");
    let mut private = TestKey::p256("priv").jwk;
    private["d"] = json!(b64(&[7; 32]));
    let set = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "OKP", "crv": "Ed448", "x": "AA", "kid": "ed448"},
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "RSA", "n": b64(&[0xc1; 128]), "e": "AQAB", "kid": "small"},
        {"kty": "RSA", "n": r.jwk["n"], "e": "AQAB", "kid": "enc", "use": "enc"},
        private,
        "not an object",
        r.jwk.clone(),
        e.jwk.clone(),
    ]});
    let set = Jwks::parse(set.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.skipped(), 7);
    // A token naming the private-key JWK's kid finds nothing usable.
    let h = json!({"alg": "ES256", "kid": "priv"}).to_string();
    let tok = raw_token(&h, &claims().to_string(), &e, "ES256");
    assert_eq!(
        base().verify(&tok, &set, NOW).unwrap_err(),
        JwtError::UnknownKid
    );
    // The symmetric key is never used, even for an HS token naming it.
    let h = json!({"alg": "HS256", "kid": "hmac"}).to_string();
    let tok = format!("{}.{}.{}", b64(h.as_bytes()), b64(b"{}"), b64(&[0; 32]));
    assert_eq!(
        base().verify(&tok, &set, NOW).unwrap_err(),
        JwtError::AlgorithmNotAllowed
    );
}

#[test]
fn jwks_shape_errors() {
    for bad in [
        &b"[]"[..],
        b"{}",
        br#"{"keys": {}}"#,
        b"nope",
        br#"{"keys":[],"keys":[]}"#,
    ] {
        assert_eq!(
            Jwks::parse(bad).unwrap_err(),
            JwtError::Key(JwkError::Malformed)
        );
    }
    let empty = Jwks::parse(br#"{"keys": []}"#).unwrap();
    assert!(empty.is_empty());
    let tok = token("RS256", &rsa(), &claims());
    assert_eq!(
        base().verify(&tok, &empty, NOW).unwrap_err(),
        JwtError::UnknownKid
    );
}

#[test]
fn jwks_keeps_at_most_max_keys() {
    let e = TestKey::p256("ec");
    let keys: Vec<Value> = (0..MAX_KEYS + 5).map(|_| e.jwk.clone()).collect();
    let set = Jwks::parse(json!({"keys": keys}).to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), MAX_KEYS);
    assert_eq!(set.skipped(), 5);
}

#[test]
fn invalid_ec_points_do_not_verify() {
    // Coordinates of the right length that are not on the curve.
    for (crv, alg, len) in [
        ("P-256", Algorithm::ES256, 32),
        ("P-384", Algorithm::ES384, 48),
        ("P-521", Algorithm::ES512, 66),
    ] {
        let k = Jwk::from_map(
            json!({"kty": "EC", "crv": crv, "x": b64(&vec![1; len]), "y": b64(&vec![1; len])})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            k.verify(alg, b"msg", &vec![1; 2 * len]),
            Err(JwtError::BadSignature),
            "{crv}"
        );
    }
}

#[test]
fn ecdsa_signatures_must_be_fixed_length() {
    let e = TestKey::p256("ec");
    let tok = token("ES256", &e, &claims());
    let (input, s) = tok.rsplit_once('.').unwrap();
    let raw = b64_decode(s).unwrap();
    assert_eq!(raw.len(), 64);
    // A DER-encoded or padded signature is refused.
    let mut long = raw.clone();
    long.insert(0, 0);
    assert_eq!(
        base()
            .verify(&format!("{input}.{}", b64(&long)), &jwks(&[&e]), NOW)
            .unwrap_err(),
        JwtError::BadSignature
    );
    // ES512 must be 132 bytes.
    let p = TestKey::p521("p");
    let tok = token("ES512", &p, &claims());
    let (input, s) = tok.rsplit_once('.').unwrap();
    let raw = b64_decode(s).unwrap();
    assert_eq!(raw.len(), 132);
    assert_eq!(
        base()
            .verify(&format!("{input}.{}", b64(&raw[..130])), &jwks(&[&p]), NOW)
            .unwrap_err(),
        JwtError::BadSignature
    );
}

#[test]
fn rfc7638_thumbprint_vector() {
    // RFC 7638 §3.1.
    let jwk = br#"{"kty":"RSA",
      "n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
      "e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#;
    let k = Jwk::parse(jwk).unwrap();
    assert_eq!(
        k.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    assert_eq!(k.kid(), Some("2011-04-29"));
    assert_eq!(k.alg(), Some("RS256"));
    assert_eq!(k.kty(), "RSA");
}

#[test]
fn thumbprints_of_ec_and_okp_keys_use_the_required_members() {
    // RFC 8037 Appendix A.3: the Ed25519 example key's thumbprint.
    let k = Jwk::parse(
        br#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
    )
    .unwrap();
    assert_eq!(
        k.thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
    // Optional members do not change a thumbprint.
    let e = TestKey::p256("a");
    let mut j = e.jwk.clone();
    j["use"] = json!("sig");
    j["alg"] = json!("ES256");
    j["kid"] = json!("other");
    assert_eq!(
        Jwk::from_map(j.as_object().unwrap()).unwrap().thumbprint(),
        e.jwk().thumbprint()
    );
    assert_ne!(TestKey::p256("b").jwk().thumbprint(), e.jwk().thumbprint());
}

// ---------------------------------------------------------------------------------------------
// Signatures: BadSignature

#[test]
fn stripped_signature_is_refused() {
    for key in [
        rsa(),
        TestKey::p256("rsa-1"),
        TestKey::ed("rsa-1"),
        TestKey::p521("rsa-1"),
    ] {
        let alg = match key.jwk["kty"].as_str().unwrap() {
            "RSA" => "RS256",
            "OKP" => "EdDSA",
            _ if key.jwk["crv"] == "P-521" => "ES512",
            _ => "ES256",
        };
        let tok = token(alg, &key, &claims());
        let (input, _) = tok.rsplit_once('.').unwrap();
        let keys = jwks(&[&key]);
        assert_eq!(
            base().verify(&format!("{input}."), &keys, NOW).unwrap_err(),
            JwtError::BadSignature,
            "{alg}"
        );
    }
}

#[test]
fn signature_of_another_token_is_refused() {
    let r = rsa();
    let a = token("RS256", &r, &claims());
    let b = token("RS256", &r, &with(claims(), "sub", json!("mallory")));
    let (a_input, _) = a.rsplit_once('.').unwrap();
    let (_, b_sig) = b.rsplit_once('.').unwrap();
    assert_eq!(
        verify_rsa(&format!("{a_input}.{b_sig}")).unwrap_err(),
        JwtError::BadSignature
    );
}

#[test]
fn tampered_payload_is_refused() {
    let r = rsa();
    let tok = token("RS256", &r, &claims());
    let parts: Vec<&str> = tok.split('.').collect();
    let evil = b64(with(claims(), "sub", json!("admin")).to_string().as_bytes());
    assert_eq!(
        verify_rsa(&format!("{}.{evil}.{}", parts[0], parts[2])).unwrap_err(),
        JwtError::BadSignature
    );
    // Swapping the header's alg to the PSS sibling breaks the signature too.
    let h = b64(json!({"alg": "PS256", "kid": "rsa-1"})
        .to_string()
        .as_bytes());
    assert_eq!(
        verify_rsa(&format!("{h}.{}.{}", parts[1], parts[2])).unwrap_err(),
        JwtError::BadSignature
    );
}

// ---------------------------------------------------------------------------------------------
// crit: CritUnsupported

#[test]
fn crit_header_is_refused_unless_understood() {
    let r = rsa();
    let c = claims();
    let tok = token_with("RS256", &r, json!({"crit": ["exp-ext"], "exp-ext": 1}), &c);
    assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::CritUnsupported);
    assert_eq!(Jws::parse(&tok).unwrap_err(), JwtError::CritUnsupported);
    // Understood by the caller: accepted, and exposed.
    let v = base()
        .understand_crit("exp-ext")
        .verify(&tok, &jwks(&[&r]), NOW)
        .unwrap();
    assert_eq!(v.header().crit(), ["exp-ext".to_string()]);
    // One understood, one not.
    let tok = token_with("RS256", &r, json!({"crit": ["exp-ext", "other"]}), &c);
    assert_eq!(
        base()
            .understand_crit("exp-ext")
            .verify(&tok, &jwks(&[&r]), NOW)
            .unwrap_err(),
        JwtError::CritUnsupported
    );
    // b64 in crit: not understood by default, and never accepted as false.
    let tok = token_with("RS256", &r, json!({"crit": ["b64"], "b64": false}), &c);
    assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::CritUnsupported);
    assert_eq!(
        base()
            .understand_crit("b64")
            .verify(&tok, &jwks(&[&r]), NOW)
            .unwrap_err(),
        JwtError::Malformed
    );
    // Ill-formed crit: empty, not an array, registered names.
    for crit in [
        json!([]),
        json!("exp-ext"),
        json!([1]),
        json!(["alg"]),
        json!(["kid"]),
    ] {
        let tok = token_with("RS256", &r, json!({"crit": crit}), &c);
        assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::Malformed, "{crit}");
    }
}

// ---------------------------------------------------------------------------------------------
// Time: Expired, NotYetValid, IssuedInFuture, TooOld, MissingClaim("exp"), InvalidClaim

#[test]
fn expiry_with_skew() {
    let r = rsa();
    let v = |exp: Value| verify_rsa(&token("RS256", &r, &with(claims(), "exp", exp)));
    assert_eq!(v(json!(NOW - 61)).unwrap_err(), JwtError::Expired);
    assert_eq!(v(json!(NOW - 60)).unwrap_err(), JwtError::Expired);
    assert!(v(json!(NOW - 59)).is_ok());
    assert!(v(json!(NOW + 1)).is_ok());
    // Fractional dates are numbers too; rounded down for exp.
    assert!(v(json!(NOW as f64 - 58.5)).is_ok());
    assert_eq!(v(json!(NOW as f64 - 59.9)).unwrap_err(), JwtError::Expired);
    assert_eq!(v(json!(-1)).unwrap_err(), JwtError::Expired);
    assert!(v(json!(u64::MAX)).is_ok());
    assert!(v(json!(1e300)).is_ok());
    // Zero skew.
    let tok = token("RS256", &r, &with(claims(), "exp", json!(NOW)));
    assert_eq!(
        base()
            .clock_skew(0)
            .verify(&tok, &jwks(&[&r]), NOW)
            .unwrap_err(),
        JwtError::Expired
    );
    assert!(base()
        .clock_skew(0)
        .verify(&tok, &jwks(&[&r]), NOW - 1)
        .is_ok());
}

#[test]
fn clock_skew_is_bounded() {
    assert_eq!(base().clock_skew_secs(), DEFAULT_CLOCK_SKEW_SECS);
    assert_eq!(
        base().clock_skew(10_000).clock_skew_secs(),
        MAX_CLOCK_SKEW_SECS
    );
    let r = rsa();
    let tok = token("RS256", &r, &with(claims(), "exp", json!(NOW - 301)));
    assert_eq!(
        base()
            .clock_skew(u64::MAX)
            .verify(&tok, &jwks(&[&r]), NOW)
            .unwrap_err(),
        JwtError::Expired
    );
}

#[test]
fn missing_exp_is_refused() {
    let r = rsa();
    assert_eq!(
        verify_rsa(&token("RS256", &r, &without(claims(), "exp"))).unwrap_err(),
        JwtError::MissingClaim("exp")
    );
}

#[test]
fn not_before_in_the_future_is_refused() {
    let r = rsa();
    let v = |nbf: Value| verify_rsa(&token("RS256", &r, &with(claims(), "nbf", nbf)));
    assert_eq!(v(json!(NOW + 61)).unwrap_err(), JwtError::NotYetValid);
    assert!(v(json!(NOW + 60)).is_ok());
    assert_eq!(
        v(json!(NOW as f64 + 60.1)).unwrap_err(),
        JwtError::NotYetValid
    );
    assert!(v(json!(NOW - 100)).is_ok());
}

#[test]
fn issued_in_the_future_is_refused() {
    let r = rsa();
    let v = |iat: Value| verify_rsa(&token("RS256", &r, &with(claims(), "iat", iat)));
    assert_eq!(v(json!(NOW + 61)).unwrap_err(), JwtError::IssuedInFuture);
    assert!(v(json!(NOW + 60)).is_ok());
}

#[test]
fn max_age_refuses_old_tokens_and_requires_iat() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let v = base().max_age(100);
    let tok = token("RS256", &r, &with(claims(), "iat", json!(NOW - 200)));
    assert_eq!(v.verify(&tok, &keys, NOW).unwrap_err(), JwtError::TooOld);
    let tok = token("RS256", &r, &with(claims(), "iat", json!(NOW - 150)));
    assert!(v.verify(&tok, &keys, NOW).is_ok(), "within max age + skew");
    let tok = token("RS256", &r, &without(claims(), "iat"));
    assert_eq!(
        v.verify(&tok, &keys, NOW).unwrap_err(),
        JwtError::MissingClaim("iat")
    );
}

#[test]
fn numeric_claims_as_strings_are_refused() {
    let r = rsa();
    for name in ["exp", "nbf", "iat"] {
        let tok = token(
            "RS256",
            &r,
            &with(claims(), name, json!((NOW + 10).to_string())),
        );
        assert_eq!(
            verify_rsa(&tok).unwrap_err(),
            JwtError::InvalidClaim(name),
            "{name}"
        );
        for bad in [json!(null), json!(true), json!([NOW]), json!({"t": NOW})] {
            let tok = token("RS256", &r, &with(claims(), name, bad));
            assert_eq!(
                verify_rsa(&tok).unwrap_err(),
                JwtError::InvalidClaim(name),
                "{name}"
            );
        }
    }
}

#[test]
fn registered_string_claims_must_be_strings() {
    let r = rsa();
    for name in ["iss", "sub", "jti", "nonce", "azp", "sid"] {
        let tok = token("RS256", &r, &with(claims(), name, json!(42)));
        assert_eq!(
            verify_rsa(&tok).unwrap_err(),
            JwtError::InvalidClaim(name),
            "{name}"
        );
    }
    for aud in [json!(42), json!([AUD, 1]), json!({"a": AUD}), json!(null)] {
        let tok = token("RS256", &r, &with(claims(), "aud", aud.clone()));
        assert_eq!(
            verify_rsa(&tok).unwrap_err(),
            JwtError::InvalidClaim("aud"),
            "{aud}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Issuer and audience: WrongIssuer, WrongAudience, MissingClaim

#[test]
fn issuer_is_an_exact_match() {
    let r = rsa();
    for iss in [
        "https://evil.example.com",
        "https://idp.example.com/",
        "HTTPS://IDP.EXAMPLE.COM",
        "",
    ] {
        let tok = token("RS256", &r, &with(claims(), "iss", json!(iss)));
        assert_eq!(
            verify_rsa(&tok).unwrap_err(),
            JwtError::WrongIssuer,
            "{iss}"
        );
    }
    let tok = token("RS256", &r, &without(claims(), "iss"));
    assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::MissingClaim("iss"));
    // A second configured issuer is accepted.
    let tok = token("RS256", &r, &with(claims(), "iss", json!("https://other")));
    assert!(base()
        .issuer("https://other")
        .verify(&tok, &jwks(&[&r]), NOW)
        .is_ok());
}

#[test]
fn audience_must_contain_an_expected_one() {
    let r = rsa();
    let keys = jwks(&[&r]);
    for aud in [
        json!("api://other"),
        json!(["api://other", "x"]),
        json!([]),
        json!(""),
    ] {
        let tok = token("RS256", &r, &with(claims(), "aud", aud.clone()));
        assert_eq!(
            verify_rsa(&tok).unwrap_err(),
            JwtError::WrongAudience,
            "{aud}"
        );
    }
    let tok = token("RS256", &r, &with(claims(), "aud", json!(["x", AUD])));
    assert!(verify_rsa(&tok).is_ok());
    let tok = token("RS256", &r, &without(claims(), "aud"));
    assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::MissingClaim("aud"));
    // No configured audience: fail closed.
    let tok = token("RS256", &r, &claims());
    assert_eq!(
        Validation::new(ISS).verify(&tok, &keys, NOW).unwrap_err(),
        JwtError::WrongAudience
    );
    // Any of several configured audiences.
    let v = Validation::new(ISS).audience("a").audience(AUD);
    assert!(v.verify(&tok, &keys, NOW).is_ok());
}

// ---------------------------------------------------------------------------------------------
// typ: WrongType

#[test]
fn required_typ_is_compared_case_insensitively_with_optional_prefix() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let v = base().require_typ("at+jwt");
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        let tok = token_with("RS256", &r, json!({"typ": typ}), &claims());
        assert!(v.verify(&tok, &keys, NOW).is_ok(), "{typ}");
    }
    for typ in [
        Some("JWT"),
        Some("application/jwt"),
        Some("at+jwt "),
        Some("xat+jwt"),
        Some("application/"),
        None,
    ] {
        let h = match typ {
            Some(t) => json!({"typ": t}),
            None => json!({}),
        };
        let tok = token_with("RS256", &r, h, &claims());
        assert_eq!(
            v.verify(&tok, &keys, NOW).unwrap_err(),
            JwtError::WrongType,
            "{typ:?}"
        );
    }
    assert!(typ_is("application/dpop+jwt", "dpop+jwt"));
    assert!(!typ_is("application/application/dpop+jwt", "dpop+jwt"));
}

// ---------------------------------------------------------------------------------------------
// ID tokens (OIDC Core 3.1.3.7)

fn id_claims() -> Value {
    json!({"iss": ISS, "aud": CLIENT, "sub": "alice", "exp": NOW + 300, "iat": NOW - 5,
           "nonce": "n-0S6_WzA2Mj", "auth_time": NOW - 30, "sid": "s1"})
}

fn id_validation() -> IdTokenValidation {
    IdTokenValidation::new(Validation::new(ISS), CLIENT)
}

#[test]
fn id_token_happy_path() {
    for key in [rsa(), TestKey::p256("rsa-1"), TestKey::ed("rsa-1")] {
        let alg = match key.jwk["kty"].as_str().unwrap() {
            "RSA" => "RS256",
            "OKP" => "EdDSA",
            _ => "ES256",
        };
        let tok = token_with(alg, &key, json!({"typ": "JWT"}), &id_claims());
        let c = id_validation()
            .verify(&tok, &jwks(&[&key]), Some("n-0S6_WzA2Mj"), NOW)
            .unwrap();
        assert_eq!(c.sub(), Some("alice"));
        assert_eq!(c.nonce(), Some("n-0S6_WzA2Mj"));
        assert_eq!(c.sid(), Some("s1"));
        assert_eq!(c.auth_time(), Some(NOW_I - 30));
    }
}

#[test]
fn id_token_nonce() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let tok = token("RS256", &r, &id_claims());
    assert_eq!(
        id_validation()
            .verify(&tok, &keys, Some("other"), NOW)
            .unwrap_err(),
        JwtError::NonceMismatch
    );
    assert_eq!(
        id_validation()
            .verify(&tok, &keys, Some("n-0S6_WzA2M"), NOW)
            .unwrap_err(),
        JwtError::NonceMismatch
    );
    let tok = token("RS256", &r, &without(id_claims(), "nonce"));
    assert_eq!(
        id_validation()
            .verify(&tok, &keys, Some("n-0S6_WzA2Mj"), NOW)
            .unwrap_err(),
        JwtError::MissingClaim("nonce")
    );
    // No nonce sent (refresh): none required.
    assert!(id_validation().verify(&tok, &keys, None, NOW).is_ok());
}

#[test]
fn id_token_audience_and_azp() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let v = |c: Value| id_validation().verify(&token("RS256", &r, &c), &keys, None, NOW);
    // Step 3: must contain the client; no untrusted extra audiences.
    assert_eq!(
        v(with(id_claims(), "aud", json!("other-client"))).unwrap_err(),
        JwtError::WrongAudience
    );
    assert_eq!(
        v(with(
            with(id_claims(), "aud", json!([CLIENT, "other"])),
            "azp",
            json!(CLIENT)
        ))
        .unwrap_err(),
        JwtError::WrongAudience
    );
    // Trusted extra audience via the base validation.
    let trusted = IdTokenValidation::new(Validation::new(ISS).audience("other"), CLIENT);
    let c = with(
        with(id_claims(), "aud", json!([CLIENT, "other"])),
        "azp",
        json!(CLIENT),
    );
    assert!(trusted
        .verify(&token("RS256", &r, &c), &keys, None, NOW)
        .is_ok());
    // Step 4: several audiences need azp.
    let c = with(id_claims(), "aud", json!([CLIENT, "other"]));
    assert_eq!(
        trusted
            .verify(&token("RS256", &r, &c), &keys, None, NOW)
            .unwrap_err(),
        JwtError::MissingClaim("azp")
    );
    // Step 5: azp must be us.
    assert_eq!(
        v(with(id_claims(), "azp", json!("other-client"))).unwrap_err(),
        JwtError::AzpMismatch
    );
    assert!(v(with(id_claims(), "azp", json!(CLIENT))).is_ok());
    // A token whose only audience is a trusted extra one, not the client, is refused.
    let c = with(id_claims(), "aud", json!("other"));
    assert_eq!(
        trusted
            .verify(&token("RS256", &r, &c), &keys, None, NOW)
            .unwrap_err(),
        JwtError::WrongAudience
    );
}

#[test]
fn id_token_requires_sub_and_iat() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let tok = token("RS256", &r, &without(id_claims(), "sub"));
    assert_eq!(
        id_validation().verify(&tok, &keys, None, NOW).unwrap_err(),
        JwtError::MissingClaim("sub")
    );
    let tok = token("RS256", &r, &without(id_claims(), "iat"));
    assert_eq!(
        id_validation().verify(&tok, &keys, None, NOW).unwrap_err(),
        JwtError::MissingClaim("iat")
    );
}

#[test]
fn id_token_auth_time_and_max_age() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let tok = token("RS256", &r, &id_claims());
    assert!(id_validation()
        .max_auth_age(60)
        .verify(&tok, &keys, None, NOW)
        .is_ok());
    let tok = token(
        "RS256",
        &r,
        &with(id_claims(), "auth_time", json!(NOW - 200)),
    );
    assert_eq!(
        id_validation()
            .max_auth_age(60)
            .verify(&tok, &keys, None, NOW)
            .unwrap_err(),
        JwtError::AuthTooOld
    );
    let tok = token("RS256", &r, &without(id_claims(), "auth_time"));
    assert_eq!(
        id_validation()
            .max_auth_age(60)
            .verify(&tok, &keys, None, NOW)
            .unwrap_err(),
        JwtError::MissingClaim("auth_time")
    );
    let tok = token(
        "RS256",
        &r,
        &with(id_claims(), "auth_time", json!("yesterday")),
    );
    assert_eq!(
        id_validation().verify(&tok, &keys, None, NOW).unwrap_err(),
        JwtError::InvalidClaim("auth_time")
    );
}

#[test]
fn access_token_presented_as_id_token_is_refused() {
    let r = rsa();
    let keys = jwks(&[&r]);
    for typ in ["at+jwt", "application/at+jwt", "dpop+jwt", "logout+jwt"] {
        let tok = token_with("RS256", &r, json!({"typ": typ}), &id_claims());
        assert_eq!(
            id_validation().verify(&tok, &keys, None, NOW).unwrap_err(),
            JwtError::WrongType,
            "{typ}"
        );
    }
    // And the ID token checks also run the generic ones: expired, wrong issuer.
    let tok = token("RS256", &r, &with(id_claims(), "exp", json!(NOW - 100)));
    assert_eq!(
        id_validation().verify(&tok, &keys, None, NOW).unwrap_err(),
        JwtError::Expired
    );
    let tok = token(
        "RS256",
        &r,
        &with(id_claims(), "iss", json!("https://evil")),
    );
    assert_eq!(
        id_validation().verify(&tok, &keys, None, NOW).unwrap_err(),
        JwtError::WrongIssuer
    );
}

// ---------------------------------------------------------------------------------------------
// Access tokens (RFC 9068)

fn at_claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "client_id": "cli", "exp": NOW + 300,
           "iat": NOW - 5, "jti": "at-1", "scope": "read"})
}

#[test]
fn access_token_typ_rules() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let plain = AccessTokenValidation::new(base());
    let strict = AccessTokenValidation::new(base()).require_at_jwt(true);
    let tok = token_with("RS256", &r, json!({"typ": "at+jwt"}), &at_claims());
    assert!(plain.verify(&tok, &keys, NOW).is_ok());
    assert!(strict.verify(&tok, &keys, NOW).is_ok());
    let tok = token_with(
        "RS256",
        &r,
        json!({"typ": "application/at+jwt"}),
        &at_claims(),
    );
    assert!(strict.verify(&tok, &keys, NOW).is_ok());
    for h in [json!({"typ": "JWT"}), json!({})] {
        let tok = token_with("RS256", &r, h.clone(), &at_claims());
        assert!(plain.verify(&tok, &keys, NOW).is_ok(), "{h}");
        assert_eq!(
            strict.verify(&tok, &keys, NOW).unwrap_err(),
            JwtError::WrongType,
            "{h}"
        );
    }
    for typ in ["logout+jwt", "dpop+jwt", "secevent+jwt", "id_token+jwt"] {
        let tok = token_with("RS256", &r, json!({"typ": typ}), &at_claims());
        assert_eq!(
            plain.verify(&tok, &keys, NOW).unwrap_err(),
            JwtError::WrongType,
            "{typ}"
        );
    }
}

#[test]
fn id_token_presented_as_access_token_is_refused() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let v = AccessTokenValidation::new(base());
    // Its audience is the OIDC client, not a bearer audience.
    let tok = token_with("RS256", &r, json!({"typ": "JWT"}), &id_claims());
    assert_eq!(
        v.verify(&tok, &keys, NOW).unwrap_err(),
        JwtError::WrongAudience
    );
    // Even when the operator made the client ID a bearer audience, the ID-token-only claims
    // give it away.
    let v = AccessTokenValidation::new(base().audience(CLIENT));
    assert_eq!(
        v.verify(&tok, &keys, NOW).unwrap_err(),
        JwtError::UnexpectedClaim("nonce")
    );
    for name in ["at_hash", "c_hash", "s_hash"] {
        let c = with(without(id_claims(), "nonce"), name, json!("x"));
        let tok = token("RS256", &r, &c);
        assert_eq!(
            v.verify(&tok, &keys, NOW).unwrap_err(),
            JwtError::UnexpectedClaim(name)
        );
    }
    // With at+jwt required, the typ alone refuses it.
    let v = v.require_at_jwt(true);
    assert_eq!(v.verify(&tok, &keys, NOW).unwrap_err(), JwtError::WrongType);
}

/// An ID token from a refresh carries no `nonce` (OIDC Core 12.2) and often no `at_hash`; with
/// the client ID as a bearer audience (the default when browser login is on), only the claims an
/// access token has and an ID token has not tell the two apart (RFC 8725 §3.11).
#[test]
fn an_id_token_without_nonce_is_refused_for_the_login_client() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let refreshed = with(
        with(without(id_claims(), "nonce"), "sid", json!("s-1")),
        "auth_time",
        json!(NOW - 100),
    );
    let v = AccessTokenValidation::new(base().audience(CLIENT)).login_client(Some(CLIENT));
    for h in [json!({"typ": "JWT"}), json!({})] {
        let tok = token_with("RS256", &r, h.clone(), &refreshed);
        assert_eq!(
            v.verify(&tok, &keys, NOW).unwrap_err(),
            JwtError::IdTokenAsAccessToken,
            "{h}"
        );
    }
    // Without the login client, the same token passes (the rule has nothing to compare with):
    // that is what the rule closes.
    let open = AccessTokenValidation::new(base().audience(CLIENT));
    let tok = token_with("RS256", &r, json!({"typ": "JWT"}), &refreshed);
    assert!(open.verify(&tok, &keys, NOW).is_ok());
    // An access token for the client ID is one when it says so: typed at+jwt, or with an access
    // token's claim.
    let tok = token_with("RS256", &r, json!({"typ": "at+jwt"}), &refreshed);
    assert!(v.verify(&tok, &keys, NOW).is_ok());
    for (name, value) in [
        ("client_id", json!("cli")),
        ("scope", json!("read")),
        ("scp", json!(["read"])),
    ] {
        let tok = token_with(
            "RS256",
            &r,
            json!({"typ": "JWT"}),
            &with(refreshed.clone(), name, value),
        );
        assert!(v.verify(&tok, &keys, NOW).is_ok(), "{name}");
    }
    // A token for another audience is not concerned.
    let v = AccessTokenValidation::new(base()).login_client(Some(CLIENT));
    let other = without(without(at_claims(), "client_id"), "scope");
    assert!(v.verify(&token("RS256", &r, &other), &keys, NOW).is_ok());
}

#[test]
fn access_token_exposes_cnf_jkt() {
    let r = rsa();
    let c = with(at_claims(), "cnf", json!({"jkt": "abc"}));
    let claims = AccessTokenValidation::new(base())
        .verify(&token("RS256", &r, &c), &jwks(&[&r]), NOW)
        .unwrap();
    assert_eq!(claims.cnf_jkt(), Some("abc"));
    assert!(claims.has_cnf());
    assert_eq!(claims.str_claim("scope"), Some("read"));
    let claims = AccessTokenValidation::new(base())
        .verify(&token("RS256", &r, &at_claims()), &jwks(&[&r]), NOW)
        .unwrap();
    assert_eq!(claims.cnf_jkt(), None);
    assert!(!claims.has_cnf());
}

// ---------------------------------------------------------------------------------------------
// Logout tokens (Back-Channel Logout 1.0 §2.6)

fn logout_claims() -> Value {
    json!({"iss": ISS, "aud": CLIENT, "sub": "alice", "sid": "s1", "iat": NOW - 2,
           "exp": NOW + 118, "jti": "lo-1",
           "events": {BACKCHANNEL_LOGOUT_EVENT: {}}})
}

fn logout_validation() -> LogoutTokenValidation {
    LogoutTokenValidation::new(Validation::new(ISS).audience(CLIENT))
}

#[test]
fn logout_token_happy_path() {
    let r = rsa();
    let keys = jwks(&[&r]);
    for h in [
        json!({"typ": "logout+jwt"}),
        json!({"typ": "application/logout+jwt"}),
        json!({}),
        json!({"typ": "JWT"}),
    ] {
        let tok = token_with("RS256", &r, h.clone(), &logout_claims());
        let lt = logout_validation()
            .verify(&tok, &keys, NOW)
            .unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(lt.jti(), "lo-1");
        assert_eq!(lt.sid(), Some("s1"));
        assert_eq!(lt.sub(), Some("alice"));
        assert_eq!(lt.iss(), Some(ISS));
        assert!(lt.claims().events().is_some());
    }
    // sid alone, sub alone.
    for drop in ["sub", "sid"] {
        let tok = token("RS256", &r, &without(logout_claims(), drop));
        assert!(
            logout_validation().verify(&tok, &keys, NOW).is_ok(),
            "{drop}"
        );
    }
}

#[test]
fn logout_token_rules() {
    let r = rsa();
    let keys = jwks(&[&r]);
    let v = |c: Value| logout_validation().verify(&token("RS256", &r, &c), &keys, NOW);
    assert_eq!(
        v(without(logout_claims(), "jti")).unwrap_err(),
        JwtError::MissingClaim("jti")
    );
    assert_eq!(
        v(with(logout_claims(), "jti", json!(""))).unwrap_err(),
        JwtError::InvalidClaim("jti")
    );
    assert_eq!(
        v(without(logout_claims(), "iat")).unwrap_err(),
        JwtError::MissingClaim("iat")
    );
    assert_eq!(
        v(without(logout_claims(), "events")).unwrap_err(),
        JwtError::MissingClaim("events")
    );
    assert_eq!(
        v(with(
            logout_claims(),
            "events",
            json!([BACKCHANNEL_LOGOUT_EVENT])
        ))
        .unwrap_err(),
        JwtError::InvalidClaim("events")
    );
    assert_eq!(
        v(with(
            logout_claims(),
            "events",
            json!({BACKCHANNEL_LOGOUT_EVENT: true})
        ))
        .unwrap_err(),
        JwtError::InvalidClaim("events")
    );
    assert_eq!(
        v(with(
            logout_claims(),
            "events",
            json!({"http://other/event": {}})
        ))
        .unwrap_err(),
        JwtError::InvalidClaim("events")
    );
    assert_eq!(
        v(without(without(logout_claims(), "sub"), "sid")).unwrap_err(),
        JwtError::MissingClaim("sub or sid")
    );
    assert_eq!(
        v(with(logout_claims(), "nonce", json!("n"))).unwrap_err(),
        JwtError::UnexpectedClaim("nonce")
    );
    assert_eq!(
        v(with(logout_claims(), "aud", json!("other"))).unwrap_err(),
        JwtError::WrongAudience
    );
    // Validated like an ID token's (OIDC Core 3.1.3.7 step 3): no untrusted extra audience.
    assert_eq!(
        v(with(logout_claims(), "aud", json!([CLIENT, "evil"]))).unwrap_err(),
        JwtError::WrongAudience
    );
    assert!(v(with(logout_claims(), "aud", json!([CLIENT]))).is_ok());
    assert_eq!(
        v(with(logout_claims(), "iss", json!("https://evil"))).unwrap_err(),
        JwtError::WrongIssuer
    );
    assert_eq!(
        v(without(logout_claims(), "exp")).unwrap_err(),
        JwtError::MissingClaim("exp")
    );
    for typ in ["at+jwt", "dpop+jwt", "secevent+jwt"] {
        let tok = token_with("RS256", &r, json!({"typ": typ}), &logout_claims());
        assert_eq!(
            logout_validation().verify(&tok, &keys, NOW).unwrap_err(),
            JwtError::WrongType,
            "{typ}"
        );
    }
    // An ID token is not a logout token.
    let tok = token("RS256", &r, &id_claims());
    assert_eq!(
        logout_validation().verify(&tok, &keys, NOW).unwrap_err(),
        JwtError::MissingClaim("jti")
    );
}

// ---------------------------------------------------------------------------------------------
// DPoP proofs (RFC 9449 §4.3)

const HTU: &str = "https://api.example.com/orders";
const ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

fn dpop_claims() -> Value {
    let ath = b64(ring::digest::digest(&ring::digest::SHA256, ACCESS_TOKEN.as_bytes()).as_ref());
    json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": HTU, "iat": NOW, "ath": ath})
}

fn public_jwk(key: &TestKey) -> Value {
    let mut j = key.jwk.clone();
    j.as_object_mut().unwrap().remove("kid");
    j
}

fn dpop_proof(alg: &str, key: &TestKey, header: Value, claims: &Value) -> String {
    let mut h = json!({"typ": "dpop+jwt", "alg": alg, "jwk": public_jwk(key)});
    for (k, v) in header.as_object().unwrap() {
        h[k] = v.clone();
    }
    raw_token(&h.to_string(), &claims.to_string(), key, alg)
}

fn dpop_req<'a>(jkt: Option<&'a str>) -> DpopRequest<'a> {
    DpopRequest {
        method: "POST",
        uri: HTU,
        access_token: Some(ACCESS_TOKEN),
        expected_jkt: jkt,
        nonce: None,
    }
}

#[test]
fn dpop_happy_path_for_every_key_type() {
    let r = rsa();
    let e = TestKey::p256("x");
    let e384 = TestKey::p384("x");
    let p = TestKey::p521("x");
    let ed = TestKey::ed("x");
    for (alg, key) in [
        ("RS256", &r),
        ("PS256", &r),
        ("ES256", &e),
        ("ES384", &e384),
        ("ES512", &p),
        ("EdDSA", &ed),
    ] {
        let jkt = key.jwk().thumbprint();
        let proof = dpop_proof(alg, key, json!({}), &dpop_claims());
        let got = DpopValidation::new()
            .verify(&proof, &dpop_req(Some(&jkt)), NOW)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(got.jkt(), jkt);
        assert_eq!(got.jti(), "e1j3V_bKic8-LAEB");
        assert_eq!(got.iat(), NOW_I);
    }
    assert_eq!(DpopValidation::new().replay_ttl_secs(), 65);
}

#[test]
fn dpop_header_rules() {
    let e = TestKey::p256("x");
    let v = DpopValidation::new();
    let req = dpop_req(None);
    // typ
    for typ in [json!("JWT"), json!("at+jwt"), json!(null)] {
        let mut h = json!({"typ": typ, "alg": "ES256", "jwk": public_jwk(&e)});
        if typ.is_null() {
            h.as_object_mut().unwrap().remove("typ");
        }
        let proof = raw_token(&h.to_string(), &dpop_claims().to_string(), &e, "ES256");
        assert_eq!(
            v.verify(&proof, &req, NOW).unwrap_err(),
            JwtError::WrongType,
            "{typ}"
        );
    }
    let proof = dpop_proof(
        "ES256",
        &e,
        json!({"typ": "application/dpop+jwt"}),
        &dpop_claims(),
    );
    assert!(v.verify(&proof, &req, NOW).is_ok());
    // alg not allowed.
    let proof = dpop_proof("ES256", &e, json!({}), &dpop_claims());
    let only_rsa = DpopValidation::new().algorithms([Algorithm::RS256].into_iter().collect());
    assert_eq!(
        only_rsa.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::AlgorithmNotAllowed
    );
    // none.
    let h = json!({"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(&e)}).to_string();
    let proof = format!(
        "{}.{}.",
        b64(h.as_bytes()),
        b64(dpop_claims().to_string().as_bytes())
    );
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::AlgorithmNotAllowed
    );
    // Missing jwk.
    let h = json!({"typ": "dpop+jwt", "alg": "ES256"}).to_string();
    let proof = raw_token(&h, &dpop_claims().to_string(), &e, "ES256");
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::Dpop(DpopError::MissingJwk)
    );
    // jwk with a private member, and a symmetric jwk.
    let mut private = public_jwk(&e);
    private["d"] = json!(b64(&[9; 32]));
    let proof = dpop_proof("ES256", &e, json!({"jwk": private}), &dpop_claims());
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::Dpop(DpopError::PrivateKeyInJwk)
    );
    let proof = dpop_proof(
        "ES256",
        &e,
        json!({"jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
        &dpop_claims(),
    );
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::Dpop(DpopError::PrivateKeyInJwk)
    );
    // jwk not an object / not a usable key.
    let proof = dpop_proof("ES256", &e, json!({"jwk": "key"}), &dpop_claims());
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::Malformed
    );
    let proof = dpop_proof(
        "ES256",
        &e,
        json!({"jwk": {"kty": "EC", "crv": "P-256"}}),
        &dpop_claims(),
    );
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::Key(JwkError::Malformed)
    );
    // jwk of another family than alg.
    let ed = TestKey::ed("x");
    let proof = dpop_proof("ES256", &e, json!({"jwk": public_jwk(&ed)}), &dpop_claims());
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::NoSuitableKey
    );
    // Signed by another key than the jwk.
    let other = TestKey::p256("y");
    let proof = dpop_proof(
        "ES256",
        &other,
        json!({"jwk": public_jwk(&e)}),
        &dpop_claims(),
    );
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::BadSignature
    );
    // crit.
    let proof = dpop_proof("ES256", &e, json!({"crit": ["x"], "x": 1}), &dpop_claims());
    assert_eq!(
        v.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::CritUnsupported
    );
}

#[test]
fn dpop_claim_rules() {
    let e = TestKey::p256("x");
    let jkt = e.jwk().thumbprint();
    let v = DpopValidation::new();
    let check = |c: Value, req: DpopRequest<'_>| {
        v.verify(&dpop_proof("ES256", &e, json!({}), &c), &req, NOW)
    };
    let req = dpop_req(Some(&jkt));
    for name in ["jti", "htm", "htu", "iat"] {
        assert_eq!(
            check(without(dpop_claims(), name), req).unwrap_err(),
            JwtError::MissingClaim(name)
        );
    }
    assert_eq!(
        check(with(dpop_claims(), "jti", json!("")), req).unwrap_err(),
        JwtError::InvalidClaim("jti")
    );
    assert_eq!(
        check(with(dpop_claims(), "iat", json!(NOW.to_string())), req).unwrap_err(),
        JwtError::InvalidClaim("iat")
    );
    // htm
    assert_eq!(
        check(with(dpop_claims(), "htm", json!("GET")), req).unwrap_err(),
        JwtError::Dpop(DpopError::WrongMethod)
    );
    assert_eq!(
        check(with(dpop_claims(), "htm", json!("post")), req).unwrap_err(),
        JwtError::Dpop(DpopError::WrongMethod)
    );
    // htu
    for htu in [
        "https://api.example.com/orders/1",
        "https://evil.example.com/orders",
        "http://api.example.com/orders",
        "https://api.example.com:8443/orders",
        "orders",
        "https://user@api.example.com/orders",
    ] {
        assert_eq!(
            check(with(dpop_claims(), "htu", json!(htu)), req).unwrap_err(),
            JwtError::Dpop(DpopError::WrongUri),
            "{htu}"
        );
    }
    for htu in [
        "https://API.example.COM/orders",
        "HTTPS://api.example.com:443/orders",
        "https://api.example.com/orders?x=1",
        "https://api.example.com/orders#frag",
        "https://api.example.com/%6Frders",
    ] {
        assert!(
            check(with(dpop_claims(), "htu", json!(htu)), req).is_ok(),
            "{htu}"
        );
    }
    // The request URI's query is ignored too.
    let req_q = DpopRequest {
        uri: "https://api.example.com/orders?page=2",
        ..req
    };
    assert!(check(dpop_claims(), req_q).is_ok());
    // iat window: 60 s past, 5 s future.
    assert!(check(with(dpop_claims(), "iat", json!(NOW - 60)), req).is_ok());
    assert!(check(with(dpop_claims(), "iat", json!(NOW + 5)), req).is_ok());
    for iat in [NOW - 61, NOW + 6, 0] {
        assert_eq!(
            check(with(dpop_claims(), "iat", json!(iat)), req).unwrap_err(),
            JwtError::Dpop(DpopError::IatOutOfWindow),
            "{iat}"
        );
    }
    let narrow = DpopValidation::new().iat_window(10, 0);
    let proof = dpop_proof(
        "ES256",
        &e,
        json!({}),
        &with(dpop_claims(), "iat", json!(NOW - 11)),
    );
    assert_eq!(
        narrow.verify(&proof, &req, NOW).unwrap_err(),
        JwtError::Dpop(DpopError::IatOutOfWindow)
    );
    // ath
    assert_eq!(
        check(with(dpop_claims(), "ath", json!(b64(&[0; 32]))), req).unwrap_err(),
        JwtError::Dpop(DpopError::AthMismatch)
    );
    assert_eq!(
        check(without(dpop_claims(), "ath"), req).unwrap_err(),
        JwtError::MissingClaim("ath")
    );
    let no_token = DpopRequest {
        access_token: None,
        expected_jkt: None,
        ..req
    };
    assert!(check(without(dpop_claims(), "ath"), no_token).is_ok());
    // cnf.jkt binding
    let other = TestKey::p256("o").jwk().thumbprint();
    assert_eq!(
        check(dpop_claims(), dpop_req(Some(&other))).unwrap_err(),
        JwtError::Dpop(DpopError::KeyMismatch)
    );
    // The binding is checked before the signature: a proof whose key is not the bound one is
    // refused without a public-key operation (its signature is not even looked at).
    let proof = dpop_proof("ES256", &e, json!({}), &dpop_claims());
    let (signed, _) = proof.rsplit_once('.').unwrap();
    let garbage = format!("{signed}.{}", b64(&[7; 64]));
    assert_eq!(
        v.verify(&garbage, &dpop_req(Some(&other)), NOW)
            .unwrap_err(),
        JwtError::Dpop(DpopError::KeyMismatch)
    );
    assert_eq!(
        v.verify(&garbage, &dpop_req(Some(&jkt)), NOW).unwrap_err(),
        JwtError::BadSignature
    );
    // server nonce
    let with_nonce = DpopRequest {
        nonce: Some("srv-nonce"),
        ..req
    };
    assert_eq!(
        check(dpop_claims(), with_nonce).unwrap_err(),
        JwtError::MissingClaim("nonce")
    );
    assert_eq!(
        check(with(dpop_claims(), "nonce", json!("old")), with_nonce).unwrap_err(),
        JwtError::Dpop(DpopError::NonceMismatch)
    );
    assert!(check(with(dpop_claims(), "nonce", json!("srv-nonce")), with_nonce).is_ok());
}

#[test]
fn htu_normalisation() {
    let n = |s: &str| normalize_htu(s);
    assert_eq!(
        n("https://Example.COM/a/b").as_deref(),
        Some("https://example.com/a/b")
    );
    assert_eq!(
        n("HTTP://example.com:80/").as_deref(),
        Some("http://example.com/")
    );
    assert_eq!(
        n("http://example.com:443/").as_deref(),
        Some("http://example.com:443/")
    );
    assert_eq!(
        n("https://example.com:0443/x").as_deref(),
        Some("https://example.com/x")
    );
    assert_eq!(
        n("https://example.com:/x").as_deref(),
        Some("https://example.com/x")
    );
    assert_eq!(
        n("https://example.com").as_deref(),
        Some("https://example.com/")
    );
    assert_eq!(
        n("https://example.com?q#f").as_deref(),
        Some("https://example.com/")
    );
    assert_eq!(
        n("https://example.com/a%2fb%7E%41").as_deref(),
        Some("https://example.com/a%2Fb~A")
    );
    assert_eq!(
        n("https://[::1]:8443/x").as_deref(),
        Some("https://[::1]:8443/x")
    );
    assert_eq!(n("https://[::1]/x").as_deref(), Some("https://[::1]/x"));
    for bad in [
        "ftp://example.com/",
        "example.com/x",
        "https:///x",
        "https://u:p@example.com/",
        "https://example.com:99999/",
        "https://example.com:8a/",
        "https://example.com/%zz",
        "https://example.com/%4",
    ] {
        assert_eq!(n(bad), None, "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Jws and header accessors, messages

#[test]
fn header_accessors() {
    let e = TestKey::p256("k1");
    let tok = dpop_proof(
        "ES256",
        &e,
        json!({"kid": "k1", "cty": "json"}),
        &dpop_claims(),
    );
    let jws = Jws::parse(&tok).unwrap();
    let h = jws.header();
    assert_eq!(h.alg(), Algorithm::ES256);
    assert_eq!(h.kid(), Some("k1"));
    assert_eq!(h.typ(), Some("dpop+jwt"));
    assert_eq!(h.cty(), Some("json"));
    assert!(h.crit().is_empty());
    assert_eq!(h.jwk().unwrap().unwrap().thumbprint(), e.jwk().thumbprint());
    assert!(h.raw().contains_key("jwk"));
    assert_eq!(jws.signing_input(), tok.rsplit_once('.').unwrap().0);
    assert_eq!(jws.signature().len(), 64);
    assert!(Claims::parse(jws.payload()).is_ok());
    assert!(jws.verify_with(&e.jwk()).is_ok());
    let plain = token("ES256", &e, &claims());
    assert_eq!(Jws::parse(&plain).unwrap().header().jwk(), Ok(None));
}

#[test]
fn algorithm_names_round_trip() {
    for a in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(a.name()), Some(a));
        assert_eq!(a.to_string(), a.name());
    }
    for bad in ["none", "HS256", "rs256", ""] {
        assert_eq!(Algorithm::from_name(bad), None);
    }
    let set: AlgSet = [Algorithm::ES256, Algorithm::RS256].into_iter().collect();
    assert_eq!(
        set.iter().collect::<Vec<_>>(),
        vec![Algorithm::RS256, Algorithm::ES256]
    );
    assert_eq!(AlgSet::default(), AlgSet::all());
    assert!(AlgSet::empty().is_empty());
    assert_eq!(format!("{set:?}"), "{RS256, ES256}");
}

#[test]
fn messages_never_contain_token_contents() {
    let r = rsa();
    let secret_sub = "SENSITIVE-SUBJECT-1234";
    let c = with(
        with(claims(), "sub", json!(secret_sub)),
        "iss",
        json!("https://SENSITIVE-ISS"),
    );
    let tok = token("RS256", &r, &c);
    let e = verify_rsa(&tok).unwrap_err();
    assert_eq!(e, JwtError::WrongIssuer);
    let all = [
        e,
        JwtError::Malformed,
        JwtError::TooLarge,
        JwtError::AlgorithmNotAllowed,
        JwtError::CritUnsupported,
        JwtError::UnknownKid,
        JwtError::NoSuitableKey,
        JwtError::BadSignature,
        JwtError::Key(JwkError::PrivateKey),
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::IssuedInFuture,
        JwtError::TooOld,
        JwtError::AuthTooOld,
        JwtError::WrongAudience,
        JwtError::MissingClaim("exp"),
        JwtError::InvalidClaim("exp"),
        JwtError::UnexpectedClaim("nonce"),
        JwtError::WrongType,
        JwtError::NonceMismatch,
        JwtError::AzpMismatch,
        JwtError::Dpop(DpopError::WrongUri),
    ];
    for e in all {
        let m = e.to_string();
        assert!(!m.is_empty());
        assert!(!m.contains("SENSITIVE"), "{m}");
        assert!(!m.contains(&tok[..20]), "{m}");
    }
    // The top-level error wraps it.
    let top: crate::error::Error = JwtError::Expired.into();
    assert_eq!(top.to_string(), "token: expired: exp is in the past");
}

#[test]
fn constant_time_eq() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
    assert!(ct_eq(b"", b""));
}

#[test]
fn deeply_nested_json_is_refused_not_a_crash() {
    let r = rsa();
    let deep = format!("{{\"iss\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let tok = raw_token(r#"{"alg":"RS256","kid":"rsa-1"}"#, &deep, &r, "RS256");
    assert_eq!(verify_rsa(&tok).unwrap_err(), JwtError::Malformed);
}

// ---------------------------------------------------------------------------------------------
// Native benchmark: `cargo test --release --lib jwt::tests::bench_first_sight -- --ignored --nocapture`

#[test]
#[ignore = "benchmark; run explicitly"]
fn bench_first_sight() {
    let r = rsa();
    let e256 = TestKey::p256("ec-256");
    let e384 = TestKey::p384("ec-384");
    let e521 = TestKey::p521("ec-521");
    let ed = TestKey::ed("ed-1");
    let keys = jwks(&[&r, &e256, &e384, &e521, &ed]);
    let start = std::time::Instant::now();
    let mut timer = || u64::try_from(start.elapsed().as_nanos()).unwrap();
    let cases: [(&str, &TestKey, u32); 8] = [
        ("RS256", &r, 2000),
        ("PS256", &r, 2000),
        ("RS512", &r, 2000),
        ("ES256", &e256, 2000),
        ("ES384", &e384, 500),
        ("ES512", &e521, 200),
        ("EdDSA", &ed, 2000),
        ("parse-only refusal (bad sig)", &r, 2000),
    ];
    for (alg, key, n) in cases {
        let ns = if alg.starts_with("parse") {
            let tok = format!(
                "{}.",
                token("RS256", key, &claims()).rsplit_once('.').unwrap().0
            );
            let t0 = timer();
            for _ in 0..n {
                assert!(base().verify(&tok, &keys, NOW).is_err());
            }
            (timer() - t0) / u64::from(n)
        } else {
            bench::first_sight_ns(
                &token(alg, key, &claims()),
                &keys,
                &base(),
                NOW,
                n,
                &mut timer,
            )
            .unwrap()
        };
        println!(
            "first-sight {alg:>28}: {:>9} ns/op ({:.3} ms)",
            ns,
            ns as f64 / 1e6
        );
    }
}
