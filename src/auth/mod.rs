//! Authentication and authorization: the provider (discovery, keys), browser login, sessions,
//! bearer tokens, DPoP, logout, and the access policy.

pub mod provider;
