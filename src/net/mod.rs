//! Network transport for the Traefik artifact: WasmEdge sockets (the only FFI besides
//! [`crate::abi`]), TLS with rustls, and a small HTTP/1.1 client.
//!
//! Everything above this module talks to a [`Dialer`], so the RESP and HTTP clients are tested
//! natively over `std::net` and run in the guest over WasmEdge sockets unchanged.

use std::io::{Read, Write};
use std::time::Duration;

pub mod http;
#[cfg(target_arch = "wasm32")]
pub mod sys;
#[cfg(target_arch = "wasm32")]
pub mod tcp;
pub mod tls;

/// A connected byte stream. Reads and writes honour the [`Timeouts`] given to
/// [`Dialer::dial`]: an expired read or write fails with [`std::io::ErrorKind::TimedOut`].
pub trait Stream: Read + Write {}

impl<T: Read + Write> Stream for T {}

/// A stream whose reads and writes together must finish by a deadline. Each read or write still
/// waits at most its own timeout; once the deadline has passed the next one fails with
/// [`std::io::ErrorKind::TimedOut`], so a peer that trickles a byte at a time (slowloris) is cut
/// off at most one read timeout past the deadline instead of never.
pub struct Deadline<S> {
    inner: S,
    until_us: u64,
}

impl<S> Deadline<S> {
    /// Wraps `inner` with a deadline `budget` from now.
    pub fn new(inner: S, budget: Duration) -> Self {
        Self {
            inner,
            until_us: deadline_after(budget),
        }
    }

    /// Wraps `inner` with no deadline (until [`Deadline::restart`]).
    pub fn unbounded(inner: S) -> Self {
        Self {
            inner,
            until_us: u64::MAX,
        }
    }

    /// Sets the deadline `budget` from now, or removes it with `None`.
    pub fn restart(&mut self, budget: Option<Duration>) {
        self.until_us = budget.map_or(u64::MAX, deadline_after);
    }

    /// The wrapped stream.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn check(&self) -> std::io::Result<()> {
        if passed(self.until_us) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer did not finish in time",
            ));
        }
        Ok(())
    }
}

/// `budget` from now, in µs since the epoch (saturating).
pub(crate) fn deadline_after(budget: Duration) -> u64 {
    crate::clock::SystemClock
        .now_us()
        .saturating_add(u64::try_from(budget.as_micros()).unwrap_or(u64::MAX))
}

/// Whether the deadline `until_us` (from [`deadline_after`]) has passed.
fn passed(until_us: u64) -> bool {
    crate::clock::SystemClock.now_us() > until_us
}

impl<S: Read> Read for Deadline<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Deadline<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.check()?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Timeouts applied to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed to establish the TCP connection (and the TLS handshake).
    pub connect: Duration,
    /// Time allowed for each read to make progress.
    pub read: Duration,
    /// Time allowed for each write to make progress.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(3),
            write: Duration::from_secs(3),
        }
    }
}

/// Opens TCP connections.
pub trait Dialer {
    /// Connects to `host:port` (a name is resolved by the platform's resolver).
    ///
    /// # Errors
    /// Resolution, connection and timeout failures as [`std::io::Error`].
    fn dial(&self, host: &str, port: u16, timeouts: &Timeouts) -> std::io::Result<Box<dyn Stream>>;
}

/// A [`Dialer`] over `std::net`, for native tests and tools.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdDialer;

impl Dialer for StdDialer {
    fn dial(&self, host: &str, port: u16, timeouts: &Timeouts) -> std::io::Result<Box<dyn Stream>> {
        use std::net::{TcpStream, ToSocketAddrs};
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeouts.connect) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeouts.read))?;
                    s.set_write_timeout(Some(timeouts.write))?;
                    s.set_nodelay(true)?;
                    return Ok(Box::new(s));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
