//! Signing keys and JWT minting for tests and benchmarks (the plugin only ever verifies).

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};

/// base64url without padding.
pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// A signing key with its public JWK.
pub struct SigningKey {
    pair: Pair,
    /// Key id.
    pub kid: String,
}

impl SigningKey {
    /// A fresh P-256 key (ES256).
    pub fn es256(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        SigningKey {
            pair: Pair::Es256(pair),
            kid: kid.into(),
        }
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn eddsa(kid: &str) -> SigningKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        SigningKey {
            pair: Pair::EdDsa(pair),
            kid: kid.into(),
        }
    }

    /// The RSA-2048 fixture key (RS256), `tests/fixtures/jwt/rsa2048.pk8.der`.
    pub fn rs256(kid: &str) -> SigningKey {
        let der =
            std::fs::read(crate::util::workspace_root().join("tests/fixtures/jwt/rsa2048.pk8.der"))
                .unwrap();
        let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
        SigningKey {
            pair: Pair::Rs256(pair),
            kid: kid.into(),
        }
    }

    /// The JWS `alg`.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Es256(_) => "ES256",
            Pair::EdDsa(_) => "EdDSA",
            Pair::Rs256(_) => "RS256",
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Es256(p) => {
                let pk = p.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
                       "x": b64(&pk[1..33]), "y": b64(&pk[33..65])})
            }
            Pair::EdDsa(p) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA", "use": "sig",
                                     "x": b64(p.public_key().as_ref())})
            }
            Pair::Rs256(p) => {
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(p.public());
                json!({"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
        }
    }

    /// A JWKS with this key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk()]})
    }

    /// Signs `claims`; `header` members override the default `{"alg","kid","typ":"JWT"}`.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let mut h = json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"});
        if let (Some(hm), Some(extra)) = (h.as_object_mut(), header.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    hm.remove(k);
                } else {
                    hm.insert(k.clone(), v.clone());
                }
            }
        }
        let input = format!(
            "{}.{}",
            b64(h.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Es256(p) => p.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Pair::EdDsa(p) => p.sign(input.as_bytes()).as_ref().to_vec(),
            Pair::Rs256(p) => {
                let mut sig = vec![0u8; p.public().modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
        };
        format!("{input}.{}", b64(&sig))
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
