//! `application/x-www-form-urlencoded` (query strings and form bodies) and percent-encoding.

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Builds `k1=v1&k2=v2` with both sides encoded.
pub fn build(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// Parses `k1=v1&k2=v2` (`+` is a space). Malformed escapes are kept literally; invalid UTF-8 is
/// replaced. At most 256 pairs are returned.
pub fn parse(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .take(256)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The first value of `key` in a query or form string.
pub fn value(s: &str, key: &str) -> Option<String> {
    parse(s).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Every value of `key` in a query or form string, in order, however many pairs come before:
/// for the checks that a parameter is there exactly once (RFC 6749 §3.1: "parameters MUST NOT
/// be included more than once"), which [`parse`]'s 256-pair cap must not blind.
pub fn all(s: &str, key: &str) -> Vec<String> {
    s.split('&')
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let same = if k.contains(['%', '+']) {
                decode(k) == key
            } else {
                k == key
            };
            same.then(|| decode(v))
        })
        .collect()
}

/// Decodes `%XX` and `+`.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn round_trip() {
        let s = build(&[("redirect_uri", "https://a/b?c=d&e"), ("x y", "é")]);
        assert_eq!(
            s,
            "redirect_uri=https%3A%2F%2Fa%2Fb%3Fc%3Dd%26e&x%20y=%C3%A9"
        );
        let p = parse(&s);
        assert_eq!(p[0], ("redirect_uri".into(), "https://a/b?c=d&e".into()));
        assert_eq!(p[1], ("x y".into(), "é".into()));
        assert_eq!(value("a=1&b=2+3", "b").as_deref(), Some("2 3"));
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn all_sees_every_pair() {
        let filler = "a=1&".repeat(300);
        let s = format!("{filler}t=x&logout%5Ftoken=2&b=3&t=y%20z");
        assert_eq!(parse(&s).len(), 256);
        assert_eq!(value(&s, "t"), None, "beyond parse's cap");
        assert_eq!(all(&s, "t"), vec!["x".to_string(), "y z".to_string()]);
        assert_eq!(all(&s, "logout_token"), vec!["2".to_string()]);
        assert!(all(&s, "c").is_empty());
        assert_eq!(all("t&t=", "t"), vec![String::new(), String::new()]);
    }
}
