//! Launcher for the real OpenID Connect provider in `tests/idp/` (npm `oidc-provider` 9.x).
//!
//! [`Idp::start`] runs `node tests/idp/server.mjs` on a free 127.0.0.1 port (the server binds
//! port 0 and reports the port it got, so there is no race for the port), waits until
//! `/.well-known/openid-configuration` answers, and stops the process by pid when the [`Idp`] is
//! dropped. The server also exits on its own when the test process is gone (`--parent-pid`).
//!
//! What the server does is described in `tests/idp/README.md`: a test user is logged in without a
//! login page (`alice` by default; `bob`, `large` or any configured user through the interaction
//! URL's `user` query parameter, the authorization request's `login_hint`, or
//! [`Idp::set_default_user`]), consent is granted at once, refresh tokens are issued for every
//! code grant of a client with the `refresh_token` grant type, and `GET /__test/stats` counts
//! grants and logouts ([`Idp::stats`]).
//!
//! ```no_run
//! use oidc_guard_testhost::idp::{Client, Idp, IdpOptions};
//! # fn main() -> anyhow::Result<()> {
//! let idp = Idp::start(
//!     IdpOptions::default()
//!         .client(Client::new("app", "app-secret", "http://127.0.0.1:8080/callback"))
//!         .access_token_ttl(5),
//! )?;
//! println!("issuer {}", idp.issuer());
//! assert_eq!(idp.stats()?.refresh_token_grants, 0);
//! # Ok(())
//! # }
//! ```

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// How long the server may take to print its `ready` line (node start-up plus key generation).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How a client authenticates at the token endpoint (OIDC Core 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// HTTP Basic with the client ID and secret (the OIDC default).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A public client (no secret).
    None,
}

/// One registered client (OIDC Dynamic Client Registration 1.0 §2 metadata names).
///
/// Defaults: grant types `authorization_code` + `refresh_token`, response type `code`,
/// `client_secret_basic`, ID tokens signed with RS256. PKCE (S256) is required by the server for
/// every client unless [`IdpOptions::pkce_required`] turns it off.
#[derive(Clone, Debug, Serialize)]
pub struct Client {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret` (absent for [`AuthMethod::None`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// `redirect_uris`.
    pub redirect_uris: Vec<String>,
    /// `post_logout_redirect_uris`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    /// `token_endpoint_auth_method`.
    pub token_endpoint_auth_method: AuthMethod,
    /// `id_token_signed_response_alg`: `RS256`, `PS256`, `ES256` or `EdDSA` (the server holds an
    /// RSA, a P-256 and an Ed25519 key).
    pub id_token_signed_response_alg: String,
    /// `grant_types`.
    pub grant_types: Vec<String>,
    /// `backchannel_logout_uri` (OpenID Connect Back-Channel Logout 1.0 §2.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// `backchannel_logout_session_required`: the logout token then carries `sid`, and so does
    /// the ID token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_session_required: Option<bool>,
    /// `dpop_bound_access_tokens` (RFC 9449 §5.2): access tokens only with a DPoP proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpop_bound_access_tokens: Option<bool>,
    /// Any other client metadata, passed to `oidc-provider` as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Client {
    /// A confidential client with one redirect URI and the defaults above.
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: Some(client_secret.to_owned()),
            redirect_uris: vec![redirect_uri.to_owned()],
            post_logout_redirect_uris: Vec::new(),
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            id_token_signed_response_alg: "RS256".to_owned(),
            grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
            backchannel_logout_uri: None,
            backchannel_logout_session_required: None,
            dpop_bound_access_tokens: None,
            extra: Map::new(),
        }
    }

    /// Adds a redirect URI.
    pub fn redirect_uri(mut self, uri: &str) -> Self {
        self.redirect_uris.push(uri.to_owned());
        self
    }

    /// Adds a `post_logout_redirect_uri`.
    pub fn post_logout_redirect_uri(mut self, uri: &str) -> Self {
        self.post_logout_redirect_uris.push(uri.to_owned());
        self
    }

    /// Sets the token endpoint authentication method.
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        if method == AuthMethod::None {
            self.client_secret = None;
        }
        self.token_endpoint_auth_method = method;
        self
    }

    /// Sets the ID token signing algorithm (`RS256`, `PS256`, `ES256`, `EdDSA`).
    pub fn id_token_alg(mut self, alg: &str) -> Self {
        self.id_token_signed_response_alg = alg.to_owned();
        self
    }

    /// Registers a back-channel logout URI.
    pub fn backchannel_logout(mut self, uri: &str, session_required: bool) -> Self {
        self.backchannel_logout_uri = Some(uri.to_owned());
        self.backchannel_logout_session_required = Some(session_required);
        self
    }

    /// Without the `refresh_token` grant (no refresh tokens are issued then).
    pub fn without_refresh(mut self) -> Self {
        self.grant_types.retain(|g| g != "refresh_token");
        self
    }

    /// Requires DPoP-bound access tokens.
    pub fn dpop_bound(mut self) -> Self {
        self.dpop_bound_access_tokens = Some(true);
        self
    }

    /// Sets any other client metadata field.
    pub fn metadata(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }
}

/// A resource server (RFC 8707 resource indicator) for which the IdP issues JWT access tokens
/// (RFC 9068), when the authorization and token requests carry `resource=<indicator>`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceServer {
    /// Space-separated scopes this resource server accepts (default `api`).
    pub scope: String,
    /// `aud` of its access tokens (default: the indicator itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Signing algorithm of its access tokens (default RS256).
    pub alg: String,
    /// Access token lifetime in seconds (default: the access token TTL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token_ttl: Option<u64>,
}

impl Default for ResourceServer {
    fn default() -> Self {
        Self {
            scope: "api".to_owned(),
            audience: None,
            alg: "RS256".to_owned(),
            access_token_ttl: None,
        }
    }
}

/// Options of [`Idp::start`]. `Default` gives one demo client, the three built-in users and the
/// server's defaults (60 s access and ID tokens, PKCE required, refresh tokens rotated).
#[derive(Clone, Debug, Default)]
pub struct IdpOptions {
    /// Registered clients (none: the server's single demo client `oidc-guard`).
    pub clients: Vec<Client>,
    /// Users as JSON objects with at least `sub` (none: alice, bob and large). Every member but
    /// `sub` is a claim (`email`, `groups`, `roles`, `name`, ...).
    pub users: Option<Vec<Value>>,
    /// Access token lifetime in seconds.
    pub access_token_ttl: Option<u64>,
    /// ID token lifetime in seconds.
    pub id_token_ttl: Option<u64>,
    /// Refresh token lifetime in seconds.
    pub refresh_token_ttl: Option<u64>,
    /// IdP session lifetime in seconds.
    pub session_ttl: Option<u64>,
    /// Number of groups of the built-in user `large` (server default 200).
    pub large_groups: Option<u32>,
    /// Generated groups added to every user.
    pub extra_groups: Option<u32>,
    /// The user logged in when the request names none (server default `alice`).
    pub default_user: Option<String>,
    /// `Some(false)` lets clients skip PKCE (server default: required).
    pub pkce_required: Option<bool>,
    /// `Some(false)` keeps refresh tokens valid after use (server default: rotated).
    pub rotate_refresh_tokens: Option<bool>,
    /// `Some(false)` accepts `client_secret_basic` and `client_secret_post` interchangeably, as
    /// `oidc-provider` itself does (server default: only the registered method).
    pub strict_client_auth: Option<bool>,
    /// A path for the issuer, e.g. `/idp` gives `http://127.0.0.1:PORT/idp`.
    pub issuer_path: Option<String>,
    /// Resource servers by indicator, for JWT access tokens.
    pub resource_servers: Vec<(String, ResourceServer)>,
    /// A private JWKS file to load (created with fresh keys when absent), so that several IdP
    /// runs sign with the same keys.
    pub keys_file: Option<PathBuf>,
    /// Extra environment variables for the node process.
    pub env: Vec<(String, String)>,
}

impl IdpOptions {
    /// Adds a client.
    pub fn client(mut self, client: Client) -> Self {
        self.clients.push(client);
        self
    }

    /// Sets the access token lifetime (seconds).
    pub fn access_token_ttl(mut self, secs: u64) -> Self {
        self.access_token_ttl = Some(secs);
        self
    }

    /// Sets the ID token lifetime (seconds).
    pub fn id_token_ttl(mut self, secs: u64) -> Self {
        self.id_token_ttl = Some(secs);
        self
    }

    /// Sets the refresh token lifetime (seconds).
    pub fn refresh_token_ttl(mut self, secs: u64) -> Self {
        self.refresh_token_ttl = Some(secs);
        self
    }

    /// Sets how many groups the built-in user `large` has.
    pub fn large_groups(mut self, n: u32) -> Self {
        self.large_groups = Some(n);
        self
    }

    /// Adds `n` generated groups to every user.
    pub fn extra_groups(mut self, n: u32) -> Self {
        self.extra_groups = Some(n);
        self
    }

    /// Sets the default user (a `sub` or an email).
    pub fn default_user(mut self, user: &str) -> Self {
        self.default_user = Some(user.to_owned());
        self
    }

    /// Replaces the built-in users.
    pub fn users(mut self, users: Vec<Value>) -> Self {
        self.users = Some(users);
        self
    }

    /// Adds a resource server issuing JWT access tokens.
    pub fn resource_server(mut self, indicator: &str, rs: ResourceServer) -> Self {
        self.resource_servers.push((indicator.to_owned(), rs));
        self
    }

    /// The server's inline JSON configuration (`IDP_CONFIG_JSON`).
    fn config_json(&self) -> Result<String> {
        let mut cfg = Map::new();
        if !self.clients.is_empty() {
            cfg.insert("clients".into(), serde_json::to_value(&self.clients)?);
        }
        if let Some(users) = &self.users {
            cfg.insert("users".into(), Value::Array(users.clone()));
        }
        let mut ttl = Map::new();
        for (k, v) in [
            ("AccessToken", self.access_token_ttl),
            ("IdToken", self.id_token_ttl),
            ("RefreshToken", self.refresh_token_ttl),
            ("Session", self.session_ttl),
        ] {
            if let Some(v) = v {
                ttl.insert(k.into(), json!(v));
            }
        }
        cfg.insert("ttl".into(), Value::Object(ttl));
        if let Some(n) = self.large_groups {
            cfg.insert("largeGroups".into(), json!(n));
        }
        if let Some(n) = self.extra_groups {
            cfg.insert("extraGroups".into(), json!(n));
        }
        if let Some(u) = &self.default_user {
            cfg.insert("defaultUser".into(), json!(u));
        }
        if let Some(b) = self.pkce_required {
            cfg.insert("pkceRequired".into(), json!(b));
        }
        if let Some(b) = self.rotate_refresh_tokens {
            cfg.insert("rotateRefreshTokens".into(), json!(b));
        }
        if let Some(b) = self.strict_client_auth {
            cfg.insert("strictClientAuth".into(), json!(b));
        }
        if let Some(p) = &self.issuer_path {
            cfg.insert("issuerPath".into(), json!(p));
        }
        if !self.resource_servers.is_empty() {
            let mut rs = Map::new();
            for (indicator, server) in &self.resource_servers {
                rs.insert(indicator.clone(), serde_json::to_value(server)?);
            }
            cfg.insert("resourceServers".into(), Value::Object(rs));
        }
        if let Some(k) = &self.keys_file {
            cfg.insert("keysFile".into(), json!(k));
        }
        Ok(Value::Object(cfg).to_string())
    }
}

/// The counters of `GET /__test/stats` (all since start or the last [`Idp::reset_stats`]).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
#[non_exhaustive]
pub struct IdpStats {
    /// Successful `authorization_code` grants at the token endpoint.
    pub authorization_code_grants: u64,
    /// Successful `refresh_token` grants.
    pub refresh_token_grants: u64,
    /// Successful grants of other types.
    pub other_grants: u64,
    /// Failed grants of any type (`invalid_grant`, `invalid_client`, ...).
    pub grant_errors: u64,
    /// Failed `refresh_token` grants (e.g. a rotated refresh token used again).
    pub refresh_token_grant_errors: u64,
    /// Authorization responses that carried a code.
    pub authorizations: u64,
    /// Authorization requests refused.
    pub authorization_errors: u64,
    /// Users logged in by the interaction handler.
    pub logins: u64,
    /// Logins refused (unknown user).
    pub login_failures: u64,
    /// Consent prompts answered (normally 0: grants are given without a prompt).
    pub consents: u64,
    /// RP-initiated logouts completed.
    pub end_sessions: u64,
    /// Back-channel logout tokens delivered (answered 200/204).
    pub backchannel_logouts_sent: u64,
    /// Back-channel logout deliveries that failed.
    pub backchannel_logout_errors: u64,
    /// Grants revoked (logout, refresh token reuse, revocation).
    pub grants_revoked: u64,
    /// Requests to the introspection endpoint.
    pub introspections: u64,
    /// Requests to the revocation endpoint.
    pub revocations: u64,
    /// Requests to the userinfo endpoint.
    pub userinfo_requests: u64,
    /// Requests for the discovery document.
    pub discovery_requests: u64,
    /// Requests for the JWKS.
    pub jwks_requests: u64,
    /// Internal server errors.
    pub server_errors: u64,
    /// Token, introspection or revocation requests refused because the client authenticated
    /// with `client_secret_basic` when registered with `client_secret_post`, or the reverse
    /// (also counted in `grant_errors`).
    pub client_auth_method_mismatches: u64,
}

/// A running IdP; stopped (by pid) on drop.
pub struct Idp {
    child: Child,
    port: u16,
    issuer: String,
    logs: Arc<Mutex<Vec<String>>>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("pid", &self.child.id())
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The directory of the IdP package (`tests/idp` under the workspace root).
pub fn idp_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root).join("tests/idp")
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

impl Idp {
    /// Starts the IdP and waits until its discovery document answers.
    ///
    /// # Errors
    /// `tests/idp/node_modules` missing (run `make test-deps`), `node` missing, the server
    /// refusing its configuration or not becoming ready within 30 s; the error carries the
    /// server's output.
    pub fn start(options: IdpOptions) -> Result<Self> {
        let dir = idp_dir();
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            bail!(
                "{}/node_modules is missing: run `make test-deps` (npm ci --prefix tests/idp)",
                dir.display()
            );
        }
        let config = options.config_json()?;
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .env("IDP_CONFIG_JSON", config)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The caller's environment must not change the test's configuration.
        for var in [
            "IDP_PORT",
            "IDP_HOST",
            "IDP_ISSUER",
            "IDP_ISSUER_PATH",
            "IDP_CONFIG",
            "IDP_CLIENTS",
            "IDP_KEYS_FILE",
            "IDP_ACCESS_TOKEN_TTL",
            "IDP_ID_TOKEN_TTL",
            "IDP_REFRESH_TOKEN_TTL",
            "IDP_SESSION_TTL",
            "IDP_LARGE_GROUPS",
            "IDP_EXTRA_GROUPS",
            "IDP_DEFAULT_USER",
            "IDP_LOGIN_PAGE",
            "IDP_LOGOUT_CONFIRM",
            "IDP_PKCE_REQUIRED",
            "IDP_ROTATE_REFRESH_TOKENS",
            "IDP_PROXY",
            "IDP_STRICT_CLIENT_AUTH",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("`node` is not on PATH: install Node.js 20+ (make test-deps)")
            }
            Err(e) => return Err(e).context("spawning node tests/idp/server.mjs"),
        };

        let logs = Arc::new(Mutex::new(Vec::new()));
        let echo = std::env::var_os("IDP_LOG").is_some();
        let (ready_tx, ready_rx) = mpsc::channel::<(u16, String)>();
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, Arc::clone(&logs), echo, Some(ready_tx));
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, Arc::clone(&logs), echo, None);
        }

        let mut idp = Self {
            child,
            port: 0,
            issuer: String::new(),
            logs,
            agent: plain_agent(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(100)) {
                Ok((port, issuer)) => {
                    idp.port = port;
                    idp.issuer = issuer;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process ended; let the exit status below explain it.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if let Ok(Some(status)) = idp.child.try_wait() {
                bail!(
                    "the IdP exited during start-up ({status}); its output:\n{}",
                    idp.logs().join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the IdP did not report ready within {START_TIMEOUT:?}; its output:\n{}",
                    idp.logs().join("\n")
                );
            }
        }
        loop {
            if idp.discovery().is_ok() {
                return Ok(idp);
            }
            if Instant::now() > deadline {
                bail!(
                    "the IdP's discovery document did not answer within {START_TIMEOUT:?}; its output:\n{}",
                    idp.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The issuer identifier, e.g. `http://127.0.0.1:40123`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An absolute URL under the issuer (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer.trim_end_matches('/'), path)
    }

    /// The discovery URL (`{issuer}/.well-known/openid-configuration`).
    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }

    /// Fetches the discovery document.
    ///
    /// # Errors
    /// Transport errors, a status other than 200, a body that is not JSON.
    pub fn discovery(&self) -> Result<Value> {
        self.get_json(&self.discovery_url())
    }

    /// Fetches the public JWKS (`jwks_uri`).
    ///
    /// # Errors
    /// As [`Idp::discovery`].
    pub fn jwks(&self) -> Result<Value> {
        let disco = self.discovery()?;
        let uri = disco["jwks_uri"]
            .as_str()
            .ok_or_else(|| anyhow!("discovery has no jwks_uri"))?
            .to_owned();
        self.get_json(&uri)
    }

    /// The counters of `GET /__test/stats`.
    ///
    /// # Errors
    /// As [`Idp::discovery`].
    pub fn stats(&self) -> Result<IdpStats> {
        let v = self.get_json(&self.url("/__test/stats"))?;
        Ok(serde_json::from_value(v)?)
    }

    /// Zeroes the counters and restores the configured default user.
    ///
    /// # Errors
    /// Transport errors or a status other than 200.
    pub fn reset_stats(&self) -> Result<()> {
        self.post_empty(&self.url("/__test/reset"))
    }

    /// Makes `user` (a `sub` or an email) the user logged in when a request names none.
    ///
    /// # Errors
    /// An unknown user (400), transport errors.
    pub fn set_default_user(&self, user: &str) -> Result<()> {
        let url =
            url::Url::parse_with_params(&self.url("/__test/default-user"), &[("user", user)])?;
        self.post_empty(url.as_str())
    }

    /// Everything the server printed so far (stdout and stderr, one entry per line).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn get_json(&self, url: &str) -> Result<Value> {
        let mut resp = self
            .agent
            .get(url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        if status != 200 {
            bail!("GET {url}: expected 200, got {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {url}: body is not JSON"))
    }

    fn post_empty(&self, url: &str) -> Result<()> {
        let mut resp = self
            .agent
            .post(url)
            .send_empty()
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        if status != 200 {
            bail!("POST {url}: expected 200, got {status}: {body}");
        }
        Ok(())
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        // `Child::kill` signals this child's pid (SIGKILL); never a process looked up by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drains one of the child's pipes into `logs` (so the child never blocks on a full pipe) and
/// reports the `ready` line's port and issuer.
fn spawn_reader(
    pipe: impl Read + Send + 'static,
    logs: Arc<Mutex<Vec<String>>>,
    echo: bool,
    ready: Option<mpsc::Sender<(u16, String)>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if echo {
                eprintln!("[idp] {line}");
            }
            if let Some(tx) = &ready {
                if let Some((port, issuer)) = parse_ready(&line) {
                    let _ = tx.send((port, issuer));
                }
            }
            if let Ok(mut l) = logs.lock() {
                // Bounded: a long test must not grow this without limit.
                if l.len() >= 10_000 {
                    l.drain(..1_000);
                }
                l.push(line);
            }
        }
    });
}

/// Parses `idp <time> ready issuer=<url> port=<n> ...`.
fn parse_ready(line: &str) -> Option<(u16, String)> {
    let mut words = line.split_whitespace();
    if words.next() != Some("idp") {
        return None;
    }
    let _time = words.next()?;
    if words.next() != Some("ready") {
        return None;
    }
    let mut port = None;
    let mut issuer = None;
    for w in words {
        if let Some(v) = w.strip_prefix("port=") {
            port = v.parse().ok();
        } else if let Some(v) = w.strip_prefix("issuer=") {
            issuer = Some(v.to_owned());
        }
    }
    Some((port?, issuer?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_the_ready_line() {
        let line = "idp 2026-01-01T00:00:00.000Z ready issuer=http://127.0.0.1:4000/idp port=4000 clients=a,b";
        assert_eq!(
            parse_ready(line),
            Some((4000, "http://127.0.0.1:4000/idp".to_owned()))
        );
        assert_eq!(parse_ready("idp 2026 login user=alice"), None);
        assert_eq!(parse_ready("ready issuer=x port=1"), None);
    }

    #[test]
    fn config_json_carries_the_options() {
        let opts = IdpOptions::default()
            .client(
                Client::new("c", "s", "http://127.0.0.1:1/cb")
                    .auth_method(AuthMethod::ClientSecretPost)
                    .id_token_alg("EdDSA")
                    .backchannel_logout("http://127.0.0.1:2/bcl", true),
            )
            .access_token_ttl(5)
            .large_groups(3);
        let v: Value = serde_json::from_str(&opts.config_json().unwrap()).unwrap();
        assert_eq!(
            v["clients"][0]["token_endpoint_auth_method"],
            "client_secret_post"
        );
        assert_eq!(v["clients"][0]["id_token_signed_response_alg"], "EdDSA");
        assert_eq!(v["clients"][0]["backchannel_logout_session_required"], true);
        assert_eq!(v["ttl"]["AccessToken"], 5);
        assert_eq!(v["largeGroups"], 3);
        assert!(v.get("users").is_none());
    }
}
