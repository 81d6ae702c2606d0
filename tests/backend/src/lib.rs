//! A small HTTP/1.1 upstream for tests, the demo and benchmarks: it answers every request with a
//! JSON echo of what it received (method, target, headers), with keep-alive. Browsers (Accept:
//! text/html) get the same information as a small HTML page, for the demo.
#![allow(missing_docs)]
// Test support: a failed set-up or assertion is meant to panic the test.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// A running echo backend; stops accepting when dropped.
pub struct Backend {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
}

impl Backend {
    /// Starts the backend on a free 127.0.0.1 port.
    pub fn start() -> Backend {
        Self::start_on("127.0.0.1:0")
    }

    /// Starts the backend on `addr`.
    pub fn start_on(addr: &str) -> Backend {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let (s, h) = (stop.clone(), hits.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let h = h.clone();
                    thread::spawn(move || serve(c, &h));
                }
            }
        });
        Backend { port, stop, hits }
    }

    /// How many requests it has answered.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves one keep-alive connection.
pub fn serve(conn: TcpStream, hits: &AtomicU64) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut rd = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match rd.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            match rd.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_string(), v.trim().to_string());
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0u8; content_length.min(1 << 20)];
        if rd.read_exact(&mut body).is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let html = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("accept") && v.contains("text/html"));
        let (ctype, payload) = if html {
            (
                "text/html; charset=utf-8",
                html_page(&method, &target, &headers),
            )
        } else {
            (
                "application/json",
                json_doc(&method, &target, &headers, &String::from_utf8_lossy(&body)),
            )
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{}",
            payload.len(),
            payload
        );
        if out.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// JSON string escaping.
fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The echo document: `{"method":..,"uri":..,"headers":[[name,value],..],"body":..}`.
pub fn json_doc(method: &str, target: &str, headers: &[(String, String)], body: &str) -> String {
    let hs: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("[{},{}]", js(k), js(v)))
        .collect();
    format!(
        "{{\"method\":{},\"uri\":{},\"headers\":[{}],\"body\":{}}}",
        js(method),
        js(target),
        hs.join(","),
        js(body)
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_page(method: &str, target: &str, headers: &[(String, String)]) -> String {
    let user = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-user"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("(none)");
    let rows: String = headers
        .iter()
        .map(|(k, v)| format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v)))
        .collect();
    format!(
        "<!doctype html><meta charset=utf-8><title>demo backend</title>\
         <h1>Hello, {}</h1><p>The backend received <code>{} {}</code> with these headers:</p>\
         <table border=1 cellpadding=4>{}</table><p><a href=\"/oauth2/logout\">Log out</a></p>",
        esc(user),
        esc(method),
        esc(target),
        rows
    )
}
