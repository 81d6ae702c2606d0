//! One master, one replica and three Sentinels (`<server> sentinel.conf --sentinel`, each with
//! a writable config file of its own, since Sentinels rewrite it), with short failure detection
//! so that a failover takes a few seconds.

use std::time::Duration;

use super::{Flavor, RedisServer, ServerConfig};
use crate::util::{free_port, wait_for};

/// Parameters of a Sentinel setup.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// The master's name in `sentinel monitor`.
    pub master_name: String,
    /// `requirepass` of the master and replica (Sentinels get it as `auth-pass`).
    pub password: Option<String>,
    /// `requirepass` of the Sentinels themselves (and `sentinel-pass` between them).
    pub sentinel_password: Option<String>,
    /// `sentinel down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `sentinel failover-timeout`.
    pub failover_timeout_ms: u64,
}

impl Default for SentinelConfig {
    fn default() -> Self {
        Self {
            master_name: "mymaster".into(),
            password: None,
            sentinel_password: None,
            down_after_ms: 1000,
            failover_timeout_ms: 3000,
        }
    }
}

/// The running setup. Dropping it kills every process.
#[derive(Debug)]
pub struct SentinelSetup {
    /// The configuration it was started with.
    pub config: SentinelConfig,
    /// Data servers: index 0 starts as master, 1 as its replica.
    pub data: Vec<RedisServer>,
    /// The three Sentinels.
    pub sentinels: Vec<RedisServer>,
}

impl SentinelSetup {
    /// Starts master, replica and Sentinels, and waits until every Sentinel sees the replica
    /// and the two other Sentinels (so that a failover can happen).
    pub fn start(flavor: Flavor, config: SentinelConfig) -> Self {
        let data_cfg = ServerConfig {
            password: config.password.clone(),
            // Diskless full syncs wait 5 s by default for more replicas to join; there is one.
            extra: vec!["repl-diskless-sync-delay 0".into()],
            ..ServerConfig::default()
        };
        let master = RedisServer::start(flavor, &data_cfg);
        let mut replica_cfg = data_cfg.clone();
        replica_cfg
            .extra
            .push(format!("replicaof 127.0.0.1 {}", master.port));
        let replica = RedisServer::start(flavor, &replica_cfg);
        wait_for("replica link up", Duration::from_secs(15), || {
            (replica
                .info_field("replication", "master_link_status")
                .as_deref()
                == Some("up"))
            .then_some(())
        });
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let name = &config.master_name;
            let mut lines = vec![
                format!("port {port}"),
                format!("sentinel monitor {name} 127.0.0.1 {} 2", master.port),
                format!(
                    "sentinel down-after-milliseconds {name} {}",
                    config.down_after_ms
                ),
                format!(
                    "sentinel failover-timeout {name} {}",
                    config.failover_timeout_ms
                ),
                format!("sentinel parallel-syncs {name} 1"),
            ];
            if let Some(p) = &config.password {
                lines.push(format!("sentinel auth-pass {name} {p}"));
            }
            if let Some(p) = &config.sentinel_password {
                lines.push(format!("requirepass {p}"));
                lines.push(format!("sentinel sentinel-pass {p}"));
            }
            sentinels.push(RedisServer::start_raw(
                flavor,
                "sentinel",
                port,
                &lines,
                &["--sentinel"],
                config.sentinel_password.as_deref(),
            ));
        }
        let setup = Self {
            config,
            data: vec![master, replica],
            sentinels,
        };
        for s in &setup.sentinels {
            wait_for(
                "sentinels to see the replica and each other",
                Duration::from_secs(30),
                || {
                    let f = setup.master_fields(s)?;
                    let field = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                    (field("num-slaves") == Some("1") && field("num-other-sentinels") == Some("2"))
                        .then_some(())
                },
            );
        }
        setup
    }

    /// `SENTINEL MASTER <name>` as field/value pairs, from one Sentinel.
    pub fn master_fields(&self, sentinel: &RedisServer) -> Option<Vec<(String, String)>> {
        let out = sentinel.try_cli(&["SENTINEL", "MASTER", &self.config.master_name])?;
        let lines: Vec<&str> = out.lines().collect();
        Some(
            lines
                .chunks(2)
                .filter_map(|c| Some((c.first()?.to_string(), c.get(1)?.to_string())))
                .collect(),
        )
    }

    /// `host:port` of the master according to the first Sentinel that answers.
    pub fn master_addr(&self) -> Option<String> {
        self.sentinels.iter().find_map(|s| {
            let out = s.try_cli(&[
                "SENTINEL",
                "GET-MASTER-ADDR-BY-NAME",
                &self.config.master_name,
            ])?;
            let mut l = out.lines();
            Some(format!("{}:{}", l.next()?, l.next()?))
        })
    }

    /// The Sentinels' addresses.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::addr).collect()
    }

    /// The data server currently at `addr`.
    pub fn data_at(&self, addr: &str) -> Option<&RedisServer> {
        self.data.iter().find(|d| d.addr() == addr)
    }

    /// Kills the current master (`SIGKILL`); returns its old address.
    pub fn kill_master(&mut self) -> String {
        let addr = self
            .master_addr()
            .unwrap_or_else(|| panic!("no sentinel knows the master"));
        let m = self
            .data
            .iter_mut()
            .find(|d| d.addr() == addr)
            .unwrap_or_else(|| panic!("master {addr} is not one of ours"));
        m.kill();
        addr
    }
}
