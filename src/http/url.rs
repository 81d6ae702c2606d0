//! Absolute `http`/`https` URLs: just enough parsing for provider endpoints, redirect targets
//! and same-origin checks.

use std::fmt;

/// A parsed absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https` (lower case).
    pub scheme: String,
    /// Host name (lower case) or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (the scheme's default when absent).
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
    /// Query without `?`, if any.
    pub query: Option<String>,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub &'static str);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL. Userinfo is refused; a fragment is dropped.
    ///
    /// # Errors
    /// [`UrlError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        if s.len() > 8192 {
            return Err(UrlError("URL too long"));
        }
        if s.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\') {
            return Err(UrlError(
                "URL contains whitespace, control characters or a backslash",
            ));
        }
        let (scheme, rest) = s.split_once("://").ok_or(UrlError("URL has no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(UrlError("URL scheme is not http or https")),
        };
        let rest = rest.split('#').next().unwrap_or(rest);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError("URL contains userinfo"));
        }
        let (host, port) = split_host_port(authority)?;
        let port = port.unwrap_or(default_port);
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (tail, None),
        };
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        };
        Ok(Url {
            scheme,
            host,
            port,
            path,
            query,
        })
    }

    /// Whether the port is the scheme's default.
    pub fn default_port(&self) -> bool {
        matches!(
            (self.scheme.as_str(), self.port),
            ("http", 80) | ("https", 443)
        )
    }

    /// `scheme://host[:port]`, the origin (RFC 6454) in its serialised form.
    pub fn origin(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.default_port() {
            format!("{}://{}", self.scheme, host)
        } else {
            format!("{}://{}:{}", self.scheme, host, self.port)
        }
    }

    /// `host[:port]` as it goes into a `Host` header.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Path and query, as a request target.
    pub fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }

    /// Whether this is an `https` URL.
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// Whether the host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host.ends_with(".localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.target())
    }
}

/// Splits `host[:port]` / `[v6][:port]`; lower-cases the host.
///
/// # Errors
/// [`UrlError`] for an empty host, a bad port or a malformed IPv6 literal.
pub fn split_host_port(authority: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or(UrlError("unterminated IPv6 literal"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlError("bad IPv6 literal"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError("bad port"))?),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError("empty host"));
    }
    if host
        .bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b".-_:".contains(&b)))
    {
        return Err(UrlError("host contains characters that are not allowed"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(UrlError("bad port"))?,
        ),
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_and_serialises() {
        let u = Url::parse("HTTPS://Example.COM:443/a/b?c=d#frag").unwrap();
        assert_eq!(u.scheme, "https");
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 443);
        assert_eq!(u.path, "/a/b");
        assert_eq!(u.query.as_deref(), Some("c=d"));
        assert_eq!(u.origin(), "https://example.com");
        assert_eq!(u.to_string(), "https://example.com/a/b?c=d");
        let v = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(v.authority(), "127.0.0.1:8080");
        assert_eq!(v.path, "/");
        assert!(v.is_loopback());
        let w = Url::parse("http://[::1]:9/x").unwrap();
        assert_eq!(w.host, "::1");
        assert_eq!(w.origin(), "http://[::1]:9");
    }

    #[test]
    fn refuses() {
        for s in [
            "ftp://x/",
            "//x/",
            "http://",
            "http://u:p@x/",
            "http://x:0/",
            "http://x:99999/",
            "http://x y/",
            "http://x\\y/",
            "http://[::1/",
            "javascript:alert(1)",
            "http://ex%41mple.com/",
        ] {
            assert!(Url::parse(s).is_err(), "{s}");
        }
    }
}
