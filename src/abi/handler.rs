//! [`Exchange`] over the http-wasm host, through the `http-wasm-guest` crate (which holds the
//! `http_handler` extern block).

use http_wasm_guest::host::{log, Request, Response};

use crate::http::{Exchange, LogLevel};

/// The current request and response as the http-wasm host exposes them.
pub struct WasmExchange<'a> {
    req: &'a Request,
    resp: &'a Response,
}

impl<'a> WasmExchange<'a> {
    /// Wraps the host's request and response.
    pub fn new(req: &'a Request, resp: &'a Response) -> Self {
        Self { req, resp }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Exchange for WasmExchange<'_> {
    fn method(&self) -> String {
        lossy(&self.req.method())
    }

    fn uri(&self) -> String {
        lossy(&self.req.uri())
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        self.req
            .header
            .values(name.as_bytes())
            .iter()
            .map(|v| lossy(v))
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.req.header.get(name.as_bytes()).map(|v| lossy(&v))
    }

    fn header_names(&self) -> Vec<String> {
        self.req.header.names().iter().map(|v| lossy(v)).collect()
    }

    fn source_addr(&self) -> String {
        lossy(&self.req.source_addr())
    }

    fn read_body(&self, limit: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in self.req.body.read_iter() {
            if out.len() + chunk.len() > limit {
                return None;
            }
            out.extend_from_slice(&chunk);
        }
        Some(out)
    }

    fn set_header(&self, name: &str, value: &str) {
        self.req.header.set(name.as_bytes(), value.as_bytes());
    }

    fn remove_header(&self, name: &str) {
        self.req.header.remove(name.as_bytes());
    }

    fn add_response_header(&self, name: &str, value: &str) {
        self.resp.header.add(name.as_bytes(), value.as_bytes());
    }

    fn send(&self, status: u16, headers: &[(String, String)], body: &[u8]) {
        // Without the buffer-response feature the host writes the head when the status is set:
        // every header first, then the status, then the body.
        for (k, v) in headers {
            self.resp.header.add(k.as_bytes(), v.as_bytes());
        }
        self.resp.set_status(i32::from(status));
        if !body.is_empty() {
            self.resp.body.write(body);
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        host_log(level, message);
    }
}

/// Writes a line through Traefik's logger (usable outside a request, e.g. at start-up).
pub fn host_log(level: LogLevel, message: &str) {
    log::write(level as i32, message.as_bytes());
}
