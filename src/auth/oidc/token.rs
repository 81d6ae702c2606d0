//! The token endpoint: authorization code and refresh token grants (RFC 6749 §4.1.3, §6), client
//! authentication (RFC 6749 §2.3.1, OIDC Core §9), and the checks of a successful response
//! (RFC 6749 §5.1) and of an error response (§5.2).

use std::fmt;

use base64::Engine as _;
use serde_json::Value;

use crate::auth::provider::FETCH_TIMEOUT_MS;
use crate::config::{Client, TokenEndpointAuth};
use crate::http::form;
use crate::net::http::{FetchError, HttpRequest};
use crate::plugin::Guard;

/// A successful token response (RFC 6749 §5.1; OIDC Core 3.1.3.3).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// `access_token` (required by RFC 6749; not kept by the plugin).
    pub access_token: String,
    /// `token_type`: `Bearer` or `DPoP` (case-insensitive).
    pub token_type: String,
    /// `id_token`: required in the code flow (OIDC Core 3.1.3.3), optional on refresh.
    pub id_token: Option<String>,
    /// `refresh_token`.
    pub refresh_token: Option<String>,
    /// `expires_in`, seconds.
    pub expires_in: Option<u64>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a token request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The provider refused the grant (RFC 6749 §5.2): `error` is its error code.
    Refused {
        /// HTTP status (400 or 401 normally).
        status: u16,
        /// The `error` code, e.g. `invalid_grant` (only its token characters are kept).
        error: String,
    },
    /// The provider could not be reached, or answered 5xx.
    Unreachable(String),
    /// The provider answered something that is not a valid token response.
    Invalid(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Refused { status, error } => {
                write!(
                    f,
                    "the token endpoint refused the grant: status {status}, error {error:?}"
                )
            }
            TokenError::Unreachable(s) => write!(f, "the token endpoint is unreachable: {s}"),
            TokenError::Invalid(s) => {
                write!(f, "the token endpoint answered an invalid response: {s}")
            }
        }
    }
}

/// `application/x-www-form-urlencoded` of a client id or secret for HTTP Basic (RFC 6749 §2.3.1:
/// both are form-encoded before being joined with `:` and base64-encoded). Spaces become `%20`,
/// which every form decoder reads as a space.
fn basic_credentials(id: &str, secret: &str) -> String {
    let raw = format!("{}:{}", form::encode(id), form::encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Builds the token request: the grant's fields plus client authentication.
pub fn build_request(client: &Client, endpoint: &str, grant: &[(&str, &str)]) -> HttpRequest {
    let mut fields: Vec<(&str, &str)> = grant.to_vec();
    let secret = client.secret.as_ref().map(|s| s.expose()).unwrap_or("");
    let mut basic = None;
    match client.auth_method {
        TokenEndpointAuth::ClientSecretBasic => basic = Some(basic_credentials(&client.id, secret)),
        TokenEndpointAuth::ClientSecretPost => {
            fields.push(("client_id", &client.id));
            fields.push(("client_secret", secret));
        }
        // A public client identifies itself (RFC 6749 §4.1.3: client_id REQUIRED when the client
        // does not authenticate).
        TokenEndpointAuth::None => fields.push(("client_id", &client.id)),
    }
    let mut req = HttpRequest::post_form(endpoint, form::build(&fields), FETCH_TIMEOUT_MS);
    if let Some(b) = basic {
        req.headers.push(("Authorization".into(), b));
    }
    // RFC 6749 §5.1: token responses must not be cached; say so for proxies on the way too.
    req.headers
        .push(("Cache-Control".into(), "no-store".into()));
    req
}

/// Performs a token request against `endpoint`.
///
/// # Errors
/// [`TokenError`] saying what went wrong (never containing a token or secret).
pub fn request(
    g: &mut Guard,
    client: &Client,
    endpoint: &str,
    grant: &[(&str, &str)],
) -> Result<TokenResponse, TokenError> {
    let req = build_request(client, endpoint, grant);
    let resp = g.fetch.fetch(&req);
    // The request waited: what follows reads the clock anew (see `RequestClock`).
    g.clock.refresh();
    let resp = resp.map_err(|e| match e {
        FetchError::Timeout => TokenError::Unreachable("timed out".into()),
        other => TokenError::Unreachable(other.to_string()),
    })?;
    parse_response(resp.status, &resp.body)
}

/// Checks a token endpoint response.
///
/// # Errors
/// [`TokenError::Refused`] for an RFC 6749 §5.2 error response, [`TokenError::Unreachable`] for
/// 5xx, [`TokenError::Invalid`] for anything else that is not a valid §5.1 response.
pub fn parse_response(status: u16, body: &[u8]) -> Result<TokenResponse, TokenError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if status != 200 {
        if status >= 500 {
            return Err(TokenError::Unreachable(format!("status {status}")));
        }
        let error = json
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map(|e| {
                e.chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect::<String>()
            })
            .unwrap_or_default();
        if error.is_empty() {
            return Err(TokenError::Invalid(format!(
                "status {status} without an error code"
            )));
        }
        return Err(TokenError::Refused { status, error });
    }
    let obj = json
        .as_ref()
        .and_then(Value::as_object)
        .ok_or_else(|| TokenError::Invalid("the body is not a JSON object".into()))?;
    let string = |k: &str| -> Result<Option<String>, TokenError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(TokenError::Invalid(format!(
                "{k} is not a non-empty string"
            ))),
        }
    };
    let access_token = string("access_token")?
        .ok_or_else(|| TokenError::Invalid("access_token is missing".into()))?;
    let token_type =
        string("token_type")?.ok_or_else(|| TokenError::Invalid("token_type is missing".into()))?;
    // RFC 6749 §5.1 / §7.1: token_type is case-insensitive; we accept the types a resource
    // server of this plugin understands (RFC 6750 Bearer, RFC 9449 DPoP).
    if !token_type.eq_ignore_ascii_case("bearer") && !token_type.eq_ignore_ascii_case("dpop") {
        return Err(TokenError::Invalid(format!(
            "token_type {:?} is not Bearer or DPoP",
            token_type.chars().take(32).collect::<String>()
        )));
    }
    // Some providers send expires_in as a string: accept a non-negative integer either way.
    let expires_in = match obj.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| *f >= 0.0 && f.is_finite())
                        .map(|f| f as u64)
                })
                .ok_or_else(|| {
                    TokenError::Invalid("expires_in is not a non-negative number".into())
                })?,
        ),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse()
                .map_err(|_| TokenError::Invalid("expires_in is not a number".into()))?,
        ),
        Some(_) => return Err(TokenError::Invalid("expires_in is not a number".into())),
    };
    Ok(TokenResponse {
        access_token,
        token_type,
        id_token: string("id_token")?,
        refresh_token: string("refresh_token")?,
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // RFC 6749 §2.3.1 + Appendix B: "basic secret/+" → "basic%20secret%2F%2B".
        let h = basic_credentials("my client", "basic secret/+:x");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(h.trim_start_matches("Basic "))
            .unwrap();
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "my%20client:basic%20secret%2F%2B%3Ax"
        );
    }

    #[test]
    fn responses() {
        let ok = parse_response(200, br#"{"access_token":"a","token_type":"bearer","id_token":"i","expires_in":"30","refresh_token":"r"}"#).unwrap();
        assert_eq!(ok.expires_in, Some(30));
        assert_eq!(ok.id_token.as_deref(), Some("i"));
        assert!(!format!("{ok:?}").contains("\"r\""));
        assert!(parse_response(200, br#"{"access_token":"a","token_type":"DPoP"}"#).is_ok());
        assert!(matches!(
            parse_response(200, br#"{"access_token":"a","token_type":"mac"}"#),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            parse_response(200, br#"{"token_type":"Bearer"}"#),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            parse_response(200, br#"{"access_token":"a"}"#),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            parse_response(200, b"<html>"),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            parse_response(
                200,
                br#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#
            ),
            Err(TokenError::Invalid(_))
        ));
        assert_eq!(
            parse_response(400, br#"{"error":"invalid_grant","error_description":"x"}"#),
            Err(TokenError::Refused {
                status: 400,
                error: "invalid_grant".into()
            })
        );
        assert!(matches!(
            parse_response(503, b""),
            Err(TokenError::Unreachable(_))
        ));
        assert!(matches!(
            parse_response(400, b"nope"),
            Err(TokenError::Invalid(_))
        ));
    }
}
