//! Request `Cookie` parsing, rewriting and `Set-Cookie` building (RFC 6265).

/// Most cookies read from a request.
const MAX_COOKIES: usize = 512;

/// The cookies of a request, from every `Cookie` header, in order, borrowed from the headers
/// (at most 512; a value's surrounding double quotes removed).
pub fn pairs(headers: &[String]) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .flat_map(|h| header_pairs(h))
        .take(MAX_COOKIES)
}

/// The cookies of one `Cookie` header.
fn header_pairs(h: &str) -> impl Iterator<Item = (&str, &str)> {
    // `h.split(';')`, with a word-at-a-time search (see `textkey::find_byte`); `;` is ASCII, so
    // every cut is at a character boundary.
    let mut rest = Some(h);
    std::iter::from_fn(move || {
        let r = rest?;
        match crate::textkey::find_byte(r.as_bytes(), b';') {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
    .filter_map(pair)
}

/// Where one cookie of [`pairs`] lies in the headers: which header, and the byte ranges of its
/// name and value there. A request's cookies are found once and then read by position
/// ([`Spans::pairs`]), however many times the request looks at them.
#[derive(Debug, Clone, Copy)]
struct Span {
    header: u32,
    name: (u32, u32),
    value: (u32, u32),
}

/// The cookies of a request by position in its `Cookie` headers: for each, the header and the
/// byte ranges of its name and value there.
#[derive(Debug, Default)]
pub struct Spans(Vec<Span>);

impl Spans {
    /// Finds the cookies of `headers` (as [`pairs`]).
    pub fn of(headers: &[String]) -> Spans {
        Spans::of_in(headers, Spans::default())
    }

    /// As [`Spans::of`], into `buf`'s allocation (its contents are dropped).
    pub fn of_in(headers: &[String], buf: Spans) -> Spans {
        let mut out = buf.0;
        out.clear();
        let spans = headers.iter().enumerate().flat_map(|(i, h)| {
            let base = h.as_ptr() as usize;
            let at = move |s: &str| {
                let start = (s.as_ptr() as usize).saturating_sub(base);
                (
                    u32::try_from(start).unwrap_or(u32::MAX),
                    u32::try_from(start + s.len()).unwrap_or(u32::MAX),
                )
            };
            header_pairs(h).map(move |(k, v)| Span {
                header: u32::try_from(i).unwrap_or(u32::MAX),
                name: at(k),
                value: at(v),
            })
        });
        out.extend(spans.take(MAX_COOKIES));
        Spans(out)
    }

    /// Whether the allocation is small enough to keep for the next request.
    pub fn keepable(&self) -> bool {
        self.0.capacity() <= 64
    }

    /// The cookies, in order, from the `headers` they were found in.
    pub fn pairs<'a>(&'a self, headers: &'a [String]) -> impl Iterator<Item = (&'a str, &'a str)> {
        let slice = |h: &'a str, (a, b): (u32, u32)| h.get(a as usize..b as usize);
        self.0.iter().filter_map(move |s| {
            let h = headers.get(s.header as usize)?;
            Some((slice(h, s.name)?, slice(h, s.value)?))
        })
    }
}

/// One `name=value` of a `Cookie` header; `None` for a part without `=`.
///
/// Whitespace around names and values is ASCII whitespace, as Go's `net/http` reads it
/// (`str::trim` tests each character for Unicode whitespace).
fn pair(part: &str) -> Option<(&str, &str)> {
    let part = part.trim_ascii();
    // `split_once('=')`, with a word-at-a-time search; `=` is ASCII, so both cuts are at
    // character boundaries.
    let i = crate::textkey::find_byte(part.as_bytes(), b'=')?;
    let (k, v) = (part.get(..i)?, part.get(i + 1..)?);
    let v = v.trim_ascii();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    Some((k.trim_ascii(), v))
}

/// The cookies of a request, from every `Cookie` header, in order (see [`pairs`]).
pub fn parse(headers: &[String]) -> Vec<(String, String)> {
    pairs(headers)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The first value of cookie `name`.
pub fn value<'a>(cookies: &'a [(String, String)], name: &str) -> Option<&'a str> {
    cookies
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A `Cookie` header value of `cookies` without those for which `drop` is true; `None` when
/// nothing is left.
pub fn rebuild<'a>(
    cookies: impl IntoIterator<Item = (&'a str, &'a str)>,
    drop: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut out = String::new();
    for (k, v) in cookies.into_iter().filter(|(k, _)| !drop(k)) {
        // Every kept cookie writes at least its `=`: a non-empty `out` holds one already.
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    (!out.is_empty()).then_some(out)
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
        let h = ["a=1; b=\"2\"".to_string(), "c=3;;d".to_string()];
        assert_eq!(
            rebuild(pairs(&h), |k| k == "b").as_deref(),
            Some("a=1; c=3")
        );
        assert_eq!(rebuild(pairs(&h), |_| true), None);
        assert_eq!(
            rebuild(pairs(&["=".to_string()]), |_| false).as_deref(),
            Some("=")
        );
        let many = vec!["x=1; ".repeat(600)];
        assert_eq!(pairs(&many).count(), 512, "at most 512 cookies are read");
        assert_eq!(Spans::of(&many).pairs(&many).count(), 512);
        for hs in [
            h.to_vec(),
            many,
            vec![
                " a = \"\" ;b=é=1; ;c".to_string(),
                String::new(),
                "d=4".to_string(),
            ],
        ] {
            assert_eq!(
                Spans::of(&hs).pairs(&hs).collect::<Vec<_>>(),
                pairs(&hs).collect::<Vec<_>>(),
                "{hs:?}"
            );
        }
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
