//! Back-channel logout, natively: every refusal path, replay across two replicas sharing a fake
//! L2, the revocation markers the session check reads, and the store-down behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::auth::revocation::{is_revoked, SessionRef};
use crate::clock::ManualClock;
use crate::config::{Config, Platform};
use crate::http::form;
use crate::jwt::BACKCHANNEL_LOGOUT_EVENT;
use crate::plugin::{Parts, Plugin};
use crate::store::fake::{FakeL2, FakeState, Fault};
use crate::store::{StoreError, L2};
use crate::testkit::{EcKey, FakeExchange, ScriptedFetch};

const ISS: &str = "https://idp.test";
const CLIENT: &str = "app";
const NOW_MS: u64 = 1_700_000_000_000;
const NOW: i64 = 1_700_000_000;
const PATH: &str = "/oauth2/backchannel-logout";

struct World {
    key: EcKey,
    clock: Rc<ManualClock>,
    l2: Rc<RefCell<FakeState>>,
    fake: FakeL2,
}

impl World {
    fn new() -> World {
        let clock = Rc::new(ManualClock::new(NOW_MS));
        let (fake, l2) = FakeL2::new(clock.clone());
        World {
            key: EcKey::generate("k1"),
            clock,
            l2,
            fake,
        }
    }

    fn replica(&self, extra: Value) -> Plugin {
        self.replica_l2(extra, Box::new(self.fake.sharing()))
    }

    fn replica_l2(&self, extra: Value, l2: Box<dyn L2>) -> Plugin {
        let mut cfg = json!({
            "providerURL": ISS,
            "clientID": CLIENT,
            "clientSecret": "s3cret-client-value",
            "sessionEncryptionKey": "0123456789abcdef0123456789abcdef-test",
            "jwks": self.key.jwks(),
            "backchannelLogout": {"enabled": true},
            "sessionMaxAge": "2h",
        });
        if let (Some(c), Value::Object(e)) = (cfg.as_object_mut(), extra) {
            for (k, v) in e {
                c.insert(k, v);
            }
        }
        let cfg = Config::parse(
            cfg.to_string().as_bytes(),
            &|_| None,
            &|_| Err(std::io::ErrorKind::NotFound.into()),
            Platform {
                bridge_present: true,
            },
        )
        .unwrap();
        let disc = json!({"issuer": ISS, "authorization_endpoint": format!("{ISS}/auth"),
                          "token_endpoint": format!("{ISS}/token"), "jwks_uri": format!("{ISS}/jwks")});
        let fetch = ScriptedFetch::default().route(
            &format!("{ISS}/.well-known/openid-configuration"),
            200,
            &disc.to_string(),
        );
        let parts = Parts {
            clock: self.clock.clone(),
            l2: Some(l2),
            fetch: Box::new(fetch),
        };
        let mut p = Plugin::with_parts(cfg, parts);
        assert!(p.guard().is_some(), "{:?}", p.startup_messages());
        p
    }

    fn claims(&self) -> Value {
        json!({"iss": ISS, "aud": CLIENT, "iat": NOW - 5, "exp": NOW + 120, "jti": "lt-1",
               "sub": "alice", "sid": "op-session-1",
               "events": {BACKCHANNEL_LOGOUT_EVENT: {}}})
    }

    fn token(&self, claims: &Value) -> String {
        self.key.sign(json!({"typ": "logout+jwt"}), claims)
    }
}

fn post(body: &str) -> FakeExchange {
    let mut ex = FakeExchange::get(PATH).with("Content-Type", "application/x-www-form-urlencoded");
    ex.method = "POST".into();
    ex.body = body.as_bytes().to_vec();
    ex
}

fn form_of(token: &str) -> String {
    form::build(&[("logout_token", token)])
}

fn status(p: &mut Plugin, ex: &FakeExchange) -> u16 {
    assert!(!p.handle(ex), "the logout endpoint never forwards");
    ex.status().unwrap()
}

fn body(ex: &FakeExchange) -> String {
    String::from_utf8(ex.sent.borrow().as_ref().unwrap().2.clone()).unwrap()
}

fn session(sid: Option<&str>, sub: &str, login_ms: u64) -> SessionRef<'static> {
    let sid: Option<&'static str> = sid.map(|s| &*Box::leak(s.to_string().into_boxed_str()));
    let sub: &'static str = Box::leak(sub.to_string().into_boxed_str());
    SessionRef {
        session_id: "ours-1",
        provider_sid: sid,
        sub,
        login_ms,
    }
}

fn revoked(p: &mut Plugin, s: SessionRef<'_>) -> bool {
    is_revoked(&mut p.guard().unwrap().store, s).unwrap()
}

#[test]
fn a_valid_logout_token_ends_the_provider_session_on_every_replica() {
    let w = World::new();
    let (mut a, mut b) = (w.replica(json!({})), w.replica(json!({})));
    let s = session(Some("op-session-1"), "alice", NOW_MS - 60_000);
    assert!(!revoked(&mut b, s));
    // Let B's remembered miss expire (hybrid L1 keeps misses for the revocation-check interval).
    w.clock.advance(6_000);
    let ex = post(&form_of(&w.token(&w.claims())));
    assert_eq!(status(&mut a, &ex), 200, "{}", body(&ex));
    assert_eq!(
        ex.sent_header("cache-control"),
        vec!["no-store".to_string()]
    );
    assert!(revoked(&mut a, s));
    assert!(revoked(&mut b, s), "the other replica sees the revocation");
    // Another session of the same user (another sid) is not affected.
    assert!(!revoked(
        &mut b,
        session(Some("op-session-2"), "alice", NOW_MS)
    ));
    // The revocation marker lives as long as a session can.
    let st = w.l2.borrow();
    let (_, (_, exp)) = st.map.iter().find(|(k, _)| k.contains(":rev:p:")).unwrap();
    assert_eq!(exp - (NOW_MS + 6_000), 2 * 3600 * 1000);
}

#[test]
fn a_logout_token_with_only_sub_ends_every_earlier_session_of_the_user() {
    let w = World::new();
    let mut a = w.replica(json!({}));
    let mut c = w.claims();
    c.as_object_mut().unwrap().remove("sid");
    let ex = post(&form_of(&w.token(&c)));
    assert_eq!(status(&mut a, &ex), 200, "{}", body(&ex));
    assert!(revoked(&mut a, session(None, "alice", NOW_MS - 1)));
    assert!(revoked(&mut a, session(Some("any"), "alice", NOW_MS)));
    assert!(
        !revoked(&mut a, session(None, "alice", NOW_MS + 1)),
        "a later login stays valid"
    );
    assert!(!revoked(&mut a, session(None, "bob", NOW_MS - 1)));
}

#[test]
fn a_replayed_logout_token_is_refused_on_any_replica() {
    let w = World::new();
    let (mut a, mut b) = (w.replica(json!({})), w.replica(json!({})));
    let mut c = w.claims();
    c.as_object_mut().unwrap().remove("sid");
    let t = w.token(&c);
    assert_eq!(status(&mut a, &post(&form_of(&t))), 200);
    // A replay later must not move the subject's cut-off forward (it would end sessions created
    // after the real logout).
    w.clock.advance(30_000);
    let ex = post(&form_of(&t));
    assert_eq!(status(&mut b, &ex), 400);
    assert_eq!(body(&ex).trim(), "{\"error\":\"invalid_request\"}");
    assert!(ex.logs.borrow().iter().any(|(_, m)| m.contains("replayed")));
    assert!(
        !revoked(&mut b, session(None, "alice", NOW_MS + 10_000)),
        "the replay ended nothing"
    );
    assert_eq!(status(&mut a, &post(&form_of(&t))), 400);
    // Same jti, other signature string (ECDSA): still the same logout token.
    assert_eq!(status(&mut a, &post(&form_of(&w.token(&c)))), 400);
    // The jti marker outlives the token's acceptance: exp (120 s) + 60 s skew from NOW.
    let st = w.l2.borrow();
    let (_, (_, exp)) = st.map.iter().find(|(k, _)| k.contains(":jti:lt:")).unwrap();
    assert_eq!(*exp, NOW_MS + 180_000);
}

#[test]
fn invalid_requests_are_refused() {
    let w = World::new();
    let mut a = w.replica(json!({}));
    let t = w.token(&w.claims());
    // Method.
    let mut ex = post(&form_of(&t));
    ex.method = "GET".into();
    assert_eq!(status(&mut a, &ex), 405);
    assert_eq!(ex.sent_header("allow"), vec!["POST".to_string()]);
    // Content type.
    let ex = post(&form_of(&t));
    ex.headers.borrow_mut().retain(|(k, _)| k != "Content-Type");
    assert_eq!(
        status(&mut a, &ex.with("Content-Type", "application/json")),
        400
    );
    let ex = post(&form_of(&t)).with("X", "y");
    ex.headers.borrow_mut().retain(|(k, _)| k != "Content-Type");
    assert_eq!(status(&mut a, &ex), 400);
    // Body: oversized, missing, twice, empty.
    let big = format!(
        "{}&pad={}",
        form_of(&t),
        "x".repeat(crate::plugin::MAX_BODY)
    );
    for b in [
        big,
        String::new(),
        "logout_token=".into(),
        format!("{}&{}", form_of(&t), form_of(&t)),
        "other=1".into(),
        // A second token after many other pairs, and one percent-encoded in its name.
        format!(
            "{}{}&logout_token=second.value.here",
            "a=1&".repeat(300),
            form_of(&t)
        ),
        format!("{}&logout%5Ftoken=x.y.z", form_of(&t)),
    ] {
        let ex = post(&b);
        assert_eq!(status(&mut a, &ex), 400, "{}", &b[..b.len().min(40)]);
        assert_eq!(body(&ex).trim(), "{\"error\":\"invalid_request\"}");
    }
    // The only token, after many other pairs, is found.
    let mut c = w.claims();
    c["jti"] = json!("after-many-pairs");
    let ex = post(&format!("{}{}", "a=1&".repeat(300), form_of(&w.token(&c))));
    assert_eq!(status(&mut a, &ex), 200, "{}", body(&ex));
    // Charset parameter is fine.
    let ex = post(&form_of(&t));
    ex.headers.borrow_mut().retain(|(k, _)| k != "Content-Type");
    let ex = ex.with(
        "Content-Type",
        "application/x-www-form-urlencoded; charset=UTF-8",
    );
    assert_eq!(status(&mut a, &ex), 200, "{}", body(&ex));
}

#[test]
fn invalid_logout_tokens_are_refused() {
    let w = World::new();
    let mut a = w.replica(json!({}));
    let c = w.claims();
    let with = |k: &str, v: Value| {
        let mut c = c.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = c.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let cases: Vec<(&str, String)> = vec![
        ("nonce", w.token(&with("nonce", json!("n")))),
        ("wrong aud", w.token(&with("aud", json!("other-client")))),
        (
            "wrong iss",
            w.token(&with("iss", json!("https://evil.test"))),
        ),
        ("no events", w.token(&without("events"))),
        (
            "wrong event",
            w.token(&with(
                "events",
                json!({"http://schemas.openid.net/event/other": {}}),
            )),
        ),
        ("no jti", w.token(&without("jti"))),
        ("no iat", w.token(&without("iat"))),
        (
            "iat older than replay.ttl",
            w.token(&with("iat", json!(NOW - 7200))),
        ),
        ("expired", w.token(&with("exp", json!(NOW - 120)))),
        (
            "neither sid nor sub",
            w.token(&{
                let mut c = without("sid");
                c.as_object_mut().unwrap().remove("sub");
                c
            }),
        ),
        ("access token typ", w.key.sign(json!({"typ": "at+jwt"}), &c)),
        (
            "unknown key",
            EcKey::generate("k9").sign(json!({"typ": "logout+jwt"}), &c),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                crate::testkit::b64(br#"{"alg":"none"}"#),
                crate::testkit::b64(c.to_string().as_bytes())
            ),
        ),
        ("not a JWT", "abc".into()),
    ];
    for (what, t) in cases {
        let ex = post(&form_of(&t));
        assert_eq!(status(&mut a, &ex), 400, "{what}: {}", body(&ex));
    }
    assert!(!revoked(
        &mut a,
        session(Some("op-session-1"), "alice", NOW_MS - 1)
    ));
    // A typ-less token (some providers send none) is accepted.
    let ex = post(&form_of(
        &w.key.sign(json!({}), &with("jti", json!("lt-untyped"))),
    ));
    assert_eq!(status(&mut a, &ex), 200, "{}", body(&ex));
}

#[test]
fn a_store_outage_is_a_failed_logout_that_can_be_retried() {
    let w = World::new();
    let mut a = w.replica(json!({}));
    let t = w.token(&w.claims());
    w.l2.borrow_mut().fault = Fault::Fail(StoreError::Unavailable("down".into()));
    let ex = post(&form_of(&t));
    assert_eq!(status(&mut a, &ex), 400, "§2.8: a failed logout is 400");
    assert!(
        ex.logs
            .borrow()
            .iter()
            .any(|(_, m)| m.contains("could not be recorded")),
        "{:?}",
        ex.logs.borrow()
    );
    w.l2.borrow_mut().fault = Fault::None;
    w.clock.advance(31_000);
    // The retry is not taken for a replay.
    let ex = post(&form_of(&t));
    assert_eq!(status(&mut a, &ex), 200, "{:?}", ex.logs.borrow());
}

/// An L2 whose plain `set` fails (the revocation write) while set-if-absent and delete work.
struct FailingSets(FakeL2);

impl L2 for FailingSets {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
    fn set(&mut self, _: &str, _: &[u8], _: Duration) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("set refused by the test".into()))
    }
    fn set_if_absent(
        &mut self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.0.set_if_absent(key, value, ttl)
    }
    fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        self.0.delete(key)
    }
    fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        self.0.exists(key)
    }
    fn ttl(&mut self, key: &str) -> Result<Option<Option<Duration>>, StoreError> {
        self.0.ttl(key)
    }
    fn ping(&mut self) -> Result<Duration, StoreError> {
        self.0.ping()
    }
}

#[test]
fn a_revocation_that_cannot_be_written_releases_the_jti() {
    let w = World::new();
    let mut a = w.replica_l2(json!({}), Box::new(FailingSets(w.fake.sharing())));
    let t = w.token(&w.claims());
    let ex = post(&form_of(&t));
    assert_eq!(status(&mut a, &ex), 400);
    assert!(
        w.l2.borrow().map.keys().all(|k| !k.contains(":jti:lt:")),
        "the jti marker was released"
    );
    // So the provider's retry, on a healthy replica, ends the session.
    let mut b = w.replica(json!({}));
    assert_eq!(status(&mut b, &post(&form_of(&t))), 200);
}

#[test]
fn without_replay_detection_tokens_are_not_recorded() {
    let w = World::new();
    let mut a = w.replica(json!({"replay": {"enabled": false}}));
    let t = w.token(&w.claims());
    assert_eq!(status(&mut a, &post(&form_of(&t))), 200);
    assert!(w.l2.borrow().map.keys().all(|k| !k.contains(":jti:")));
}
