//! The WasmEdge socket extension, V2 shapes, over real TCP, with the semantics of wasi-go v0.8.0
//! as Traefik uses it (platform report §6, §7): blocking sockets from `sock_open`, non-blocking
//! after `fd_fdstat_set_flags(NONBLOCK)`, `EINPROGRESS` from a non-blocking connect, `EAGAIN`
//! when no data is ready, `SO_ERROR` as a WASI errno with `value_len` passed by value,
//! `poll_oneoff` that really blocks with millisecond granularity.
//!
//! Differences from Traefik 3.7.x, on purpose:
//! - every instance has its **own** socket table (the behaviour of the fix in traefik PR #13617,
//!   not the shared-table bug #11629), and sockets left open are closed when the instance is
//!   dropped;
//! - socket descriptors are numbered from [`FD_BASE`] up (lowest free), so they never collide
//!   with wasmtime-wasi's descriptors (Traefik numbers them lowest-free after stdio and mounts);
//! - `sock_bind`, `sock_listen`, `sock_send_to` and `sock_recv_from` link but answer `ENOTSUP`;
//!   a `poll_oneoff` that mixes sockets with an absolute MONOTONIC clock gets an `ENOTSUP` event
//!   for that clock.
//!
//! `fd_close`, `fd_fdstat_get`, `fd_fdstat_set_flags`, `fd_read`, `fd_write`, `poll_oneoff`,
//! `sock_recv`, `sock_send` and `sock_shutdown` shadow wasmtime-wasi's versions and hand every
//! descriptor that is not a socket of this table back to wasmtime-wasi.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno as SysErrno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, Shutdown, SocketType};
use wasmtime::{AsContextMut, Caller, Linker};

use super::memory;
use super::state::InstanceState;

/// The first socket descriptor number.
pub const FD_BASE: u32 = 1024;

/// WASI preview1 errno values used here.
pub mod errno {
    #![allow(missing_docs)]
    pub const SUCCESS: i32 = 0;
    pub const ACCES: i32 = 2;
    pub const ADDRINUSE: i32 = 3;
    pub const ADDRNOTAVAIL: i32 = 4;
    pub const AFNOSUPPORT: i32 = 5;
    pub const AGAIN: i32 = 6;
    pub const ALREADY: i32 = 7;
    pub const BADF: i32 = 8;
    pub const CANCELED: i32 = 11;
    pub const CONNABORTED: i32 = 13;
    pub const CONNREFUSED: i32 = 14;
    pub const CONNRESET: i32 = 15;
    pub const DESTADDRREQ: i32 = 17;
    pub const FAULT: i32 = 21;
    pub const HOSTUNREACH: i32 = 23;
    pub const INPROGRESS: i32 = 26;
    pub const INTR: i32 = 27;
    pub const INVAL: i32 = 28;
    pub const IO: i32 = 29;
    pub const ISCONN: i32 = 30;
    pub const MFILE: i32 = 33;
    pub const MSGSIZE: i32 = 35;
    pub const NETDOWN: i32 = 38;
    pub const NETRESET: i32 = 39;
    pub const NETUNREACH: i32 = 40;
    pub const NFILE: i32 = 41;
    pub const NOBUFS: i32 = 42;
    pub const NOMEM: i32 = 48;
    pub const NOPROTOOPT: i32 = 50;
    pub const NOSYS: i32 = 52;
    pub const NOTCONN: i32 = 53;
    pub const NOTSOCK: i32 = 57;
    pub const NOTSUP: i32 = 58;
    pub const PERM: i32 = 63;
    pub const PIPE: i32 = 64;
    pub const PROTONOSUPPORT: i32 = 66;
    pub const PROTOTYPE: i32 = 67;
    pub const TIMEDOUT: i32 = 73;
}

/// Linux errno → WASI errno, as wasi-go's `makeErrno` does. wasi-go panics (a guest trap) on
/// errnos it does not map, e.g. `EHOSTDOWN` and `ESHUTDOWN`.
fn wasi_errno(e: SysErrno) -> wasmtime::Result<i32> {
    use rustix::io::Errno as E;
    Ok(match e {
        E::ACCESS => errno::ACCES,
        E::ADDRINUSE => errno::ADDRINUSE,
        E::ADDRNOTAVAIL => errno::ADDRNOTAVAIL,
        E::AFNOSUPPORT => errno::AFNOSUPPORT,
        E::AGAIN => errno::AGAIN,
        E::ALREADY => errno::ALREADY,
        E::BADF => errno::BADF,
        E::CANCELED => errno::CANCELED,
        E::CONNABORTED => errno::CONNABORTED,
        E::CONNREFUSED => errno::CONNREFUSED,
        E::CONNRESET => errno::CONNRESET,
        E::DESTADDRREQ => errno::DESTADDRREQ,
        E::FAULT => errno::FAULT,
        E::HOSTUNREACH => errno::HOSTUNREACH,
        E::INPROGRESS => errno::INPROGRESS,
        E::INTR => errno::INTR,
        // wasi-go maps a connect EINVAL to EAFNOSUPPORT; elsewhere EINVAL stays EINVAL.
        E::INVAL => errno::INVAL,
        E::IO => errno::IO,
        E::ISCONN => errno::ISCONN,
        E::MFILE => errno::MFILE,
        E::MSGSIZE => errno::MSGSIZE,
        E::NETDOWN => errno::NETDOWN,
        E::NETRESET => errno::NETRESET,
        E::NETUNREACH => errno::NETUNREACH,
        E::NFILE => errno::NFILE,
        E::NOBUFS => errno::NOBUFS,
        E::NOMEM => errno::NOMEM,
        E::NOPROTOOPT => errno::NOPROTOOPT,
        E::NOSYS => errno::NOSYS,
        E::NOTCONN => errno::NOTCONN,
        E::NOTSOCK => errno::NOTSOCK,
        E::OPNOTSUPP => errno::NOTSUP,
        E::PERM => errno::PERM,
        E::PIPE => errno::PIPE,
        E::PROTONOSUPPORT => errno::PROTONOSUPPORT,
        E::PROTOTYPE => errno::PROTOTYPE,
        E::TIMEDOUT => errno::TIMEDOUT,
        other => wasmtime::bail!("unsupported syscall errno {}", other.raw_os_error()),
    })
}

/// One open socket.
#[derive(Debug)]
pub(crate) struct Sock {
    fd: OwnedFd,
    /// WASI family: 1 inet, 2 inet6.
    family: u8,
    stream: bool,
    fdflags: u16,
}

/// The socket table of one instance.
#[derive(Debug)]
pub(crate) struct SocketTable {
    socks: BTreeMap<u32, Sock>,
    open: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
}

impl SocketTable {
    /// An empty table that counts into the middleware's `open`/`opened` counters.
    pub fn new(open: Arc<AtomicUsize>, opened: Arc<AtomicUsize>) -> Self {
        Self {
            socks: BTreeMap::new(),
            open,
            opened,
        }
    }

    fn insert(&mut self, s: Sock) -> u32 {
        let mut fd = FD_BASE;
        for k in self.socks.keys() {
            if *k == fd {
                fd += 1;
            } else if *k > fd {
                break;
            }
        }
        self.socks.insert(fd, s);
        self.open.fetch_add(1, Ordering::SeqCst);
        self.opened.fetch_add(1, Ordering::SeqCst);
        fd
    }

    fn get(&self, fd: i32) -> Option<&Sock> {
        self.socks.get(&(fd as u32))
    }

    fn remove(&mut self, fd: i32) -> Option<Sock> {
        let s = self.socks.remove(&(fd as u32));
        if s.is_some() {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
        s
    }

    /// Number of open sockets.
    pub fn len(&self) -> usize {
        self.socks.len()
    }
}

impl Drop for SocketTable {
    fn drop(&mut self) {
        // The OwnedFds close the OS sockets; keep the counter honest.
        self.open.fetch_sub(self.socks.len(), Ordering::SeqCst);
    }
}

type Res<T> = wasmtime::Result<T>;

/// Calls wasmtime-wasi's own implementation of a WASI function (for descriptors that are not
/// sockets of this table). `$async` functions run on wasmtime-wasi's tokio runtime.
macro_rules! delegate {
    ($caller:ident, async $func:ident($($arg:expr),*)) => {{
        let fuel = $caller.as_context_mut().hostcall_fuel();
        let mem = memory::of(&mut $caller)?;
        let (data, st) = mem.data_and_store_mut(&mut $caller);
        let ctx = &mut st.wasi;
        wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1::set_hostcall_fuel(ctx, fuel);
        let mut gm = wiggle::GuestMemory::Unshared(data);
        wasmtime_wasi::runtime::in_tokio(wasmtime_wasi::p1::wasi_snapshot_preview1::$func(ctx, &mut gm, $($arg),*))
    }};
    ($caller:ident, $func:ident($($arg:expr),*)) => {{
        let fuel = $caller.as_context_mut().hostcall_fuel();
        let mem = memory::of(&mut $caller)?;
        let (data, st) = mem.data_and_store_mut(&mut $caller);
        let ctx = &mut st.wasi;
        wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1::set_hostcall_fuel(ctx, fuel);
        let mut gm = wiggle::GuestMemory::Unshared(data);
        wasmtime_wasi::p1::wasi_snapshot_preview1::$func(ctx, &mut gm, $($arg),*)
    }};
}

fn is_socket(caller: &Caller<'_, InstanceState>, fd: i32) -> bool {
    caller.data().sockets.get(fd).is_some()
}

fn put_u32(data: &mut [u8], ptr: i32, v: u32, what: &str) -> Res<()> {
    memory::write(data, ptr as u32, &v.to_le_bytes(), what)
}

/// The `(ptr, len)` pairs of an iovec array.
fn iovecs(data: &[u8], ptr: i32, count: i32) -> Res<Vec<(u32, u32)>> {
    let raw = memory::read(data, ptr as u32, (count as u32).saturating_mul(8), "iovecs")?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| {
            (
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect())
}

/// `recvmsg` into the guest's iovecs; `Ok(Err(errno))` for a socket error.
fn recv_into(
    data: &mut [u8],
    sock: &Sock,
    iovs: &[(u32, u32)],
    flags: RecvFlags,
) -> Res<Result<usize, i32>> {
    let total: usize = iovs.iter().map(|(_, l)| *l as usize).sum();
    for (p, l) in iovs {
        memory::slice_mut(data, *p, *l, "iovec")?;
    }
    let mut tmp = vec![0u8; total.min(16 << 20)];
    let n = loop {
        match rustix::net::recv(&sock.fd, &mut tmp[..], flags) {
            Ok((n, _)) => break n,
            Err(SysErrno::INTR) => continue,
            Err(e) => return Ok(Err(wasi_errno(e)?)),
        }
    };
    let mut off = 0;
    for (p, l) in iovs {
        if off >= n {
            break;
        }
        let k = (*l as usize).min(n - off);
        let dst = memory::slice_mut(data, *p, k as u32, "iovec")?;
        if let Some(src) = tmp.get(off..off + k) {
            dst.copy_from_slice(src);
        }
        off += k;
    }
    Ok(Ok(n))
}

/// `sendmsg` of the guest's iovecs (with `MSG_NOSIGNAL`: a closed peer is `EPIPE`, not a signal).
fn send_from(data: &[u8], sock: &Sock, iovs: &[(u32, u32)]) -> Res<Result<usize, i32>> {
    let mut buf = Vec::new();
    for (p, l) in iovs {
        buf.extend_from_slice(memory::read(data, *p, *l, "iovec")?);
    }
    loop {
        match rustix::net::send(&sock.fd, &buf, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(Ok(n)),
            Err(SysErrno::INTR) => continue,
            Err(e) => return Ok(Err(wasi_errno(e)?)),
        }
    }
}

/// Parses a WasmEdge address descriptor (`{buf_ptr, buf_len}`): raw IPv4 (4), raw IPv6 (16), or
/// the V2 128-byte form with a little-endian family.
fn read_address(data: &[u8], addr_ptr: i32) -> Res<Option<IpAddr>> {
    let buf = memory::read_u32(data, addr_ptr as u32, "address")?;
    let len = memory::read_u32(data, (addr_ptr as u32).wrapping_add(4), "address")?;
    let b = memory::read(data, buf, len, "address")?;
    let raw: &[u8] = if len == 128 {
        match u16::from_le_bytes([b[0], b[1]]) {
            1 => &b[2..6],
            2 => &b[2..18],
            // Unix sockets are not supported here.
            _ => return Ok(None),
        }
    } else {
        b
    };
    Ok(match raw.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(raw);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    })
}

/// Writes a V2 address (128-byte buffer) for getlocaladdr/getpeeraddr.
fn write_v2_address(data: &mut [u8], addr_ptr: i32, sa: SocketAddr) -> Res<Option<u16>> {
    let buf = memory::read_u32(data, addr_ptr as u32, "address")?;
    let len = memory::read_u32(data, (addr_ptr as u32).wrapping_add(4), "address")?;
    if len != 128 {
        return Ok(None);
    }
    let dst = memory::slice_mut(data, buf, 128, "address")?;
    match sa.ip() {
        IpAddr::V4(ip) => {
            dst[0..2].copy_from_slice(&1u16.to_le_bytes());
            dst[2..6].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            dst[0..2].copy_from_slice(&2u16.to_le_bytes());
            dst[2..18].copy_from_slice(&ip.octets());
        }
    }
    Ok(Some(sa.port()))
}

fn to_std(addr: &rustix::net::SocketAddrAny) -> Option<SocketAddr> {
    SocketAddr::try_from(addr.clone()).ok()
}

/// The service part of `sock_getaddrinfo` (Go's `LookupPort`/`parsePort`).
fn service_port(service: &str, numeric: bool) -> Option<u16> {
    if numeric {
        return service.parse().ok();
    }
    if service.is_empty() {
        return Some(0);
    }
    if let Ok(p) = service.parse::<u16>() {
        return Some(p);
    }
    match service {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn strip_nul(b: &[u8]) -> &[u8] {
    b.strip_suffix(&[0]).unwrap_or(b)
}

/// `sock_getaddrinfo` as wasi-go implements it; returns the errno.
#[allow(clippy::too_many_arguments)]
fn getaddrinfo(
    data: &mut [u8],
    node: i32,
    node_len: i32,
    service: i32,
    service_len: i32,
    hints: i32,
    res_ptr_ptr: i32,
    max_res: i32,
    res_len_out: i32,
) -> Res<i32> {
    let name = String::from_utf8_lossy(strip_nul(memory::read(
        data,
        node as u32,
        node_len as u32,
        "node",
    )?))
    .into_owned();
    let serv = String::from_utf8_lossy(strip_nul(memory::read(
        data,
        service as u32,
        service_len as u32,
        "service",
    )?))
    .into_owned();
    if (node_len == 0 && service_len == 0) || max_res == 1 || max_res == 0 {
        return Ok(errno::INVAL);
    }
    let h = memory::read(data, hints as u32, 28, "hints")?;
    let flags = u16::from_le_bytes([h[0], h[1]]);
    let (family, socktype) = (h[2], h[3]);
    let protocol = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    const PASSIVE: u16 = 1;
    const NUMERIC_HOST: u16 = 4;
    const NUMERIC_SERVICE: u16 = 8;
    // wasi-go: stream with protocol != UDP → tcp*, dgram with protocol != TCP → udp*, any → ip*.
    let socktype_ok = match socktype {
        2 => protocol != 2,
        1 => protocol != 1,
        0 => true,
        _ => false,
    };
    if !socktype_ok {
        return Ok(errno::NOTSUP);
    }
    let (v4, v6) = match family {
        0 => (true, true),
        1 => (true, false),
        2 => (false, true),
        _ => return Ok(errno::NOTSUP),
    };
    let Some(port) = service_port(&serv, flags & NUMERIC_SERVICE != 0) else {
        return Ok(errno::INVAL);
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    if flags & NUMERIC_HOST != 0 {
        match name.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => return Ok(errno::INVAL),
        }
    } else if name.is_empty() {
        if flags & PASSIVE == 0 {
            return Ok(errno::INVAL);
        }
        ips.push(if family == 2 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        });
    } else if let Ok(ip) = name.parse::<IpAddr>() {
        ips.push(ip);
    } else {
        // Go's LookupIP; any failure is ECANCELED in wasi-go v0.8.0.
        let Ok(found) = (name.as_str(), 0u16).to_socket_addrs() else {
            return Ok(errno::CANCELED);
        };
        let mut v4s: Vec<IpAddr> = Vec::new();
        let mut v6s: Vec<IpAddr> = Vec::new();
        for a in found {
            let ip = a.ip();
            let list = if ip.is_ipv4() { &mut v4s } else { &mut v6s };
            if !list.contains(&ip) {
                list.push(ip);
            }
        }
        if v4 {
            ips.extend(v4s);
        }
        if v6 {
            ips.extend(v6s);
        }
    }
    ips.truncate(max_res as usize);
    if ips.is_empty() {
        put_u32(data, res_len_out, 0, "res_len")?;
        return Ok(errno::SUCCESS);
    }
    let mut rec = memory::read_u32(data, res_ptr_ptr as u32, "res")?;
    let mut count = 0u32;
    for ip in ips {
        let r = memory::read(data, rec, 28, "addrinfo")?.to_vec();
        let addr = u32::from_le_bytes([r[12], r[13], r[14], r[15]]);
        let next = u32::from_le_bytes([r[24], r[25], r[26], r[27]]);
        if addr == 0 {
            return Ok(errno::FAULT);
        }
        memory::write(data, rec.wrapping_add(8), &16u32.to_le_bytes(), "addrinfo")?;
        let Ok(sa) = memory::read(data, addr, 12, "sockaddr").map(<[u8]>::to_vec) else {
            return Ok(errno::FAULT);
        };
        let mut sa_len = u32::from_le_bytes([sa[4], sa[5], sa[6], sa[7]]);
        if sa_len == 14 {
            sa_len = 26; // "WasmEdge lies."
        }
        let sa_ptr = u32::from_le_bytes([sa[8], sa[9], sa[10], sa[11]]);
        let Ok(dst) = memory::slice_mut(data, sa_ptr, sa_len, "sa_data") else {
            return Ok(errno::FAULT);
        };
        let fam = match ip {
            IpAddr::V4(a) => {
                if dst.len() < 6 {
                    return Ok(errno::FAULT);
                }
                dst[0..2].copy_from_slice(&port.to_be_bytes());
                dst[2..6].copy_from_slice(&a.octets());
                1u8
            }
            IpAddr::V6(a) => {
                if dst.len() < 18 {
                    return Ok(errno::FAULT);
                }
                dst[0..2].copy_from_slice(&port.to_be_bytes());
                dst[2..18].copy_from_slice(&a.octets());
                2u8
            }
        };
        memory::write(data, addr, &[fam], "sockaddr")?;
        memory::write(data, rec.wrapping_add(20), &0u32.to_le_bytes(), "addrinfo")?;
        count += 1;
        if next == 0 {
            break;
        }
        rec = next;
    }
    put_u32(data, res_len_out, count, "res_len")?;
    Ok(errno::SUCCESS)
}

fn now_realtime_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// `poll_oneoff` when at least one subscription is a socket of this table (wasi-go's
/// `PollOneOff`: poll(2) in a loop with a millisecond timeout, the earliest clock only, fired up
/// to 1 ms early; readiness reported without `nbytes` or flags).
fn poll_sockets(
    data: &mut [u8],
    table: &SocketTable,
    input: i32,
    output: i32,
    nsubs: i32,
    nevents: i32,
) -> Res<i32> {
    if nsubs <= 0 {
        return Ok(errno::INVAL);
    }
    let n = nsubs as u32;
    let subs = memory::read(data, input as u32, n.saturating_mul(48), "subscriptions")?.to_vec();
    memory::slice_mut(data, output as u32, n.saturating_mul(32), "events")?;
    // (userdata, errno, type) per subscription, once it completed.
    let mut events: Vec<Option<(u64, u16, u8)>> = vec![None; n as usize];
    let mut polled: Vec<(usize, &Sock, PollFlags)> = Vec::new();
    let mut timeout: Option<i128> = None; // ns; None = infinite
    let mut timeout_idx: Option<usize> = None;
    let mut immediate = 0;
    for (i, s) in subs.chunks_exact(48).enumerate() {
        let userdata = u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        let tag = s[8];
        let u32_at = |o: usize| u32::from_le_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]);
        let u64_at = |o: usize| {
            u64::from_le_bytes([
                s[o],
                s[o + 1],
                s[o + 2],
                s[o + 3],
                s[o + 4],
                s[o + 5],
                s[o + 6],
                s[o + 7],
            ])
        };
        match tag {
            1 | 2 => {
                let fd = u32_at(16) as i32;
                match table.get(fd) {
                    Some(sock) => {
                        let flags = if tag == 2 {
                            PollFlags::OUT
                        } else {
                            PollFlags::IN | PollFlags::PRI | PollFlags::HUP
                        };
                        polled.push((i, sock, flags));
                    }
                    None => {
                        // Not a socket: files and stdio are always ready for poll(2).
                        events[i] = Some((userdata, 0, tag));
                        immediate += 1;
                    }
                }
            }
            0 => {
                let id = u32_at(16);
                let t = u64_at(24).wrapping_add(u64_at(32)) as i64 as i128;
                let abs = u16::from_le_bytes([s[40], s[41]]) & 1 != 0;
                let t = match (id, abs) {
                    (0 | 1, false) => t,
                    (0, true) => t - now_realtime_ns(),
                    _ => {
                        events[i] = Some((userdata, errno::NOTSUP as u16, 0));
                        immediate += 1;
                        continue;
                    }
                };
                let t = t.max(0);
                if timeout.is_none_or(|cur| t < cur) {
                    timeout = Some(t);
                    timeout_idx = Some(i);
                }
            }
            _ => {
                events[i] = Some((userdata, errno::INVAL as u16, tag));
                immediate += 1;
            }
        }
    }
    if immediate > 0 {
        timeout = Some(0);
    }
    let deadline =
        timeout.map(|t| Instant::now() + Duration::from_nanos(t.min(u64::MAX as i128) as u64));
    loop {
        let wait_ms: Option<u64> = match (timeout, deadline) {
            (None, _) => None,
            (Some(0), _) => Some(0),
            (Some(_), Some(d)) => {
                Some(d.saturating_duration_since(Instant::now()).as_millis() as u64)
            }
            (Some(_), None) => Some(0),
        };
        let ts = wait_ms.map(|ms| Timespec {
            tv_sec: (ms / 1000) as i64,
            tv_nsec: ((ms % 1000) * 1_000_000) as i64,
        });
        let mut fds: Vec<PollFd<'_>> = polled
            .iter()
            .map(|(_, s, f)| PollFd::new(&s.fd, *f))
            .collect();
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(_) | Err(SysErrno::INTR) => {}
            Err(e) => return wasi_errno(e),
        }
        if let (Some(i), Some(d)) = (timeout_idx, deadline) {
            if d < Instant::now() + Duration::from_millis(1) && events[i].is_none() {
                let ud = u64::from_le_bytes(subs[i * 48..i * 48 + 8].try_into().unwrap_or([0; 8]));
                events[i] = Some((ud, 0, 0));
            }
        }
        for ((i, _, _), pfd) in polled.iter().zip(fds.iter()) {
            if !pfd.revents().is_empty() && events[*i].is_none() {
                let s = &subs[i * 48..i * 48 + 48];
                let ud = u64::from_le_bytes(s[0..8].try_into().unwrap_or([0; 8]));
                events[*i] = Some((ud, 0, s[8]));
            }
        }
        let ready: Vec<(u64, u16, u8)> = events.iter().flatten().copied().collect();
        if !ready.is_empty() {
            let out = memory::slice_mut(data, output as u32, (ready.len() * 32) as u32, "events")?;
            for (slot, (ud, err, ty)) in out.chunks_exact_mut(32).zip(ready.iter()) {
                slot.fill(0);
                slot[0..8].copy_from_slice(&ud.to_le_bytes());
                slot[8..10].copy_from_slice(&err.to_le_bytes());
                slot[10] = *ty;
            }
            put_u32(data, nevents, ready.len() as u32, "nevents")?;
            return Ok(errno::SUCCESS);
        }
    }
}

fn sock_option_get(sock: &Sock, level: i32, name: i32) -> Res<Result<i32, i32>> {
    use rustix::net::sockopt as so;
    let r = match (level, name) {
        (0, 0) => so::socket_reuseaddr(&sock.fd).map(i32::from),
        (0, 1) => Ok(if sock.stream { 2 } else { 1 }),
        (0, 2) => match so::socket_error(&sock.fd) {
            Ok(Ok(())) => Ok(0),
            // SO_ERROR returns the WASI errno number.
            Ok(Err(e)) => Ok(wasi_errno(e)?),
            Err(e) => Err(e),
        },
        (0, 4) => so::socket_broadcast(&sock.fd).map(i32::from),
        (0, 5) => so::socket_send_buffer_size(&sock.fd).map(|v| (v / 2) as i32),
        (0, 6) => so::socket_recv_buffer_size(&sock.fd).map(|v| (v / 2) as i32),
        (0, 7) => so::socket_keepalive(&sock.fd).map(i32::from),
        (0, 8) => so::socket_oobinline(&sock.fd).map(i32::from),
        (0, 13) => so::socket_acceptconn(&sock.fd).map(i32::from),
        (6, 15) => so::tcp_nodelay(&sock.fd).map(i32::from),
        (0 | 6, _) => return Ok(Err(errno::INVAL)),
        _ => return Ok(Err(errno::INVAL)),
    };
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(wasi_errno(e)?)),
    }
}

fn sock_option_set(sock: &Sock, level: i32, name: i32, value: i32) -> Res<i32> {
    use rustix::net::sockopt as so;
    let on = value != 0;
    let r = match (level, name) {
        (0, 0) => so::set_socket_reuseaddr(&sock.fd, on),
        (0, 4) => so::set_socket_broadcast(&sock.fd, on),
        (0, 5) => so::set_socket_send_buffer_size(&sock.fd, value.max(0) as usize),
        (0, 6) => so::set_socket_recv_buffer_size(&sock.fd, value.max(0) as usize),
        (0, 7) => so::set_socket_keepalive(&sock.fd, on),
        (0, 8) => so::set_socket_oobinline(&sock.fd, on),
        (6, 15) => so::set_tcp_nodelay(&sock.fd, on),
        // SO_DONTROUTE has no rustix setter; accept it as a no-op.
        (0, 3) => Ok(()),
        _ => return Ok(errno::INVAL),
    };
    match r {
        Ok(()) => Ok(errno::SUCCESS),
        Err(e) => wasi_errno(e),
    }
}

/// Adds the socket extension and the shadowed WASI functions (call after wasmtime-wasi's, with
/// shadowing allowed).
///
/// # Errors
/// When a definition clashes.
pub(crate) fn add(linker: &mut Linker<InstanceState>) -> Res<()> {
    const M: &str = "wasi_snapshot_preview1";

    linker.func_wrap(
        M,
        "sock_open",
        |mut caller: Caller<'_, InstanceState>,
         family: i32,
         socktype: i32,
         fd_out: i32|
         -> Res<i32> {
            let domain = match family {
                1 => AddressFamily::INET,
                2 => AddressFamily::INET6,
                3 => return Ok(errno::NOTSUP),
                _ => return Ok(errno::INVAL),
            };
            let ty = match socktype {
                1 => SocketType::DGRAM,
                2 => SocketType::STREAM,
                _ => return Ok(errno::INVAL),
            };
            let fd = match rustix::net::socket(domain, ty, None) {
                Ok(fd) => fd,
                Err(e) => return wasi_errno(e),
            };
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            // Check the out pointer before the socket exists in the table.
            memory::slice_mut(data, fd_out as u32, 4, "fd")?;
            let n = st.sockets.insert(Sock {
                fd,
                family: family as u8,
                stream: socktype == 2,
                fdflags: 0,
            });
            put_u32(data, fd_out, n, "fd")?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        M,
        "sock_connect",
        |mut caller: Caller<'_, InstanceState>, fd: i32, addr: i32, port: i32| -> Res<i32> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let Some(sock) = st.sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            let Some(ip) = read_address(data, addr)? else {
                return Ok(errno::INVAL);
            };
            if (ip.is_ipv4() && sock.family != 1) || (ip.is_ipv6() && sock.family != 2) {
                return Ok(errno::AFNOSUPPORT);
            }
            let sa = SocketAddr::new(ip, port as u16);
            match rustix::net::connect(&sock.fd, &sa) {
                Ok(()) => Ok(errno::SUCCESS),
                Err(SysErrno::INVAL) => Ok(errno::AFNOSUPPORT),
                Err(e) => wasi_errno(e),
            }
        },
    )?;

    linker.func_wrap(
        M,
        "sock_getaddrinfo",
        |mut caller: Caller<'_, InstanceState>,
         node: i32,
         node_len: i32,
         service: i32,
         service_len: i32,
         hints: i32,
         res: i32,
         max: i32,
         res_len: i32|
         -> Res<i32> {
            let mem = memory::of(&mut caller)?;
            let data = mem.data_mut(&mut caller);
            getaddrinfo(
                data,
                node,
                node_len,
                service,
                service_len,
                hints,
                res,
                max,
                res_len,
            )
        },
    )?;

    linker.func_wrap(
        M,
        "sock_send",
        |mut caller: Caller<'_, InstanceState>,
         fd: i32,
         si: i32,
         si_len: i32,
         siflags: i32,
         so_len: i32|
         -> Res<i32> {
            if !is_socket(&caller, fd) {
                return delegate!(caller, sock_send(fd, si, si_len, siflags, so_len));
            }
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let iovs = iovecs(data, si, si_len)?;
            let Some(sock) = st.sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            match send_from(data, sock, &iovs)? {
                Ok(n) => {
                    put_u32(data, so_len, n as u32, "so_datalen")?;
                    Ok(errno::SUCCESS)
                }
                Err(e) => Ok(e),
            }
        },
    )?;

    linker.func_wrap(
        M,
        "sock_recv",
        |mut caller: Caller<'_, InstanceState>,
         fd: i32,
         ri: i32,
         ri_len: i32,
         riflags: i32,
         ro_len: i32,
         ro_flags: i32|
         -> Res<i32> {
            if !is_socket(&caller, fd) {
                return delegate!(caller, sock_recv(fd, ri, ri_len, riflags, ro_len, ro_flags));
            }
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let iovs = iovecs(data, ri, ri_len)?;
            let Some(sock) = st.sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            let mut flags = RecvFlags::empty();
            if riflags & 1 != 0 {
                flags |= RecvFlags::PEEK;
            }
            if riflags & 2 != 0 {
                flags |= RecvFlags::WAITALL;
            }
            match recv_into(data, sock, &iovs, flags)? {
                Ok(n) => {
                    put_u32(data, ro_len, n as u32, "ro_datalen")?;
                    memory::write(data, ro_flags as u32, &0u16.to_le_bytes(), "ro_flags")?;
                    Ok(errno::SUCCESS)
                }
                Err(e) => Ok(e),
            }
        },
    )?;

    linker.func_wrap(
        M,
        "sock_shutdown",
        |mut caller: Caller<'_, InstanceState>, fd: i32, how: i32| -> Res<i32> {
            if !is_socket(&caller, fd) {
                return delegate!(caller, sock_shutdown(fd, how));
            }
            let how = match how {
                1 => Shutdown::Read,
                2 => Shutdown::Write,
                3 => Shutdown::Both,
                _ => return Ok(errno::INVAL),
            };
            let Some(sock) = caller.data().sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            match rustix::net::shutdown(&sock.fd, how) {
                Ok(()) => Ok(errno::SUCCESS),
                Err(e) => wasi_errno(e),
            }
        },
    )?;

    linker.func_wrap(
        M,
        "sock_getsockopt",
        |mut caller: Caller<'_, InstanceState>,
         fd: i32,
         level: i32,
         name: i32,
         value: i32,
         value_len: i32|
         -> Res<i32> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let Some(sock) = st.sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            // LINGER, RCVTIMEO, SNDTIMEO, BINDTODEVICE.
            if level == 0 && matches!(name, 9 | 11 | 12 | 14) {
                return Ok(errno::NOTSUP);
            }
            // value_len is passed by value and must be 4.
            if value_len != 4 {
                return Ok(errno::INVAL);
            }
            match sock_option_get(sock, level, name)? {
                Ok(v) => {
                    memory::write(data, value as u32, &v.to_le_bytes(), "value")?;
                    Ok(errno::SUCCESS)
                }
                Err(e) => Ok(e),
            }
        },
    )?;

    linker.func_wrap(
        M,
        "sock_setsockopt",
        |mut caller: Caller<'_, InstanceState>,
         fd: i32,
         level: i32,
         name: i32,
         value: i32,
         value_len: i32|
         -> Res<i32> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let bytes = memory::read(data, value as u32, value_len as u32, "value")?.to_vec();
            let Some(sock) = st.sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            match (level, name) {
                // LINGER, RCVTIMEO, SNDTIMEO, BINDTODEVICE, TYPE, ERROR, ACCEPTCONN.
                (0, 9 | 11 | 12 | 14 | 1 | 2 | 13) => return Ok(errno::NOTSUP),
                (0, 0 | 3 | 4 | 5 | 6 | 7 | 8) | (6, 15) => {}
                _ => return Ok(errno::INVAL),
            }
            if bytes.len() != 4 {
                return Ok(errno::INVAL);
            }
            let v = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            sock_option_set(sock, level, name, v)
        },
    )?;

    for name in ["sock_getlocaladdr", "sock_getpeeraddr"] {
        linker.func_wrap(
            M,
            name,
            move |mut caller: Caller<'_, InstanceState>,
                  fd: i32,
                  addr: i32,
                  port_out: i32|
                  -> Res<i32> {
                let mem = memory::of(&mut caller)?;
                let (data, st) = mem.data_and_store_mut(&mut caller);
                let Some(sock) = st.sockets.get(fd) else {
                    return Ok(errno::BADF);
                };
                let r = if name == "sock_getlocaladdr" {
                    rustix::net::getsockname(&sock.fd).map(Some)
                } else {
                    rustix::net::getpeername(&sock.fd)
                };
                let sa = match r {
                    Ok(Some(a)) => a,
                    Ok(None) => return Ok(errno::NOTSUP),
                    Err(e) => return wasi_errno(e),
                };
                let Some(sa) = to_std(&sa) else {
                    return Ok(errno::NOTSUP);
                };
                match write_v2_address(data, addr, sa)? {
                    Some(port) => {
                        put_u32(data, port_out, u32::from(port), "port")?;
                        Ok(errno::SUCCESS)
                    }
                    None => Ok(errno::INVAL),
                }
            },
        )?;
    }

    // Linked so that any V2 guest instantiates; not implemented by this host.
    linker.func_wrap(
        M,
        "sock_bind",
        |_c: Caller<'_, InstanceState>, _fd: i32, _a: i32, _p: i32| -> Res<i32> {
            Ok(errno::NOTSUP)
        },
    )?;
    linker.func_wrap(
        M,
        "sock_listen",
        |_c: Caller<'_, InstanceState>, _fd: i32, _b: i32| -> Res<i32> { Ok(errno::NOTSUP) },
    )?;
    linker.func_wrap(
        M,
        "sock_send_to",
        |_c: Caller<'_, InstanceState>,
         _fd: i32,
         _i: i32,
         _l: i32,
         _a: i32,
         _p: i32,
         _f: i32,
         _n: i32|
         -> Res<i32> { Ok(errno::NOTSUP) },
    )?;
    linker.func_wrap(
        M,
        "sock_recv_from",
        |_c: Caller<'_, InstanceState>,
         _fd: i32,
         _i: i32,
         _l: i32,
         _a: i32,
         _f: i32,
         _p: i32,
         _n: i32,
         _o: i32|
         -> Res<i32> { Ok(errno::NOTSUP) },
    )?;

    // --- Shadowed preview1 functions: sockets here, everything else to wasmtime-wasi. ---

    linker.func_wrap(
        M,
        "fd_close",
        |mut caller: Caller<'_, InstanceState>, fd: i32| -> Res<i32> {
            if caller.data_mut().sockets.remove(fd).is_some() {
                return Ok(errno::SUCCESS);
            }
            delegate!(caller, async fd_close(fd))
        },
    )?;

    linker.func_wrap(
        M,
        "fd_fdstat_get",
        |mut caller: Caller<'_, InstanceState>, fd: i32, buf: i32| -> Res<i32> {
            if !is_socket(&caller, fd) {
                return delegate!(caller, async fd_fdstat_get(fd, buf));
            }
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let Some(sock) = st.sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            let mut stat = [0u8; 24];
            // filetype: 5 socket_dgram, 6 socket_stream.
            stat[0] = if sock.stream { 6 } else { 5 };
            stat[2..4].copy_from_slice(&sock.fdflags.to_le_bytes());
            // FD_READ(2) FD_FDSTAT_SET_FLAGS(8) FD_WRITE(64) FD_FILESTAT_GET(2^21) POLL_FD_READWRITE(2^27)
            // SOCK_SHUTDOWN(2^28) SOCK_ACCEPT(2^29)
            let rights: u64 = 2 | 8 | 64 | (1 << 21) | (1 << 27) | (1 << 28) | (1 << 29);
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            stat[16..24].copy_from_slice(&rights.to_le_bytes());
            memory::write(data, buf as u32, &stat, "fdstat")?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        M,
        "fd_fdstat_set_flags",
        |mut caller: Caller<'_, InstanceState>, fd: i32, flags: i32| -> Res<i32> {
            if !is_socket(&caller, fd) {
                return delegate!(caller, fd_fdstat_set_flags(fd, flags));
            }
            // SYNC, DSYNC, RSYNC cannot change.
            if flags & (2 | 8 | 16) != 0 {
                return Ok(errno::NOSYS);
            }
            let st = caller.data_mut();
            let Some(sock) = st.sockets.socks.get_mut(&(fd as u32)) else {
                return Ok(errno::BADF);
            };
            match rustix::io::ioctl_fionbio(&sock.fd, flags & 4 != 0) {
                Ok(()) => {
                    sock.fdflags = (flags & (1 | 4)) as u16;
                    Ok(errno::SUCCESS)
                }
                Err(e) => wasi_errno(e),
            }
        },
    )?;

    linker.func_wrap(
        M,
        "fd_read",
        |mut caller: Caller<'_, InstanceState>,
         fd: i32,
         iovs: i32,
         len: i32,
         nread: i32|
         -> Res<i32> {
            if !is_socket(&caller, fd) {
                return delegate!(caller, async fd_read(fd, iovs, len, nread));
            }
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let v = iovecs(data, iovs, len)?;
            let Some(sock) = st.sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            match recv_into(data, sock, &v, RecvFlags::empty())? {
                Ok(n) => {
                    put_u32(data, nread, n as u32, "nread")?;
                    Ok(errno::SUCCESS)
                }
                Err(e) => Ok(e),
            }
        },
    )?;

    linker.func_wrap(
        M,
        "fd_write",
        |mut caller: Caller<'_, InstanceState>,
         fd: i32,
         iovs: i32,
         len: i32,
         nwritten: i32|
         -> Res<i32> {
            if !is_socket(&caller, fd) {
                return delegate!(caller, async fd_write(fd, iovs, len, nwritten));
            }
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let v = iovecs(data, iovs, len)?;
            let Some(sock) = st.sockets.get(fd) else {
                return Ok(errno::BADF);
            };
            match send_from(data, sock, &v)? {
                Ok(n) => {
                    put_u32(data, nwritten, n as u32, "nwritten")?;
                    Ok(errno::SUCCESS)
                }
                Err(e) => Ok(e),
            }
        },
    )?;

    linker.func_wrap(
        M,
        "poll_oneoff",
        |mut caller: Caller<'_, InstanceState>,
         input: i32,
         output: i32,
         nsubs: i32,
         nevents: i32|
         -> Res<i32> {
            let mem = memory::of(&mut caller)?;
            let involves_socket = {
                let data = mem.data(&caller);
                let table = &caller.data().sockets;
                nsubs > 0
                    && memory::read(
                        data,
                        input as u32,
                        (nsubs as u32).saturating_mul(48),
                        "subscriptions",
                    )
                    .map(|subs| {
                        subs.chunks_exact(48).any(|s| {
                            (s[8] == 1 || s[8] == 2)
                                && table
                                    .get(i32::from_le_bytes([s[16], s[17], s[18], s[19]]))
                                    .is_some()
                        })
                    })
                    .unwrap_or(false)
            };
            if !involves_socket {
                return delegate!(caller, async poll_oneoff(input, output, nsubs, nevents));
            }
            let (data, st) = mem.data_and_store_mut(&mut caller);
            poll_sockets(data, &st.sockets, input, output, nsubs, nevents)
        },
    )?;

    Ok(())
}
