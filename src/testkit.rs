//! Test helpers shared by unit tests: signing keys, JWT minting, a scripted HTTP client, a fake
//! exchange.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::cell::RefCell;
use std::collections::VecDeque;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::http::{Exchange, LogLevel};
use crate::net::http::{Fetch, FetchError, HttpRequest, HttpResponse};

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An ES256 signing key with a kid.
pub struct EcKey {
    pair: EcdsaKeyPair,
    pub kid: String,
}

impl EcKey {
    pub fn generate(kid: &str) -> EcKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        EcKey {
            pair,
            kid: kid.to_string(),
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
               "x": b64(&p[1..33]), "y": b64(&p[33..65])})
    }

    /// A JWKS document with this key.
    pub fn jwks(&self) -> String {
        json!({"keys": [self.jwk()]}).to_string()
    }

    /// Signs `claims` with the given header members merged over `{"alg":"ES256","kid":..}`.
    pub fn sign(&self, header: Value, claims: &Value) -> String {
        let mut h = json!({"alg": "ES256", "kid": self.kid});
        if let (Some(hm), Some(extra)) = (h.as_object_mut(), header.as_object()) {
            for (k, v) in extra {
                hm.insert(k.clone(), v.clone());
            }
        }
        let input = format!(
            "{}.{}",
            b64(h.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// A scripted HTTP client: answers from a queue or a route table, records requests.
#[derive(Default)]
pub struct ScriptedFetch {
    pub routes: Vec<(String, u16, String)>,
    pub queue: VecDeque<Result<HttpResponse, FetchError>>,
    pub requests: Vec<HttpRequest>,
    pub down: bool,
}

impl ScriptedFetch {
    pub fn route(mut self, url: &str, status: u16, body: &str) -> Self {
        self.routes
            .push((url.to_string(), status, body.to_string()));
        self
    }

    pub fn count(&self, url: &str) -> usize {
        self.requests.iter().filter(|r| r.url == url).count()
    }
}

impl Fetch for ScriptedFetch {
    fn fetch(&mut self, req: &HttpRequest) -> Result<HttpResponse, FetchError> {
        self.requests.push(req.clone());
        if self.down {
            return Err(FetchError::Connect("down".into()));
        }
        if let Some(r) = self.queue.pop_front() {
            return r;
        }
        for (url, status, body) in &self.routes {
            if *url == req.url {
                return Ok(HttpResponse {
                    status: *status,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: body.clone().into_bytes(),
                });
            }
        }
        Ok(HttpResponse {
            status: 404,
            headers: vec![],
            body: vec![],
        })
    }
}

/// What the plugin sent instead of forwarding: status, headers, body.
pub type Sent = (u16, Vec<(String, String)>, Vec<u8>);

/// A request as a test builds it, and what the plugin did with it.
#[derive(Default)]
pub struct FakeExchange {
    pub method: String,
    pub uri: String,
    pub headers: RefCell<Vec<(String, String)>>,
    pub source: String,
    pub body: Vec<u8>,
    pub sent: RefCell<Option<Sent>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
}

impl FakeExchange {
    pub fn get(uri: &str) -> Self {
        FakeExchange {
            method: "GET".into(),
            uri: uri.into(),
            source: "192.0.2.10:5000".into(),
            ..Default::default()
        }
    }

    pub fn with(self, k: &str, v: &str) -> Self {
        self.headers
            .borrow_mut()
            .push((k.to_string(), v.to_string()));
        self
    }

    pub fn status(&self) -> Option<u16> {
        self.sent.borrow().as_ref().map(|s| s.0)
    }

    pub fn sent_header(&self, name: &str) -> Vec<String> {
        self.sent
            .borrow()
            .as_ref()
            .map(|s| {
                s.1.iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.header(name)
    }
}

impl Exchange for FakeExchange {
    fn method(&self) -> String {
        self.method.clone()
    }
    fn uri(&self) -> String {
        self.uri.clone()
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn header_names(&self, visit: &mut dyn FnMut(&str)) {
        for (k, _) in self.headers.borrow().iter() {
            visit(k);
        }
    }
    fn source_addr(&self) -> String {
        self.source.clone()
    }
    fn read_body(&self, limit: usize) -> Option<Vec<u8>> {
        (self.body.len() <= limit).then(|| self.body.clone())
    }
    fn set_header(&self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
    }
    fn remove_header(&self, name: &str) {
        self.headers
            .borrow_mut()
            .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    fn add_response_header(&self, name: &str, value: &str) {
        self.response_headers
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
    }
    fn send(&self, status: u16, headers: &[(String, String)], body: &[u8]) {
        *self.sent.borrow_mut() = Some((status, headers.to_vec(), body.to_vec()));
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}
