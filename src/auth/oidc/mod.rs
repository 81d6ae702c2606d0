//! Browser login: authorization code flow with PKCE, state and nonce; callback; RP-initiated
//! logout. (Being written.)

use crate::plugin::{Guard, Req};
use crate::response::Response;

/// Starts a login: redirects the browser to the provider.
pub fn start_login(_g: &mut Guard, _req: &mut Req<'_>) -> Response {
    Response::unauthorized_page()
}

/// The redirect URI: exchanges the code, validates the ID token, creates the session.
pub fn callback(_g: &mut Guard, _req: &mut Req<'_>) -> Response {
    Response::bad_request("login is not available yet")
}

/// RP-initiated logout.
pub fn logout(_g: &mut Guard, _req: &mut Req<'_>) -> Response {
    Response::bad_request("logout is not available yet")
}
