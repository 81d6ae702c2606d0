//! Authentication and authorization: the provider (discovery, keys), browser login, sessions,
//! bearer tokens, DPoP, logout, and the access policy.

pub mod backchannel;
pub mod bearer;
pub mod dpop;
pub mod oidc;
pub mod policy;
pub mod provider;
pub mod revocation;
pub mod session;
