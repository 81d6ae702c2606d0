//! The access policy (`allowedUsers`, `allowedUserDomains`, `allowedRolesAndGroups`) and claim
//! extraction for the identity headers.
//!
//! Semantics (as traefikoidc): with neither users nor domains configured every authenticated
//! user passes the identity part; otherwise the user must be listed in `allowedUsers` (matched,
//! case-insensitively, against the identifier claim and against a verified `email`) **or** have
//! a verified e-mail address in one of `allowedUserDomains`. With `allowedRolesAndGroups`
//! configured the user must also carry at least one of them in the group or role claim.
//!
//! An e-mail address counts only when the provider says it is verified (`email_verified` is
//! `true`; OpenID Connect Core 5.1 and 5.7: `email` alone is not a unique, checked identifier).
//! A missing claim is *not* taken as verified — providers that omit it (or let users type any
//! address) would otherwise let anyone claim someone else's address or domain ("nOAuth"). The
//! same holds when `userIdentifierClaim` is `email`: an unverified address is no identifier, so
//! it neither matches `allowedUsers` nor becomes `X-Forwarded-User`.

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

/// The `email` claim when `email_verified` is `true` (the JSON boolean, or the string `"true"`
/// some providers send); `None` otherwise, a missing `email_verified` included.
fn verified_email(claims: &Map<String, Value>) -> Option<String> {
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if !verified {
        return None;
    }
    claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// The value of the identifier claim (`userIdentifierClaim`, default `sub`). With `email` as
/// the identifier, only a verified address (see the module documentation).
pub fn user_value(policy: &Policy, claims: &Map<String, Value>) -> Option<String> {
    if policy.user_claim == "email" {
        return verified_email(claims);
    }
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
        let ok = |v| check(&p, &claims(v)).is_ok();
        assert!(ok(
            json!({"sub": "1", "email": "alice@example.com", "email_verified": true})
        ));
        assert!(ok(
            json!({"sub": "2", "email": "bob@example.org", "email_verified": "true"})
        ));
        assert!(!ok(
            json!({"sub": "3", "email": "eve@example.net", "email_verified": true})
        ));
        assert!(!ok(json!({"sub": "4"})));
        // An address not said to be verified neither matches a user nor a domain: false, a
        // missing claim, and anything but `true`/"true".
        for verified in [
            json!(false),
            json!(null),
            json!("False"),
            json!(0),
            json!(1),
        ] {
            for email in ["alice@example.com", "x@example.org"] {
                assert!(
                    !ok(json!({"sub": "5", "email": email, "email_verified": verified})),
                    "{email} {verified}"
                );
            }
        }
        assert!(!ok(json!({"sub": "5", "email": "alice@example.com"})));
        assert!(!ok(json!({"sub": "6", "email": "x@example.org"})));
        // A look-alike domain does not match.
        assert!(!ok(
            json!({"email": "x@evil-example.org", "email_verified": true})
        ));
    }

    #[test]
    fn an_unverified_email_is_no_identifier() {
        let mut p = policy(&["alice@example.com"], &[], &[]);
        p.user_claim = "email".into();
        let unverified = claims(json!({"sub": "u", "email": "alice@example.com"}));
        assert_eq!(user_value(&p, &unverified), None);
        assert!(check(&p, &unverified).is_err());
        let verified =
            claims(json!({"sub": "u", "email": "alice@example.com", "email_verified": true}));
        assert_eq!(
            user_value(&p, &verified).as_deref(),
            Some("alice@example.com")
        );
        assert!(check(&p, &verified).is_ok());
        // Other identifier claims are taken as they are.
        p.user_claim = "preferred_username".into();
        let named = claims(json!({"sub": "u", "preferred_username": "alice"}));
        assert_eq!(user_value(&p, &named).as_deref(), Some("alice"));
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
