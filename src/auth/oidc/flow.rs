//! The state of one login in progress, and the URLs around it.
//!
//! # One cookie per login
//!
//! Each login gets its own short-lived cookie, `<prefix>flow_<first 12 characters of state>`,
//! sealed with AES-256-GCM ([`crate::auth::session::seal`], login-flow key), holding the `state`,
//! the `nonce`, the PKCE verifier, the URL to return to, the `redirect_uri` sent and the start
//! time. So logins started in several tabs do not overwrite each other. The cookie is
//! `HttpOnly`, `SameSite=Lax` (the callback is a top-level cross-site GET from the provider),
//! scoped to the callback path, and lives [`FLOW_MAX_AGE_SECS`]. Because of its path the plugin
//! only sees these cookies at the callback, which deletes the one it uses, and all of them once
//! more than [`MAX_FLOWS`] accumulate.
//!
//! # Where the browser returns
//!
//! Only to a path and query on this site: the original request target when it is a plain
//! absolute path, `/` otherwise. Never an absolute or protocol-relative URL taken from input
//! (RFC 9700 §4.11, open redirectors).
//!
//! # The redirect URI
//!
//! A `callbackURL` given as a URL is used as is. A path gets the scheme and host of the request:
//! the scheme is `https` with `forceHTTPS`, else the `X-Forwarded-Proto` that Traefik sets from the
//! connection (it replaces the client's value unless the client is in the entry point's
//! `forwardedHeaders.trustedIPs`), else `http`; the host is the `Host` header, or
//! `X-Forwarded-Host` when the TCP peer is in `trustedProxies`.

use serde_json::{Map, Value};

use crate::config::{Config, PathOrUrl};
use crate::http::url::split_host_port;
use crate::plugin::Req;

/// How long a login may take, from the redirect to the provider to the callback.
pub const FLOW_MAX_AGE_SECS: u64 = 600;
/// At the callback, more login cookies than this are all deleted.
pub const MAX_FLOWS: usize = 8;
/// Longest return path kept; longer ones return to `/`.
pub const MAX_RETURN_PATH: usize = 2048;

/// One login in progress.
#[derive(Clone, PartialEq, Eq)]
pub struct Flow {
    /// `state` (RFC 6749 §10.12: CSRF protection).
    pub state: String,
    /// `nonce` (OIDC Core 3.1.2.1, 3.1.3.7 step 11).
    pub nonce: String,
    /// PKCE `code_verifier` (RFC 7636 §4.1), when PKCE is on.
    pub verifier: Option<String>,
    /// Path and query to return to.
    pub return_to: String,
    /// The `redirect_uri` of the authorization request (the token request must repeat it,
    /// RFC 6749 §4.1.3).
    pub redirect_uri: String,
    /// When the login started, ms since the epoch.
    pub started_ms: u64,
}

impl Flow {
    /// The sealed cookie's plaintext: a JSON object with one-letter members (`s` state, `n`
    /// nonce, `v` verifier, `u` return path, `r` redirect URI, `t` start time).
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("s".into(), Value::String(self.state.clone()));
        m.insert("n".into(), Value::String(self.nonce.clone()));
        if let Some(v) = &self.verifier {
            m.insert("v".into(), Value::String(v.clone()));
        }
        m.insert("u".into(), Value::String(self.return_to.clone()));
        m.insert("r".into(), Value::String(self.redirect_uri.clone()));
        m.insert("t".into(), Value::from(self.started_ms));
        Value::Object(m).to_string().into_bytes()
    }

    /// Parses [`Flow::encode`]'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Flow> {
        let Value::Object(m) = serde_json::from_slice(bytes).ok()? else {
            return None;
        };
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Flow {
            state: s("s")?,
            nonce: s("n")?,
            verifier: s("v"),
            return_to: s("u")?,
            redirect_uri: s("r")?,
            started_ms: m.get("t").and_then(Value::as_u64)?,
        })
    }
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("return_to", &self.return_to)
            .field("redirect_uri", &self.redirect_uri)
            .field("started_ms", &self.started_ms)
            .finish_non_exhaustive()
    }
}

/// The prefix of every login-flow cookie name.
pub fn flow_cookie_prefix(cookie_prefix: &str) -> String {
    format!("{cookie_prefix}flow_")
}

/// The flow cookie's name for `state`, or `None` when `state` is not something we issue
/// (base64url, 22 to 128 characters): then no cookie is looked up at all.
pub fn flow_cookie_name(cookie_prefix: &str, state: &str) -> Option<String> {
    let ok = (22..=128).contains(&state.len())
        && state
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    ok.then(|| {
        format!(
            "{}{}",
            flow_cookie_prefix(cookie_prefix),
            state.get(..12).unwrap_or(state)
        )
    })
}

/// Whether the request reached Traefik over https, as far as it can tell (see the module docs).
pub fn https(cfg: &Config, req: &Req<'_>) -> bool {
    if cfg.force_https {
        return true;
    }
    req.ex
        .header("X-Forwarded-Proto")
        .and_then(|v| {
            v.split(',')
                .next()
                .map(|s| s.trim().eq_ignore_ascii_case("https"))
        })
        .unwrap_or(false)
}

/// `scheme://host[:port]` of the request (see the module docs).
///
/// # Errors
/// A reason when the request has no usable host.
pub fn origin(cfg: &Config, req: &Req<'_>) -> Result<String, &'static str> {
    let trusted = req
        .source_ip()
        .is_some_and(|ip| cfg.trusted_proxies.iter().any(|n| n.contains(&ip)));
    let forwarded = if trusted {
        req.ex
            .header("X-Forwarded-Host")
            .and_then(|v| v.split(',').next().map(|s| s.trim().to_string()))
    } else {
        None
    };
    let raw = forwarded
        .filter(|h| !h.is_empty())
        .or_else(|| req.ex.header("Host"))
        .ok_or("the request has no Host header")?;
    if raw.len() > 255 {
        return Err("the Host header is too long");
    }
    let (host, port) =
        split_host_port(raw.trim()).map_err(|_| "the Host header is not a valid host")?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let scheme = if https(cfg, req) { "https" } else { "http" };
    Ok(match port {
        Some(p) if !((scheme == "http" && p == 80) || (scheme == "https" && p == 443)) => {
            format!("{scheme}://{host}:{p}")
        }
        _ => format!("{scheme}://{host}"),
    })
}

/// A configured path or URL as an absolute URL: paths get the request's origin.
///
/// # Errors
/// As [`origin`].
pub fn absolute(cfg: &Config, req: &Req<'_>, p: &PathOrUrl) -> Result<String, &'static str> {
    match p {
        PathOrUrl::Url(u) => Ok(u.clone()),
        PathOrUrl::Path(path) => Ok(format!("{}{path}", origin(cfg, req)?)),
    }
}

/// Where to return after login: the request target when it is a plain absolute path (and
/// query), else `/`. Never an absolute or protocol-relative URL (RFC 9700 §4.11).
pub fn return_path(target: &str) -> String {
    let t = target.split('#').next().unwrap_or("");
    let plain = t.starts_with('/')
        && !t.starts_with("//")
        && !t.starts_with("/\\")
        && t.len() <= MAX_RETURN_PATH
        && t.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if plain {
        t.to_string()
    } else {
        "/".to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn return_paths_stay_on_site() {
        assert_eq!(return_path("/a/b?c=d"), "/a/b?c=d");
        assert_eq!(return_path("/a#frag"), "/a");
        for evil in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "",
            "/a b",
            "/a\r\nSet-Cookie: x",
            "/\u{7f}",
            "/é",
        ] {
            assert_eq!(return_path(evil), "/", "{evil:?}");
        }
        assert_eq!(return_path(&format!("/{}", "a".repeat(5000))), "/");
    }

    #[test]
    fn flow_cookie_names_only_for_plausible_states() {
        let s = "abcdefghijklmnopqrstuv";
        assert_eq!(
            flow_cookie_name("_p_", s).as_deref(),
            Some("_p_flow_abcdefghijkl")
        );
        for bad in [
            "short",
            "has space in it here!!",
            "semi;colon_abcdefghijklmnop",
            &"a".repeat(200),
        ] {
            assert_eq!(flow_cookie_name("_p_", bad), None, "{bad}");
        }
    }
}
