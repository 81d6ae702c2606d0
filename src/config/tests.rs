#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use serde_json::{json, Value};

use super::keys::{self, Def, Kind, KEYS};
use super::value::{self, Split};
use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef"; // 32 bytes
const KEY2: &str = "fedcba9876543210fedcba9876543210-older";

fn no_env(_: &str) -> Option<String> {
    None
}

fn no_files(_: &str) -> io::Result<Vec<u8>> {
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "No such file or directory",
    ))
}

fn parse_with(
    v: &Value,
    env: &[(&str, &str)],
    files: &[(&str, &str)],
    platform: Platform,
) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let files: HashMap<String, Vec<u8>> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let env_fn = move |k: &str| env.get(k).cloned();
    let file_fn = move |p: &str| {
        files
            .get(p)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    };
    Config::parse(v.to_string().as_bytes(), &env_fn, &file_fn, platform)
}

fn parse(v: &Value) -> Result<Config, ConfigError> {
    parse_with(v, &[], &[], Platform::default())
}

fn ok(v: &Value) -> Config {
    match parse(v) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid configuration, got:\n{e}"),
    }
}

fn err(v: &Value) -> ConfigError {
    match parse(v) {
        Ok(c) => panic!("expected an error, got a configuration: {c:?}"),
        Err(e) => e,
    }
}

/// A minimal browser-login configuration plus `extra` keys.
fn login(extra: Value) -> Value {
    let mut base = json!({
        "providerURL": "https://idp.example.com",
        "clientID": "app",
        "clientSecret": "s3cret-client-value",
        "sessionEncryptionKey": KEY,
    });
    merge(&mut base, extra);
    base
}

/// A minimal bearer-only configuration plus `extra` keys.
fn bearer(extra: Value) -> Value {
    let mut base = json!({
        "issuer": "https://idp.example.com",
        "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},
        "bearer": {"enabled": true, "audience": "api"},
    });
    merge(&mut base, extra);
    base
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            match (b.get_mut(&k), v) {
                (Some(Value::Object(bo)), Value::Object(eo)) => {
                    for (k2, v2) in eo {
                        bo.insert(k2, v2);
                    }
                }
                (_, v) => {
                    b.insert(k, v);
                }
            }
        }
    }
}

fn has_error(e: &ConfigError, key: &str, needle: &str) -> bool {
    e.errors()
        .iter()
        .any(|k| k.key == key && k.message.contains(needle))
}

#[track_caller]
fn assert_error(e: &ConfigError, key: &str, needle: &str) {
    assert!(
        has_error(e, key, needle),
        "expected an error for {key} containing {needle:?}, got:\n{e}"
    );
}

// ----- value kinds ------------------------------------------------------------------------

#[test]
fn booleans_typed_and_stringified() {
    for (v, want) in [
        (json!(true), true),
        (json!(false), false),
        (json!("true"), true),
        (json!("false"), false),
        (json!("TRUE"), true),
        (json!(" False "), false),
        (json!("1"), true),
        (json!("0"), false),
        (json!("yes"), true),
        (json!("no"), false),
        (json!("on"), true),
        (json!("off"), false),
        (json!(1), true),
        (json!(0), false),
    ] {
        assert_eq!(value::boolean(&v), Ok(want), "{v}");
    }
    for bad in [
        json!("maybe"),
        json!(2),
        json!(""),
        json!([true]),
        json!({}),
    ] {
        let e = value::boolean(&bad).unwrap_err();
        assert!(e.contains("expected true or false"), "{e}");
    }
}

#[test]
fn integers_typed_and_stringified() {
    for (v, want) in [
        (json!(3), 3),
        (json!("3"), 3),
        (json!(" 3 "), 3),
        (json!("3.000000"), 3),
        (json!(3.0), 3),
        (json!("0"), 0),
    ] {
        assert_eq!(value::integer(&v, 0, 10), Ok(want), "{v}");
    }
    assert!(value::integer(&json!("3.5"), 0, 10)
        .unwrap_err()
        .contains("whole number"));
    assert!(value::integer(&json!("-1"), 0, 10)
        .unwrap_err()
        .contains("whole number"));
    assert!(value::integer(&json!(-1), 0, 10)
        .unwrap_err()
        .contains("whole number"));
    assert!(value::integer(&json!("abc"), 0, 10)
        .unwrap_err()
        .contains("found \"abc\""));
    assert!(value::integer(&json!(true), 0, 10).is_err());
    assert_eq!(
        value::integer(&json!(11), 0, 10).unwrap_err(),
        "must be between 0 and 10, found 11"
    );
}

#[test]
fn durations_in_every_form() {
    let d = |v: Value| value::duration(&v, 0, 30 * 86_400_000);
    assert_eq!(d(json!(900)), Ok(Duration::from_secs(900)));
    assert_eq!(d(json!("900")), Ok(Duration::from_secs(900)));
    assert_eq!(d(json!(1.5)), Ok(Duration::from_millis(1500)));
    assert_eq!(d(json!("1.500000")), Ok(Duration::from_millis(1500)));
    assert_eq!(d(json!("500ms")), Ok(Duration::from_millis(500)));
    assert_eq!(d(json!("2s")), Ok(Duration::from_secs(2)));
    assert_eq!(d(json!("5m")), Ok(Duration::from_secs(300)));
    assert_eq!(d(json!("1h")), Ok(Duration::from_secs(3600)));
    assert_eq!(d(json!("1m30s")), Ok(Duration::from_secs(90)));
    assert_eq!(d(json!("1h2m3.5s")), Ok(Duration::from_millis(3_723_500)));
    assert_eq!(d(json!("2d")), Ok(Duration::from_secs(2 * 86_400)));
    assert_eq!(d(json!("250us")), Ok(Duration::from_micros(250)));
    assert_eq!(d(json!("0")), Ok(Duration::ZERO));
    for bad in [
        json!("5x"),
        json!("-1"),
        json!(-1),
        json!(""),
        json!("m5"),
        json!("1h m"),
        json!(true),
        json!([1]),
    ] {
        let e = d(bad.clone()).unwrap_err();
        assert!(e.contains("expected a duration"), "{bad}: {e}");
    }
    let e = value::duration(&json!("2h"), 0, 3_600_000).unwrap_err();
    assert_eq!(e, "must be between 0s and 1h, found \"2h\"");
    // Absurd values are refused by the bound, never overflow.
    assert!(value::duration(&json!(1e300), 0, 3_600_000).is_err());
}

#[test]
fn lists_as_json_or_comma_string() {
    assert_eq!(
        value::list(&json!(["a", "b"]), Split::Comma),
        Ok(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        value::list(&json!("a, b,"), Split::Comma),
        Ok(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        value::list(&json!([1, 2]), Split::Comma),
        Ok(vec!["1".into(), "2".into()])
    );
    assert_eq!(value::list(&json!(""), Split::Comma), Ok(vec![]));
    assert_eq!(
        value::list(&json!("h1:26379 h2:26379,h3"), Split::CommaOrSpace),
        Ok(vec!["h1:26379".into(), "h2:26379".into(), "h3".into()])
    );
    assert!(value::list(&json!(["a", ""]), Split::Comma)
        .unwrap_err()
        .contains("element 1 is empty"));
    assert!(value::list(&json!([{"a": 1}]), Split::Comma)
        .unwrap_err()
        .contains("element 0"));
    assert!(value::list(&json!({"a": 1}), Split::Comma).is_err());
}

#[test]
fn host_ports_and_cidrs() {
    assert_eq!(
        HostPort::parse("redis:6380", 6379).unwrap(),
        HostPort {
            host: "redis".into(),
            port: 6380
        }
    );
    assert_eq!(HostPort::parse("redis", 6379).unwrap().port, 6379);
    assert_eq!(
        HostPort::parse("[::1]:7000", 6379).unwrap(),
        HostPort {
            host: "::1".into(),
            port: 7000
        }
    );
    assert_eq!(HostPort::parse("::1", 6379).unwrap().host, "::1");
    assert!(HostPort::parse("redis://h:1", 6379)
        .unwrap_err()
        .contains("not a URL"));
    assert!(HostPort::parse("h:0", 6379).is_err());
    assert!(HostPort::parse("h:99999", 6379).is_err());
    let n = IpNet::parse("10.0.0.0/8").unwrap();
    assert!(n.contains(&"10.1.2.3".parse().unwrap()));
    assert!(!n.contains(&"11.1.2.3".parse().unwrap()));
    assert!(n.contains(&"::ffff:10.9.9.9".parse().unwrap()));
    let h = IpNet::parse("192.0.2.7").unwrap();
    assert!(h.contains(&"192.0.2.7".parse().unwrap()));
    assert!(!h.contains(&"192.0.2.8".parse().unwrap()));
    let v6 = IpNet::parse("fd00::/8").unwrap();
    assert!(v6.contains(&"fd12::1".parse().unwrap()));
    assert!(IpNet::parse("0.0.0.0/0")
        .unwrap()
        .contains(&"8.8.8.8".parse().unwrap()));
    assert!(IpNet::parse("10.0.0.0/33").is_err());
    assert!(IpNet::parse("example.com").is_err());
}

#[test]
fn jwks_as_string_or_map() {
    let map = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]});
    let from_map = value::jwks(&map).unwrap();
    let from_str = value::jwks(&Value::String(map.to_string())).unwrap();
    assert_eq!(from_map, from_str);
    assert_eq!(serde_json::from_str::<Value>(&from_map).unwrap(), map);
    assert!(value::jwks(&json!("{not json"))
        .unwrap_err()
        .contains("not JSON"));
    assert!(value::jwks(&json!({"keys": []}))
        .unwrap_err()
        .contains("no keys"));
    assert!(value::jwks(&json!({"kty": "EC"}))
        .unwrap_err()
        .contains("\"keys\""));
    assert!(value::jwks(&json!(3)).is_err());

    // Through the parser: both forms give the same static JWKS.
    let a = ok(&bearer(json!({"jwks": map.clone()})));
    let b = ok(&bearer(json!({"jwks": map.to_string()})));
    assert_eq!(a.provider.jwks, b.provider.jwks);
    assert!(a.provider.jwks.is_some());
}

#[test]
fn path_or_url_values() {
    assert_eq!(
        value::path_or_url(&json!("/cb")).unwrap(),
        PathOrUrl::Path("/cb".into())
    );
    let u = value::path_or_url(&json!("https://app.example.com/oauth2/cb?x=1")).unwrap();
    assert_eq!(u.path(), "/oauth2/cb");
    assert_eq!(PathOrUrl::Url("https://a.example".into()).path(), "/");
    assert!(value::path_or_url(&json!("//evil.example/cb")).is_err());
    assert!(value::path_or_url(&json!("cb")).is_err());
    assert!(value::path_or_url(&json!("javascript:alert(1)")).is_err());
    // RFC 6265 §4.1.1: no `;` in what becomes a cookie's Path.
    for v in [
        "/cb;Domain=evil.example",
        "https://app.example.com/cb;Domain=evil.example",
    ] {
        let e = value::path_or_url(&json!(v)).unwrap_err();
        assert!(e.contains("cannot contain ;"), "{v}: {e}");
    }
    assert!(value::path(&json!("/;Domain=evil.example")).is_err());
    for key in ["callbackURL", "logoutURL", "cookiePath"] {
        let e = err(&login(json!({key: "/x;Domain=evil.example"})));
        assert_error(&e, key, "cannot contain ;");
    }
}

#[test]
fn claims_template_only_exact_form() {
    assert_eq!(value::claims_template("{{.Claims.email}}"), Some("email"));
    assert_eq!(
        value::claims_template("{{{{.Claims.preferred_username}}}}"),
        Some("preferred_username")
    );
    for bad in [
        "{{.AccessToken}}",
        "Bearer {{.Claims.sub}}",
        "{{.Claims.email}} ",
        "{{ .Claims.email }}",
        "{{.Claims.a.b}}",
        "{{.Claims.email | upper}}",
        "{{range .Claims.roles}}{{.}}{{end}}",
        "{{.Claims.}}",
        "plain",
    ] {
        // Surrounding whitespace of the whole value is trimmed; anything inside is refused.
        if bad == "{{.Claims.email}} " {
            assert_eq!(value::claims_template(bad), Some("email"));
            continue;
        }
        assert_eq!(value::claims_template(bad), None, "{bad}");
    }
}

// ----- whole configurations ---------------------------------------------------------------

#[test]
fn minimal_login_and_its_defaults() {
    let c = ok(&login(json!({})));
    let b = c.browser.as_ref().unwrap();
    assert_eq!(b.client.id, "app");
    assert_eq!(b.client.auth_method, TokenEndpointAuth::ClientSecretBasic);
    assert_eq!(
        b.client.secret.as_ref().unwrap().expose(),
        "s3cret-client-value"
    );
    assert_eq!(b.login.callback, PathOrUrl::Path("/oauth2/callback".into()));
    assert_eq!(
        b.login.logout,
        PathOrUrl::Path("/oauth2/callback/logout".into())
    );
    assert_eq!(b.login.scopes, ["openid", "profile", "email"]);
    assert!(b.login.pkce);
    assert!(!c.force_https);
    assert_eq!(b.session.cookie_name, "_oidc_guard_session");
    assert_eq!(b.session.cookie_path, "/");
    assert_eq!(b.session.cookie_secure, CookieSecure::Auto);
    assert_eq!(b.session.same_site, SameSite::Lax);
    assert_eq!(b.session.max_age, Duration::from_secs(86_400));
    assert_eq!(b.session.storage, SessionStorage::Cookie);
    assert_eq!(b.session.revocation_check_interval, Duration::from_secs(5));
    assert_eq!(b.session.refresh_grace_period, Duration::from_secs(60));
    assert!(b.session.strip_auth_cookies);
    assert_eq!(b.session.keys.sealing().expose(), KEY);
    assert_eq!(c.provider.url.as_deref(), Some("https://idp.example.com"));
    assert!(c.bearer.is_none());
    assert_eq!(c.policy.user_claim, "sub");
    assert_eq!(c.policy.role_claim, "roles");
    assert_eq!(c.policy.group_claim, "groups");
    assert_eq!(c.upstream.user_header, "X-Forwarded-User");
    assert!(c.replay.enabled);
    assert_eq!(c.replay.ttl, Duration::from_secs(3600));
    assert!(!c.replay.insecure_allow_per_instance);
    assert_eq!(c.store.mode, StoreMode::Memory);
    assert_eq!(c.store.l2, L2Kind::None);
    assert_eq!(c.store.l1_max_entries, 4096);
    assert_eq!(c.store.l1_max_bytes, 2 * 1024 * 1024);
    assert_eq!(c.store.fallback, Fallback::L1);
    assert_eq!(c.store.key_prefix, "oidc-guard:");
    assert_eq!(
        c.store.breaker,
        Some(Breaker {
            threshold: 5,
            timeout: Duration::from_secs(30)
        })
    );
    assert!(c.redis.is_none());
    assert!(!c.skip_auth_preflight);
    assert_eq!(c.log_level, LogLevel::Info);
    assert!(c.health.path.is_none() && c.health.metrics_path.is_none());
    // Memory mode: one warning, what logout means without a shared store.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("logout"), "{:?}", c.warnings);
    // With Redis, none.
    let c = ok(&login(json!({"redis": {"address": "127.0.0.1:6379"}})));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn nothing_configured_is_an_error() {
    for input in ["null", "{}", "", "  \n"] {
        let e =
            Config::parse(input.as_bytes(), &no_env, &no_files, Platform::default()).unwrap_err();
        assert_error(&e, "(configuration)", "nothing to guard");
    }
    // Keys that do not enable anything are not enough either.
    let e = err(&json!({"logLevel": "debug", "excludedURLs": ["/public"]}));
    assert_error(&e, "(configuration)", "nothing to guard");
    let e = Config::parse(b"[1,2]", &no_env, &no_files, Platform::default()).unwrap_err();
    assert_error(&e, "(configuration)", "expected a map of settings");
    let e = Config::parse(b"{\"clientID\":", &no_env, &no_files, Platform::default()).unwrap_err();
    assert_error(&e, "(configuration)", "not valid JSON");
}

#[test]
fn unknown_key_names_the_closest_known_key() {
    let e = err(&login(json!({"allowedUser": ["alice@example.com"]})));
    assert_error(&e, "allowedUser", "did you mean allowedUsers?");
    let e = err(&login(json!({"redis": {"adress": "r:6379"}})));
    assert_error(&e, "redis.adress", "did you mean redis.address?");
    let e = err(&login(json!({"address": "r:6379"})));
    assert_error(&e, "address", "did you mean redis.address?");
    let e = err(&login(json!({"bearer": {"onetimetoken": true}})));
    assert_error(
        &e,
        "bearer.onetimetoken",
        "did you mean bearer.oneTimeTokens?",
    );
    let e = err(&login(json!({"completelyUnrelatedThing": 1})));
    assert_error(&e, "completelyUnrelatedThing", "unknown key");
    assert!(!e.to_string().contains("did you mean"), "{e}");
    // A section given as a scalar.
    let e = err(&login(json!({"redis": "r:6379"})));
    assert_error(&e, "redis", "expected a map of settings");
}

#[test]
fn keys_match_ignoring_case() {
    let c = ok(&json!({
        "ProviderUrl": "https://idp.example.com",
        "CLIENTID": "app",
        "clientsecret": "x-secret",
        "SessionEncryptionKey": KEY,
        "Redis": {"Address": "r:6379"},
    }));
    assert_eq!(c.browser.unwrap().client.id, "app");
    assert!(c.redis.is_some());
}

#[test]
fn a_typo_in_allowed_users_never_allows_everyone() {
    // Misspelt key: refused, not ignored.
    assert!(parse(&login(json!({"allowedUser": ["alice"]}))).is_err());
    assert!(parse(&login(json!({"alloweduser": "alice"}))).is_err());
    assert!(parse(&login(json!({"allowed_users": ["alice"]}))).is_err());
    // Given but empty in every form: refused.
    for empty in [json!(""), json!([]), json!(" , "), Value::Null] {
        let e = err(&login(json!({"allowedUsers": empty.clone()})));
        assert!(e.mentions("allowedUsers"), "{empty}: {e}");
    }
    let e = err(&login(json!({"allowedUsers": ["alice", ""]})));
    assert_error(&e, "allowedUsers", "element 1 is empty");
    // Wrong type: refused.
    let e = err(&login(json!({"allowedUsers": {"alice": true}})));
    assert_error(&e, "allowedUsers", "expected a list");
    // The same for the other restrictions.
    for k in ["allowedUserDomains", "allowedRolesAndGroups"] {
        let e = err(&login(json!({k: []})));
        assert_error(&e, k, "would allow everyone");
    }
    // And the right spelling works.
    let c = ok(&login(
        json!({"allowedUsers": "alice, bob", "allowedUserDomains": ["@Example.COM"]}),
    ));
    assert_eq!(c.policy.allowed_users, ["alice", "bob"]);
    assert_eq!(c.policy.allowed_user_domains, ["example.com"]);
}

#[test]
fn allowed_emails_with_sub_identifier_warn() {
    let c = ok(&login(json!({"allowedUsers": ["alice@example.com"]})));
    assert!(
        c.warnings.iter().any(|w| w.contains("userIdentifierClaim")),
        "{:?}",
        c.warnings
    );
    let c = ok(&login(
        json!({"allowedUsers": ["alice@example.com"], "userIdentifierClaim": "email"}),
    ));
    assert_eq!(c.policy.user_claim, "email");
    assert!(
        !c.warnings.iter().any(|w| w.contains("userIdentifierClaim")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn traefik_file_provider_stringified_json() {
    // What Traefik 3.7's file provider hands the guest: scalars as strings ("3", "true",
    // "1.500000"), nested maps' scalars too, lists with typed elements.
    let raw = r#"{
        "providerURL": "https://idp.example.com",
        "clientID": "app",
        "clientSecret": "s3cret",
        "sessionEncryptionKey": "0123456789abcdef0123456789abcdef",
        "enablePKCE": "false",
        "forceHTTPS": "true",
        "sessionMaxAge": "3600",
        "refreshGracePeriodSeconds": "1.500000",
        "scopes": ["groups", "offline_access"],
        "allowedRolesAndGroups": ["admin", 42],
        "bearer": {"enabled": "true", "maxTokenSize": "8192", "dpop": {"iatWindow": "30"}},
        "replay": {"ttl": "900", "insecureAllowPerInstance": "false"},
        "redis": {
            "address": "redis:6379", "db": "2", "enableTLS": "true", "tlsSkipVerify": "false",
            "connectTimeout": "3", "readTimeout": "1.500000", "circuitBreakerThreshold": "7",
            "circuitBreakerTimeout": "2", "enableCircuitBreaker": "true", "hybridL1Size": "500",
            "cacheMode": "hybrid", "poolSize": "10"
        },
        "store": {"l1": {"maxBytes": "1048576"}}
    }"#;
    let c = Config::parse(raw.as_bytes(), &no_env, &no_files, Platform::default()).unwrap();
    let b = c.browser.as_ref().unwrap();
    assert!(!b.login.pkce);
    assert!(c.force_https);
    assert_eq!(b.session.max_age, Duration::from_secs(3600));
    assert_eq!(b.session.refresh_grace_period, Duration::from_millis(1500));
    assert_eq!(
        b.login.scopes,
        ["openid", "profile", "email", "groups", "offline_access"]
    );
    assert_eq!(c.policy.allowed_roles_and_groups, ["admin", "42"]);
    let bearer = c.bearer.as_ref().unwrap();
    assert_eq!(bearer.max_token_size, 8192);
    assert_eq!(bearer.audiences, ["app"]);
    assert_eq!(bearer.dpop.iat_window, Duration::from_secs(30));
    assert_eq!(c.replay.ttl, Duration::from_secs(900));
    let r = c.redis.as_ref().unwrap();
    assert_eq!(
        r.topology,
        Topology::Standalone(HostPort {
            host: "redis".into(),
            port: 6379
        })
    );
    assert_eq!(r.db, 2);
    assert!(r.tls.as_ref().is_some_and(|t| !t.insecure_skip_verify));
    assert_eq!(r.dial_timeout, Duration::from_secs(3));
    assert_eq!(r.read_timeout, Duration::from_millis(1500));
    assert_eq!(
        c.store.breaker,
        Some(Breaker {
            threshold: 7,
            timeout: Duration::from_secs(2)
        })
    );
    assert_eq!(c.store.l1_max_entries, 500);
    assert_eq!(c.store.l1_max_bytes, 1024 * 1024);
    assert_eq!(c.store.mode, StoreMode::Hybrid);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("redis.poolSize has no effect")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn kubernetes_native_types() {
    let c = ok(&json!({
        "providerURL": "https://idp.example.com",
        "clientID": "app",
        "clientSecret": "s3cret",
        "sessionEncryptionKey": [KEY, KEY2],
        "enablePKCE": true,
        "sessionMaxAge": 7200,
        "revocationCheckInterval": 0,
        "cookieSecure": true,
        "cookieSameSite": "Strict",
        "bearer": {"enabled": true, "audience": ["api", "app"], "oneTimeTokens": false},
        "replay": {"ttl": 1.5},
        "redis": {"address": "redis:6379", "db": 0, "circuitBreakerTimeout": 2, "maxRetries": 3},
        "health": {"path": "/.oidc-guard/health", "allowedSources": ["10.0.0.0/8", "::1"]},
    }));
    let b = c.browser.as_ref().unwrap();
    assert_eq!(b.session.max_age, Duration::from_secs(7200));
    assert_eq!(b.session.revocation_check_interval, Duration::ZERO);
    assert_eq!(b.session.cookie_secure, CookieSecure::Always);
    assert_eq!(b.session.same_site, SameSite::Strict);
    let keys: Vec<&str> = b.session.keys.all().map(Secret::expose).collect();
    assert_eq!(keys, [KEY, KEY2]);
    assert_eq!(b.session.keys.sealing().expose(), KEY);
    assert_eq!(c.bearer.as_ref().unwrap().audiences, ["api", "app"]);
    assert_eq!(c.replay.ttl, Duration::from_millis(1500));
    assert_eq!(c.redis.as_ref().unwrap().max_retries, 3);
    assert_eq!(c.store.breaker.unwrap().timeout, Duration::from_secs(2));
    assert_eq!(c.health.path.as_deref(), Some("/.oidc-guard/health"));
    assert_eq!(c.health.allowed_sources.len(), 2);
}

#[test]
fn bad_values_name_key_reason_and_value() {
    let e = err(&login(
        json!({"sessionMaxAge": "forever", "redis": {"db": "two", "address": "r"}, "enablePKCE": "maybe"}),
    ));
    assert_error(&e, "sessionMaxAge", "expected a duration");
    assert_error(&e, "sessionMaxAge", "found \"forever\"");
    assert_error(&e, "redis.db", "expected a whole number, found \"two\"");
    assert_error(&e, "enablePKCE", "expected true or false, found \"maybe\"");
    // Display lists every problem, each with its key.
    let text = e.to_string();
    assert!(text.starts_with("3 problems:"), "{text}");
    assert!(
        text.contains("- sessionMaxAge: ")
            && text.contains("- redis.db: ")
            && text.contains("- enablePKCE: ")
    );
    // Out of bounds.
    let e = err(&login(json!({"sessionMaxAge": 10})));
    assert_error(&e, "sessionMaxAge", "must be between 1m and 400d");
    let e = err(&bearer(json!({"bearer": {"maxTokenSize": 100}})));
    assert_error(
        &e,
        "bearer.maxTokenSize",
        "must be between 1024 and 1048576",
    );
    let e = err(&login(json!({"cookieSameSite": "sometimes"})));
    assert_error(&e, "cookieSameSite", "expected one of lax, strict, none");
}

// ----- aliases ----------------------------------------------------------------------------

#[test]
fn traefikoidc_aliases_map_to_their_keys() {
    let cfg = login(json!({
        "redis": {
            "address": "redis:6379", "enableTLS": true, "tlsSkipVerify": true, "connectTimeout": 4,
            "enableCircuitBreaker": false, "hybridL1Size": 500, "hybridL1MemoryMB": 1,
            "cacheMode": "redis", "fallback": "deny",
        },
        "refreshGracePeriodSeconds": 30,
        "userIdentifierClaim": "email",
        "roleClaimName": "https://example.com/roles",
        "groupClaimName": "grp",
        "oidcEndSessionURL": "https://idp.example.com/logout",
        "revocationURL": "https://idp.example.com/revoke",
        "audience": "my-api",
        "bearer": {"enabled": true},
        "disableReplayDetection": false,
        "strictAudienceValidation": true,
        "enableBackchannelLogout": true,
        "backchannelLogoutURL": "/bc-logout",
        "caCertPath": "/certs/ca.pem",
    }));
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let c = parse_with(&cfg, &[], &[("/certs/ca.pem", pem)], Platform::default()).unwrap();
    let r = c.redis.as_ref().unwrap();
    let tls = r.tls.as_ref().unwrap();
    assert!(tls.insecure_skip_verify);
    assert_eq!(r.dial_timeout, Duration::from_secs(4));
    assert_eq!(c.store.breaker, None);
    assert_eq!(c.store.l1_max_entries, 500);
    assert_eq!(c.store.l1_max_bytes, 1024 * 1024);
    assert_eq!(c.store.mode, StoreMode::Redis);
    assert_eq!(c.store.fallback, Fallback::Deny);
    let b = c.browser.as_ref().unwrap();
    assert_eq!(b.session.refresh_grace_period, Duration::from_secs(30));
    assert_eq!(c.policy.user_claim, "email");
    assert_eq!(c.policy.role_claim, "https://example.com/roles");
    assert_eq!(c.policy.group_claim, "grp");
    assert_eq!(
        c.provider.end_session_endpoint.as_deref(),
        Some("https://idp.example.com/logout")
    );
    assert_eq!(
        c.provider.revocation_endpoint.as_deref(),
        Some("https://idp.example.com/revoke")
    );
    assert_eq!(c.bearer.as_ref().unwrap().audiences, ["my-api"]);
    assert!(c.replay.enabled);
    assert_eq!(c.backchannel_logout.as_ref().unwrap().path, "/bc-logout");
    assert_eq!(c.provider.ca_pem, format!("{pem}\n").as_bytes());
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("strictAudienceValidation has no effect")));
    assert!(c.warnings.iter().any(|w| w.contains("redis.tlsSkipVerify")));

    // disableReplayDetection: true turns replay off (with a warning) …
    let c = ok(&login(json!({"disableReplayDetection": "true"})));
    assert!(!c.replay.enabled);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("replay detection is off")));
    // … and contradicting replay.enabled is an error.
    let e = err(&login(
        json!({"disableReplayDetection": true, "replay": {"enabled": true}}),
    ));
    assert_error(&e, "disableReplayDetection", "contradicts");
    // A key and its alias together: an error naming both.
    let e = err(&login(
        json!({"audience": "a", "bearer": {"enabled": true, "audience": "b"}}),
    ));
    assert!(e.to_string().contains("given twice"), "{e}");
    let e = err(&login(
        json!({"redis": {"address": "r", "cacheMode": "redis"}, "store": {"mode": "hybrid"}}),
    ));
    assert!(e.to_string().contains("given twice"), "{e}");
}

#[test]
fn traefikoidc_headers_list() {
    let c = ok(&login(json!({
        "headers": [
            {"name": "X-User-Email", "value": "{{.Claims.email}}"},
            {"name": "X-User-Name", "value": "{{{{.Claims.preferred_username}}}}"},
        ],
        "claimHeaders": {"X-User-Groups": "groups"},
    })));
    let h: Vec<(&str, &str)> = c
        .upstream
        .claim_headers
        .iter()
        .map(|h| (h.header.as_str(), h.claim.as_str()))
        .collect();
    assert_eq!(
        h,
        [
            ("X-User-Groups", "groups"),
            ("X-User-Email", "email"),
            ("X-User-Name", "preferred_username")
        ]
    );
    for (value, why) in [
        ("Bearer {{.AccessToken}}", "only the exact form"),
        ("{{.IdToken}}", "only the exact form"),
        (
            "{{range $i, $e := .Claims.roles}}{{$e}}{{end}}",
            "only the exact form",
        ),
        ("x-{{.Claims.sub}}", "only the exact form"),
    ] {
        let e = err(&login(
            json!({"headers": [{"name": "X-A", "value": value}]}),
        ));
        assert_error(&e, "headers", why);
        // The refused template is quoted so the user sees which one.
        assert!(e.to_string().contains("X-A"), "{e}");
    }
    let e = err(&login(
        json!({"headers": [{"name": "Authorization", "value": "{{.Claims.sub}}"}]}),
    ));
    assert_error(&e, "headers", "reserved");
    let e = err(&login(
        json!({"headers": [{"name": "X-A", "value": "{{.Claims.a}}"}], "claimHeaders": {"x-a": "b"}}),
    ));
    assert_error(&e, "headers", "configured twice");
    let e = err(&login(json!({"headers": [{"name": "X-A"}]})));
    assert_error(&e, "headers", "needs both name and value");
    let e = err(&login(json!({"claimHeaders": {"Bad Header": "sub"}})));
    assert_error(&e, "claimHeaders", "not a valid header name");
}

#[test]
fn scopes_append_or_override() {
    let c = ok(&login(json!({"scopes": ["roles", "openid", "email"]})));
    assert_eq!(
        c.browser.unwrap().login.scopes,
        ["openid", "profile", "email", "roles"]
    );
    let c = ok(&login(
        json!({"scopes": "custom", "overrideScopes": "true"}),
    ));
    assert_eq!(c.browser.unwrap().login.scopes, ["openid", "custom"]);
    let c = ok(&login(
        json!({"scopes": ["openid profile offline_access"], "overrideScopes": true}),
    ));
    assert_eq!(
        c.browser.unwrap().login.scopes,
        ["openid", "profile", "offline_access"]
    );
}

#[test]
fn compat_keys_warn_or_refuse() {
    let c = ok(&login(
        json!({"rateLimit": "100", "minimalHeaders": true, "securityHeaders": {"enabled": false, "profile": "x"}, "dynamicClientRegistration": {"persistCredentials": true}}),
    ));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("rateLimit has no effect")),
        "{:?}",
        c.warnings
    );
    assert!(c
        .warnings
        .iter()
        .any(|w| w.starts_with("minimalHeaders has no effect")));
    let e = err(&login(json!({"securityHeaders": {"profile": "default"}})));
    assert_error(&e, "securityHeaders", "not supported");
    let e = err(&login(
        json!({"dynamicClientRegistration": {"enabled": "true"}}),
    ));
    assert_error(&e, "dynamicClientRegistration", "not supported");
    let e = err(&login(json!({"allowOpaqueTokens": true})));
    assert_error(&e, "allowOpaqueTokens", "not supported");
    let e = err(&login(json!({"enableFrontchannelLogout": "true"})));
    assert_error(&e, "enableFrontchannelLogout", "not supported");
    let e = err(&login(json!({"rateLimit": "lots"})));
    assert_error(&e, "rateLimit", "expected a whole number");
}

// ----- environment ------------------------------------------------------------------------

#[test]
fn redis_from_the_environment() {
    let c = parse_with(
        &login(json!({})),
        &[
            ("REDIS_ENABLED", "true"),
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DATABASE", "3"),
            ("REDIS_USERNAME", "guard"),
            ("REDIS_PASSWORD", "env-pass"),
            ("REDIS_KEY_PREFIX", "p:"),
            ("REDIS_SSL", "yes"),
            ("REDIS_SSL_VERIFY", "no"),
            ("REDIS_TIMEOUT", "4"),
            ("REDIS_READ_TIMEOUT", "250ms"),
            ("REDIS_KEEPALIVE_POOL", "5"),
            ("REDIS_CIRCUIT_BREAKER_THRESHOLD", "9"),
            ("REDIS_CIRCUIT_BREAKER_TIMEOUT", "3s"),
            ("REDIS_CACHE_MODE", "redis"),
            ("REDIS_HYBRID_L1_SIZE", "100"),
        ],
        &[],
        Platform::default(),
    )
    .unwrap();
    let r = c.redis.as_ref().unwrap();
    assert_eq!(
        r.topology,
        Topology::Standalone(HostPort {
            host: "cache.internal".into(),
            port: 6380
        })
    );
    assert_eq!(r.db, 3);
    assert_eq!(r.username.as_deref(), Some("guard"));
    assert_eq!(r.password.as_ref().unwrap().expose(), "env-pass");
    assert_eq!(c.store.key_prefix, "p:");
    // REDIS_SSL_VERIFY has the inverted meaning: "no" = skip verification.
    assert!(r.tls.as_ref().unwrap().insecure_skip_verify);
    // REDIS_TIMEOUT fills the timeouts no specific variable sets.
    assert_eq!(r.dial_timeout, Duration::from_secs(4));
    assert_eq!(r.write_timeout, Duration::from_secs(4));
    assert_eq!(r.read_timeout, Duration::from_millis(250));
    assert_eq!(
        c.store.breaker,
        Some(Breaker {
            threshold: 9,
            timeout: Duration::from_secs(3)
        })
    );
    assert_eq!(c.store.mode, StoreMode::Redis);
    assert_eq!(c.store.l1_max_entries, 100);
    assert_eq!(c.store.l2, L2Kind::Redis);
}

#[test]
fn env_aliases_of_both_seeds() {
    let run = |env: &[(&str, &str)]| parse_with(&login(json!({})), env, &[], Platform::default());
    // USE_REDIS (BunkerWeb) and REDIS_ADDRESS (traefikoidc).
    let c = run(&[("USE_REDIS", "yes"), ("REDIS_ADDRESS", "r1:7000")]).unwrap();
    assert_eq!(
        c.redis.unwrap().topology,
        Topology::Standalone(HostPort {
            host: "r1".into(),
            port: 7000
        })
    );
    // An address alone enables Redis; REDIS_HOST without REDIS_PORT gets 6379.
    let c = run(&[("REDIS_HOST", "r2")]).unwrap();
    assert_eq!(
        c.redis.unwrap().topology,
        Topology::Standalone(HostPort {
            host: "r2".into(),
            port: 6379
        })
    );
    // REDIS_ENABLE_TLS / REDIS_TLS_ENABLED and REDIS_TLS_SKIP_VERIFY / REDIS_TLS_INSECURE_SKIP_VERIFY.
    for (on, skip) in [
        ("REDIS_ENABLE_TLS", "REDIS_TLS_SKIP_VERIFY"),
        ("REDIS_TLS_ENABLED", "REDIS_TLS_INSECURE_SKIP_VERIFY"),
    ] {
        let c = run(&[("REDIS_ADDRESS", "r:1"), (on, "1"), (skip, "true")]).unwrap();
        assert!(
            c.redis.unwrap().tls.unwrap().insecure_skip_verify,
            "{on} {skip}"
        );
    }
    // REDIS_SSL_VERIFY=yes keeps verification on.
    let c = run(&[
        ("REDIS_ADDRESS", "r:1"),
        ("REDIS_SSL", "yes"),
        ("REDIS_SSL_VERIFY", "yes"),
    ])
    .unwrap();
    assert!(!c.redis.unwrap().tls.unwrap().insecure_skip_verify);
    // REDIS_DB wins over REDIS_DATABASE, and the loser is reported.
    let c = run(&[
        ("REDIS_ADDRESS", "r:1"),
        ("REDIS_DB", "1"),
        ("REDIS_DATABASE", "2"),
    ])
    .unwrap();
    assert_eq!(c.redis.as_ref().unwrap().db, 1);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("REDIS_DATABASE is ignored")),
        "{:?}",
        c.warnings
    );
    // Sentinel, space-separated.
    let c = run(&[
        ("USE_REDIS", "yes"),
        ("REDIS_SENTINEL_HOSTS", "s1:26379 s2:26380 s3"),
        ("REDIS_SENTINEL_MASTER", "primary"),
        ("REDIS_SENTINEL_USERNAME", "sentuser"),
        ("REDIS_SENTINEL_PASSWORD", "sentpass"),
    ])
    .unwrap();
    match c.redis.unwrap().topology {
        Topology::Sentinel {
            hosts,
            master,
            username,
            password,
        } => {
            assert_eq!(hosts.len(), 3);
            assert_eq!(
                hosts[2],
                HostPort {
                    host: "s3".into(),
                    port: 26379
                }
            );
            assert_eq!(master, "primary");
            assert_eq!(username.as_deref(), Some("sentuser"));
            assert_eq!(password.unwrap().expose(), "sentpass");
        }
        other => panic!("{other:?}"),
    }
    // A bad env value names the variable.
    let e = run(&[("REDIS_ADDRESS", "r:1"), ("REDIS_DB", "x")]).unwrap_err();
    assert_error(&e, "REDIS_DB", "expected a whole number");
    // REDIS_ENABLED=true without an address.
    let e = run(&[("REDIS_ENABLED", "true")]).unwrap_err();
    assert_error(&e, "REDIS_ENABLED", "neither redis.address");
}

#[test]
fn yaml_wins_over_environment() {
    let env = [
        ("REDIS_ADDRESS", "from-env:6379"),
        ("REDIS_DB", "5"),
        ("REDIS_PASSWORD", "env-pass"),
        ("REDIS_CACHE_MODE", "redis"),
        ("REDIS_ENABLE_TLS", "true"),
    ];
    let cfg = login(
        json!({"redis": {"address": "from-yaml:6379", "db": "1", "password": "yaml-pass", "cacheMode": "hybrid", "enableTLS": false}}),
    );
    let c = parse_with(&cfg, &env, &[], Platform::default()).unwrap();
    let r = c.redis.unwrap();
    assert_eq!(
        r.topology,
        Topology::Standalone(HostPort {
            host: "from-yaml".into(),
            port: 6379
        })
    );
    assert_eq!(r.db, 1);
    assert_eq!(r.password.unwrap().expose(), "yaml-pass");
    assert!(r.tls.is_none());
    assert_eq!(c.store.mode, StoreMode::Hybrid);
    // YAML `redis.enabled: false` beats REDIS_ENABLED=true.
    let cfg = login(json!({"redis": {"enabled": false}}));
    let c = parse_with(
        &cfg,
        &[("REDIS_ENABLED", "true"), ("REDIS_ADDRESS", "r:1")],
        &[],
        Platform::default(),
    )
    .unwrap();
    assert!(c.redis.is_none());
    assert_eq!(c.store.mode, StoreMode::Memory);
    // Empty env values are unset.
    let c = parse_with(
        &login(json!({})),
        &[("REDIS_ADDRESS", ""), ("REDIS_ENABLED", " ")],
        &[],
        Platform::default(),
    )
    .unwrap();
    assert!(c.redis.is_none());
}

// ----- secrets ----------------------------------------------------------------------------

#[test]
fn secrets_from_files_and_env() {
    let cfg = json!({
        "providerURL": "https://idp.example.com",
        "clientID": "app",
        "clientSecretFile": "/run/secrets/client",
        "sessionEncryptionKeyFile": "/run/secrets/keys",
        "redis": {"address": "r:6379", "passwordEnv": "MY_REDIS_PW",
                  "sentinel": {"hosts": "s:26379", "passwordFile": "/run/secrets/sent"}},
    });
    let c = parse_with(
        &cfg,
        &[("MY_REDIS_PW", "pw-from-env\n")],
        &[
            ("/run/secrets/client", "client-from-file\n"),
            ("/run/secrets/keys", &format!("{KEY}\r\n\n{KEY2}\n")),
            ("/run/secrets/sent", "sent-pw"),
        ],
        Platform::default(),
    )
    .unwrap();
    let b = c.browser.as_ref().unwrap();
    assert_eq!(
        b.client.secret.as_ref().unwrap().expose(),
        "client-from-file"
    );
    let keys: Vec<&str> = b.session.keys.all().map(Secret::expose).collect();
    assert_eq!(keys, [KEY, KEY2]);
    let r = c.redis.as_ref().unwrap();
    assert_eq!(r.password.as_ref().unwrap().expose(), "pw-from-env");
    match &r.topology {
        Topology::Sentinel { password, .. } => {
            assert_eq!(password.as_ref().unwrap().expose(), "sent-pw")
        }
        other => panic!("{other:?}"),
    }
    // sessionEncryptionKeyEnv.
    let cfg = json!({"providerURL": "https://idp.example.com", "clientID": "app", "clientSecret": "x",
                     "sessionEncryptionKeyEnv": "OIDC_KEY"});
    let c = parse_with(&cfg, &[("OIDC_KEY", KEY)], &[], Platform::default()).unwrap();
    assert_eq!(c.browser.unwrap().session.keys.sealing().expose(), KEY);
}

#[test]
fn secret_sources_must_be_exactly_one_and_readable() {
    let e = parse_with(
        &login(json!({"clientSecretFile": "/s"})),
        &[],
        &[("/s", "x")],
        Platform::default(),
    )
    .unwrap_err();
    assert_error(&e, "clientSecret", "use exactly one source");
    let e = err(&login(
        json!({"sessionEncryptionKey": "", "sessionEncryptionKeyFile": "/missing"}),
    ));
    assert_error(&e, "sessionEncryptionKeyFile", "settings.mounts");
    let e = err(&login(
        json!({"clientSecret": "", "clientSecretEnv": "NOT_LISTED"}),
    ));
    assert_error(&e, "clientSecretEnv", "NOT_LISTED is not set");
    assert_error(&e, "clientSecretEnv", "settings.envs");
    let e = parse_with(
        &login(json!({"clientSecret": "", "clientSecretFile": "/e"})),
        &[],
        &[("/e", "\n")],
        Platform::default(),
    )
    .unwrap_err();
    assert_error(&e, "clientSecretFile", "is empty");
}

#[test]
fn session_key_missing_short_or_repeated() {
    let mut cfg = login(json!({}));
    cfg.as_object_mut().unwrap().remove("sessionEncryptionKey");
    let e = err(&cfg);
    assert_error(&e, "sessionEncryptionKey", "is required");
    assert_error(&e, "sessionEncryptionKey", "no default key");

    let short = "only-31-bytes-long-key-00000000";
    assert_eq!(short.len(), 31);
    let e = err(&login(json!({"sessionEncryptionKey": short})));
    assert_error(
        &e,
        "sessionEncryptionKey",
        "too short: 31 bytes, at least 32",
    );
    // The key itself never appears in the error.
    assert!(!e.to_string().contains(short), "{e}");
    let e = err(&login(json!({"sessionEncryptionKey": [KEY, short]})));
    assert_error(&e, "sessionEncryptionKey", "key 1 is too short");
    let e = err(&login(json!({"sessionEncryptionKey": [KEY, KEY]})));
    assert_error(&e, "sessionEncryptionKey", "repeats");
    let e = err(&login(json!({"sessionEncryptionKey": []})));
    assert_error(&e, "sessionEncryptionKey", "empty list");
    // 32 bytes of UTF-8, not 32 characters: 16 two-byte characters are enough.
    let c = ok(&login(json!({"sessionEncryptionKey": "éééééééééééééééé"})));
    assert_eq!(c.browser.unwrap().session.keys.sealing().len(), 32);
}

#[test]
fn secrets_are_redacted() {
    let c = ok(&login(
        json!({"redis": {"address": "r", "password": "hunter2-redis"}}),
    ));
    let dbg = format!("{c:?}");
    for s in ["s3cret-client-value", KEY, "hunter2-redis"] {
        assert!(!dbg.contains(s), "Debug leaks {s}");
    }
    assert!(dbg.contains("<redacted>"));
    assert_eq!(Secret::new("x".into()).to_string(), "<redacted>");
    // Errors about a secret of the wrong type do not echo it.
    let e = err(&login(json!({"clientSecret": {"v": "hidden-value"}})));
    assert!(!e.to_string().contains("hidden-value"), "{e}");
    assert_error(&e, "clientSecret", "found a map");
}

#[test]
fn client_secret_rules() {
    let mut cfg = login(json!({}));
    cfg.as_object_mut().unwrap().remove("clientSecret");
    let e = err(&cfg);
    assert_error(&e, "clientSecret", "is required");
    // A public client needs no secret, but needs PKCE.
    let mut public = cfg.clone();
    merge(&mut public, json!({"tokenEndpointAuthMethod": "none"}));
    let c = ok(&public);
    assert_eq!(
        c.browser.unwrap().client.auth_method,
        TokenEndpointAuth::None
    );
    merge(&mut public, json!({"enablePKCE": false}));
    assert_error(&err(&public), "enablePKCE", "must use PKCE");
    let c = ok(&login(
        json!({"tokenEndpointAuthMethod": "CLIENT_SECRET_POST"}),
    ));
    assert_eq!(
        c.browser.unwrap().client.auth_method,
        TokenEndpointAuth::ClientSecretPost
    );
}

// ----- modes of operation -----------------------------------------------------------------

#[test]
fn bearer_only_needs_no_client_or_session_key() {
    let c = ok(&bearer(json!({})));
    assert!(c.browser.is_none());
    let b = c.bearer.as_ref().unwrap();
    assert_eq!(b.audiences, ["api"]);
    assert!(!b.one_time_tokens);
    assert!(!b.require_access_token_type);
    assert_eq!(b.max_token_size, 16 * 1024);
    assert!(!b.dpop.enabled && !b.dpop.required);
    assert_eq!(b.dpop.iat_window, Duration::from_secs(60));
    assert_eq!(
        c.provider.issuer.as_deref(),
        Some("https://idp.example.com")
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // With discovery instead of a static JWKS.
    let c = ok(
        &json!({"providerURL": "https://idp.example.com/", "bearer": {"enabled": true, "audience": ["a", "b"]}}),
    );
    assert_eq!(c.provider.url.as_deref(), Some("https://idp.example.com"));
    // From a JWKS file.
    let jwks = r#"{"keys":[{"kty":"RSA","n":"abc","e":"AQAB"}]}"#;
    let cfg = json!({"issuer": "https://i.example", "jwksFile": "/k/jwks.json", "bearer": {"enabled": true, "audience": "a"}});
    let c = parse_with(&cfg, &[], &[("/k/jwks.json", jwks)], Platform::default()).unwrap();
    assert!(c.provider.jwks.unwrap().contains("AQAB"));
}

#[test]
fn bearer_needs_an_audience_and_keys() {
    let e = err(
        &json!({"issuer": "https://i.example", "jwks": {"keys": [{"kty": "OKP"}]}, "bearer": {"enabled": true}}),
    );
    assert_error(
        &e,
        "bearer.audience",
        "is required when there is no clientID",
    );
    let e =
        err(&json!({"issuer": "https://i.example", "bearer": {"enabled": true, "audience": "a"}}));
    assert_error(&e, "jwks", "needs the issuer's keys");
    let e = err(
        &json!({"jwks": {"keys": [{"kty": "OKP"}]}, "bearer": {"enabled": true, "audience": "a"}}),
    );
    assert_error(&e, "issuer", "needs providerURL");
    let e = err(&bearer(json!({"jwksURI": "https://i.example/jwks"})));
    assert_error(&e, "jwksURI", "use one");
    // bearer.* without bearer.enabled does nothing, and says so.
    let c = ok(&login(json!({"bearer": {"oneTimeTokens": true}})));
    assert!(c.bearer.is_none());
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("bearer.oneTimeTokens has no effect")));
}

#[test]
fn static_login_needs_endpoints() {
    let e = err(
        &json!({"issuer": "https://i.example", "jwks": {"keys": [{"kty": "OKP"}]}, "clientID": "a", "clientSecret": "s", "sessionEncryptionKey": KEY}),
    );
    assert_error(
        &e,
        "authorizationEndpoint",
        "needs authorizationEndpoint and tokenEndpoint",
    );
    let c = ok(
        &json!({"issuer": "https://i.example", "jwks": {"keys": [{"kty": "OKP"}]}, "clientID": "a", "clientSecret": "s",
        "sessionEncryptionKey": KEY, "authorizationEndpoint": "https://i.example/auth", "tokenEndpoint": "https://i.example/token"}),
    );
    assert!(c.provider.url.is_none() && c.browser.is_some());
}

#[test]
fn single_use_features_need_a_shared_l2() {
    for extra in [
        json!({"bearer": {"oneTimeTokens": true}}),
        json!({"bearer": {"dpop": {"enabled": true}}}),
        json!({"bearer": {"dpop": {"required": "true"}}}),
    ] {
        let e = err(&bearer(extra.clone()));
        assert!(e.to_string().contains("no shared L2"), "{extra}: {e}");
        // Explicitly accepting per-instance detection works, with a warning.
        let mut cfg = bearer(extra.clone());
        merge(
            &mut cfg,
            json!({"replay": {"insecureAllowPerInstance": true}}),
        );
        let c = ok(&cfg);
        assert!(
            c.warnings.iter().any(|w| w.contains("per instance")),
            "{:?}",
            c.warnings
        );
        // With Redis, or with the host bridge, it is fine.
        let mut cfg = bearer(extra.clone());
        merge(&mut cfg, json!({"redis": {"address": "r:6379"}}));
        assert!(ok(&cfg).store.shared());
        let c = parse_with(
            &bearer(extra.clone()),
            &[],
            &[],
            Platform {
                bridge_present: true,
            },
        )
        .unwrap();
        assert_eq!(c.store.l2, L2Kind::Bridge);
        assert_eq!(c.store.mode, StoreMode::Hybrid);
        // An L2 that memory mode does not use is no better than none.
        let mut cfg = bearer(extra.clone());
        merge(
            &mut cfg,
            json!({"redis": {"address": "r:6379"}, "store": {"mode": "memory"}}),
        );
        let e = err(&cfg);
        assert!(e.to_string().contains("store.mode is memory"), "{e}");
    }
    let c = ok(&bearer(
        json!({"bearer": {"dpop": {"required": true}}, "replay": {"insecureAllowPerInstance": true}}),
    ));
    assert!(c.bearer.unwrap().dpop.enabled);
    // Back-channel logout too, and it needs browser login.
    let e = err(&login(json!({"backchannelLogout": {"enabled": true}})));
    assert!(e.mentions("backchannelLogout"), "{e}");
    let c = ok(&login(
        json!({"backchannelLogout": {"path": "/bcl"}, "redis": {"address": "r"}}),
    ));
    assert_eq!(c.backchannel_logout.unwrap().path, "/bcl");
    let e = err(&bearer(
        json!({"backchannelLogout": {"enabled": true}, "replay": {"insecureAllowPerInstance": true}}),
    ));
    assert_error(&e, "backchannelLogout.enabled", "needs clientID");
    // One-time tokens with replay off is a contradiction.
    let e = err(&bearer(
        json!({"bearer": {"oneTimeTokens": true}, "replay": {"enabled": false}, "redis": {"address": "r"}}),
    ));
    assert_error(&e, "bearer.oneTimeTokens", "replay.enabled is false");
}

#[test]
fn store_modes_and_l2() {
    let c = ok(&login(json!({"redis": {"address": "r:6379"}})));
    assert_eq!(c.store.mode, StoreMode::Hybrid);
    assert_eq!(c.store.l2, L2Kind::Redis);
    let c = parse_with(
        &login(json!({})),
        &[],
        &[],
        Platform {
            bridge_present: true,
        },
    )
    .unwrap();
    assert_eq!(
        (c.store.mode, c.store.l2),
        (StoreMode::Hybrid, L2Kind::Bridge)
    );
    assert!(c.redis.is_none());
    // In the bridge artifact, redis.* is ignored with a warning.
    let c = parse_with(
        &login(json!({"redis": {"address": "r"}})),
        &[],
        &[],
        Platform {
            bridge_present: true,
        },
    )
    .unwrap();
    assert!(c.redis.is_none());
    assert!(c.warnings.iter().any(|w| w.contains("bridge artifact")));
    for mode in ["redis", "hybrid"] {
        let e = err(&login(json!({"store": {"mode": mode}})));
        assert_error(&e, "store.mode", "needs an L2");
    }
    let e = err(&login(json!({"redis": {"enabled": true}})));
    assert_error(&e, "redis.enabled", "neither redis.address");
    let e = err(&login(json!({"redis": {"address": "a:1,b:2"}})));
    assert_error(&e, "redis.address", "clusterMode is false");
    let c = ok(&login(
        json!({"redis": {"address": "a:1,b:2", "clusterMode": true, "maxRedirects": 5}}),
    ));
    match c.redis.unwrap().topology {
        Topology::Cluster {
            seeds,
            max_redirects,
        } => {
            assert_eq!(seeds.len(), 2);
            assert_eq!(max_redirects, 5);
        }
        other => panic!("{other:?}"),
    }
    let e = err(&login(
        json!({"redis": {"address": "a:1", "clusterMode": true, "db": 1}}),
    ));
    assert_error(&e, "redis.db", "only database 0");
    let e = err(&login(
        json!({"redis": {"sentinel": {"hosts": "s:1"}, "clusterMode": true}}),
    ));
    assert_error(&e, "redis.clusterMode", "cannot be combined");
    let e = err(&login(json!({"redis": {"address": "redis://r:6379"}})));
    assert_error(&e, "redis.address", "not a URL");
    let e = err(&login(
        json!({"redis": {"address": "r", "tls": {"enabled": false, "caFile": "/ca.pem"}}}),
    ));
    assert_error(&e, "redis.tls.enabled", "is false but TLS files");
    let e = err(&login(
        json!({"redis": {"address": "r", "tls": {"certFile": "/c.pem"}}}),
    ));
    assert_error(&e, "redis.tls.certFile", "needs both");
    // Server-side sessions need the shared store.
    let e = err(&login(json!({"sessionStorage": "server"})));
    assert_error(&e, "sessionStorage", "shared store");
    let c = ok(&login(
        json!({"sessionStorage": "server", "redis": {"address": "r"}}),
    ));
    assert_eq!(c.browser.unwrap().session.storage, SessionStorage::Server);
}

#[test]
fn redis_tls_files_are_read() {
    let pem = "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nBB\n-----END PRIVATE KEY-----\n";
    let cfg = login(
        json!({"redis": {"address": "r:6380", "tls": {"caFile": "/t/ca.pem", "certFile": "/t/c.pem", "keyFile": "/t/k.pem", "serverName": "redis.internal"}}}),
    );
    let c = parse_with(
        &cfg,
        &[],
        &[("/t/ca.pem", pem), ("/t/c.pem", pem), ("/t/k.pem", key)],
        Platform::default(),
    )
    .unwrap();
    let tls = c.redis.unwrap().tls.unwrap();
    assert_eq!(tls.ca_pem.as_deref(), Some(pem.as_bytes()));
    assert_eq!(tls.client_key_pem.unwrap().expose(), key);
    assert_eq!(tls.server_name.as_deref(), Some("redis.internal"));
    assert!(!tls.insecure_skip_verify);
    // A missing file names the key and hints at mounts.
    let e = parse_with(
        &cfg,
        &[],
        &[("/t/c.pem", pem), ("/t/k.pem", key)],
        Platform::default(),
    )
    .unwrap_err();
    assert_error(&e, "redis.tls.caFile", "settings.mounts");
}

#[test]
fn plain_http_provider_is_accepted_with_a_warning() {
    let c = ok(&login(json!({"providerURL": "http://127.0.0.1:3000"})));
    assert!(c.provider.insecure_http);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("providerURL uses plain http://")),
        "{:?}",
        c.warnings
    );
    let c = ok(&login(json!({})));
    assert!(!c.provider.insecure_http);
    let e = err(&login(json!({"providerURL": "idp.example.com"})));
    assert_error(&e, "providerURL", "absolute http:// or https:// URL");
    let e = err(&login(json!({"providerURL": "ftp://idp.example.com"})));
    assert_error(&e, "providerURL", "absolute http:// or https:// URL");
    let c = ok(&login(json!({"insecureSkipVerify": "true"})));
    assert!(c.provider.insecure_skip_verify);
    assert!(c.warnings.iter().any(|w| w.contains("not verified")));
}

/// Requests are matched metrics, health, back-channel logout, callback, logout in that order: a
/// shared path would hide the later endpoint without a word (a provider's logout token answered
/// 200 by the health page, its sessions never ended).
#[test]
fn own_endpoints_never_share_a_path() {
    let with_bc = |extra: Value| {
        let mut v =
            login(json!({"backchannelLogout": {"path": "/oauth2/bcl"}, "redis": {"address": "r"}}));
        merge(&mut v, extra);
        v
    };
    for (extra, key, other) in [
        (
            json!({"health": {"path": "/oauth2/bcl"}}),
            "health.path",
            "backchannelLogout.path",
        ),
        (
            json!({"health": {"metricsPath": "/oauth2/bcl"}}),
            "health.metricsPath",
            "backchannelLogout.path",
        ),
        (
            json!({"backchannelLogout": {"path": "/oauth2/callback"}}),
            "backchannelLogout.path",
            "callbackURL",
        ),
        (
            json!({"backchannelLogout": {"path": "/oauth2/callback/logout"}}),
            "backchannelLogout.path",
            "logoutURL",
        ),
    ] {
        let e = err(&with_bc(extra.clone()));
        assert_error(&e, key, &format!("already the path of {other}"));
    }
    // Bearer-only: back-channel logout and health still may not share.
    let e = err(&bearer(json!({
        "clientID": "app",
        "backchannelLogout": {"path": "/bcl"},
        "health": {"path": "/bcl"},
        "redis": {"address": "r"},
    })));
    assert_error(
        &e,
        "health.path",
        "already the path of backchannelLogout.path",
    );
    assert!(parse(&with_bc(
        json!({"health": {"path": "/hz", "metricsPath": "/metrics"}})
    ))
    .is_ok());
}

/// An allow-list of sources that parsed to nothing must not mean "every client".
#[test]
fn an_empty_health_allowed_sources_is_an_error() {
    for empty in [json!([]), json!(""), json!(","), json!(" , ")] {
        let e = err(&login(
            json!({"health": {"path": "/hz", "allowedSources": empty}}),
        ));
        assert_error(&e, "health.allowedSources", "given but empty");
    }
    // trustedProxies: empty means "trust nobody", the safe reading.
    let c = ok(&login(json!({"trustedProxies": []})));
    assert!(c.trusted_proxies.is_empty());
}

#[test]
fn paths_excluded_and_health() {
    let c = ok(&login(
        json!({"excludedURLs": "/public,/healthz", "health": {"path": "/.oidc-guard/health", "metricsPath": "/.oidc-guard/metrics"}}),
    ));
    assert_eq!(c.excluded_urls, ["/public", "/healthz"]);
    assert!(c.warnings.iter().any(|w| w.contains("allowedSources")));
    let e = err(&login(json!({"excludedURLs": ["/"]})));
    assert_error(&e, "excludedURLs", "every path");
    let e = err(&login(json!({"excludedURLs": ["/oauth2"]})));
    assert_error(&e, "excludedURLs", "covers callbackURL");
    let e = err(&login(json!({"excludedURLs": ["public"]})));
    assert_error(&e, "excludedURLs", "starting with /");
    let e = err(&login(
        json!({"callbackURL": "/cb", "logoutURL": "https://app.example.com/cb"}),
    ));
    assert_error(&e, "logoutURL", "equals the callback path");
    let c = ok(&login(
        json!({"callbackURL": "https://app.example.com/auth/cb"}),
    ));
    let b = c.browser.unwrap();
    assert_eq!(
        b.login.logout,
        PathOrUrl::Url("https://app.example.com/auth/cb/logout".into())
    );
    assert_eq!(b.login.callback.path(), "/auth/cb");
    let e = err(&login(json!({"health": {"path": "/oauth2/callback"}})));
    assert_error(&e, "health.path", "already the path of callbackURL");
    let e = err(&login(
        json!({"health": {"path": "/hz", "metricsPath": "/hz"}}),
    ));
    assert_error(&e, "health.metricsPath", "already the path of health.path");
    let e = err(&login(
        json!({"excludedURLs": ["/hz"], "health": {"path": "/hz"}}),
    ));
    assert_error(&e, "health.path", "excludedURLs");
    // Exclusions cover the plugin's own paths as requests are matched: at segment boundaries.
    let c = ok(&login(json!({"excludedURLs": ["/oauth", "/oauth2/cb"]})));
    assert_eq!(c.excluded_urls, ["/oauth", "/oauth2/cb"]);
    let e = err(&login(json!({"excludedURLs": ["/oauth2/"]})));
    assert_error(&e, "excludedURLs", "covers callbackURL");
    let e = err(&login(json!({"excludedURLs": ["/oauth2/callback/logout"]})));
    assert_error(&e, "excludedURLs", "covers logoutURL");
    let e = err(&login(json!({"trustedProxies": ["10.0.0.0/8", "nope"]})));
    assert_error(&e, "trustedProxies", "expected an IP address or CIDR block");
    let c = ok(&login(json!({"trustedProxies": "10.0.0.0/8, 192.168.1.1"})));
    assert_eq!(c.trusted_proxies.len(), 2);
}

#[test]
fn cookie_rules() {
    let e = err(&login(
        json!({"cookieSameSite": "none", "cookieSecure": "false"}),
    ));
    assert_error(&e, "cookieSameSite", "requires Secure");
    let e = err(&login(json!({"cookiePrefix": "bad prefix;"})));
    assert_error(&e, "cookiePrefix", "only letters");
    let c = ok(&login(
        json!({"cookiePrefix": "_oidc_raczylo_", "cookieDomain": ".example.com", "cookiePath": "/app"}),
    ));
    let s = c.browser.unwrap().session;
    assert_eq!(s.cookie_name, "_oidc_raczylo_session");
    assert_eq!(s.cookie_domain.as_deref(), Some(".example.com"));
    assert_eq!(s.cookie_path, "/app");
    assert_eq!(s.name_prefix, NamePrefix::None);
}

/// RFC 6265bis §4.1.3: a configuration whose cookies browsers would drop is refused, naming the
/// key that breaks the prefix's rule.
#[test]
fn cookie_name_prefix_rules() {
    let e = err(&login(
        json!({"cookiePrefix": "__Host-og_", "cookieDomain": "example.com"}),
    ));
    assert_error(&e, "cookieDomain", "refuse cookies with a Domain");
    let e = err(&login(
        json!({"cookiePrefix": "__host-og_", "cookiePath": "/app"}),
    ));
    assert_error(&e, "cookiePath", "Path other than /");
    for prefix in ["__Host-og_", "__Secure-og_", "__SECURE-"] {
        let e = err(&login(
            json!({"cookiePrefix": prefix, "cookieSecure": false}),
        ));
        assert_error(&e, "cookieSecure", "require Secure cookies");
    }
    let s = ok(&login(json!({"cookiePrefix": "__Host-og_"})))
        .browser
        .unwrap()
        .session;
    assert_eq!(s.name_prefix, NamePrefix::Host);
    assert_eq!(s.cookie_name, "__Host-og_session");
    let s = ok(&login(
        json!({"cookiePrefix": "__Secure-og_", "cookieDomain": "example.com", "cookiePath": "/app"}),
    ))
    .browser
    .unwrap()
    .session;
    assert_eq!(s.name_prefix, NamePrefix::Secure);
    assert_eq!(NamePrefix::of("__Host"), NamePrefix::None);
    assert_eq!(NamePrefix::of("_Host-"), NamePrefix::None);
}

#[test]
fn log_levels() {
    for (given, want) in [
        ("debug", LogLevel::Debug),
        ("INFO", LogLevel::Info),
        ("warning", LogLevel::Warn),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
    ] {
        assert_eq!(
            ok(&login(json!({"logLevel": given}))).log_level,
            want,
            "{given}"
        );
    }
    assert_error(
        &err(&login(json!({"logLevel": "loud"}))),
        "logLevel",
        "expected one of",
    );
}

#[test]
fn identity_is_derived_and_stable() {
    let a = ok(&login(json!({})));
    let b = ok(&login(
        json!({"providerURL": "https://idp.example.com/", "logLevel": "debug"}),
    ));
    assert_eq!(
        a.identity(),
        b.identity(),
        "replicas with the same settings agree"
    );
    assert_eq!(a.identity().len(), 16);
    assert!(a.identity().bytes().all(|c| c.is_ascii_hexdigit()));
    let c = ok(&login(json!({"clientID": "other"})));
    let d = ok(&login(json!({"instanceName": "blue"})));
    let e = ok(&login(json!({"cookiePrefix": "x_"})));
    let f = ok(&login(json!({"providerURL": "https://idp2.example.com"})));
    let ids = [
        a.identity(),
        c.identity(),
        d.identity(),
        e.identity(),
        f.identity(),
    ];
    for (i, x) in ids.iter().enumerate() {
        for y in ids.iter().skip(i + 1) {
            assert_ne!(x, y);
        }
    }
    // Bearer-only: the audience takes the client's place.
    let g = ok(&bearer(json!({})));
    let h = ok(&bearer(json!({"bearer": {"audience": "other"}})));
    assert_ne!(g.identity(), h.identity());
    // The session key is not part of it: rotating keys keeps the identity.
    let i = ok(&login(json!({"sessionEncryptionKey": [KEY2, KEY]})));
    assert_eq!(a.identity(), i.identity());
}

// ----- the key table and the generated reference ------------------------------------------

#[test]
fn key_table_is_consistent() {
    let mut names: Vec<String> = keys::all_names().map(str::to_ascii_lowercase).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "two names collide (ignoring case)");
    for s in KEYS {
        // Every key has a section in the reference.
        assert!(
            keys::section_of(s.path).is_some(),
            "{} has no section",
            s.path
        );
        // Every default parses with the key's own parser.
        if let Def::Value(d) = s.default {
            let v = Value::String(d.to_string());
            let r = match s.kind {
                Kind::Bool => value::boolean(&v).map(|_| ()),
                Kind::Int { min, max } => value::integer(&v, min, max).map(|_| ()),
                Kind::Duration { min_ms, max_ms } => {
                    value::duration(&v, min_ms, max_ms).map(|_| ())
                }
                Kind::Enum(w) => value::one_of(&v, w).map(|_| ()),
                Kind::Path => value::path(&v).map(|_| ()),
                Kind::PathOrUrl => value::path_or_url(&v).map(|_| ()),
                _ => Ok(()),
            };
            assert!(r.is_ok(), "default of {} does not parse: {r:?}", s.path);
        }
        // Secrets have their File/Env companions.
        if matches!(s.kind, Kind::Secret | Kind::SecretList) {
            assert!(
                keys::spec(&format!("{}File", s.path)).is_some(),
                "{}File",
                s.path
            );
            assert!(
                keys::spec(&format!("{}Env", s.path)).is_some(),
                "{}Env",
                s.path
            );
        }
        // A key path is never also a section.
        assert!(
            keys::section(s.path).is_none(),
            "{} is both a key and a section",
            s.path
        );
    }
}

#[test]
fn every_documented_key_is_accepted() {
    // Each key in the table is reachable through the parser (no "unknown key" for it).
    for s in KEYS {
        let mut obj = serde_json::Map::new();
        let parts: Vec<&str> = s.path.split('.').collect();
        let mut cur = &mut obj;
        for p in &parts[..parts.len() - 1] {
            cur = cur
                .entry(p.to_string())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap();
        }
        cur.insert(parts[parts.len() - 1].to_string(), json!("x"));
        let r = parse(&Value::Object(obj));
        if let Err(e) = r {
            assert!(!e.to_string().contains("unknown key"), "{}: {e}", s.path);
        }
    }
}

#[test]
fn config_reference_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config-reference.md");
    let fresh = reference::markdown();
    if std::env::var_os("UPDATE_CONFIG_REFERENCE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "docs/config-reference.md is out of date; regenerate it with \
         `UPDATE_CONFIG_REFERENCE=1 cargo test -p oidc-guard config_reference`"
    );
    // Spot checks that the reference says what the table says.
    for needle in [
        "`allowedUsers`",
        "`REDIS_SSL_VERIFY` (inverted)",
        "`redis.cacheMode`",
        "Accepted, has no effect in the guest",
    ] {
        assert!(fresh.contains(needle), "{needle}");
    }
}

#[test]
fn values_of_unused_keys_are_still_checked() {
    // Redis is off (the address key is misspelt), yet its bad db value is reported too.
    let e = err(&login(
        json!({"redis": {"adress": "r", "db": "x"}, "bearer": {"maxTokenSize": "big"}}),
    ));
    assert_error(&e, "redis.adress", "did you mean redis.address?");
    assert_error(&e, "redis.db", "expected a whole number");
    assert_error(&e, "bearer.maxTokenSize", "expected a whole number");
    // Reported once, not once per lookup.
    let e = err(&login(json!({"enablePKCE": "maybe"})));
    assert_eq!(e.errors().len(), 1, "{e}");
}

#[test]
fn hostile_values_never_panic() {
    // The guest must never trap: every key with every odd value gives Ok or a ConfigError.
    let odd = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(""),
        json!(" "),
        json!("x"),
        json!("9999999999999999999999h"),
        json!("1.5.5s"),
        json!("[::1"),
        json!("é:ü"),
        json!([]),
        json!([null]),
        json!([[1]]),
        json!({}),
        json!({"enabled": {"x": 1}}),
        json!("{{.Claims.}}"),
        json!("\u{0}"),
    ];
    for s in KEYS {
        for v in &odd {
            let mut obj = serde_json::Map::new();
            let parts: Vec<&str> = s.path.split('.').collect();
            let mut cur = &mut obj;
            for p in &parts[..parts.len() - 1] {
                cur = cur
                    .entry(p.to_string())
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap();
            }
            cur.insert(parts[parts.len() - 1].to_string(), v.clone());
            let mut cfg = login(json!({}));
            merge(&mut cfg, Value::Object(obj));
            let _ = parse_with(
                &cfg,
                &[("REDIS_HOST", "[::1"), ("REDIS_PORT", "x")],
                &[],
                Platform::default(),
            );
            let _ = parse(&cfg);
        }
    }
}

#[test]
fn forward_access_token() {
    let c = ok(&login(
        json!({"forwardAccessToken": "X-Forwarded-Access-Token"}),
    ));
    assert_eq!(
        c.upstream.access_token_header.as_deref(),
        Some("X-Forwarded-Access-Token")
    );
    let c = ok(&login(json!({"forwardAccessToken": "Authorization"})));
    assert_eq!(
        c.upstream.access_token_header.as_deref(),
        Some("Authorization")
    );
    assert_eq!(ok(&login(json!({}))).upstream.access_token_header, None);
    assert_error(
        &err(&login(json!({"forwardAccessToken": "Cookie"}))),
        "forwardAccessToken",
        "cannot carry the access token",
    );
    assert_error(
        &err(&login(json!({"forwardAccessToken": "X Token"}))),
        "forwardAccessToken",
        "not a valid header name",
    );
    assert_error(
        &err(&login(
            json!({"forwardAccessToken": "X-Email", "claimHeaders": {"X-Email": "email"}}),
        )),
        "forwardAccessToken",
        "already carries a claim",
    );
    // traefikoidc's templates.
    let c = ok(&login(json!({"headers": [
        {"name": "X-Token", "value": "{{.AccessToken}}"},
        {"name": "X-Email", "value": "{{.Claims.email}}"},
    ]})));
    assert_eq!(c.upstream.access_token_header.as_deref(), Some("X-Token"));
    assert_eq!(c.upstream.claim_headers.len(), 1);
    let c = ok(&login(json!({"headers": [
        {"name": "Authorization", "value": "Bearer {{.AccessToken}}"},
    ]})));
    assert_eq!(
        c.upstream.access_token_header.as_deref(),
        Some("Authorization")
    );
    for bad in [
        json!({"name": "Authorization", "value": "{{.AccessToken}}"}),
        json!({"name": "X-Token", "value": "Bearer {{.AccessToken}}"}),
    ] {
        assert_error(
            &err(&login(json!({"headers": [bad]}))),
            "headers",
            "only the exact forms",
        );
    }
    assert_error(
        &err(&login(json!({
            "forwardAccessToken": "X-A",
            "headers": [{"name": "X-B", "value": "{{.AccessToken}}"}],
        }))),
        "forwardAccessToken",
        "one header",
    );
    // Without browser login, another header carries bearer requests' tokens: no warning.
    let c = ok(&bearer(json!({"forwardAccessToken": "X-Token"})));
    assert_eq!(c.upstream.access_token_header.as_deref(), Some("X-Token"));
    assert!(
        !c.warnings.iter().any(|w| w.contains("forwardAccessToken")),
        "{:?}",
        c.warnings
    );
    // `Authorization` only ever serves sessions: without browser login it does nothing, and
    // says so.
    let c = ok(&bearer(json!({"forwardAccessToken": "Authorization"})));
    assert!(
        c.warnings
            .iter()
            .any(|w| w
                .starts_with("forwardAccessToken: Authorization has no effect without clientID")),
        "{:?}",
        c.warnings
    );
}

/// A Redis address written as a URL with credentials is refused without the password in the
/// error (which is logged).
#[test]
fn a_redis_url_with_a_password_is_refused_without_echoing_it() {
    for (key, v) in [
        (
            "redis",
            json!({"address": "rediss://default:Hunter2Pass@redis.internal:6380"}),
        ),
        (
            "redis",
            json!({"address": "default:Hunter2Pass@redis.internal:6380"}),
        ),
    ] {
        let e = err(&login(json!({ key: v })));
        let text = e.to_string();
        assert!(text.contains("redis.address"), "{text}");
        assert!(text.contains("redis.internal:6380"), "{text}");
        assert!(!text.contains("Hunter2Pass"), "{text}");
    }
}
