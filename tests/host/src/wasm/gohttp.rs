//! The parts of Go's `net/http` and `net/url` that the http-wasm host exposes to the guest,
//! modelled closely enough that a guest sees what it would see in Traefik:
//!
//! - [`GoHeader`]: an `http.Header` (keys canonicalised by `textproto.CanonicalMIMEHeaderKey`,
//!   values kept in insertion order, `Set`/`Add`/`Del`/`Values`);
//! - [`RequestTarget`]: `URL.EscapedPath()` + `RawQuery`, `url.ParseRequestURI` validation;
//! - [`ResponseWriter`]: a `ResponseWriter` that sends its head on the first `WriteHeader` (later
//!   header changes are lost, later `WriteHeader` calls are "superfluous") and an implicit 200 on
//!   the first `Write`.

/// `http.TrailerPrefix`: response header keys with this prefix are trailers.
pub const TRAILER_PREFIX: &[u8] = b"Trailer:";

/// Whether `c` may appear in a header field name (`httpguts.IsTokenRune`).
fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// `textproto.CanonicalMIMEHeaderKey`: `content-type` → `Content-Type`. A key with a byte that is
/// not a token character (a space, `:`) is returned unchanged, as Go does.
pub fn canonical_key(name: &[u8]) -> Vec<u8> {
    if !name.iter().all(|&c| is_token_byte(c)) {
        return name.to_vec();
    }
    let mut out = Vec::with_capacity(name.len());
    let mut upper = true;
    for &c in name {
        let c = if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        };
        out.push(c);
        upper = c == b'-';
    }
    out
}

/// An `http.Header`: canonical keys, each with its values in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoHeader {
    entries: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl GoHeader {
    /// An empty header.
    pub fn new() -> Self {
        Self::default()
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k.as_slice() == key)
    }

    /// `Header.Values(name)`.
    pub fn values(&self, name: &[u8]) -> Vec<Vec<u8>> {
        let key = canonical_key(name);
        self.position(&key)
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// `Header.Get(name)`: the first value.
    pub fn get(&self, name: &[u8]) -> Option<Vec<u8>> {
        self.values(name).into_iter().next()
    }

    /// `Header.Set(name, value)`.
    pub fn set(&mut self, name: &[u8], value: &[u8]) {
        let key = canonical_key(name);
        match self.position(&key).and_then(|i| self.entries.get_mut(i)) {
            Some((_, v)) => *v = vec![value.to_vec()],
            None => self.entries.push((key, vec![value.to_vec()])),
        }
    }

    /// `Header.Add(name, value)`.
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        let key = canonical_key(name);
        match self.position(&key).and_then(|i| self.entries.get_mut(i)) {
            Some((_, v)) => v.push(value.to_vec()),
            None => self.entries.push((key, vec![value.to_vec()])),
        }
    }

    /// `Header.Del(name)`.
    pub fn del(&mut self, name: &[u8]) {
        let key = canonical_key(name);
        self.entries.retain(|(k, _)| *k != key);
    }

    /// The keys, as stored (canonical form).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.entries.iter().map(|(k, _)| k.clone()).collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every `(key, value)` pair, keys sorted as Go writes them on the wire (`Header.Write`
    /// sorts keys), values in order; keys for which `skip` is true are left out.
    pub fn wire_pairs(&self, skip: impl Fn(&[u8]) -> bool) -> Vec<(String, String)> {
        let mut keys: Vec<&(Vec<u8>, Vec<Vec<u8>>)> =
            self.entries.iter().filter(|(k, _)| !skip(k)).collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (k, vs) in keys {
            for v in vs {
                out.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
        }
        out
    }
}

/// Whether `c` must be percent-encoded in a path (`url.shouldEscape(c, encodePath)`).
fn should_escape_path(c: u8) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    !matches!(
        c,
        b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'
    )
}

/// `url.validEncoded(s, encodePath)`.
fn valid_encoded_path(s: &[u8]) -> bool {
    s.iter().all(|&c| match c {
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':'
        | b'@' | b'[' | b']' | b'%' => true,
        _ => !should_escape_path(c),
    })
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `url.unescape(s, encodePath)`: `None` on a malformed `%` escape.
pub fn unescape_path(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = *s.get(i)?;
        if c == b'%' {
            let h = hex_val(*s.get(i + 1)?)?;
            let l = hex_val(*s.get(i + 2)?)?;
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}

fn escape_path(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        if should_escape_path(c) {
            out.extend_from_slice(format!("%{c:02X}").as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

/// The request target as Go's `URL` keeps it: the raw path and the raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    /// The path as received (still percent-encoded).
    pub raw_path: Vec<u8>,
    /// `RawQuery`; `Some(empty)` for a trailing `?` (`ForceQuery`).
    pub query: Option<Vec<u8>>,
}

impl RequestTarget {
    /// Parses a request target the way `url.ParseRequestURI` does for what the http-wasm host
    /// needs (origin form `/p?q`, absolute form `http://h/p?q`, `*`).
    ///
    /// # Errors
    /// The Go error text when `ParseRequestURI` would fail.
    pub fn parse(uri: &[u8]) -> Result<Self, String> {
        let text = String::from_utf8_lossy(uri);
        if uri.is_empty() {
            return Err("parse \"\": empty url".into());
        }
        if uri.iter().any(|&c| c < 0x20 || c == 0x7f) {
            return Err(format!(
                "parse {text:?}: net/url: invalid control character in URL"
            ));
        }
        if uri == b"*" {
            return Ok(Self {
                raw_path: b"*".to_vec(),
                query: None,
            });
        }
        let (before_q, query) = match uri.iter().position(|&c| c == b'?') {
            Some(i) => (&uri[..i], Some(uri[i + 1..].to_vec())),
            None => (uri, None),
        };
        let path: &[u8] = if before_q.first() == Some(&b'/') {
            before_q
        } else {
            // A scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":".
            let colon = before_q.iter().position(|&c| c == b':');
            let scheme_ok = match colon {
                Some(0) => return Err(format!("parse {text:?}: missing protocol scheme")),
                Some(i) => {
                    before_q.first().is_some_and(|c| c.is_ascii_alphabetic())
                        && before_q[..i]
                            .iter()
                            .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
                }
                None => false,
            };
            if !scheme_ok {
                return Err(format!("parse {text:?}: invalid URI for request"));
            }
            let rest = &before_q[colon.unwrap_or(0) + 1..];
            if let Some(auth) = rest.strip_prefix(b"//") {
                match auth.iter().position(|&c| c == b'/') {
                    Some(i) => &auth[i..],
                    None => b"",
                }
            } else if rest.first() == Some(&b'/') {
                rest
            } else {
                // An opaque URL (`mailto:x`): Go keeps it in `Opaque`; `EscapedPath` is empty.
                b""
            }
        };
        if unescape_path(path).is_none() {
            return Err(format!("parse {text:?}: invalid URL escape"));
        }
        Ok(Self {
            raw_path: path.to_vec(),
            query,
        })
    }

    /// `URL.EscapedPath()`.
    pub fn escaped_path(&self) -> Vec<u8> {
        if valid_encoded_path(&self.raw_path) {
            return self.raw_path.clone();
        }
        match unescape_path(&self.raw_path) {
            Some(p) => escape_path(&p),
            None => self.raw_path.clone(),
        }
    }

    /// What `get_uri` returns: `EscapedPath()` (or `/`) plus `?RawQuery` when present.
    pub fn uri(&self) -> Vec<u8> {
        let mut out = self.escaped_path();
        if out.is_empty() {
            out = b"/".to_vec();
        }
        if let Some(q) = &self.query {
            out.push(b'?');
            out.extend_from_slice(q);
        }
        out
    }
}

/// A `http.ResponseWriter` as the client sees it.
#[derive(Debug, Clone, Default)]
pub struct ResponseWriter {
    /// `Header()`: the live map; changes after the head was sent are not sent.
    pub header: GoHeader,
    /// The status and headers as sent, once `WriteHeader` (or the first `Write`) ran.
    pub head: Option<(u16, GoHeader)>,
    /// The body bytes sent.
    pub body: Vec<u8>,
    /// `WriteHeader` calls after the head was sent (Go logs "superfluous response.WriteHeader").
    pub superfluous_write_header: u32,
}

impl ResponseWriter {
    /// `WriteHeader(code)`.
    pub fn write_header(&mut self, code: u16) {
        if self.head.is_some() {
            self.superfluous_write_header += 1;
        } else {
            self.head = Some((code, self.header.clone()));
        }
    }

    /// `Write(b)`: an implicit `WriteHeader(200)` first.
    pub fn write(&mut self, b: &[u8]) {
        if self.head.is_none() {
            self.write_header(200);
        }
        self.body.extend_from_slice(b);
    }

    /// What net/http does when the handler returns: a 200 if nothing was written.
    pub fn finish(&mut self) {
        if self.head.is_none() {
            self.write_header(200);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn canonical_keys_follow_go() {
        assert_eq!(canonical_key(b"content-type"), b"Content-Type");
        assert_eq!(canonical_key(b"X-CFG"), b"X-Cfg");
        assert_eq!(canonical_key(b"Trailer:x-a"), b"Trailer:x-a");
        assert_eq!(canonical_key(b"www-authenticate"), b"Www-Authenticate");
    }

    #[test]
    fn header_set_add_del() {
        let mut h = GoHeader::new();
        h.add(b"x-a", b"1");
        h.add(b"X-A", b"2");
        assert_eq!(h.values(b"x-a"), vec![b"1".to_vec(), b"2".to_vec()]);
        h.set(b"x-a", b"3");
        assert_eq!(h.values(b"X-a"), vec![b"3".to_vec()]);
        h.del(b"X-A");
        assert!(h.is_empty());
    }

    #[test]
    fn uris_follow_go() {
        let t = RequestTarget::parse(b"/a%2Fb?x=1").unwrap();
        assert_eq!(t.uri(), b"/a%2Fb?x=1");
        let t = RequestTarget::parse(b"/a|b").unwrap();
        assert_eq!(t.uri(), b"/a%7Cb");
        let t = RequestTarget::parse(b"/p?").unwrap();
        assert_eq!(t.uri(), b"/p?");
        let t = RequestTarget::parse(b"http://h:1/x/y?z").unwrap();
        assert_eq!(t.uri(), b"/x/y?z");
        let t = RequestTarget::parse(b"http://h").unwrap();
        assert_eq!(t.uri(), b"/");
        assert!(RequestTarget::parse(b"/%zz").is_err());
        assert!(RequestTarget::parse(b"no-slash").is_err());
        assert!(RequestTarget::parse(b"/a\nb").is_err());
    }
}
