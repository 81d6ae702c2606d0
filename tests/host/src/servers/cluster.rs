//! A Redis Cluster of masters only (`--cluster-enabled yes` × n, then
//! `redis-cli --cluster create ... --cluster-yes`), with helpers to move a slot (clients with a
//! stale map get `MOVED`) and to leave a slot half-migrated (clients get `ASK`).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use super::{redis_cli, Flavor, RedisServer};
use crate::util::wait_for;

/// A port `p` with `p + 10000` (the cluster bus) also free, below 55536.
fn free_cluster_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919) % 20000;
    for _ in 0..20000 {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = 21000 + (seed.wrapping_add(n.wrapping_mul(17))) % 20000;
        let ok = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        if ok(p) && ok(p + 10000) {
            return p;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// A running cluster. Dropping it kills every node.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, all masters.
    pub nodes: Vec<RedisServer>,
    /// `requirepass`/`masterauth` of every node.
    pub password: Option<String>,
}

impl Cluster {
    /// Starts `n` (≥ 3) master nodes, creates the cluster and waits until every node reports
    /// `cluster_state:ok` and agrees on the slot owners.
    pub fn start(flavor: Flavor, n: usize, password: Option<&str>) -> Self {
        let mut nodes = Vec::new();
        for _ in 0..n {
            let port = free_cluster_port();
            let mut lines = vec![
                format!("port {port}"),
                "cluster-enabled yes".to_owned(),
                "cluster-config-file nodes.conf".to_owned(),
                "cluster-node-timeout 2000".to_owned(),
            ];
            if let Some(p) = password {
                lines.push(format!("requirepass {p}"));
                lines.push(format!("masterauth {p}"));
            }
            nodes.push(RedisServer::start_raw(
                flavor,
                "cluster",
                port,
                &lines,
                &[],
                password,
            ));
        }
        let mut create = std::process::Command::new(redis_cli());
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(node.addr());
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        if let Some(p) = password {
            create.env("REDISCLI_AUTH", p);
        }
        let out = create
            .output()
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}"));
        if !out.status.success() {
            panic!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cluster = Self {
            nodes,
            password: password.map(str::to_owned),
        };
        for node in &cluster.nodes {
            wait_for("cluster_state:ok", Duration::from_secs(30), || {
                (node.info_cluster("cluster_state").as_deref() == Some("ok")).then_some(())
            });
        }
        wait_for(
            "all nodes to agree on slot owners",
            Duration::from_secs(30),
            || {
                let views: Vec<String> = cluster
                    .nodes
                    .iter()
                    .filter_map(|n| n.try_cli(&["CLUSTER", "SLOTS"]))
                    .collect();
                let first = views.first()?;
                // CLUSTER SLOTS lists ranges in each node's own order; compare them sorted.
                let norm = |v: &String| {
                    let mut l: Vec<&str> = v.lines().collect();
                    l.sort_unstable();
                    l.join("\n")
                };
                (views.len() == cluster.nodes.len() && views.iter().all(|v| norm(v) == norm(first)))
                    .then_some(())
            },
        );
        cluster
    }

    /// Seed addresses for a client.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// The node's cluster id.
    pub fn id(&self, node: usize) -> String {
        self.nodes[node].cli(&["CLUSTER", "MYID"])
    }

    /// Index of the node that owns `slot` (asked of node 0; see [`Cluster::owner_per`]).
    pub fn owner(&self, slot: u16) -> usize {
        self.owner_per(0, slot)
    }

    /// Index of the node that owns `slot` according to node `asked` (`CLUSTER NODES`: one
    /// line per node, `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link>
    /// <slot ranges...>`).
    pub fn owner_per(&self, asked: usize, slot: u16) -> usize {
        let out = self.nodes[asked].cli(&["CLUSTER", "NODES"]);
        for line in out.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(addr) = fields.get(1) else { continue };
            let port: u16 = addr
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let owns = fields.iter().skip(8).any(|r| {
                if r.starts_with('[') {
                    return false; // "[slot->-id]" / "[slot-<-id]": migration markers
                }
                match r.split_once('-') {
                    Some((a, b)) => {
                        matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                    }
                    None => r.parse::<u16>() == Ok(slot),
                }
            });
            if owns {
                if let Some(n) = self.nodes.iter().position(|n| n.port == port) {
                    return n;
                }
            }
        }
        panic!("no node owns slot {slot}:\n{out}");
    }

    /// Starts migrating `slot` from its owner to node `to` (`IMPORTING` on `to`, `MIGRATING` on
    /// the owner) and returns the owner. Keys still on the owner are served there; a key that is
    /// not gets `-ASK slot to`.
    pub fn begin_migration(&self, slot: u16, to: usize) -> usize {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} already lives on node {to}");
        let s = slot.to_string();
        self.nodes[to].cli(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &self.id(from)]);
        self.nodes[from].cli(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &self.id(to)]);
        from
    }

    /// Moves `key` from node `from` to node `to` with `MIGRATE` (during a migration).
    pub fn migrate_key(&self, key: &str, from: usize, to: usize) {
        let port = self.nodes[to].port.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000"];
        if let Some(p) = &self.password {
            args.extend(["AUTH", p]);
        }
        args.extend(["KEYS", key]);
        let out = self.nodes[from].cli(&args);
        assert_eq!(out, "OK", "MIGRATE {key}");
    }

    /// Moves `slot` with all its keys to node `to` and tells every node; returns the old owner.
    /// A client with the old map then gets `-MOVED slot to`.
    pub fn move_slot(&self, slot: u16, to: usize) -> usize {
        let from = self.begin_migration(slot, to);
        let s = slot.to_string();
        loop {
            let keys = self.nodes[from].cli(&["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            if keys.is_empty() {
                break;
            }
            for k in keys.lines() {
                self.migrate_key(k, from, to);
            }
        }
        let to_id = self.id(to);
        // The importing node first (it bumps its epoch), then the old owner, then the rest.
        let mut order = vec![to, from];
        order.extend((0..self.nodes.len()).filter(|n| *n != to && *n != from));
        for n in order {
            self.nodes[n].cli(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        }
        for n in 0..self.nodes.len() {
            wait_for(
                "every node to see the new slot owner",
                Duration::from_secs(10),
                || (self.owner_per(n, slot) == to).then_some(()),
            );
        }
        from
    }

    /// `CLUSTER COUNTKEYSINSLOT` on node `node`.
    pub fn count_keys_in_slot(&self, node: usize, slot: u16) -> u64 {
        self.nodes[node]
            .cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
            .parse()
            .unwrap_or(0)
    }
}

impl RedisServer {
    /// A field of `CLUSTER INFO`.
    pub fn info_cluster(&self, field: &str) -> Option<String> {
        let info = self.try_cli(&["CLUSTER", "INFO"])?;
        info.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k == field).then(|| v.to_owned())
        })
    }
}
