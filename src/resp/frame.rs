//! RESP2 frames: a bounded two-phase decoder and the command encoder.
//!
//! Decoding is split in two, as in mini-redis: [`check`] scans a buffer without allocating and
//! says whether one complete frame is there (and how long it is), then [`parse`] builds the
//! [`Frame`]. [`FrameError::Incomplete`] ("read more bytes") is kept apart from
//! [`FrameError::Protocol`] ("this is not RESP, drop the connection"). Every size the peer
//! announces is bounded before anything is buffered for it, and unknown type bytes are errors,
//! never panics: the bytes come from the network (and, on Traefik ≤ 3.7.15, possibly from another
//! request's socket).

use std::fmt;

/// Largest bulk string accepted. The store writes nothing near it (values through the bridge
/// are capped at 1 MiB, provider documents at 1 MiB before sealing); a larger announcement is a
/// broken or hostile server and refused before anything is buffered for it.
pub const MAX_BULK: usize = 2 * 1024 * 1024;
/// Largest number of elements accepted in one array.
pub const MAX_ARRAY: usize = 64 * 1024;
/// Most values (at every depth) in one frame: bounds the memory a parsed reply takes
/// (`CLUSTER SLOTS` of a cluster with 1000 slot ranges is ≈ 10 000).
pub const MAX_ELEMENTS: usize = 64 * 1024;
/// Deepest array nesting accepted (`CLUSTER SLOTS` needs 3).
pub const MAX_DEPTH: usize = 8;
/// Longest simple string, error or integer line accepted (CRLF excluded).
pub const MAX_LINE: usize = 64 * 1024;

/// One RESP2 value. Error replies and nils are values, not Rust errors: the caller decides what
/// a `-READONLY` or a nil means for its command.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+OK`.
    Simple(String),
    /// `-ERR message`: the server refused the command.
    Error(String),
    /// `:42` (signed: `PTTL` answers -1 and -2).
    Integer(i64),
    /// `$3\r\nfoo`.
    Bulk(Vec<u8>),
    /// `$-1`: the nil bulk string (e.g. `GET` of an absent key).
    NilBulk,
    /// `*2\r\n...`.
    Array(Vec<Frame>),
    /// `*-1`: the nil array.
    NilArray,
}

impl fmt::Debug for Frame {
    // Bulk values may be session data: show their length, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Simple(s) => write!(f, "Simple({s:?})"),
            Frame::Error(s) => write!(f, "Error({s:?})"),
            Frame::Integer(i) => write!(f, "Integer({i})"),
            Frame::Bulk(b) => write!(f, "Bulk({} bytes)", b.len()),
            Frame::NilBulk => f.write_str("NilBulk"),
            Frame::Array(a) => f.debug_tuple("Array").field(a).finish(),
            Frame::NilArray => f.write_str("NilArray"),
        }
    }
}

impl Frame {
    /// A short description of the frame's type, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Simple(_) => "simple string",
            Frame::Error(_) => "error",
            Frame::Integer(_) => "integer",
            Frame::Bulk(_) => "bulk string",
            Frame::NilBulk => "nil bulk string",
            Frame::Array(_) => "array",
            Frame::NilArray => "nil array",
        }
    }

    /// The bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Simple(s) => Some(s.as_bytes()),
            Frame::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// Whether this is `+OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Frame::Simple(s) if s == "OK")
    }
}

/// Why a buffer does not hold a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The buffer holds the beginning of a frame: read more bytes.
    Incomplete,
    /// The bytes are not a RESP2 frame we accept; the connection must be dropped.
    Protocol(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete => f.write_str("incomplete frame"),
            FrameError::Protocol(s) => write!(f, "invalid RESP: {s}"),
        }
    }
}

impl std::error::Error for FrameError {}

fn protocol(msg: impl Into<String>) -> FrameError {
    FrameError::Protocol(msg.into())
}

/// Checks that `buf` starts with one complete frame, without allocating.
///
/// # Errors
/// [`FrameError::Incomplete`] when more bytes are needed, [`FrameError::Protocol`] when the bytes
/// can never become an acceptable frame.
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    Scanner::default()
        .advance(buf)?
        .ok_or(FrameError::Incomplete)
}

/// Parses the frame at the start of `buf`; returns it and the number of bytes it used.
///
/// # Errors
/// As [`check`] (it is run first, so no allocation happens for an incomplete or invalid frame).
pub fn parse(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
    let len = check(buf)?;
    parse_checked(buf, len)
}

/// Parses the frame of `len` bytes at the start of `buf`, which [`check`] or a [`Scanner`]
/// accepted.
///
/// # Errors
/// [`FrameError::Protocol`] when the bytes do not parse to exactly `len` bytes.
pub fn parse_checked(buf: &[u8], len: usize) -> Result<(Frame, usize), FrameError> {
    let (frame, used) = parse_at(buf, 0)?;
    if used != len {
        // the scanner and the parser walk the same grammar; a mismatch would be a bug here,
        // reported as a protocol error rather than a panic.
        return Err(protocol("frame length mismatch"));
    }
    Ok((frame, used))
}

/// A resumable check of one frame arriving in pieces: it remembers how far the bytes were
/// complete and which arrays are open, so each read costs only the new bytes. (Checking the whole
/// buffer again after every read made a reply of many small values quadratic: a hostile server
/// could hold a request for minutes with a 32 MiB array of `:0`.)
#[derive(Debug, Default)]
pub struct Scanner {
    /// Start of the first value not yet complete.
    pos: usize,
    /// Values still to come in each open array, innermost last.
    open: Vec<usize>,
    /// Values seen so far (arrays included).
    elements: usize,
}

impl Scanner {
    /// Scans on over `buf` — the bytes given before, plus more. `Some(len)` once the frame is
    /// complete (its length), `None` while more bytes are needed.
    ///
    /// # Errors
    /// [`FrameError::Protocol`] when the bytes can never become an acceptable frame.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        loop {
            let Some(&ty) = buf.get(self.pos) else {
                return Ok(None);
            };
            if !matches!(ty, b'+' | b'-' | b':' | b'$' | b'*') {
                return Err(protocol(format!("unknown type byte 0x{ty:02x}")));
            }
            let start = self.pos + 1;
            let end = match line_end(buf, start) {
                Ok(end) => end,
                Err(FrameError::Incomplete) => return Ok(None),
                Err(e) => return Err(e),
            };
            let line = buf.get(start..end).unwrap_or_default();
            let mut next = end + 2;
            let mut opens = None;
            match ty {
                b'+' | b'-' => {}
                b':' => {
                    int(line)?;
                }
                b'$' => {
                    if let Some(n) = length(line, MAX_BULK, "bulk string")? {
                        let data_end = next + n;
                        if buf.len() < data_end + 2 {
                            return Ok(None);
                        }
                        if buf.get(data_end..data_end + 2) != Some(b"\r\n") {
                            return Err(protocol("bulk string not terminated by CRLF"));
                        }
                        next = data_end + 2;
                    }
                }
                b'*' => {
                    if let Some(n) = length(line, MAX_ARRAY, "array")? {
                        if n > 0 && self.open.len() + 1 > MAX_DEPTH {
                            return Err(protocol(format!("arrays nested deeper than {MAX_DEPTH}")));
                        }
                        opens = Some(n).filter(|&n| n > 0);
                    }
                }
                _ => {}
            }
            // The value at `pos` is complete (an array: its head).
            self.elements += 1;
            if self.elements > MAX_ELEMENTS {
                return Err(protocol(format!(
                    "more than {MAX_ELEMENTS} values in one reply"
                )));
            }
            self.pos = next;
            if let Some(n) = opens {
                self.open.push(n);
                continue;
            }
            // Close every array this value completes.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some(self.pos)),
                    Some(left) if *left > 1 => {
                        *left -= 1;
                        break;
                    }
                    Some(_) => {
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// Returns the end of the line starting at `pos` (the index of its `\r`).
fn line_end(buf: &[u8], pos: usize) -> Result<usize, FrameError> {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest.iter().take(MAX_LINE + 2).position(|&b| b == b'\r') {
        Some(i) if i > MAX_LINE => Err(protocol(format!("line longer than {MAX_LINE} bytes"))),
        Some(i) => match rest.get(i + 1) {
            Some(b'\n') => Ok(pos + i),
            Some(_) => Err(protocol("CR not followed by LF")),
            None => Err(FrameError::Incomplete),
        },
        None if rest.len() > MAX_LINE => {
            Err(protocol(format!("line longer than {MAX_LINE} bytes")))
        }
        None => Err(FrameError::Incomplete),
    }
}

/// Parses a RESP integer line (`-?[0-9]+`) without overflow.
fn int(line: &[u8]) -> Result<i64, FrameError> {
    let (neg, digits) = match line.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(protocol("expected an integer"));
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(protocol("expected an integer"));
        }
        let d = i64::from(d - b'0');
        // Accumulate negatively so that i64::MIN parses.
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_sub(d))
            .ok_or_else(|| protocol("integer out of range"))?;
    }
    if neg {
        Ok(v)
    } else {
        v.checked_neg()
            .ok_or_else(|| protocol("integer out of range"))
    }
}

/// A length header (`$n` or `*n`): `None` for the nil form `-1`.
fn length(line: &[u8], max: usize, what: &str) -> Result<Option<usize>, FrameError> {
    match int(line)? {
        -1 => Ok(None),
        n if n < 0 => Err(protocol(format!("negative {what} length"))),
        n => match usize::try_from(n) {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(protocol(format!(
                "{what} of {n} exceeds the limit of {max}"
            ))),
        },
    }
}

/// Parses a frame already validated by a [`Scanner`]; still total (no panics) on any input.
fn parse_at(buf: &[u8], pos: usize) -> Result<(Frame, usize), FrameError> {
    let Some(&ty) = buf.get(pos) else {
        return Err(FrameError::Incomplete);
    };
    let start = pos + 1;
    let end = line_end(buf, start)?;
    let line = buf.get(start..end).unwrap_or_default();
    let head = end + 2 - pos;
    match ty {
        b'+' => Ok((
            Frame::Simple(String::from_utf8_lossy(line).into_owned()),
            head,
        )),
        b'-' => Ok((
            Frame::Error(String::from_utf8_lossy(line).into_owned()),
            head,
        )),
        b':' => Ok((Frame::Integer(int(line)?), head)),
        b'$' => match length(line, MAX_BULK, "bulk string")? {
            None => Ok((Frame::NilBulk, head)),
            Some(n) => {
                let data = buf
                    .get(end + 2..end + 2 + n)
                    .ok_or(FrameError::Incomplete)?;
                Ok((Frame::Bulk(data.to_vec()), head + n + 2))
            }
        },
        b'*' => match length(line, MAX_ARRAY, "array")? {
            None => Ok((Frame::NilArray, head)),
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(1024));
                let mut used = head;
                for _ in 0..n {
                    let (item, len) = parse_at(buf, pos + used)?;
                    items.push(item);
                    used += len;
                }
                Ok((Frame::Array(items), used))
            }
        },
        other => Err(protocol(format!("unknown type byte 0x{other:02x}"))),
    }
}

/// One command, already encoded as a RESP array of bulk strings (the only form servers accept
/// from clients besides inline commands). `Debug` shows the size only: `AUTH` carries a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Command(Vec<u8>);

impl Command {
    /// Encodes `args` (the command name first).
    pub fn new(args: &[&[u8]]) -> Self {
        let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        out.push(b'*');
        out.extend_from_slice(args.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        for a in args {
            out.push(b'$');
            out.extend_from_slice(a.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        Self(out)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn one(b: &[u8]) -> Frame {
        let (f, n) = parse(b).unwrap();
        assert_eq!(
            n,
            b.len(),
            "whole input used for {:?}",
            String::from_utf8_lossy(b)
        );
        f
    }

    fn proto(b: &[u8]) {
        assert!(
            matches!(check(b), Err(FrameError::Protocol(_))),
            "{:?} should be a protocol error",
            String::from_utf8_lossy(b)
        );
    }

    const SAMPLES: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR wrong number of arguments\r\n",
        b":0\r\n",
        b":-2\r\n",
        b":9223372036854775807\r\n",
        b":-9223372036854775808\r\n",
        b"$5\r\nhello\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"$4\r\na\r\nb\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*3\r\n:1\r\n$-1\r\n*2\r\n+a\r\n*1\r\n$1\r\nx\r\n",
        b"*1\r\n*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n",
    ];

    #[test]
    fn values() {
        assert_eq!(one(b"+OK\r\n"), Frame::Simple("OK".into()));
        assert!(one(b"+OK\r\n").is_ok());
        assert_eq!(one(b"-ERR x\r\n"), Frame::Error("ERR x".into()));
        assert_eq!(one(b":-2\r\n"), Frame::Integer(-2));
        assert_eq!(one(b":-1\r\n"), Frame::Integer(-1));
        assert_eq!(one(b":-9223372036854775808\r\n"), Frame::Integer(i64::MIN));
        assert_eq!(one(b":9223372036854775807\r\n"), Frame::Integer(i64::MAX));
        assert_eq!(one(b"$-1\r\n"), Frame::NilBulk);
        assert_eq!(one(b"*-1\r\n"), Frame::NilArray);
        assert_eq!(one(b"$0\r\n\r\n"), Frame::Bulk(vec![]));
        assert_eq!(one(b"*0\r\n"), Frame::Array(vec![]));
        // Bulk strings are binary safe: CRLF inside is data.
        assert_eq!(one(b"$4\r\na\r\nb\r\n"), Frame::Bulk(b"a\r\nb".to_vec()));
        assert_eq!(
            one(b"*3\r\n:1\r\n$-1\r\n*2\r\n+a\r\n*1\r\n$1\r\nx\r\n"),
            Frame::Array(vec![
                Frame::Integer(1),
                Frame::NilBulk,
                Frame::Array(vec![
                    Frame::Simple("a".into()),
                    Frame::Array(vec![Frame::Bulk(b"x".to_vec())])
                ]),
            ])
        );
    }

    #[test]
    fn every_split_is_incomplete_then_complete() {
        for s in SAMPLES {
            for cut in 0..s.len() {
                assert_eq!(
                    check(&s[..cut]),
                    Err(FrameError::Incomplete),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(s)
                );
                assert_eq!(parse(&s[..cut]), Err(FrameError::Incomplete));
            }
            assert_eq!(check(s), Ok(s.len()));
        }
    }

    #[test]
    fn the_scanner_resumes_where_it_stopped() {
        // Fed every prefix in turn, the scanner ends where one whole check ends, and it only
        // moves forward.
        for s in SAMPLES {
            for step in 1..4 {
                let mut sc = Scanner::default();
                let mut last = 0;
                let mut done = None;
                for cut in (0..=s.len()).step_by(step).chain([s.len()]) {
                    done = sc.advance(&s[..cut]).unwrap();
                    assert!(sc.pos >= last);
                    last = sc.pos;
                    if done.is_some() {
                        assert_eq!(cut, s.len(), "{:?}", String::from_utf8_lossy(s));
                        break;
                    }
                }
                assert_eq!(done, Some(s.len()), "{:?}", String::from_utf8_lossy(s));
            }
        }
        // A long array arriving a byte at a time is scanned once (the position only advances),
        // and what the scanner accepts, the parser parses.
        let n = 5000;
        let mut big = format!("*{n}\r\n").into_bytes();
        for _ in 0..n {
            big.extend_from_slice(b":0\r\n");
        }
        let mut sc = Scanner::default();
        let mut done = None;
        for cut in 0..=big.len() {
            if let Some(len) = sc.advance(&big[..cut]).unwrap() {
                done = Some(len);
                break;
            }
        }
        assert_eq!(done, Some(big.len()));
        let (f, used) = parse_checked(&big, big.len()).unwrap();
        assert_eq!(used, big.len());
        assert!(matches!(f, Frame::Array(ref v) if v.len() == n));
    }

    #[test]
    fn a_reply_of_too_many_values_is_refused() {
        // Arrays under MAX_ARRAY each, nested, but more values than MAX_ELEMENTS in all.
        let per = MAX_ARRAY / 2;
        let mut b = b"*3\r\n".to_vec();
        for _ in 0..3 {
            b.extend_from_slice(format!("*{per}\r\n").as_bytes());
            for _ in 0..per {
                b.extend_from_slice(b":0\r\n");
            }
        }
        proto(&b);
    }

    #[test]
    fn trailing_bytes_belong_to_the_next_frame() {
        let mut b = b"+OK\r\n".to_vec();
        b.extend_from_slice(b":1");
        let (f, n) = parse(&b).unwrap();
        assert_eq!((f, n), (Frame::Simple("OK".into()), 5));
        assert_eq!(check(&b[n..]), Err(FrameError::Incomplete));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        proto(b"!3\r\nabc\r\n"); // RESP3 blob error: not RESP2
        proto(b"%1\r\n");
        proto(b"\x00");
        proto(b"hello\r\n");
        proto(b":abc\r\n");
        proto(b":\r\n");
        proto(b":-\r\n");
        proto(b":1-2\r\n");
        proto(b":99999999999999999999\r\n");
        proto(b":9223372036854775808\r\n");
        proto(b"$-2\r\n");
        proto(b"*-5\r\n");
        proto(b"$3\r\nabcd\r\n");
        proto(b"$x\r\n");
        proto(b"+OK\rX");
        proto(b"*2\r\n:1\r\n?\r\n");
    }

    #[test]
    fn limits() {
        proto(format!("${}\r\n", MAX_BULK + 1).as_bytes());
        assert_eq!(
            check(format!("${MAX_BULK}\r\n").as_bytes()),
            Err(FrameError::Incomplete)
        );
        proto(format!("*{}\r\n", MAX_ARRAY + 1).as_bytes());
        let mut deep = "*1\r\n".repeat(MAX_DEPTH);
        deep.push_str(":1\r\n");
        assert_eq!(check(deep.as_bytes()), Ok(deep.len()));
        let mut deeper = "*1\r\n".repeat(MAX_DEPTH + 1);
        deeper.push_str(":1\r\n");
        proto(deeper.as_bytes());
        let long = vec![b'a'; MAX_LINE + 2];
        let mut line = vec![b'+'];
        line.extend_from_slice(&long);
        proto(&line);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: every prefix and single-byte mutation of the samples.
        for s in SAMPLES {
            for i in 0..s.len() {
                for b in [0u8, b'\r', b'\n', b'-', b'*', b'$', b'9', 0xff] {
                    let mut m = s.to_vec();
                    m[i] = b;
                    let _ = parse(&m);
                    let _ = parse(&m[i..]);
                }
            }
        }
    }

    #[test]
    fn command_encoding() {
        let c = Command::new(&[b"SET", b"k", b"", b"PX", b"100"]);
        assert_eq!(
            c.as_bytes(),
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nPX\r\n$3\r\n100\r\n"
        );
        // A command is itself a valid frame.
        assert_eq!(check(c.as_bytes()), Ok(c.as_bytes().len()));
        assert_eq!(
            format!("{:?}", Command::new(&[b"AUTH", b"secret"])),
            "Command(26 bytes)"
        );
    }
}
