//! Token minting for the bearer, replay and back-channel tests: our own signing keys for every
//! algorithm the plugin verifies, served to it as a static inline JWKS; DPoP proofs; the attack
//! tokens of issue 6. Included by each test file with `mod bearer_support;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use serde_json::{json, Value};

pub const ISS: &str = "https://idp.example.com";
pub const AUD: &str = "api";
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

const RSA_PKCS8: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/jwt/rsa2048.pk8.der"
));

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A process-unique string (token ids, proof ids, Redis key prefixes).
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{t}-{n}", std::process::id())
}

enum Signer {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
    P521(Box<p521::ecdsa::SigningKey>),
}

/// A CSPRNG for p521 signing, backed by ring.
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

/// A signing key with its public JWK.
pub struct Key {
    signer: Signer,
    /// The JWS `alg` this key signs with.
    pub alg: &'static str,
    /// The public JWK (with `kid`).
    pub jwk: Value,
}

impl Key {
    /// The committed 2048-bit RSA fixture; `alg` RS256/384/512 or PS256/384/512.
    pub fn rsa(kid: &str, alg: &'static str) -> Key {
        let kp = sig::RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap();
        let c: sig::RsaPublicKeyComponents<Vec<u8>> = kp.public().into();
        let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)});
        Key {
            signer: Signer::Rsa(kp),
            alg,
            jwk,
        }
    }

    fn ec(a: &'static sig::EcdsaSigningAlgorithm, crv: &str, alg: &'static str, kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(a, &rng).unwrap();
        let kp = sig::EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref(), &rng).unwrap();
        let p = kp.public_key().as_ref().to_vec();
        let n = (p.len() - 1) / 2;
        let jwk = json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(&p[1..1 + n]), "y": b64(&p[1 + n..])});
        Key {
            signer: Signer::Ec(kp),
            alg,
            jwk,
        }
    }

    pub fn es256(kid: &str) -> Key {
        Self::ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "ES256", kid)
    }

    pub fn es384(kid: &str) -> Key {
        Self::ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", "ES384", kid)
    }

    pub fn es512(kid: &str) -> Key {
        // A random scalar below the group order: 66 random bytes with the top 7 bits cleared are
        // below 2^521, and from_slice refuses the (vanishingly rare) values ≥ n or zero.
        let rng = SystemRandom::new();
        let sk = loop {
            let mut b = [0u8; 66];
            ring::rand::SecureRandom::fill(&rng, &mut b).unwrap();
            b[0] &= 0x01;
            if let Ok(k) = p521::ecdsa::SigningKey::from_slice(&b) {
                break k;
            }
        };
        let pt = p521::ecdsa::VerifyingKey::from(&sk).to_encoded_point(false);
        let jwk = json!({"kty": "EC", "crv": "P-521", "kid": kid,
                         "x": b64(pt.x().unwrap()), "y": b64(pt.y().unwrap())});
        Key {
            signer: Signer::P521(Box::new(sk)),
            alg: "ES512",
            jwk,
        }
    }

    pub fn ed25519(kid: &str) -> Key {
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk =
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(kp.public_key().as_ref())});
        Key {
            signer: Signer::Ed(kp),
            alg: "EdDSA",
            jwk,
        }
    }

    pub fn kid(&self) -> &str {
        self.jwk["kid"].as_str().unwrap()
    }

    /// The public JWK without `kid` (for a DPoP proof header).
    pub fn public_jwk(&self) -> Value {
        let mut j = self.jwk.clone();
        j.as_object_mut().unwrap().remove("kid");
        j
    }

    /// The RFC 7638 thumbprint (computed by the plugin's own code, itself tested against the
    /// RFC's vector).
    pub fn thumbprint(&self) -> String {
        oidc_guard::jwt::Jwk::from_map(self.jwk.as_object().unwrap())
            .unwrap()
            .thumbprint()
    }

    fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(kp) => {
                let pad: &'static dyn sig::RsaEncoding = match self.alg {
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    "PS512" => &sig::RSA_PSS_SHA512,
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
                let s: p521::ecdsa::Signature = sk.sign_with_rng(&mut RingRng(rng), msg);
                s.to_bytes().to_vec()
            }
        }
    }

    /// A compact JWS over exactly these header and payload bytes.
    pub fn sign_raw(&self, header: &Value, payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
        let s = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64(&s))
    }

    /// A JWT with header `{alg, kid}` plus `extra` members.
    pub fn sign(&self, extra: Value, claims: &Value) -> String {
        let mut h = json!({"alg": self.alg, "kid": self.kid()});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        self.sign_raw(&h, claims.to_string().as_bytes())
    }

    /// An RFC 9068 access token.
    pub fn access_token(&self, claims: &Value) -> String {
        self.sign(json!({"typ": "at+jwt"}), claims)
    }
}

/// A JWKS of these keys, as the middleware's inline `jwks`.
pub fn jwks(keys: &[&Key]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// Access token claims for `sub`, valid for `ttl` seconds, with a fresh `jti`.
pub fn claims(sub: &str, ttl: i64) -> Value {
    let n = now();
    json!({"iss": ISS, "aud": AUD, "sub": sub, "email": format!("{sub}@example.com"),
           "iat": n - 5, "exp": n + ttl, "jti": unique("at")})
}

/// A DPoP proof by `key` for a request, bound to `token` by `ath`.
pub fn dpop_proof(key: &Key, htm: &str, htu: &str, token: &str) -> String {
    dpop_proof_at(key, htm, htu, token, now(), &unique("proof"))
}

pub fn dpop_proof_at(key: &Key, htm: &str, htu: &str, token: &str, iat: i64, jti: &str) -> String {
    let ath = b64(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    key.sign_raw(
        &json!({"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_jwk()}),
        json!({"htm": htm, "htu": htu, "iat": iat, "jti": jti, "ath": ath})
            .to_string()
            .as_bytes(),
    )
}

/// Claims of a token bound to `dpop_key` (RFC 9449 §6.1).
pub fn bound_claims(sub: &str, dpop_key: &Key) -> Value {
    let mut c = claims(sub, 300);
    c["cnf"] = json!({"jkt": dpop_key.thumbprint()});
    c
}

/// The attack tokens of issue 6 (plus a few more), each of which must be refused with 401.
/// `key` is in the middleware's JWKS, `rsa` too (kid `rsa-1`).
pub fn attack_tokens(key: &Key, rsa: &Key) -> Vec<(&'static str, String)> {
    let c = claims("mallory", 300);
    let with = |k: &str, v: Value| {
        let mut c = c.clone();
        c[k] = v;
        c
    };
    let good = key.access_token(&c);
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p) = (parts[0], parts[1]);
    // HS256 keyed with the RSA public key as the verifier would hold it (the key confusion of
    // RFC 8725 §2.1): the JWK's `n` and the DER public key.
    let rsa_pub_der = match &rsa.signer {
        Signer::Rsa(kp) => kp.public().as_ref().to_vec(),
        _ => panic!("rsa key expected"),
    };
    let hs = |secret: &[u8]| {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "HS256", "kid": rsa.kid(), "typ": "at+jwt"})
                .to_string()
                .as_bytes()),
            b64(c.to_string().as_bytes())
        );
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            input.as_bytes(),
        );
        format!("{input}.{}", b64(mac.as_ref()))
    };
    let none_header = b64(json!({"alg": "none", "typ": "at+jwt"})
        .to_string()
        .as_bytes());
    let mut tampered = parts[2].as_bytes().to_vec();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    vec![
        ("alg none", format!("{none_header}.{p}.")),
        (
            "alg none with a signature",
            format!("{none_header}.{p}.{}", parts[2]),
        ),
        (
            "HS256 keyed with the RSA public key (DER)",
            hs(&rsa_pub_der),
        ),
        (
            "HS256 keyed with the RSA JWK",
            hs(rsa.jwk.to_string().as_bytes()),
        ),
        ("unknown kid", Key::es256("nobody").access_token(&c)),
        (
            "crit header",
            key.sign(json!({"typ": "at+jwt", "crit": ["exp"]}), &c),
        ),
        (
            "expired",
            key.access_token(&with("exp", json!(now() - 120))),
        ),
        (
            "not yet valid",
            key.access_token(&with("nbf", json!(now() + 600))),
        ),
        (
            "issued in the future",
            key.access_token(&with("iat", json!(now() + 600))),
        ),
        (
            "wrong iss",
            key.access_token(&with("iss", json!("https://evil.example.com"))),
        ),
        (
            "wrong aud",
            key.access_token(&with("aud", json!("another-api"))),
        ),
        ("stripped signature", format!("{h}.{p}.")),
        ("stripped signature, two parts", format!("{h}.{p}")),
        (
            "tampered signature",
            format!("{h}.{p}.{}", String::from_utf8(tampered).unwrap()),
        ),
        (
            "tampered payload",
            format!(
                "{h}.{}.{}",
                b64(with("sub", json!("admin")).to_string().as_bytes()),
                parts[2]
            ),
        ),
        (
            "100 KB token",
            format!("{h}.{}.{}", "A".repeat(100 * 1024), parts[2]),
        ),
        (
            "non-JSON payload, validly signed",
            rsa.sign_raw(
                &json!({"alg": rsa.alg, "kid": rsa.kid()}),
                b"this is not json",
            ),
        ),
        (
            "JSON array payload, validly signed",
            rsa.sign_raw(&json!({"alg": rsa.alg, "kid": rsa.kid()}), b"[1,2,3]"),
        ),
        (
            "duplicate claims, validly signed",
            rsa.sign_raw(
                &json!({"alg": rsa.alg, "kid": rsa.kid()}),
                format!(
                    r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"mallory","sub":"admin","exp":{}}}"#,
                    now() + 300
                )
                .as_bytes(),
            ),
        ),
        (
            "ID token (nonce) as access token",
            key.sign(json!({}), &with("nonce", json!("n-0S6_WzA2Mj"))),
        ),
        ("JWE-shaped (five parts)", format!("{h}.{p}.AAAA.BBBB.CCCC")),
        ("not base64url", "Zm9v.YmFy.Y*Jh".to_string()),
    ]
}
