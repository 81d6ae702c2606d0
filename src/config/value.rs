//! Value parsing: every kind accepts its native JSON type and the string Traefik makes of it.
//!
//! Traefik's file provider turns scalars into strings (`3` → `"3"`, `true` → `"true"`, `1.5` →
//! `"1.500000"`, nested maps too) but keeps typed elements in lists (`[1, 2]`); labels give
//! strings everywhere; the Kubernetes CRD keeps native JSON types. So:
//!
//! - booleans: `true`/`false`, and the strings `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`
//!   (any case; BunkerWeb's variables say `yes`/`no`), and the numbers 1/0;
//! - whole numbers: `3`, `"3"`, `3.0`, `"3.000000"` (a fraction is an error);
//! - durations: a bare number is seconds (`30`, `"30"`, `"1.500000"` = 1.5 s); strings with units
//!   `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`, combined Go-style (`"1m30s"`);
//! - lists: a JSON list (elements may be numbers), or one string split on commas (labels);
//! - maps: a JSON object of scalars.
//!
//! Errors say what was expected and what was found; callers never pass secret values here for
//! echoing (see [`describe`]).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

/// A short, safe description of a non-secret value for error messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out: String = s.chars().take(48).collect();
            if out.len() < s.len() {
                out.push('…');
            }
            format!("{out:?}")
        }
        Value::Array(a) => format!("a list of {} element(s)", a.len()),
        Value::Object(_) => "a map".into(),
    }
}

/// Like [`describe`] but reveals nothing of the content (for secrets).
pub(crate) fn describe_secret(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) | Value::Number(_) => "a scalar".into(),
        Value::String(s) => format!("a string of {} bytes", s.len()),
        Value::Array(a) => format!("a list of {} element(s)", a.len()),
        Value::Object(_) => "a map".into(),
    }
}

/// A scalar as text: strings as they are, numbers and booleans as written.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A string value (numbers and booleans taken as their text), trimmed.
pub(crate) fn string(v: &Value) -> Result<String, String> {
    scalar_text(v)
        .map(|s| s.trim().to_string())
        .ok_or_else(|| format!("expected a string, found {}", describe(v)))
}

/// A boolean.
pub(crate) fn boolean(v: &Value) -> Result<bool, String> {
    let bad = || format!("expected true or false, found {}", describe(v));
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(bad()),
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// A whole number within `min..=max`.
pub(crate) fn integer(v: &Value, min: u64, max: u64) -> Result<u64, String> {
    let bad = || format!("expected a whole number, found {}", describe(v));
    let n = match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => u,
            None => whole_f64(n.as_f64().ok_or_else(bad)?).ok_or_else(bad)?,
        },
        Value::String(s) => {
            let t = s.trim();
            match t.parse::<u64>() {
                Ok(u) => u,
                Err(_) => whole_f64(t.parse::<f64>().map_err(|_| bad())?).ok_or_else(bad)?,
            }
        }
        _ => return Err(bad()),
    };
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}, found {n}"));
    }
    Ok(n)
}

/// `3.0` → 3; a fraction, a negative number or one beyond 2^53 → `None`.
fn whole_f64(x: f64) -> Option<u64> {
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= 9_007_199_254_740_992.0 {
        // The checks above make the cast exact.
        Some(x as u64)
    } else {
        None
    }
}

const DURATION_HINT: &str =
    "a duration such as 30 (seconds), \"500ms\", \"2s\", \"5m\", \"1h\" or \"1m30s\"";

/// A duration within `min_ms..=max_ms` milliseconds.
pub(crate) fn duration(v: &Value, min_ms: u64, max_ms: u64) -> Result<Duration, String> {
    let bad = || format!("expected {DURATION_HINT}, found {}", describe(v));
    let nanos: f64 = match v {
        Value::Number(n) => n.as_f64().ok_or_else(bad)? * 1e9,
        Value::String(s) => parse_duration_str(s.trim()).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !nanos.is_finite() || nanos < 0.0 {
        return Err(bad());
    }
    // Compare in milliseconds before converting, so no conversion can overflow.
    let ms = nanos / 1e6;
    if ms < min_ms as f64 || ms > max_ms as f64 {
        return Err(format!(
            "must be between {} and {}, found {}",
            super::keys::fmt_ms(min_ms),
            super::keys::fmt_ms(max_ms),
            describe(v)
        ));
    }
    // max_ms ≤ 400 days, so the nanoseconds fit in a u64 (≈ 584 years).
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Parses `"30"`, `"1.5"` (seconds) or Go-style `"1h2m3.5s"` into nanoseconds.
fn parse_duration_str(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Some(secs * 1e9);
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let (num, after) = rest.split_at(num_len);
        let value: f64 = num.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            _ => return None,
        };
        total += value * scale;
        rest = next;
    }
    Some(total)
}

/// How a list given as one string is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// On commas (labels: `a,b,c`).
    Comma,
    /// On commas and whitespace (`REDIS_SENTINEL_HOSTS="h1:26379 h2:26379"`).
    CommaOrSpace,
}

/// A list of non-empty trimmed strings. `None` elements (empty strings) are dropped when the list
/// came as one string (a trailing comma); in a JSON list an empty element is an error.
pub(crate) fn list(v: &Value, split: Split) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let s = scalar_text(item).ok_or_else(|| {
                    format!("element {i}: expected a string, found {}", describe(item))
                })?;
                let s = s.trim();
                if s.is_empty() {
                    return Err(format!("element {i} is empty"));
                }
                out.push(s.to_string());
            }
            Ok(out)
        }
        Value::String(s) => Ok(s
            .split(|c: char| c == ',' || (split == Split::CommaOrSpace && c.is_whitespace()))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()),
        Value::Number(_) | Value::Bool(_) => Ok(scalar_text(v).into_iter().collect()),
        _ => Err(format!(
            "expected a list or a comma-separated string, found {}",
            describe(v)
        )),
    }
}

/// A map of header/claim-like strings.
pub(crate) fn string_map(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(m) = v else {
        return Err(format!("expected a map, found {}", describe(v)));
    };
    let mut out = Vec::with_capacity(m.len());
    for (k, item) in m {
        let s = scalar_text(item)
            .ok_or_else(|| format!("{k}: expected a string, found {}", describe(item)))?;
        out.push((k.trim().to_string(), s.trim().to_string()));
    }
    Ok(out)
}

/// One of `words`, compared case-insensitively; returns the canonical word.
pub(crate) fn one_of(v: &Value, words: &'static [&'static str]) -> Result<&'static str, String> {
    let s = scalar_text(v).ok_or_else(|| {
        format!(
            "expected one of {}, found {}",
            words.join(", "),
            describe(v)
        )
    })?;
    let t = s.trim();
    words
        .iter()
        .find(|w| w.eq_ignore_ascii_case(t))
        .copied()
        .ok_or_else(|| {
            format!(
                "expected one of {}, found {}",
                words.join(", "),
                describe(v)
            )
        })
}

/// An absolute `http(s)` URL: scheme, non-empty host, no fragment, no whitespace.
pub(crate) fn url(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    check_url(&s).map_err(|why| format!("{why}, found {}", describe(v)))?;
    Ok(s)
}

/// Checks an absolute URL; the error says what is wrong without echoing it.
pub(crate) fn check_url(s: &str) -> Result<(), &'static str> {
    let rest = if let Some(r) = strip_prefix_ci(s, "https://") {
        r
    } else if let Some(r) = strip_prefix_ci(s, "http://") {
        r
    } else {
        return Err("expected an absolute http:// or https:// URL");
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL cannot contain whitespace");
    }
    if s.contains('#') {
        return Err("a URL cannot have a #fragment here");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err("the URL has no host");
    }
    Ok(())
}

/// Whether a URL is plain `http://`.
pub(crate) fn is_http(s: &str) -> bool {
    strip_prefix_ci(s, "http://").is_some()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// A URL path: starts with a single `/`, no query, fragment, whitespace or backslash.
pub(crate) fn path(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    check_path(&s).map_err(|why| format!("{why}, found {}", describe(v)))?;
    Ok(s)
}

fn check_path(s: &str) -> Result<(), &'static str> {
    if !s.starts_with('/') {
        return Err("expected a path starting with /");
    }
    if s.starts_with("//") {
        // `//host/x` is a network-path reference (RFC 3986 §4.2): a redirect to it leaves the site.
        return Err("a path cannot start with // (that names another host)");
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err("a path cannot contain whitespace or backslashes");
    }
    if s.contains('?') || s.contains('#') {
        return Err("a path cannot contain ? or #");
    }
    // RFC 6265 §4.1.1: a cookie's `path-value` has no `;` (one would start another attribute
    // in the callback's, logout's and cookiePath's Set-Cookie lines).
    if s.contains(';') {
        return Err("a path cannot contain ; (it would end a cookie's Path attribute)");
    }
    Ok(())
}

/// A path (`/x`) or an absolute URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathOrUrl {
    /// A path; scheme and host come from the request.
    Path(String),
    /// An absolute `http(s)` URL.
    Url(String),
}

impl PathOrUrl {
    /// The path part (`/oauth2/callback` for both `/oauth2/callback` and
    /// `https://app.example.com/oauth2/callback`).
    pub fn path(&self) -> &str {
        match self {
            PathOrUrl::Path(p) => p,
            PathOrUrl::Url(u) => {
                let after_scheme = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
                let path = after_scheme
                    .find('/')
                    .and_then(|i| after_scheme.get(i..))
                    .unwrap_or("/");
                path.split(['?', '#']).next().unwrap_or("/")
            }
        }
    }

    /// The value as configured.
    pub fn as_str(&self) -> &str {
        match self {
            PathOrUrl::Path(s) | PathOrUrl::Url(s) => s,
        }
    }
}

pub(crate) fn path_or_url(v: &Value) -> Result<PathOrUrl, String> {
    let s = string(v)?;
    if s.starts_with('/') {
        check_path(&s).map_err(|why| format!("{why}, found {}", describe(v)))?;
        Ok(PathOrUrl::Path(s))
    } else {
        check_url(&s).map_err(|_| {
            format!(
                "expected a path starting with / or an absolute http(s) URL, found {}",
                describe(v)
            )
        })?;
        let url = PathOrUrl::Url(s);
        // The path of a URL is a cookie's Path too (the callback's, the logout's).
        check_path(url.path()).map_err(|why| format!("{why}, found {}", describe(v)))?;
        Ok(url)
    }
}

/// An IP network: an address and a prefix length (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `192.0.2.7`, `fd00::/8`, `::1`.
    ///
    /// # Errors
    /// A message saying what was expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("expected an IP address or CIDR block, found {s:?}");
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(format!(
                "prefix /{prefix} is longer than {max} bits in {s:?}"
            ));
        }
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(*ip),
            v4 => *v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A `host:port` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`, `[v6]:port`, or a bare host (which gets `default_port`).
    ///
    /// # Errors
    /// A message saying what was expected.
    pub fn parse(s: &str, default_port: u16) -> Result<Self, String> {
        let s = s.trim();
        // A URL's user information is a secret (`rediss://user:password@host`): never echoed.
        let shown = match s.rsplit_once('@') {
            Some((_, host)) => {
                format!("\"…@{host}\" (credentials go in the username and password keys)")
            }
            None => format!("{s:?}"),
        };
        if s.contains("://") {
            return Err(format!("expected host:port, not a URL, found {shown}"));
        }
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
            return Err(format!("expected host:port, found {shown}"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("expected [ipv6]:port, found {s:?}"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(format!("expected [ipv6]:port, found {s:?}")),
            }
        } else if s.matches(':').count() > 1 {
            // A bare IPv6 address without a port.
            (s, None)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(format!("expected host:port, found {s:?}"));
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("expected a port 1–65535 in {s:?}")),
            },
            None => default_port,
        };
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Inline JWKS as a string of JSON or as a map; returns the JSON text after checking that it is an
/// object with a `keys` list of objects (the jwt module parses the keys themselves).
pub(crate) fn jwks(v: &Value) -> Result<String, String> {
    let parsed;
    let obj = match v {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s.trim())
                .map_err(|e| format!("expected JWKS JSON, found text that is not JSON ({e})"))?;
            &parsed
        }
        Value::Object(_) => v,
        _ => {
            return Err(format!(
                "expected JWKS JSON as a string or a map, found {}",
                describe(v)
            ))
        }
    };
    check_jwks(obj)?;
    serde_json::to_string(obj).map_err(|e| format!("cannot re-encode the JWKS: {e}"))
}

/// Checks the outline of a JWKS document.
pub(crate) fn check_jwks(v: &Value) -> Result<(), String> {
    let keys = v
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or_else(|| "expected a JWKS object with a \"keys\" list".to_string())?;
    if keys.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    if let Some(i) = keys.iter().position(|k| !k.is_object()) {
        return Err(format!("JWKS key {i} is not an object"));
    }
    Ok(())
}

/// Is `name` a valid HTTP header field name (RFC 9110 §5.1 token)?
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(crate::http::is_tchar)
}

/// The claim named by traefikoidc's only template form we accept: exactly `{{.Claims.name}}`
/// (also its YAML-escaped spelling `{{{{.Claims.name}}}}` from traefikoidc's docs, which arrives
/// verbatim from providers that do no templating). Anything else — other fields, pipelines,
/// functions, text around the action — is refused: we do not run Go templates.
pub(crate) fn claims_template(value: &str) -> Option<&str> {
    let v = value.trim();
    let inner = v
        .strip_prefix("{{{{.Claims.")
        .and_then(|r| r.strip_suffix("}}}}"))
        .or_else(|| {
            v.strip_prefix("{{.Claims.")
                .and_then(|r| r.strip_suffix("}}"))
        })?;
    if !inner.is_empty()
        && inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Some(inner)
    } else {
        None
    }
}
