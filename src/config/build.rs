//! From the flattened keys (+ environment, + files) to the typed [`Config`], with every
//! cross-key rule. Errors are collected, not returned early, so one run shows every problem.

use std::io;
use std::time::Duration;

use serde_json::Value;

use super::keys::{self, Def, Effect, EnvForm, KeySpec, Kind};
use super::raw::Raw;
use super::value::{self, HostPort, IpNet, PathOrUrl, Split};
use super::{
    BackchannelLogout, Bearer, Breaker, Browser, ClaimHeader, Client, Config, ConfigError,
    CookieSecure, Dpop, Fallback, Health, KeyError, L2Kind, LogLevel, Login, NamePrefix, Platform,
    Policy, Provider, Redis, RedisTls, Replay, SameSite, Secret, Session, SessionKeys,
    SessionStorage, Store, StoreMode, TokenEndpointAuth, Topology, Upstream,
};

/// Where a value came from: a key as spelled, or an environment variable.
struct Src {
    label: String,
    value: Value,
    inverted: bool,
}

struct Ctx<'a> {
    raw: Raw,
    env: &'a dyn Fn(&str) -> Option<String>,
    read_file: &'a dyn Fn(&str) -> io::Result<Vec<u8>>,
    errors: Vec<KeyError>,
    warnings: Vec<String>,
}

pub(super) fn parse(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&str) -> io::Result<Vec<u8>>,
    platform: Platform,
) -> Result<Config, ConfigError> {
    let mut errors = Vec::new();
    let root: Value = if json.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(json) {
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigError::new(vec![KeyError::new(
                    "(configuration)",
                    format!("the configuration is not valid JSON: {e}"),
                )]))
            }
        }
    };
    let raw = Raw::from_json(&root, &mut errors);
    let mut cx = Ctx {
        raw,
        env,
        read_file,
        errors,
        warnings: Vec::new(),
    };
    let mut config = cx.build(platform);
    dedup(&mut cx.errors);
    dedup(&mut config.warnings);
    if cx.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::new(cx.errors))
    }
}

impl Ctx<'_> {
    // ----- lookups ------------------------------------------------------------------------

    fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(KeyError::new(key, message));
    }

    fn spec(&mut self, path: &str) -> Option<&'static KeySpec> {
        let s = keys::spec(path);
        if s.is_none() {
            self.err(path, "internal error: key missing from the key table");
        }
        s
    }

    /// A non-empty environment variable.
    fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// The YAML value of `path`, else the first environment variable that fills it.
    /// Empty strings count as unset (traefikoidc treats `""` as "not configured").
    fn source(&mut self, path: &str) -> Option<Src> {
        let spec = self.spec(path)?;
        if let Some(g) = self.raw.map.get(path) {
            if matches!(&g.value, Value::String(s) if s.trim().is_empty())
                && !matches!(
                    spec.kind,
                    Kind::List | Kind::HostList | Kind::CidrList | Kind::SecretList
                )
            {
                return None;
            }
            return Some(Src {
                label: g.spelled.clone(),
                value: g.value.clone(),
                inverted: false,
            });
        }
        let mut chosen: Option<Src> = None;
        for generic in [false, true] {
            for ev in spec
                .env
                .iter()
                .filter(|e| (e.form == EnvForm::Generic) == generic)
            {
                let Some(v) = self.env_var(ev.name) else {
                    continue;
                };
                if let Some(c) = &chosen {
                    self.warnings
                        .push(format!("{} is ignored: {} is set", ev.name, c.label));
                    continue;
                }
                let (label, v) = match ev.form {
                    EnvForm::HostWithPort => {
                        let port = self.env_var("REDIS_PORT").unwrap_or_else(|| "6379".into());
                        let host = v.trim();
                        let host = if host.contains(':') && !host.starts_with('[') {
                            format!("[{host}]")
                        } else {
                            host.to_string()
                        };
                        (
                            format!("{} + REDIS_PORT", ev.name),
                            format!("{host}:{}", port.trim()),
                        )
                    }
                    _ => (ev.name.to_string(), v),
                };
                chosen = Some(Src {
                    label,
                    value: Value::String(v),
                    inverted: ev.form == EnvForm::Inverted,
                });
            }
            if chosen.is_some() {
                break;
            }
        }
        chosen
    }

    fn is_set(&mut self, path: &str) -> bool {
        self.source(path).is_some()
    }

    /// The explicit value of `path` parsed with `parse`; errors are recorded (→ `None`).
    fn explicit<T>(
        &mut self,
        path: &str,
        parse: impl Fn(&Value, &KeySpec) -> Result<T, String>,
    ) -> Option<T> {
        let spec = self.spec(path)?;
        let src = self.source(path)?;
        match parse(&src.value, spec) {
            Ok(v) => Some(v),
            Err(why) => {
                self.err(&src.label, why);
                None
            }
        }
    }

    /// The explicit value, else the table's default. An explicit value that does not parse is
    /// recorded as an error once, and the default is returned so building can go on.
    fn with_default<T>(
        &mut self,
        path: &str,
        parse: impl Fn(&Value, &KeySpec) -> Result<T, String>,
    ) -> Option<T> {
        let spec = self.spec(path)?;
        if let Some(src) = self.source(path) {
            match parse(&src.value, spec) {
                Ok(v) => return Some(v),
                Err(why) => self.err(&src.label, why),
            }
        }
        match spec.default {
            Def::Value(d) => match parse(&Value::String(d.to_string()), spec) {
                Ok(v) => Some(v),
                Err(why) => {
                    self.err(path, format!("internal error: bad default: {why}"));
                    None
                }
            },
            Def::None | Def::Derived(_) => None,
        }
    }

    fn opt_bool(&mut self, path: &str) -> Option<bool> {
        let src = self.source(path)?;
        match value::boolean(&src.value) {
            Ok(b) => Some(b != src.inverted),
            Err(why) => {
                self.err(&src.label, why);
                None
            }
        }
    }

    fn bool(&mut self, path: &str) -> bool {
        if self.is_set(path) {
            // Inverted environment variables are handled by opt_bool; a bad value falls back
            // to the default below (the error is already recorded).
            if let Some(b) = self.opt_bool(path) {
                return b;
            }
        }
        let default = self.spec(path).map(|s| s.default);
        match default {
            Some(Def::Value(d)) => value::boolean(&Value::String(d.into())).unwrap_or(false),
            _ => false,
        }
    }

    fn int(&mut self, path: &str) -> u64 {
        self.with_default(path, parse_int).unwrap_or(0)
    }

    fn opt_int(&mut self, path: &str) -> Option<u64> {
        self.explicit(path, parse_int)
    }

    fn duration(&mut self, path: &str) -> Duration {
        self.with_default(path, parse_duration).unwrap_or_default()
    }

    fn word(&mut self, path: &str) -> Option<&'static str> {
        self.with_default(path, parse_word)
    }

    fn opt_word(&mut self, path: &str) -> Option<&'static str> {
        self.explicit(path, parse_word)
    }

    fn string(&mut self, path: &str) -> Option<String> {
        self.with_default(path, |v, _| value::string(v))
    }

    fn opt_url(&mut self, path: &str) -> Option<String> {
        self.explicit(path, |v, _| value::url(v))
    }

    fn opt_path(&mut self, path: &str) -> Option<String> {
        self.explicit(path, |v, _| value::path(v))
    }

    fn path_or_url(&mut self, path: &str) -> Option<PathOrUrl> {
        self.with_default(path, |v, _| value::path_or_url(v))
    }

    /// A list; with `non_empty`, a list that is given but empty is an error (a restriction that
    /// parsed to nothing must never mean "no restriction").
    fn list(&mut self, path: &str, split: Split, non_empty: bool) -> Option<Vec<String>> {
        let src = self.source(path)?;
        match value::list(&src.value, split) {
            Ok(l) if l.is_empty() && non_empty => {
                self.err(
                    &src.label,
                    "is given but empty; an empty restriction would allow everyone — remove the key if that is what is meant",
                );
                None
            }
            Ok(l) => Some(l),
            Err(why) => {
                self.err(&src.label, why);
                None
            }
        }
    }

    /// A list of IPs/CIDRs; with `non_empty`, one given but empty is an error (see [`Ctx::list`]).
    fn cidrs(&mut self, path: &str, non_empty: bool) -> Vec<IpNet> {
        let label = self.source(path).map(|s| s.label).unwrap_or_default();
        let items = self
            .list(path, Split::CommaOrSpace, non_empty)
            .unwrap_or_default();
        let mut out = Vec::new();
        for item in items {
            match IpNet::parse(&item) {
                Ok(n) => out.push(n),
                Err(why) => self.err(&label, why),
            }
        }
        out
    }

    fn hosts(&mut self, path: &str, default_port: u16) -> Vec<HostPort> {
        let label = self.source(path).map(|s| s.label).unwrap_or_default();
        let items = self
            .list(path, Split::CommaOrSpace, false)
            .unwrap_or_default();
        let mut out = Vec::new();
        for item in items {
            match HostPort::parse(&item, default_port) {
                Ok(h) => out.push(h),
                Err(why) => self.err(&label, why),
            }
        }
        out
    }

    /// Reads a file named by key `path` (a `settings.mounts` path); returns its bytes.
    fn file(&mut self, path: &str) -> Option<(String, Vec<u8>)> {
        let src = self.source(path)?;
        let name = match value::string(&src.value) {
            Ok(n) => n,
            Err(why) => {
                self.err(&src.label, why);
                return None;
            }
        };
        match (self.read_file)(&name) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
                self.err(&src.label, format!("the file {name:?} is empty"));
                None
            }
            Ok(bytes) => Some((src.label, bytes)),
            Err(e) => {
                self.err(
                    &src.label,
                    format!("cannot read {name:?} ({e}); is its directory in the plugin's settings.mounts?"),
                );
                None
            }
        }
    }

    // ----- secrets ------------------------------------------------------------------------

    /// A secret from exactly one of `<path>`, `<path>File`, `<path>Env`, else from the key's
    /// environment variables (e.g. `REDIS_PASSWORD`). Returns the values (a list only for
    /// [`Kind::SecretList`]) and the label of the source.
    fn secret_values(&mut self, path: &str) -> Option<(String, Vec<String>)> {
        let spec = self.spec(path)?;
        let file_key = format!("{path}File");
        let env_key = format!("{path}Env");
        let inline = self
            .raw
            .map
            .get(path)
            .cloned()
            .filter(|g| !is_blank(&g.value));
        let file = self
            .raw
            .map
            .get(file_key.as_str())
            .cloned()
            .filter(|g| !is_blank(&g.value));
        let envn = self
            .raw
            .map
            .get(env_key.as_str())
            .cloned()
            .filter(|g| !is_blank(&g.value));
        let given: Vec<&super::raw::Given> =
            [&inline, &file, &envn].into_iter().flatten().collect();
        if given.len() > 1 {
            let names: Vec<&str> = given.iter().map(|g| g.spelled.as_str()).collect();
            self.err(
                names.first().copied().unwrap_or(path),
                format!(
                    "{} are all given; use exactly one source for {path}",
                    names.join(" and ")
                ),
            );
            return None;
        }
        if let Some(g) = inline {
            let list = spec.kind == Kind::SecretList;
            return match secret_inline(&g.value, list) {
                Ok(v) => Some((g.spelled, v)),
                Err(why) => {
                    self.err(&g.spelled, why);
                    None
                }
            };
        }
        if let Some(g) = file {
            let name = match value::string(&g.value) {
                Ok(n) => n,
                Err(why) => {
                    self.err(&g.spelled, why);
                    return None;
                }
            };
            let bytes = match (self.read_file)(&name) {
                Ok(b) => b,
                Err(e) => {
                    self.err(
                        &g.spelled,
                        format!("cannot read {name:?} ({e}); is its directory in the plugin's settings.mounts?"),
                    );
                    return None;
                }
            };
            let Ok(text) = String::from_utf8(bytes) else {
                self.err(&g.spelled, format!("the file {name:?} is not UTF-8 text"));
                return None;
            };
            let values: Vec<String> = if spec.kind == Kind::SecretList {
                text.lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            } else {
                let t = text.trim_end_matches(['\n', '\r']);
                if t.is_empty() {
                    vec![]
                } else {
                    vec![t.to_string()]
                }
            };
            if values.is_empty() {
                self.err(&g.spelled, format!("the file {name:?} is empty"));
                return None;
            }
            return Some((g.spelled, values));
        }
        if let Some(g) = envn {
            let name = match value::string(&g.value) {
                Ok(n) => n,
                Err(why) => {
                    self.err(&g.spelled, why);
                    return None;
                }
            };
            return match (self.env)(&name) {
                Some(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => Some((
                    g.spelled,
                    vec![v.trim_end_matches(['\n', '\r']).to_string()],
                )),
                _ => {
                    self.err(
                        &g.spelled,
                        format!("the environment variable {name} is not set or empty; list it in the plugin's settings.envs"),
                    );
                    None
                }
            };
        }
        // Environment variables of the seeds (REDIS_PASSWORD, REDIS_SENTINEL_PASSWORD).
        for ev in spec.env {
            if let Some(v) = self.env_var(ev.name) {
                return Some((ev.name.to_string(), vec![v]));
            }
        }
        None
    }

    fn secret(&mut self, path: &str) -> Option<Secret> {
        let (_, mut v) = self.secret_values(path)?;
        v.pop().map(Secret::new)
    }

    // ----- the whole configuration --------------------------------------------------------

    fn build(&mut self, platform: Platform) -> Config {
        self.check_given();

        let log_level = match self.word("logLevel") {
            Some("debug") => LogLevel::Debug,
            Some("warn") => LogLevel::Warn,
            Some("error") => LogLevel::Error,
            _ => LogLevel::Info,
        };
        let instance_name = self.string("instanceName").filter(|s| !s.is_empty());

        let provider = self.provider();
        let cookie_prefix = self.string("cookiePrefix").unwrap_or_default();
        if !cookie_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            let label = self.label("cookiePrefix");
            self.err(&label, "may contain only letters, digits, '-', '_' and '.'");
        }
        let cookie_name = format!("{cookie_prefix}session");

        let client_id = self.string("clientID").filter(|s| !s.is_empty());
        let bearer_enabled = self.bool("bearer.enabled");

        if client_id.is_none() && !bearer_enabled {
            let mut msg = String::from(
                "nothing to guard: set clientID (browser login, with providerURL and sessionEncryptionKey) \
                 or bearer.enabled (API tokens, with issuer and jwks/jwksFile or providerURL)",
            );
            if self.raw.map.is_empty() {
                msg.push_str("; the configuration is empty");
            }
            self.err("(configuration)", msg);
        }

        let (store, redis) = self.store(platform);
        let replay = self.replay();

        let browser = client_id.clone().and_then(|id| {
            self.browser(
                id,
                cookie_prefix.clone(),
                cookie_name.clone(),
                &provider,
                &store,
            )
        });
        let bearer = if bearer_enabled {
            self.bearer(client_id.as_deref(), &provider)
        } else {
            self.warn_if_set_without("bearer.", "bearer.enabled");
            None
        };
        let backchannel_logout = self.backchannel(client_id.is_some());

        // Single-use checks across the cluster need a shared L2 (DESIGN: "Replay").
        let mut single_use = Vec::new();
        if bearer.as_ref().is_some_and(|b| b.one_time_tokens) {
            single_use.push("bearer.oneTimeTokens");
        }
        if bearer.as_ref().is_some_and(|b| b.dpop.enabled) {
            single_use.push("bearer.dpop");
        }
        if backchannel_logout.is_some() {
            single_use.push("backchannelLogout");
        }
        if !single_use.is_empty() && !store.shared() {
            if replay.insecure_allow_per_instance {
                self.warnings.push(format!(
                    "{}: single-use checks are per instance (replay.insecureAllowPerInstance); a replay on another instance passes",
                    single_use.join(", ")
                ));
            } else {
                let why = match (store.l2, store.mode) {
                    (L2Kind::None, _) => "there is no shared L2 (no redis, no host bridge)",
                    _ => "store.mode is memory",
                };
                for k in &single_use {
                    self.err(
                        k,
                        format!("needs cluster-wide single-use detection but {why}; configure redis or set replay.insecureAllowPerInstance: true"),
                    );
                }
            }
        }
        if browser.is_some() && !store.shared() {
            // Not an error (one Traefik, cookie sessions, no Redis is a legitimate set-up), but
            // the operator must know what logout means there: every pooled guest instance has
            // its own memory.
            self.warnings.push(
                "browser sessions without a shared store (no redis or store.mode: memory): logout, the login state's single use and the refresh lock hold only in the guest instance that handled them; a session cookie copied before logout keeps working elsewhere until it expires. Configure redis for cluster-wide logout".to_string(),
            );
        }
        if !replay.enabled {
            for k in single_use.iter().filter(|k| **k != "backchannelLogout") {
                self.err(k, "needs replay detection, but replay.enabled is false (or disableReplayDetection is true)");
            }
        }

        let policy = self.policy();
        let upstream = self.upstream(&policy);
        let excluded_urls = self.excluded(browser.as_ref(), backchannel_logout.as_ref());
        let trusted_proxies = self.cidrs("trustedProxies", false);
        let force_https = self.bool("forceHTTPS");
        let skip_auth_preflight = self.bool("skipAuthPreflight");
        let health = self.health(
            browser.as_ref(),
            backchannel_logout.as_ref(),
            &excluded_urls,
        );

        if browser.is_none() && client_id.is_none() {
            self.warn_if_set_without_browser();
            // Bearer requests fill any other header with their token; `Authorization` they keep
            // as it came, so that name only ever serves sessions.
            if upstream
                .access_token_header
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case("authorization"))
            {
                if let Some(g) = self.raw.map.get("forwardAccessToken") {
                    self.warnings.push(format!(
                        "{}: Authorization has no effect without clientID (browser login is off): bearer requests keep the Authorization they came with",
                        g.spelled
                    ));
                }
            }
        }

        let identity = identity(
            &provider,
            client_id.as_deref(),
            bearer.as_ref(),
            &cookie_name,
            instance_name.as_deref(),
        );

        Config {
            provider,
            browser,
            bearer,
            policy,
            upstream,
            excluded_urls,
            trusted_proxies,
            force_https,
            skip_auth_preflight,
            replay,
            backchannel_logout,
            health,
            store,
            redis,
            instance_name,
            log_level,
            warnings: std::mem::take(&mut self.warnings),
            identity,
        }
    }

    /// The label of a key as the user gave it (or its canonical path).
    fn label(&mut self, path: &str) -> String {
        self.source(path)
            .map(|s| s.label)
            .unwrap_or_else(|| path.to_string())
    }

    /// A first pass over every given key: type-check values, warn about keys that do nothing,
    /// refuse traefikoidc features we do not have.
    fn check_given(&mut self) {
        let given: Vec<(&'static str, String, Value)> = self
            .raw
            .map
            .iter()
            .map(|(k, g)| (*k, g.spelled.clone(), g.value.clone()))
            .collect();
        for (path, spelled, v) in given {
            let Some(spec) = keys::spec(path) else {
                continue;
            };
            match spec.effect {
                Effect::Applies => {
                    // Check every given value's type up front, so a bad value is reported even
                    // when the key ends up unused (e.g. redis.db while Redis is off). The
                    // messages equal those of the later lookups, which the final dedup merges.
                    if matches!(&v, Value::String(s) if s.trim().is_empty()) {
                        continue;
                    }
                    let r = match spec.kind {
                        Kind::Bool => value::boolean(&v).map(|_| ()),
                        Kind::Int { .. } => parse_int(&v, spec).map(|_| ()),
                        Kind::Duration { .. } => parse_duration(&v, spec).map(|_| ()),
                        Kind::Enum(_) => parse_word(&v, spec).map(|_| ()),
                        Kind::Url => value::url(&v).map(|_| ()),
                        Kind::Path => value::path(&v).map(|_| ()),
                        Kind::PathOrUrl => value::path_or_url(&v).map(|_| ()),
                        _ => Ok(()),
                    };
                    if let Err(e) = r {
                        self.err(&spelled, e);
                    }
                }
                Effect::Ignored(why) => {
                    // Still check the value's type so a typo'd value is reported.
                    if let Err(e) = check_kind(&v, spec) {
                        self.err(&spelled, e);
                    } else {
                        self.warnings
                            .push(format!("{spelled} has no effect in oidc-guard: {why}"));
                    }
                }
                Effect::OnlyOff(why) => {
                    let on = if spec.kind == Kind::Compat {
                        compat_map_enabled(path, &v)
                    } else {
                        value::boolean(&v)
                    };
                    match on {
                        Ok(false) => {}
                        Ok(true) => self.err(&spelled, format!("is not supported: {why}")),
                        Err(e) => self.err(&spelled, e),
                    }
                }
            }
        }
    }

    fn warn_if_set_without(&mut self, prefix: &str, switch: &str) {
        let set: Vec<String> = self
            .raw
            .map
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && **k != switch)
            .map(|(_, g)| g.spelled.clone())
            .collect();
        for s in set {
            self.warnings
                .push(format!("{s} has no effect while {switch} is false"));
        }
    }

    fn warn_if_set_without_browser(&mut self) {
        for k in [
            "clientSecret",
            "clientSecretFile",
            "clientSecretEnv",
            "sessionEncryptionKey",
            "sessionEncryptionKeyFile",
            "sessionEncryptionKeyEnv",
            "callbackURL",
            "logoutURL",
            "postLogoutRedirectURI",
            "scopes",
            "enablePKCE",
            "cookieDomain",
            "sessionMaxAge",
            "sessionStorage",
        ] {
            if let Some(g) = self.raw.map.get(k) {
                self.warnings.push(format!(
                    "{} has no effect without clientID (browser login is off)",
                    g.spelled
                ));
            }
        }
    }

    fn provider(&mut self) -> Provider {
        let url = self
            .opt_url("providerURL")
            .map(|u| u.trim_end_matches('/').to_string());
        let issuer = self.opt_url("issuer");
        let inline = self.explicit("jwks", |v, _| value::jwks(v));
        let file = self.file("jwksFile").and_then(|(label, bytes)| {
            let parsed = serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| format!("the file is not JSON ({e})"))
                .and_then(|v| value::check_jwks(&v).map(|()| v))
                .and_then(|v| serde_json::to_string(&v).map_err(|e| e.to_string()));
            match parsed {
                Ok(s) => Some(s),
                Err(why) => {
                    self.err(&label, why);
                    None
                }
            }
        });
        if self.is_set("jwks") && self.is_set("jwksFile") {
            self.err("jwks", "jwks and jwksFile are both given; use one");
        }
        let jwks_uri = self.opt_url("jwksURI");
        if jwks_uri.is_some() && (self.is_set("jwks") || self.is_set("jwksFile")) {
            self.err(
                "jwksURI",
                "jwksURI and a static jwks/jwksFile are both given; use one",
            );
        }
        let authorization_endpoint = self.opt_url("authorizationEndpoint");
        let token_endpoint = self.opt_url("tokenEndpoint");
        let end_session_endpoint = self.opt_url("endSessionEndpoint");
        let revocation_endpoint = self.opt_url("revocationEndpoint");

        let mut ca_pem = Vec::new();
        if let Some((label, bytes)) = self.file("caFile") {
            if !looks_like_pem_cert(&bytes) {
                self.err(
                    &label,
                    "expected a PEM file with at least one CERTIFICATE block",
                );
            }
            ca_pem.extend_from_slice(&bytes);
            ca_pem.push(b'\n');
        }
        if let Some(pem) = self.explicit("caCertPEM", |v, _| value::string(v)) {
            if !looks_like_pem_cert(pem.as_bytes()) {
                let label = self.label("caCertPEM");
                self.err(
                    &label,
                    "expected PEM text with at least one CERTIFICATE block",
                );
            }
            ca_pem.extend_from_slice(pem.as_bytes());
            ca_pem.push(b'\n');
        }
        let insecure_skip_verify = self.bool("insecureSkipVerify");
        if insecure_skip_verify {
            let label = self.label("insecureSkipVerify");
            self.warnings.push(format!(
                "{label}: the provider's TLS certificate is not verified; anyone on the path can impersonate it (development only)"
            ));
        }

        let mut insecure_http = false;
        for (key, u) in [
            ("providerURL", &url),
            ("issuer", &issuer),
            ("jwksURI", &jwks_uri),
            ("authorizationEndpoint", &authorization_endpoint),
            ("tokenEndpoint", &token_endpoint),
            ("endSessionEndpoint", &end_session_endpoint),
            ("revocationEndpoint", &revocation_endpoint),
        ] {
            if u.as_deref().is_some_and(value::is_http) {
                insecure_http = true;
                // token and JWKS requests over plain http can be read and altered on the path;
                // accepted for loopback and development, as DESIGN says, but never silently.
                let label = self.label(key);
                self.warnings.push(format!(
                    "{label} uses plain http://; tokens and keys can be read or altered on the network (acceptable only on loopback or for development)"
                ));
            }
        }

        Provider {
            url,
            issuer,
            jwks: inline.or(file),
            jwks_uri,
            authorization_endpoint,
            token_endpoint,
            end_session_endpoint,
            revocation_endpoint,
            ca_pem,
            insecure_skip_verify,
            insecure_http,
        }
    }

    /// Whether tokens can be verified without discovery; records errors for what is missing.
    fn check_static_provider(&mut self, p: &Provider, for_what: &str) {
        if p.url.is_some() {
            return;
        }
        if p.issuer.is_none() {
            self.err(
                "issuer",
                format!(
                    "{for_what} needs providerURL (discovery) or issuer with jwks/jwksFile/jwksURI"
                ),
            );
        }
        if p.jwks.is_none()
            && p.jwks_uri.is_none()
            && !self.is_set("jwks")
            && !self.is_set("jwksFile")
        {
            self.err(
                "jwks",
                format!("{for_what} without providerURL needs the issuer's keys: jwks, jwksFile or jwksURI"),
            );
        }
    }

    fn browser(
        &mut self,
        id: String,
        cookie_prefix: String,
        cookie_name: String,
        provider: &Provider,
        store: &Store,
    ) -> Option<Browser> {
        let before = self.errors.len();
        self.check_static_provider(provider, "browser login (clientID)");
        if provider.url.is_none() {
            for (k, v) in [
                ("authorizationEndpoint", &provider.authorization_endpoint),
                ("tokenEndpoint", &provider.token_endpoint),
            ] {
                if v.is_none() {
                    self.err(k, "browser login without providerURL needs authorizationEndpoint and tokenEndpoint");
                }
            }
        }

        let auth_method = match self.word("tokenEndpointAuthMethod") {
            Some("client_secret_post") => TokenEndpointAuth::ClientSecretPost,
            Some("none") => TokenEndpointAuth::None,
            _ => TokenEndpointAuth::ClientSecretBasic,
        };
        let secret = self.secret("clientSecret");
        match (auth_method, &secret) {
            (TokenEndpointAuth::None, Some(_)) => self.warnings.push(
                "clientSecret is not sent: tokenEndpointAuthMethod is none (a public client)".into(),
            ),
            (TokenEndpointAuth::None, None) => {}
            (_, None) => self.err(
                "clientSecret",
                "is required for browser login (or clientSecretFile / clientSecretEnv); a public client sets tokenEndpointAuthMethod: none",
            ),
            _ => {}
        }

        let keys = self.session_keys();

        let callback = self
            .path_or_url("callbackURL")
            .unwrap_or(PathOrUrl::Path("/oauth2/callback".into()));
        let logout = self
            .explicit("logoutURL", |v, _| value::path_or_url(v))
            .unwrap_or_else(|| {
                // traefikoidc's rule: the logout path is the callback path + "/logout".
                match &callback {
                    PathOrUrl::Path(p) => {
                        PathOrUrl::Path(format!("{}/logout", p.trim_end_matches('/')))
                    }
                    PathOrUrl::Url(u) => {
                        PathOrUrl::Url(format!("{}/logout", u.trim_end_matches('/')))
                    }
                }
            });
        if callback.path() == logout.path() {
            let label = self.label("logoutURL");
            self.err(&label, "the logout path equals the callback path");
        }
        let post_logout_redirect_uri =
            self.explicit("postLogoutRedirectURI", |v, _| value::path_or_url(v));
        let scopes = self.scopes();
        let pkce = self.bool("enablePKCE");
        if auth_method == TokenEndpointAuth::None && !pkce {
            let label = self.label("enablePKCE");
            self.err(
                &label,
                "a public client (tokenEndpointAuthMethod: none) must use PKCE (RFC 9700 §2.1.1)",
            );
        }
        let cookie_domain = self.string("cookieDomain").filter(|s| !s.is_empty());
        if let Some(d) = &cookie_domain {
            if d.chars()
                .any(|c| c.is_whitespace() || c == ';' || c == ',' || c == '/')
            {
                let label = self.label("cookieDomain");
                self.err(
                    &label,
                    "expected a domain name such as example.com or .example.com",
                );
            }
        }
        let cookie_path = self
            .with_default("cookiePath", |v, _| value::path(v))
            .unwrap_or_else(|| "/".into());
        let cookie_secure = match self.word("cookieSecure") {
            Some("true") => CookieSecure::Always,
            Some("false") => CookieSecure::Never,
            _ => CookieSecure::Auto,
        };
        // RFC 6265bis §4.1.3: browsers drop a `__Secure-` cookie without `Secure`, and a
        // `__Host-` cookie with a `Domain`, a `Path` other than `/` or without `Secure`. A
        // configuration whose cookies browsers would drop is refused rather than left to loop
        // through the login forever.
        let name_prefix = NamePrefix::of(&cookie_prefix);
        if name_prefix != NamePrefix::None && cookie_secure == CookieSecure::Never {
            let label = self.label("cookieSecure");
            self.err(
                &label,
                format!(
                    "cookiePrefix {cookie_prefix:?} makes browsers require Secure cookies, but cookieSecure is false"
                ),
            );
        }
        if name_prefix == NamePrefix::Host {
            if cookie_domain.is_some() {
                let label = self.label("cookieDomain");
                self.err(
                    &label,
                    format!("cookiePrefix {cookie_prefix:?} makes browsers refuse cookies with a Domain; leave cookieDomain unset"),
                );
            }
            if cookie_path != "/" {
                let label = self.label("cookiePath");
                self.err(
                    &label,
                    format!("cookiePrefix {cookie_prefix:?} makes browsers refuse cookies with a Path other than /"),
                );
            }
        }
        let same_site = match self.word("cookieSameSite") {
            Some("strict") => SameSite::Strict,
            Some("none") => SameSite::None,
            _ => SameSite::Lax,
        };
        if same_site == SameSite::None && cookie_secure == CookieSecure::Never {
            let label = self.label("cookieSameSite");
            self.err(
                &label,
                "SameSite=None requires Secure, but cookieSecure is false",
            );
        }
        if cookie_secure == CookieSecure::Never {
            self.warnings
                .push("cookieSecure is false: session cookies are sent over plain http".into());
        }
        let max_age = self.duration("sessionMaxAge");
        let storage = match self.word("sessionStorage") {
            Some("server") => SessionStorage::Server,
            _ => SessionStorage::Cookie,
        };
        if storage == SessionStorage::Server && !store.shared() {
            let label = self.label("sessionStorage");
            self.err(
                &label,
                "server-side sessions need a shared store (redis or the host bridge, and store.mode redis or hybrid): each pooled instance has its own memory",
            );
        }
        let revocation_check_interval = self.duration("revocationCheckInterval");
        let refresh_grace_period = self.duration("refreshGracePeriod");
        let strip_auth_cookies = self.bool("stripAuthCookies");

        let keys = keys?;
        if self.errors.len() != before {
            return None;
        }
        Some(Browser {
            client: Client {
                id,
                secret,
                auth_method,
            },
            login: Login {
                callback,
                logout,
                post_logout_redirect_uri,
                scopes,
                pkce,
            },
            session: Session {
                keys,
                cookie_prefix,
                name_prefix,
                cookie_name,
                cookie_domain,
                cookie_path,
                cookie_secure,
                same_site,
                max_age,
                storage,
                revocation_check_interval,
                refresh_grace_period,
                strip_auth_cookies,
            },
        })
    }

    fn session_keys(&mut self) -> Option<SessionKeys> {
        let Some((label, values)) = self.secret_values("sessionEncryptionKey") else {
            self.err(
                "sessionEncryptionKey",
                "is required for browser login (≥ 32 bytes; or sessionEncryptionKeyFile / sessionEncryptionKeyEnv); there is no default key",
            );
            return None;
        };
        let mut ok = true;
        for (i, k) in values.iter().enumerate() {
            if k.len() < SessionKeys::MIN_LEN {
                let which = if values.len() > 1 {
                    format!("key {i} ")
                } else {
                    String::new()
                };
                self.err(
                    &label,
                    format!(
                        "{which}is too short: {} bytes, at least {} needed",
                        k.len(),
                        SessionKeys::MIN_LEN
                    ),
                );
                ok = false;
            }
        }
        for (i, k) in values.iter().enumerate() {
            if values.iter().take(i).any(|o| o == k) {
                self.err(&label, format!("key {i} repeats an earlier key"));
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let mut it = values.into_iter().map(Secret::new);
        let sealing = it.next()?;
        Some(SessionKeys {
            sealing,
            older: it.collect(),
        })
    }

    fn scopes(&mut self) -> Vec<String> {
        let given = self.list("scopes", Split::Comma, false);
        let replace = self.bool("overrideScopes");
        // Each element may itself hold several space-separated scopes (OAuth `scope` syntax).
        let given: Vec<String> = given
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect();
        let mut out = vec!["openid".to_string()];
        let base: Vec<String> = if replace {
            vec![]
        } else {
            vec!["profile".into(), "email".into()]
        };
        for s in base.into_iter().chain(given) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    fn bearer(&mut self, client_id: Option<&str>, provider: &Provider) -> Option<Bearer> {
        let before = self.errors.len();
        self.check_static_provider(provider, "bearer.enabled");
        let audiences = match self.list("bearer.audience", Split::Comma, true) {
            Some(a) => a,
            None if self.is_set("bearer.audience") => vec![],
            None => match client_id {
                Some(id) => vec![id.to_string()],
                None => {
                    self.err(
                        "bearer.audience",
                        "is required when there is no clientID: tokens for any audience must not be accepted",
                    );
                    vec![]
                }
            },
        };
        let one_time_tokens = self.bool("bearer.oneTimeTokens");
        let require_access_token_type = self.bool("bearer.requireAccessTokenType");
        let max_token_size = usize::try_from(self.int("bearer.maxTokenSize")).unwrap_or(16 * 1024);
        let required = self.bool("bearer.dpop.required");
        let enabled = self.bool("bearer.dpop.enabled") || required;
        let iat_window = self.duration("bearer.dpop.iatWindow");
        if !enabled && self.is_set("bearer.dpop.iatWindow") {
            self.warnings
                .push("bearer.dpop.iatWindow has no effect while bearer.dpop is off".into());
        }
        if self.errors.len() != before {
            return None;
        }
        Some(Bearer {
            audiences,
            one_time_tokens,
            require_access_token_type,
            max_token_size,
            dpop: Dpop {
                enabled,
                required,
                iat_window,
            },
        })
    }

    fn replay(&mut self) -> Replay {
        let enabled = match (
            self.opt_bool("replay.enabled"),
            self.opt_bool("disableReplayDetection"),
        ) {
            (Some(e), Some(d)) if e == d => {
                let label = self.label("disableReplayDetection");
                self.err(&label, "contradicts replay.enabled");
                e
            }
            (Some(e), _) => e,
            (None, Some(d)) => !d,
            (None, None) => self.bool("replay.enabled"),
        };
        if !enabled {
            self.warnings.push(
                "replay detection is off: state, ID token jti and logout tokens may be replayed"
                    .into(),
            );
        }
        Replay {
            enabled,
            ttl: self.duration("replay.ttl"),
            insecure_allow_per_instance: self.bool("replay.insecureAllowPerInstance"),
        }
    }

    fn backchannel(&mut self, have_browser: bool) -> Option<BackchannelLogout> {
        let path_given = self.is_set("backchannelLogout.path");
        let enabled = self
            .opt_bool("backchannelLogout.enabled")
            .unwrap_or(path_given);
        if !enabled {
            if path_given {
                let label = self.label("backchannelLogout.path");
                self.warnings.push(format!(
                    "{label} has no effect while backchannelLogout.enabled is false"
                ));
            }
            return None;
        }
        let path = self
            .with_default("backchannelLogout.path", |v, _| value::path(v))
            .unwrap_or_else(|| "/oauth2/backchannel-logout".into());
        if !have_browser {
            let label = self.label("backchannelLogout.enabled");
            let label = if self.is_set("backchannelLogout.enabled") {
                label
            } else {
                self.label("backchannelLogout.path")
            };
            self.err(
                &label,
                "back-channel logout ends browser sessions; it needs clientID (browser login)",
            );
        }
        Some(BackchannelLogout { path })
    }

    fn policy(&mut self) -> Policy {
        let allowed_users = self
            .list("allowedUsers", Split::Comma, true)
            .unwrap_or_default();
        let mut allowed_user_domains = Vec::new();
        for d in self
            .list("allowedUserDomains", Split::Comma, true)
            .unwrap_or_default()
        {
            let d = d.trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || d.contains('@') || d.chars().any(char::is_whitespace) {
                let label = self.label("allowedUserDomains");
                self.err(
                    &label,
                    format!("expected a domain such as example.com, found {d:?}"),
                );
            } else {
                allowed_user_domains.push(d);
            }
        }
        let allowed_roles_and_groups = self
            .list("allowedRolesAndGroups", Split::Comma, true)
            .unwrap_or_default();
        let user_claim = self.claim_name("userIdentifierClaim");
        let role_claim = self.claim_name("roleClaimName");
        let group_claim = self.claim_name("groupClaimName");
        if !self.is_set("userIdentifierClaim") && allowed_users.iter().any(|u| u.contains('@')) {
            self.warnings.push(
                "allowedUsers lists e-mail addresses but userIdentifierClaim is `sub` (traefikoidc's default was `email`): set userIdentifierClaim: email, or nobody on the list will match".into(),
            );
        }
        Policy {
            allowed_users,
            allowed_user_domains,
            allowed_roles_and_groups,
            user_claim,
            role_claim,
            group_claim,
        }
    }

    fn claim_name(&mut self, path: &str) -> String {
        let v = self.string(path).unwrap_or_default();
        if v.is_empty() || v.chars().any(|c| c.is_control()) {
            let label = self.label(path);
            self.err(&label, "expected a claim name");
        }
        v
    }

    fn upstream(&mut self, policy: &Policy) -> Upstream {
        let user_header = "X-Forwarded-User".to_string();
        let mut claim_headers: Vec<ClaimHeader> = Vec::new();
        let mut access_token_header: Option<(String, String)> = None;
        let mut add = |cx: &mut Self, label: &str, header: String, claim: String| {
            if !upstream_header_ok(cx, label, &header, false) {
                return;
            }
            if claim.is_empty() || claim.chars().any(|c| c.is_control()) {
                cx.err(label, format!("{header}: expected a claim name"));
                return;
            }
            if claim_headers
                .iter()
                .any(|h| h.header.eq_ignore_ascii_case(&header))
            {
                cx.err(label, format!("header {header} is configured twice"));
                return;
            }
            // Go's canonical spelling, so the host's `http.Header` takes it as it is.
            claim_headers.push(ClaimHeader {
                header: crate::http::canonical_owned(&header),
                claim,
            });
        };
        if let Some(src) = self.source("claimHeaders") {
            match value::string_map(&src.value) {
                Ok(pairs) => {
                    for (h, c) in pairs {
                        add(self, &src.label, h, c);
                    }
                }
                Err(why) => self.err(&src.label, why),
            }
        }
        let mut set_access = |cx: &mut Self, label: &str, header: String| {
            if !upstream_header_ok(cx, label, &header, true) {
                return;
            }
            match &access_token_header {
                Some((h, l)) if !h.eq_ignore_ascii_case(&header) => cx.err(
                    label,
                    format!("the access token goes to one header, and {l} already names {h}"),
                ),
                _ => {
                    access_token_header =
                        Some((crate::http::canonical_owned(&header), label.to_string()))
                }
            }
        };
        if let Some(src) = self.source("headers") {
            match traefikoidc_headers(&src.value) {
                Ok(entries) => {
                    for e in entries {
                        match e {
                            HeaderEntry::Claim(h, c) => add(self, &src.label, h, c),
                            HeaderEntry::AccessToken(h) => set_access(self, &src.label, h),
                        }
                    }
                }
                Err(why) => self.err(&src.label, why),
            }
        }
        if let Some(h) = self.string("forwardAccessToken").filter(|s| !s.is_empty()) {
            let label = self.label("forwardAccessToken");
            set_access(self, &label, h.trim().to_string());
        }
        if let Some((h, label)) = &access_token_header {
            if claim_headers
                .iter()
                .any(|c| c.header.eq_ignore_ascii_case(h))
            {
                self.err(label, format!("{h} already carries a claim"));
            }
        }
        let access_token_header = access_token_header.map(|(h, _)| h);
        let _ = policy;
        Upstream {
            user_header,
            claim_headers,
            access_token_header,
        }
    }

    fn excluded(
        &mut self,
        browser: Option<&Browser>,
        bc: Option<&BackchannelLogout>,
    ) -> Vec<String> {
        let label = self.label("excludedURLs");
        let items = self
            .list("excludedURLs", Split::Comma, false)
            .unwrap_or_default();
        let mut out = Vec::new();
        for item in items {
            match value::path(&Value::String(item.clone())) {
                Err(why) => self.err(&label, why),
                Ok(p) if p == "/" => self.err(
                    &label,
                    "\"/\" would exclude every path; remove the middleware from the route instead",
                ),
                Ok(p) => out.push(p),
            }
        }
        let mut own: Vec<(&str, String)> = Vec::new();
        if let Some(b) = browser {
            own.push(("callbackURL", b.login.callback.path().to_string()));
            own.push(("logoutURL", b.login.logout.path().to_string()));
        }
        if let Some(bc) = bc {
            own.push(("backchannelLogout.path", bc.path.clone()));
        }
        for (key, p) in own {
            // Matched as requests are: at segment boundaries (`/oauth` does not cover `/oauth2`).
            if let Some(e) = out.iter().find(|e| crate::http::path::under_prefix(&p, e)) {
                self.err(
                    &label,
                    format!("{e:?} covers {key} ({p}), which oidc-guard must handle itself"),
                );
            }
        }
        out
    }

    /// Health and metrics, and the check that no two of the plugin's own endpoints share a path:
    /// requests are matched metrics, health, back-channel logout, callback, logout in that order,
    /// so a shared path would silently hide the later endpoint (a provider's logout token
    /// answered 200 by the health page, its sessions never ended).
    fn health(
        &mut self,
        browser: Option<&Browser>,
        bc: Option<&BackchannelLogout>,
        excluded: &[String],
    ) -> Health {
        let path = self.opt_path("health.path");
        let metrics_path = self.opt_path("health.metricsPath");
        let allowed_sources = self.cidrs("health.allowedSources", true);
        let mut taken: Vec<(String, String)> = Vec::new();
        if let Some(b) = browser {
            taken.push((self.label("callbackURL"), b.login.callback.path().into()));
            taken.push((self.label("logoutURL"), b.login.logout.path().into()));
        }
        if let Some(bc) = bc {
            taken.push((self.label("backchannelLogout.path"), bc.path.clone()));
        }
        for key in ["health.path", "health.metricsPath"] {
            let p = if key == "health.path" {
                &path
            } else {
                &metrics_path
            };
            if let Some(p) = p {
                taken.push((self.label(key), p.clone()));
            }
        }
        // The callback and logout paths (the first two with a browser) are compared where they
        // are built.
        let first = if browser.is_some() { 2 } else { 0 };
        for i in first..taken.len() {
            let (key, p) = &taken[i];
            if let Some((other, _)) = taken[..i].iter().find(|(_, q)| q == p) {
                self.err(key, format!("{p} is already the path of {other}"));
            }
        }
        for (key, p) in [
            ("health.path", &path),
            ("health.metricsPath", &metrics_path),
        ] {
            if let Some(p) = p {
                if excluded.iter().any(|t| t == p) {
                    self.err(key, format!("{p} is already listed in excludedURLs"));
                }
            }
        }
        if allowed_sources.is_empty() && (path.is_some() || metrics_path.is_some()) {
            self.warnings.push("health/metrics paths answer every client; restrict them with health.allowedSources".into());
        }
        Health {
            path,
            metrics_path,
            allowed_sources,
        }
    }

    fn store(&mut self, platform: Platform) -> (Store, Option<Redis>) {
        let redis_given = self.is_set("redis.address") || self.is_set("redis.sentinel.hosts");
        let redis_enabled = self.opt_bool("redis.enabled").unwrap_or(redis_given);
        let mut redis = None;
        if redis_enabled {
            if !redis_given {
                let label = self.label("redis.enabled");
                self.err(&label, "Redis is enabled but neither redis.address (REDIS_ADDRESS or REDIS_HOST) nor redis.sentinel.hosts is set");
            } else if platform.bridge_present {
                self.warnings.push(
                    "redis.* is ignored in the bridge artifact: the host's key/value bridge is the L2".into(),
                );
            } else {
                redis = self.redis();
            }
        } else if redis_given {
            let label = self.label("redis.enabled");
            self.warnings
                .push(format!("{label} is false: the Redis address is not used"));
        }

        let l2 = if platform.bridge_present {
            L2Kind::Bridge
        } else if redis_enabled && redis_given {
            L2Kind::Redis
        } else {
            L2Kind::None
        };
        let mode = match self.opt_word("store.mode") {
            Some("memory") => StoreMode::Memory,
            Some("redis") => StoreMode::Redis,
            Some("hybrid") => StoreMode::Hybrid,
            _ if l2 != L2Kind::None => StoreMode::Hybrid,
            _ => StoreMode::Memory,
        };
        if mode != StoreMode::Memory && l2 == L2Kind::None {
            let label = self.label("store.mode");
            self.err(
                &label,
                "needs an L2: enable redis (redis.address) or run the bridge artifact",
            );
        }
        if mode == StoreMode::Memory && l2 == L2Kind::Redis {
            let label = self.label("store.mode");
            self.warnings.push(format!(
                "{label} is memory: the configured Redis is not used"
            ));
        }

        let l1_max_entries = usize::try_from(self.int("store.l1.maxEntries")).unwrap_or(4096);
        let l1_max_bytes =
            if self.is_set("store.l1.maxBytes") || !self.is_set("redis.hybridL1MemoryMB") {
                self.int("store.l1.maxBytes")
            } else {
                self.opt_int("redis.hybridL1MemoryMB").unwrap_or(2) * 1024 * 1024
            };
        if l1_max_bytes > 4 * 1024 * 1024 {
            self.warnings.push(format!(
                "the L1 may hold {} MiB in every pooled instance (budget: 8 MiB of linear memory per instance)",
                l1_max_bytes / (1024 * 1024)
            ));
        }
        let l1_max_bytes = usize::try_from(l1_max_bytes).unwrap_or(2 * 1024 * 1024);
        let fallback = match self.word("store.fallback") {
            Some("deny") => Fallback::Deny,
            _ => Fallback::L1,
        };
        let breaker = if self.bool("redis.enableCircuitBreaker") {
            Some(Breaker {
                threshold: u32::try_from(self.int("redis.circuitBreakerThreshold")).unwrap_or(5),
                timeout: self.duration("redis.circuitBreakerTimeout"),
            })
        } else {
            None
        };
        let key_prefix = self.string("redis.keyPrefix").unwrap_or_default();
        if key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            let label = self.label("redis.keyPrefix");
            self.err(&label, "cannot contain whitespace");
        }
        (
            Store {
                mode,
                l2,
                l1_max_entries,
                l1_max_bytes,
                fallback,
                breaker,
                key_prefix,
            },
            redis,
        )
    }

    fn redis(&mut self) -> Option<Redis> {
        let before = self.errors.len();
        let addresses = self.hosts("redis.address", 6379);
        let sentinels = self.hosts("redis.sentinel.hosts", 26379);
        let cluster = self.bool("redis.clusterMode");
        let db = u32::try_from(self.int("redis.db")).unwrap_or(0);

        let topology = if !sentinels.is_empty() {
            if cluster {
                let label = self.label("redis.clusterMode");
                self.err(
                    &label,
                    "Sentinel (redis.sentinel.hosts) and clusterMode cannot be combined",
                );
            }
            if !addresses.is_empty() {
                self.warnings.push(
                    "redis.address is ignored: redis.sentinel.hosts is set, so the sentinels name the master".into(),
                );
            }
            Topology::Sentinel {
                hosts: sentinels,
                master: self
                    .string("redis.sentinel.master")
                    .unwrap_or_else(|| "mymaster".into()),
                username: self
                    .string("redis.sentinel.username")
                    .filter(|s| !s.is_empty()),
                password: self.secret("redis.sentinel.password"),
            }
        } else if cluster {
            if db != 0 {
                let label = self.label("redis.db");
                self.err(&label, "Redis Cluster has only database 0");
            }
            Topology::Cluster {
                seeds: addresses,
                max_redirects: u32::try_from(self.int("redis.maxRedirects")).unwrap_or(3),
            }
        } else {
            let mut it = addresses.into_iter();
            let first = it.next();
            if it.next().is_some() {
                let label = self.label("redis.address");
                self.err(
                    &label,
                    "several addresses are given but redis.clusterMode is false",
                );
            }
            match first {
                Some(a) => Topology::Standalone(a),
                None => return None,
            }
        };

        let tls_files_set = [
            "redis.tls.caFile",
            "redis.tls.certFile",
            "redis.tls.keyFile",
            "redis.tls.serverName",
        ]
        .iter()
        .any(|k| self.is_set(k));
        let tls_enabled = self.opt_bool("redis.tls.enabled");
        if tls_enabled == Some(false) && tls_files_set {
            let label = self.label("redis.tls.enabled");
            self.err(&label, "is false but TLS files or serverName are set under redis.tls; remove them or enable TLS");
        }
        let tls = if tls_enabled.unwrap_or(tls_files_set) {
            let ca_pem = self.file("redis.tls.caFile").map(|(_, b)| b);
            let client_cert_pem = self.file("redis.tls.certFile").map(|(_, b)| b);
            let client_key_pem =
                self.file("redis.tls.keyFile")
                    .and_then(|(label, b)| match String::from_utf8(b) {
                        Ok(s) => Some(Secret::new(s)),
                        Err(_) => {
                            self.err(&label, "expected a PEM private key (text)");
                            None
                        }
                    });
            if self.is_set("redis.tls.certFile") != self.is_set("redis.tls.keyFile") {
                self.err(
                    "redis.tls.certFile",
                    "a client certificate needs both redis.tls.certFile and redis.tls.keyFile",
                );
            }
            let insecure_skip_verify = self.bool("redis.tls.insecureSkipVerify");
            if insecure_skip_verify {
                let label = self.label("redis.tls.insecureSkipVerify");
                self.warnings.push(format!(
                    "{label}: the Redis server's certificate is not verified"
                ));
            }
            Some(RedisTls {
                ca_pem,
                client_cert_pem,
                client_key_pem,
                insecure_skip_verify,
                server_name: self
                    .string("redis.tls.serverName")
                    .filter(|s| !s.is_empty()),
            })
        } else {
            if self.opt_bool("redis.tls.insecureSkipVerify") == Some(true) {
                let label = self.label("redis.tls.insecureSkipVerify");
                self.warnings
                    .push(format!("{label} has no effect: TLS to Redis is off"));
            }
            None
        };

        let r = Redis {
            topology,
            username: self.string("redis.username").filter(|s| !s.is_empty()),
            password: self.secret("redis.password"),
            db,
            max_retries: u32::try_from(self.int("redis.maxRetries")).unwrap_or(1),
            dial_timeout: self.duration("redis.dialTimeout"),
            read_timeout: self.duration("redis.readTimeout"),
            write_timeout: self.duration("redis.writeTimeout"),
            tls,
        };
        // Values of keys that have no effect are still parsed so a typo'd value is reported.
        for k in ["redis.poolSize", "redis.minIdleConns"] {
            let _ = self.opt_int(k);
        }
        for k in ["redis.maxConnAge", "redis.poolTimeout", "redis.idleTimeout"] {
            let _ = self.explicit(k, parse_duration);
        }
        (self.errors.len() == before).then_some(r)
    }
}

/// Removes repeated entries, keeping the first of each (lookups may meet a problem twice).
fn dedup<T: PartialEq + Clone>(v: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::with_capacity(v.len());
    v.retain(|x| {
        if seen.contains(x) {
            false
        } else {
            seen.push(x.clone());
            true
        }
    });
}

fn is_blank(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.is_empty())
}

fn parse_int(v: &Value, spec: &KeySpec) -> Result<u64, String> {
    match spec.kind {
        Kind::Int { min, max } => value::integer(v, min, max),
        _ => value::integer(v, 0, u64::MAX),
    }
}

fn parse_duration(v: &Value, spec: &KeySpec) -> Result<Duration, String> {
    match spec.kind {
        Kind::Duration { min_ms, max_ms } => value::duration(v, min_ms, max_ms),
        _ => value::duration(v, 0, 400 * 86_400_000),
    }
}

fn parse_word(v: &Value, spec: &KeySpec) -> Result<&'static str, String> {
    match spec.kind {
        Kind::Enum(words) => {
            // logLevel: traefikoidc and Go loggers say "warning".
            if spec.path == "logLevel" {
                if let Some(s) = v.as_str() {
                    if s.trim().eq_ignore_ascii_case("warning") {
                        return Ok("warn");
                    }
                }
            }
            // cookieSecure takes booleans too.
            if let Value::Bool(b) = v {
                return value::one_of(&Value::String(b.to_string()), words);
            }
            value::one_of(v, words)
        }
        _ => value::string(v).map(|_| ""),
    }
}

/// Checks a value against its kind without using it (keys that have no effect).
fn check_kind(v: &Value, spec: &KeySpec) -> Result<(), String> {
    match spec.kind {
        Kind::Bool => value::boolean(v).map(|_| ()),
        Kind::Int { .. } => parse_int(v, spec).map(|_| ()),
        Kind::Duration { .. } => parse_duration(v, spec).map(|_| ()),
        _ => value::string(v).map(|_| ()),
    }
}

/// Whether a traefikoidc feature map turns the feature on. `securityHeaders` is on unless
/// `enabled: false` (traefikoidc's default); `dynamicClientRegistration` is off unless enabled.
fn compat_map_enabled(path: &str, v: &Value) -> Result<bool, String> {
    let default_on = path == "securityHeaders";
    match v {
        Value::Null => Ok(false),
        Value::Object(m) => match m.get("enabled") {
            Some(e) => value::boolean(e),
            None => Ok(default_on),
        },
        other => Err(format!("expected a map, found {}", value::describe(other))),
    }
}

fn secret_inline(v: &Value, list: bool) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Number(_) | Value::Bool(_) => Ok(value::scalar_text(v).into_iter().collect()),
        Value::Array(items) if list => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    other => {
                        return Err(format!(
                            "element {i}: expected a non-empty string, found {}",
                            value::describe_secret(other)
                        ))
                    }
                }
            }
            if out.is_empty() {
                return Err("is an empty list; give at least one key".into());
            }
            Ok(out)
        }
        other => Err(format!(
            "expected {}, found {}",
            if list {
                "a string or a list of strings"
            } else {
                "a string"
            },
            value::describe_secret(other)
        )),
    }
}

/// Whether `header` may carry a claim (or, with `access_token`, the access token, which may go
/// in `Authorization`); errors go to `label`.
fn upstream_header_ok(cx: &mut Ctx<'_>, label: &str, header: &str, access_token: bool) -> bool {
    if !value::is_header_name(header) {
        cx.err(label, format!("{header:?} is not a valid header name"));
        return false;
    }
    const RESERVED: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "cookie",
        "authorization",
        "dpop",
        "x-forwarded-user",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    ];
    let reserved = RESERVED.iter().any(|r| r.eq_ignore_ascii_case(header))
        && !(access_token && header.eq_ignore_ascii_case("authorization"));
    if reserved {
        let what = if access_token {
            "the access token"
        } else {
            "a claim"
        };
        cx.err(
            label,
            format!("{header} cannot carry {what} (it is reserved)"),
        );
        return false;
    }
    true
}

/// One entry of traefikoidc's `headers`.
enum HeaderEntry {
    /// `{{.Claims.name}}`: header, claim.
    Claim(String, String),
    /// `{{.AccessToken}}` (or `Bearer {{.AccessToken}}` in `Authorization`): the header.
    AccessToken(String),
}

/// traefikoidc's `headers: [{name, value}]`, each value exactly `{{.Claims.x}}`,
/// `{{.AccessToken}}`, or `Bearer {{.AccessToken}}` in `Authorization`.
fn traefikoidc_headers(v: &Value) -> Result<Vec<HeaderEntry>, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "expected a list of {{name, value}}, found {}",
            value::describe(v)
        ));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(format!(
                "element {i}: expected {{name, value}}, found {}",
                value::describe(item)
            ));
        };
        if let Some(extra) = m
            .keys()
            .find(|k| !k.eq_ignore_ascii_case("name") && !k.eq_ignore_ascii_case("value"))
        {
            return Err(format!(
                "element {i}: unknown field {extra:?} (expected name and value)"
            ));
        }
        let field = |f: &str| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(f))
                .map(|(_, v)| v)
        };
        let name = field("name")
            .and_then(value::scalar_text)
            .map(|s| s.trim().to_string());
        let val = field("value").and_then(value::scalar_text);
        let (Some(name), Some(val)) = (name, val) else {
            return Err(format!("element {i}: needs both name and value"));
        };
        let template = val.trim();
        let authorization = name.eq_ignore_ascii_case("authorization");
        if (template == "{{.AccessToken}}" && !authorization)
            || (template == "Bearer {{.AccessToken}}" && authorization)
        {
            out.push(HeaderEntry::AccessToken(name));
            continue;
        }
        let Some(claim) = value::claims_template(&val) else {
            return Err(format!(
                "element {i} ({name}): only the exact forms {{{{.Claims.name}}}}, {{{{.AccessToken}}}} and (in Authorization) Bearer {{{{.AccessToken}}}} are supported (oidc-guard does not run Go templates), found {}",
                value::describe(&Value::String(val.clone()))
            ));
        };
        out.push(HeaderEntry::Claim(name, claim.to_string()));
    }
    Ok(out)
}

fn looks_like_pem_cert(bytes: &[u8]) -> bool {
    bytes
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
}

/// The identity hash (see [`Config::identity`]).
fn identity(
    provider: &Provider,
    client_id: Option<&str>,
    bearer: Option<&Bearer>,
    cookie_name: &str,
    instance_name: Option<&str>,
) -> String {
    let issuer = provider
        .issuer
        .as_deref()
        .or(provider.url.as_deref())
        .unwrap_or_default()
        .trim_end_matches('/');
    let audience = match (client_id, bearer) {
        (Some(id), _) => id.to_string(),
        (None, Some(b)) => b.audiences.join(","),
        (None, None) => String::new(),
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // Length-prefixed fields, so ("ab","c") and ("a","bc") differ.
    for part in [
        "oidc-guard identity v1",
        issuer,
        audience.as_str(),
        cookie_name,
        instance_name.unwrap_or_default(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let digest = ctx.finish();
    digest
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
