//! Python's message framing, and a frame reader that never trusts a length.
//!
//! ```text
//!  len <= 0x7fffffff:  +----------------+------------------+
//!                      | i32 BE  len    | len bytes        |
//!                      +----------------+------------------+
//!  len >  0x7fffffff:  +----------------+----------------+------------------+
//!                      | i32 BE  -1     | u64 BE  len    | len bytes        |
//!                      +----------------+----------------+------------------+
//! ```
//!
//! This is `multiprocessing.connection.Connection._send_bytes` /
//! `_recv_bytes` of CPython 3.8 and newer (3.7 and older knew only the
//! first form, which is what every frame of at most 2 GiB - 1 still is).
//!
//! [`FrameReader`] buffers what it reads ([`READ_BUF`] bytes), so a small
//! message costs one `read`, and it consumes nothing of a frame until it
//! can consume all of it, for any frame that fits that buffer: a deadline
//! that passes, or a frame longer than the caller's maximum, leaves the
//! stream where it was. Only a frame longer than the buffer is consumed as
//! it arrives; if that is cut short (deadline, end of stream, error) the
//! stream is mid-frame and the reader refuses every later read
//! ([`ConnectionError::Broken`]).

use std::time::Instant;

use super::ConnectionError;

/// Bytes of the short header.
pub(crate) const SHORT_HEADER: usize = 4;
/// Bytes of the long header (`-1`, then the 64-bit length).
pub(crate) const LONG_HEADER: usize = 12;
/// The longest payload the short header carries.
pub(crate) const SHORT_MAX: u64 = 0x7fff_ffff;
/// Bytes the reader buffers; frames up to this size (header included) are
/// consumed whole or not at all.
pub(crate) const READ_BUF: usize = 64 * 1024;
/// Messages up to this size go out in one write with their header (no
/// small second segment for Nagle to hold back on TCP).
pub(crate) const COALESCE: usize = 64 * 1024;
/// A large payload is read into a `Vec` grown to at least this much at a
/// time (and at most doubled), never to the announced length at once.
const GROW_MIN: usize = 256 * 1024;

/// A byte stream with deadlines: a socket, or memory in tests and fuzzing.
pub(crate) trait Transport {
    /// Reads some bytes into `buf`, waiting at most until `deadline`
    /// (`None`: forever). `Ok(0)`: end of stream.
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Timeout`] once `deadline` has passed with
    /// nothing read, [`ConnectionError::Io`].
    fn read_some(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, ConnectionError>;

    /// Writes all of `buf`, waiting at most until `deadline`.
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Timeout`], [`ConnectionError::Closed`] (the peer
    /// is gone), [`ConnectionError::Io`].
    fn write_all(&mut self, buf: &[u8], deadline: Option<Instant>) -> Result<(), ConnectionError>;
}

/// The header of a `len`-byte payload, and how many of its bytes count.
pub(crate) fn header(len: usize) -> ([u8; LONG_HEADER], usize) {
    let mut h = [0u8; LONG_HEADER];
    let len = len as u64;
    if len <= SHORT_MAX {
        h[..SHORT_HEADER].copy_from_slice(&(len as u32).to_be_bytes());
        (h, SHORT_HEADER)
    } else {
        h[..SHORT_HEADER].copy_from_slice(&(-1i32).to_be_bytes());
        h[SHORT_HEADER..].copy_from_slice(&len.to_be_bytes());
        (h, LONG_HEADER)
    }
}

/// Decodes the header at the start of `b`: `Ok(Some((payload_len,
/// header_len)))`, or `Ok(None)` if `b` is too short to tell.
///
/// # Errors
///
/// [`ConnectionError::BadLength`] for a negative length other than `-1`.
pub(crate) fn parse_header(b: &[u8]) -> Result<Option<(u64, usize)>, ConnectionError> {
    let Some(short) = b.get(..SHORT_HEADER) else {
        return Ok(None);
    };
    let n = i32::from_be_bytes([short[0], short[1], short[2], short[3]]);
    match n {
        0.. => Ok(Some((n as u64, SHORT_HEADER))),
        -1 => Ok(b.get(SHORT_HEADER..LONG_HEADER).map(|l| {
            let mut w = [0u8; 8];
            w.copy_from_slice(l);
            (u64::from_be_bytes(w), LONG_HEADER)
        })),
        _ => Err(ConnectionError::BadLength(i64::from(n))),
    }
}

/// Sends one frame: header and payload in one write up to [`COALESCE`]
/// bytes (through `scratch`), two writes above.
///
/// # Errors
///
/// As [`Transport::write_all`].
pub(crate) fn write_frame<T: Transport + ?Sized>(
    t: &mut T,
    scratch: &mut Vec<u8>,
    payload: &[u8],
    deadline: Option<Instant>,
) -> Result<(), ConnectionError> {
    let (h, hl) = header(payload.len());
    if payload.len() <= COALESCE {
        scratch.clear();
        scratch.extend_from_slice(&h[..hl]);
        scratch.extend_from_slice(payload);
        t.write_all(scratch, deadline)
    } else {
        t.write_all(&h[..hl], deadline)?;
        t.write_all(payload, deadline)
    }
}

/// Where a frame's payload goes.
#[derive(Debug)]
pub(crate) enum Dest<'a> {
    /// Replaces the vector's contents, growing it as bytes arrive.
    Vec(&'a mut Vec<u8>),
    /// The front of a caller's buffer (its length is the maximum).
    Slice(&'a mut [u8]),
}

/// Reads frames from a [`Transport`]; see the module docs.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    broken: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::with_capacity(READ_BUF)
    }
}

impl FrameReader {
    /// A reader that buffers `cap` bytes (at least a long header).
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Self {
            buf: vec![0u8; cap.max(LONG_HEADER)].into_boxed_slice(),
            pos: 0,
            end: 0,
            broken: false,
        }
    }

    /// Whether bytes are waiting in the buffer.
    pub(crate) fn has_buffered(&self) -> bool {
        self.end > self.pos
    }

    /// Whether an earlier read left the stream mid-frame.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Marks the stream unusable (a write was cut mid-frame).
    pub(crate) fn set_broken(&mut self) {
        self.broken = true;
    }

    /// Reads once more into the buffer (moving what is left to its front
    /// first); returns the bytes read, 0 at end of stream.
    fn fill<T: Transport + ?Sized>(
        &mut self,
        t: &mut T,
        deadline: Option<Instant>,
    ) -> Result<usize, ConnectionError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        debug_assert!(self.end < self.buf.len());
        let n = t.read_some(&mut self.buf[self.end..], deadline)?;
        self.end += n;
        Ok(n)
    }

    /// Reads one frame of at most `max` payload bytes into `dest` (whose
    /// length is its maximum if it is a slice); returns the payload length.
    ///
    /// # Errors
    ///
    /// - [`ConnectionError::Broken`]: an earlier read was cut mid-frame.
    /// - [`ConnectionError::Closed`]: the stream ended between frames.
    /// - [`ConnectionError::TooLarge`]: the frame announces more than
    ///   `max` (or the slice's length); nothing of it is consumed.
    /// - [`ConnectionError::Timeout`]: `deadline` passed; nothing is
    ///   consumed if the frame fits the buffer, else the reader is broken.
    /// - [`ConnectionError::Truncated`]: the stream ended mid-frame.
    /// - [`ConnectionError::BadLength`], [`ConnectionError::Io`].
    pub(crate) fn read_frame<T: Transport + ?Sized>(
        &mut self,
        t: &mut T,
        deadline: Option<Instant>,
        max: usize,
        mut dest: Dest<'_>,
    ) -> Result<usize, ConnectionError> {
        if self.broken {
            return Err(ConnectionError::Broken);
        }
        let max = match &dest {
            Dest::Vec(_) => max,
            Dest::Slice(s) => max.min(s.len()),
        };
        let (len, hl) = loop {
            match parse_header(&self.buf[self.pos..self.end]) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
            if self.fill(t, deadline)? == 0 {
                return Err(if self.has_buffered() {
                    self.broken = true;
                    ConnectionError::Truncated
                } else {
                    ConnectionError::Closed
                });
            }
        };
        if len > max as u64 {
            return Err(ConnectionError::TooLarge { len, max });
        }
        // `len <= max <= usize::MAX` from here.
        let len = len as usize;
        if hl + len <= self.buf.len() {
            while self.end - self.pos < hl + len {
                if self.fill(t, deadline)? == 0 {
                    self.broken = true;
                    return Err(ConnectionError::Truncated);
                }
            }
            let start = self.pos + hl;
            let payload = &self.buf[start..start + len];
            match &mut dest {
                Dest::Vec(v) => {
                    v.clear();
                    v.extend_from_slice(payload);
                }
                Dest::Slice(s) => s[..len].copy_from_slice(payload),
            }
            self.pos = start + len;
            if self.pos == self.end {
                self.pos = 0;
                self.end = 0;
            }
            return Ok(len);
        }
        // Longer than the buffer: consume as it arrives.
        self.pos += hl;
        let r = self.read_large(t, deadline, len, dest);
        if r.is_err() {
            self.broken = true;
        }
        r.map(|()| len)
    }

    fn read_large<T: Transport + ?Sized>(
        &mut self,
        t: &mut T,
        deadline: Option<Instant>,
        len: usize,
        dest: Dest<'_>,
    ) -> Result<(), ConnectionError> {
        let have = (self.end - self.pos).min(len);
        let buffered = &self.buf[self.pos..self.pos + have];
        match dest {
            Dest::Slice(s) => {
                s[..have].copy_from_slice(buffered);
                self.pos += have;
                let mut got = have;
                while got < len {
                    let n = t.read_some(&mut s[got..len], deadline)?;
                    if n == 0 {
                        return Err(ConnectionError::Truncated);
                    }
                    got += n;
                }
            }
            Dest::Vec(v) => {
                v.clear();
                v.extend_from_slice(buffered);
                self.pos += have;
                let mut got = have;
                while got < len {
                    if got == v.len() {
                        // Grow by what has arrived, never to `len` at once.
                        let target = len.min(got.saturating_mul(2).max(GROW_MIN));
                        v.resize(target, 0);
                    }
                    let n = match t.read_some(&mut v[got..], deadline) {
                        Ok(0) => {
                            v.truncate(got);
                            return Err(ConnectionError::Truncated);
                        }
                        Ok(n) => n,
                        Err(e) => {
                            v.truncate(got);
                            return Err(e);
                        }
                    };
                    got += n;
                }
            }
        }
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        Ok(())
    }
}

/// A [`Transport`] over memory: reads come from `input` (then end of
/// stream), writes go to `output`. For unit tests and the fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, Default)]
pub(crate) struct MemTransport {
    /// What the peer sent.
    pub(crate) input: Vec<u8>,
    /// How much of `input` was read.
    pub(crate) read: usize,
    /// At most this many bytes per read (0: no limit).
    pub(crate) chunk: usize,
    /// What this side wrote.
    pub(crate) output: Vec<u8>,
}

#[cfg(any(test, feature = "fuzzing"))]
impl Transport for MemTransport {
    fn read_some(
        &mut self,
        buf: &mut [u8],
        _deadline: Option<Instant>,
    ) -> Result<usize, ConnectionError> {
        let rest = &self.input[self.read..];
        let mut n = rest.len().min(buf.len());
        if self.chunk > 0 {
            n = n.min(self.chunk);
        }
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8], _deadline: Option<Instant>) -> Result<(), ConnectionError> {
        self.output.extend_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut t = MemTransport::default();
        let mut s = Vec::new();
        for p in payloads {
            write_frame(&mut t, &mut s, p, None).unwrap();
        }
        t.output
    }

    #[test]
    fn headers_are_pythons() {
        assert_eq!(frames(&[b""]), [0, 0, 0, 0]);
        assert_eq!(frames(&[b"ab"]), [0, 0, 0, 2, b'a', b'b']);
        let (h, n) = header(0x8000_0000);
        assert_eq!(
            &h[..n],
            &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]
        );
        assert_eq!(parse_header(&h[..n]).unwrap(), Some((0x8000_0000, 12)));
        assert_eq!(parse_header(&h[..11]).unwrap(), None);
        assert!(matches!(
            parse_header(&[0xff, 0xff, 0xff, 0xfe]),
            Err(ConnectionError::BadLength(-2))
        ));
    }

    #[test]
    fn frames_round_trip_in_any_chunking() {
        let big = vec![7u8; READ_BUF * 3 + 5];
        let input = frames(&[b"", b"hello", &big, b"x"]);
        for chunk in [0, 1, 3, 1000] {
            let mut t = MemTransport {
                input: input.clone(),
                chunk,
                ..Default::default()
            };
            let mut r = FrameReader::with_capacity(if chunk == 3 { 16 } else { READ_BUF });
            let mut v = Vec::new();
            for want in [&b""[..], b"hello", &big, b"x"] {
                let n = r
                    .read_frame(&mut t, None, usize::MAX, Dest::Vec(&mut v))
                    .unwrap();
                assert_eq!(n, want.len());
                assert_eq!(v, want);
            }
            assert!(matches!(
                r.read_frame(&mut t, None, 10, Dest::Vec(&mut v)),
                Err(ConnectionError::Closed)
            ));
        }
    }

    #[test]
    fn too_large_consumes_nothing() {
        let mut t = MemTransport {
            input: frames(&[b"0123456789"]),
            ..Default::default()
        };
        let mut r = FrameReader::default();
        let mut small = [0u8; 4];
        assert!(matches!(
            r.read_frame(&mut t, None, 100, Dest::Slice(&mut small)),
            Err(ConnectionError::TooLarge { len: 10, max: 4 })
        ));
        let mut v = Vec::new();
        r.read_frame(&mut t, None, 10, Dest::Vec(&mut v)).unwrap();
        assert_eq!(v, b"0123456789");
    }

    #[test]
    fn a_huge_announced_length_allocates_nothing() {
        // 1 TiB announced, 3 bytes sent.
        let (h, hl) = header(1 << 40);
        let mut input = h[..hl].to_vec();
        input.extend_from_slice(b"abc");
        let mut t = MemTransport {
            input,
            ..Default::default()
        };
        let mut r = FrameReader::default();
        let mut v = Vec::new();
        let e = r.read_frame(&mut t, None, usize::MAX, Dest::Vec(&mut v));
        assert!(matches!(e, Err(ConnectionError::Truncated)), "{e:?}");
        assert!(v.capacity() <= GROW_MIN, "{}", v.capacity());
        assert!(matches!(
            r.read_frame(&mut t, None, 10, Dest::Vec(&mut v)),
            Err(ConnectionError::Broken)
        ));
    }

    #[test]
    fn truncated_small_frame() {
        let mut input = frames(&[b"hello"]);
        input.pop();
        let mut t = MemTransport {
            input,
            ..Default::default()
        };
        let mut r = FrameReader::default();
        let mut v = Vec::new();
        assert!(matches!(
            r.read_frame(&mut t, None, 10, Dest::Vec(&mut v)),
            Err(ConnectionError::Truncated)
        ));
        // A header cut short is truncated too.
        let mut t = MemTransport {
            input: vec![0, 0],
            ..Default::default()
        };
        let mut r = FrameReader::default();
        assert!(matches!(
            r.read_frame(&mut t, None, 10, Dest::Vec(&mut v)),
            Err(ConnectionError::Truncated)
        ));
    }
}
