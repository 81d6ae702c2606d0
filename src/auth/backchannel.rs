//! OpenID Connect Back-Channel Logout 1.0: the provider POSTs a `logout_token` to the configured
//! path (`backchannelLogout.path`), and every replica stops accepting the session(s) it names
//! within the revocation-check interval.
//!
//! Steps (numbers are the specification's sections):
//! 1. §2.5: `POST` (anything else: 405), `Content-Type: application/x-www-form-urlencoded`, a body
//!    of at most [`crate::plugin::MAX_BODY`] bytes with exactly one `logout_token`.
//! 2. §2.6: the token validated by [`LogoutTokenValidation`] against the provider's keys (an
//!    unknown `kid` refetches the JWKS once, rate limited): `iss` the provider's issuer, `aud`
//!    containing our client ID, `iat` present and at most `replay.ttl` old, `exp`, `jti`,
//!    `events` with the back-channel logout member, `sid` or `sub`, no `nonce`, `typ` absent,
//!    `JWT` or `logout+jwt`.
//! 3. §2.6 (last step): its `jti` recorded single-use in the shared store (when `replay.enabled`)
//!    *before* anything is revoked, so a captured token cannot be replayed to end sessions
//!    established after the original logout. The marker lives as long as the token could be
//!    accepted: until `min(exp, iat + replay.ttl)` plus the clock skew.
//! 4. §2.7: with `sid`, the provider session `sid` is revoked (`revoke_provider_sid`); with only
//!    `sub`, every session of `sub` established up to now (`revoke_subject`). The markers live as
//!    long as a session can (`sessionMaxAge`).
//! 5. §2.8: 200 with `Cache-Control: no-store` on success; 400 with
//!    `{"error":"invalid_request"}` when the request or token is invalid, replayed, **or when the
//!    logout could not be recorded** (the shared store unavailable): the specification requires
//!    400 for "the logout failed" too, so an unavailable store is not a 503 here. The provider
//!    unreachable (keys unavailable) is answered the same way, for the same reason. The reason
//!    goes to the log, never into the response.
//!
//! A logout that was validated and whose `jti` was recorded, but whose revocation could not be
//! written, removes the `jti` marker again (best effort) so the provider may retry.

use std::time::Duration;

use super::provider::VerifyError;
use super::revocation::{revoke_provider_sid, revoke_subject};
use crate::crypto::{sha256_b64, sha256_hex};
use crate::http::{form, LogLevel};
use crate::jwt::{LogoutToken, LogoutTokenValidation, Validation, DEFAULT_CLOCK_SKEW_SECS};
use crate::plugin::{Guard, Req, MAX_BODY};
use crate::response::Response;
use crate::store::{Class, Namespace, SetOutcome};

/// Why a back-channel logout was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutError {
    /// Not a `POST`.
    Method,
    /// Not `application/x-www-form-urlencoded`.
    ContentType,
    /// The body is larger than the plugin reads.
    TooLarge,
    /// No `logout_token`, several, or an empty one.
    MissingToken,
    /// The token was refused (the JOSE layer's reason).
    Token(String),
    /// Its `jti` was seen before.
    Replayed,
    /// The provider's keys could not be had.
    Provider(String),
    /// The logout could not be recorded in the shared store.
    Store(String),
    /// Back-channel logout without browser login (the configuration refuses this; kept for
    /// completeness).
    NotConfigured,
}

impl std::fmt::Display for LogoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogoutError::Method => f.write_str("expected POST"),
            LogoutError::ContentType => {
                f.write_str("expected Content-Type application/x-www-form-urlencoded")
            }
            LogoutError::TooLarge => write!(f, "body larger than {MAX_BODY} bytes"),
            LogoutError::MissingToken => {
                f.write_str("expected exactly one non-empty logout_token parameter")
            }
            LogoutError::Token(why) => write!(f, "logout token refused: {why}"),
            LogoutError::Replayed => f.write_str("logout token jti already used (replayed)"),
            LogoutError::Provider(why) => write!(f, "provider keys unavailable: {why}"),
            LogoutError::Store(why) => write!(f, "logout could not be recorded: {why}"),
            LogoutError::NotConfigured => {
                f.write_str("back-channel logout needs browser login (clientID)")
            }
        }
    }
}

impl std::error::Error for LogoutError {}

/// What a successful logout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    /// The provider session `sid`.
    ProviderSession,
    /// Every session of the subject.
    Subject,
}

/// Receives a `logout_token` from the provider and answers per §2.8.
#[inline(never)]
pub fn handle(g: &mut Guard, req: &mut Req<'_>) -> Response {
    match logout(g, req) {
        Ok(line) => {
            g.log.push((LogLevel::Info, line));
            Response::logout_done()
        }
        Err(LogoutError::Method) => Response::method_not_allowed("POST"),
        Err(e) => {
            let level = match e {
                LogoutError::Provider(_) | LogoutError::Store(_) => LogLevel::Warn,
                _ => LogLevel::Info,
            };
            g.log.push((
                level,
                format!("oidc-guard: back-channel logout refused: {e}"),
            ));
            Response::json(400, "{\"error\":\"invalid_request\"}\n".to_string())
        }
    }
}

/// Validates and applies one back-channel logout request; returns the log line on success.
///
/// # Errors
/// [`LogoutError`] naming why.
fn logout(g: &mut Guard, req: &Req<'_>) -> Result<String, LogoutError> {
    // §2.5: "The OP sends an HTTP POST request".
    if req.method() != "POST" {
        return Err(LogoutError::Method);
    }
    let ct = req.ex.header("Content-Type").unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(LogoutError::ContentType);
    }
    let body = req.ex.read_body(MAX_BODY).ok_or(LogoutError::TooLarge)?;
    let body = String::from_utf8(body).map_err(|_| LogoutError::MissingToken)?;
    // Exactly one `logout_token`, wherever it is in the body (RFC 6749 §3.1).
    let mut tokens = form::all(&body, "logout_token").into_iter();
    let token = match (tokens.next(), tokens.next()) {
        (Some(t), None) if !t.is_empty() => t,
        _ => return Err(LogoutError::MissingToken),
    };

    let cfg = std::rc::Rc::clone(&g.cfg);
    let browser = cfg.browser.as_ref().ok_or(LogoutError::NotConfigured)?;
    let issuer = {
        let (provider, mut deps) = g.provider_deps();
        provider
            .issuer(&mut deps)
            .map_err(|e| LogoutError::Provider(e.to_string()))?
    };
    // §2.6 step 3 ("validate the iat claim in the same way as for ID tokens"): bounded by
    // replay.ttl, which also bounds how long the jti marker must live.
    let max_age = cfg.replay.ttl.as_secs().max(1);
    let validation = LogoutTokenValidation::new(
        Validation::new(issuer)
            .audience(browser.client.id.clone())
            .max_age(max_age),
    );
    let now_ms = g.clock.now_ms();
    let now_s = now_ms / 1000;
    let verified = {
        let (provider, mut deps) = g.provider_deps();
        provider.verify(&mut deps, |jwks| validation.verify(&token, jwks, now_s))
    };
    let lt = match verified {
        Ok(lt) => lt,
        Err(VerifyError::Token(e)) => return Err(LogoutError::Token(e.to_string())),
        Err(VerifyError::Provider(e)) => return Err(LogoutError::Provider(e.to_string())),
    };

    // §2.6: "Optionally verify that another Logout Token with the same jti value has not been
    // recently received" — not optional here: recorded cluster-wide before anything is revoked.
    let marker = format!("lt:{}", sha256_b64(lt.jti().as_bytes()));
    if cfg.replay.enabled {
        let ttl = marker_ttl(&lt, max_age, now_ms);
        match g
            .store
            .set_if_absent(Namespace::JTI, &marker, ttl, Class::SingleUse)
        {
            Ok(SetOutcome::Won) => {}
            Ok(SetOutcome::AlreadyUsed) => return Err(LogoutError::Replayed),
            Ok(SetOutcome::Unavailable) => {
                return Err(LogoutError::Store(
                    "the replay check could not reach the shared store".into(),
                ))
            }
            Err(e) => return Err(LogoutError::Store(e.to_string())),
        }
    }

    // §2.7: a sid names one provider session; sub alone names every session of the user.
    let ttl = browser.session.max_age;
    let (ended, result) = match (lt.sid(), lt.sub()) {
        (Some(sid), _) => (
            Ended::ProviderSession,
            revoke_provider_sid(&mut g.store, sid, ttl),
        ),
        (None, Some(sub)) => (
            Ended::Subject,
            revoke_subject(&mut g.store, sub, now_ms, ttl),
        ),
        // LogoutTokenValidation requires one of them.
        (None, None) => return Err(LogoutError::Token("neither sid nor sub".into())),
    };
    if let Err(e) = result {
        if cfg.replay.enabled {
            // Let the provider retry: the jti was not really used (best effort; the store is
            // probably down for this delete as well).
            let _ = g.store.delete(Namespace::JTI, &marker);
        }
        return Err(LogoutError::Store(e.to_string()));
    }
    let who = match ended {
        Ended::ProviderSession => format!(
            "provider session #{} of {}",
            sha256_hex(lt.sid().unwrap_or_default().as_bytes(), 6),
            lt.sub().unwrap_or("(no sub)")
        ),
        Ended::Subject => format!("every session of {}", lt.sub().unwrap_or_default()),
    };
    Ok(format!("oidc-guard: back-channel logout: ended {who}"))
}

/// How long the `jti` marker must live: as long as the token could still be accepted, i.e. until
/// `min(exp, iat + max_age)` plus the clock skew (both are required and checked).
fn marker_ttl(lt: &LogoutToken, max_age: u64, now_ms: u64) -> Duration {
    let c = lt.claims();
    let exp = c
        .exp()
        .and_then(|e| u64::try_from(e).ok())
        .unwrap_or(u64::MAX);
    let by_age = c
        .iat()
        .and_then(|i| u64::try_from(i).ok())
        .map(|i| i.saturating_add(max_age))
        .unwrap_or(u64::MAX);
    let until_s = exp.min(by_age).saturating_add(DEFAULT_CLOCK_SKEW_SECS);
    let until_ms = until_s.saturating_mul(1000);
    Duration::from_millis(until_ms.saturating_sub(now_ms).max(1000))
}

#[cfg(test)]
mod tests;
