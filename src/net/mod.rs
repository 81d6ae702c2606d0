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
