//! [`RedisClient`]: connection setup, topology (standalone, Sentinel, Cluster), retries and the
//! [`L2`] commands.
//!
//! Round trips: a connection sends nothing when it is opened; its first pipeline carries
//! `AUTH`, `SELECT` (db ≠ 0) and, with Sentinel, `ROLE` in front of the operation's commands, in
//! one write. So an operation costs one round trip after connect. Discovering the master (one
//! round trip to a Sentinel) and loading the slot map (`CLUSTER SLOTS`) happen once per
//! instance and again only after a failure or redirection says they are stale.

use std::time::Duration;

use super::cluster::{key_slot, NodeAddr, Redirect, SlotMap};
use super::connection::{io_error, Connection};
use super::frame::{Command, Frame};
use super::{RedisConfigError, RedisOptions};
use crate::clock::SystemClock;
use crate::net::tls::TlsConfig;
use crate::net::{Dialer, Stream, Timeouts};
use crate::store::{StoreError, L2};

/// Counters for tests, health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Connections opened (servers and Sentinels).
    pub connects: u64,
    /// Pipelines sent (each is one write and one round trip).
    pub round_trips: u64,
    /// Attempts repeated after a connection failure or a stale topology.
    pub retries: u64,
    /// `MOVED` redirections followed.
    pub moved: u64,
    /// `ASK` redirections followed.
    pub ask: u64,
    /// Successful master lookups through Sentinel.
    pub master_lookups: u64,
    /// Slot maps loaded with `CLUSTER SLOTS`.
    pub slot_loads: u64,
}

enum Topology {
    Standalone(NodeAddr),
    Sentinel {
        sentinels: Vec<NodeAddr>,
        master: String,
        auth: Option<Command>,
    },
    Cluster {
        seeds: Vec<NodeAddr>,
    },
}

/// An open connection of the current request.
struct Link {
    addr: NodeAddr,
    conn: Connection<Box<dyn Stream>>,
    /// Nothing sent yet: the setup commands go in front of the first pipeline.
    fresh: bool,
}

/// Why an attempt failed, and whether another attempt may help.
enum Failure {
    /// The connection failed (refused, reset, closed): retry, after forgetting the topology.
    Retry(StoreError),
    /// The node is not (or no longer) the master: rediscover and retry.
    NotMaster(StoreError),
    /// A refusal, a timeout or a protocol error: retrying would not help, or would make the
    /// request wait longer than the read timeout.
    Fatal(StoreError),
}

impl Failure {
    fn error(self) -> StoreError {
        match self {
            Failure::Retry(e) | Failure::NotMaster(e) | Failure::Fatal(e) => e,
        }
    }
}

/// The most of a server's error text repeated in our errors.
const MAX_ERROR_TEXT: usize = 200;

/// A server's error text, shortened. Redis never echoes `AUTH` arguments in its errors
/// (`WRONGPASS invalid username-password pair or user is disabled.`), and we only put the
/// server's text, our address and the user name in messages, never the password.
fn server_text(m: &str) -> String {
    match m.char_indices().nth(MAX_ERROR_TEXT) {
        Some((i, _)) => format!("{}...", m.get(..i).unwrap_or_default()),
        None => m.to_owned(),
    }
}

fn auth_command(user: Option<&str>, password: Option<&super::Password>) -> Option<Command> {
    match (user, password) {
        (None, None) => None,
        (None, Some(p)) => Some(Command::new(&[b"AUTH", p.expose().as_bytes()])),
        // A `nopass` ACL user accepts any password, an empty one included.
        (Some(u), p) => Some(Command::new(&[
            b"AUTH",
            u.as_bytes(),
            p.map(|p| p.expose().as_bytes()).unwrap_or_default(),
        ])),
    }
}

/// A Redis/Valkey client for one guest instance. Not thread-safe by design (one instance
/// handles one request at a time); all connections are closed by [`L2::end_request`].
pub struct RedisClient<D> {
    dialer: D,
    topology: Topology,
    auth: Option<Command>,
    select: Option<Command>,
    tls: Option<TlsConfig>,
    timeouts: Timeouts,
    max_retries: u32,
    max_redirects: u32,
    /// The master last given by the Sentinels (kept across requests).
    master: Option<NodeAddr>,
    /// The cluster slot map (kept across requests) and the nodes it last named.
    slots: SlotMap,
    known_nodes: Vec<NodeAddr>,
    links: Vec<Link>,
    stats: RedisStats,
}

impl<D: Dialer> RedisClient<D> {
    /// Validates the options and builds the client (and its TLS configuration). Connects to
    /// nothing yet.
    ///
    /// # Errors
    /// [`RedisConfigError`] naming the option that cannot be used.
    pub fn new(opts: &RedisOptions, dialer: D) -> Result<Self, RedisConfigError> {
        let parse_all = |key: &'static str, list: &[String], port: u16| {
            list.iter()
                .map(|a| NodeAddr::parse(a, port).map_err(|e| RedisConfigError::Address(key, e)))
                .collect::<Result<Vec<_>, _>>()
        };
        let topology = match (&opts.sentinel, opts.cluster_mode) {
            (Some(_), true) => {
                return Err(RedisConfigError::Conflict(
                    "sentinel and clusterMode cannot be used together",
                ))
            }
            (Some(s), false) => {
                let sentinels = parse_all("sentinel.hosts", &s.hosts, 26379)?;
                if sentinels.is_empty() {
                    return Err(RedisConfigError::NoAddress("sentinel.hosts"));
                }
                if s.master.is_empty() {
                    return Err(RedisConfigError::Conflict(
                        "sentinel.master: expected the master's name",
                    ));
                }
                Topology::Sentinel {
                    sentinels,
                    master: s.master.clone(),
                    auth: auth_command(s.username.as_deref(), s.password.as_ref()),
                }
            }
            (None, cluster) => {
                let addrs = parse_all("address", &opts.addresses, 6379)?;
                if cluster {
                    if addrs.is_empty() {
                        return Err(RedisConfigError::NoAddress("address"));
                    }
                    if opts.db != 0 {
                        return Err(RedisConfigError::Conflict(
                            "db: Redis Cluster only has database 0",
                        ));
                    }
                    Topology::Cluster { seeds: addrs }
                } else {
                    match addrs.into_iter().next() {
                        Some(a) => Topology::Standalone(a),
                        None => return Err(RedisConfigError::NoAddress("address")),
                    }
                }
            }
        };
        let tls = match &opts.tls {
            Some(t) => Some(TlsConfig::new(t).map_err(RedisConfigError::Tls)?),
            None => None,
        };
        Ok(Self {
            dialer,
            topology,
            auth: auth_command(opts.username.as_deref(), opts.password.as_ref()),
            select: (opts.db != 0)
                .then(|| Command::new(&[b"SELECT", opts.db.to_string().as_bytes()])),
            tls,
            timeouts: opts.timeouts,
            max_retries: opts.max_retries,
            max_redirects: opts.max_redirects,
            master: None,
            slots: SlotMap::default(),
            known_nodes: Vec::new(),
            links: Vec::new(),
            stats: RedisStats::default(),
        })
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> RedisStats {
        self.stats
    }

    /// The master currently believed in (Sentinel mode), if discovered.
    pub fn master(&self) -> Option<&NodeAddr> {
        self.master.as_ref()
    }

    /// Closes every connection (the topology caches stay).
    pub fn close(&mut self) {
        self.links.clear();
    }

    /// Runs `cmds` as one pipeline on the node that serves `key` (any node when `None`), with
    /// retries, rediscovery and cluster redirections, and returns one reply per command. Error
    /// replies other than redirections are returned as [`Frame::Error`] values. In cluster mode
    /// every key of `cmds` must hash to the slot of `key`.
    ///
    /// # Errors
    /// [`StoreError`] when no attempt produced a reply.
    pub fn exec(
        &mut self,
        key: Option<&[u8]>,
        cmds: &[&Command],
    ) -> Result<Vec<Frame>, StoreError> {
        let slot = key.map(key_slot);
        let mut retries = 0;
        let mut redirects = 0;
        let mut ask: Option<NodeAddr> = None;
        loop {
            let (target, asking) = match ask.take() {
                Some(a) => (Ok(a), true),
                None => (self.route(slot), false),
            };
            let attempt = target.and_then(|t| {
                let replies = self.send(&t, asking, cmds)?;
                Ok((t, replies))
            });
            let failure = match attempt {
                Ok((target, replies)) => {
                    if matches!(self.topology, Topology::Cluster { .. }) {
                        let redirect = replies.iter().find_map(|f| match f {
                            Frame::Error(m) => Redirect::parse(m, &target),
                            _ => None,
                        });
                        if let Some(r) = redirect {
                            redirects += 1;
                            if redirects > self.max_redirects {
                                return Err(StoreError::Protocol(format!(
                                    "more than {} cluster redirections for one operation",
                                    self.max_redirects
                                )));
                            }
                            let (Redirect::Moved(_, a) | Redirect::Ask(_, a)) = &r;
                            if !self.slots.nodes().contains(a) && !self.known_nodes.contains(a) {
                                // A redirection to a node no CLUSTER SLOTS announced is not
                                // followed (the client would send it AUTH with our password):
                                // the map is reloaded from the configured and known nodes, and
                                // a node that really joined is in the new map.
                                self.slots.clear();
                                continue;
                            }
                            match r {
                                Redirect::Moved(s, a) => {
                                    self.stats.moved += 1;
                                    self.slots.set(s, a);
                                }
                                Redirect::Ask(_, a) => {
                                    self.stats.ask += 1;
                                    ask = Some(a);
                                }
                            }
                            continue;
                        }
                    }
                    let readonly = replies.iter().find_map(|f| match f {
                        Frame::Error(m) if m.starts_with("READONLY") => Some(server_text(m)),
                        _ => None,
                    });
                    match readonly {
                        // With Sentinel, a write refused by a replica means a failover happened
                        // since the master was discovered.
                        Some(m) if matches!(self.topology, Topology::Sentinel { .. }) => {
                            self.drop_link(&target);
                            Failure::NotMaster(StoreError::Refused(format!("{target}: {m}")))
                        }
                        _ => return Ok(replies),
                    }
                }
                Err(f) => f,
            };
            let error = match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Retry(e) | Failure::NotMaster(e) => e,
            };
            self.forget_topology();
            if retries >= self.max_retries {
                return Err(error);
            }
            retries += 1;
            self.stats.retries += 1;
        }
    }

    fn forget_topology(&mut self) {
        match self.topology {
            Topology::Sentinel { .. } => {
                self.master = None;
                self.links.clear();
            }
            Topology::Cluster { .. } => self.slots.clear(),
            Topology::Standalone(_) => {}
        }
    }

    /// The node for `slot` (or any node), discovering the master or loading the slot map first
    /// when they are not known.
    fn route(&mut self, slot: Option<u16>) -> Result<NodeAddr, Failure> {
        match &self.topology {
            Topology::Standalone(a) => Ok(a.clone()),
            Topology::Sentinel { .. } => match &self.master {
                Some(m) => Ok(m.clone()),
                None => self.discover(),
            },
            Topology::Cluster { .. } => {
                if self.slots.is_empty() {
                    self.load_slots()?;
                }
                let node = match slot {
                    Some(s) => self.slots.node(s),
                    None => self.slots.any_node(),
                };
                node.cloned().ok_or_else(|| {
                    Failure::Retry(StoreError::Unavailable(format!(
                        "no cluster node serves slot {}",
                        slot.unwrap_or_default()
                    )))
                })
            }
        }
    }

    /// Dials `addr` and, with TLS, completes the handshake.
    fn open(&mut self, addr: &NodeAddr) -> Result<Connection<Box<dyn Stream>>, Failure> {
        self.stats.connects += 1;
        let stream = self
            .dialer
            .dial(&addr.host, addr.port, &self.timeouts)
            .map_err(|e| match io_error(e) {
                StoreError::Timeout => Failure::Fatal(StoreError::Timeout),
                StoreError::Unavailable(m) => {
                    Failure::Retry(StoreError::Unavailable(format!("connect to {addr}: {m}")))
                }
                other => Failure::Fatal(other),
            })?;
        let stream: Box<dyn Stream> = match &self.tls {
            None => stream,
            Some(tls) => Box::new(
                tls.connect(&addr.host, stream, self.timeouts.connect)
                    .map_err(|e| match io_error(e) {
                        StoreError::Timeout => Failure::Fatal(StoreError::Timeout),
                        StoreError::Refused(m) => Failure::Fatal(StoreError::Refused(format!(
                            "handshake with {addr}: {m}"
                        ))),
                        StoreError::Unavailable(m) => Failure::Retry(StoreError::Unavailable(
                            format!("TLS handshake with {addr}: {m}"),
                        )),
                        other => Failure::Fatal(other),
                    })?,
            ),
        };
        Ok(Connection::new(stream).with_budget(self.timeouts.read))
    }

    fn drop_link(&mut self, addr: &NodeAddr) {
        self.links.retain(|l| l.addr != *addr);
    }

    /// Sends `cmds` (each after `ASKING` when `asking`) to `addr` in one pipeline, behind the
    /// setup commands when the connection is new, and checks the setup replies.
    fn send(
        &mut self,
        addr: &NodeAddr,
        asking: bool,
        cmds: &[&Command],
    ) -> Result<Vec<Frame>, Failure> {
        let index = match self.links.iter().position(|l| l.addr == *addr) {
            Some(i) => i,
            None => {
                let conn = self.open(addr)?;
                self.links.push(Link {
                    addr: addr.clone(),
                    conn,
                    fresh: true,
                });
                self.links.len() - 1
            }
        };
        let role = Command::new(&[b"ROLE"]);
        let asking_cmd = Command::new(&[b"ASKING"]);
        let sentinel = matches!(self.topology, Topology::Sentinel { .. });
        let Some(link) = self.links.get_mut(index) else {
            return Err(Failure::Fatal(StoreError::Protocol(
                "connection vanished".into(),
            )));
        };
        let fresh = link.fresh;
        let mut batch: Vec<&Command> = Vec::with_capacity(cmds.len() * 2 + 3);
        if fresh {
            batch.extend(self.auth.as_ref());
            batch.extend(self.select.as_ref());
            if sentinel {
                batch.push(&role);
            }
        }
        for c in cmds {
            if asking {
                batch.push(&asking_cmd);
            }
            batch.push(c);
        }
        self.stats.round_trips += 1;
        let replies = match link.conn.pipeline(&batch) {
            Ok(r) => {
                link.fresh = false;
                r
            }
            Err(e) => {
                self.drop_link(addr);
                return Err(match e {
                    StoreError::Unavailable(m) => {
                        Failure::Retry(StoreError::Unavailable(format!("{addr}: {m}")))
                    }
                    other => Failure::Fatal(other),
                });
            }
        };
        let mut replies = replies.into_iter();
        if fresh {
            if self.auth.is_some() {
                if let Err(e) = setup_reply(replies.next(), "AUTH", addr) {
                    self.drop_link(addr);
                    return Err(Failure::Fatal(e));
                }
            }
            if self.select.is_some() {
                if let Err(e) = setup_reply(replies.next(), "SELECT", addr) {
                    self.drop_link(addr);
                    return Err(Failure::Fatal(e));
                }
            }
            if sentinel {
                if let Err(f) = role_reply(replies.next(), addr) {
                    self.drop_link(addr);
                    return Err(f);
                }
            }
        }
        let mut out = Vec::with_capacity(cmds.len());
        for _ in cmds {
            if asking {
                match replies.next() {
                    Some(f) if f.is_ok() => {}
                    Some(Frame::Error(m)) => {
                        return Err(Failure::Fatal(StoreError::Refused(format!(
                            "ASKING on {addr}: {}",
                            server_text(&m)
                        ))))
                    }
                    other => {
                        return Err(Failure::Fatal(unexpected("ASKING", "+OK", other.as_ref())))
                    }
                }
            }
            let reply = replies
                .next()
                .ok_or_else(|| Failure::Fatal(StoreError::Protocol("missing reply".into())))?;
            out.push(reply);
        }
        Ok(out)
    }

    /// Asks the Sentinels, in order, for the master's address.
    fn discover(&mut self) -> Result<NodeAddr, Failure> {
        let Topology::Sentinel {
            sentinels,
            master,
            auth,
        } = &self.topology
        else {
            return Err(Failure::Fatal(StoreError::Protocol(
                "not in Sentinel mode".into(),
            )));
        };
        let (sentinels, name, auth) = (sentinels.clone(), master.clone(), auth.clone());
        let ask = Command::new(&[b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()]);
        let mut last = String::from("no sentinel configured");
        let mut refused = None;
        for s in &sentinels {
            let mut conn = match self.open(s) {
                Ok(c) => c,
                Err(f) => {
                    last = f.error().to_string();
                    continue;
                }
            };
            let mut batch: Vec<&Command> = auth.iter().collect();
            batch.push(&ask);
            self.stats.round_trips += 1;
            let replies = match conn.pipeline(&batch) {
                Ok(r) => r,
                Err(e) => {
                    last = format!("sentinel {s}: {e}");
                    continue;
                }
            };
            let mut replies = replies.into_iter();
            if auth.is_some() {
                if let Err(e) = setup_reply(replies.next(), "AUTH", s) {
                    refused = Some(format!("sentinel {e}"));
                    continue;
                }
            }
            match replies.next() {
                Some(Frame::Array(items)) => match master_addr(&items) {
                    Some(a) => {
                        self.stats.master_lookups += 1;
                        self.master = Some(a.clone());
                        return Ok(a);
                    }
                    None => last = format!("sentinel {s}: expected [host, port]"),
                },
                Some(Frame::NilArray) => {
                    last = format!("sentinel {s} does not know master {name:?}")
                }
                Some(Frame::Error(m)) => {
                    refused = Some(format!("sentinel {s}: {}", server_text(&m)));
                }
                other => {
                    last = unexpected(
                        "SENTINEL get-master-addr-by-name",
                        "an array",
                        other.as_ref(),
                    )
                    .to_string()
                }
            }
        }
        if let Some(r) = refused {
            return Err(Failure::Fatal(StoreError::Refused(r)));
        }
        Err(Failure::Retry(StoreError::Unavailable(format!(
            "no sentinel gave the address of master {name:?} (last: {last})"
        ))))
    }

    /// Loads the slot map from the first seed (or previously known node) that answers.
    fn load_slots(&mut self) -> Result<(), Failure> {
        let Topology::Cluster { seeds } = &self.topology else {
            return Err(Failure::Fatal(StoreError::Protocol(
                "not in cluster mode".into(),
            )));
        };
        let mut candidates = seeds.clone();
        for n in &self.known_nodes {
            if !candidates.contains(n) {
                candidates.push(n.clone());
            }
        }
        let cmd = Command::new(&[b"CLUSTER", b"SLOTS"]);
        let mut last = String::new();
        for node in &candidates {
            match self.send(node, false, &[&cmd]) {
                Ok(replies) => {
                    let map = replies
                        .first()
                        .ok_or_else(|| StoreError::Protocol("missing reply".into()))
                        .and_then(|r| match r {
                            Frame::Error(m) => Err(StoreError::Refused(format!(
                                "CLUSTER SLOTS on {node}: {}",
                                server_text(m)
                            ))),
                            r => SlotMap::from_cluster_slots(r, node),
                        });
                    match map {
                        Ok(m) => {
                            self.known_nodes = m.nodes().to_vec();
                            self.slots = m;
                            self.stats.slot_loads += 1;
                            return Ok(());
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                // A refused AUTH is the same on every node.
                Err(Failure::Fatal(e @ StoreError::Refused(_))) => return Err(Failure::Fatal(e)),
                Err(f) => last = f.error().to_string(),
            }
        }
        Err(Failure::Retry(StoreError::Unavailable(format!(
            "no cluster node answered CLUSTER SLOTS (last: {last})"
        ))))
    }
}

fn unexpected(cmd: &str, expected: &str, found: Option<&Frame>) -> StoreError {
    let found = match found {
        Some(Frame::Error(m)) => format!("error {:?}", server_text(m)),
        Some(f) => f.kind().to_owned(),
        None => "nothing".to_owned(),
    };
    StoreError::Protocol(format!("{cmd}: expected {expected}, found {found}"))
}

/// Checks the reply to `AUTH` or `SELECT`.
fn setup_reply(reply: Option<Frame>, cmd: &str, addr: &NodeAddr) -> Result<(), StoreError> {
    match reply {
        Some(f) if f.is_ok() => Ok(()),
        Some(Frame::Error(m)) => Err(StoreError::Refused(format!(
            "{cmd} on {addr} failed: {}",
            server_text(&m)
        ))),
        other => Err(unexpected(cmd, "+OK", other.as_ref())),
    }
}

/// Checks that a Sentinel's master says it is one (`ROLE` → `["master", offset, replicas]`).
fn role_reply(reply: Option<Frame>, addr: &NodeAddr) -> Result<(), Failure> {
    match reply {
        Some(Frame::Array(items)) => match items.first().and_then(Frame::as_bytes) {
            Some(b"master") => Ok(()),
            Some(role) => Err(Failure::NotMaster(StoreError::Unavailable(format!(
                "{addr} is a {}, not the master (failover in progress?)",
                String::from_utf8_lossy(role)
            )))),
            None => Err(Failure::Fatal(unexpected(
                "ROLE",
                "a role name",
                items.first(),
            ))),
        },
        // An ACL user without `ROLE` (it is in @admin/@dangerous) cannot check; the write path
        // still detects a replica through `-READONLY`.
        Some(Frame::Error(m)) if m.starts_with("NOPERM") => Ok(()),
        other => Err(Failure::Fatal(unexpected(
            "ROLE",
            "an array",
            other.as_ref(),
        ))),
    }
}

fn master_addr(items: &[Frame]) -> Option<NodeAddr> {
    let host = std::str::from_utf8(items.first()?.as_bytes()?).ok()?;
    let port = std::str::from_utf8(items.get(1)?.as_bytes()?)
        .ok()?
        .parse()
        .ok()?;
    (items.len() == 2 && !host.is_empty() && port != 0).then(|| NodeAddr {
        host: host.to_owned(),
        port,
    })
}

/// `ttl` in whole milliseconds, rounded up, at least 1 (`PX 0` is an error).
fn ttl_ms(ttl: Duration) -> String {
    ttl.as_nanos().div_ceil(1_000_000).max(1).to_string()
}

/// Maps an error reply that the command does not expect.
fn refused(m: &str) -> StoreError {
    StoreError::Refused(server_text(m))
}

fn single(mut replies: Vec<Frame>) -> Result<Frame, StoreError> {
    match (replies.pop(), replies.is_empty()) {
        (Some(f), true) => Ok(f),
        _ => Err(StoreError::Protocol("expected exactly one reply".into())),
    }
}

impl<D: Dialer> L2 for RedisClient<D> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let cmd = Command::new(&[b"GET", key.as_bytes()]);
        match single(self.exec(Some(key.as_bytes()), &[&cmd])?)? {
            Frame::Bulk(v) => Ok(Some(v)),
            Frame::NilBulk => Ok(None),
            Frame::Error(m) => Err(refused(&m)),
            other => Err(unexpected("GET", "a bulk string", Some(&other))),
        }
    }

    /// One pipeline of `GET`s (one round trip). In cluster mode the keys must share a hash slot
    /// for that; otherwise they are asked one by one.
    fn get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        if matches!(self.topology, Topology::Cluster { .. })
            && keys
                .iter()
                .any(|k| key_slot(k.as_bytes()) != key_slot(first.as_bytes()))
        {
            return keys.iter().map(|k| self.get(k)).collect();
        }
        let cmds: Vec<Command> = keys
            .iter()
            .map(|k| Command::new(&[b"GET", k.as_bytes()]))
            .collect();
        let refs: Vec<&Command> = cmds.iter().collect();
        let replies = self.exec(Some(first.as_bytes()), &refs)?;
        if replies.len() != keys.len() {
            return Err(StoreError::Protocol(format!(
                "{} replies to a pipeline of {} GETs",
                replies.len(),
                keys.len()
            )));
        }
        replies
            .into_iter()
            .map(|f| match f {
                Frame::Bulk(v) => Ok(Some(v)),
                Frame::NilBulk => Ok(None),
                Frame::Error(m) => Err(refused(&m)),
                other => Err(unexpected("GET", "a bulk string", Some(&other))),
            })
            .collect()
    }

    fn set(&mut self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let ms = ttl_ms(ttl);
        let cmd = Command::new(&[b"SET", key.as_bytes(), value, b"PX", ms.as_bytes()]);
        match single(self.exec(Some(key.as_bytes()), &[&cmd])?)? {
            f if f.is_ok() => Ok(()),
            Frame::Error(m) => Err(refused(&m)),
            other => Err(unexpected("SET", "+OK", Some(&other))),
        }
    }

    fn set_if_absent(
        &mut self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ms = ttl_ms(ttl);
        let set = Command::new(&[b"SET", key.as_bytes(), value, b"NX", b"PX", ms.as_bytes()]);
        let get = Command::new(&[b"GET", key.as_bytes()]);
        // Both commands name the same key, so they go to the same slot and node.
        let replies = self.exec(Some(key.as_bytes()), &[&set, &get])?;
        let [set_reply, get_reply] = <[Frame; 2]>::try_from(replies)
            .map_err(|_| StoreError::Protocol("expected two replies".into()))?;
        let stored = match set_reply {
            f if f.is_ok() => true,
            Frame::NilBulk => false,
            Frame::Error(m) => return Err(refused(&m)),
            other => return Err(unexpected("SET NX", "+OK or nil", Some(&other))),
        };
        // The value is unique per call (it carries a nonce): reading it back is what proves the
        // win, so a reply that belongs to another request can only make this `false` or an
        // error, never a wrong `true`.
        match get_reply {
            Frame::Bulk(v) if v == value => Ok(true),
            Frame::Bulk(_) | Frame::NilBulk if !stored => Ok(false),
            Frame::Bulk(_) | Frame::NilBulk => Err(StoreError::Protocol(
                "SET NX answered OK but the value read back is not ours".into(),
            )),
            Frame::Error(m) => Err(refused(&m)),
            other => Err(unexpected("GET", "a bulk string", Some(&other))),
        }
    }

    fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        let cmd = Command::new(&[b"DEL", key.as_bytes()]);
        match single(self.exec(Some(key.as_bytes()), &[&cmd])?)? {
            Frame::Integer(n) if n >= 0 => Ok(n > 0),
            Frame::Error(m) => Err(refused(&m)),
            other => Err(unexpected("DEL", "a non-negative integer", Some(&other))),
        }
    }

    fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        let cmd = Command::new(&[b"EXISTS", key.as_bytes()]);
        match single(self.exec(Some(key.as_bytes()), &[&cmd])?)? {
            Frame::Integer(n) if n >= 0 => Ok(n > 0),
            Frame::Error(m) => Err(refused(&m)),
            other => Err(unexpected("EXISTS", "a non-negative integer", Some(&other))),
        }
    }

    fn ttl(&mut self, key: &str) -> Result<Option<Option<Duration>>, StoreError> {
        let cmd = Command::new(&[b"PTTL", key.as_bytes()]);
        match single(self.exec(Some(key.as_bytes()), &[&cmd])?)? {
            // PTTL: -2 when the key does not exist, -1 when it has no expiry.
            Frame::Integer(-2) => Ok(None),
            Frame::Integer(-1) => Ok(Some(None)),
            Frame::Integer(ms) if ms >= 0 => {
                Ok(Some(Some(Duration::from_millis(ms.unsigned_abs()))))
            }
            Frame::Error(m) => Err(refused(&m)),
            other => Err(unexpected("PTTL", "an integer ≥ -2", Some(&other))),
        }
    }

    /// Wall-clock time of the whole operation (including connecting, when this is the
    /// request's first command).
    fn ping(&mut self) -> Result<Duration, StoreError> {
        let cmd = Command::new(&[b"PING"]);
        // Wall clock, not `Instant` (see crate::clock).
        let start = SystemClock.now_us();
        let reply = single(self.exec(None, &[&cmd])?)?;
        let took = Duration::from_micros(SystemClock.now_us().saturating_sub(start));
        match reply {
            Frame::Simple(s) if s == "PONG" => Ok(took),
            Frame::Error(m) => Err(refused(&m)),
            other => Err(unexpected("PING", "+PONG", Some(&other))),
        }
    }

    fn end_request(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::net::StdDialer;
    use crate::resp::{Password, SentinelOptions};

    #[test]
    fn options_are_validated() {
        let ok = RedisClient::new(&RedisOptions::default(), StdDialer);
        assert!(ok.is_ok());
        let bad = RedisOptions {
            addresses: vec!["h:x".into()],
            ..RedisOptions::default()
        };
        assert!(matches!(
            RedisClient::new(&bad, StdDialer).err(),
            Some(RedisConfigError::Address("address", _))
        ));
        let none = RedisOptions {
            addresses: vec![],
            ..RedisOptions::default()
        };
        assert!(RedisClient::new(&none, StdDialer).is_err());
        let both = RedisOptions {
            cluster_mode: true,
            sentinel: Some(SentinelOptions {
                hosts: vec!["s:26379".into()],
                master: "m".into(),
                ..SentinelOptions::default()
            }),
            ..RedisOptions::default()
        };
        assert!(matches!(
            RedisClient::new(&both, StdDialer).err(),
            Some(RedisConfigError::Conflict(_))
        ));
        let db = RedisOptions {
            cluster_mode: true,
            db: 2,
            ..RedisOptions::default()
        };
        assert!(RedisClient::new(&db, StdDialer).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        let opts = RedisOptions {
            password: Some(p),
            ..RedisOptions::default()
        };
        assert!(!format!("{opts:?}").contains("hunter2"));
        let long = "x".repeat(1000);
        assert!(server_text(&long).len() < 210);
    }

    #[test]
    fn ttl_rounding() {
        assert_eq!(ttl_ms(Duration::ZERO), "1");
        assert_eq!(ttl_ms(Duration::from_micros(1500)), "2");
        assert_eq!(ttl_ms(Duration::from_secs(2)), "2000");
    }

    /// A dialer whose every connection replays the next scripted server output.
    struct Scripted(std::cell::RefCell<Vec<&'static [u8]>>);

    struct Replay(std::io::Cursor<&'static [u8]>);

    impl std::io::Read for Replay {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl std::io::Write for Replay {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Dialer for Scripted {
        fn dial(&self, _: &str, _: u16, _: &Timeouts) -> std::io::Result<Box<dyn Stream>> {
            let mut scripts = self.0.borrow_mut();
            if scripts.is_empty() {
                return Err(std::io::ErrorKind::ConnectionRefused.into());
            }
            Ok(Box::new(Replay(std::io::Cursor::new(scripts.remove(0)))))
        }
    }

    fn scripted(scripts: &[&'static [u8]]) -> RedisClient<Scripted> {
        let d = Scripted(std::cell::RefCell::new(scripts.to_vec()));
        RedisClient::new(&RedisOptions::default(), d).unwrap()
    }

    #[test]
    fn set_if_absent_wins_only_on_its_own_value() {
        let ttl = Duration::from_secs(1);
        let mut c = scripted(&[b"+OK\r\n$5\r\nmine!\r\n"]);
        assert_eq!(c.set_if_absent("k", b"mine!", ttl), Ok(true));
        // Replayed after the first attempt was applied: SET says nil, the value is ours.
        let mut c = scripted(&[b"$-1\r\n$5\r\nmine!\r\n"]);
        assert_eq!(c.set_if_absent("k", b"mine!", ttl), Ok(true));
        let mut c = scripted(&[b"$-1\r\n$5\r\nother\r\n"]);
        assert_eq!(c.set_if_absent("k", b"mine!", ttl), Ok(false));
        // Replies that belong to someone else's request never become a win.
        let mut c = scripted(&[b"+OK\r\n$5\r\nother\r\n"]);
        assert!(matches!(
            c.set_if_absent("k", b"mine!", ttl),
            Err(StoreError::Protocol(_))
        ));
        let mut c = scripted(&[b"+OK\r\n+OK\r\n"]);
        assert!(matches!(
            c.set_if_absent("k", b"mine!", ttl),
            Err(StoreError::Protocol(_))
        ));
        let mut c = scripted(&[b":1\r\n$5\r\nmine!\r\n"]);
        assert!(matches!(
            c.set_if_absent("k", b"mine!", ttl),
            Err(StoreError::Protocol(_))
        ));
    }

    #[test]
    fn wrong_shapes_are_protocol_errors() {
        assert!(matches!(
            scripted(&[b":1\r\n"]).get("k"),
            Err(StoreError::Protocol(_))
        ));
        assert!(matches!(
            scripted(&[b"$1\r\nx\r\n"]).delete("k"),
            Err(StoreError::Protocol(_))
        ));
        assert!(matches!(
            scripted(&[b":-3\r\n"]).ttl("k"),
            Err(StoreError::Protocol(_))
        ));
        assert!(matches!(
            scripted(&[b"+PONGX\r\n"]).ping(),
            Err(StoreError::Protocol(_))
        ));
        assert!(matches!(
            scripted(&[b"?\r\n"]).get("k"),
            Err(StoreError::Protocol(_))
        ));
        assert_eq!(scripted(&[b":-1\r\n"]).ttl("k"), Ok(Some(None)));
        assert_eq!(
            scripted(&[b"-ERR no\r\n"]).get("k"),
            Err(StoreError::Refused("ERR no".into()))
        );
    }

    #[test]
    fn closed_connections_are_retried_and_garbage_is_not() {
        let mut c = scripted(&[b"", b"$1\r\nv\r\n"]);
        assert_eq!(c.get("k"), Ok(Some(b"v".to_vec())));
        assert_eq!((c.stats().connects, c.stats().retries), (2, 1));
        let mut c = scripted(&[b"$5\r\nab", b"$1\r\nv\r\n"]);
        assert_eq!(
            c.get("k"),
            Ok(Some(b"v".to_vec())),
            "EOF mid-reply: retried"
        );
        let mut c = scripted(&[b"%1\r\n", b"$1\r\nv\r\n"]);
        assert!(matches!(c.get("k"), Err(StoreError::Protocol(_))));
        assert_eq!(c.stats().retries, 0);
        let mut c = scripted(&[b"", b"", b""]);
        assert!(matches!(c.get("k"), Err(StoreError::Unavailable(_))));
        assert_eq!(c.stats().retries, 2, "max_retries");
    }

    #[test]
    fn master_addresses() {
        let b = |s: &str| Frame::Bulk(s.as_bytes().to_vec());
        assert_eq!(
            master_addr(&[b("127.0.0.1"), b("6379")])
                .unwrap()
                .to_string(),
            "127.0.0.1:6379"
        );
        assert!(master_addr(&[b("127.0.0.1"), b("x")]).is_none());
        assert!(master_addr(&[b("127.0.0.1")]).is_none());
        assert!(master_addr(&[b(""), b("1")]).is_none());
    }
}

/// A TLS peer that trickles its handshake a byte at a time (before any certificate is checked)
/// is cut off by the dial timeout, not held for as long as each byte comes within a read timeout.
#[cfg(test)]
mod tls_handshake_deadline {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::net::tls::TlsOptions;
    use std::cell::Cell;
    use std::rc::Rc;

    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        reads: Rc<Cell<usize>>,
    }

    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(10));
            self.reads.set(self.reads.get() + 1);
            match (self.bytes.get(self.at), buf.first_mut()) {
                (Some(&b), Some(o)) => {
                    *o = b;
                    self.at += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    impl std::io::Write for Trickle {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct D(Rc<Cell<usize>>);

    impl Dialer for D {
        fn dial(&self, _: &str, _: u16, _: &Timeouts) -> std::io::Result<Box<dyn Stream>> {
            // The header of a 16 KiB handshake record, then its body a byte at a time.
            let mut bytes = vec![0x16, 0x03, 0x03, 0x40, 0x00];
            bytes.extend(std::iter::repeat_n(0u8, 300));
            Ok(Box::new(Trickle {
                bytes,
                at: 0,
                reads: self.0.clone(),
            }))
        }
    }

    #[test]
    fn a_trickled_handshake_is_cut_off_by_the_dial_timeout() {
        let reads = Rc::new(Cell::new(0));
        let opts = RedisOptions {
            addresses: vec!["redis.example:6380".into()],
            tls: Some(TlsOptions::new()),
            max_retries: 0,
            timeouts: Timeouts {
                connect: Duration::from_millis(100),
                read: Duration::from_millis(100),
                write: Duration::from_millis(100),
            },
            ..RedisOptions::default()
        };
        let mut c = RedisClient::new(&opts, D(reads.clone())).unwrap();
        let t0 = std::time::Instant::now();
        let r = c.get("k");
        let took = t0.elapsed();
        assert!(r.is_err(), "{r:?}");
        assert!(
            took < Duration::from_millis(1000),
            "held for {took:?} ({} reads)",
            reads.get()
        );
    }
}
