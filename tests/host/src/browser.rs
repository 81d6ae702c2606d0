//! A scripted browser for tests: a cookie jar that behaves like a browser's, and navigation that
//! follows redirects one hop at a time and records each hop.
//!
//! - Cookies follow RFC 6265 (§5.1–5.4) with the parts of RFC 6265bis that browsers enforce:
//!   `Domain` (host-only unless given; refused when it does not domain-match the host), `Path`
//!   (default path of the request URI), `Secure` (stored and sent only over https, or over
//!   loopback http when [`Browser::treat_loopback_as_secure`] is on, as Chrome and Firefox do),
//!   `HttpOnly` (kept; [`CookieJar::document_cookie`] shows what a script would see), `Max-Age`
//!   (wins over `Expires`), `Expires` (RFC 6265 §5.1.1 date parsing), deletion by an expired
//!   cookie, the `__Secure-`/`__Host-` prefixes, `SameSite` (unset = `Lax`, as Chrome; `None`
//!   requires `Secure`), and the 4096-byte limit on name + value that browsers apply.
//! - Cookies ignore the port (RFC 6265 §8.5): an IdP on `127.0.0.1:A` and an app on
//!   `127.0.0.1:B` share cookies, as in a browser. To test with distinct host names, map a
//!   name to an address with [`Browser::resolve`] (like `curl --resolve`): the request goes to
//!   the address with the original `Host` header, and cookies follow the name.
//! - Every `Set-Cookie` header is recorded with its size and what the jar did with it
//!   ([`Browser::set_cookie_log`]), so tests can assert that each cookie stays under 4 KB.
//!
//! Transport: `ureq` 3, configured to follow no redirects and to return 4xx/5xx responses as
//! responses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use url::Url;

/// Browsers refuse a cookie whose name and value together exceed this (RFC 6265bis §5.6).
pub const MAX_COOKIE_NAME_VALUE: usize = 4096;

/// Redirects followed by one navigation before giving up (Chrome and Firefox use 20).
const MAX_REDIRECTS: usize = 20;

// ---------------------------------------------------------------------------------------------
// Cookies

/// The `SameSite` attribute (RFC 6265bis §5.6.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Sent on same-site requests and cross-site top-level GET navigations.
    Lax,
    /// Sent on every request (requires `Secure`).
    None,
    /// Not given: treated as `Lax` (Chrome's default).
    Unset,
}

/// One stored cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Domain, lower case, without a leading dot.
    pub domain: String,
    /// Sent to `domain` only (no `Domain` attribute), not to its subdomains.
    pub host_only: bool,
    /// Path.
    pub path: String,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`.
    pub same_site: SameSite,
    /// Expiry; `None` for a session cookie.
    pub expires: Option<SystemTime>,
    creation: u64,
}

impl Cookie {
    fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// What the jar did with one `Set-Cookie` header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieOutcome {
    /// Stored (new or replacing one with the same name, domain and path).
    Stored,
    /// An expired cookie: the matching stored cookie, if any, was removed.
    Deleted,
    /// Refused, with the reason.
    Rejected(String),
}

/// One `Set-Cookie` header as received.
#[derive(Clone, Debug)]
pub struct SetCookieRecord {
    /// The URL of the response that carried it.
    pub url: String,
    /// The header value as received.
    pub raw: String,
    /// The cookie name (empty when unparsable).
    pub name: String,
    /// What the jar did with it.
    pub outcome: CookieOutcome,
}

impl SetCookieRecord {
    /// Size of the header value in bytes (what counts against a browser's 4 KB per cookie).
    pub fn size(&self) -> usize {
        self.raw.len()
    }
}

/// The context of a request, for `SameSite` (RFC 6265bis §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteContext {
    /// The request is same-site (its initiator and every URL of its redirect chain are of the
    /// target's site).
    pub same_site: bool,
    /// A top-level navigation (not a subresource or API call).
    pub top_level: bool,
    /// A safe method (GET, HEAD).
    pub safe_method: bool,
}

impl SiteContext {
    /// A same-site top-level GET: every cookie that matches is sent.
    pub const SAME_SITE: Self = Self {
        same_site: true,
        top_level: true,
        safe_method: true,
    };
}

/// A browser's cookie store.
#[derive(Clone, Debug, Default)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
    next_creation: u64,
    clock_offset: Duration,
    secure_loopback: bool,
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// The jar's current time (wall clock plus [`CookieJar::advance_clock`]).
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + self.clock_offset
    }

    /// Moves the jar's clock forward, to expire cookies without waiting.
    pub fn advance_clock(&mut self, by: Duration) {
        self.clock_offset += by;
    }

    /// Whether `url` is a secure context for cookies.
    pub fn is_secure(&self, url: &Url) -> bool {
        url.scheme() == "https" || (self.secure_loopback && is_loopback(url))
    }

    /// Processes one `Set-Cookie` header received from `url` (RFC 6265 §5.2, §5.3).
    pub fn store(&mut self, url: &Url, header: &str) -> CookieOutcome {
        let now = self.now();
        let secure_ctx = self.is_secure(url);
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return CookieOutcome::Rejected("the URL has no host".into());
        };
        let parsed = match parse_set_cookie(header, now) {
            Ok(p) => p,
            Err(reason) => return CookieOutcome::Rejected(reason),
        };
        if parsed.name.len() + parsed.value.len() > MAX_COOKIE_NAME_VALUE {
            return CookieOutcome::Rejected(format!(
                "name + value is {} bytes, browsers allow {MAX_COOKIE_NAME_VALUE}",
                parsed.name.len() + parsed.value.len()
            ));
        }
        let (domain, host_only) = match parsed.domain {
            Some(d) if !d.is_empty() => {
                if !domain_match(&host, &d) {
                    return CookieOutcome::Rejected(format!(
                        "Domain={d} does not domain-match the host {host}"
                    ));
                }
                (d, false)
            }
            _ => (host.clone(), true),
        };
        let path = parsed.path.unwrap_or_else(|| default_path(url.path()));
        if parsed.secure && !secure_ctx {
            return CookieOutcome::Rejected(format!(
                "Secure cookie set over insecure {}",
                url.scheme()
            ));
        }
        // RFC 6265bis §5.6 step 15: an insecure origin cannot shadow a Secure cookie.
        if !secure_ctx
            && self.cookies.iter().any(|c| {
                c.secure
                    && c.name == parsed.name
                    && (domain_match(&domain, &c.domain) || domain_match(&c.domain, &domain))
                    && path_match(&path, &c.path)
            })
        {
            return CookieOutcome::Rejected("would overwrite a Secure cookie from http".into());
        }
        if parsed.same_site == SameSite::None && !parsed.secure {
            return CookieOutcome::Rejected("SameSite=None without Secure".into());
        }
        // RFC 6265bis §4.1.3: cookie name prefixes.
        if parsed.name.starts_with("__Secure-") && !parsed.secure {
            return CookieOutcome::Rejected("__Secure- prefix without Secure".into());
        }
        if parsed.name.starts_with("__Host-") && (!parsed.secure || !host_only || path != "/") {
            return CookieOutcome::Rejected(
                "__Host- prefix needs Secure, no Domain and Path=/".into(),
            );
        }
        let existing = self
            .cookies
            .iter()
            .position(|c| c.name == parsed.name && c.domain == domain && c.path == path);
        let expired = parsed.expires.is_some_and(|e| e <= now);
        if expired {
            if let Some(i) = existing {
                self.cookies.remove(i);
            }
            return CookieOutcome::Deleted;
        }
        let creation = match existing {
            Some(i) => self.cookies.remove(i).creation,
            None => {
                self.next_creation += 1;
                self.next_creation
            }
        };
        self.cookies.push(Cookie {
            name: parsed.name,
            value: parsed.value,
            domain,
            host_only,
            path,
            secure: parsed.secure,
            http_only: parsed.http_only,
            same_site: parsed.same_site,
            expires: parsed.expires,
            creation,
        });
        CookieOutcome::Stored
    }

    /// The cookies a request to `url` carries, in RFC 6265 §5.4 order.
    pub fn matching(&self, url: &Url, ctx: SiteContext) -> Vec<&Cookie> {
        let now = self.now();
        let secure_ctx = self.is_secure(url);
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return Vec::new();
        };
        let path = url.path();
        let mut out: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| !c.expired(now))
            .filter(|c| {
                if c.host_only {
                    c.domain == host
                } else {
                    domain_match(&host, &c.domain)
                }
            })
            .filter(|c| path_match(path, &c.path))
            .filter(|c| !c.secure || secure_ctx)
            .filter(|c| match c.same_site {
                SameSite::None => true,
                SameSite::Strict => ctx.same_site,
                SameSite::Lax | SameSite::Unset => {
                    ctx.same_site || (ctx.top_level && ctx.safe_method)
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(a.creation.cmp(&b.creation))
        });
        out
    }

    /// The `Cookie` header for a request to `url`, if any cookie matches.
    pub fn cookie_header(&self, url: &Url, ctx: SiteContext) -> Option<String> {
        let cookies = self.matching(url, ctx);
        if cookies.is_empty() {
            return None;
        }
        Some(
            cookies
                .iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// What `document.cookie` would show on a same-site page at `url` (no `HttpOnly` cookies).
    pub fn document_cookie(&self, url: &Url) -> String {
        self.matching(url, SiteContext::SAME_SITE)
            .iter()
            .filter(|c| !c.http_only)
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every live cookie.
    pub fn cookies(&self) -> Vec<&Cookie> {
        let now = self.now();
        self.cookies.iter().filter(|c| !c.expired(now)).collect()
    }

    /// The first live cookie with this name (any domain and path).
    pub fn get(&self, name: &str) -> Option<&Cookie> {
        let now = self.now();
        self.cookies
            .iter()
            .find(|c| c.name == name && !c.expired(now))
    }

    /// Live cookies whose name starts with `prefix` (e.g. chunked session cookies).
    pub fn with_prefix(&self, prefix: &str) -> Vec<&Cookie> {
        let now = self.now();
        self.cookies
            .iter()
            .filter(|c| c.name.starts_with(prefix) && !c.expired(now))
            .collect()
    }

    /// A `Cookie` header value of the live cookies whose name starts with `prefix`.
    pub fn header_with_prefix(&self, prefix: &str) -> String {
        self.with_prefix(prefix)
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sets a cookie's value by hand (a host-only session cookie with `Path=/` for `url`'s host,
    /// replacing any cookie with that name, domain and path), e.g. to tamper with a session.
    ///
    /// # Errors
    /// `url` has no host.
    pub fn set(&mut self, url: &Url, name: &str, value: &str) -> Result<()> {
        let host = url
            .host_str()
            .ok_or_else(|| anyhow!("{url} has no host"))?
            .to_ascii_lowercase();
        let old = self
            .cookies
            .iter()
            .position(|c| c.name == name && c.domain == host && c.path == "/");
        let mut cookie = Cookie {
            name: name.to_owned(),
            value: value.to_owned(),
            domain: host,
            host_only: true,
            path: "/".to_owned(),
            secure: false,
            http_only: true,
            same_site: SameSite::Lax,
            expires: None,
            creation: 0,
        };
        match old {
            Some(i) => {
                let prev = self.cookies.remove(i);
                cookie = Cookie {
                    creation: prev.creation,
                    secure: prev.secure,
                    http_only: prev.http_only,
                    same_site: prev.same_site,
                    expires: prev.expires,
                    ..cookie
                };
            }
            None => {
                self.next_creation += 1;
                cookie.creation = self.next_creation;
            }
        }
        self.cookies.push(cookie);
        Ok(())
    }

    /// Removes every cookie with this name; returns how many.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.cookies.len();
        self.cookies.retain(|c| c.name != name);
        before - self.cookies.len()
    }

    /// Removes every session cookie (no expiry), as closing the browser does.
    pub fn end_session(&mut self) {
        self.cookies.retain(|c| c.expires.is_some());
    }

    /// Removes every cookie.
    pub fn clear(&mut self) {
        self.cookies.clear();
    }
}

struct ParsedSetCookie {
    name: String,
    value: String,
    domain: Option<String>,
    path: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    expires: Option<SystemTime>,
}

/// RFC 6265 §5.2: parses a `Set-Cookie` header value; `Max-Age` wins over `Expires`.
fn parse_set_cookie(header: &str, now: SystemTime) -> Result<ParsedSetCookie, String> {
    let mut parts = header.split(';');
    let pair = parts.next().unwrap_or_default();
    let (name, value) = pair
        .split_once('=')
        .ok_or_else(|| "no '=' in the name-value pair".to_owned())?;
    let name = name.trim();
    if name.is_empty() {
        return Err("empty cookie name".into());
    }
    let mut out = ParsedSetCookie {
        name: name.to_owned(),
        value: value.trim().to_owned(),
        domain: None,
        path: None,
        secure: false,
        http_only: false,
        same_site: SameSite::Unset,
        expires: None,
    };
    let mut max_age: Option<SystemTime> = None;
    let mut expires: Option<SystemTime> = None;
    for attr in parts {
        let (k, v) = match attr.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (attr.trim(), ""),
        };
        match k.to_ascii_lowercase().as_str() {
            "expires" => {
                if let Some(t) = parse_cookie_date(v) {
                    expires = Some(t);
                }
            }
            "max-age" => {
                let digits = v.strip_prefix('-').unwrap_or(v);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    let secs: i64 = v.parse().unwrap_or(i64::MAX);
                    max_age = Some(if secs <= 0 {
                        UNIX_EPOCH
                    } else {
                        now + Duration::from_secs(secs.unsigned_abs().min(400 * 86_400))
                    });
                }
            }
            "domain" => {
                let d = v.trim_start_matches('.').to_ascii_lowercase();
                out.domain = Some(d);
            }
            "path" => {
                out.path = if v.starts_with('/') {
                    Some(v.to_owned())
                } else {
                    None
                };
            }
            "secure" => out.secure = true,
            "httponly" => out.http_only = true,
            "samesite" => {
                out.same_site = match v.to_ascii_lowercase().as_str() {
                    "strict" => SameSite::Strict,
                    "lax" => SameSite::Lax,
                    "none" => SameSite::None,
                    _ => SameSite::Unset,
                }
            }
            _ => {}
        }
    }
    out.expires = max_age.or(expires);
    Ok(out)
}

/// RFC 6265 §5.1.1: the cookie date algorithm (accepts IMF-fixdate, RFC 850 and asctime forms).
pub fn parse_cookie_date(s: &str) -> Option<SystemTime> {
    let is_delim = |c: char| {
        c == '\t'
            || (' '..='/').contains(&c)
            || (';'..='@').contains(&c)
            || ('['..='`').contains(&c)
            || ('{'..='~').contains(&c)
    };
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    for token in s.split(is_delim).filter(|t| !t.is_empty()) {
        if time.is_none() {
            if let Some(t) = parse_time_token(token) {
                time = Some(t);
                continue;
            }
        }
        if day.is_none() {
            if let Some(d) = leading_digits(token, 1, 2) {
                day = Some(d);
                continue;
            }
        }
        if month.is_none() {
            let lower = token.get(..3).map(str::to_ascii_lowercase);
            let months = [
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ];
            if let Some(m) = lower.and_then(|l| months.iter().position(|m| *m == l)) {
                month = Some(m as u32 + 1);
                continue;
            }
        }
        if year.is_none() {
            if let Some(y) = leading_digits(token, 2, 4) {
                year = Some(y);
                continue;
            }
        }
    }
    let (h, mi, sec) = time?;
    let (day, month, mut year) = (day?, month?, year?);
    if (70..=99).contains(&year) {
        year += 1900;
    } else if year <= 69 {
        year += 2000;
    }
    if !(1..=31).contains(&day) || year < 1601 || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec);
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()))
    } else {
        Some(UNIX_EPOCH)
    }
}

/// `min..=max` digits at the start of `token`, followed by nothing or a non-digit.
fn leading_digits(token: &str, min: usize, max: usize) -> Option<u32> {
    let n = token.bytes().take_while(u8::is_ascii_digit).count();
    if n < min || n > max {
        return None;
    }
    token.get(..n)?.parse().ok()
}

/// `h[h]:m[m]:s[s]` (RFC 6265 §5.1.1 time-field), trailing non-digits allowed.
fn parse_time_token(token: &str) -> Option<(u32, u32, u32)> {
    let mut it = token.splitn(3, ':');
    let h = it.next()?;
    let m = it.next()?;
    let s = it.next()?;
    let exact = |p: &str| {
        if (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        }
    };
    Some((exact(h)?, exact(m)?, leading_digits(s, 1, 2)?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 6265 §5.1.3.
fn domain_match(host: &str, domain: &str) -> bool {
    if host == domain {
        return true;
    }
    host.parse::<IpAddr>().is_err()
        && host.len() > domain.len()
        && host.ends_with(domain)
        && host
            .as_bytes()
            .get(host.len() - domain.len() - 1)
            .is_some_and(|b| *b == b'.')
}

/// RFC 6265 §5.1.4 path-match.
fn path_match(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// RFC 6265 §5.1.4 default-path.
fn default_path(uri_path: &str) -> String {
    if !uri_path.starts_with('/') {
        return "/".into();
    }
    match uri_path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => uri_path.get(..i).unwrap_or("/").to_owned(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The "site" of a URL for `SameSite`: scheme and registrable domain. Without a public suffix
/// list, the registrable domain is taken as the last two labels (`app.example.test` →
/// `example.test`), an IP address as itself. Ports do not count (schemeful same-site).
pub fn site_of(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => {
            let labels: Vec<&str> = d.trim_end_matches('.').split('.').collect();
            let n = labels.len();
            labels
                .get(n.saturating_sub(2)..)
                .map(|l| l.join("."))
                .unwrap_or_default()
                .to_ascii_lowercase()
        }
        Some(h) => h.to_string(),
        None => String::new(),
    };
    format!("{}://{}", url.scheme(), host)
}

// ---------------------------------------------------------------------------------------------
// Requests and pages

/// Which redirects a navigation follows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Follow {
    /// Every redirect (up to 20).
    All,
    /// None: the first response is returned.
    None,
    /// Every redirect except one whose `Location` starts with this prefix (e.g. a client's
    /// `redirect_uri` that nothing serves); the page is then that redirect.
    Until(String),
}

/// A request for [`Browser::send`]. Defaults: a top-level navigation typed by the user (no
/// initiator), following every redirect.
#[derive(Clone, Debug)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Extra request headers (kept across same-origin redirects; `Authorization` is dropped
    /// on a cross-origin redirect).
    pub headers: Vec<(String, String)>,
    /// Body and its content type.
    pub body: Option<(String, Vec<u8>)>,
    /// Redirect policy.
    pub follow: Follow,
    /// The URL of the page that started this request, if any (for `SameSite`).
    pub initiator: Option<String>,
    /// A top-level navigation (`true`) or a subresource/API call.
    pub top_level: bool,
}

impl Request {
    /// A request with this method and URL.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
            follow: Follow::All,
            initiator: None,
            top_level: true,
        }
    }

    /// A GET.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A POST of `application/x-www-form-urlencoded` fields.
    pub fn post_form(url: &str, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Self::new("POST", url).body("application/x-www-form-urlencoded", body.into_bytes())
    }

    /// Sets the body.
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Returns the first response, following no redirect.
    pub fn no_follow(mut self) -> Self {
        self.follow = Follow::None;
        self
    }

    /// Follows redirects until one points at a URL starting with `prefix`.
    pub fn until(mut self, prefix: &str) -> Self {
        self.follow = Follow::Until(prefix.to_owned());
        self
    }

    /// Marks the request as started from the page at `url` (for `SameSite`).
    pub fn initiator(mut self, url: &str) -> Self {
        self.initiator = Some(url.to_owned());
        self
    }

    /// Marks the request as a subresource or API call rather than a navigation.
    pub fn subresource(mut self) -> Self {
        self.top_level = false;
        self
    }
}

/// One response of a navigation.
#[derive(Clone, Debug)]
pub struct Hop {
    /// Method of the request.
    pub method: String,
    /// URL of the request.
    pub url: String,
    /// The `Cookie` header sent, if any.
    pub cookie_header: Option<String>,
    /// Status of the response.
    pub status: u16,
    /// Its `Location`, resolved against `url`.
    pub location: Option<String>,
    /// Its `Set-Cookie` headers and what the jar did with them.
    pub set_cookies: Vec<SetCookieRecord>,
}

/// The result of a navigation: its last response, and every hop on the way.
#[derive(Clone, Debug)]
pub struct Page {
    /// URL of the last request.
    pub url: String,
    /// Status of the last response.
    pub status: u16,
    /// Headers of the last response (names in lower case).
    pub headers: Vec<(String, String)>,
    /// Body of the last response.
    pub body: Vec<u8>,
    /// Every response of this navigation, the last one included.
    pub hops: Vec<Hop>,
}

impl Page {
    /// The first value of a response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a response header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last response's `Location`, resolved against the page URL.
    pub fn location(&self) -> Option<&str> {
        self.hops.last().and_then(|h| h.location.as_deref())
    }

    /// Whether the last response is a redirect (3xx with `Location`).
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status) && self.location().is_some()
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// The body is not JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "{} {}: body is not JSON: {}",
                self.status,
                self.url,
                self.text()
            )
        })
    }

    /// The first HTML form of the page.
    pub fn form(&self) -> Option<Form> {
        Form::parse(&self.text(), &self.url)
    }

    /// Every `Set-Cookie` of this navigation.
    pub fn set_cookies(&self) -> impl Iterator<Item = &SetCookieRecord> {
        self.hops.iter().flat_map(|h| h.set_cookies.iter())
    }

    /// The URLs visited, in order.
    pub fn urls(&self) -> Vec<&str> {
        self.hops.iter().map(|h| h.url.as_str()).collect()
    }
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// An HTML form: enough to submit the simple forms of an IdP (hidden inputs, text inputs,
/// checked boxes, selects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Form {
    /// Absolute action URL.
    pub action: String,
    /// `GET` or `POST`.
    pub method: String,
    /// Fields in document order.
    pub fields: Vec<(String, String)>,
}

impl Form {
    /// Parses the first `<form>` of `html`; relative actions resolve against `base`.
    pub fn parse(html: &str, base: &str) -> Option<Self> {
        let lower = html.to_ascii_lowercase();
        let start = lower.find("<form")?;
        let end = lower
            .get(start..)
            .and_then(|s| s.find("</form"))
            .map_or(html.len(), |e| start + e);
        let form_html = html.get(start..end)?;
        let (_, form_attrs, _) = tags(form_html).into_iter().next()?;
        let action = attr(&form_attrs, "action").unwrap_or_default();
        let action = Url::parse(base).ok()?.join(&action).ok()?.to_string();
        let method = attr(&form_attrs, "method")
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase();
        let mut fields = Vec::new();
        let mut select: Option<(String, Option<String>, bool)> = None;
        for (name, attrs, _) in tags(form_html) {
            match name.as_str() {
                "input" => {
                    let Some(n) = attr(&attrs, "name") else {
                        continue;
                    };
                    let ty = attr(&attrs, "type")
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    match ty.as_str() {
                        "submit" | "button" | "image" | "reset" | "file" => continue,
                        "checkbox" | "radio" if attr(&attrs, "checked").is_none() => continue,
                        "checkbox" | "radio" => {
                            fields.push((n, attr(&attrs, "value").unwrap_or_else(|| "on".into())))
                        }
                        _ => fields.push((n, attr(&attrs, "value").unwrap_or_default())),
                    }
                }
                "select" => select = attr(&attrs, "name").map(|n| (n, None, false)),
                "option" => {
                    if let Some((_, value, chosen)) = select.as_mut() {
                        let v = attr(&attrs, "value");
                        let selected = attr(&attrs, "selected").is_some();
                        if value.is_none() || (selected && !*chosen) {
                            *value = v;
                            *chosen = selected;
                        }
                    }
                }
                "/select" => {
                    if let Some((n, Some(v), _)) = select.take() {
                        fields.push((n, v));
                    }
                }
                _ => {}
            }
        }
        Some(Self {
            action,
            method,
            fields,
        })
    }

    /// Sets a field (replacing its value, or adding it).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some(f) => f.1 = value.to_owned(),
            None => self.fields.push((name.to_owned(), value.to_owned())),
        }
    }
}

/// The tags of an HTML fragment: (lower-case name, attribute text, offset).
fn tags(html: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut rest = html;
    let mut offset = 0;
    while let Some(lt) = rest.find('<') {
        let after = rest.get(lt + 1..).unwrap_or_default();
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'/')
            .count();
        let name = after
            .get(..name_len)
            .unwrap_or_default()
            .to_ascii_lowercase();
        // The end of the tag: the first '>' outside quotes.
        let mut quote = None;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '>') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let attrs = after.get(name_len..end).unwrap_or_default().to_owned();
        if !name.is_empty() {
            out.push((name, attrs, offset + lt));
        }
        let consumed = lt + 1 + end + 1;
        offset += consumed;
        rest = rest.get(consumed..).unwrap_or_default();
    }
    out
}

/// The value of attribute `name` in a tag's attribute text (HTML entities decoded); `Some("")`
/// for a bare attribute.
fn attr(attrs: &str, name: &str) -> Option<String> {
    let mut s = attrs;
    loop {
        s = s.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if s.is_empty() {
            return None;
        }
        let n_len = s
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>' || c == '/')
            .unwrap_or(s.len());
        let key = s.get(..n_len)?.to_ascii_lowercase();
        s = s.get(n_len..)?.trim_start();
        let mut value = String::new();
        if let Some(after_eq) = s.strip_prefix('=') {
            let v = after_eq.trim_start();
            let (val, rest) = match v.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let inner = v.get(1..)?;
                    let close = inner.find(q).unwrap_or(inner.len());
                    (
                        inner.get(..close)?,
                        inner.get(close + 1..).unwrap_or_default(),
                    )
                }
                _ => {
                    let close = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
                    (v.get(..close)?, v.get(close..).unwrap_or_default())
                }
            };
            value = decode_entities(val);
            s = rest;
        }
        if key == name {
            return Some(value);
        }
        if key.is_empty() {
            // Not an attribute name: skip one character so the loop always advances.
            s = s.get(1..).unwrap_or_default();
        }
    }
}

fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------------
// The browser

/// A scripted browser: a cookie jar, name overrides, and redirect-by-redirect navigation.
#[derive(Debug)]
pub struct Browser {
    agent: ureq::Agent,
    jar: CookieJar,
    resolve: HashMap<(String, u16), SocketAddr>,
    default_headers: Vec<(String, String)>,
    set_cookie_log: Vec<SetCookieRecord>,
    history: Vec<Hop>,
    enforce_same_site: bool,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty jar.
    pub fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .user_agent("oidc-guard-test-browser/1")
            .build()
            .into();
        Self {
            agent,
            jar: CookieJar::new(),
            resolve: HashMap::new(),
            default_headers: vec![(
                "accept".into(),
                "text/html,application/xhtml+xml,*/*;q=0.8".into(),
            )],
            set_cookie_log: Vec::new(),
            history: Vec::new(),
            enforce_same_site: true,
        }
    }

    /// Sends requests for `host:port` to `addr`, keeping `Host: host[:port]` (like
    /// `curl --resolve host:port:addr`). Cookies follow `host`.
    pub fn resolve(&mut self, host: &str, port: u16, addr: SocketAddr) -> &mut Self {
        self.resolve.insert((host.to_ascii_lowercase(), port), addr);
        self
    }

    /// Treats `http://localhost` and `http://127.0.0.1` as secure for cookies (Chrome and
    /// Firefox do), so `Secure` cookies work on loopback http. Off by default.
    pub fn treat_loopback_as_secure(&mut self, on: bool) -> &mut Self {
        self.jar.secure_loopback = on;
        self
    }

    /// Turns `SameSite` enforcement off (every matching cookie is sent). On by default.
    pub fn enforce_same_site(&mut self, on: bool) -> &mut Self {
        self.enforce_same_site = on;
        self
    }

    /// Adds a header to every request (replacing a default header of that name).
    pub fn default_header(&mut self, name: &str, value: &str) -> &mut Self {
        let name = name.to_ascii_lowercase();
        self.default_headers.retain(|(k, _)| *k != name);
        self.default_headers.push((name, value.to_owned()));
        self
    }

    /// The cookie jar.
    pub fn jar(&self) -> &CookieJar {
        &self.jar
    }

    /// The cookie jar, to change.
    pub fn jar_mut(&mut self) -> &mut CookieJar {
        &mut self.jar
    }

    /// Every `Set-Cookie` header received since the start (or [`Browser::clear_logs`]).
    pub fn set_cookie_log(&self) -> &[SetCookieRecord] {
        &self.set_cookie_log
    }

    /// Every hop of every navigation since the start (or [`Browser::clear_logs`]).
    pub fn history(&self) -> &[Hop] {
        &self.history
    }

    /// Forgets the `Set-Cookie` log and the history (the cookies stay).
    pub fn clear_logs(&mut self) {
        self.set_cookie_log.clear();
        self.history.clear();
    }

    /// Navigates to `url`, following every redirect.
    ///
    /// # Errors
    /// Transport errors, an invalid URL or `Location`, more than 20 redirects.
    pub fn get(&mut self, url: &str) -> Result<Page> {
        self.send(Request::get(url))
    }

    /// Navigates to `url`, following redirects until one points at `prefix`.
    ///
    /// # Errors
    /// As [`Browser::get`].
    pub fn get_until(&mut self, url: &str, prefix: &str) -> Result<Page> {
        self.send(Request::get(url).until(prefix))
    }

    /// Posts form fields to `url`, following redirects.
    ///
    /// # Errors
    /// As [`Browser::get`].
    pub fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Result<Page> {
        self.send(Request::post_form(url, fields))
    }

    /// Submits `page`'s first form as a browser would (initiated by that page), following
    /// redirects until one points at `until` when given.
    ///
    /// # Errors
    /// The page has no form; as [`Browser::get`].
    pub fn submit_form(&mut self, page: &Page, until: Option<&str>) -> Result<Page> {
        let form = page
            .form()
            .ok_or_else(|| anyhow!("{} has no <form>: {}", page.url, page.text()))?;
        self.submit(&form, &page.url, until)
    }

    /// Submits a form (possibly edited) from the page at `from`.
    ///
    /// # Errors
    /// As [`Browser::get`].
    pub fn submit(&mut self, form: &Form, from: &str, until: Option<&str>) -> Result<Page> {
        let fields: Vec<(&str, &str)> = form
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut req = if form.method == "POST" {
            Request::post_form(&form.action, &fields)
        } else {
            let mut url = Url::parse(&form.action)?;
            url.query_pairs_mut().clear().extend_pairs(&fields);
            Request::get(url.as_str())
        };
        req = req.initiator(from);
        if let Some(prefix) = until {
            req = req.until(prefix);
        }
        self.send(req)
    }

    /// Sends a request and follows redirects per its policy, storing cookies at every hop.
    ///
    /// # Errors
    /// Transport errors, an invalid URL or `Location`, more than 20 redirects.
    pub fn send(&mut self, req: Request) -> Result<Page> {
        let initiator_site = match &req.initiator {
            Some(u) => Some(site_of(
                &Url::parse(u).with_context(|| format!("initiator {u}"))?,
            )),
            None => None,
        };
        let mut url = Url::parse(&req.url).with_context(|| format!("URL {}", req.url))?;
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut headers = req.headers.clone();
        let mut chain_sites: Vec<String> = Vec::new();
        let mut hops = Vec::new();
        loop {
            let site = site_of(&url);
            let same_site = !self.enforce_same_site
                || (initiator_site.as_ref().is_none_or(|s| *s == site)
                    && chain_sites.iter().all(|s| *s == site));
            let ctx = SiteContext {
                same_site,
                top_level: req.top_level,
                safe_method: method == "GET" || method == "HEAD",
            };
            let cookie_header = self.jar.cookie_header(&url, ctx);
            let RawResponse {
                status,
                headers: resp_headers,
                body: resp_body,
            } = self.exchange(
                &method,
                &url,
                &headers,
                body.as_ref(),
                cookie_header.as_deref(),
            )?;

            let mut set_cookies = Vec::new();
            for (k, v) in &resp_headers {
                if k == "set-cookie" {
                    let outcome = self.jar.store(&url, v);
                    let name = v
                        .split(';')
                        .next()
                        .and_then(|p| p.split_once('='))
                        .map(|(n, _)| n.trim().to_owned())
                        .unwrap_or_default();
                    set_cookies.push(SetCookieRecord {
                        url: url.to_string(),
                        raw: v.clone(),
                        name,
                        outcome,
                    });
                }
            }
            self.set_cookie_log.extend(set_cookies.iter().cloned());
            let location = resp_headers
                .iter()
                .find(|(k, _)| k == "location")
                .map(|(_, v)| url.join(v).map(|u| u.to_string()))
                .transpose()
                .with_context(|| format!("invalid Location from {url}"))?;
            let hop = Hop {
                method: method.clone(),
                url: url.to_string(),
                cookie_header,
                status,
                location: location.clone(),
                set_cookies,
            };
            self.history.push(hop.clone());
            hops.push(hop);

            let next = match (&location, (300..400).contains(&status) && status != 304) {
                (Some(loc), true) => match &req.follow {
                    Follow::All => Some(loc.clone()),
                    Follow::None => None,
                    Follow::Until(prefix) if loc.starts_with(prefix.as_str()) => None,
                    Follow::Until(_) => Some(loc.clone()),
                },
                _ => None,
            };
            let Some(next) = next else {
                return Ok(Page {
                    url: url.to_string(),
                    status,
                    headers: resp_headers,
                    body: resp_body,
                    hops,
                });
            };
            if hops.len() > MAX_REDIRECTS {
                bail!(
                    "more than {MAX_REDIRECTS} redirects; visited: {:?}",
                    hops.iter().map(|h| h.url.as_str()).collect::<Vec<_>>()
                );
            }
            let next = Url::parse(&next)?;
            // Fetch §4.4 (HTTP-redirect fetch): 303, and 301/302 after a POST, become a GET
            // without a body; 307/308 keep the method and body.
            if status == 303 || ((status == 301 || status == 302) && method == "POST") {
                if method != "HEAD" {
                    method = "GET".into();
                }
                body = None;
            }
            if next.origin() != url.origin() {
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
            }
            chain_sites.push(site);
            url = next;
        }
    }

    /// One HTTP exchange.
    fn exchange(
        &self,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: Option<&(String, Vec<u8>)>,
        cookie: Option<&str>,
    ) -> Result<RawResponse> {
        let host = url.host_str().ok_or_else(|| anyhow!("{url} has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| anyhow!("{url} has no port"))?;
        let mut target = url.clone();
        let mut host_header = None;
        if let Some(addr) = self.resolve.get(&(host.to_ascii_lowercase(), port)) {
            host_header = Some(match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            });
            target
                .set_ip_host(addr.ip())
                .map_err(|()| anyhow!("cannot address {addr}"))?;
            target
                .set_port(Some(addr.port()))
                .map_err(|()| anyhow!("cannot address {addr}"))?;
        }
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(target.as_str());
        if let Some(h) = &host_header {
            builder = builder.header("host", h.as_str());
        }
        for (k, v) in &self.default_headers {
            if !headers.iter().any(|(hk, _)| hk.eq_ignore_ascii_case(k)) {
                builder = builder.header(k.as_str(), v.as_str());
            }
        }
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(c) = cookie {
            builder = builder.header("cookie", c);
        }
        let result = match body {
            Some((ct, bytes)) => {
                builder = builder.header("content-type", ct.as_str());
                self.agent.run(builder.body(bytes.clone())?)
            }
            None if method == "POST" || method == "PUT" || method == "PATCH" => {
                self.agent.run(builder.body(Vec::new())?)
            }
            None => self.agent.run(builder.body(())?),
        };
        let mut resp = result.with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let resp_headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .with_context(|| format!("{method} {url}: reading the body"))?;
        Ok(RawResponse {
            status,
            headers: resp_headers,
            body,
        })
    }
}

/// One response as received.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn dates_in_the_three_http_forms() {
        let want = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_cookie_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(want)
        );
        assert_eq!(
            parse_cookie_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(want)
        );
        assert_eq!(parse_cookie_date("Sun Nov  6 08:49:37 1994"), Some(want));
        assert_eq!(
            parse_cookie_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(parse_cookie_date("not a date"), None);
        assert_eq!(parse_cookie_date("Sun, 32 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn host_only_domain_path_and_port_independence() {
        let mut jar = CookieJar::new();
        let app = u("http://127.0.0.1:8080/app/login");
        assert_eq!(jar.store(&app, "a=1"), CookieOutcome::Stored);
        assert_eq!(jar.store(&app, "b=2; Path=/"), CookieOutcome::Stored);
        // Another port of the same host sees them (RFC 6265 §8.5); default path is /app.
        let other = u("http://127.0.0.1:9999/app/x");
        assert_eq!(
            jar.cookie_header(&other, SiteContext::SAME_SITE).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            jar.cookie_header(&u("http://127.0.0.1:9999/"), SiteContext::SAME_SITE)
                .as_deref(),
            Some("b=2")
        );
        // /application does not path-match /app.
        assert_eq!(
            jar.cookie_header(&u("http://127.0.0.1/application"), SiteContext::SAME_SITE)
                .as_deref(),
            Some("b=2")
        );
        // A Domain on an IP host must equal it.
        assert!(matches!(
            jar.store(&app, "c=3; Domain=0.0.1"),
            CookieOutcome::Rejected(_)
        ));

        let mut jar = CookieJar::new();
        let sub = u("http://app.example.test/");
        assert_eq!(
            jar.store(&sub, "d=4; Domain=.Example.test; Path=/"),
            CookieOutcome::Stored
        );
        assert_eq!(jar.store(&sub, "h=5"), CookieOutcome::Stored);
        assert!(matches!(
            jar.store(&sub, "e=5; Domain=other.test"),
            CookieOutcome::Rejected(_)
        ));
        let sibling = u("http://idp.example.test/");
        assert_eq!(
            jar.cookie_header(&sibling, SiteContext::SAME_SITE)
                .as_deref(),
            Some("d=4")
        );
        assert_eq!(
            jar.cookie_header(&sub, SiteContext::SAME_SITE).as_deref(),
            Some("d=4; h=5")
        );
    }

    #[test]
    fn expiry_and_deletion() {
        let mut jar = CookieJar::new();
        let url = u("http://localhost/");
        assert_eq!(jar.store(&url, "s=1; Max-Age=60"), CookieOutcome::Stored);
        assert_eq!(
            jar.store(&url, "t=1; Expires=Wed, 01 Jan 2500 00:00:00 GMT"),
            CookieOutcome::Stored
        );
        // Max-Age wins over Expires.
        assert_eq!(
            jar.store(
                &url,
                "m=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60"
            ),
            CookieOutcome::Stored
        );
        assert_eq!(jar.cookies().len(), 3);
        assert_eq!(jar.store(&url, "s=; Max-Age=0"), CookieOutcome::Deleted);
        assert_eq!(
            jar.store(&url, "t=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            CookieOutcome::Deleted
        );
        assert_eq!(jar.cookies().len(), 1);
        jar.advance_clock(Duration::from_secs(61));
        assert!(jar.cookies().is_empty());
        assert_eq!(jar.cookie_header(&url, SiteContext::SAME_SITE), None);
    }

    #[test]
    fn secure_http_only_prefixes_and_size() {
        let mut jar = CookieJar::new();
        let http = u("http://127.0.0.1/");
        let https = u("https://app.test/");
        assert!(matches!(
            jar.store(&http, "s=1; Secure"),
            CookieOutcome::Rejected(_)
        ));
        assert_eq!(
            jar.store(&https, "s=1; Secure; HttpOnly"),
            CookieOutcome::Stored
        );
        assert_eq!(jar.store(&https, "js=2"), CookieOutcome::Stored);
        assert_eq!(
            jar.cookie_header(&u("http://app.test/"), SiteContext::SAME_SITE)
                .as_deref(),
            Some("js=2")
        );
        assert_eq!(jar.document_cookie(&https), "js=2");
        assert!(matches!(
            jar.store(&https, "__Host-x=1; Secure; Domain=app.test; Path=/"),
            CookieOutcome::Rejected(_)
        ));
        assert_eq!(
            jar.store(&https, "__Host-x=1; Secure; Path=/"),
            CookieOutcome::Stored
        );
        assert!(matches!(
            jar.store(&https, "n=1; SameSite=None"),
            CookieOutcome::Rejected(_)
        ));
        let big = format!("big={}", "x".repeat(MAX_COOKIE_NAME_VALUE));
        assert!(matches!(
            jar.store(&https, &big),
            CookieOutcome::Rejected(_)
        ));

        let mut jar = CookieJar::new();
        jar.secure_loopback = true;
        assert_eq!(jar.store(&http, "s=1; Secure"), CookieOutcome::Stored);
    }

    #[test]
    fn same_site_rules() {
        let mut jar = CookieJar::new();
        let url = u("http://app.test/");
        jar.store(&url, "strict=1; SameSite=Strict");
        jar.store(&url, "lax=1; SameSite=Lax");
        jar.store(&url, "unset=1");
        let cross_nav = SiteContext {
            same_site: false,
            top_level: true,
            safe_method: true,
        };
        assert_eq!(
            jar.cookie_header(&url, cross_nav).as_deref(),
            Some("lax=1; unset=1")
        );
        let cross_post = SiteContext {
            safe_method: false,
            ..cross_nav
        };
        assert_eq!(jar.cookie_header(&url, cross_post), None);
        assert_eq!(
            jar.cookie_header(&url, SiteContext::SAME_SITE).as_deref(),
            Some("strict=1; lax=1; unset=1")
        );
        assert_eq!(
            site_of(&u("http://a.b.example.test:81/")),
            "http://example.test"
        );
        assert_eq!(site_of(&u("http://127.0.0.1:81/")), "http://127.0.0.1");
    }

    #[test]
    fn forms() {
        let html = r#"<html><form id="op.logoutForm" method="post" action="/session/end/confirm"><input type="hidden" name="xsrf" value="a&amp;b"/><input type="hidden" name="logout" value="yes"/><input type=checkbox name=c><select name="user"><option value="alice">A</option><option value="bob" selected>B</option></select><button type="submit">Go</button></form></html>"#;
        let form = Form::parse(html, "http://127.0.0.1:3000/session/end?x=1").unwrap();
        assert_eq!(form.action, "http://127.0.0.1:3000/session/end/confirm");
        assert_eq!(form.method, "POST");
        assert_eq!(
            form.fields,
            vec![
                ("xsrf".to_owned(), "a&b".to_owned()),
                ("logout".to_owned(), "yes".to_owned()),
                ("user".to_owned(), "bob".to_owned()),
            ]
        );
        assert_eq!(Form::parse("<p>no form</p>", "http://x/"), None);
    }

    #[test]
    fn default_paths() {
        assert_eq!(default_path("/"), "/");
        assert_eq!(default_path("/a"), "/");
        assert_eq!(default_path("/a/b"), "/a");
        assert_eq!(default_path("/a/b/"), "/a/b");
        assert_eq!(default_path(""), "/");
    }
}
