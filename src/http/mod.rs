//! The HTTP exchange as the request logic sees it.
//!
//! [`Exchange`] is implemented over the http-wasm host in [`crate::abi`] and over a plain struct
//! in tests, so every decision the plugin takes can be tested natively.

pub mod cookie;
pub mod form;
pub mod path;
pub mod url;

/// The exchange the request pipeline is compiled against. In the plugin it is the http-wasm
/// host's own type, so every request read and header write is a direct call; natively it is any
/// [`Exchange`] (the tests' fakes).
///
/// Why not `dyn Exchange` in the plugin too: under Traefik each guest instance has its own copy
/// of the vtables (in its linear memory) and its own function table, and between two requests on
/// one instance Traefik's own work evicts them from the CPU caches. A call through a vtable there
/// is three dependent cache misses (vtable slot, table entry, the callee's type); the ≈ 15 such
/// calls of a request measured as the largest single share of the guest's time per request
/// (BENCHMARKS.md, "Indirect calls").
#[cfg(target_arch = "wasm32")]
pub type Ex<'a> = crate::abi::handler::WasmExchange<'a>;
/// See the wasm32 definition.
#[cfg(not(target_arch = "wasm32"))]
pub type Ex<'a> = dyn Exchange + 'a;

/// RFC 9110 `tchar`: the bytes Go's `CanonicalMIMEHeaderKey` accepts in a name it rewrites.
pub fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A header name in Go's canonical form (`x-forwarded-user` → `X-Forwarded-User`), written to
/// `out`: the plugin sends names so, and the host's `http.Header` then finds them without
/// canonicalising each into a new string.
///
/// `None` when `name` is to be passed as it is: already canonical (as the identity headers the
/// guard strips are kept, see [`canonical_owned`]), too long for `out`, or with a byte Go would
/// not canonicalise either (not an RFC 9110 token character).
pub fn canonical_name(name: &str, out: &mut [u8; 64]) -> Option<usize> {
    let b = name.as_bytes();
    let mut upper = true;
    let mut changed = false;
    for &c in b {
        if !is_tchar(c) {
            return None;
        }
        changed |= if upper {
            c.is_ascii_lowercase()
        } else {
            c.is_ascii_uppercase()
        };
        upper = c == b'-';
    }
    if !changed || b.len() > out.len() {
        return None;
    }
    let mut upper = true;
    for (o, &c) in out.iter_mut().zip(b) {
        *o = if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        };
        upper = c == b'-';
    }
    Some(b.len())
}

/// `name` in Go's canonical form, as an owned string (see [`canonical_name`]).
pub fn canonical_owned(name: &str) -> String {
    let mut buf = [0u8; 64];
    match canonical_name(name, &mut buf) {
        Some(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        None => name.to_string(),
    }
}

/// One request passing through the middleware, and the response the middleware may write.
///
/// Header names are case-insensitive. Response headers must all be added before
/// [`Exchange::send`]: without the buffer-response feature the host writes them when the status
/// is set.
pub trait Exchange {
    /// The request method, e.g. `GET`.
    fn method(&self) -> String;

    /// The request target as received: path and query, e.g. `/a/b?c=d`.
    fn uri(&self) -> String;

    /// All values of a request header, in order.
    fn header_values(&self, name: &str) -> Vec<String>;

    /// Calls `visit` with the name of every request header, as the host spells it.
    fn header_names(&self, visit: &mut dyn FnMut(&str));

    /// The first value of a request header.
    fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }

    /// As [`uri`](Self::uri), into `buf`'s allocation where the exchange can (the pipeline
    /// keeps its buffers from one request to the next).
    fn uri_in(&self, buf: Vec<u8>) -> String {
        drop(buf);
        self.uri()
    }

    /// As [`header_values`](Self::header_values), into `out`'s allocations where the exchange
    /// can (its contents are dropped; the pipeline keeps the `Cookie` list from one request to
    /// the next).
    fn header_values_in(&self, name: &str, out: Vec<String>) -> Vec<String> {
        drop(out);
        self.header_values(name)
    }

    /// The first value of a request header and how many values it has (for a header that is
    /// usually single, read without building a list), into `buf`'s allocation where the
    /// exchange can.
    fn header_and_count_in(&self, name: &str, buf: Vec<u8>) -> (Option<String>, usize) {
        drop(buf);
        let mut values = self.header_values(name);
        let count = values.len();
        values.truncate(1);
        (values.pop(), count)
    }

    /// As [`header_and_count_in`](Self::header_and_count_in), the value's bytes as received:
    /// not checked for UTF-8 (a caller that only compares them with text it holds needs no
    /// check).
    fn header_bytes_and_count_in(&self, name: &str, buf: Vec<u8>) -> (Option<Vec<u8>>, usize) {
        let (value, count) = self.header_and_count_in(name, buf);
        (value.map(String::into_bytes), count)
    }

    /// The client address as `ip:port` (the TCP peer, before any proxy headers).
    fn source_addr(&self) -> String;

    /// Reads the request body, at most `limit` bytes; `None` when it is larger.
    fn read_body(&self, limit: usize) -> Option<Vec<u8>>;

    /// Sets (replaces) a request header forwarded to the backend.
    fn set_header(&self, name: &str, value: &str);

    /// Removes a request header before forwarding.
    fn remove_header(&self, name: &str);

    /// Adds a header to the response the client will get when the request is forwarded (e.g. a
    /// refreshed session cookie). Must be called before the request is forwarded.
    fn add_response_header(&self, name: &str, value: &str);

    /// Answers the request instead of forwarding it: headers first, then status, then body.
    fn send(&self, status: u16, headers: &[(String, String)], body: &[u8]);

    /// Writes a log line through the host's logger.
    fn log(&self, level: LogLevel, message: &str);
}

/// The longest log line written; longer messages are cut (at a character boundary) and marked.
pub const MAX_LOG_LINE: usize = 4096;

/// A message made safe for one log line: CR, LF and other control characters escaped (text from
/// a token, a provider or a Redis reply cannot start a forged log line), and at most
/// [`MAX_LOG_LINE`] bytes (a 16 MiB error reply cannot flood the log). Borrowed when already safe.
pub fn log_line(message: &str) -> std::borrow::Cow<'_, str> {
    let safe = |c: char| !c.is_control() || c == '\t';
    if message.len() <= MAX_LOG_LINE && message.chars().all(safe) {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len().min(MAX_LOG_LINE) + 16);
    for c in message.chars() {
        if out.len() >= MAX_LOG_LINE {
            out.push_str("…(cut)");
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if safe(c) => out.push(c),
            c => out.push_str(&c.escape_unicode().to_string()),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Log levels as the http-wasm ABI numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Debug.
    Debug = -1,
    /// Info.
    Info = 0,
    /// Warning.
    Warn = 1,
    /// Error.
    Error = 2,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Go's `textproto.CanonicalMIMEHeaderKey` results, and `None` (pass as is) exactly when the
    /// name is canonical already or Go would leave it alone.
    #[test]
    fn header_names_in_go_canonical_form() {
        for (name, go) in [
            ("x-forwarded-user", "X-Forwarded-User"),
            ("AUTHORIZATION", "Authorization"),
            ("x_forwarded_user", "X_forwarded_user"),
            ("X_Forwarded_User", "X_forwarded_user"),
            ("x-a.b", "X-A.b"),
        ] {
            let mut buf = [0u8; 64];
            let n = canonical_name(name, &mut buf).expect(name);
            assert_eq!(&buf[..n], go.as_bytes(), "{name}");
            assert_eq!(canonical_owned(name), go);
            assert_eq!(canonical_name(go, &mut buf), None, "{go} is canonical");
        }
        let mut buf = [0u8; 64];
        // Not tokens: Go keeps them as they are, and so does the plugin.
        for name in ["x forwarded", "x-é", "x:y", ""] {
            assert_eq!(canonical_name(name, &mut buf), None, "{name}");
            assert_eq!(canonical_owned(name), name);
        }
        let long = "x".repeat(65);
        assert_eq!(canonical_name(&long, &mut buf), None);
        assert_eq!(canonical_owned(&long), long);
    }

    #[test]
    fn log_lines_are_one_line_and_bounded() {
        assert!(matches!(
            log_line("plain\ttext é"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            log_line("role x\r\n2026 level=error forged\u{1b}[31m"),
            "role x\\r\\n2026 level=error forged\\u{1b}[31m"
        );
        let long = "é".repeat(MAX_LOG_LINE);
        let cut = log_line(&long);
        assert!(cut.len() <= MAX_LOG_LINE + 16, "{}", cut.len());
        assert!(cut.ends_with("…(cut)"));
        assert!(!log_line(&"\n".repeat(10_000)).contains('\n'));
    }
}
