//! `Listener`, `Client` and `SocketConnection` over blocking std sockets.

use std::fmt;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::authkey::os_random;
use super::handshake::{self, Challenge};
use super::wire::{self, Dest, FrameReader, Transport};
use super::ConnectionError;
use crate::sys;

/// How long a handshake may take by default, from `accept` (or `connect`)
/// to the last byte of the second round.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a [`Listener`] listens and a [`Client`] connects (Python's
/// `address` with its `family`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix-domain stream socket at this path (`AF_UNIX`).
    Unix(PathBuf),
    /// A TCP socket (`AF_INET`/`AF_INET6`).
    Tcp(SocketAddr),
}

impl Address {
    /// A fresh Unix socket path in the temporary directory
    /// (`$TMPDIR/multiproc-<pid>-<random>.sock`), as Python's default
    /// `Listener()` address.
    pub fn unique_unix() -> Self {
        let mut r = [0u8; 8];
        os_random(&mut r);
        let name = format!(
            "multiproc-{}-{:016x}.sock",
            std::process::id(),
            u64::from_ne_bytes(r)
        );
        Self::Unix(std::env::temp_dir().join(name))
    }

    /// `127.0.0.1` and a port the kernel picks: loopback only.
    pub fn loopback() -> Self {
        Self::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Self::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Self::Unix(p)
    }
}

/// How a side authenticates its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeOptions {
    /// The challenge this side delivers (default [`Challenge::Sha256`]).
    pub challenge: Challenge,
    /// The deadline of the whole handshake, both rounds (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]). A peer that has not finished by then
    /// is dropped with [`ConnectionError::Timeout`].
    pub timeout: Duration,
}

impl Default for HandshakeOptions {
    fn default() -> Self {
        Self {
            challenge: Challenge::Sha256,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

#[derive(Debug)]
enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connected socket, and whether its reads spin before they sleep.
#[derive(Debug)]
struct Stream {
    sock: Sock,
    /// Reads left before spinning is tried again (0: spin).
    spin_backoff: u32,
}

/// How long a read tries without blocking before it sleeps in the kernel.
///
/// A reply usually comes within microseconds of its request, while a
/// process woken from `poll` on another vCPU costs tens of microseconds
/// (measured here: a Manager proxy call pair 80 us sleeping, 12 us with
/// the spin). But a spin that fails only burns a CPU the peer may need:
/// after a read that had to sleep past [`SPIN_MISS`], the next
/// [`SPIN_BACKOFF`] reads sleep at once.
const READ_SPIN: Duration = Duration::from_micros(40);
/// A wait longer than this, after a spin, makes reads stop spinning.
const SPIN_MISS: Duration = Duration::from_micros(200);
/// Reads that sleep at once after a spin missed.
const SPIN_BACKOFF: u32 = 64;

impl From<Sock> for Stream {
    fn from(sock: Sock) -> Self {
        Self {
            sock,
            spin_backoff: 0,
        }
    }
}

impl Stream {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Unix(s) => s.as_fd(),
            Sock::Tcp(s) => s.as_fd(),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match &self.sock {
            Sock::Unix(s) => s.set_write_timeout(t),
            Sock::Tcp(s) => s.set_write_timeout(t),
        }
    }

    /// Reads, sleeping in the kernel until data, the end, or `deadline`.
    fn blocking_read(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, ConnectionError> {
        wait_readable(self.fd(), deadline)?;
        loop {
            let r = match &mut self.sock {
                Sock::Unix(s) => s.read(buf),
                Sock::Tcp(s) => s.read(buf),
            };
            return match r {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A reset peer is an end of stream (mid-frame: truncated).
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
                Err(e) => Err(io_err(e)),
            };
        }
    }

    /// Tries to read without blocking for up to [`READ_SPIN`]; `None` if
    /// nothing came.
    fn spin_read(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Option<Result<usize, ConnectionError>> {
        let end = Instant::now() + READ_SPIN;
        loop {
            match sys::recv_nonblocking(self.fd(), buf) {
                Ok(Some(n)) => return Some(Ok(n)),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Some(Ok(0)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(io_err(e))),
            }
            let now = Instant::now();
            if now >= end || deadline.is_some_and(|d| now >= d) {
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

fn io_err(e: io::Error) -> ConnectionError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ConnectionError::Timeout,
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => ConnectionError::Closed,
        _ => ConnectionError::Io(e),
    }
}

/// Waits until `fd` is readable, at most until `deadline`.
fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<(), ConnectionError> {
    let Some(d) = deadline else {
        return Ok(());
    };
    loop {
        let now = Instant::now();
        if now >= d {
            return Err(ConnectionError::Timeout);
        }
        if sys::poll_readable(fd, Some(d - now)).map_err(ConnectionError::Io)? {
            return Ok(());
        }
    }
}

impl Transport for Stream {
    fn read_some(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, ConnectionError> {
        let spun = self.spin_backoff == 0;
        if spun {
            if let Some(r) = self.spin_read(buf, deadline) {
                return r;
            }
        } else {
            self.spin_backoff -= 1;
        }
        let slept = Instant::now();
        let r = self.blocking_read(buf, deadline);
        if spun && slept.elapsed() > SPIN_MISS {
            self.spin_backoff = SPIN_BACKOFF;
        }
        r
    }

    fn write_all(&mut self, buf: &[u8], deadline: Option<Instant>) -> Result<(), ConnectionError> {
        let Some(d) = deadline else {
            return sys::send_all(self.fd(), buf).map_err(io_err);
        };
        let rest = d.saturating_duration_since(Instant::now());
        if rest.is_zero() {
            return Err(ConnectionError::Timeout);
        }
        self.set_write_timeout(Some(rest))
            .map_err(ConnectionError::Io)?;
        let r = sys::send_all(self.fd(), buf).map_err(io_err);
        let reset = self.set_write_timeout(None).map_err(ConnectionError::Io);
        r.and(reset)
    }
}

/// One end of a message connection over a socket: what [`Listener::accept`]
/// and [`Client::connect`] return (Python's
/// `multiprocessing.connection.Connection`).
///
/// Not to be confused with the shared-memory [`crate::Connection`] of a
/// [`crate::Pipe`]; see the [module docs](super).
///
/// Messages are Python's frames (see the [module docs](super#wire-format)):
/// whatever one side sends with `send_bytes`, the other receives whole
/// with `recv_bytes`, `recv_bytes_into` or Python's `recv_bytes`.
///
/// # Examples
///
/// ```
/// use multiproc::connection::{authkey, Address, Client, Listener};
///
/// let listener = Listener::bind(&Address::unique_unix(), &authkey())?;
/// let addr = listener.address().clone();
/// let t = std::thread::spawn(move || -> Result<(), multiproc::connection::ConnectionError> {
///     let mut c = Client::connect(&addr, &authkey())?;
///     c.send_bytes(b"ping")?;
///     assert_eq!(c.recv::<u64>()?, 42);
///     Ok(())
/// });
/// let mut conn = listener.accept()?;
/// assert_eq!(conn.recv_bytes(1024)?, b"ping");
/// conn.send(&42u64)?;
/// t.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SocketConnection {
    stream: Stream,
    reader: FrameReader,
    scratch: Vec<u8>,
    write_broken: bool,
}

impl fmt::Debug for SocketConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketConnection")
            .field("stream", &self.stream)
            .field("broken", &(self.reader.is_broken() || self.write_broken))
            .finish_non_exhaustive()
    }
}

impl AsFd for SocketConnection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.fd()
    }
}

fn deadline_in(t: Duration) -> Option<Instant> {
    // A timeout too long to represent is no deadline.
    Instant::now().checked_add(t)
}

impl SocketConnection {
    fn new(stream: Stream) -> Self {
        Self {
            stream,
            reader: FrameReader::default(),
            scratch: Vec::new(),
            write_broken: false,
        }
    }

    fn handshake(
        &mut self,
        key: &[u8],
        opts: &HandshakeOptions,
        deliver_first: bool,
    ) -> Result<(), ConnectionError> {
        let deadline = deadline_in(opts.timeout);
        let (t, r) = (&mut self.stream, &mut self.reader);
        let deliver = |t: &mut Stream, r: &mut FrameReader| {
            handshake::deliver_challenge(t, r, key, opts.challenge, os_random, deadline)
        };
        if deliver_first {
            deliver(t, r)?;
            handshake::answer_challenge(t, r, key, deadline)
        } else {
            handshake::answer_challenge(t, r, key, deadline)?;
            deliver(t, r)
        }
    }

    /// Runs a listener's side of the handshake on a connection from
    /// [`Listener::accept_unauthenticated`].
    pub(crate) fn authenticate_client(
        &mut self,
        key: &[u8],
        opts: &HandshakeOptions,
    ) -> Result<(), ConnectionError> {
        self.handshake(key, opts, true)
    }

    fn send_inner(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), ConnectionError> {
        if self.write_broken {
            return Err(ConnectionError::Broken);
        }
        let r = wire::write_frame(&mut self.stream, &mut self.scratch, msg, deadline);
        if matches!(r, Err(ConnectionError::Timeout)) {
            // Some of the frame may be out: the stream is mid-frame.
            self.write_broken = true;
        }
        r
    }

    /// Sends `msg` as one message (Python's `send_bytes`).
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Closed`] if the peer is gone,
    /// [`ConnectionError::Broken`] after a send that timed out,
    /// [`ConnectionError::Io`].
    pub fn send_bytes(&mut self, msg: &[u8]) -> Result<(), ConnectionError> {
        self.send_inner(msg, None)
    }

    /// [`send_bytes`](Self::send_bytes), waiting at most `timeout` for the
    /// peer to take it.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Self::send_bytes), and
    /// [`ConnectionError::Timeout`], after which the stream may hold part
    /// of the message and every later send fails with
    /// [`ConnectionError::Broken`].
    pub fn send_bytes_timeout(
        &mut self,
        msg: &[u8],
        timeout: Duration,
    ) -> Result<(), ConnectionError> {
        self.send_inner(msg, deadline_in(timeout))
    }

    /// Receives one message of at most `max` bytes (Python's
    /// `recv_bytes(maxlength)`).
    ///
    /// The buffer grows as the bytes arrive: a peer that announces more
    /// than it sends costs what it sent, not what it announced.
    ///
    /// # Errors
    ///
    /// - [`ConnectionError::TooLarge`]: the message announces more than
    ///   `max`; nothing of it is read (a call with a larger `max` gets it).
    /// - [`ConnectionError::Closed`]: the peer closed its end between
    ///   messages; [`ConnectionError::Truncated`]: within one.
    /// - [`ConnectionError::BadLength`]: not a frame header.
    /// - [`ConnectionError::Broken`]: an earlier receive was cut off
    ///   mid-message; [`ConnectionError::Io`].
    pub fn recv_bytes(&mut self, max: usize) -> Result<Vec<u8>, ConnectionError> {
        let mut v = Vec::new();
        self.reader
            .read_frame(&mut self.stream, None, max, Dest::Vec(&mut v))?;
        Ok(v)
    }

    /// [`recv_bytes`](Self::recv_bytes), waiting at most `timeout` for the
    /// whole message.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes), and
    /// [`ConnectionError::Timeout`]. A message of at most 64 KiB is taken
    /// whole or not at all, so after a timeout the next receive gets it; a
    /// timeout in the middle of a longer one leaves the connection
    /// [`Broken`](ConnectionError::Broken).
    pub fn recv_bytes_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, ConnectionError> {
        let mut v = Vec::new();
        self.reader.read_frame(
            &mut self.stream,
            deadline_in(timeout),
            max,
            Dest::Vec(&mut v),
        )?;
        Ok(v)
    }

    /// Receives one message into the front of `buf`; returns its length
    /// (Python's `recv_bytes_into`).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes), with `buf.len()` as the
    /// maximum: a longer message is [`ConnectionError::TooLarge`] and stays
    /// unread (Python raises `BufferTooShort` after reading it).
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, ConnectionError> {
        self.reader
            .read_frame(&mut self.stream, None, buf.len(), Dest::Slice(buf))
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into), waiting at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes_timeout`](Self::recv_bytes_timeout).
    pub fn recv_bytes_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, ConnectionError> {
        self.reader.read_frame(
            &mut self.stream,
            deadline_in(timeout),
            buf.len(),
            Dest::Slice(buf),
        )
    }

    /// Whether a message (or the end of the stream) is waiting, after
    /// waiting at most `timeout` (Python's `poll(timeout)`; zero: just
    /// look).
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Io`].
    pub fn poll(&mut self, timeout: Duration) -> Result<bool, ConnectionError> {
        if self.reader.has_buffered() {
            return Ok(true);
        }
        let deadline = deadline_in(timeout);
        loop {
            let rest = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if sys::poll_readable(self.stream.fd(), rest).map_err(ConnectionError::Io)? {
                return Ok(true);
            }
            if rest.is_some_and(|r| r.is_zero()) {
                return Ok(false);
            }
        }
    }

    /// Sends a `Pod` value as one message of its bytes.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Self::send_bytes).
    pub fn send<T: Pod>(&mut self, v: &T) -> Result<(), ConnectionError> {
        self.send_bytes(bytemuck::bytes_of(v))
    }

    /// Receives a `Pod` value: one message of exactly its size.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes); a message of another size is
    /// [`ConnectionError::TooLarge`] (left unread) or
    /// [`ConnectionError::WrongSize`] (read).
    pub fn recv<T: Pod>(&mut self) -> Result<T, ConnectionError> {
        self.recv_pod(None)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`ConnectionError::Timeout`] (the
    /// value is not consumed: it is never longer than 64 KiB... unless
    /// `T` is).
    pub fn recv_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T, ConnectionError> {
        self.recv_pod(deadline_in(timeout))
    }

    fn recv_pod<T: Pod>(&mut self, deadline: Option<Instant>) -> Result<T, ConnectionError> {
        let mut v = T::zeroed();
        let buf = bytemuck::bytes_of_mut(&mut v);
        let want = buf.len();
        let n = self
            .reader
            .read_frame(&mut self.stream, deadline, want, Dest::Slice(buf))?;
        if n != want {
            return Err(ConnectionError::WrongSize {
                expected: want,
                got: n,
            });
        }
        Ok(v)
    }

    /// Closes the connection (dropping it does the same).
    pub fn close(self) {}
}

#[cfg(feature = "serde")]
impl SocketConnection {
    /// Sends a serde value as one postcard-encoded message (readable by
    /// [`recv_serde`](Self::recv_serde), not by Python's `recv`, which
    /// expects a pickle).
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Encode`], and as [`send_bytes`](Self::send_bytes).
    pub fn send_serde<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
    ) -> Result<(), ConnectionError> {
        let bytes = postcard::to_stdvec(v).map_err(ConnectionError::Encode)?;
        self.send_bytes(&bytes)
    }

    /// Receives a value [`send_serde`](Self::send_serde) sent, from a
    /// message of at most `max` bytes.
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Decode`], and as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_serde<T: serde::de::DeserializeOwned>(
        &mut self,
        max: usize,
    ) -> Result<T, ConnectionError> {
        let bytes = self.recv_bytes(max)?;
        postcard::from_bytes(&bytes).map_err(ConnectionError::Decode)
    }

    /// [`recv_serde`](Self::recv_serde), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_serde`](Self::recv_serde) and
    /// [`recv_bytes_timeout`](Self::recv_bytes_timeout).
    pub fn recv_serde_timeout<T: serde::de::DeserializeOwned>(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<T, ConnectionError> {
        let bytes = self.recv_bytes_timeout(max, timeout)?;
        postcard::from_bytes(&bytes).map_err(ConnectionError::Decode)
    }
}

#[derive(Debug)]
enum ListenSock {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A socket that accepts authenticated connections (Python's
/// `multiprocessing.connection.Listener`).
///
/// Each [`accept`](Self::accept) runs both rounds of the handshake under a
/// deadline ([`HandshakeOptions::timeout`]): a client that stalls, sends
/// garbage or holds the wrong key costs one failed `accept`, after which
/// the listener takes the next client. A Unix socket's file is made mode
/// `0600` and removed when the listener is dropped.
///
/// # Examples
///
/// See [`SocketConnection`].
#[derive(Debug)]
pub struct Listener {
    sock: ListenSock,
    address: Address,
    authkey: Vec<u8>,
    opts: HandshakeOptions,
    /// The socket file this listener made: path, device and inode.
    unlink: Option<(PathBuf, u64, u64)>,
}

impl Listener {
    /// Listens at `address`; clients must prove they hold `authkey`
    /// (Python's `Listener(address, authkey=authkey)`; pass
    /// [`authkey()`](super::authkey) for Python's default).
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Io`]: the address is taken, the directory is not
    /// writable, ...
    pub fn bind(address: &Address, authkey: &[u8]) -> Result<Self, ConnectionError> {
        Self::bind_with(address, authkey, HandshakeOptions::default())
    }

    /// [`bind`](Self::bind) with handshake options.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub fn bind_with(
        address: &Address,
        authkey: &[u8],
        opts: HandshakeOptions,
    ) -> Result<Self, ConnectionError> {
        let (sock, address, unlink) = match address {
            Address::Unix(p) => {
                let l = UnixListener::bind(p).map_err(ConnectionError::Io)?;
                // The socket file is the door: owner only (`connect` needs
                // write permission on it).
                let made = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                    .and_then(|()| std::fs::metadata(p));
                let meta = match made {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = std::fs::remove_file(p);
                        return Err(ConnectionError::Io(e));
                    }
                };
                (
                    ListenSock::Unix(l),
                    address.clone(),
                    Some((p.clone(), meta.dev(), meta.ino())),
                )
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(ConnectionError::Io)?;
                let bound = l.local_addr().map_err(ConnectionError::Io)?;
                (ListenSock::Tcp(l), Address::Tcp(bound), None)
            }
        };
        Ok(Self {
            sock,
            address,
            authkey: authkey.to_vec(),
            opts,
            unlink,
        })
    }

    /// Where the listener listens (a TCP port of 0 resolved to the one the
    /// kernel picked).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a client and authenticates it (Python's `accept`).
    ///
    /// # Errors
    ///
    /// [`ConnectionError::AuthFailed`] (wrong key; the client was told
    /// `#FAILURE#`), [`ConnectionError::BadChallenge`],
    /// [`ConnectionError::Timeout`] (the handshake did not finish in
    /// time), [`ConnectionError::Closed`]/[`Truncated`](ConnectionError::Truncated)
    /// (the client left), [`ConnectionError::Io`]. Only `Io` errors from
    /// `accept` itself concern the listener; the others concern that one
    /// client, and the next `accept` serves the next.
    pub fn accept(&self) -> Result<SocketConnection, ConnectionError> {
        self.accept_until(None)
    }

    /// [`accept`](Self::accept), waiting at most `timeout` for a client to
    /// connect (the handshake then has its own deadline).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept), and [`ConnectionError::Timeout`] if no
    /// client came.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<SocketConnection, ConnectionError> {
        self.accept_until(deadline_in(timeout))
    }

    fn accept_until(&self, deadline: Option<Instant>) -> Result<SocketConnection, ConnectionError> {
        let mut c = self.accept_unauthenticated(deadline)?;
        c.handshake(&self.authkey, &self.opts, true)?;
        Ok(c)
    }

    /// Takes a client off the socket without the handshake, which the
    /// caller then runs with [`SocketConnection::authenticate_client`]
    /// (the Manager does it on the client's own thread, so a stalled
    /// client never holds up the next `accept`).
    pub(crate) fn accept_unauthenticated(
        &self,
        deadline: Option<Instant>,
    ) -> Result<SocketConnection, ConnectionError> {
        let fd = match &self.sock {
            ListenSock::Unix(l) => l.as_fd(),
            ListenSock::Tcp(l) => l.as_fd(),
        };
        wait_readable(fd, deadline)?;
        let stream = loop {
            let r = match &self.sock {
                ListenSock::Unix(l) => l.accept().map(|(s, _)| Stream::from(Sock::Unix(s))),
                ListenSock::Tcp(l) => l.accept().and_then(|(s, _)| {
                    s.set_nodelay(true)?;
                    Ok(Stream::from(Sock::Tcp(s)))
                }),
            };
            match r {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnectionError::Io(e)),
            }
        };
        Ok(SocketConnection::new(stream))
    }

    /// The listening socket's descriptor (the Manager closes the copy a
    /// fork left in the parent).
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match &self.sock {
            ListenSock::Unix(l) => l.as_raw_fd(),
            ListenSock::Tcp(l) => l.as_raw_fd(),
        }
    }

    /// The key and handshake options the listener was made with.
    pub(crate) fn auth(&self) -> (&[u8], HandshakeOptions) {
        (&self.authkey, self.opts)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((p, dev, ino)) = &self.unlink {
            // Only the file this listener made, not one made there since.
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Connects to a [`Listener`], Rust's or Python's (Python's
/// `multiprocessing.connection.Client`).
///
/// # Examples
///
/// See [`SocketConnection`].
#[derive(Debug)]
pub struct Client {
    _private: (),
}

impl Client {
    /// Connects to `address` and authenticates both ways with `authkey`:
    /// answers the listener's challenge, then delivers one.
    ///
    /// # Errors
    ///
    /// [`ConnectionError::AuthFailed`] (the listener refused our answer, or
    /// its answer was wrong), [`ConnectionError::BadChallenge`],
    /// [`ConnectionError::Timeout`] (the handshake did not finish within
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]), [`ConnectionError::Io`] (nothing
    /// listens there, ...).
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<SocketConnection, ConnectionError> {
        Self::connect_with(address, authkey, HandshakeOptions::default())
    }

    /// [`connect`](Self::connect) with handshake options; the TCP connect
    /// itself also waits at most [`HandshakeOptions::timeout`].
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_with(
        address: &Address,
        authkey: &[u8],
        opts: HandshakeOptions,
    ) -> Result<SocketConnection, ConnectionError> {
        let stream = match address {
            Address::Unix(p) => Stream::from(Sock::Unix(
                UnixStream::connect(p).map_err(ConnectionError::Io)?,
            )),
            Address::Tcp(a) => {
                let s =
                    TcpStream::connect_timeout(a, opts.timeout).map_err(|e| match e.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                            ConnectionError::Timeout
                        }
                        _ => ConnectionError::Io(e),
                    })?;
                s.set_nodelay(true).map_err(ConnectionError::Io)?;
                Stream::from(Sock::Tcp(s))
            }
        };
        let mut c = SocketConnection::new(stream);
        c.handshake(authkey, &opts, false)?;
        Ok(c)
    }
}
