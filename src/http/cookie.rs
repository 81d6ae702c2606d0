//! Request `Cookie` parsing, rewriting and `Set-Cookie` building (RFC 6265).

/// The cookies of a request, from every `Cookie` header, in order.
pub fn parse(headers: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for h in headers {
        for part in h.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if let Some((k, v)) = part.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                out.push((k.trim().to_string(), v.to_string()));
            }
            if out.len() >= 512 {
                return out;
            }
        }
    }
    out
}

/// The first value of cookie `name`.
pub fn value<'a>(cookies: &'a [(String, String)], name: &str) -> Option<&'a str> {
    cookies
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A `Cookie` header value without the cookies for which `drop` is true; `None` when nothing is
/// left.
pub fn rebuild(cookies: &[(String, String)], drop: impl Fn(&str) -> bool) -> Option<String> {
    let kept: Vec<String> = cookies
        .iter()
        .filter(|(k, _)| !drop(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("; "))
    }
}

/// `SameSite` attribute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (requires `Secure`).
    None,
}

/// Attributes of a cookie the plugin sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    /// `Path`.
    pub path: String,
    /// `Domain`, if any (host-only otherwise).
    pub domain: Option<String>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`.
    pub same_site: SameSite,
}

/// A `Set-Cookie` value. `max_age` `Some(0)` deletes the cookie; `None` makes a session cookie.
pub fn set_cookie(name: &str, value: &str, attrs: &CookieAttrs, max_age: Option<u64>) -> String {
    let mut s = format!("{name}={value}; Path={}", attrs.path);
    if let Some(d) = &attrs.domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={age}"));
        if age == 0 {
            s.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        }
    }
    if attrs.secure {
        s.push_str("; Secure");
    }
    if attrs.http_only {
        s.push_str("; HttpOnly");
    }
    s.push_str(match attrs.same_site {
        SameSite::Lax => "; SameSite=Lax",
        SameSite::Strict => "; SameSite=Strict",
        SameSite::None => "; SameSite=None",
    });
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parse_and_rebuild() {
        let c = parse(&["a=1; b=\"2\"".to_string(), "c=3;;d".to_string()]);
        assert_eq!(
            c,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("c".into(), "3".into())
            ]
        );
        assert_eq!(value(&c, "b"), Some("2"));
        assert_eq!(rebuild(&c, |k| k == "b").as_deref(), Some("a=1; c=3"));
        assert_eq!(rebuild(&c, |_| true), None);
    }

    #[test]
    fn builds_set_cookie() {
        let a = CookieAttrs {
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
        };
        assert_eq!(
            set_cookie("s", "v", &a, Some(60)),
            "s=v; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
        );
        assert!(set_cookie("s", "", &a, Some(0)).contains("Expires=Thu, 01 Jan 1970"));
    }
}
