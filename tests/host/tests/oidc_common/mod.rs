//! Helpers shared by the browser-login tests (`oidc_wasm.rs`, `oidc_traefik.rs`): an HTTP front
//! that serves a wasmtime-hosted middleware on a real port (so the scripted browser logs in
//! through it exactly as through Traefik), a tiny scripted provider that serves ID tokens minted
//! by the test with its own keys, and small HTTP helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use oidc_guard_testhost::wasm::{Middleware, Request};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// The session keys the tests use.
pub const KEY1: &str = "oidc-guard-test-session-key-one-0123456789";
pub const KEY2: &str = "oidc-guard-test-session-key-two-0123456789";

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The claims of a JWT (no verification).
pub fn jwt_claims(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// A plain HTTP client that follows no redirect and keeps no cookies.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

/// One response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `X-Forwarded-User` the echo backend saw.
    pub fn user(&self) -> Option<String> {
        oidc_guard_testhost::util::echoed_headers(&self.body)
            .into_iter()
            .find(|(k, _)| k == "x-forwarded-user")
            .map(|(_, v)| v)
    }
}

/// GET with extra headers (e.g. a `Cookie`), no redirects followed.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// `Cookie` header value of every cookie of the browser's jar named with `prefix`.
pub fn cookie_header(b: &oidc_guard_testhost::browser::Browser, prefix: &str) -> String {
    b.jar().header_with_prefix(prefix)
}

/// Median of durations in µs.
pub fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2)
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// A real port in front of a wasmtime-hosted middleware

/// Serves `Middleware` on 127.0.0.1: each request goes through the guest; a forwarded request
/// gets the host's JSON echo as the upstream's answer. Adds `X-Forwarded-Proto: http` as
/// Traefik does for a plain-http entry point.
pub struct Front {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Front {
    /// Binds a port first (the provider must know the redirect URI before the middleware exists).
    pub fn bind() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    pub fn serve(listener: TcpListener, mw: Middleware) -> Front {
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let mw = mw.clone();
                    std::thread::spawn(move || serve_one(c, &mw));
                }
            }
        });
        Front { port, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One HTTP/1.1 request: method, target, headers, body.
type RawRequest = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one HTTP/1.1 request.
fn read_request(rd: &mut BufReader<TcpStream>) -> Option<RawRequest> {
    let mut line = String::new();
    rd.read_line(&mut line).ok()?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        rd.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().ok()?;
        }
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut body = vec![0; len];
    rd.read_exact(&mut body).ok()?;
    Some((method, target, headers, body))
}

fn serve_one(conn: TcpStream, mw: &Middleware) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let peer = conn
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1:1".into());
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut rd = BufReader::new(conn);
    let Some((method, target, headers, body)) = read_request(&mut rd) else {
        return;
    };
    let mut req = Request::new(&method, &target).source(&peer).body(body);
    for (k, v) in &headers {
        if !k.eq_ignore_ascii_case("x-forwarded-proto") {
            req = req.header(k, v);
        }
    }
    req = req.header("X-Forwarded-Proto", "http");
    let ex = mw.send(req);
    let mut head = format!("HTTP/1.1 {} X\r\n", ex.status);
    for (k, v) in &ex.headers {
        if ["content-length", "connection", "transfer-encoding"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        ex.body.len()
    ));
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&ex.body);
}

// ---------------------------------------------------------------------------------------------
// A scripted provider with the test's own keys

/// An ES256 key of the test.
pub struct TestKey {
    pair: EcdsaKeyPair,
    pub kid: String,
}

impl TestKey {
    pub fn generate(kid: &str) -> TestKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        TestKey {
            pair,
            kid: kid.into(),
        }
    }

    pub fn jwks(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                          "x": b64(&p[1..33]), "y": b64(&p[33..65])}]})
    }

    pub fn sign(&self, claims: &Value) -> String {
        let h = b64(json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"})
            .to_string()
            .as_bytes());
        let c = b64(claims.to_string().as_bytes());
        let sig = self
            .pair
            .sign(
                &ring::rand::SystemRandom::new(),
                format!("{h}.{c}").as_bytes(),
            )
            .unwrap();
        format!("{h}.{c}.{}", b64(sig.as_ref()))
    }
}

/// `alg: none` and HS256 (a public value as the HMAC key) forgeries of `claims`.
pub fn forged(claims: &Value, alg: &str) -> String {
    let h = b64(json!({"alg": alg, "kid": "k1"}).to_string().as_bytes());
    let c = b64(claims.to_string().as_bytes());
    if alg == "none" {
        return format!("{h}.{c}.");
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"the-public-jwk-as-an-hmac-key");
    format!(
        "{h}.{c}.{}",
        b64(ring::hmac::sign(&key, format!("{h}.{c}").as_bytes()).as_ref())
    )
}

/// A provider on a real port: discovery, JWKS, and a token endpoint that answers from a queue.
pub struct ScriptedIdp {
    pub port: u16,
    pub key: TestKey,
    answers: Arc<Mutex<VecDeque<String>>>,
    pub token_requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl ScriptedIdp {
    pub fn start() -> ScriptedIdp {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let key = TestKey::generate("test-key-1");
        let issuer = format!("http://127.0.0.1:{port}");
        let disco = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
        })
        .to_string();
        let jwks = key.jwks().to_string();
        let answers: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let token_requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (a, t, s) = (answers.clone(), token_requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = conn else { continue };
                let Ok(mut out) = c.try_clone() else { continue };
                let mut rd = BufReader::new(c);
                let Some((_, target, _, body)) = read_request(&mut rd) else {
                    continue;
                };
                let (status, body) = match target.as_str() {
                    "/.well-known/openid-configuration" => (200, disco.clone()),
                    "/jwks" => (200, jwks.clone()),
                    "/token" => {
                        t.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&body).into_owned());
                        match a.lock().unwrap().pop_front() {
                            Some(b) => (200, b),
                            None => (400, json!({"error": "invalid_grant"}).to_string()),
                        }
                    }
                    _ => (404, String::new()),
                };
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ScriptedIdp {
            port,
            key,
            answers,
            token_requests,
            stop,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues a token response carrying `id_token`.
    pub fn answer_with(&self, id_token: &str) {
        let body = json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token, "expires_in": 300});
        self.answers.lock().unwrap().push_back(body.to_string());
    }
}

impl Drop for ScriptedIdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The query parameter `key` of `url`.
pub fn param(url: &str, key: &str) -> Option<String> {
    oidc_guard_testhost::browser::query_param(url, key)
}
