//! The WasmEdge socket extension, as Traefik's wasi-go host serves it: the only socket FFI of the
//! plugin (platform report §6, §7).
//!
//! Every import keeps the **V2** shape. Importing any V1-only shape (a 2-parameter
//! `sock_accept`, a 4-parameter `sock_getlocaladdr`/`sock_getpeeraddr`) would switch the whole
//! module to V1 in Traefik and break linking, so those calls are never declared here.
//!
//! Layouts (wasm32, little-endian): an address descriptor is `{buf: u32, buf_len: u32}` pointing
//! at 4 raw IPv4 or 16 raw IPv6 bytes; `addrinfo` is 28 bytes with a 12-byte `sockaddr` whose
//! data holds the port big-endian then the address; a `poll_oneoff` subscription is 48 bytes
//! and an event 32 bytes, both 8-aligned.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// A WASI errno (the numbers wasi-libc and Rust's `io::Error::from_raw_os_error` use on
/// wasm32-wasip1, so `Errno::AGAIN` becomes `ErrorKind::WouldBlock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u16);

impl Errno {
    /// Resource unavailable, try again.
    pub const AGAIN: Errno = Errno(6);
    /// Connection already in progress.
    pub const ALREADY: Errno = Errno(7);
    /// Bad file descriptor.
    pub const BADF: Errno = Errno(8);
    /// Name resolution failed (wasi-go answers every resolver failure with ECANCELED).
    pub const CANCELED: Errno = Errno(11);
    /// Connection refused.
    pub const CONNREFUSED: Errno = Errno(14);
    /// Operation in progress (a non-blocking connect).
    pub const INPROGRESS: Errno = Errno(26);
    /// Interrupted.
    pub const INTR: Errno = Errno(27);
    /// Invalid argument.
    pub const INVAL: Errno = Errno(28);
    /// Operation not supported.
    pub const NOTSUP: Errno = Errno(58);
    /// Timed out.
    pub const TIMEDOUT: Errno = Errno(73);

    /// The equivalent `io::Error`.
    pub fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(i32::from(self.0))
    }
}

impl From<Errno> for io::Error {
    fn from(e: Errno) -> Self {
        e.to_io()
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WASI errno {}", self.0)
    }
}

/// Turns a host status into a `Result`.
fn check(status: i32) -> Result<(), Errno> {
    if status == 0 {
        Ok(())
    } else {
        Err(Errno(u16::try_from(status).unwrap_or(u16::MAX)))
    }
}

/// A socket descriptor returned by [`open`]. It does not close itself: the owner
/// (`net::tcp::WasiTcpStream`) does, in its `Drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFd(u32);

impl SocketFd {
    /// The raw descriptor number.
    pub fn raw(self) -> u32 {
        self.0
    }
}

/// Which directions to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// No more reads.
    Read = 1,
    /// No more writes.
    Write = 2,
    /// Both.
    Both = 3,
}

/// What to wait for in [`poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable (data, EOF or an error).
    Read,
    /// Writable (also: a non-blocking connect finished).
    Write,
}

/// The outcome of [`poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The descriptor is ready (the next call will not block, or reports the error).
    Ready,
    /// The timeout elapsed first.
    TimedOut,
}

#[repr(C)]
struct AddrDescriptor {
    buf: *const u8,
    buf_len: u32,
}

#[repr(C)]
struct Ciovec {
    buf: *const u8,
    len: usize,
}

#[repr(C)]
struct Iovec {
    buf: *mut u8,
    len: usize,
}

/// `__wasi_addrinfo_t` as WasmEdge lays it out (28 bytes).
#[repr(C)]
struct AddrInfo {
    flags: u16,
    family: u8,
    socktype: u8,
    protocol: u32,
    addrlen: u32,
    addr: *mut Sockaddr,
    canonname: *mut u8,
    canonnamelen: u32,
    next: *mut AddrInfo,
}

/// `__wasi_sockaddr_t` (12 bytes).
#[repr(C)]
struct Sockaddr {
    family: u8,
    _pad: [u8; 3],
    sa_data_len: u32,
    sa_data: *mut u8,
}

/// A `poll_oneoff` subscription (48 bytes, 8-aligned).
#[repr(C, align(8))]
struct Subscription([u8; 48]);

/// A `poll_oneoff` event (32 bytes, 8-aligned).
#[repr(C, align(8))]
struct Event([u8; 32]);

mod ffi {
    use super::{AddrDescriptor, AddrInfo, Ciovec, Event, Iovec, Subscription};

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub fn sock_open(family: i32, socktype: i32, fd_out: *mut u32) -> i32;
        pub fn sock_connect(fd: u32, addr: *const AddrDescriptor, port: u32) -> i32;
        pub fn sock_getaddrinfo(
            node: *const u8,
            node_len: u32,
            service: *const u8,
            service_len: u32,
            hints: *const AddrInfo,
            res: *mut *mut AddrInfo,
            max_res_len: u32,
            res_len: *mut u32,
        ) -> i32;
        pub fn sock_send(
            fd: u32,
            si_data: *const Ciovec,
            si_data_len: u32,
            siflags: u32,
            so_datalen: *mut u32,
        ) -> i32;
        pub fn sock_recv(
            fd: u32,
            ri_data: *const Iovec,
            ri_data_len: u32,
            riflags: u32,
            ro_datalen: *mut u32,
            roflags: *mut u32,
        ) -> i32;
        pub fn sock_shutdown(fd: u32, how: u32) -> i32;
        // value_len is passed by value (wasi-go requires exactly 4), not as a pointer.
        pub fn sock_getsockopt(
            fd: u32,
            level: u32,
            name: u32,
            value: *mut i32,
            value_len: u32,
        ) -> i32;
        pub fn sock_setsockopt(
            fd: u32,
            level: u32,
            name: u32,
            value: *const i32,
            value_len: u32,
        ) -> i32;
        pub fn poll_oneoff(
            input: *const Subscription,
            output: *mut Event,
            nsubs: u32,
            nevents: *mut u32,
        ) -> i32;
        pub fn fd_close(fd: u32) -> i32;
        pub fn fd_fdstat_set_flags(fd: u32, flags: u32) -> i32;
    }
}

const SOL_SOCKET: u32 = 0;
const IPPROTO_TCP: u32 = 6;
const SO_ERROR: u32 = 2;
const TCP_NODELAY: u32 = 15;
const FDFLAGS_NONBLOCK: u32 = 4;

/// Opens a blocking TCP socket for `ip`'s family.
///
/// # Errors
/// The host's errno.
pub fn open(ip: &IpAddr) -> Result<SocketFd, Errno> {
    let family = if ip.is_ipv4() { 1 } else { 2 };
    let mut fd: u32 = 0;
    // SAFETY: `fd` is a valid, writable u32 for the duration of the call.
    check(unsafe { ffi::sock_open(family, 2, &mut fd) })?;
    Ok(SocketFd(fd))
}

/// Makes the socket non-blocking (`fd_fdstat_set_flags(NONBLOCK)`).
///
/// # Errors
/// The host's errno.
pub fn set_nonblocking(fd: SocketFd) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    check(unsafe { ffi::fd_fdstat_set_flags(fd.0, FDFLAGS_NONBLOCK) })
}

/// Starts connecting to `addr` (`Err(Errno::INPROGRESS)` on a non-blocking socket).
///
/// # Errors
/// The host's errno.
pub fn connect(fd: SocketFd, addr: &SocketAddr) -> Result<(), Errno> {
    let v4;
    let v6;
    let bytes: &[u8] = match addr.ip() {
        IpAddr::V4(a) => {
            v4 = a.octets();
            &v4
        }
        IpAddr::V6(a) => {
            v6 = a.octets();
            &v6
        }
    };
    let desc = AddrDescriptor {
        buf: bytes.as_ptr(),
        buf_len: bytes.len() as u32,
    };
    // SAFETY: `desc` points at `bytes`, both alive for the duration of the call; the host only
    // reads them.
    check(unsafe { ffi::sock_connect(fd.0, &desc, u32::from(addr.port())) })
}

/// Sends bytes from `buf`; the number sent.
///
/// # Errors
/// The host's errno (`AGAIN` when a non-blocking socket is full).
pub fn send(fd: SocketFd, buf: &[u8]) -> Result<usize, Errno> {
    let iov = Ciovec {
        buf: buf.as_ptr(),
        len: buf.len(),
    };
    let mut n: u32 = 0;
    // SAFETY: `iov` describes `buf`, which outlives the call; `n` is writable.
    check(unsafe { ffi::sock_send(fd.0, &iov, 1, 0, &mut n) })?;
    // Never more than was offered: callers slice `buf[n..]` (std's `write_all`, rustls), and a
    // host that mixes up concurrent calls (traefik#11629 shares its iovec scratch between
    // instances) could report another call's count; trusting it would panic, i.e. trap.
    Ok((n as usize).min(buf.len()))
}

/// Receives into `buf`; 0 means the peer closed.
///
/// # Errors
/// The host's errno (`AGAIN` when a non-blocking socket has no data).
pub fn recv(fd: SocketFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let iov = Iovec {
        buf: buf.as_mut_ptr(),
        len: buf.len(),
    };
    let mut n: u32 = 0;
    let mut flags: u32 = 0;
    // SAFETY: `iov` describes `buf`, exclusively borrowed for the call; `n` and `flags` are
    // writable (the host writes at most 4 bytes to each).
    check(unsafe { ffi::sock_recv(fd.0, &iov, 1, 0, &mut n, &mut flags) })?;
    Ok((n as usize).min(buf.len()))
}

/// Shuts down one or both directions.
///
/// # Errors
/// The host's errno.
pub fn shutdown(fd: SocketFd, how: Shutdown) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    check(unsafe { ffi::sock_shutdown(fd.0, how as u32) })
}

/// Closes the descriptor.
///
/// # Errors
/// The host's errno.
pub fn close(fd: SocketFd) -> Result<(), Errno> {
    // SAFETY: plain integer argument.
    check(unsafe { ffi::fd_close(fd.0) })
}

/// `SO_ERROR`: the pending error of the socket (a WASI errno on wasi-go), `None` when there is
/// none. Used after a non-blocking connect reported writable.
///
/// # Errors
/// The host's errno.
pub fn socket_error(fd: SocketFd) -> Result<Option<Errno>, Errno> {
    let mut v: i32 = 0;
    // SAFETY: `v` is a writable i32 and 4 is its size, passed by value as wasi-go expects.
    check(unsafe { ffi::sock_getsockopt(fd.0, SOL_SOCKET, SO_ERROR, &mut v, 4) })?;
    Ok((v != 0).then(|| Errno(u16::try_from(v).unwrap_or(u16::MAX))))
}

/// Sets `TCP_NODELAY`.
///
/// # Errors
/// The host's errno.
pub fn set_nodelay(fd: SocketFd, on: bool) -> Result<(), Errno> {
    let v: i32 = i32::from(on);
    // SAFETY: `v` is a readable i32 of the 4 bytes announced.
    check(unsafe { ffi::sock_setsockopt(fd.0, IPPROTO_TCP, TCP_NODELAY, &v, 4) })
}

/// Waits until `fd` is ready for `interest` or `timeout` elapses (a relative MONOTONIC clock;
/// the host blocks in `poll(2)`).
///
/// # Errors
/// The host's errno, or the errno carried by the socket's event.
pub fn poll(fd: SocketFd, interest: Interest, timeout: Duration) -> Result<Readiness, Errno> {
    let mut subs = [Subscription([0; 48]), Subscription([0; 48])];
    // Subscription 1: the socket. userdata @0, tag @8 (1 read, 2 write), fd @16.
    subs[0].0[0] = 1;
    subs[0].0[8] = match interest {
        Interest::Read => 1,
        Interest::Write => 2,
    };
    subs[0].0[16..20].copy_from_slice(&fd.0.to_le_bytes());
    // Subscription 2: a relative clock. userdata @0, tag 0, id @16 (1 monotonic), timeout @24.
    let ns = u64::try_from(timeout.as_nanos())
        .unwrap_or(u64::MAX / 2)
        .min(u64::MAX / 2);
    subs[1].0[0] = 2;
    subs[1].0[16..20].copy_from_slice(&1u32.to_le_bytes());
    subs[1].0[24..32].copy_from_slice(&ns.to_le_bytes());
    let mut events = [Event([0; 32]), Event([0; 32])];
    let mut n: u32 = 0;
    // SAFETY: `subs` and `events` are two 8-aligned records each, alive for the call; `n` is
    // writable.
    check(unsafe { ffi::poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), 2, &mut n) })?;
    let mut timed_out = false;
    for e in events.iter().take(n as usize) {
        let userdata = e.0[0];
        let err = u16::from_le_bytes([e.0[8], e.0[9]]);
        if userdata == 1 {
            if err != 0 {
                return Err(Errno(err));
            }
            return Ok(Readiness::Ready);
        }
        if userdata == 2 {
            timed_out = true;
        }
    }
    if timed_out || n == 0 {
        Ok(Readiness::TimedOut)
    } else {
        Ok(Readiness::Ready)
    }
}

/// Waits `d` (one relative MONOTONIC clock subscription; the host blocks in `poll(2)`). Best
/// effort: an error from the host ends the wait early. Not `std::thread::sleep`, which panics
/// (a trap, a 500 from Traefik) when the host's event is not exactly the one it expects.
pub fn sleep(d: Duration) {
    let mut sub = Subscription([0; 48]);
    // userdata @0, tag @8 (0: clock), id @16 (1 monotonic), timeout @24, flags @40 (0 relative).
    sub.0[0] = 1;
    sub.0[16..20].copy_from_slice(&1u32.to_le_bytes());
    let ns = u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX / 2)
        .min(u64::MAX / 2);
    sub.0[24..32].copy_from_slice(&ns.to_le_bytes());
    let mut event = Event([0; 32]);
    let mut n: u32 = 0;
    // SAFETY: `sub` and `event` are one 8-aligned record each, alive for the call; `n` is
    // writable.
    let _ = unsafe { ffi::poll_oneoff(&sub, &mut event, 1, &mut n) };
}

/// How many addresses [`resolve`] asks for.
const MAX_ADDRS: usize = 8;

/// Resolves `host` with the host's resolver (`sock_getaddrinfo`, /etc/hosts included): IPv4
/// addresses first, then IPv6 (wasi-go's order). It blocks in the host and cannot be timed out
/// from the guest.
///
/// # Errors
/// The host's errno (`CANCELED` when the name does not resolve).
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Errno> {
    // The guest allocates the whole result list: records linked through `next`, each with a
    // sockaddr whose data buffer is 26 bytes (enough for the port and an IPv6 address).
    let mut data = [[0u8; 26]; MAX_ADDRS];
    let mut addrs: Vec<Sockaddr> = data
        .iter_mut()
        .map(|d| Sockaddr {
            family: 0,
            _pad: [0; 3],
            sa_data_len: 26,
            sa_data: d.as_mut_ptr(),
        })
        .collect();
    let mut infos: Vec<AddrInfo> = addrs
        .iter_mut()
        .map(|a| AddrInfo {
            flags: 0,
            family: 0,
            socktype: 0,
            protocol: 0,
            addrlen: 0,
            addr: a,
            canonname: std::ptr::null_mut(),
            canonnamelen: 0,
            next: std::ptr::null_mut(),
        })
        .collect();
    let base = infos.as_mut_ptr();
    for i in 0..MAX_ADDRS.saturating_sub(1) {
        // `i + 1 < infos.len()`: the link points at the next record of the same allocation.
        let next = base.wrapping_add(i + 1);
        if let Some(info) = infos.get_mut(i) {
            info.next = next;
        }
    }
    // Hints: any family, stream socket, TCP.
    let hints = AddrInfo {
        flags: 0,
        family: 0,
        socktype: 2,
        protocol: 1,
        addrlen: 0,
        addr: std::ptr::null_mut(),
        canonname: std::ptr::null_mut(),
        canonnamelen: 0,
        next: std::ptr::null_mut(),
    };
    let service = port.to_string();
    let mut res: *mut AddrInfo = infos.as_mut_ptr();
    let mut count: u32 = 0;
    // SAFETY: `host`/`service` are readable for their lengths; `hints` is a readable record;
    // `res` points at `infos`, a list of MAX_ADDRS linked records whose sockaddrs and data
    // buffers (`addrs`, `data`) stay alive and unmoved until after the call; `count` is writable.
    check(unsafe {
        ffi::sock_getaddrinfo(
            host.as_ptr(),
            host.len() as u32,
            service.as_ptr(),
            service.len() as u32,
            &hints,
            &mut res,
            MAX_ADDRS as u32,
            &mut count,
        )
    })?;
    let mut out = Vec::new();
    for (a, d) in addrs
        .iter()
        .zip(data.iter())
        .take((count as usize).min(MAX_ADDRS))
    {
        let p = u16::from_be_bytes([d[0], d[1]]);
        let port = if p == 0 { port } else { p };
        match a.family {
            1 => out.push(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(d[2], d[3], d[4], d[5])),
                port,
            )),
            2 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&d[2..18]);
                out.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port));
            }
            _ => {}
        }
    }
    Ok(out)
}
