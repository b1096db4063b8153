//! A Manager: a server process holding shared objects (queues, dicts,
//! lists, values, locks, events) that other processes use through
//! proxies over authenticated [connections](crate::connection), and that
//! an unmodified Python `multiprocessing.managers.BaseManager` client can
//! use too.
//!
//! # Example
//!
//! ```
//! use multiproc::manager::Manager;
//!
//! # multiproc::init();
//! // A server process on a fresh Unix socket, keyed with this process's
//! // `connection::authkey()`; shut down when `m` is dropped.
//! let m = Manager::start()?;
//! let client = m.client()?;
//! let q = client.queue()?;
//! let d = client.dict()?;
//!
//! // A child reaches the same objects through their tokens.
//! let (qt, dt) = (q.token().clone(), d.token().clone());
//! let child = multiproc::Process::new(move || {
//!     let key = multiproc::connection::authkey();
//!     let q = multiproc::manager::QueueProxy::connect(&qt, &key).unwrap();
//!     let d = multiproc::manager::DictProxy::connect(&dt, &key).unwrap();
//!     d.set("answer", 42i64).unwrap();
//!     q.put(b"hello from the child").unwrap();
//! })
//! .start()?;
//! assert_eq!(q.get()?, b"hello from the child");
//! assert_eq!(d.get("answer")?, Some(42i64.into()));
//! child.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Objects and proxies
//!
//! | kind | make | proxy | methods (Python names, as the server exposes them) |
//! |---|---|---|---|
//! | queue | [`ManagerClient::queue`] | [`QueueProxy`] | `put`, `get`, `put_nowait`, `get_nowait`, `qsize`, `empty`, `full`, `task_done`, `join` |
//! | dict | [`ManagerClient::dict`] | [`DictProxy`] | `__getitem__`, `__setitem__`, `__delitem__`, `__contains__`, `__len__`, `get`, `keys`, `values`, `items`, `pop`, `popitem`, `setdefault`, `update`, `clear`, `copy` |
//! | list | [`ManagerClient::list`] | [`ListProxy`] | `append`, `extend`, `insert`, `pop`, `remove`, `index`, `count`, `reverse`, `__getitem__`/`__setitem__`/`__delitem__` (integer index), `__contains__`, `__len__` |
//! | value | [`ManagerClient::value`] | [`ValueProxy`] | `get`, `set` |
//! | lock | [`ManagerClient::lock`] | [`LockProxy`] | `acquire(blocking, timeout)`, `release` |
//! | event | [`ManagerClient::event`] | [`EventProxy`] | `set`, `clear`, `is_set`, `wait(timeout)` |
//! | shared-memory queue of bytes | [`ManagerClient::shm_queue`] | [`ShmQueueProxy`] | `put`, `get`, `put_nowait`, `get_nowait`, `qsize`, `empty`: on the server's machine, straight through shared memory |
//!
//! Items are Python values ([`PyValue`]): the typed proxy methods put
//! bytes, and serde values as postcard bytes (feature `serde`), so Rust
//! and Python clients can share a queue of bytes. Every call that waits
//! has a `_timeout` variant; any exposed method can be called with
//! [`QueueProxy::call`] and its siblings.
//!
//! # Faults
//!
//! - Each proxy has a connection of its own, served by a thread of its
//!   own, and holds one reference to its object. When a process dies
//!   (even by `SIGKILL`) the kernel closes its connections: the server
//!   drops their references, releases the locks they held, and puts back
//!   an item a `get` took but could not deliver; a call waiting on the
//!   server's side (an empty queue's `get`, an `acquire`) notices the
//!   departure within 50 ms. Its other clients are not affected.
//! - A server that dies: every call on its proxies fails with
//!   [`ManagerError::Disconnected`], never hangs. A call with a timeout
//!   that passes fails with [`ManagerError::Timeout`] and leaves its
//!   proxy [`Broken`](ManagerError::Broken) (the reply may still come).
//! - A wrong key: the connection is refused during the handshake
//!   ([`ManagerError::Connection`] with `AuthFailed`). A request that is
//!   not a valid pickle, or names an unknown object or method, gets a
//!   `#TRACEBACK` reply ([`ManagerError::Remote`]) and the connection goes
//!   on; a request longer than the server's maximum
//!   ([`Server::bind_with`], default 64 MiB) gets one and the connection
//!   is closed. Pickles are read by an [allow-listed reader](pickle).
//!
//! # Python interoperability
//!
//! The server speaks Python's Manager protocol: requests are pickled
//! `(ident, methodname, args, kwds)` tuples, replies `('#RETURN', value)`,
//! `('#ERROR', exception)` or `('#TRACEBACK', text)`, over Python's
//! connection format and handshake. What works with an unmodified Python
//! 3.11 client (`BaseManager` or `SyncManager` with `address` and
//! `authkey`, then `connect()`):
//!
//! - the server functions `dummy` (`connect()`), `create`,
//!   `accept_connection`, `incref`, `decref`, `get_methods` (with a
//!   `Token`), `number_of_objects`, `debug_info`, `shutdown`;
//! - typeids `Queue`, `JoinableQueue`, `dict`, `list`, `Value`, `Lock`,
//!   `Event` (`SyncManager`'s methods `m.Queue()`, `m.dict()`, ...) and
//!   the typeids a Rust server [shares](Server::share) (registered on the
//!   Python side with `BaseManager.register('get_queue')`);
//! - the methods in the table above, with arguments and results made of
//!   `None`, `bool`, `int` (64-bit), `float`, `str`, `bytes`,
//!   `bytearray` (returned as `bytes`), `tuple`, `list`, `dict`, `set`,
//!   `frozenset`; exceptions come back as Python's (`queue.Empty`,
//!   `queue.Full`, `KeyError`, `IndexError`, `ValueError`, `TypeError`,
//!   `RuntimeError`), other failures as `RemoteError`.
//!
//! Not supported: other typeids and callables (a Rust server cannot run
//! Python code), values of other classes (refused by the allow-list: the
//! client gets a `RemoteError`), methods that return proxies (`__iter__`,
//! nested managed objects), slices, and Python's `#PROXY` replies. A
//! Python client that dies leaks its references, as with Python's own
//! server (Python's proxies release them through separate `decref`
//! connections); the locks it held are released all the same. The Rust
//! proxies speak the same requests plus two server functions of their
//! own (`#attach_new`, `#attach`, which tie a reference to the
//! connection), so they need a multiproc server.
//!
//! # Security defaults
//!
//! Nothing listens unless a Manager is started or bound. [`Manager::start`]
//! listens on a fresh Unix socket (mode 0600) in the temporary directory;
//! a TCP address must be given to [`ManagerBuilder::address`] (use
//! [`Address::loopback`] for `127.0.0.1`). Every connection is
//! authenticated both ways with the key ([`crate::connection::authkey()`]
//! by default, random per process and inherited by children). Requests
//! are read by an allow-listed pickle reader that never imports or calls
//! anything, and are size-capped.
//!
//! # Performance
//!
//! A proxy call is one request and one reply over its socket; see
//! `benches/benches/manager.rs` (figures in the README).
//!
//! A same-machine Manager queue through shared memory is not here yet:
//! it will stand on the crate's message queue.

use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use crate::connection::{authkey, Address, ConnectionError};
use crate::process::{JoinError, Process, ProcessError, StartMethod};

mod objects;
pub mod pickle;
mod proxy;
mod server;
mod shm_queue;

pub use objects::ObjectKind;
pub use pickle::{PickleError, PyValue};
pub use proxy::{
    DictProxy, EventProxy, ListProxy, LockProxy, ManagerClient, QueueProxy, Token, ValueProxy,
    REPLY_GRACE,
};
pub use server::{Server, DEFAULT_MAX_MESSAGE};
pub use shm_queue::ShmQueueProxy;

/// How long a dropped [`ManagerHandle`] waits for its server to stop
/// before it kills it.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// What a Manager, a client or a proxy call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum ManagerError {
    /// Connecting, authenticating, sending or receiving failed.
    Connection(ConnectionError),
    /// The server closed the connection (it died or shut down) before
    /// replying.
    Disconnected,
    /// The reply did not come in time; the proxy is now
    /// [`Broken`](Self::Broken).
    Timeout,
    /// An earlier call on this proxy timed out or failed mid-message: its
    /// connection is out of step. Make a new proxy from the token.
    Broken,
    /// A queue had no item in time (`queue.Empty`).
    Empty,
    /// A bounded queue had no room in time (`queue.Full`).
    Full,
    /// The key is not in the dict (`KeyError`).
    KeyError(PyValue),
    /// The server raised another exception, or sent a traceback.
    Remote {
        /// The exception's class name (`RemoteError` for a traceback).
        exception: String,
        /// Its message.
        message: String,
    },
    /// A message was not a pickle of the subset (see [`pickle`]).
    Pickle(PickleError),
    /// The server's reply did not follow the protocol.
    Protocol(&'static str),
    /// The object is of another kind than the proxy.
    WrongKind {
        /// The proxy's kind.
        expected: ObjectKind,
        /// The object's.
        found: ObjectKind,
    },
    /// A bytes method met another Python value (its type name).
    NotBytes(String),
    /// A request longer than the client's maximum.
    TooLarge {
        /// Bytes of the request.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The server process could not be started.
    Process(ProcessError),
    /// The server process could not be waited for.
    Join(JoinError),
    /// A value could not be encoded.
    #[cfg(feature = "serde")]
    Encode(postcard::Error),
    /// An item is not a valid encoding of the value.
    #[cfg(feature = "serde")]
    Decode(postcard::Error),
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection(e) => write!(f, "manager connection: {e}"),
            Self::Disconnected => f.write_str("the manager closed the connection"),
            Self::Timeout => f.write_str("timed out waiting for the manager"),
            Self::Broken => f.write_str("proxy connection out of step after an earlier error"),
            Self::Empty => f.write_str("queue empty"),
            Self::Full => f.write_str("queue full"),
            Self::KeyError(k) => write!(f, "key not found: {k:?}"),
            Self::Remote { exception, message } => write!(f, "remote {exception}: {message}"),
            Self::Pickle(e) => write!(f, "manager message: {e}"),
            Self::Protocol(what) => write!(f, "manager protocol: {what}"),
            Self::WrongKind { expected, found } => {
                write!(f, "object is a {found:?}, not a {expected:?}")
            }
            Self::NotBytes(t) => write!(f, "item is a {t}, not bytes"),
            Self::TooLarge { len, max } => {
                write!(f, "request of {len} bytes is longer than the maximum {max}")
            }
            Self::Process(e) => write!(f, "starting the manager process: {e}"),
            Self::Join(e) => write!(f, "waiting for the manager process: {e}"),
            #[cfg(feature = "serde")]
            Self::Encode(e) => write!(f, "encoding an item: {e}"),
            #[cfg(feature = "serde")]
            Self::Decode(e) => write!(f, "decoding an item: {e}"),
        }
    }
}

impl std::error::Error for ManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connection(e) => Some(e),
            Self::Pickle(e) => Some(e),
            Self::Process(e) => Some(e),
            Self::Join(e) => Some(e),
            #[cfg(feature = "serde")]
            Self::Encode(e) | Self::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConnectionError> for ManagerError {
    fn from(e: ConnectionError) -> Self {
        Self::Connection(e)
    }
}

impl From<PickleError> for ManagerError {
    fn from(e: PickleError) -> Self {
        Self::Pickle(e)
    }
}

impl From<ProcessError> for ManagerError {
    fn from(e: ProcessError) -> Self {
        Self::Process(e)
    }
}

/// Starts or serves a Manager (Python's `BaseManager`/`SyncManager`).
#[derive(Debug)]
pub struct Manager {
    _private: (),
}

impl Manager {
    /// Starts a Manager in a process of its own (forked: see
    /// [`ProcessError::ForkWithThreads`]) on a fresh Unix socket, keyed
    /// with [`authkey()`]. The handle shuts it down when dropped.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Connection`] (the socket), [`ManagerError::Process`].
    pub fn start() -> Result<ManagerHandle, ManagerError> {
        Self::builder().start()
    }

    /// Serves at `address` in this process until a client calls
    /// `shutdown` ([`Server::bind`] then [`Server::serve_forever`]).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Connection`].
    pub fn serve(address: &Address, authkey: &[u8]) -> Result<(), ManagerError> {
        Server::bind(address, authkey)?.serve_forever()
    }

    /// A Manager with options.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            address: None,
            authkey: None,
            shared: Vec::new(),
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Options of a Manager: address, key, shared objects.
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    shared: Vec<(String, ObjectKind)>,
    max_message: usize,
}

impl ManagerBuilder {
    /// Listens at `address` (default: a fresh Unix socket). A TCP address
    /// on another interface than loopback is reachable from other
    /// machines.
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// Clients must hold `key` (default [`authkey()`]).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// One `kind` object that every `create` of `typeid` returns (see
    /// [`Server::share`]).
    pub fn share(mut self, typeid: &str, kind: ObjectKind) -> Self {
        self.shared.push((typeid.to_owned(), kind));
        self
    }

    /// The largest request the server reads (default 64 MiB).
    pub fn max_message(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    /// Binds the server here, to serve from this process.
    ///
    /// # Errors
    ///
    /// As [`Server::bind`] and [`Server::share`].
    pub fn bind(&self) -> Result<Server, ManagerError> {
        let address = self.address.clone().unwrap_or_else(Address::unique_unix);
        let key = self.authkey.clone().unwrap_or_else(authkey);
        let s = Server::bind_with(&address, &key, self.max_message)?;
        for (typeid, kind) in &self.shared {
            s.share(typeid, *kind)?;
        }
        Ok(s)
    }

    /// Binds the server, then serves in a forked process of its own.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind), and [`ManagerError::Process`].
    pub fn start(&self) -> Result<ManagerHandle, ManagerError> {
        let server = self.bind()?;
        let address = server.address().clone();
        let fd = server.listener_fd();
        let key = self.authkey.clone().unwrap_or_else(authkey);
        // The listener moves to the child (and is dropped there only).
        let process = Process::new(move || match server.serve_forever() {
            Ok(()) => 0,
            Err(_) => 1,
        })
        .name("multiproc-manager")
        .start_method(StartMethod::Fork)
        .start()?;
        // SAFETY: the fork start forgot this process's copy of the closure
        // and of the server in it (it is never dropped nor used here), so
        // no live value owns this descriptor any more: this is its only
        // close. Left open, it would keep accepting connections (that no
        // one serves) after the server process died.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(ManagerHandle {
            process: Some(process),
            address,
            authkey: key,
        })
    }
}

/// A Manager running in a process of its own: its address and key; shut
/// down (and, if it does not stop, killed) when dropped.
#[derive(Debug)]
pub struct ManagerHandle {
    process: Option<Process>,
    address: Address,
    authkey: Vec<u8>,
}

impl ManagerHandle {
    /// Where the Manager listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The key its clients must hold.
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// The server process.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// A client of this Manager.
    ///
    /// # Errors
    ///
    /// As [`ManagerClient::connect`].
    pub fn client(&self) -> Result<ManagerClient, ManagerError> {
        ManagerClient::connect(&self.address, &self.authkey)
    }

    /// Stops the server and waits for its process.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Process`] if it could not be joined.
    pub fn shutdown(mut self) -> Result<(), ManagerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ManagerError> {
        let Some(p) = self.process.take() else {
            return Ok(());
        };
        if p.is_alive() {
            let asked =
                ManagerClient::connect(&self.address, &self.authkey).and_then(|c| c.shutdown());
            let done = asked.is_ok() && p.join_timeout(SHUTDOWN_WAIT).is_ok();
            if !done {
                let _ = p.kill();
            }
        }
        let r = p.join().map(drop).map_err(ManagerError::Join);
        // A server that was killed leaves its socket file.
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
        r
    }
}

impl Drop for ManagerHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
