#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use serde_json::json;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::{Config, Platform};
use crate::store::{Class, Mode, Namespace, Sealer, TieredConfig, TieredStore};
use crate::testkit::{EcKey, ScriptedFetch};
use std::time::Duration;

const URL: &str = "https://idp.test";

fn config(extra: serde_json::Value) -> Config {
    let mut base = json!({"providerURL": URL, "bearer": {"enabled": true, "audience": "api"}});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    Config::parse(
        base.to_string().as_bytes(),
        &|_| None,
        &|_| Err(std::io::ErrorKind::NotFound.into()),
        Platform::default(),
    )
    .unwrap()
}

fn discovery(issuer: &str) -> String {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{URL}/auth"),
        "token_endpoint": format!("{URL}/token"),
        "jwks_uri": format!("{URL}/jwks"),
        "end_session_endpoint": format!("{URL}/logout"),
        "code_challenge_methods_supported": ["S256"],
    })
    .to_string()
}

struct World {
    fetch: ScriptedFetch,
    store: TieredStore,
    clock: Rc<ManualClock>,
    log: Vec<(LogLevel, String)>,
}

impl World {
    fn new(fetch: ScriptedFetch) -> World {
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let store = TieredStore::new(
            TieredConfig::new(Mode::Memory, "id"),
            None,
            Sealer::integrity(),
            clock.clone(),
        );
        World {
            fetch,
            store,
            clock,
            log: Vec::new(),
        }
    }

    fn deps(&mut self) -> Deps<'_> {
        Deps {
            fetch: &mut self.fetch,
            store: &mut self.store,
            clock: &*self.clock,
            log: &mut self.log,
        }
    }
}

#[test]
fn discovers_lazily_and_caches() {
    let key = EcKey::generate("k1");
    let mut w = World::new(
        ScriptedFetch::default()
            .route(
                &format!("{URL}/.well-known/openid-configuration"),
                200,
                &discovery(URL),
            )
            .route(&format!("{URL}/jwks"), 200, &key.jwks()),
    );
    let mut p = ProviderState::new(&config(json!({})), false).unwrap();
    assert!(w.fetch.requests.is_empty(), "nothing fetched at start-up");
    let m = p.metadata(&mut w.deps()).unwrap();
    assert_eq!(m.token_endpoint.as_deref(), Some("https://idp.test/token"));
    let k = p.keys(&mut w.deps()).unwrap();
    assert_eq!(k.len(), 1);
    for _ in 0..5 {
        p.metadata(&mut w.deps()).unwrap();
        p.keys(&mut w.deps()).unwrap();
    }
    assert_eq!(
        w.fetch.requests.len(),
        2,
        "one discovery and one JWKS fetch"
    );
    // After the JWKS lifetime the keys are fetched again.
    w.clock.advance(JWKS_TTL_MS + 1);
    p.keys(&mut w.deps()).unwrap();
    assert_eq!(w.fetch.count(&format!("{URL}/jwks")), 2);
}

#[test]
fn refuses_issuer_mismatch_and_http_endpoints() {
    let mut w = World::new(ScriptedFetch::default().route(
        &format!("{URL}/.well-known/openid-configuration"),
        200,
        &discovery("https://evil.test"),
    ));
    let mut p = ProviderState::new(&config(json!({})), false).unwrap();
    assert!(matches!(
        p.metadata(&mut w.deps()),
        Err(ProviderError::Invalid(_))
    ));

    let doc = json!({"issuer": URL, "jwks_uri": "http://idp.test/jwks"}).to_string();
    let mut w = World::new(ScriptedFetch::default().route(
        &format!("{URL}/.well-known/openid-configuration"),
        200,
        &doc,
    ));
    let mut p = ProviderState::new(&config(json!({})), false).unwrap();
    assert!(matches!(
        p.metadata(&mut w.deps()),
        Err(ProviderError::Invalid(_))
    ));

    let mut w = World::new(ScriptedFetch::default().route(
        &format!("{URL}/.well-known/openid-configuration"),
        200,
        "not json",
    ));
    let mut p = ProviderState::new(&config(json!({})), false).unwrap();
    assert!(matches!(
        p.metadata(&mut w.deps()),
        Err(ProviderError::Invalid(_))
    ));
}

#[test]
fn trailing_slash_issuer_is_accepted() {
    let mut w = World::new(ScriptedFetch::default().route(
        &format!("{URL}/.well-known/openid-configuration"),
        200,
        &discovery("https://idp.test/"),
    ));
    let mut p = ProviderState::new(&config(json!({})), false).unwrap();
    assert_eq!(p.issuer(&mut w.deps()).unwrap(), "https://idp.test/");
}

#[test]
fn provider_down_backs_off_then_recovers() {
    let mut w = World::new(ScriptedFetch::default().route(
        &format!("{URL}/.well-known/openid-configuration"),
        200,
        &discovery(URL),
    ));
    w.fetch.down = true;
    let mut p = ProviderState::new(&config(json!({})), false).unwrap();
    assert!(matches!(
        p.metadata(&mut w.deps()),
        Err(ProviderError::Unreachable(_))
    ));
    // Within the back-off the provider is not asked again.
    assert!(p.metadata(&mut w.deps()).is_err());
    assert_eq!(w.fetch.requests.len(), 1);
    w.fetch.down = false;
    w.clock.advance(FAILURE_BACKOFF_MS);
    assert!(p.metadata(&mut w.deps()).is_ok());
}

/// A provider discovered at `URL` serving `jwks`, and a token signed by `signer` valid for an
/// hour, with the check a bearer request makes.
fn rotating(jwks: &str, signer: &EcKey) -> (World, ProviderState, String) {
    let w = World::new(
        ScriptedFetch::default()
            .route(
                &format!("{URL}/.well-known/openid-configuration"),
                200,
                &discovery(URL),
            )
            .route(&format!("{URL}/jwks"), 200, jwks),
    );
    let p = ProviderState::new(&config(json!({})), false).unwrap();
    let now = w.clock.now_secs();
    let token = signer.sign(
        json!({}),
        &json!({"iss": URL, "aud": "api", "exp": now + 3600}),
    );
    (w, p, token)
}

fn check_token(token: &str, now: u64) -> impl Fn(&Jwks) -> Result<(), JwtError> + '_ {
    move |k: &Jwks| {
        crate::jwt::Validation::new(URL)
            .audience("api")
            .verify(token, k, now)
            .map(|_| ())
    }
}

/// Makes the scripted provider answer `body` for its JWKS from now on.
fn serve_jwks(w: &mut World, status: u16, body: &str) {
    w.fetch.routes.retain(|(u, _, _)| !u.ends_with("/jwks"));
    w.fetch = std::mem::take(&mut w.fetch).route(&format!("{URL}/jwks"), status, body);
}

#[test]
fn unknown_kid_refetches_at_most_once_per_interval() {
    let old = EcKey::generate("old");
    let new = EcKey::generate("new");
    let (mut w, mut p, token) = rotating(&old.jwks(), &new);
    let verify = check_token(&token, w.clock.now_secs());
    assert_eq!(
        p.verify(&mut w.deps(), &verify),
        Err(VerifyError::Token(JwtError::UnknownKid))
    );
    assert_eq!(
        w.fetch.count(&format!("{URL}/jwks")),
        2,
        "one refetch for the unknown kid"
    );
    // A second unknown kid right away does not refetch.
    assert!(p.verify(&mut w.deps(), &verify).is_err());
    assert_eq!(w.fetch.count(&format!("{URL}/jwks")), 2);
    // The provider rotates its keys; after the interval the new key is found.
    serve_jwks(
        &mut w,
        200,
        &json!({"keys": [old.jwk(), new.jwk()]}).to_string(),
    );
    w.clock.advance(UNKNOWN_KID_REFETCH_MS);
    assert!(p.verify(&mut w.deps(), &verify).is_ok());
}

#[test]
fn an_emptied_key_set_withdraws_the_old_keys() {
    let key = EcKey::generate("k1");
    let (mut w, mut p, token) = rotating(&key.jwks(), &key);
    let verify = check_token(&token, w.clock.now_secs());
    assert!(p.verify(&mut w.deps(), &verify).is_ok());
    // The provider withdraws its key (an empty set, or only keys we cannot use).
    serve_jwks(&mut w, 200, r#"{"keys": []}"#);
    w.clock.advance(JWKS_TTL_MS);
    assert_eq!(
        p.verify(&mut w.deps(), &verify),
        Err(VerifyError::Token(JwtError::UnknownKid)),
        "the old key is not served as stale"
    );
    assert!(w
        .log
        .iter()
        .any(|(_, l)| l.contains("no usable signing key")));
    // It publishes a key again: found at the next unknown-kid refetch.
    serve_jwks(&mut w, 200, &key.jwks());
    w.clock.advance(UNKNOWN_KID_REFETCH_MS);
    assert!(p.verify(&mut w.deps(), &verify).is_ok());
}

#[test]
fn static_configuration_never_fetches() {
    let key = EcKey::generate("s");
    let cfg = Config::parse(
        json!({"issuer": "https://static.test", "jwks": key.jwks(), "bearer": {"enabled": true, "audience": "api"}})
            .to_string()
            .as_bytes(),
        &|_| None,
        &|_| Err(std::io::ErrorKind::NotFound.into()),
        Platform::default(),
    )
    .unwrap();
    let mut w = World::new(ScriptedFetch::default());
    let mut p = ProviderState::new(&cfg, false).unwrap();
    assert_eq!(p.issuer(&mut w.deps()).unwrap(), "https://static.test");
    assert_eq!(p.keys(&mut w.deps()).unwrap().len(), 1);
    let now = w.clock.now_secs();
    let token = EcKey::generate("unknown").sign(
        json!({}),
        &json!({"iss": "https://static.test", "aud": "api", "exp": now + 60}),
    );
    let r = p.verify(&mut w.deps(), |k| {
        crate::jwt::Validation::new("https://static.test")
            .audience("api")
            .verify(&token, k, now)
    });
    assert!(matches!(r, Err(VerifyError::Token(JwtError::UnknownKid))));
    assert!(w.fetch.requests.is_empty());
}

#[test]
fn keys_planted_in_an_unsealed_store_are_never_used() {
    // Someone with write access to Redis plants a JWKS for their own key under the JWKS entry.
    // Without a session key the store only carries an unkeyed integrity tag, so the provider
    // must neither read nor write shared documents.
    let real = EcKey::generate("real");
    let evil = EcKey::generate("evil");
    let mut w = World::new(
        ScriptedFetch::default()
            .route(
                &format!("{URL}/.well-known/openid-configuration"),
                200,
                &discovery(URL),
            )
            .route(&format!("{URL}/jwks"), 200, &real.jwks()),
    );
    let jwks_uri = format!("{URL}/jwks");
    w.store
        .set(
            Namespace::JWKS,
            &jwks_uri,
            evil.jwks().as_bytes(),
            Duration::from_secs(600),
            Class::Cache,
        )
        .unwrap();
    let mut p = ProviderState::new(&config(json!({})), false).unwrap();
    let keys = p.keys(&mut w.deps()).unwrap();
    assert!(keys.contains_kid("real") && !keys.contains_kid("evil"));
    assert_eq!(
        w.fetch.count(&jwks_uri),
        1,
        "fetched from the provider, not from the store"
    );
}

#[test]
fn sealed_store_shares_documents_between_instances() {
    let key = EcKey::generate("k1");
    let clock = Rc::new(ManualClock::new(1_700_000_000_000));
    let seal = crate::store::SealKey::new([7u8; 32]);
    let mut w = World::new(
        ScriptedFetch::default()
            .route(
                &format!("{URL}/.well-known/openid-configuration"),
                200,
                &discovery(URL),
            )
            .route(&format!("{URL}/jwks"), 200, &key.jwks()),
    );
    w.store = TieredStore::new(
        TieredConfig::new(Mode::Memory, "id"),
        None,
        Sealer::aead(&seal),
        clock,
    );
    let mut a = ProviderState::new(&config(json!({})), true).unwrap();
    a.keys(&mut w.deps()).unwrap();
    // A second instance (same store) finds both documents without asking the provider.
    let mut b = ProviderState::new(&config(json!({})), true).unwrap();
    b.keys(&mut w.deps()).unwrap();
    assert_eq!(
        w.fetch.requests.len(),
        2,
        "discovery and JWKS fetched once for both instances"
    );
}
