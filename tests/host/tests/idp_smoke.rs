//! The test IdP (npm `oidc-provider`) driven by the scripted browser acting as a plain OIDC
//! client: no plugin involved. Proves that the IdP does what the plugin's tests rely on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use oidc_guard_testhost::browser::{query_param, Browser, CookieOutcome, Page, Request};
use oidc_guard_testhost::idp::{AuthMethod, Client, Idp, IdpOptions, ResourceServer};
use serde_json::Value;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const POST_LOGOUT: &str = "http://127.0.0.1:9/signed-out";

/// A PKCE pair (RFC 7636 §4.1–4.2, S256).
fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    (verifier, challenge)
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWS has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header(jwt: &str) -> Value {
    let h = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// The authorization request; returns the code (and checks state and iss, RFC 9207).
fn authorize(
    browser: &mut Browser,
    disco: &Value,
    client_id: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> (String, Page) {
    let mut url = url::Url::parse(disco["authorization_endpoint"].as_str().unwrap()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile groups")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "state-123")
        .append_pair("nonce", "nonce-456")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    let page = browser.get_until(url.as_str(), REDIRECT).unwrap();
    let location = page
        .location()
        .unwrap_or_else(|| panic!("no redirect to the client: {} {}", page.status, page.text()))
        .to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(
        query_param(&location, "state").as_deref(),
        Some("state-123")
    );
    assert_eq!(
        query_param(&location, "iss").as_deref(),
        disco["issuer"].as_str()
    );
    let code = query_param(&location, "code").unwrap_or_else(|| panic!("no code in {location}"));
    (code, page)
}

fn token_request(
    browser: &mut Browser,
    disco: &Value,
    client: (&str, &str),
    method: AuthMethod,
    fields: &[(&str, &str)],
) -> Page {
    let endpoint = disco["token_endpoint"].as_str().unwrap();
    let mut fields = fields.to_vec();
    let mut req;
    match method {
        AuthMethod::ClientSecretPost => {
            fields.push(("client_id", client.0));
            fields.push(("client_secret", client.1));
            req = Request::post_form(endpoint, &fields);
        }
        _ => {
            // RFC 6749 §2.3.1: form-urlencode id and secret before Basic.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(client.0),
                enc(client.1)
            ));
            req = Request::post_form(endpoint, &fields)
                .header("authorization", &format!("Basic {basic}"));
        }
    }
    req = req.subresource().header("accept", "application/json");
    browser.send(req).unwrap()
}

fn code_flow(
    idp: &Idp,
    client: (&str, &str),
    method: AuthMethod,
    extra: &[(&str, &str)],
) -> (Browser, Value) {
    let disco = idp.discovery().unwrap();
    let mut browser = Browser::new();
    let (verifier, challenge) = pkce();
    let (code, _) = authorize(&mut browser, &disco, client.0, &challenge, extra);
    let resp = token_request(
        &mut browser,
        &disco,
        client,
        method,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    );
    assert_eq!(resp.status, 200, "token response: {}", resp.text());
    (browser, resp.json().unwrap())
}

fn basic_client() -> Client {
    Client::new("basic-client", "basic secret/+", REDIRECT).post_logout_redirect_uri(POST_LOGOUT)
}

#[test]
fn discovery_code_flow_refresh_and_logout() {
    let idp = Idp::start(
        IdpOptions::default()
            .client(basic_client())
            .client(
                Client::new("post-client", "post-secret", REDIRECT)
                    .auth_method(AuthMethod::ClientSecretPost)
                    .id_token_alg("ES256"),
            )
            .client(Client::new("eddsa-client", "eddsa-secret", REDIRECT).id_token_alg("EdDSA"))
            .access_token_ttl(30)
            .id_token_ttl(30),
    )
    .unwrap();

    // Discovery.
    let disco = idp.discovery().unwrap();
    assert_eq!(disco["issuer"], idp.issuer());
    for key in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "end_session_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "userinfo_endpoint",
    ] {
        assert!(
            disco[key]
                .as_str()
                .is_some_and(|u| u.starts_with(idp.issuer())),
            "{key}: {disco}"
        );
    }
    assert_eq!(disco["backchannel_logout_supported"], true);
    assert_eq!(disco["backchannel_logout_session_supported"], true);
    assert!(disco["dpop_signing_alg_values_supported"].is_array());
    assert_eq!(
        disco["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let algs = disco["id_token_signing_alg_values_supported"].to_string();
    for alg in ["RS256", "ES256", "EdDSA"] {
        assert!(algs.contains(alg), "{algs}");
    }
    let jwks = idp.jwks().unwrap();
    let kty: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kty"].as_str().unwrap())
        .collect();
    assert!(
        kty.contains(&"RSA") && kty.contains(&"EC") && kty.contains(&"OKP"),
        "{jwks}"
    );
    assert!(
        jwks.to_string().find("\"d\"").is_none(),
        "the public JWKS must not hold private parts"
    );

    // PKCE is required: no code_challenge → error redirect to the client.
    let mut b = Browser::new();
    let mut url = url::Url::parse(disco["authorization_endpoint"].as_str().unwrap()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "basic-client")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("redirect_uri", REDIRECT);
    let page = b.get_until(url.as_str(), REDIRECT).unwrap();
    let loc = page.location().unwrap();
    assert_eq!(
        query_param(loc, "error").as_deref(),
        Some("invalid_request"),
        "{loc}"
    );

    // Full code flow for alice, client_secret_basic, RS256.
    let (mut browser, tokens) = code_flow(
        &idp,
        ("basic-client", "basic secret/+"),
        AuthMethod::ClientSecretBasic,
        &[],
    );
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let c = claims(&id_token);
    assert_eq!(header(&id_token)["alg"], "RS256");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["groups"], serde_json::json!(["admins", "devs"]));
    assert_eq!(c["nonce"], "nonce-456");
    assert_eq!(c["aud"], "basic-client");
    assert_eq!(c["iss"], idp.issuer());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 30);
    assert_eq!(tokens["expires_in"], 30);
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token without offline_access/prompt=consent")
        .to_owned();
    // The IdP's own cookies were recorded; none is near 4 KB.
    assert!(browser
        .set_cookie_log()
        .iter()
        .any(|r| r.name == "_session" && r.outcome == CookieOutcome::Stored));
    assert!(browser.set_cookie_log().iter().all(|r| r.size() < 4096));

    // Refresh: counted, rotated; the old refresh token is then refused.
    idp.reset_stats().unwrap();
    let resp = token_request(
        &mut browser,
        &disco,
        ("basic-client", "basic secret/+"),
        AuthMethod::ClientSecretBasic,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let refreshed = resp.json().unwrap();
    let new_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh, "refresh tokens rotate");
    assert_eq!(
        claims(refreshed["id_token"].as_str().unwrap())["groups"],
        serde_json::json!(["admins", "devs"])
    );
    let stats = idp.stats().unwrap();
    assert_eq!(stats.refresh_token_grants, 1, "{stats:?}");
    assert_eq!(stats.authorization_code_grants, 0, "{stats:?}");
    let replay = token_request(
        &mut browser,
        &disco,
        ("basic-client", "basic secret/+"),
        AuthMethod::ClientSecretBasic,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(replay.status, 400);
    assert_eq!(replay.json().unwrap()["error"], "invalid_grant");
    assert_eq!(idp.stats().unwrap().refresh_token_grant_errors, 1);
    // Reuse of a rotated refresh token revokes the whole grant: the new one is dead too.
    assert!(idp.stats().unwrap().grants_revoked >= 1);
    let after = token_request(
        &mut browser,
        &disco,
        ("basic-client", "basic secret/+"),
        AuthMethod::ClientSecretBasic,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &new_refresh),
        ],
    );
    assert_eq!(after.status, 400, "{}", after.text());

    // A second login in the same browser reuses the IdP session (no new login).
    let before = idp.stats().unwrap().logins;
    let (_, challenge) = pkce();
    authorize(&mut browser, &disco, "basic-client", &challenge, &[]);
    assert_eq!(idp.stats().unwrap().logins, before);

    // RP-initiated logout: the confirmation is a one-form page; submitting it redirects to the
    // post_logout_redirect_uri with the state.
    let mut url = url::Url::parse(disco["end_session_endpoint"].as_str().unwrap()).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &id_token)
        .append_pair("post_logout_redirect_uri", POST_LOGOUT)
        .append_pair("state", "bye-1");
    let confirm = browser.get(url.as_str()).unwrap();
    assert_eq!(confirm.status, 200, "{}", confirm.text());
    let done = browser.submit_form(&confirm, Some(POST_LOGOUT)).unwrap();
    let loc = done
        .location()
        .unwrap_or_else(|| panic!("{} {}", done.status, done.text()));
    assert!(loc.starts_with(POST_LOGOUT), "{loc}");
    assert_eq!(query_param(loc, "state").as_deref(), Some("bye-1"));
    assert_eq!(idp.stats().unwrap().end_sessions, 1);
    assert!(done
        .set_cookies()
        .any(|r| r.name == "_session" && r.outcome == CookieOutcome::Deleted));
    // The session is gone: the next authorization asks for a login again.
    let (_, challenge) = pkce();
    authorize(&mut browser, &disco, "basic-client", &challenge, &[]);
    assert_eq!(idp.stats().unwrap().logins, before + 1);

    // client_secret_post for a second client, ES256; bob chosen by login_hint.
    let (_, tokens) = code_flow(
        &idp,
        ("post-client", "post-secret"),
        AuthMethod::ClientSecretPost,
        &[("login_hint", "bob@example.org")],
    );
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["alg"], "ES256");
    let c = claims(id_token);
    assert_eq!(c["sub"], "bob");
    assert_eq!(c["email"], "bob@example.org");
    assert_eq!(c["groups"], serde_json::json!(["devs"]));
    // The wrong method for a client is refused.
    let (verifier, challenge) = pkce();
    let mut b = Browser::new();
    let (code, _) = authorize(&mut b, &disco, "post-client", &challenge, &[]);
    let resp = token_request(
        &mut b,
        &disco,
        ("post-client", "post-secret"),
        AuthMethod::ClientSecretBasic,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    );
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.json().unwrap()["error"], "invalid_client");
    assert_eq!(idp.stats().unwrap().client_auth_method_mismatches, 1);

    // EdDSA ID tokens.
    let (_, tokens) = code_flow(
        &idp,
        ("eddsa-client", "eddsa-secret"),
        AuthMethod::ClientSecretBasic,
        &[],
    );
    assert_eq!(header(tokens["id_token"].as_str().unwrap())["alg"], "EdDSA");

    // The user chosen on the interaction URL, and set as default at run time.
    let mut b = Browser::new();
    let (_, challenge) = pkce();
    let mut url = url::Url::parse(disco["authorization_endpoint"].as_str().unwrap()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "basic-client")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let first = b
        .get_until(url.as_str(), &idp.url("/interaction/"))
        .unwrap();
    let interaction = format!("{}?user=bob", first.location().unwrap());
    let page = b.get_until(&interaction, REDIRECT).unwrap();
    assert!(page.location().unwrap().contains("code="));
    assert!(idp
        .logs()
        .iter()
        .any(|l| l.contains(" login ") && l.contains("user=bob")));
    idp.set_default_user("large@example.com").unwrap();
    assert!(idp.set_default_user("nobody").is_err());
    idp.reset_stats().unwrap();
    assert_eq!(idp.stats().unwrap().logins, 0);
}

/// Reads one HTTP request from `stream` and answers 200; returns the body.
fn serve_one(listener: &TcpListener) -> String {
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut len = 0usize;
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("POST /backchannel "), "{first}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
            if k.eq_ignore_ascii_case("content-type") {
                assert!(v.contains("application/x-www-form-urlencoded"), "{v}");
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn backchannel_logout_and_large_claims() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let bcl = format!(
        "http://127.0.0.1:{}/backchannel",
        listener.local_addr().unwrap().port()
    );
    let idp = Idp::start(
        IdpOptions::default()
            .client(basic_client().backchannel_logout(&bcl, true))
            .client(Client::new("other", "other-secret", REDIRECT))
            .default_user("alice@example.com"),
    )
    .unwrap();
    let disco = idp.discovery().unwrap();
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let body = serve_one(&listener);
        tx.send(body).unwrap();
    });

    let (mut browser, tokens) = code_flow(
        &idp,
        ("basic-client", "basic secret/+"),
        AuthMethod::ClientSecretBasic,
        &[],
    );
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let sid = claims(&id_token)["sid"]
        .as_str()
        .expect("sid in the ID token when the session is required")
        .to_owned();

    let mut url = url::Url::parse(disco["end_session_endpoint"].as_str().unwrap()).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &id_token)
        .append_pair("post_logout_redirect_uri", POST_LOGOUT);
    let confirm = browser.get(url.as_str()).unwrap();
    let done = browser.submit_form(&confirm, Some(POST_LOGOUT)).unwrap();
    assert!(done.location().unwrap().starts_with(POST_LOGOUT));

    let body = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the IdP POSTs the logout token");
    server.join().unwrap();
    let logout_token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no logout_token in {body}"));
    // OpenID Connect Back-Channel Logout 1.0 §2.4.
    let c = claims(&logout_token);
    assert_eq!(header(&logout_token)["typ"], "logout+jwt");
    assert_eq!(c["iss"], idp.issuer());
    assert_eq!(c["aud"], "basic-client");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["sid"], sid.as_str());
    assert!(c["jti"].is_string() && c["iat"].is_number());
    assert!(c["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(c.get("nonce").is_none());
    let stats = idp.stats().unwrap();
    assert_eq!(stats.backchannel_logouts_sent, 1, "{stats:?}");
    assert_eq!(stats.backchannel_logout_errors, 0, "{stats:?}");

    // The large claim set: 200 groups in the ID token (about 7 KB, more than a cookie holds).
    let (_, tokens) = code_flow(
        &idp,
        ("other", "other-secret"),
        AuthMethod::ClientSecretBasic,
        &[("login_hint", "large")],
    );
    let id_token = tokens["id_token"].as_str().unwrap();
    let groups = claims(id_token)["groups"].as_array().unwrap().len();
    assert_eq!(groups, 200);
    assert!(id_token.len() > 4096, "{}", id_token.len());
}

#[test]
fn issuer_path_login_form_and_jwt_access_tokens() {
    let idp = Idp::start(IdpOptions {
        issuer_path: Some("/idp".into()),
        env: vec![("IDP_LOGIN_PAGE".into(), "form".into())],
        ..IdpOptions::default()
            .client(basic_client())
            .resource_server("https://api.example.test", ResourceServer::default())
    })
    .unwrap();
    assert!(idp.issuer().ends_with("/idp"), "{}", idp.issuer());
    let disco = idp.discovery().unwrap();
    assert_eq!(disco["issuer"], idp.issuer());
    assert!(disco["token_endpoint"]
        .as_str()
        .unwrap()
        .starts_with(idp.issuer()));

    // A host name resolved to the IdP's address (curl --resolve): the Host header carries the
    // name, and oidc-provider builds its endpoint URLs from it.
    let mut named = Browser::new();
    let addr = format!("127.0.0.1:{}", idp.port()).parse().unwrap();
    named.resolve("idp.example.test", idp.port(), addr);
    let page = named
        .get(&format!(
            "http://idp.example.test:{}/idp/.well-known/openid-configuration",
            idp.port()
        ))
        .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.json().unwrap()["token_endpoint"],
        format!("http://idp.example.test:{}/idp/token", idp.port())
    );

    // The login page is a form with a user picker; the scripted browser submits it.
    let mut browser = Browser::new();
    let (verifier, challenge) = pkce();
    let mut url = url::Url::parse(disco["authorization_endpoint"].as_str().unwrap()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "basic-client")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile api")
        .append_pair("resource", "https://api.example.test")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let page = browser.get(url.as_str()).unwrap();
    assert_eq!(page.status, 200);
    let mut form = page.form().expect("a login form");
    assert_eq!(form.fields, vec![("user".to_owned(), "alice".to_owned())]);
    form.set("user", "bob");
    let done = browser.submit(&form, &page.url, Some(REDIRECT)).unwrap();
    let code = query_param(done.location().unwrap(), "code").unwrap();

    let resp = token_request(
        &mut browser,
        &disco,
        ("basic-client", "basic secret/+"),
        AuthMethod::ClientSecretBasic,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("resource", "https://api.example.test"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let tokens = resp.json().unwrap();
    let at = tokens["access_token"].as_str().unwrap();
    // RFC 9068: a JWT access token for the resource server.
    assert_eq!(header(at)["typ"], "at+jwt");
    let c = claims(at);
    assert_eq!(c["aud"], "https://api.example.test");
    assert_eq!(c["iss"], idp.issuer());
    assert_eq!(c["sub"], "bob");
    assert_eq!(c["client_id"], "basic-client");
    assert!(c["jti"].is_string());
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["groups"],
        serde_json::json!(["devs"])
    );
}
