//! The small framed protocol between a parent, its spawned children and the
//! fork server.
//!
//! ```text
//!  frame:  +-----+-------------+------------------+
//!          | tag | len (u32 LE)| payload (len B)  |
//!          +-----+-------------+------------------+
//! ```
//!
//! | tag | from -> to | payload |
//! |---|---|---|
//! | `C` challenge | spawned child -> parent, server -> client | [`NONCE_LEN`] random bytes |
//! | `K` proof | parent -> spawned child, client -> server | the challenge's bytes, sent by the parent process itself |
//! | `R` ready | spawned child -> parent, server -> client | empty |
//! | `U` unknown entry | spawned child -> parent | entry name |
//! | `A` job | parent -> spawned child | the parent's auth key, then argument bytes: see [`job_prefix`] |
//! | `P` panicked | child -> parent | panic message |
//! | `F` failed | child -> parent | error message (closure returned `Err`) |
//! | `Q` request | client -> server (+ 1 fd) | see [`Request`] |
//! | `I` started | server -> client (+ pidfd) | worker pid, u32 LE |
//! | `E` refused | server -> client | reason |
//! | `S` status | server -> client | kind (0 exit, 1 signal) + i32 LE |
//!
//! `C` and `K` come first on every launch: see
//! [`prove_launch`](super::launch::prove_launch) for what they prove.
//!
//! Every length is checked against [`MAX_FRAME`] and every payload decoded
//! with bounds checks: a confused or hostile peer yields an error, never a
//! panic.

use crate::sys::WaitStatus;

pub(crate) const CHALLENGE: u8 = b'C';
pub(crate) const PROOF: u8 = b'K';
pub(crate) const READY: u8 = b'R';
pub(crate) const UNKNOWN_ENTRY: u8 = b'U';
pub(crate) const ARGS: u8 = b'A';
pub(crate) const PANICKED: u8 = b'P';
pub(crate) const FAILED: u8 = b'F';
pub(crate) const REQUEST: u8 = b'Q';
pub(crate) const STARTED: u8 = b'I';
pub(crate) const REFUSED: u8 = b'E';
pub(crate) const STATUS: u8 = b'S';

/// Bytes of a frame header.
pub(crate) const HEADER: usize = 5;

/// Largest payload accepted (arguments included).
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Longest report message: a report frame then fits `PIPE_BUF` (4096), so a
/// child writes it in one atomic write that never blocks on an empty pipe.
pub(crate) const MAX_REPORT: usize = 4096 - HEADER;

/// Bytes of the random challenge of a launch.
pub(crate) const NONCE_LEN: usize = 16;

/// The start of an `A` frame's payload, which the argument bytes follow:
/// the parent's auth key (`connection::authkey()`, at the time of the
/// start) as a u32 LE length and its bytes. The key travels over the launch
/// socket, never in argv or the environment, which other processes may
/// read.
///
/// ```text
///  A payload: | key len (u32 LE) | key (len B) | argument bytes (the rest) |
/// ```
pub(crate) fn job_prefix(authkey: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + authkey.len());
    put_bytes(&mut v, authkey);
    v
}

/// Decodes an `A` frame's payload into the parent's auth key and the
/// argument bytes; `None` if the key's length runs past the payload.
pub(crate) fn decode_job(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader(p);
    let key = r.bytes()?;
    Some((key, r.0))
}

/// Decodes the payload of a `C` or `K` frame: exactly [`NONCE_LEN`] bytes.
pub(crate) fn parse_nonce(p: &[u8]) -> Option<[u8; NONCE_LEN]> {
    p.try_into().ok()
}

/// Encodes one frame.
pub(crate) fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.push(tag);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// A header for a payload sent separately.
pub(crate) fn header(tag: u8, len: usize) -> [u8; HEADER] {
    let l = (len as u32).to_le_bytes();
    [tag, l[0], l[1], l[2], l[3]]
}

/// Decodes a header: the tag and the payload length.
pub(crate) fn parse_header(h: &[u8; HEADER]) -> Option<(u8, usize)> {
    let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
    (len <= MAX_FRAME).then_some((h[0], len))
}

/// A report message cut to [`MAX_REPORT`] bytes on a character boundary.
pub(crate) fn report(tag: u8, msg: &str) -> Vec<u8> {
    let mut end = msg.len().min(MAX_REPORT);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    frame(tag, &msg.as_bytes()[..end])
}

/// Accumulates bytes from a stream and splits them into frames.
#[derive(Debug, Default)]
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
}

/// The peer sent bytes that are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadFrame;

impl FrameBuf {
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, BadFrame> {
        let Some(h) = self.buf.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let (tag, len) = parse_header(h).ok_or(BadFrame)?;
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Ok(Some((tag, payload)))
    }
}

/// Encodes a wait status for an `S` frame.
pub(crate) fn encode_status(s: WaitStatus) -> [u8; 5] {
    let (k, v) = match s {
        WaitStatus::Exited(c) => (0u8, c),
        WaitStatus::Signaled(sig) => (1u8, sig),
    };
    let b = v.to_le_bytes();
    [k, b[0], b[1], b[2], b[3]]
}

/// Decodes the payload of an `S` frame.
pub(crate) fn decode_status(p: &[u8]) -> Option<WaitStatus> {
    let [k, a, b, c, d] = *p else { return None };
    let v = i32::from_le_bytes([a, b, c, d]);
    match k {
        0 => Some(WaitStatus::Exited(v)),
        1 => Some(WaitStatus::Signaled(v)),
        _ => None,
    }
}

/// A fork-server request: which entry point to run, how, with what.
///
/// ```text
///  daemon (u8: 0 or 1) | parent pid (u32 LE) | entry | name
///  | ident count (u32 LE, <= 64) | ident (u32 LE each) | authkey | args
/// ```
///
/// `entry`, `name`, `authkey` and `args` are each a u32 LE length and
/// that many bytes; nothing may follow `args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) entry: String,
    pub(crate) name: String,
    pub(crate) ident: Vec<u32>,
    /// The requesting client's auth key at the time of the request (the
    /// server's own may differ), which the worker installs.
    pub(crate) authkey: Vec<u8>,
    pub(crate) args: Vec<u8>,
}

fn put_bytes(v: &mut Vec<u8>, b: &[u8]) {
    v.extend_from_slice(&(b.len() as u32).to_le_bytes());
    v.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

impl Request {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.authkey.len() + self.args.len());
        v.push(u8::from(self.daemon));
        v.extend_from_slice(&self.parent_pid.to_le_bytes());
        put_bytes(&mut v, self.entry.as_bytes());
        put_bytes(&mut v, self.name.as_bytes());
        v.extend_from_slice(&(self.ident.len() as u32).to_le_bytes());
        for i in &self.ident {
            v.extend_from_slice(&i.to_le_bytes());
        }
        put_bytes(&mut v, &self.authkey);
        put_bytes(&mut v, &self.args);
        v
    }

    pub(crate) fn decode(p: &[u8]) -> Option<Self> {
        let mut r = Reader(p);
        let daemon = match r.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let parent_pid = r.u32()?;
        let entry = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let name = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let n = r.u32()? as usize;
        if n > 64 {
            return None;
        }
        let mut ident = Vec::with_capacity(n);
        for _ in 0..n {
            ident.push(r.u32()?);
        }
        let authkey = r.bytes()?.to_vec();
        let args = r.bytes()?.to_vec();
        r.0.is_empty().then_some(Self {
            daemon,
            parent_pid,
            entry,
            name,
            ident,
            authkey,
            args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads() {
        let mut fb = FrameBuf::default();
        let mut bytes = frame(READY, b"");
        bytes.extend(frame(PANICKED, b"boom"));
        for b in &bytes[..7] {
            fb.extend(&[*b]);
        }
        assert_eq!(fb.next_frame(), Ok(Some((READY, vec![]))));
        assert_eq!(fb.next_frame(), Ok(None));
        fb.extend(&bytes[7..]);
        assert_eq!(fb.next_frame(), Ok(Some((PANICKED, b"boom".to_vec()))));
        assert_eq!(fb.next_frame(), Ok(None));
        fb.extend(&[b'X', 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(fb.next_frame(), Err(BadFrame));
    }

    #[test]
    fn reports_are_cut_on_char_boundaries() {
        let long = "é".repeat(5000);
        let f = report(PANICKED, &long);
        assert!(f.len() <= 4096);
        assert!(std::str::from_utf8(&f[HEADER..]).is_ok());
    }

    #[test]
    fn request_round_trips_and_rejects_garbage() {
        let r = Request {
            daemon: true,
            parent_pid: 42,
            entry: "work".into(),
            name: "Process-1:2".into(),
            ident: vec![1, 2],
            authkey: vec![5; 32],
            args: vec![9; 100],
        };
        let e = r.encode();
        assert_eq!(Request::decode(&e), Some(r));
        for cut in 0..e.len() {
            assert_eq!(Request::decode(&e[..cut]), None);
        }
        let mut extra = e.clone();
        extra.push(0);
        assert_eq!(Request::decode(&extra), None);
        let mut bad = e;
        bad[0] = 7;
        assert_eq!(Request::decode(&bad), None);
    }

    #[test]
    fn jobs_carry_the_key_then_the_arguments() {
        let mut p = job_prefix(b"secret");
        p.extend_from_slice(b"args");
        assert_eq!(decode_job(&p), Some((&b"secret"[..], &b"args"[..])));
        assert_eq!(decode_job(&job_prefix(b"")), Some((&b""[..], &b""[..])));
        // A key longer than the payload, or a payload without a whole length.
        for cut in 0..4 + b"secret".len() {
            assert_eq!(decode_job(&p[..cut]), None);
        }
        let mut long = p.clone();
        long[0] = 200;
        assert_eq!(decode_job(&long), None);
    }

    #[test]
    fn nonces_have_one_length() {
        let n = [7u8; NONCE_LEN];
        assert_eq!(parse_nonce(&n), Some(n));
        assert_eq!(parse_nonce(&n[1..]), None);
        assert_eq!(parse_nonce(&[0; NONCE_LEN + 1]), None);
        let f = frame(CHALLENGE, &n);
        assert_eq!(f.len(), HEADER + NONCE_LEN);
    }

    #[test]
    fn status_round_trips() {
        for s in [WaitStatus::Exited(3), WaitStatus::Signaled(9)] {
            assert_eq!(decode_status(&encode_status(s)), Some(s));
        }
        assert_eq!(decode_status(&[2, 0, 0, 0, 0]), None);
        assert_eq!(decode_status(&[0]), None);
    }
}
