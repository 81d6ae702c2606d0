//! Cookies that hold a long value: split into `<name>`, `<name>_1`, … so that every
//! `Set-Cookie` line stays under the 4096 bytes browsers accept per cookie (RFC 6265 §6.1 asks
//! for at least 4096 bytes per cookie, name, value and attributes together; browsers enforce
//! about that). The first cookie carries the chunk count: `<n>.<first part>` when there are
//! several (`.` never occurs in base64url), the plain value when there is one. Chunks the
//! browser still holds from an earlier, longer value are deleted whenever the value is written.

use crate::http::cookie::{self, CookieAttrs};
use crate::textkey;

/// Most chunks a value may take (about 30 KB of cookies; far beyond any sane session).
pub const MAX_CHUNKS: usize = 8;
/// Longest `Set-Cookie` value written (leaves headroom under 4096 for the header name and
/// browser differences).
pub const MAX_SET_COOKIE: usize = 4000;

// The count is one digit (see [`may_be_chunked`]).
const _: () = assert!(MAX_CHUNKS < 10);

/// Whether `first` may be the first cookie of a chunked value, `<n>.<part>` with one digit `n`,
/// without reading past its second byte. A value for which this is false is taken whole: it holds
/// no `.` (base64url has none), or one elsewhere, and then it does not open.
pub fn may_be_chunked(first: &str) -> bool {
    count(first).is_some()
}

/// The name of chunk `i` (0 is the base name).
pub fn chunk_name(name: &str, i: usize) -> String {
    if i == 0 {
        name.to_string()
    } else {
        format!("{name}_{i}")
    }
}

/// Whether `candidate` is `name` or one of its chunks.
pub fn is_chunk_of(candidate: &str, name: &str) -> bool {
    // `strip_prefix`, without its `memcmp` call (see `textkey::starts_with`).
    let rest = textkey::starts_with(candidate.as_bytes(), name.as_bytes())
        .then(|| candidate.get(name.len()..))
        .flatten();
    match rest {
        Some("") => true,
        Some(rest) => rest.strip_prefix('_').is_some_and(|n| {
            !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit())
        }),
        None => false,
    }
}

/// The reassembled value of `name` from the request's cookies; `None` when absent or when a
/// chunk is missing or malformed.
pub fn read(cookies: &[(String, String)], name: &str) -> Option<String> {
    assemble(cookies, name, cookie::value(cookies, name)?, &[])
}

/// How many cookies the value whose first cookie is `first` says it has, when it is chunked.
pub fn count(first: &str) -> Option<usize> {
    match first.as_bytes() {
        [d @ b'0'..=b'9', b'.', ..] => Some(usize::from(d - b'0')),
        _ => None,
    }
}

/// The value whose first cookie (`name`) is `first`, its chunks taken from `cookies`; `None` when
/// a chunk is missing or malformed.
///
/// `before`: the chunk counts of the chunked values of the name that come before this one in the
/// request (another deployment's session for a parent domain, say). A value's chunks are written
/// together, so a browser orders them as it orders their first cookies (RFC 6265 §5.4: path
/// length, then creation time): chunk `i` comes after chunk `i` of each of those values that has
/// one (or is the first of its name when there are fewer).
pub fn assemble(
    cookies: &[(String, String)],
    name: &str,
    first: &str,
    before: &[usize],
) -> Option<String> {
    let Some((count, head)) = first.split_once('.') else {
        return Some(first.to_string());
    };
    let n: usize = count
        .parse()
        .ok()
        .filter(|n| (2..=MAX_CHUNKS).contains(n))?;
    let mut out = String::with_capacity(head.len() * n);
    out.push_str(head);
    for i in 1..n {
        let chunk = chunk_name(name, i);
        let skip = before.iter().filter(|&&c| c > i).count();
        let mut values = cookies.iter().filter(|(k, _)| *k == chunk).map(|(_, v)| v);
        let first_value = values.next()?;
        let v = match skip {
            0 => first_value,
            _ => values.nth(skip - 1).unwrap_or(first_value),
        };
        out.push_str(v);
    }
    Some(out)
}

/// `Set-Cookie` lines that store `value` under `name` (chunked as needed) with `max_age`, and
/// delete the chunks the request carried that the new value does not use.
///
/// # Errors
/// When the value needs more than [`MAX_CHUNKS`] cookies.
pub fn write(
    name: &str,
    value: &str,
    attrs: &CookieAttrs,
    max_age: u64,
    existing: &[(String, String)],
) -> Result<Vec<String>, &'static str> {
    // The longest chunk name and the "n." prefix are accounted for in every chunk.
    let overhead =
        cookie::set_cookie(&chunk_name(name, MAX_CHUNKS), "", attrs, Some(max_age)).len() + 2;
    let per = MAX_SET_COOKIE.saturating_sub(overhead).max(256);
    let parts: Vec<&str> = if value.len() <= per {
        vec![value]
    } else {
        // Base64url text is ASCII: every byte index is a char boundary.
        value
            .as_bytes()
            .chunks(per)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect()
    };
    if parts.len() > MAX_CHUNKS {
        return Err("the session is too large for cookies (use sessionStorage: server)");
    }
    let mut out = Vec::with_capacity(parts.len() + 1);
    for (i, part) in parts.iter().enumerate() {
        let v = if i == 0 && parts.len() > 1 {
            format!("{}.{part}", parts.len())
        } else {
            (*part).to_string()
        };
        out.push(cookie::set_cookie(
            &chunk_name(name, i),
            &v,
            attrs,
            Some(max_age),
        ));
    }
    out.extend(stale(name, parts.len(), attrs, existing));
    Ok(out)
}

/// `Set-Cookie` lines deleting `name` and every chunk of it the request carried.
pub fn clear(name: &str, attrs: &CookieAttrs, existing: &[(String, String)]) -> Vec<String> {
    let mut out = vec![cookie::set_cookie(name, "", attrs, Some(0))];
    out.extend(stale(name, 1, attrs, existing));
    out
}

/// Deletions for chunks `keep..` that the request carried.
fn stale(
    name: &str,
    keep: usize,
    attrs: &CookieAttrs,
    existing: &[(String, String)],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, _) in existing {
        if k != name && is_chunk_of(k, name) {
            let i: usize = k
                .get(name.len() + 1..)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if i >= keep && !out.iter().any(|l| l.starts_with(&format!("{k}="))) {
                out.push(cookie::set_cookie(k, "", attrs, Some(0)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::http::cookie::SameSite;

    fn attrs() -> CookieAttrs {
        CookieAttrs {
            path: "/".into(),
            domain: Some("example.com".into()),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }

    fn jar(lines: &[String]) -> Vec<(String, String)> {
        lines
            .iter()
            .filter(|l| !l.contains("Max-Age=0"))
            .map(|l| {
                let nv = l.split(';').next().unwrap();
                let (n, v) = nv.split_once('=').unwrap();
                (n.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn small_values_use_one_cookie() {
        let lines = write("s", "abc", &attrs(), 60, &[]).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(read(&jar(&lines), "s").as_deref(), Some("abc"));
    }

    #[test]
    fn large_values_are_chunked_under_4k_and_stale_chunks_deleted() {
        let value = "x".repeat(11_000);
        let lines = write("sess", &value, &attrs(), 86_400, &[]).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(
            lines.iter().all(|l| l.len() <= MAX_SET_COOKIE),
            "{:?}",
            lines.iter().map(String::len).collect::<Vec<_>>()
        );
        let j = jar(&lines);
        assert!(j[0].1.starts_with("3."));
        assert_eq!(read(&j, "sess").as_deref(), Some(value.as_str()));
        // A missing chunk means no value, never a partial one.
        let partial: Vec<_> = j.iter().filter(|(k, _)| k != "sess_2").cloned().collect();
        assert_eq!(read(&partial, "sess"), None);
        // A shorter value deletes the chunks it no longer uses.
        let lines2 = write("sess", "short", &attrs(), 60, &j).unwrap();
        assert_eq!(lines2.len(), 3);
        assert!(lines2[1].starts_with("sess_1=;") && lines2[1].contains("Max-Age=0"));
        assert!(lines2[2].starts_with("sess_2=;"));
        let cleared = clear("sess", &attrs(), &j);
        assert_eq!(cleared.len(), 3);
        assert!(cleared.iter().all(|l| l.contains("Max-Age=0")));
    }

    #[test]
    fn every_chunked_value_is_seen_as_possibly_chunked() {
        for len in [10, 3_000, 5_000, 12_000, 25_000] {
            let value = "v".repeat(len);
            let lines = write("s", &value, &attrs(), 60, &[]).unwrap();
            let first = lines[0]
                .strip_prefix("s=")
                .and_then(|l| l.split(';').next())
                .unwrap();
            assert_eq!(may_be_chunked(first), lines.len() > 1, "{len}: {first:.8}");
        }
        assert!(!may_be_chunked("99.x") && !may_be_chunked("") && !may_be_chunked("2"));
    }

    #[test]
    fn malformed_counts_and_names() {
        let c = |v: &str| vec![("s".to_string(), v.to_string())];
        assert_eq!(read(&c("1.x"), "s"), None);
        assert_eq!(read(&c("99.x"), "s"), None);
        assert_eq!(read(&c("a.x"), "s"), None);
        assert!(is_chunk_of("s_1", "s") && is_chunk_of("s", "s"));
        assert!(
            !is_chunk_of("s_", "s") && !is_chunk_of("s_x", "s") && !is_chunk_of("session", "s")
        );
        assert!(write("s", &"y".repeat(100_000), &attrs(), 60, &[]).is_err());
    }
}
