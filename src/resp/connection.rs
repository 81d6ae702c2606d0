//! One connection to a server: sends pipelines in one write, reads replies into its own buffer.

use std::io::{ErrorKind, Read, Write};

use super::frame::{self, Command, Frame, FrameError, Scanner};
use crate::net::Deadline;
use crate::store::StoreError;

/// Most bytes buffered for one reply before it is refused (a bulk string at [`frame::MAX_BULK`]
/// plus generous room for headers and arrays).
pub const MAX_FRAME: usize = 2 * frame::MAX_BULK;

/// Size of each read from the stream.
const READ_CHUNK: usize = 16 * 1024;

/// A RESP connection over any byte stream (TCP, TLS, a test buffer).
///
/// After any error the connection's position in the reply stream is unknown (a reply may still
/// be on its way), so callers must drop it rather than send more commands on it.
pub struct Connection<S> {
    stream: Deadline<S>,
    buf: Vec<u8>,
    pos: usize,
    /// Time a whole pipeline may take (every reply read in full), on top of each read's own
    /// timeout: a server trickling bytes is cut off instead of holding the request.
    budget: Option<std::time::Duration>,
    /// How far the reply being read is known to be well formed.
    scan: Scanner,
}

impl<S: Read + Write> Connection<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream: Deadline::unbounded(stream),
            buf: Vec::new(),
            pos: 0,
            budget: None,
            scan: Scanner::default(),
        }
    }

    /// Bounds every following pipeline, replies included, by `budget` (each on its own).
    #[must_use]
    pub fn with_budget(mut self, budget: std::time::Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sends every command in one write, then reads exactly one reply per command. Error replies
    /// are returned as [`Frame::Error`] values, in order.
    ///
    /// # Errors
    /// [`StoreError::Timeout`] when a read or write timed out, [`StoreError::Unavailable`] when the
    /// connection failed or was closed (also in the middle of a reply),
    /// [`StoreError::Protocol`] when the bytes are not acceptable RESP.
    pub fn pipeline(&mut self, cmds: &[&Command]) -> Result<Vec<Frame>, StoreError> {
        let mut out = Vec::with_capacity(cmds.iter().map(|c| c.as_bytes().len()).sum());
        for c in cmds {
            out.extend_from_slice(c.as_bytes());
        }
        self.stream.restart(self.budget);
        let result = self.send_and_read(&out, cmds.len());
        self.stream.restart(None);
        result
    }

    fn send_and_read(&mut self, out: &[u8], count: usize) -> Result<Vec<Frame>, StoreError> {
        self.stream.write_all(out).map_err(io_error)?;
        self.stream.flush().map_err(io_error)?;
        let mut replies = Vec::with_capacity(count);
        for _ in 0..count {
            replies.push(self.read_frame()?);
        }
        Ok(replies)
    }

    /// Reads the next frame, reading from the stream as often as needed.
    ///
    /// # Errors
    /// As [`Connection::pipeline`].
    pub fn read_frame(&mut self) -> Result<Frame, StoreError> {
        loop {
            let pending = self.buf.get(self.pos..).unwrap_or_default();
            let complete = self.scan.advance(pending).and_then(|done| match done {
                Some(len) => frame::parse_checked(pending, len).map(Some),
                None => Ok(None),
            });
            match complete {
                Ok(Some((f, used))) => {
                    self.scan = Scanner::default();
                    self.pos += used;
                    if self.pos >= self.buf.len() {
                        self.buf.clear();
                        self.pos = 0;
                    }
                    return Ok(f);
                }
                Ok(None) | Err(FrameError::Incomplete) => {}
                Err(FrameError::Protocol(m)) => return Err(StoreError::Protocol(m)),
            }
            if pending.len() > MAX_FRAME {
                return Err(StoreError::Protocol(format!(
                    "reply larger than {MAX_FRAME} bytes"
                )));
            }
            if self.pos > 0 {
                // pos never exceeds len (it only advances by parsed lengths); min() keeps
                // drain() total anyway.
                self.buf.drain(..self.pos.min(self.buf.len()));
                self.pos = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + READ_CHUNK, 0);
            let read = self
                .stream
                .read(self.buf.get_mut(old..).unwrap_or_default());
            match read {
                Ok(0) => {
                    self.buf.truncate(old);
                    // RESP has no framing besides the frames themselves: EOF is only clean
                    // between replies, and we only read when a reply is expected.
                    return Err(StoreError::Unavailable(if old == 0 {
                        "connection closed by the server before its reply".into()
                    } else {
                        "connection closed by the server in the middle of a reply".into()
                    }));
                }
                Ok(n) => self.buf.truncate(old + n),
                Err(e) => {
                    self.buf.truncate(old);
                    if e.kind() != ErrorKind::Interrupted {
                        return Err(io_error(e));
                    }
                }
            }
        }
    }

    /// The underlying stream.
    pub fn stream_mut(&mut self) -> &mut S {
        self.stream.inner_mut()
    }
}

/// Maps an I/O error: an expired timeout (std reports `WouldBlock` for `SO_RCVTIMEO` on Unix,
/// the guest's poll-based streams `TimedOut`) is [`StoreError::Timeout`]; `InvalidData` only
/// comes from TLS (a fatal alert, e.g. the server requires a client certificate) and is a
/// refusal that retrying cannot fix; anything else means the connection is gone.
pub(crate) fn io_error(e: std::io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => StoreError::Timeout,
        ErrorKind::InvalidData => StoreError::Refused(format!("TLS: {e}")),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::io;

    /// A stream that hands out a script of input in fixed-size pieces and records writes.
    struct Script {
        input: Vec<u8>,
        at: usize,
        piece: usize,
        written: Vec<u8>,
        writes: usize,
        end: Option<io::ErrorKind>,
    }

    impl Script {
        fn new(input: &[u8], piece: usize) -> Self {
            Self {
                input: input.to_vec(),
                at: 0,
                piece,
                written: vec![],
                writes: 0,
                end: None,
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.input.len() {
                return match self.end {
                    Some(k) => Err(io::Error::new(k, "scripted")),
                    None => Ok(0),
                };
            }
            let n = self.piece.min(buf.len()).min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A server that sends one byte of `reply` every `pause`.
    struct Trickle {
        reply: Vec<u8>,
        at: usize,
        pause: std::time::Duration,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.pause);
            match (self.reply.get(self.at), buf.first_mut()) {
                (Some(&b), Some(out)) => {
                    *out = b;
                    self.at += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_trickling_server_is_cut_off_by_the_pipeline_budget() {
        let mut reply = b"$40\r\n".to_vec();
        reply.extend_from_slice(&[b'x'; 40]);
        reply.extend_from_slice(b"\r\n");
        let trickle = |pause| Trickle {
            reply: reply.clone(),
            at: 0,
            pause: std::time::Duration::from_millis(pause),
        };
        let get = Command::new(&[b"GET", b"k"]);
        // 47 bytes at 10 ms each: every read is quick, the whole reply is not.
        let mut c = Connection::new(trickle(10)).with_budget(std::time::Duration::from_millis(100));
        assert_eq!(c.pipeline(&[&get]), Err(StoreError::Timeout));
        // Within its budget the same reply is read in full.
        let mut c = Connection::new(trickle(0)).with_budget(std::time::Duration::from_secs(5));
        assert_eq!(
            c.pipeline(&[&get]).unwrap(),
            vec![Frame::Bulk(vec![b'x'; 40])]
        );
    }

    #[test]
    fn pipeline_is_one_write_and_replies_arrive_in_pieces() {
        let replies = b"+OK\r\n$5\r\nhello\r\n:-2\r\n*2\r\n$1\r\na\r\n$-1\r\n-ERR no\r\n";
        for piece in 1..8 {
            let mut c = Connection::new(Script::new(replies, piece));
            let cmds = [
                Command::new(&[b"SET", b"k", b"v"]),
                Command::new(&[b"GET", b"k"]),
                Command::new(&[b"PTTL", b"x"]),
                Command::new(&[b"X"]),
                Command::new(&[b"Y"]),
            ];
            let r = c.pipeline(&cmds.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(
                r,
                vec![
                    Frame::Simple("OK".into()),
                    Frame::Bulk(b"hello".to_vec()),
                    Frame::Integer(-2),
                    Frame::Array(vec![Frame::Bulk(b"a".to_vec()), Frame::NilBulk]),
                    Frame::Error("ERR no".into()),
                ]
            );
            assert_eq!(c.stream_mut().writes, 1);
            let expected: Vec<u8> = cmds.iter().flat_map(|c| c.as_bytes().to_vec()).collect();
            assert_eq!(c.stream_mut().written, expected);
        }
    }

    #[test]
    fn eof_mid_frame_is_an_error() {
        let mut c = Connection::new(Script::new(b"$5\r\nhel", 3));
        match c.read_frame() {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("middle"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut c = Connection::new(Script::new(b"", 3));
        assert!(matches!(c.read_frame(), Err(StoreError::Unavailable(_))));
    }

    #[test]
    fn timeouts_and_garbage() {
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            let mut s = Script::new(b"+O", 10);
            s.end = Some(kind);
            let mut c = Connection::new(s);
            assert_eq!(c.read_frame(), Err(StoreError::Timeout));
        }
        let mut s = Script::new(b"", 10);
        s.end = Some(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            Connection::new(s).read_frame(),
            Err(StoreError::Unavailable(_))
        ));
        let mut c = Connection::new(Script::new(b"+OK\r\n?garbage\r\n", 100));
        assert_eq!(c.read_frame(), Ok(Frame::Simple("OK".into())));
        assert!(matches!(c.read_frame(), Err(StoreError::Protocol(_))));
    }
}
