//! OpenID Connect Back-Channel Logout 1.0. (Being written.)

use crate::plugin::{Guard, Req};
use crate::response::Response;

/// Receives a `logout_token` from the provider.
pub fn handle(_g: &mut Guard, _req: &mut Req<'_>) -> Response {
    Response::bad_request("back-channel logout is not available yet")
}
