//! DPoP at the resource server (RFC 9449 §4.3, §7): the request side of a proof check — the
//! one `DPoP` header, the URI the client addressed (`htu`), the method (`htm`), the access token
//! hash (`ath`), the key the token is bound to (`cnf.jkt`) — and the cluster-wide single use of
//! each proof's `jti` (§11.1).
//!
//! The JOSE side (signature with the embedded `jwk`, `typ`, `iat` window, thumbprint) is
//! [`crate::jwt::DpopValidation`].
//!
//! # The URI a proof must name
//!
//! `htu` is compared with the request's external URI without query and fragment (§4.3 step 9,
//! after RFC 3986 §6.2.2/§6.2.3 normalisation):
//! - scheme: `https` with `forceHTTPS`; otherwise `X-Forwarded-Proto` (`http` or `https`), which
//!   Traefik sets on every request it forwards — it overwrites a client's copy unless the entry
//!   point is told to trust the client's forwarded headers (`forwardedHeaders.trustedIPs`);
//!   otherwise `http`;
//! - authority: the `Host` header (with its port), refused unless it is a plain host name, IPv4
//!   or bracketed IPv6 literal with an optional port;
//! - path: the request path as received (before any normalisation of ours). A `stripPrefix`
//!   middleware placed *before* oidc-guard changes the path the plugin sees; put oidc-guard first.

use std::time::Duration;

use crate::config::Bearer;
use crate::crypto::sha256_b64;
use crate::http::path::split_target;
use crate::jwt::{DpopError, DpopRequest, DpopValidation, JwtError, DEFAULT_CLOCK_SKEW_SECS};
use crate::plugin::{Guard, Req};
use crate::store::{Class, Namespace, SetOutcome};

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofRefusal {
    /// The proof is missing, duplicated, malformed, replayed or does not fit the request:
    /// `invalid_dpop_proof` (RFC 9449 §7.1).
    Proof(String),
    /// The proof's key is not the one the token is bound to: `invalid_token` (RFC 9449 §7.1's
    /// example answers "Invalid DPoP key binding" with `invalid_token`).
    KeyBinding,
    /// The shared store could not record the proof's `jti`: 503.
    StoreUnavailable,
}

/// The proof validation for `bearer.dpop`: every supported (asymmetric) algorithm; `iat` at most
/// `iatWindow` in the past and at most `min(iatWindow, 60 s)` in the future (a client clock a
/// little ahead of ours, the same skew tokens get).
pub fn validation(b: &Bearer) -> DpopValidation {
    let past = b.dpop.iat_window.as_secs().max(1);
    let future = past.min(DEFAULT_CLOCK_SKEW_SECS);
    DpopValidation::new().iat_window(past, future)
}

/// Checks the request's DPoP proof for the access token `token`, bound to `jkt`, and records the
/// proof's `jti` as used, cluster-wide.
///
/// # Errors
/// [`ProofRefusal`] naming why (the reason is for the log only).
pub fn check(
    g: &mut Guard,
    req: &Req<'_>,
    b: &Bearer,
    token: &str,
    jkt: &str,
) -> Result<(), ProofRefusal> {
    // §4.3 step 1: exactly one DPoP header field.
    let proofs = req.ex.header_values("Dpop");
    let proof = match proofs.as_slice() {
        [one] => one.trim(),
        [] => return Err(ProofRefusal::Proof("no DPoP header".into())),
        more => {
            return Err(ProofRefusal::Proof(format!(
                "{} DPoP headers, expected one",
                more.len()
            )))
        }
    };
    if proof.len() > b.max_token_size {
        return Err(ProofRefusal::Proof(format!(
            "proof of {} bytes exceeds bearer.maxTokenSize",
            proof.len()
        )));
    }
    let uri = external_uri(g, req).ok_or_else(|| {
        ProofRefusal::Proof("the request's Host header is not a valid authority".into())
    })?;
    // §4.3 step 8: htm is compared with the method exactly as received (methods are
    // case-sensitive, RFC 9110 §9.1).
    let method = req.ex.method();
    let r = DpopRequest {
        method: &method,
        uri: &uri,
        access_token: Some(token),
        expected_jkt: Some(jkt),
        nonce: None,
    };
    let now = g.clock.now_secs();
    let validation = g.bearer.dpop_validation();
    let proof = match validation.verify(proof, &r, now) {
        Ok(p) => p,
        Err(JwtError::Dpop(DpopError::KeyMismatch)) => return Err(ProofRefusal::KeyBinding),
        Err(JwtError::Dpop(e)) => return Err(ProofRefusal::Proof(e.to_string())),
        Err(e) => return Err(ProofRefusal::Proof(e.to_string())),
    };
    let ttl = Duration::from_secs(validation.replay_ttl_secs().max(1));
    // §11.1: each proof once. The key is a hash of the key thumbprint and the jti, so two clients
    // that happen to pick the same jti do not collide, and the key length is bounded.
    let marker = sha256_b64(format!("{} {}", proof.jkt(), proof.jti()).as_bytes());
    match g
        .store
        .set_if_absent(Namespace::DPOP, &marker, ttl, Class::SingleUse)
    {
        Ok(SetOutcome::Won) => Ok(()),
        Ok(SetOutcome::AlreadyUsed) => Err(ProofRefusal::Proof(
            "proof jti already used (replayed proof)".into(),
        )),
        Ok(SetOutcome::Unavailable) | Err(_) => Err(ProofRefusal::StoreUnavailable),
    }
}

/// `scheme://host[:port]/path` of the request as the client addressed it (see the module docs);
/// `None` when the `Host` header is missing or not a plain authority.
pub fn external_uri(g: &Guard, req: &Req<'_>) -> Option<String> {
    let host = req.ex.header("Host")?;
    if !valid_authority(&host) {
        return None;
    }
    let scheme = if crate::auth::oidc::flow::https(&g.cfg, req) {
        "https"
    } else {
        "http"
    };
    let (path, _) = split_target(&req.target);
    let path = if path.is_empty() { "/" } else { path };
    Some(format!("{scheme}://{host}{path}"))
}

/// A host name, IPv4 address or `[IPv6]` literal, with an optional port: nothing that could move
/// part of the authority into the path (`/`), the userinfo (`@`) or the query.
fn valid_authority(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._:[]".contains(&c))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn authorities() {
        for ok in [
            "api.example.com",
            "api.example.com:8443",
            "127.0.0.1:80",
            "[::1]:443",
            "localhost",
        ] {
            assert!(valid_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "a.com/api",
            "user@a.com",
            "a.com?x",
            "a.com#f",
            "a b",
            "a.com\\x",
        ] {
            assert!(!valid_authority(bad), "{bad}");
        }
    }
}
