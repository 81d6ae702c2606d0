//! What a session holds, and which claims it keeps.
//!
//! The session is small on purpose (it travels in a cookie and is opened on every request): ids,
//! times, the refresh token, and only the claims the access policy and the identity headers
//! read (the ID token, needed only at logout, travels in a cookie of its own). A group or role
//! claim that only the policy reads is reduced to the values the policy asks about, so a user
//! with 200 groups does not carry 200 groups in a cookie unless a header forwards them.

use std::fmt;

use serde_json::{Map, Value};

use crate::auth::policy;
use crate::config::Config;

/// One browser session.
///
/// Serialised as a JSON object with one-letter member names (it goes into a cookie):
/// `i` id, `s` sub, `p` provider sid, `l` login ms, `n` seconds from login to when the tokens
/// were issued (absent: 0), `e` expiry, `m` max, `g` generation, `r` refresh token, `t` ID token,
/// `a` access token, `c` claims. Written and read by hand rather than derived: the derived code
/// costs more guest size than these few lines.
#[derive(Clone, PartialEq)]
pub struct Session {
    /// Our session id (random, 128 bits): the key of revocation markers, refresh locks and
    /// server-side tickets.
    pub id: String,
    /// The subject (`sub` of the ID token).
    pub sub: String,
    /// The provider's session id (`sid` of the ID token), for back-channel logout.
    pub provider_sid: Option<String>,
    /// When the user logged in, ms since the epoch.
    pub login_ms: u64,
    /// When the current tokens were issued (seconds since the epoch: the login or the last
    /// refresh).
    pub issued: u64,
    /// When the tokens expire (seconds since the epoch): refresh before, no access after.
    pub expires: u64,
    /// Absolute end of the session (seconds): login + `sessionMaxAge`.
    pub max: u64,
    /// How many refreshes led to this version (keys the refresh lock).
    pub generation: u32,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<String>,
    /// The ID token for `id_token_hint` at logout: server-side sessions only (a cookie session
    /// keeps it in a cookie of its own, sent only to the logout path, so the cookie opened on
    /// every request stays small).
    pub id_token: Option<String>,
    /// The access token, kept only to forward it (`forwardAccessToken`).
    pub access_token: Option<String>,
    /// The claims the policy and the identity headers read.
    pub claims: Map<String, Value>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.sub)
            .field("login_ms", &self.login_ms)
            .field("expires", &self.expires)
            .field("max", &self.max)
            .field("generation", &self.generation)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The serialised form (JSON).
    ///
    /// # Errors
    /// Never in practice (serialising JSON values cannot fail); mapped for safety.
    pub fn encode(&self) -> Result<Vec<u8>, crate::error::Error> {
        let mut m = Map::new();
        m.insert("i".into(), Value::String(self.id.clone()));
        m.insert("s".into(), Value::String(self.sub.clone()));
        if let Some(p) = &self.provider_sid {
            m.insert("p".into(), Value::String(p.clone()));
        }
        m.insert("l".into(), Value::from(self.login_ms));
        let since_login = self.issued.saturating_sub(self.login_ms / 1000);
        if since_login > 0 {
            m.insert("n".into(), Value::from(since_login));
        }
        m.insert("e".into(), Value::from(self.expires));
        m.insert("m".into(), Value::from(self.max));
        m.insert("g".into(), Value::from(self.generation));
        if let Some(r) = &self.refresh_token {
            m.insert("r".into(), Value::String(r.clone()));
        }
        if let Some(t) = &self.id_token {
            m.insert("t".into(), Value::String(t.clone()));
        }
        if let Some(a) = &self.access_token {
            m.insert("a".into(), Value::String(a.clone()));
        }
        m.insert("c".into(), Value::Object(self.claims.clone()));
        serde_json::to_vec(&Value::Object(m))
            .map_err(|_| crate::error::Error::Other("session does not serialise".into()))
    }

    /// Parses the serialised form; `None` for anything that is not a complete session.
    pub fn decode(bytes: &[u8]) -> Option<Session> {
        let Value::Object(mut m) = serde_json::from_slice(bytes).ok()? else {
            return None;
        };
        let mut string = |k: &str| match m.remove(k) {
            Some(Value::String(s)) => Some(Some(s)),
            None | Some(Value::Null) => Some(None),
            Some(_) => None,
        };
        let id = string("i")??;
        let sub = string("s")??;
        let provider_sid = string("p")?;
        let refresh_token = string("r")?;
        let id_token = string("t")?;
        let access_token = string("a")?;
        let num = |k: &str| m.get(k).and_then(Value::as_u64);
        let login_ms = num("l")?;
        let issued = match m.get("n") {
            None => 0,
            Some(v) => v.as_u64()?,
        }
        .saturating_add(login_ms / 1000);
        let expires = num("e")?;
        let max = num("m")?;
        let generation = u32::try_from(num("g").unwrap_or(0)).ok()?;
        let Some(Value::Object(claims)) = m.remove("c") else {
            return None;
        };
        Some(Session {
            id,
            sub,
            provider_sid,
            login_ms,
            issued,
            expires,
            max,
            generation,
            refresh_token,
            id_token,
            access_token,
            claims,
        })
    }

    /// The revocation check's view of this session.
    pub fn revocation_ref(&self) -> crate::auth::revocation::SessionRef<'_> {
        crate::auth::revocation::SessionRef {
            session_id: &self.id,
            provider_sid: self.provider_sid.as_deref(),
            sub: &self.sub,
            login_ms: self.login_ms,
        }
    }
}

/// What [`select_claims`] depends on, as a short fingerprint (64 bits, hex), sealed into every
/// session's associated data: another middleware that shares the cookie name and identity but
/// has another policy or other claim headers (another router on the host, or this one after a
/// configuration change) must not judge the claims chosen for the first — a user in its groups
/// would get a 403 for groups the first never kept. Such a session does not open, and the
/// browser logs in again. (In the associated data rather than in the session, it costs the
/// cookie nothing.)
pub fn selection_fingerprint(cfg: &Config) -> String {
    let p = &cfg.policy;
    let mut input = Vec::new();
    let mut part = |s: &str| {
        input.extend_from_slice(&(s.len() as u64).to_be_bytes());
        input.extend_from_slice(s.as_bytes());
    };
    part("oidc-guard claim selection v1");
    part(&p.user_claim);
    part(&p.group_claim);
    part(&p.role_claim);
    part(&p.allowed_roles_and_groups.len().to_string());
    for g in &p.allowed_roles_and_groups {
        part(g);
    }
    part(&cfg.upstream.claim_headers.len().to_string());
    for h in &cfg.upstream.claim_headers {
        part(&h.claim);
    }
    crate::crypto::sha256_hex(&input, 8)
}

/// Which claims of an ID token a session keeps: the identifier claim, `sub`, `email`,
/// `email_verified`, the group and role claims (reduced to the policy's values unless a header
/// forwards them), and every claim a header forwards. Dotted names (`realm_access.roles`) are
/// kept under their full name, which [`policy::lookup`] finds first.
pub fn select_claims(cfg: &Config, claims: &Map<String, Value>) -> Map<String, Value> {
    let p = &cfg.policy;
    let headers: Vec<&str> = cfg
        .upstream
        .claim_headers
        .iter()
        .map(|h| h.claim.as_str())
        .collect();
    let mut out = Map::new();
    let keep = |name: &str, out: &mut Map<String, Value>| {
        if out.contains_key(name) {
            return;
        }
        if let Some(v) = policy::lookup(claims, name) {
            out.insert(name.to_string(), v.clone());
        }
    };
    for name in ["sub", p.user_claim.as_str(), "email", "email_verified"] {
        keep(name, &mut out);
    }
    for name in &headers {
        keep(name, &mut out);
    }
    for name in [p.group_claim.as_str(), p.role_claim.as_str()] {
        if out.contains_key(name) || p.allowed_roles_and_groups.is_empty() {
            // Forwarded in full by a header, or not read by the policy at all.
            continue;
        }
        let wanted: Vec<Value> = policy::claim_values(claims, name)
            .into_iter()
            .filter(|v| p.allowed_roles_and_groups.iter().any(|w| w == v))
            .map(Value::String)
            .collect();
        if !wanted.is_empty() {
            out.insert(name.to_string(), Value::Array(wanted));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn cfg(extra: Value) -> Config {
        let mut v = json!({
            "providerURL": "https://idp.test", "clientID": "app", "clientSecret": "s",
            "sessionEncryptionKey": "0123456789abcdef0123456789abcdef",
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        Config::parse(
            v.to_string().as_bytes(),
            &|_| None,
            &|_| Err(std::io::ErrorKind::NotFound.into()),
            Default::default(),
        )
        .unwrap()
    }

    fn big_claims() -> Map<String, Value> {
        let groups: Vec<String> = (0..200)
            .map(|i| format!("large-claims-group-{i:03}"))
            .collect();
        json!({"sub": "u1", "email": "u@example.com", "email_verified": true, "name": "U",
               "groups": groups, "roles": ["admin", "user"], "picture": "x".repeat(500),
               "realm_access": {"roles": ["r1", "r2"]}})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn keeps_only_what_policy_and_headers_read() {
        let c = select_claims(&cfg(json!({})), &big_claims());
        assert_eq!(
            c.keys().collect::<Vec<_>>(),
            vec!["email", "email_verified", "sub"]
        );

        let c = select_claims(
            &cfg(json!({"allowedRolesAndGroups": ["large-claims-group-007", "admin"]})),
            &big_claims(),
        );
        assert_eq!(c["groups"], json!(["large-claims-group-007"]));
        assert_eq!(c["roles"], json!(["admin"]));

        let c = select_claims(
            &cfg(
                json!({"allowedRolesAndGroups": ["r2"], "roleClaimName": "realm_access.roles",
                        "claimHeaders": {"X-Groups": "groups", "X-Name": "name"}}),
            ),
            &big_claims(),
        );
        assert_eq!(c["groups"].as_array().unwrap().len(), 200);
        assert_eq!(c["name"], "U");
        assert_eq!(c["realm_access.roles"], json!(["r2"]));
        assert!(policy::check(
            &cfg(json!({"allowedRolesAndGroups": ["r2"], "roleClaimName": "realm_access.roles"}))
                .policy,
            &c
        )
        .is_ok());
    }

    #[test]
    fn the_selection_fingerprint_follows_what_select_claims_reads() {
        let f = |extra: Value| selection_fingerprint(&cfg(extra));
        let base = f(json!({}));
        assert_eq!(
            base,
            f(json!({"scopes": ["groups"]})),
            "not read by select_claims"
        );
        for other in [
            json!({"allowedRolesAndGroups": ["admins"]}),
            json!({"allowedRolesAndGroups": ["devs"]}),
            json!({"claimHeaders": {"X-Groups": "groups"}}),
            json!({"userIdentifierClaim": "email"}),
            json!({"groupClaimName": "grp"}),
        ] {
            assert_ne!(base, f(other.clone()), "{other}");
        }
    }

    #[test]
    fn encodes_and_redacts() {
        let s = Session {
            id: "i".into(),
            sub: "u".into(),
            provider_sid: None,
            login_ms: 1_000,
            issued: 61,
            expires: 2,
            max: 3,
            generation: 0,
            refresh_token: Some("secret-rt".into()),
            id_token: None,
            access_token: None,
            claims: Map::new(),
        };
        let b = s.encode().unwrap();
        assert!(String::from_utf8_lossy(&b).contains(r#""n":60"#));
        assert_eq!(Session::decode(&b).unwrap(), s);
        // Tokens issued at login (every session before its first refresh): no `n` at all.
        let at_login = Session {
            issued: 1,
            ..s.clone()
        };
        let b = at_login.encode().unwrap();
        assert!(!String::from_utf8_lossy(&b).contains(r#""n""#));
        assert_eq!(Session::decode(&b).unwrap(), at_login);
        assert!(
            Session::decode(br#"{"i":"i","s":"u","l":1,"n":"x","e":2,"m":3,"c":{}}"#).is_none()
        );
        assert!(!format!("{s:?}").contains("secret-rt"));
        assert!(Session::decode(b"{}").is_none());
        assert!(Session::decode(b"\xff").is_none());
    }
}
