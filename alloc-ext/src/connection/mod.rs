//! Authenticated message connections over sockets, wire-compatible with
//! Python's `multiprocessing.connection` (`Listener`, `Client`).
//!
//! A Rust [`Listener`] accepts Python's `Client`, a Rust [`Client`]
//! connects to Python's `Listener`, over a Unix-domain socket
//! ([`Address::Unix`], the default family, as in Python) or TCP
//! ([`Address::Tcp`]); what they exchange is byte messages
//! ([`SocketConnection::send_bytes`], [`SocketConnection::recv_bytes`]).
//!
//! # Example
//!
//! ```
//! use multiproc::connection::{authkey, Address, Client, Listener};
//!
//! // A loopback TCP listener; clients must hold this process's key.
//! let listener = Listener::bind(&Address::loopback(), &authkey())?;
//! let addr = listener.address().clone();
//! let client = std::thread::spawn(move || {
//!     let mut c = Client::connect(&addr, &authkey()).unwrap();
//!     c.send_bytes(b"hello").unwrap();
//!     c.recv_bytes(16).unwrap()
//! });
//! let mut conn = listener.accept()?;
//! let msg = conn.recv_bytes(16)?;
//! conn.send_bytes(&msg.to_ascii_uppercase())?;
//! assert_eq!(client.join().unwrap(), b"HELLO");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With Python on the other side (`Client(path, authkey=key)` in Python,
//! the same key bytes in Rust), the messages are Python's `send_bytes`/
//! `recv_bytes`. Python's `send`/`recv` pickle objects; this module does
//! not read or write pickles: exchange bytes (or a format both sides know,
//! such as JSON) with a Python peer.
//!
//! # Which `Connection`
//!
//! [`SocketConnection`] is the socket end this module makes. The crate's
//! [`crate::Connection`] is something else: an end of a [`crate::Pipe`],
//! which carries messages through shared memory and never touches a
//! socket. Python's `Pipe()` returns socket (or OS pipe) connections of
//! the same class as `Listener.accept()`; here the two are separate types
//! with the same message methods (`send_bytes`, `recv_bytes`, `poll`,
//! `send`/`recv` of `Pod` values). Use a `Pipe` between processes of one
//! program, a connection to talk across programs, languages or machines.
//!
//! # Wire format
//!
//! Python's, exactly: each message is a 4-byte big-endian signed length
//! and the payload; a payload longer than `0x7fffffff` bytes has the
//! length `-1`, then an 8-byte big-endian length. The handshake (below)
//! is made of such messages.
//!
//! # Authentication
//!
//! Both sides prove they hold the key, as in Python: a [`Listener`]
//! delivers a challenge and then answers one, a [`Client`] answers and
//! then delivers. A challenge is `#CHALLENGE#` followed by either
//! `{sha256}` and 40 random bytes (Python 3.12 and newer, and this
//! module's default, [`Challenge::Sha256`]) or 20 random bytes (Python
//! 3.11 and older, [`Challenge::Legacy`]). The answer is HMAC-MD5 over the
//! message, bare (16 bytes), for a 20-byte challenge, and `{name}` + HMAC
//! over the whole message for a prefixed one; the verifier replies
//! `#WELCOME#` or `#FAILURE#`. Answers accepted: bare HMAC-MD5 and
//! `{md5}`, `{sha256}`, `{sha384}` (Python 3.12 also names `sha3_256` and
//! `sha3_384`, which it never sends by default). MACs are RustCrypto's
//! `hmac`, compared in constant time; challenges come from the operating
//! system's random source. Every handshake message is capped at 256
//! bytes, as in Python.
//!
//! The key: [`authkey()`] is the process's default (32 random bytes made
//! on first use, as Python's `current_process().authkey`), which every
//! child inherits (fork, spawn and forkserver alike); [`set_authkey`]
//! replaces it. Python interoperates only
//! if both sides are given the same bytes (a Python process's own
//! default key is its own random value).
//!
//! # Security defaults
//!
//! - Nothing listens unless a [`Listener`] is made; nothing in this crate
//!   makes one on its own.
//! - TCP: [`Address::loopback`] binds `127.0.0.1`; any other interface
//!   must be named in the address.
//! - A Unix socket's file is made mode `0600` (owner only) right after
//!   `bind` (the umask covers the instant in between: with the usual
//!   `022`, no other user can connect then either), and removed when its
//!   listener is dropped.
//! - Every handshake has a deadline ([`HandshakeOptions::timeout`],
//!   default [`DEFAULT_HANDSHAKE_TIMEOUT`]): a client that connects and
//!   stalls (slow loris) makes one `accept` fail with
//!   [`ConnectionError::Timeout`], then the listener serves the next.
//! - A frame is never trusted: a length above the caller's maximum is
//!   [`ConnectionError::TooLarge`] before any of its payload is read; a
//!   payload is received into memory that grows as its bytes arrive,
//!   never allocated at the announced size up front; a stream that ends
//!   mid-frame is [`ConnectionError::Truncated`].
//!
//! # Performance
//!
//! `cargo bench -p multiproc-benches --bench connection` measures, in one
//! run, this module and Python 3.11.7's `multiprocessing.connection` the
//! same way (forked echo server, median of five batches). Two runs on the
//! project's 2-vCPU VM while other builds ran (load average about 4), as
//! "multiproc / Python (ratio)":
//!
//! | figure | Unix socket | loopback TCP |
//! |---|---|---|
//! | 8 B round trip | 10.3 / 19.8 µs (1.9x); 13.1 / 24.6 µs (1.9x) | 15.0 / 27.8 µs (1.9x); 18.9 / 29.3 µs (1.5x) |
//! | 1 MiB echo | 3.25 / 0.47 GB/s (6.9x); 2.38 / 0.34 GB/s (6.9x) | 1.13 / 0.46 GB/s (2.5x); 0.73 / 0.31 GB/s (2.3x) |
//! | handshake (both rounds) | 59 / 99 µs (1.7x); 80 / 146 µs (1.8x) | 110 / 202 µs (1.8x); 161 / 264 µs (1.6x) |
//!
//! Small messages and the handshake are bound by the kernel's wake-ups
//! (each side sleeps in `read` until the other's bytes arrive), which both
//! languages pay alike; a spin before sleeping was tried and made things
//! worse on two shared cores. Large messages gain from one copy per side
//! and no per-message allocation with `recv_bytes_into`.

use std::fmt;
use std::io;

mod authkey;
mod handshake;
mod socket;
pub(crate) mod wire;

pub use authkey::{authkey, set_authkey, AUTHKEY_LEN};
pub use handshake::Challenge;
pub use socket::{
    Address, Client, HandshakeOptions, Listener, SocketConnection, DEFAULT_HANDSHAKE_TIMEOUT,
};

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use handshake::{answer_challenge, deliver_challenge, MAX_HANDSHAKE_FRAME};

/// What a connection, listener or client operation can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A socket call failed.
    Io(io::Error),
    /// The deadline passed.
    Timeout,
    /// A message announced `len` bytes, more than the caller's `max`.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The caller's maximum.
        max: usize,
    },
    /// The stream ended in the middle of a message.
    Truncated,
    /// The peer closed the connection (between messages).
    Closed,
    /// An earlier call was cut off mid-message (timeout, truncation, a
    /// bad header): the stream is no longer at a message boundary.
    Broken,
    /// A message header with a negative length other than `-1`.
    BadLength(i64),
    /// The peer's handshake was no challenge, or one with a digest this
    /// side does not know.
    BadChallenge,
    /// Authentication failed: the peer's answer was wrong, or the peer
    /// refused ours (`#FAILURE#`).
    AuthFailed,
    /// A `Pod` value's message had another size.
    WrongSize {
        /// Bytes of the value.
        expected: usize,
        /// Bytes of the message.
        got: usize,
    },
    /// A value could not be encoded.
    #[cfg(feature = "serde")]
    Encode(postcard::Error),
    /// A message is not a valid encoding of the value.
    #[cfg(feature = "serde")]
    Decode(postcard::Error),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket error: {e}"),
            Self::Timeout => f.write_str("timed out"),
            Self::TooLarge { len, max } => {
                write!(f, "message of {len} bytes is longer than the maximum {max}")
            }
            Self::Truncated => f.write_str("connection closed in the middle of a message"),
            Self::Closed => f.write_str("connection closed by the peer"),
            Self::Broken => f.write_str("connection left mid-message by an earlier error"),
            Self::BadLength(n) => write!(f, "bad message length {n}"),
            Self::BadChallenge => f.write_str("peer sent no valid authentication challenge"),
            Self::AuthFailed => f.write_str("authentication failed"),
            Self::WrongSize { expected, got } => {
                write!(f, "message of {got} bytes for a value of {expected}")
            }
            #[cfg(feature = "serde")]
            Self::Encode(e) => write!(f, "encoding a message: {e}"),
            #[cfg(feature = "serde")]
            Self::Decode(e) => write!(f, "decoding a message: {e}"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            #[cfg(feature = "serde")]
            Self::Encode(e) | Self::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ConnectionError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}
