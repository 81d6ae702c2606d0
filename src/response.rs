//! The one place where outcomes become HTTP responses: 401 (RFC 6750 for APIs, a page for
//! browsers), 302 (login and logout), 403, 400, 500 (misconfiguration), 502/503 (provider or
//! store unavailable), plus the health and metrics documents.
//!
//! Bodies never explain *why* a credential was refused beyond the RFC 6750 error code: that
//! detail goes to Traefik's log, not to a client that may be an attacker.

use crate::http::Ex;

/// A response the plugin writes instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, in order (several `Set-Cookie` allowed).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// RFC 6750 §3.1 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// The request lacks a required parameter or is malformed.
    InvalidRequest,
    /// The token is expired, revoked, malformed or invalid for other reasons.
    InvalidToken,
    /// The token lacks the privileges required.
    InsufficientScope,
    /// The DPoP proof is missing, malformed, replayed or does not fit the request (RFC 9449
    /// §7.1, §12.2): carried by the `DPoP` challenge only.
    InvalidDpopProof,
}

impl BearerError {
    fn code(self) -> &'static str {
        match self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
            BearerError::InvalidDpopProof => "invalid_dpop_proof",
        }
    }
}

const NO_STORE: (&str, &str) = ("Cache-Control", "no-store");

fn h(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn page(title: &str, text: &str) -> Vec<u8> {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>\n"
    )
    .into_bytes()
}

/// Text made safe for HTML content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Response {
    /// A response with a status, no headers and no body.
    pub fn status(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push(h(k, v));
        self
    }

    /// Adds `Set-Cookie` headers.
    pub fn with_cookies(mut self, cookies: &[String]) -> Self {
        for c in cookies {
            self.headers.push(h("Set-Cookie", c));
        }
        self
    }

    /// 401 for API clients (RFC 6750 §3): `WWW-Authenticate: Bearer realm=…[, error=…]`, and
    /// `DPoP` (RFC 9449 §7.1) when DPoP is enabled. `invalid_request` is answered with 400
    /// (RFC 6750 §3.1); `invalid_dpop_proof` goes on the `DPoP` challenge only, which is then sent
    /// whatever `dpop` says.
    pub fn unauthorized_api(error: Option<BearerError>, dpop: bool) -> Self {
        let dpop_only = error == Some(BearerError::InvalidDpopProof);
        let dpop = dpop || dpop_only;
        let mut challenge = String::from("Bearer realm=\"oidc-guard\"");
        if let Some(e) = error.filter(|_| !dpop_only) {
            challenge.push_str(&format!(", error=\"{}\"", e.code()));
        }
        let status = if error == Some(BearerError::InvalidRequest) {
            400
        } else {
            401
        };
        let mut r = Response::status(status)
            .with_header("WWW-Authenticate", &challenge)
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "application/json");
        if dpop {
            let mut c = String::from(
                "DPoP algs=\"ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA\"",
            );
            if let Some(e) = error {
                c.push_str(&format!(", error=\"{}\"", e.code()));
            }
            r = r.with_header("WWW-Authenticate", &c);
        }
        let code = error.map(BearerError::code).unwrap_or("unauthorized");
        r.body = format!("{{\"error\":\"{code}\"}}\n").into_bytes();
        r
    }

    /// 401 for a browser when no login is configured.
    pub fn unauthorized_page() -> Self {
        let mut r = Response::status(401)
            .with_header("WWW-Authenticate", "Bearer realm=\"oidc-guard\"")
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "text/html; charset=utf-8");
        r.body = page("401 Unauthorized", "You need to sign in to see this page.");
        r
    }

    /// 302 to `location`.
    pub fn redirect(location: &str) -> Self {
        Response::status(302)
            .with_header("Location", location)
            .with_header(NO_STORE.0, NO_STORE.1)
    }

    /// 403: authenticated, but not allowed by `allowedUsers`/`allowedUserDomains`/
    /// `allowedRolesAndGroups`.
    pub fn forbidden(html: bool) -> Self {
        let mut r = Response::status(403).with_header(NO_STORE.0, NO_STORE.1);
        if html {
            r = r.with_header("Content-Type", "text/html; charset=utf-8");
            r.body = page(
                "403 Forbidden",
                "You are signed in, but your account is not allowed to access this site. \
                 Ask the site's administrator for access.",
            );
        } else {
            r = r.with_header("Content-Type", "application/json");
            r.body = b"{\"error\":\"forbidden\"}\n".to_vec();
        }
        r
    }

    /// 400 with a short reason (login callback and back-channel logout errors).
    pub fn bad_request(reason: &str) -> Self {
        let mut r = Response::status(400)
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "text/html; charset=utf-8");
        r.body = page("400 Bad Request", reason);
        r
    }

    /// 400 or 403 when a login did not complete (an error from the provider, a stale or replayed
    /// callback). `text` is HTML-escaped; callers pass fixed sentences, never request input.
    pub fn login_failed(status: u16, text: &str) -> Self {
        let title = if status == 403 {
            "403 Forbidden"
        } else {
            "400 Bad Request"
        };
        let escaped = escape_html(text);
        let mut r = Response::status(if status == 403 { 403 } else { 400 })
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "text/html; charset=utf-8");
        r.body = page(title, &escaped);
        r
    }

    /// 200: a logout requested from another site, to be confirmed with a button that posts to
    /// `action` (the logout path) from this origin. Not framable (clickjacking), no script.
    pub fn logout_confirm(action: &str) -> Self {
        let mut r = Response::status(200)
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "text/html; charset=utf-8")
            .with_header(
                "Content-Security-Policy",
                "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
            )
            .with_header("X-Frame-Options", "DENY");
        r.body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign out</title></head>\
             <body><h1>Sign out</h1><p>Another site asked to sign you out of this one.</p>\
             <form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button>\
             </form></body></html>\n",
            escape_html(action)
        )
        .into_bytes();
        r
    }

    /// 500 for a route whose middleware configuration was refused at start-up. The reason is in
    /// Traefik's log, not in the response.
    pub fn misconfigured() -> Self {
        let mut r = Response::status(500)
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "text/html; charset=utf-8");
        r.body = page(
            "500 Internal Server Error",
            "The authentication middleware of this route is misconfigured; its log says why.",
        );
        r
    }

    /// 503 when the identity provider or a required store is unavailable.
    pub fn unavailable(what: &str) -> Self {
        let mut r = Response::status(503)
            .with_header("Retry-After", "5")
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "text/html; charset=utf-8");
        r.body = page("503 Service Unavailable", what);
        r
    }

    /// 502 when the identity provider answered something invalid.
    pub fn bad_gateway(what: &str) -> Self {
        let mut r = Response::status(502)
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "text/html; charset=utf-8");
        r.body = page("502 Bad Gateway", what);
        r
    }

    /// 200 with an empty body and `Cache-Control: no-store`: a back-channel logout that succeeded
    /// (Back-Channel Logout 1.0 §2.8).
    pub fn logout_done() -> Self {
        Response::status(200).with_header(NO_STORE.0, NO_STORE.1)
    }

    /// 405 with `Allow` (RFC 9110 §15.5.6): e.g. a GET to the back-channel logout endpoint.
    pub fn method_not_allowed(allow: &str) -> Self {
        let mut r = Response::status(405)
            .with_header("Allow", allow)
            .with_header(NO_STORE.0, NO_STORE.1)
            .with_header("Content-Type", "application/json");
        r.body = b"{\"error\":\"invalid_request\"}\n".to_vec();
        r
    }

    /// A JSON document.
    pub fn json(status: u16, body: String) -> Self {
        let mut r = Response::status(status)
            .with_header("Content-Type", "application/json")
            .with_header(NO_STORE.0, NO_STORE.1);
        r.body = body.into_bytes();
        r
    }

    /// A Prometheus text exposition.
    pub fn metrics(body: String) -> Self {
        let mut r = Response::status(200)
            .with_header("Content-Type", "text/plain; version=0.0.4")
            .with_header(NO_STORE.0, NO_STORE.1);
        r.body = body.into_bytes();
        r
    }

    /// Writes the response through the host (headers, then status, then body).
    pub fn send(&self, ex: &Ex<'_>) {
        ex.send(self.status, &self.headers, &self.body);
    }
}
