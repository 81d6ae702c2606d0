//! The access policy (`allowedUsers`, `allowedUserDomains`, `allowedRolesAndGroups`) and claim
//! extraction for the identity headers.
//!
//! Semantics (as traefikoidc): with neither users nor domains configured every authenticated
//! user passes the identity part; otherwise the user must be listed in `allowedUsers` (matched,
//! case-insensitively, against the identifier claim and against a verified `email`) **or** have
//! a verified e-mail address in one of `allowedUserDomains`. With `allowedRolesAndGroups`
//! configured the user must also carry at least one of them in the group or role claim. An
//! `email_verified: false` claim disqualifies the e-mail address from both checks, so an
//! unverified address cannot claim someone else's identity or domain.

use serde_json::{Map, Value};

use crate::config::Policy;

/// Checks `claims` against the policy.
///
/// # Errors
/// A log-safe reason naming which rule refused (never the claim values).
pub fn check(policy: &Policy, claims: &Map<String, Value>) -> Result<(), &'static str> {
    let users = &policy.allowed_users;
    let domains = &policy.allowed_user_domains;
    if !users.is_empty() || !domains.is_empty() {
        let email = verified_email(claims);
        let id = user_value(policy, claims);
        let user_ok = users.iter().any(|u| {
            id.as_deref()
                .map(|v| v.eq_ignore_ascii_case(u))
                .unwrap_or(false)
                || email
                    .as_deref()
                    .map(|e| e.eq_ignore_ascii_case(u))
                    .unwrap_or(false)
        });
        let domain_ok = email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| domains.iter().any(|a| a.eq_ignore_ascii_case(d)))
            .unwrap_or(false);
        if !user_ok && !domain_ok {
            return Err(
                "the user is not in allowedUsers and has no verified e-mail in allowedUserDomains",
            );
        }
    }
    let wanted = &policy.allowed_roles_and_groups;
    if !wanted.is_empty() {
        let mut have = claim_values(claims, &policy.group_claim);
        have.extend(claim_values(claims, &policy.role_claim));
        if !have.iter().any(|h| wanted.iter().any(|w| w == h)) {
            return Err("the user has none of allowedRolesAndGroups");
        }
    }
    Ok(())
}

fn verified_email(claims: &Map<String, Value>) -> Option<String> {
    if claims.get("email_verified").and_then(Value::as_bool) == Some(false)
        || claims.get("email_verified").and_then(Value::as_str) == Some("false")
    {
        return None;
    }
    claims
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The value of the identifier claim (`userIdentifierClaim`, default `sub`).
pub fn user_value(policy: &Policy, claims: &Map<String, Value>) -> Option<String> {
    claim_string(claims, &policy.user_claim).filter(|v| !v.is_empty())
}

/// Looks a claim up by name; a dotted name (`realm_access.roles`) walks nested objects when no
/// top-level claim has the full name.
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// All string values of a claim (a string, or the strings of an array; a space-separated
/// `scope`-like string is one value).
pub fn claim_values(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match lookup(claims, name) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A claim as a header value: strings as they are, arrays joined with `,`, numbers and booleans
/// printed, objects as JSON.
pub fn claim_string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match lookup(claims, name)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(
            a.iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn policy(users: &[&str], domains: &[&str], groups: &[&str]) -> Policy {
        let mut cfg = json!({"issuer": "https://i", "jwks": crate::testkit::EcKey::generate("k").jwks(), "bearer": {"enabled": true, "audience": "a"}});
        if !users.is_empty() {
            cfg["allowedUsers"] = json!(users);
        }
        if !domains.is_empty() {
            cfg["allowedUserDomains"] = json!(domains);
        }
        if !groups.is_empty() {
            cfg["allowedRolesAndGroups"] = json!(groups);
        }
        crate::config::Config::parse(
            cfg.to_string().as_bytes(),
            &|_| None,
            &|_| Err(std::io::ErrorKind::NotFound.into()),
            crate::config::Platform::default(),
        )
        .unwrap()
        .policy
    }

    fn claims(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn open_policy_allows_everyone() {
        assert!(check(&policy(&[], &[], &[]), &claims(json!({"sub": "x"}))).is_ok());
    }

    #[test]
    fn users_and_domains() {
        let p = policy(&["Alice@Example.com"], &["example.org"], &[]);
        assert!(check(
            &p,
            &claims(json!({"sub": "1", "email": "alice@example.com"}))
        )
        .is_ok());
        assert!(check(&p, &claims(json!({"sub": "2", "email": "bob@example.org"}))).is_ok());
        assert!(check(&p, &claims(json!({"sub": "3", "email": "eve@example.net"}))).is_err());
        assert!(check(&p, &claims(json!({"sub": "4"}))).is_err());
        // An unverified address neither matches a user nor a domain.
        assert!(check(
            &p,
            &claims(json!({"sub": "5", "email": "alice@example.com", "email_verified": false}))
        )
        .is_err());
        assert!(check(
            &p,
            &claims(json!({"sub": "6", "email": "x@example.org", "email_verified": false}))
        )
        .is_err());
        // A look-alike domain does not match.
        assert!(check(&p, &claims(json!({"email": "x@evil-example.org"}))).is_err());
    }

    #[test]
    fn groups_and_roles_including_nested_claims() {
        let p = policy(&[], &[], &["admins"]);
        assert!(check(&p, &claims(json!({"groups": ["devs", "admins"]}))).is_ok());
        assert!(check(&p, &claims(json!({"groups": ["devs"]}))).is_err());
        assert!(check(&p, &claims(json!({"roles": "admins"}))).is_ok());
        assert!(check(&p, &claims(json!({}))).is_err());
        let m = claims(json!({"realm_access": {"roles": ["a", "b"]}}));
        assert_eq!(claim_values(&m, "realm_access.roles"), vec!["a", "b"]);
        assert_eq!(
            claim_string(&m, "realm_access.roles").as_deref(),
            Some("a,b")
        );
    }
}
