//! Micro-benchmark of the session check's core: opening a sealed session cookie (base64url
//! decode, one AES-256-GCM open, JSON parse of the session), as the hot path does per request.
//!
//! A plain function returning nanoseconds per open, so it can run natively (the ignored test
//! below prints the figures) and inside the guest. Time comes from the given [`Clock`]'s `now_us`
//! (wall clock; `Instant` is not usable in the guest).

use std::hint::black_box;

use serde_json::{Map, Value};

use super::seal::{Purpose, Sealer};
use super::Session;
use crate::clock::Clock;

/// A session like the plugin writes: ids, times, a refresh token, the usual claims and `groups`
/// claim values.
pub fn sample_session(groups: usize) -> Session {
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String("248289761001".into()));
    claims.insert("email".into(), Value::String("jane.doe@example.com".into()));
    claims.insert("email_verified".into(), Value::Bool(true));
    if groups > 0 {
        claims.insert(
            "groups".into(),
            Value::Array(
                (0..groups)
                    .map(|i| Value::String(format!("large-claims-group-{i:03}")))
                    .collect(),
            ),
        );
    }
    Session {
        id: "kx1R2mC4tV9qP0sLwZb3Yg".into(),
        sub: "248289761001".into(),
        provider_sid: Some("08a5019c-17e1-4977-8f42-65a12843ea02".into()),
        login_ms: 1_700_000_000_000,
        issued: 1_700_000_000,
        expires: 1_700_000_300,
        max: 1_700_086_400,
        generation: 0,
        refresh_token: Some("x".repeat(43)),
        id_token: None,
        access_token: None,
        claims,
    }
}

/// Seals `session` once, then opens and parses it `iterations` times; returns the sealed
/// length and the mean nanoseconds per open.
///
/// # Errors
/// A message when the sample cannot be sealed or does not open (a broken setup is never timed).
pub fn open_session_ns(
    session: &Session,
    iterations: u64,
    clock: &dyn Clock,
) -> Result<(usize, u64), String> {
    let sealer = Sealer::new(Purpose::Session, &[[7u8; 32], [8u8; 32]]);
    let identity = "3f9a1c0e5b7d";
    let name = "_oidc_guard_session";
    let sealed = sealer
        .seal(
            identity,
            name,
            &session.encode().map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
    let open = || -> Option<Session> {
        let o = sealer.open(identity, name, black_box(&sealed)).ok()?;
        Session::decode(&o.plaintext)
    };
    if open().as_ref() != Some(session) {
        return Err("the sample session does not open".into());
    }
    let n = iterations.max(1);
    let t0 = clock.now_us();
    for _ in 0..n {
        if black_box(open()).is_none() {
            return Err("the sample session stopped opening".into());
        }
    }
    let dt = clock.now_us().saturating_sub(t0);
    Ok((sealed.len(), dt.saturating_mul(1000) / n))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn opens() {
        let (len, _) = open_session_ns(&sample_session(3), 3, &SystemClock).unwrap();
        assert!(len > 200);
    }

    /// `cargo test --release -p oidc-guard session_open_native -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn session_open_native() {
        for groups in [0, 20, 200] {
            let (len, ns) = open_session_ns(&sample_session(groups), 20_000, &SystemClock).unwrap();
            println!(
                "session open ({groups} groups, cookie {len} B): {:.2} µs",
                ns as f64 / 1000.0
            );
        }
    }
}
