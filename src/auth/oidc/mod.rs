//! Browser login: the authorization code flow with PKCE, state and nonce (OIDC Core 3.1); the
//! callback that exchanges the code and creates the session; RP-initiated logout (OpenID
//! Connect RP-Initiated Logout 1.0).
//!
//! - [`start_login`]: a browser navigation without a valid session is sent to the provider's
//!   `authorization_endpoint` (OIDC Core 3.1.2.1) with a fresh `state`, `nonce` and PKCE S256
//!   challenge (RFC 7636 §4.2), their secrets kept in a per-login sealed cookie ([`flow`]).
//!   When the provider cannot be reached the answer is 503 (never a redirect loop).
//! - [`callback`]: checks the response (RFC 6749 §4.1.2, RFC 9207 `iss`), the `state` against its
//!   flow cookie and once cluster-wide, exchanges the code ([`token`]) with the PKCE verifier,
//!   validates the ID token (OIDC Core 3.1.3.7), records its `jti` once, checks the access
//!   policy, creates the session and returns the browser to the page it first asked for.
//! - [`logout`]: ends the session (revocation marker, cookies) and sends the browser to the
//!   provider's `end_session_endpoint`, or to `postLogoutRedirectURI` (or `/`). Only configured
//!   targets are ever used: nothing in the request chooses where the browser goes.

pub mod flow;
#[cfg(test)]
pub(crate) mod tests;
pub mod token;

use std::time::Duration;

use crate::auth::policy;
use crate::auth::provider::{ProviderError, VerifyError};
use crate::auth::session::{self, data, Session};
use crate::config::{Browser, NamePrefix};
use crate::crypto::{ct_eq, sha256_b64};
use crate::http::cookie::{self, CookieAttrs};
use crate::http::{form, LogLevel};
use crate::jwt::{IdTokenValidation, Validation, DEFAULT_CLOCK_SKEW_SECS};
use crate::plugin::{Guard, Req};
use crate::response::Response;
use crate::store::{Class, Namespace, SetOutcome};
use flow::Flow;

/// Error codes of an authorization error response (RFC 6749 §4.1.2.1, OIDC Core 3.1.2.6) that
/// the error page names; any other code is shown as "unknown" (nothing from the request is
/// reflected into the page).
const KNOWN_ERRORS: [&str; 14] = [
    "invalid_request",
    "unauthorized_client",
    "access_denied",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
];

fn provider_failure(g: &mut Guard, what: &str, e: &ProviderError) -> Response {
    g.log
        .push((LogLevel::Warn, format!("oidc-guard: {what}: {e}")));
    match e {
        ProviderError::Unreachable(_) => Response::unavailable(
            "The identity provider cannot be reached right now; try again shortly.",
        ),
        _ => Response::bad_gateway(
            "The identity provider's configuration could not be used; the log says why.",
        ),
    }
}

/// Attributes of a login-flow cookie: scoped to the callback path, `HttpOnly`, `SameSite=Lax`
/// (the callback arrives as a cross-site top-level GET from the provider; `Strict` would
/// withhold the cookie), `Secure` like the session cookie. Under a `__Host-` prefix the path is
/// `/` (RFC 6265bis §4.1.3): the flow cookies then travel with every request for the few
/// minutes a login takes, and no sibling subdomain can plant one (login CSRF by cookie tossing).
fn flow_attrs(g: &Guard, b: &Browser, req: &Req<'_>) -> CookieAttrs {
    let path = match b.session.name_prefix {
        NamePrefix::Host => "/".to_string(),
        _ => b.login.callback.path().to_string(),
    };
    CookieAttrs {
        path,
        domain: b.session.cookie_domain.clone(),
        secure: session::secure(&g.cfg, b, req),
        http_only: true,
        same_site: cookie::SameSite::Lax,
    }
}

/// Starts a login: redirects the browser to the provider (OIDC Core 3.1.2.1).
#[inline(never)]
pub fn start_login(g: &mut Guard, req: &mut Req<'_>) -> Response {
    let cfg = g.cfg.clone();
    let Some(b) = cfg.browser.as_ref() else {
        return Response::unauthorized_page();
    };
    let metadata = {
        let (p, mut d) = g.provider_deps();
        p.metadata(&mut d)
    };
    let metadata = match metadata {
        Ok(m) => m,
        Err(e) => return provider_failure(g, "login", &e),
    };
    let Some(endpoint) = metadata.authorization_endpoint.clone() else {
        g.log.push((
            LogLevel::Error,
            "oidc-guard: login: the provider has no authorization_endpoint".into(),
        ));
        return Response::bad_gateway(
            "The identity provider's configuration could not be used; the log says why.",
        );
    };
    let redirect_uri = match flow::absolute(&cfg, req, &b.login.callback) {
        Ok(u) => u,
        Err(why) => {
            g.log
                .push((LogLevel::Info, format!("oidc-guard: login: {why}")));
            return Response::bad_request(
                "The request's Host header cannot be used to build the login redirect.",
            );
        }
    };
    // 192-bit state and nonce, 256-bit PKCE verifier (43 characters, RFC 7636 §4.1).
    let secrets = (
        crate::rand::token::<24>(),
        crate::rand::token::<24>(),
        crate::rand::token::<32>(),
    );
    let (Ok(state), Ok(nonce), Ok(verifier)) = secrets else {
        g.log.push((
            LogLevel::Error,
            "oidc-guard: login: the random source failed".into(),
        ));
        return Response::unavailable("Sign-in is unavailable right now; try again shortly.");
    };
    let flow = Flow {
        state: state.clone(),
        nonce: nonce.clone(),
        verifier: b.login.pkce.then(|| verifier.clone()),
        return_to: flow::return_path(&req.target),
        redirect_uri: redirect_uri.clone(),
        started_ms: g.clock.now_ms(),
    };
    let Some(name) = flow::flow_cookie_name(&b.session.cookie_prefix, &state) else {
        return Response::unavailable("Sign-in is unavailable right now; try again shortly.");
    };
    let sealed = g
        .sessions
        .sealers(&g.keys)
        .flow
        .seal(cfg.identity(), &name, &flow.encode());
    let Ok(sealed) = sealed else {
        g.log.push((
            LogLevel::Error,
            "oidc-guard: login: the login state could not be sealed".into(),
        ));
        return Response::unavailable("Sign-in is unavailable right now; try again shortly.");
    };
    let attrs = flow_attrs(g, b, req);
    let set_cookie = cookie::set_cookie(&name, &sealed, &attrs, Some(flow::FLOW_MAX_AGE_SECS));

    // OIDC Core 3.1.2.1: response_type, scope (with openid), client_id, redirect_uri, state,
    // nonce; RFC 7636 §4.3: code_challenge and code_challenge_method=S256.
    let scope = b.login.scopes.join(" ");
    let challenge = sha256_b64(verifier.as_bytes());
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &b.client.id),
        ("redirect_uri", &redirect_uri),
        ("scope", &scope),
        ("state", &state),
        ("nonce", &nonce),
    ];
    if b.login.pkce {
        params.push(("code_challenge", &challenge));
        params.push(("code_challenge_method", "S256"));
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    let location = format!("{endpoint}{sep}{}", form::build(&params));
    Response::redirect(&location).with_cookies(&[set_cookie])
}

/// What a callback failure shows, and logs.
struct Failure {
    status: u16,
    page: &'static str,
    log: String,
}

fn fail(status: u16, page: &'static str, log: impl Into<String>) -> Failure {
    Failure {
        status,
        page,
        log: log.into(),
    }
}

/// The redirect URI: checks the authorization response, exchanges the code, validates the ID
/// token, creates the session.
pub fn callback(g: &mut Guard, req: &mut Req<'_>) -> Response {
    let cfg = g.cfg.clone();
    let Some(b) = cfg.browser.as_ref() else {
        return Response::bad_request("Login is not configured on this route.");
    };
    let attrs = flow_attrs(g, b, req);
    // Delete every login cookie when too many have accumulated (abandoned logins).
    let prefix = flow::flow_cookie_prefix(&b.session.cookie_prefix);
    let flows: Vec<String> = req
        .cookies()
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    if flows.len() > flow::MAX_FLOWS {
        for name in &flows {
            req.set_cookies
                .push(cookie::set_cookie(name, "", &attrs, Some(0)));
        }
    }
    match complete(g, req, b, &attrs) {
        Ok(location) => Response::redirect(&location),
        Err(f) => {
            g.log.push((
                if f.status >= 500 {
                    LogLevel::Warn
                } else {
                    LogLevel::Info
                },
                format!("oidc-guard: login callback: {}", f.log),
            ));
            match f.status {
                503 => Response::unavailable(f.page),
                502 => Response::bad_gateway(f.page),
                s => Response::login_failed(s, f.page),
            }
        }
    }
}

const START_AGAIN: &str =
    "This sign-in link is not valid in this browser: the sign-in expired, was already finished, or was started elsewhere. Go back to the page you wanted and try again.";

fn complete(
    g: &mut Guard,
    req: &mut Req<'_>,
    b: &Browser,
    attrs: &CookieAttrs,
) -> Result<String, Failure> {
    if req.method() != "GET" {
        return Err(fail(
            400,
            "The sign-in callback accepts GET only.",
            format!("method {} refused", req.method()),
        ));
    }
    let raw_query = req.query.as_deref().unwrap_or("");
    // RFC 6749 §3.1: response parameters "MUST NOT be included more than once".
    if let Some(k) = ["state", "code", "iss"]
        .into_iter()
        .find(|k| form::all(raw_query, k).len() > 1)
    {
        return Err(fail(
            400,
            START_AGAIN,
            format!("the callback carries `{k}` more than once"),
        ));
    }
    let query = form::parse(raw_query);
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let state = param("state");

    // The flow cookie named by the state (RFC 6749 §10.12: the state binds the response to
    // this browser's request).
    let name = state.and_then(|s| flow::flow_cookie_name(&b.session.cookie_prefix, s));
    let sealed = name
        .as_deref()
        .and_then(|n| cookie::value(req.cookies(), n))
        .map(str::to_string);
    if let Some(n) = &name {
        if sealed.is_some() {
            req.set_cookies
                .push(cookie::set_cookie(n, "", attrs, Some(0)));
        }
    }

    // RFC 6749 §4.1.2.1: an error response. Only a known code is named on the page.
    if let Some(error) = param("error") {
        let shown = KNOWN_ERRORS
            .iter()
            .find(|k| **k == error)
            .copied()
            .unwrap_or("unknown");
        let desc: String = param("error_description")
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let (status, page) = match shown {
            "access_denied" | "unauthorized_client" => (403, "The identity provider did not allow the sign-in."),
            "temporarily_unavailable" | "server_error" => (400, "The identity provider could not complete the sign-in right now. Try again shortly."),
            _ => (400, "The identity provider refused the sign-in request."),
        };
        return Err(fail(
            status,
            page,
            format!("the provider answered error {shown} ({desc:?})"),
        ));
    }
    let (Some(state), Some(name), Some(sealed)) = (state, name, sealed) else {
        return Err(fail(400, START_AGAIN, "no login-flow cookie matches the state (missing state, expired flow, or another browser)"));
    };
    let identity = g.cfg.identity().to_string();
    let opened = g
        .sessions
        .sealers(&g.keys)
        .flow
        .open(&identity, &name, &sealed)
        .map_err(|e| fail(400, START_AGAIN, format!("login-flow cookie refused: {e}")))?;
    let flow = Flow::decode(&opened.plaintext)
        .ok_or_else(|| fail(400, START_AGAIN, "login-flow cookie does not hold a login"))?;
    if !ct_eq(flow.state.as_bytes(), state.as_bytes()) {
        return Err(fail(
            400,
            START_AGAIN,
            "state does not match its login-flow cookie",
        ));
    }
    let now_ms = g.clock.now_ms();
    if now_ms.saturating_sub(flow.started_ms) > flow::FLOW_MAX_AGE_SECS * 1000 {
        return Err(fail(
            400,
            START_AGAIN,
            "the login took longer than 10 minutes",
        ));
    }

    let metadata = {
        let (p, mut d) = g.provider_deps();
        p.metadata(&mut d)
            .and_then(|m| p.issuer(&mut d).map(|i| (m, i)))
    };
    let (metadata, issuer) = metadata.map_err(|e| match e {
        ProviderError::Unreachable(s) => fail(
            503,
            "The identity provider cannot be reached right now; try again shortly.",
            s,
        ),
        other => fail(
            502,
            "The identity provider's configuration could not be used; the log says why.",
            other.to_string(),
        ),
    })?;
    // RFC 9207 §2.4: when the response names its issuer, it must be ours (mix-up defence); a
    // provider that says it always names it (authorization_response_iss_parameter_supported)
    // must have named it.
    match param("iss") {
        Some(iss) if iss != metadata.issuer => {
            return Err(fail(
                400,
                START_AGAIN,
                "the iss parameter of the response is not the provider's issuer (RFC 9207)",
            ));
        }
        None if metadata.iss_parameter_supported => {
            return Err(fail(
                400,
                START_AGAIN,
                "the response has no iss parameter, which the provider says it always sends (RFC 9207 §2.4)",
            ));
        }
        _ => {}
    }
    let code = param("code")
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .map(str::to_string);
    let Some(code) = code else {
        return Err(fail(400, START_AGAIN, "the response has no code"));
    };

    // The state is single-use across the cluster: a replayed callback (same state, same
    // cookie) is refused even on another replica.
    let replay = g.cfg.replay.enabled;
    if replay {
        match g.store.set_if_absent(Namespace::STATE, &sha256_b64(state.as_bytes()), Duration::from_secs(flow::FLOW_MAX_AGE_SECS), Class::SingleUse) {
            Ok(SetOutcome::Won) => {}
            Ok(SetOutcome::AlreadyUsed) => return Err(fail(400, START_AGAIN, "the state was already used (replayed callback)")),
            Ok(SetOutcome::Unavailable) | Err(_) => {
                return Err(fail(503, "Sign-in is unavailable right now (the shared store cannot be reached); try again shortly.", "the state could not be recorded as used: the shared store is unavailable"))
            }
        }
    }

    // RFC 6749 §4.1.3 with RFC 7636 §4.5: the code, the same redirect_uri, the verifier.
    let token_endpoint = metadata.token_endpoint.clone().ok_or_else(|| {
        fail(
            502,
            "The identity provider's configuration could not be used; the log says why.",
            "the provider has no token_endpoint",
        )
    })?;
    let mut grant: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", &flow.redirect_uri),
    ];
    if let Some(v) = &flow.verifier {
        grant.push(("code_verifier", v));
    }
    let tokens = token::request(g, &b.client, &token_endpoint, &grant).map_err(|e| match e {
        token::TokenError::Refused { .. } => fail(400, "The identity provider did not accept the sign-in (the code may have expired or been used). Go back and try again.", e.to_string()),
        token::TokenError::Unreachable(_) => fail(503, "The identity provider cannot be reached right now; try again shortly.", e.to_string()),
        token::TokenError::Invalid(_) => fail(502, "The identity provider answered something unexpected; the log says why.", e.to_string()),
    })?;
    // OIDC Core 3.1.3.3: the token response of the code flow carries an ID token.
    let id_token = tokens.id_token.clone().ok_or_else(|| {
        fail(
            502,
            "The identity provider answered something unexpected; the log says why.",
            "the token response has no id_token",
        )
    })?;

    // OIDC Core 3.1.3.7: iss, aud (+ azp), signature with an allowed asymmetric algorithm
    // (never `none` or HS*), exp/iat/nbf with bounded skew, nonce from this login's cookie.
    let now = now_ms / 1000;
    let validation = IdTokenValidation::new(
        Validation::new(issuer).clock_skew(DEFAULT_CLOCK_SKEW_SECS),
        b.client.id.clone(),
    );
    let verified = {
        let (p, mut d) = g.provider_deps();
        p.verify(&mut d, |keys| {
            validation.verify(&id_token, keys, Some(&flow.nonce), now)
        })
    };
    let claims = verified.map_err(|e| match e {
        VerifyError::Provider(ProviderError::Unreachable(s)) => fail(
            503,
            "The identity provider cannot be reached right now; try again shortly.",
            s,
        ),
        VerifyError::Provider(p) => fail(
            502,
            "The identity provider's configuration could not be used; the log says why.",
            p.to_string(),
        ),
        VerifyError::Token(t) => fail(
            400,
            "The identity provider's answer could not be verified. Go back and try again.",
            format!("ID token refused: {t}"),
        ),
    })?;
    let exp = claims
        .exp()
        .and_then(|e| u64::try_from(e).ok())
        .unwrap_or(now);

    // The ID token's jti, when present, is single-use too (a replayed ID token is refused).
    if replay {
        if let Some(jti) = claims.jti() {
            let ttl = Duration::from_secs(
                exp.saturating_add(DEFAULT_CLOCK_SKEW_SECS)
                    .saturating_sub(now)
                    .max(1),
            );
            match g.store.set_if_absent(Namespace::JTI, &format!("id:{}", sha256_b64(jti.as_bytes())), ttl, Class::SingleUse) {
                Ok(SetOutcome::Won) => {}
                Ok(SetOutcome::AlreadyUsed) => return Err(fail(400, START_AGAIN, "the ID token's jti was already used (replayed ID token)")),
                Ok(SetOutcome::Unavailable) | Err(_) => {
                    return Err(fail(503, "Sign-in is unavailable right now (the shared store cannot be reached); try again shortly.", "the ID token's jti could not be recorded: the shared store is unavailable"))
                }
            }
        }
    }

    let Some(sub) = claims.sub().map(str::to_string) else {
        return Err(fail(400, START_AGAIN, "the ID token has no sub"));
    };
    // The session ends when the tokens do (the earlier of expires_in and the ID token's exp)
    // unless refreshed, and at the latest sessionMaxAge after login.
    let expires = tokens
        .expires_in
        .map_or(exp, |s| now.saturating_add(s).min(exp));
    if expires <= now {
        return Err(fail(502, "The identity provider issued tokens that are already expired (are the clocks in sync?).", "the tokens are already expired"));
    }
    let id = crate::rand::token::<16>().map_err(|_| {
        fail(
            503,
            "Sign-in is unavailable right now; try again shortly.",
            "the random source failed",
        )
    })?;
    let max = now.saturating_add(b.session.max_age.as_secs());
    let mut s = Session {
        id,
        sub,
        provider_sid: claims.sid().map(str::to_string),
        login_ms: now_ms,
        issued: now,
        expires: expires.min(max),
        max,
        generation: 0,
        refresh_token: tokens.refresh_token.clone(),
        id_token: None,
        access_token: g
            .cfg
            .upstream
            .access_token_header
            .as_ref()
            .map(|_| tokens.access_token.clone()),
        claims: data::select_claims(&g.cfg, claims.as_map()),
    };

    // The access policy now, so a refused user gets a 403 page at once (and no session).
    if let Err(reason) = policy::check(&g.cfg.policy, &s.claims) {
        return Err(fail(403, "You signed in, but your account is not allowed to access this site. Ask the site's administrator for access.", format!("access denied: {reason}")));
    }
    if policy::user_value(&g.cfg.policy, &s.claims).is_none() {
        return Err(fail(403, "You signed in, but the identity provider did not say who you are. Ask the site's administrator.", format!("the ID token has no {:?} claim", g.cfg.policy.user_claim)));
    }
    // The ID token for id_token_hint at logout: in the session when it lives server-side, in a
    // cookie of its own (sent only to the logout path) otherwise.
    let cookie_hint = if b.session.storage == crate::config::SessionStorage::Server {
        s.id_token = Some(id_token.clone());
        None
    } else {
        Some(id_token.as_str())
    };
    let cfg = g.cfg.clone();
    session::persist(g, req, &cfg, b, &s, None, cookie_hint).map_err(|e| {
        fail(
            503,
            "The session could not be stored; try again shortly.",
            e,
        )
    })?;
    if b.session.storage == crate::config::SessionStorage::Cookie
        && !session::secure(&cfg, b, req)
        && flow::https(&cfg, req)
    {
        g.log.push((LogLevel::Warn, "oidc-guard: the session cookie is not Secure on an https request (cookieSecure: false)".into()));
    }
    Ok(flow.return_to)
}

/// Whether a browser says the request comes from another site: `Sec-Fetch-Site` is `cross-site`
/// or `same-site` (a sibling subdomain is another site here), or, from a browser without Fetch
/// Metadata, an `Origin` that is not this origin. Browsers set both headers themselves (scripts
/// cannot); a client that sends neither (a script, curl) is not a CSRF vector and is believed.
fn from_another_site(cfg: &crate::config::Config, req: &Req<'_>) -> bool {
    if let Some(site) = req.ex.header("Sec-Fetch-Site") {
        let site = site.trim();
        return !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"));
    }
    match req.ex.header("Origin") {
        Some(o) => {
            flow::origin(cfg, req).map_or(true, |ours| !o.trim().eq_ignore_ascii_case(&ours))
        }
        None => false,
    }
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2).
#[inline(never)]
pub fn logout(g: &mut Guard, req: &mut Req<'_>) -> Response {
    let cfg = g.cfg.clone();
    let Some(b) = cfg.browser.as_ref() else {
        return Response::bad_request("Login is not configured on this route.");
    };
    // Logout CSRF (W3C Fetch Metadata Request Headers): another site must not end the session
    // with a link, an image or an auto-submitted form. Such a request gets a page whose button
    // posts back here from this origin.
    if from_another_site(&cfg, req) {
        g.log.push((
            LogLevel::Info,
            "oidc-guard: logout requested from another site; asked the user to confirm".into(),
        ));
        return Response::logout_confirm(b.login.logout.path());
    }
    let (ended, hint) = session::end(g, req);
    // Where the provider sends the browser afterwards: only the configured URI, made absolute on
    // our origin when it is a path.
    let post_logout = b.login.post_logout_redirect_uri.as_ref();
    let post_logout_abs = post_logout.and_then(|p| flow::absolute(&cfg, req, p).ok());
    let end_session = {
        let (p, mut d) = g.provider_deps();
        p.metadata(&mut d).map(|m| m.end_session_endpoint.clone())
    };
    let end_session = match end_session {
        Ok(e) => e,
        Err(e) => {
            g.log.push((LogLevel::Warn, format!("oidc-guard: logout: the provider's end_session_endpoint is unknown ({e}); logged out locally")));
            None
        }
    };
    let location = match end_session {
        Some(endpoint) => {
            let state = crate::rand::token::<16>().unwrap_or_default();
            let mut params: Vec<(&str, &str)> = Vec::new();
            if let Some(h) = hint.as_deref() {
                params.push(("id_token_hint", h));
            }
            params.push(("client_id", &b.client.id));
            if let Some(u) = post_logout_abs.as_deref() {
                params.push(("post_logout_redirect_uri", u));
            }
            if !state.is_empty() {
                params.push(("state", &state));
            }
            let sep = if endpoint.contains('?') { '&' } else { '?' };
            format!("{endpoint}{sep}{}", form::build(&params))
        }
        None => post_logout
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string()),
    };
    if let Some(s) = &ended {
        g.log.push((
            LogLevel::Info,
            format!("oidc-guard: logout of a session of {:?}", s.sub),
        ));
    }
    Response::redirect(&location)
}
