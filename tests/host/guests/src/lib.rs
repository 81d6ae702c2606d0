//! Helpers for the test guests: the raw `http_handler` imports (so a guest can call them with
//! exactly the buffers a test needs) and small wrappers around them.
//!
//! These guests exist to exercise the wasmtime test host and the plugin's FFI shims; some of
//! them trap on purpose.
#![allow(unsafe_code, missing_docs)]

#[cfg(target_arch = "wasm32")]
pub mod hh {
    pub mod ffi {
        #[link(wasm_import_module = "http_handler")]
        extern "C" {
            pub fn enable_features(features: i32) -> i32;
            pub fn get_config(buf: *mut u8, limit: i32) -> i32;
            pub fn log_enabled(level: i32) -> i32;
            pub fn log(level: i32, msg: *const u8, len: i32);
            pub fn get_method(buf: *mut u8, limit: i32) -> i32;
            pub fn set_method(p: *const u8, len: i32);
            pub fn get_uri(buf: *mut u8, limit: i32) -> i32;
            pub fn set_uri(p: *const u8, len: i32);
            pub fn get_protocol_version(buf: *mut u8, limit: i32) -> i32;
            pub fn get_source_addr(buf: *mut u8, limit: i32) -> i32;
            pub fn get_header_names(kind: i32, buf: *mut u8, limit: i32) -> i64;
            pub fn get_header_values(
                kind: i32,
                name: *const u8,
                name_len: i32,
                buf: *mut u8,
                limit: i32,
            ) -> i64;
            pub fn set_header_value(
                kind: i32,
                name: *const u8,
                name_len: i32,
                value: *const u8,
                value_len: i32,
            );
            pub fn add_header_value(
                kind: i32,
                name: *const u8,
                name_len: i32,
                value: *const u8,
                value_len: i32,
            );
            pub fn remove_header(kind: i32, name: *const u8, name_len: i32);
            pub fn read_body(kind: i32, buf: *mut u8, limit: i32) -> i64;
            pub fn write_body(kind: i32, p: *const u8, len: i32);
            pub fn get_status_code() -> i32;
            pub fn set_status_code(code: i32);
        }
    }

    pub const REQ: i32 = 0;
    pub const RESP: i32 = 1;

    type Getter = unsafe extern "C" fn(*mut u8, i32) -> i32;

    /// A scalar getter with the retry the ABI expects.
    pub fn scalar(f: Getter) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        // SAFETY: buf is writable for its length.
        let n = unsafe { f(buf.as_mut_ptr(), buf.len() as i32) } as usize;
        if n > buf.len() {
            buf = vec![0u8; n];
            // SAFETY: as above.
            unsafe { f(buf.as_mut_ptr(), buf.len() as i32) };
        }
        buf.truncate(n);
        buf
    }

    pub fn config() -> Vec<u8> {
        scalar(ffi::get_config)
    }
    pub fn method() -> Vec<u8> {
        scalar(ffi::get_method)
    }
    pub fn uri() -> Vec<u8> {
        scalar(ffi::get_uri)
    }
    pub fn proto() -> Vec<u8> {
        scalar(ffi::get_protocol_version)
    }
    pub fn source() -> Vec<u8> {
        scalar(ffi::get_source_addr)
    }

    fn split_nul(b: &[u8], count: usize) -> Vec<Vec<u8>> {
        b.split(|c| *c == 0)
            .take(count)
            .map(<[u8]>::to_vec)
            .collect()
    }

    pub fn header_names(kind: i32) -> Vec<Vec<u8>> {
        // SAFETY: a zero limit lets the host write nothing.
        let cl = unsafe { ffi::get_header_names(kind, std::ptr::null_mut(), 0) } as u64;
        let (count, len) = ((cl >> 32) as usize, (cl & 0xffff_ffff) as usize);
        let mut buf = vec![0u8; len];
        // SAFETY: buf is writable for len bytes.
        unsafe { ffi::get_header_names(kind, buf.as_mut_ptr(), len as i32) };
        split_nul(&buf, count)
    }

    pub fn header_values(kind: i32, name: &[u8]) -> Vec<Vec<u8>> {
        // SAFETY: name readable; zero limit.
        let cl = unsafe {
            ffi::get_header_values(
                kind,
                name.as_ptr(),
                name.len() as i32,
                std::ptr::null_mut(),
                0,
            )
        } as u64;
        let (count, len) = ((cl >> 32) as usize, (cl & 0xffff_ffff) as usize);
        let mut buf = vec![0u8; len];
        // SAFETY: buf writable for len bytes.
        unsafe {
            ffi::get_header_values(
                kind,
                name.as_ptr(),
                name.len() as i32,
                buf.as_mut_ptr(),
                len as i32,
            )
        };
        split_nul(&buf, count)
    }

    pub fn header(kind: i32, name: &str) -> Option<String> {
        header_values(kind, name.as_bytes())
            .into_iter()
            .next()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    pub fn set_header(kind: i32, name: &str, value: &str) {
        // SAFETY: both slices readable.
        unsafe {
            ffi::set_header_value(
                kind,
                name.as_ptr(),
                name.len() as i32,
                value.as_ptr(),
                value.len() as i32,
            )
        }
    }

    pub fn add_header(kind: i32, name: &str, value: &str) {
        // SAFETY: both slices readable.
        unsafe {
            ffi::add_header_value(
                kind,
                name.as_ptr(),
                name.len() as i32,
                value.as_ptr(),
                value.len() as i32,
            )
        }
    }

    pub fn remove_header(kind: i32, name: &str) {
        // SAFETY: name readable.
        unsafe { ffi::remove_header(kind, name.as_ptr(), name.len() as i32) }
    }

    /// Reads a whole body in `chunk`-byte calls; the bytes and each call's (n, eof).
    pub fn read_body(kind: i32, chunk: usize) -> (Vec<u8>, Vec<(u32, bool)>) {
        let mut out = Vec::new();
        let mut calls = Vec::new();
        let mut buf = vec![0u8; chunk.max(1)];
        loop {
            // SAFETY: buf writable for its length.
            let r = unsafe { ffi::read_body(kind, buf.as_mut_ptr(), buf.len() as i32) } as u64;
            let n = (r & 0xffff_ffff) as usize;
            let eof = r >> 32 != 0;
            calls.push((n as u32, eof));
            out.extend_from_slice(&buf[..n.min(buf.len())]);
            if eof || calls.len() > 10_000 {
                break;
            }
        }
        (out, calls)
    }

    pub fn write_body(kind: i32, b: &[u8]) {
        // SAFETY: b readable.
        unsafe { ffi::write_body(kind, b.as_ptr(), b.len() as i32) }
    }

    pub fn set_status(code: i32) {
        // SAFETY: plain integer.
        unsafe { ffi::set_status_code(code) }
    }

    pub fn status() -> i32 {
        // SAFETY: no arguments (traps without buffer_response, on purpose in some tests).
        unsafe { ffi::get_status_code() }
    }

    pub fn enable(features: i32) -> i32 {
        // SAFETY: plain integer.
        unsafe { ffi::enable_features(features) }
    }

    pub fn log(level: i32, msg: &str) {
        // SAFETY: msg readable.
        unsafe { ffi::log(level, msg.as_ptr(), msg.len() as i32) }
    }

    pub fn set_method(m: &str) {
        // SAFETY: m readable.
        unsafe { ffi::set_method(m.as_ptr(), m.len() as i32) }
    }

    pub fn set_uri(u: &str) {
        // SAFETY: u readable.
        unsafe { ffi::set_uri(u.as_ptr(), u.len() as i32) }
    }

    /// Answers with `status`, a JSON content type and `body`.
    pub fn reply_json(status: i32, body: &serde_json::Value) {
        set_header(RESP, "Content-Type", "application/json");
        set_status(status);
        write_body(RESP, body.to_string().as_bytes());
    }

    /// The query parameter `name` of the current URI.
    pub fn query(name: &str) -> Option<String> {
        let uri = String::from_utf8_lossy(&uri()).into_owned();
        let q = uri.split_once('?')?.1.to_string();
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| v.to_string())
        })
    }

    /// The path of the current URI.
    pub fn path() -> String {
        let uri = String::from_utf8_lossy(&uri()).into_owned();
        uri.split('?').next().unwrap_or("").to_string()
    }
}
