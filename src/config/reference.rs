//! The configuration reference (`docs/config-reference.md`), generated from the key table so
//! it cannot drift. A test fails when the committed file differs; regenerate it with
//! `UPDATE_CONFIG_REFERENCE=1 cargo test -p oidc-guard config_reference`.

use std::fmt::Write as _;

use super::keys::{self, Def, Effect, EnvForm, KeySpec, KEYS, SECTIONS};

const PREAMBLE: &str = r#"# oidc-guard configuration reference

<!-- Generated from src/config/keys.rs; do not edit by hand.
     Regenerate: UPDATE_CONFIG_REFERENCE=1 cargo test -p oidc-guard config_reference -->

The middleware's options, as written under `plugin.<name>:` in Traefik's dynamic configuration
(file provider, labels, or the Kubernetes `Middleware` CRD). Nested keys are written here with dots:
`redis.tls.caFile` is `redis: {tls: {caFile: ...}}`.

## How values are read

- **Typed or stringified.** Traefik's file provider turns scalars into strings (`3` → `"3"`,
  `true` → `"true"`, `1.5` → `"1.500000"`), labels give strings everywhere, the CRD keeps JSON
  types. Every number, boolean and duration is accepted in both forms.
- **Booleans:** `true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off` (any case; BunkerWeb's
  variables say `yes`/`no`).
- **Durations:** a bare number is seconds (`ttl: 900`, `"1.500000"` = 1.5 s); or a string with units
  `ms`, `s`, `m`, `h`, `d` (also `ns`, `us`), combined Go-style: `"500ms"`, `"2s"`, `"5m"`, `"1m30s"`.
- **Lists:** a YAML/JSON list, or one comma-separated string (labels). Host lists
  (`redis.address`, `redis.sentinel.hosts`, CIDR lists) may also be space-separated.
- **Empty strings** count as unset (as in traefikoidc). A restriction list (`allowedUsers`,
  `allowedUserDomains`, `allowedRolesAndGroups`, `bearer.audience`) that is given but empty is an
  error — it never means "allow everyone". `null` is an error for every key.
- **Key names** are matched exactly, then ignoring ASCII case. An unknown key is an error that names
  it and the closest known key (`allowedUser` → "did you mean allowedUsers?"). A key given twice
  (e.g. under its name and an alias) is an error.
- **Errors** name the key (or environment variable), what was expected and what was found; secret
  values are never echoed. Every problem is reported at once, and a refused configuration never
  lets traffic through.
- **Warnings** (plain `http://` provider, `insecure*` switches, keys that have no effect) are logged
  through Traefik's logger at start-up.

## Precedence and secrets

- **YAML wins over the environment.** An environment variable only fills a key the YAML leaves unset,
  and only variables listed in the plugin's `settings.envs` reach the guest. When several variables
  fill the same key, the first listed below wins (the others are logged as ignored); `REDIS_TIMEOUT`
  applies only to timeouts no specific variable sets.
- **Secrets** (`clientSecret`, `sessionEncryptionKey`, `redis.password`,
  `redis.sentinel.password`) can come from exactly one of: the key itself, `<key>File` (a path
  inside a directory listed in `settings.mounts`; the trailing newline is trimmed) or `<key>Env` (the
  name of a variable listed in `settings.envs`). Two sources for one secret is an error. With the
  Kubernetes CRD, `urn:k8s:secret:<name>:<key>` values are resolved by Traefik.
- **`sessionEncryptionKey`** is a string or a list (newest first: the first seals, all open; in a
  file, one key per line). Each key is at least 32 bytes of UTF-8. It is required for browser login
  and there is no default or fallback key, ever.
- **What is configured decides what runs:** `clientID` turns on browser login (then `providerURL` —
  or `issuer` + `authorizationEndpoint` + `tokenEndpoint` + keys — and `sessionEncryptionKey` are
  required, and `clientSecret` unless `tokenEndpointAuthMethod: none`); `bearer.enabled` turns on
  API tokens, which need no client or session key (`issuer` + `jwks`/`jwksFile`/`jwksURI`, or
  `providerURL`). With neither, the configuration is refused.
- **Single-use checks across replicas** (`bearer.oneTimeTokens`, `bearer.dpop`, back-channel logout)
  need a shared L2 (Redis, or the host bridge) and are refused without one unless
  `replay.insecureAllowPerInstance: true`.
- **Redirects stay on the site.** After login the user returns to the URL first asked for, on the
  same origin only (never an open redirect); a path-form `callbackURL`/`logoutURL` takes scheme and
  host from the request, where `X-Forwarded-Proto`/`X-Forwarded-Host` count only from
  `trustedProxies`, and `forceHTTPS` forces `https`.
- **Identity.** Store keys and the session binding use a hash of the issuer (or `providerURL`), the
  client ID (or bearer audiences), the session cookie name and `instanceName`: replicas with the
  same configuration agree, and a rolling deploy keeps its sessions.
"#;

/// The whole reference as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(PREAMBLE);
    for (i, (title, _)) in SECTIONS.iter().enumerate() {
        let members: Vec<&KeySpec> = KEYS
            .iter()
            .filter(|s| keys::section_of(s.path) == Some(i))
            .collect();
        if members.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "\n## {title}\n\n| Key | Type | Default | Also accepted as | Environment | Description |\n|---|---|---|---|---|---|\n"
        );
        for s in members {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                s.path,
                cell(&s.kind.type_name()),
                cell(&default_text(s)),
                cell(
                    &s.aliases
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                cell(&env_text(s)),
                cell(&describe(s)),
            );
        }
    }

    out.push_str("\n## traefikoidc and BunkerWeb names\n\n");
    out.push_str(
        "Spellings accepted so a configuration can move over by changing the plugin name:\n\n",
    );
    out.push_str("| Name | Means |\n|---|---|\n");
    let mut aliases: Vec<(&str, String)> = Vec::new();
    for s in KEYS {
        for a in s.aliases {
            aliases.push((a, format!("`{}`", s.path)));
        }
    }
    aliases.push(("disableReplayDetection", "`replay.enabled` inverted".into()));
    aliases.push((
        "redis.hybridL1MemoryMB",
        "`store.l1.maxBytes` in MiB".into(),
    ));
    aliases.push(("headers (`{{.Claims.x}}` only)", "`claimHeaders`".into()));
    aliases.sort();
    for (a, m) in aliases {
        let name = if a.contains('`') {
            a.to_string()
        } else {
            format!("`{a}`")
        };
        let _ = writeln!(out, "| {} | {} |", cell(&name), cell(&m));
    }

    out.push_str("\n## Environment variables\n\n");
    out.push_str(
        "Read only when the YAML leaves the key unset, and only if listed in the plugin's `settings.envs`.\n\n",
    );
    out.push_str("| Variable | Key | Note |\n|---|---|---|\n");
    for s in KEYS {
        for e in s.env {
            let note = match e.form {
                EnvForm::Direct => "",
                EnvForm::Inverted => {
                    "inverted: `REDIS_SSL_VERIFY=no` means `insecureSkipVerify: true`"
                }
                EnvForm::Generic => "only when no specific variable sets this timeout",
                EnvForm::HostWithPort => {
                    "combined with `REDIS_PORT` (default 6379) into `host:port`"
                }
            };
            let name = if e.form == EnvForm::HostWithPort {
                format!("`{}` + `REDIS_PORT`", e.name)
            } else {
                format!("`{}`", e.name)
            };
            let _ = writeln!(out, "| {} | `{}` | {} |", name, s.path, cell(note));
        }
    }
    out
}

fn default_text(s: &KeySpec) -> String {
    match s.default {
        Def::None => "—".into(),
        Def::Value("") => "—".into(),
        Def::Value(v) => format!("`{v}`"),
        Def::Derived(d) => d.into(),
    }
}

fn env_text(s: &KeySpec) -> String {
    s.env
        .iter()
        .map(|e| match e.form {
            EnvForm::Direct => format!("`{}`", e.name),
            EnvForm::Inverted => format!("`{}` (inverted)", e.name),
            EnvForm::Generic => format!("`{}` (fallback)", e.name),
            EnvForm::HostWithPort => format!("`{}` + `REDIS_PORT`", e.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(s: &KeySpec) -> String {
    match s.effect {
        Effect::Applies => s.doc.to_string(),
        Effect::Ignored(why) => {
            format!("{} **Accepted, has no effect in the guest:** {why}.", s.doc)
        }
        Effect::OnlyOff(why) => format!("{} **Accepted only when off:** {why}.", s.doc),
    }
}

/// Escapes a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
