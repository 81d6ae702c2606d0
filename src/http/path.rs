//! Request-target normalisation for path-based decisions (`excludedURLs`, callback and logout
//! paths, health paths).
//!
//! The decision is taken on the path the backend will most plausibly act on: percent-decoded
//! once, dot segments removed (RFC 3986 §5.2.4), duplicate slashes collapsed. Anything that makes
//! that interpretation ambiguous — encoded slashes or backslashes (`%2F`, `%5C`), a raw
//! backslash, a NUL, a `%` left over after one decoding (double encoding), invalid UTF-8 — yields
//! [`NormalPath::Ambiguous`], which never matches an exclusion: the request is then authenticated.

/// The result of normalising a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalPath {
    /// The request target's own path, its first `n` bytes, is already clean (the usual case:
    /// nothing copied).
    Plain(usize),
    /// A clean absolute path, e.g. `/a/b`.
    Clean(String),
    /// A path whose meaning depends on the backend; never treated as excluded.
    Ambiguous,
}

impl NormalPath {
    /// The clean path of request target `target` (the one this was made from), if any.
    pub fn as_clean<'a>(&'a self, target: &'a str) -> Option<&'a str> {
        match self {
            NormalPath::Plain(n) => target.get(..*n),
            NormalPath::Clean(p) => Some(p),
            NormalPath::Ambiguous => None,
        }
    }
}

/// Splits a request target into its path and optional query (`/a?b` → (`/a`, `Some("b")`)).
pub fn split_target(uri: &str) -> (&str, Option<&str>) {
    // A fragment never reaches a server, but cut it defensively. Both separators are ASCII, so
    // every cut is at a character boundary. (A byte loop was ≈ 23 wasm operators per byte, and
    // two `position` calls a `memchr` call and a loop, ≈ 500 for a short path.)
    let b = uri.as_bytes();
    let Some(i) = crate::textkey::find_either(b, b'?', b'#') else {
        return (uri, None);
    };
    let path = uri.get(..i).unwrap_or_default();
    if b.get(i) == Some(&b'#') {
        return (path, None);
    }
    let query = uri.get(i + 1..).unwrap_or_default();
    match crate::textkey::find_byte(query.as_bytes(), b'#') {
        Some(h) => (path, query.get(..h)),
        None => (path, Some(query)),
    }
}

/// Normalises the path of a request target (the query is ignored).
pub fn normalize(uri: &str) -> NormalPath {
    normalize_split_path(split_target(uri).0)
}

/// As [`normalize`], for the path part of a target already split by [`split_target`] (a
/// [`NormalPath::Plain`] length is then a length into the target too).
pub fn normalize_split_path(raw: &str) -> NormalPath {
    if is_plain(raw) {
        return NormalPath::Plain(raw.len());
    }
    normalize_path(raw)
}

/// Whether `raw` is its own normal form, which is what almost every request's path is: it starts
/// with `/`, holds only RFC 3986 `pchar`s other than `%` and `;` (so nothing to decode and no
/// path parameters), and neither `//` (an empty segment) nor `/.` (the only way to begin a dot
/// segment). Such a path comes out of the full normalisation unchanged (the test
/// `plain_paths_are_their_own_normal_form` checks this against every short path), and this
/// check is one pass without allocating.
fn is_plain(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for &c in b {
        if !PLAIN[usize::from(c)] || (prev == b'/' && (c == b'/' || c == b'.')) {
            return false;
        }
        prev = c;
    }
    true
}

/// The bytes [`is_plain`] allows: RFC 3986 `pchar`s other than `%` and `;`, and `/`. A table:
/// `is_ascii_alphanumeric` and a 17-way `matches!` were ≈ 35 wasm operators per byte of a path.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            );
        c += 1;
    }
    t
};

/// The full normalisation of a request path (without the query).
fn normalize_path(raw: &str) -> NormalPath {
    // An absolute-form target (`http://host/path`) carries its path after the authority.
    let raw = strip_absolute_form(raw);
    if raw.contains('\\') || raw.contains('\0') {
        return NormalPath::Ambiguous;
    }
    let Some(decoded) = percent_decode_once(raw) else {
        return NormalPath::Ambiguous;
    };
    if decoded.contains('%') || decoded.contains('\\') || decoded.contains('\0') {
        return NormalPath::Ambiguous;
    }
    // A dot segment with path parameters (`..;`, `.;x`): Tomcat, Jetty and Spring strip `;…`
    // from each segment before resolving dots, so `/public/..;/admin` is `/admin` to them while
    // RFC 3986 keeps `..;` as a name. Never excluded. The same for a segment of parameters only
    // (`/public/;/../admin`, `/public/;jsessionid=x/../admin`): to them it is an empty segment,
    // collapsed, so the `..` after it climbs out of `/public` there, while here it only removes
    // the `;` segment and the path stays under `/public`.
    if decoded
        .split('/')
        .any(|seg| seg.contains(';') && matches!(seg.split(';').next(), Some("" | "." | "..")))
    {
        return NormalPath::Ambiguous;
    }
    NormalPath::Clean(remove_dot_segments(&decoded))
}

fn strip_absolute_form(raw: &str) -> &str {
    // Byte-wise: the target may hold non-ASCII bytes, and slicing a str inside a character
    // would panic (found by the request_target fuzz target).
    let after = |p: &str| {
        raw.as_bytes()
            .get(..p.len())
            .filter(|b| b.eq_ignore_ascii_case(p.as_bytes()))
            .and_then(|_| raw.get(p.len()..))
    };
    let Some(rest) = after("http://").or_else(|| after("https://")) else {
        return raw;
    };
    match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    }
}

/// Decodes `%XX` once. `None` for a malformed escape, an encoded `/` or `\`, or invalid UTF-8.
fn percent_decode_once(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            let v = hi << 4 | lo;
            // Encoded slashes and backslashes never match an exclusion: backends disagree on
            // whether they separate segments.
            if v == b'/' || v == b'\\' {
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §5.2.4 on an already decoded path, also collapsing empty segments (`//`).
/// The result always starts with `/`; a trailing slash is kept.
fn remove_dot_segments(path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" => {
                if i == last && i != 0 {
                    trailing_slash = true;
                }
            }
            "." => {
                if i == last {
                    trailing_slash = true;
                }
            }
            ".." => {
                stack.pop();
                if i == last {
                    trailing_slash = true;
                }
            }
            s => stack.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

/// Whether a normalised path falls under a configured prefix: equal to it, or below it at a
/// segment boundary (`/public` matches `/public` and `/public/x`, not `/publicity`). A prefix
/// that ends with `/` matches everything below it.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix) || path == prefix.trim_end_matches('/');
    }
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn clean(s: &str) -> String {
        match normalize(s) {
            NormalPath::Plain(n) => s[..n].to_string(),
            NormalPath::Clean(p) => p,
            NormalPath::Ambiguous => panic!("{s} was ambiguous"),
        }
    }

    /// Every path of up to six bytes over an alphabet of the bytes that matter to normalisation:
    /// where the one-pass check calls a path plain, the full normalisation agrees that it is
    /// clean and unchanged; and the check does call the everyday ones plain.
    #[test]
    fn plain_paths_are_their_own_normal_form() {
        let alphabet = [
            b'/', b'.', b'a', b';', b'%', b'2', b'F', b'\\', b'?', b'#', b'~',
        ];
        let mut plain = 0;
        let mut path = Vec::new();
        fn walk(path: &mut Vec<u8>, alphabet: &[u8], depth: usize, plain: &mut usize) {
            let raw = std::str::from_utf8(path).unwrap();
            if is_plain(raw) {
                *plain += 1;
                assert_eq!(
                    normalize_path(raw),
                    NormalPath::Clean(raw.to_string()),
                    "{raw:?} was taken as plain"
                );
            }
            if depth == 0 {
                return;
            }
            for &c in alphabet {
                path.push(c);
                walk(path, alphabet, depth - 1, plain);
                path.pop();
            }
        }
        walk(&mut path, &alphabet, 6, &mut plain);
        assert!(plain > 1000, "only {plain} paths were plain");
        for p in [
            "/",
            "/a",
            "/api/v1/users",
            "/a/b/",
            "/x.y/z~1",
            "/a-b_c/@me:1",
        ] {
            assert!(is_plain(p), "{p}");
            assert_eq!(normalize(p), NormalPath::Plain(p.len()));
            assert_eq!(normalize(p).as_clean(p), Some(p));
        }
        for p in [
            "",
            "a",
            "//a",
            "/./a",
            "/a/..",
            "/.well-known/x",
            "/a%2Fb",
            "/a;b",
            "/é",
        ] {
            assert!(!is_plain(p), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(clean("/public/../admin"), "/admin");
        assert_eq!(clean("/public/./x"), "/public/x");
        assert_eq!(clean("//public///x"), "/public/x");
        assert_eq!(clean("/a/b/../../../c"), "/c");
        assert_eq!(clean("/a/b/.."), "/a/");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean(""), "/");
        assert_eq!(clean("/a/"), "/a/");
        assert_eq!(clean("/public?x=/../admin"), "/public");
    }

    #[test]
    fn percent_decoding_happens_before_dot_removal() {
        assert_eq!(clean("/public/%2e%2e/admin"), "/admin");
        assert_eq!(clean("/public/%2E%2E/admin"), "/admin");
        assert_eq!(clean("/p%75blic/x"), "/public/x");
    }

    #[test]
    fn ambiguous_paths_never_clean() {
        for p in [
            "/public%2Fadmin",
            "/public%2fadmin",
            "/public%5Cadmin",
            "/public\\..\\admin",
            "/public/%252e%252e/admin",
            "/public/%zz",
            "/public/%",
            "/public/%00",
            "/public/%ff",
            "/public/..;/admin",
            "/public/..;x=1/admin",
            "/public/%2e%2e;/admin",
            "/public/..%3b/admin",
            "/public/.;/x",
            "/public/;/../admin",
            "/public/;jsessionid=x/../admin",
            "/public/%3b/../admin",
            "/public/;",
        ] {
            assert_eq!(normalize(p), NormalPath::Ambiguous, "{p}");
        }
        // Parameters on ordinary segments are names as RFC 3986 has them (not under /public
        // unless the segment is `public` itself, so never a wider exclusion).
        assert_eq!(clean("/public;x/y"), "/public;x/y");
        assert_eq!(clean("/public/a;b/../c"), "/public/c");
    }

    #[test]
    fn the_target_splits_at_the_first_question_mark_before_any_fragment() {
        assert_eq!(split_target("/a?b=c"), ("/a", Some("b=c")));
        assert_eq!(split_target("/a?b?c"), ("/a", Some("b?c")));
        assert_eq!(split_target("/a#f?x"), ("/a", None));
        assert_eq!(split_target("/a?b#f"), ("/a", Some("b")));
        assert_eq!(split_target("/a?"), ("/a", Some("")));
        assert_eq!(split_target("/é?ü#"), ("/é", Some("ü")));
        assert_eq!(split_target(""), ("", None));
        // Separators past the first 8-byte words, and a high byte before them.
        assert_eq!(
            split_target("/abcdefghijklmnop/q?r=s#t"),
            ("/abcdefghijklmnop/q", Some("r=s"))
        );
        assert_eq!(
            split_target("/abcdefghijklmno#p?q"),
            ("/abcdefghijklmno", None)
        );
        assert_eq!(split_target("/ü/abcdefgh?x#"), ("/ü/abcdefgh", Some("x")));
        assert_eq!(split_target("?#"), ("", Some("")));
        assert_eq!(split_target("#?"), ("", None));
        let with_query = "/plain/path?x=1";
        assert_eq!(
            normalize(with_query).as_clean(with_query),
            Some("/plain/path")
        );
    }

    #[test]
    fn non_ascii_targets_never_panic() {
        // The fuzz target's crash input (bytes 0x99 0x95 0x9d, lossily decoded).
        let s = String::from_utf8_lossy(&[0x99, 0x95, 0x9d]).into_owned();
        assert_eq!(
            normalize(&s),
            NormalPath::Clean(format!("/{s}").replacen("//", "/", 1))
        );
        assert!(matches!(normalize("é/../x"), NormalPath::Clean(_)));
        assert!(matches!(normalize("httpé"), NormalPath::Clean(_)));
    }

    #[test]
    fn absolute_form() {
        assert_eq!(clean("http://h/public/../admin"), "/admin");
        assert_eq!(clean("HTTPS://h"), "/");
    }

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        assert!(under_prefix("/public", "/public"));
        assert!(under_prefix("/public/x", "/public"));
        assert!(!under_prefix("/publicity", "/public"));
        assert!(!under_prefix("/admin", "/public"));
        assert!(under_prefix("/static/a.css", "/static/"));
        assert!(under_prefix("/static", "/static/"));
        assert!(!under_prefix("/staticx", "/static/"));
    }
}
