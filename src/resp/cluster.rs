//! Redis Cluster key slots and the slot map (Redis Cluster specification, "Key distribution
//! model" and "Redirection and resharding").

use std::fmt;

use super::frame::Frame;
use crate::store::StoreError;

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// A server address: host name or IP literal, and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Parses `host:port`, `[v6]:port`, or a bare `host` (then `default_port`).
    ///
    /// # Errors
    /// A message naming what was expected when the text is not an address.
    pub fn parse(s: &str, default_port: u16) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("expected host:port, found {s:?}");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad()),
            }
        } else {
            match s.rsplit_once(':') {
                // More than one colon without brackets: a bare IPv6 literal.
                Some((h, _)) if h.contains(':') => (s, None),
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad()),
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as the cluster spec requires.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`. When the key contains `{...}` with at least one byte between the
/// first `{` and the first `}` after it, only those bytes are hashed (hash tags), so that keys
/// meant to live together can be put in the same slot.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = key.get(open + 1..)?;
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| rest.get(..close)).flatten()
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// Which node serves each slot, as last learned from `CLUSTER SLOTS` and `MOVED` replies.
#[derive(Debug, Clone, Default)]
pub struct SlotMap {
    nodes: Vec<NodeAddr>,
    /// Index into `nodes` per slot; `u16::MAX` for a slot no node was reported for. Empty
    /// until the first map is loaded.
    slots: Vec<u16>,
}

const UNKNOWN: u16 = u16::MAX;

impl SlotMap {
    /// Whether no map has been loaded.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forgets the map (after a node failed; the next command reloads it).
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.slots.clear();
    }

    /// The node serving `slot`, if known.
    pub fn node(&self, slot: u16) -> Option<&NodeAddr> {
        let i = *self.slots.get(usize::from(slot))?;
        self.nodes.get(usize::from(i))
    }

    /// Any known node (for commands without a key).
    pub fn any_node(&self) -> Option<&NodeAddr> {
        self.nodes.first()
    }

    /// The nodes the map knows.
    pub fn nodes(&self) -> &[NodeAddr] {
        &self.nodes
    }

    /// Records that `slot` is served by `addr` (a `MOVED` reply).
    pub fn set(&mut self, slot: u16, addr: NodeAddr) {
        if self.slots.is_empty() {
            self.slots = vec![UNKNOWN; usize::from(SLOTS)];
        }
        let i = self.index(addr);
        if let Some(s) = self.slots.get_mut(usize::from(slot)) {
            *s = i;
        }
    }

    fn index(&mut self, addr: NodeAddr) -> u16 {
        if let Some(i) = self.nodes.iter().position(|n| *n == addr) {
            return u16::try_from(i).unwrap_or(UNKNOWN);
        }
        // At most one node per slot can exist, so this never exceeds SLOTS.
        self.nodes.push(addr);
        u16::try_from(self.nodes.len() - 1).unwrap_or(UNKNOWN)
    }

    /// Builds the map from a `CLUSTER SLOTS` reply: an array of `[start, end, [host, port, id,
    /// ...], replicas...]`. An empty or `?` host means "the node you asked" (`asked`).
    ///
    /// # Errors
    /// [`StoreError::Protocol`] when the reply does not have that shape.
    pub fn from_cluster_slots(reply: &Frame, asked: &NodeAddr) -> Result<Self, StoreError> {
        let bad = |what: &str| StoreError::Protocol(format!("CLUSTER SLOTS: {what}"));
        let Frame::Array(ranges) = reply else {
            return Err(bad(&format!("expected an array, found {}", reply.kind())));
        };
        let mut map = SlotMap {
            nodes: Vec::new(),
            slots: vec![UNKNOWN; usize::from(SLOTS)],
        };
        for range in ranges {
            let Frame::Array(items) = range else {
                return Err(bad("expected a slot range array"));
            };
            let (
                Some(Frame::Integer(start)),
                Some(Frame::Integer(end)),
                Some(Frame::Array(master)),
            ) = (items.first(), items.get(1), items.get(2))
            else {
                return Err(bad("expected [start, end, [host, port, ...]]"));
            };
            let (Ok(start), Ok(end)) = (u16::try_from(*start), u16::try_from(*end)) else {
                return Err(bad("slot out of range"));
            };
            if start > end || end >= SLOTS {
                return Err(bad("slot out of range"));
            }
            let host = match master.first().and_then(Frame::as_bytes) {
                Some(b"") | Some(b"?") => asked.host.clone(),
                Some(h) => String::from_utf8(h.to_vec()).map_err(|_| bad("host is not UTF-8"))?,
                None => return Err(bad("expected a host")),
            };
            let port = match master.get(1) {
                Some(Frame::Integer(p)) => u16::try_from(*p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("port out of range"))?,
                _ => return Err(bad("expected a port")),
            };
            let i = map.index(NodeAddr { host, port });
            for s in start..=end {
                if let Some(slot) = map.slots.get_mut(usize::from(s)) {
                    *slot = i;
                }
            }
        }
        if map.nodes.is_empty() {
            return Err(bad("no slot is served (is the cluster created?)"));
        }
        Ok(map)
    }
}

/// A cluster redirection found in an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot host:port`: the slot now lives on that node; update the map.
    Moved(u16, NodeAddr),
    /// `ASK slot host:port`: ask that node once, after `ASKING`; the map stays.
    Ask(u16, NodeAddr),
}

impl Redirect {
    /// Parses `MOVED`/`ASK` error text. An empty host (`:6380`, sent when the node does not know
    /// its own endpoint) means the host that replied.
    pub fn parse(msg: &str, replied: &NodeAddr) -> Option<Self> {
        let mut parts = msg.split(' ');
        let kind = parts.next()?;
        let slot = parts.next()?.parse::<u16>().ok().filter(|s| *s < SLOTS)?;
        let addr = parts.next()?;
        let addr = match addr.strip_prefix(':') {
            Some(port) => NodeAddr {
                host: replied.host.clone(),
                port: port.parse().ok().filter(|p| *p != 0)?,
            },
            None => NodeAddr::parse(addr, 0).ok().filter(|a| a.port != 0)?,
        };
        match kind {
            "MOVED" => Some(Redirect::Moved(slot, addr)),
            "ASK" => Some(Redirect::Ask(slot, addr)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn crc16_and_slots_match_the_spec() {
        // The cluster spec's reference vector: CRC16("123456789") = 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b""), 0);
        // Hash tags, with the spec's examples.
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{bar"), crc16(b"{bar") % SLOTS);
    }

    #[test]
    fn addresses() {
        let a = NodeAddr::parse("redis.local:6380", 6379).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("redis.local", 6380));
        assert_eq!(NodeAddr::parse("redis", 6379).unwrap().port, 6379);
        let v6 = NodeAddr::parse("[::1]:7000", 6379).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 7000));
        assert_eq!(v6.to_string(), "[::1]:7000");
        assert_eq!(NodeAddr::parse("::1", 6379).unwrap().port, 6379);
        for bad in ["", ":6379", "h:0", "h:99999", "h:x", "[::1]x", "a b:1"] {
            assert!(NodeAddr::parse(bad, 6379).is_err(), "{bad}");
        }
    }

    #[test]
    fn slot_map_from_reply_and_moved() {
        let node = |h: &str, p: i64| {
            Frame::Array(vec![
                Frame::Bulk(h.as_bytes().to_vec()),
                Frame::Integer(p),
                Frame::Bulk(b"id".to_vec()),
            ])
        };
        let reply = Frame::Array(vec![
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(8191),
                node("10.0.0.1", 7000),
            ]),
            Frame::Array(vec![
                Frame::Integer(8192),
                Frame::Integer(16383),
                node("", 7001),
                node("10.0.0.3", 7003),
            ]),
        ]);
        let asked = NodeAddr::parse("seed:7001", 0).unwrap();
        let mut m = SlotMap::from_cluster_slots(&reply, &asked).unwrap();
        assert_eq!(m.node(0).unwrap().to_string(), "10.0.0.1:7000");
        assert_eq!(m.node(16383).unwrap().to_string(), "seed:7001");
        assert!(m.node(16384).is_none());
        m.set(5, NodeAddr::parse("seed:7001", 0).unwrap());
        assert_eq!(m.node(5).unwrap().to_string(), "seed:7001");
        assert_eq!(m.nodes().len(), 2);
        assert!(SlotMap::from_cluster_slots(&Frame::Array(vec![]), &asked).is_err());
        assert!(SlotMap::from_cluster_slots(&Frame::Integer(1), &asked).is_err());
        let bad = Frame::Array(vec![Frame::Array(vec![
            Frame::Integer(0),
            Frame::Integer(16384),
            node("h", 1),
        ])]);
        assert!(SlotMap::from_cluster_slots(&bad, &asked).is_err());
    }

    #[test]
    fn redirects() {
        let me = NodeAddr::parse("10.0.0.9:7000", 0).unwrap();
        assert_eq!(
            Redirect::parse("MOVED 3999 127.0.0.1:6381", &me),
            Some(Redirect::Moved(
                3999,
                NodeAddr::parse("127.0.0.1:6381", 0).unwrap()
            ))
        );
        assert_eq!(
            Redirect::parse("ASK 1 :6381", &me),
            Some(Redirect::Ask(
                1,
                NodeAddr::parse("10.0.0.9:6381", 0).unwrap()
            ))
        );
        assert_eq!(Redirect::parse("MOVED 99999 h:1", &me), None);
        assert_eq!(Redirect::parse("ERR x y", &me), None);
        assert_eq!(Redirect::parse("MOVED 1", &me), None);
        // Port 0 is nobody's address.
        assert_eq!(Redirect::parse("MOVED 1 :0", &me), None);
        assert_eq!(Redirect::parse("ASK 1 h:0", &me), None);
    }
}
