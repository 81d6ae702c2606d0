//! TCP streams over the WasmEdge socket extension ([`super::sys`]) with timeouts the extension
//! itself cannot give (`SO_RCVTIMEO`/`SO_SNDTIMEO` answer `ENOTSUP` on Traefik).
//!
//! Every socket is non-blocking. A connect that answers `EINPROGRESS` waits in `poll_oneoff` for
//! writability (with a clock subscription as the timeout) and then reads `SO_ERROR`; a read or
//! write that answers `EAGAIN` waits in `poll_oneoff` for readiness, at most until its wall-clock
//! deadline, and then fails with [`io::ErrorKind::TimedOut`]. Deadlines use the wall clock
//! ([`crate::clock::SystemClock`]), as everything in the guest does.
//!
//! A stream owns its descriptor: dropping it shuts the socket down and closes it, so no socket
//! outlives its value (in Traefik ≤ 3.7.15 pooled instances are dropped without their sockets
//! being closed, and descriptor numbers are shared between instances).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::sys::{self, Errno, Interest, Readiness, SocketFd};
use super::{deadline_after, Dialer, Stream, Timeouts};
use crate::clock::SystemClock;

fn now_us() -> u64 {
    SystemClock.now_us()
}

/// Time left until `deadline` (µs since the epoch), `None` once it passed.
fn remaining(deadline: u64) -> Option<Duration> {
    let now = now_us();
    (deadline > now).then(|| Duration::from_micros(deadline - now))
}

fn timed_out(what: &str, timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} timed out after {} ms", timeout.as_millis()),
    )
}

/// A connected, non-blocking TCP stream with read and write timeouts.
#[derive(Debug)]
pub struct WasiTcpStream {
    fd: SocketFd,
    peer: SocketAddr,
    read_timeout: Duration,
    write_timeout: Duration,
    /// An optional overall deadline (µs since the epoch) that bounds every read and write, so a
    /// peer that trickles bytes cannot stretch one exchange beyond it.
    deadline_us: Option<u64>,
}

impl WasiTcpStream {
    /// Connects to `addr` within `timeout`.
    ///
    /// # Errors
    /// The socket error (`ConnectionRefused`, …) or `TimedOut`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let deadline = deadline_after(timeout);
        Self::connect_until(addr, deadline, timeout)
    }

    fn connect_until(addr: SocketAddr, deadline: u64, timeout: Duration) -> io::Result<Self> {
        let fd = sys::open(&addr.ip())?;
        // Owned from here on: an early return closes it.
        let stream = WasiTcpStream {
            fd,
            peer: addr,
            read_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(3),
            deadline_us: None,
        };
        sys::set_nonblocking(fd)?;
        match sys::connect(fd, &addr) {
            Ok(()) => {}
            Err(e) if e == Errno::INPROGRESS || e == Errno::ALREADY || e == Errno::AGAIN => {
                loop {
                    let Some(left) = remaining(deadline) else {
                        return Err(timed_out(&format!("connect to {addr}"), timeout));
                    };
                    match sys::poll(fd, Interest::Write, left)? {
                        Readiness::Ready => break,
                        Readiness::TimedOut => continue,
                    }
                }
                // The connect finished: SO_ERROR tells how (a WASI errno on wasi-go).
                if let Some(err) = sys::socket_error(fd)? {
                    return Err(err.to_io());
                }
            }
            Err(e) => return Err(e.to_io()),
        }
        // Small request/response exchanges: do not wait for Nagle.
        let _ = sys::set_nodelay(fd, true);
        Ok(stream)
    }

    /// The peer's address (as dialled; `sock_getpeeraddr` is never called).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sets the time each read may wait for data.
    pub fn set_read_timeout(&mut self, t: Duration) {
        self.read_timeout = t;
    }

    /// Sets the time each write may wait for buffer space.
    pub fn set_write_timeout(&mut self, t: Duration) {
        self.write_timeout = t;
    }

    /// Bounds every following read and write by `timeout` from now (all of them together), or
    /// removes the bound with `None`.
    pub fn set_deadline(&mut self, timeout: Option<Duration>) {
        self.deadline_us = timeout.map(deadline_after);
    }

    /// The deadline of one operation: its own timeout, capped by the overall deadline.
    fn op_deadline(&self, timeout: Duration) -> u64 {
        let own = deadline_after(timeout);
        self.deadline_us.map_or(own, |d| d.min(own))
    }

    /// Runs `op` until it stops answering `EAGAIN`, waiting for `interest` in between, until
    /// `deadline`.
    fn retry<T>(
        &self,
        interest: Interest,
        timeout: Duration,
        what: &str,
        mut op: impl FnMut() -> Result<T, Errno>,
    ) -> io::Result<T> {
        let deadline = self.op_deadline(timeout);
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e == Errno::AGAIN || e == Errno::INTR => {}
                Err(e) => return Err(e.to_io()),
            }
            // The deadline is recomputed from the wall clock on every round, so spurious
            // wake-ups and partial progress never extend it.
            let Some(left) = remaining(deadline) else {
                return Err(timed_out(&format!("{what} {}", self.peer), timeout));
            };
            sys::poll(self.fd, interest, left)?;
        }
    }
}

impl Read for WasiTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let fd = self.fd;
        self.retry(Interest::Read, self.read_timeout, "read from", || {
            sys::recv(fd, buf)
        })
    }
}

impl Write for WasiTcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let fd = self.fd;
        self.retry(Interest::Write, self.write_timeout, "write to", || {
            sys::send(fd, buf)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for WasiTcpStream {
    fn drop(&mut self) {
        // Errors are irrelevant here: the descriptor is gone either way.
        let _ = sys::shutdown(self.fd, sys::Shutdown::Both);
        let _ = sys::close(self.fd);
    }
}

/// A [`Dialer`] over the WasmEdge socket extension: IP literals are used directly, names are
/// resolved with `sock_getaddrinfo` (IPv4 first, then IPv6), and each address is tried in turn
/// until one connects or the connect timeout (shared by all attempts) runs out. Name resolution
/// itself blocks in the host and is not bounded by the timeout.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasiDialer;

impl WasiDialer {
    /// The addresses for `host:port`: the literal itself, or what the host's resolver answers.
    ///
    /// # Errors
    /// `NotFound` when the name does not resolve, or the host's errno.
    pub fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match sys::resolve(bare, port) {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{bare} has no address"),
            )),
            Err(e) if e == Errno::CANCELED => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("could not resolve {bare}"),
            )),
            Err(e) => Err(e.to_io()),
        }
    }

    /// Connects to `host:port` and applies `timeouts`.
    ///
    /// # Errors
    /// As [`Dialer::dial`].
    pub fn connect(&self, host: &str, port: u16, timeouts: &Timeouts) -> io::Result<WasiTcpStream> {
        let addrs = Self::resolve(host, port)?;
        let deadline = deadline_after(timeouts.connect);
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}"));
        for addr in addrs {
            if remaining(deadline).is_none() {
                return Err(timed_out(
                    &format!("connect to {host}:{port}"),
                    timeouts.connect,
                ));
            }
            match WasiTcpStream::connect_until(addr, deadline, timeouts.connect) {
                Ok(mut s) => {
                    s.set_read_timeout(timeouts.read);
                    s.set_write_timeout(timeouts.write);
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl Dialer for WasiDialer {
    fn dial(&self, host: &str, port: u16, timeouts: &Timeouts) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.connect(host, port, timeouts)?))
    }
}
