//! Proxies: the client side of the Manager's objects, one authenticated
//! connection each.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::objects::ObjectKind;
use super::pickle::{dumps_into, loads, PyValue};
use super::server::DEFAULT_MAX_MESSAGE;
use super::ManagerError;
use crate::connection::{Address, Client, ConnectionError, SocketConnection};

/// How much longer than a `_timeout` call's own timeout a proxy waits for
/// the server's reply (the server times the call; this covers the trip
/// and a loaded machine).
pub const REPLY_GRACE: Duration = Duration::from_secs(5);

/// What names a shared object, to reach it from another process
/// (Python's `multiprocessing.managers.Token`, plus the object's kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The typeid it was made with (`"Queue"`, or a shared typeid).
    pub typeid: String,
    /// The server's address.
    pub address: Address,
    /// The object's id on the server.
    pub id: String,
    /// What kind of object it is.
    pub kind: ObjectKind,
}

/// A connection to a Manager server that makes proxies (Python's
/// `BaseManager(address, authkey).connect()`).
///
/// Every proxy has a connection of its own, made when the proxy is.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    address: Address,
    authkey: Vec<u8>,
    max_message: usize,
}

#[derive(Debug)]
struct Conn {
    c: SocketConnection,
    buf: Vec<u8>,
    broken: bool,
}

/// The untyped proxy the typed ones wrap.
#[derive(Debug)]
pub(crate) struct RawProxy {
    conn: Mutex<Conn>,
    pub(crate) token: Token,
    max_message: usize,
}

fn conn_err(e: ConnectionError) -> ManagerError {
    match e {
        ConnectionError::Closed | ConnectionError::Truncated => ManagerError::Disconnected,
        ConnectionError::Timeout => ManagerError::Timeout,
        e => ManagerError::Connection(e),
    }
}

fn request(ident: &str, method: &str, args: Vec<PyValue>, kw: Vec<(PyValue, PyValue)>) -> PyValue {
    PyValue::Tuple(vec![
        PyValue::Str(ident.to_owned()),
        PyValue::Str(method.to_owned()),
        PyValue::Tuple(args),
        PyValue::Dict(kw),
    ])
}

/// Turns a reply `(kind, value)` into the value or a typed error.
fn reply(msg: &[u8]) -> Result<PyValue, ManagerError> {
    let v = loads(msg)?;
    let PyValue::Tuple(mut t) = v else {
        return Err(ManagerError::Protocol("a reply is a 2-tuple"));
    };
    if t.len() != 2 {
        return Err(ManagerError::Protocol("a reply is a 2-tuple"));
    }
    let value = t.pop().unwrap_or(PyValue::None);
    match t[0].as_str() {
        Some("#RETURN") => Ok(value),
        Some("#ERROR") => Err(exception(value)),
        Some("#TRACEBACK" | "#UNSERIALIZABLE") => Err(ManagerError::Remote {
            exception: "RemoteError".into(),
            message: value.as_str().unwrap_or("").to_owned(),
        }),
        Some("#PROXY") => Err(ManagerError::Protocol(
            "the server returned a proxy, which is not supported",
        )),
        _ => Err(ManagerError::Protocol("unknown reply kind")),
    }
}

fn exception(v: PyValue) -> ManagerError {
    let PyValue::Object { name, mut args, .. } = v else {
        return ManagerError::Protocol("#ERROR without an exception");
    };
    match name.as_str() {
        "Empty" => ManagerError::Empty,
        "Full" => ManagerError::Full,
        "KeyError" if args.len() == 1 => ManagerError::KeyError(args.remove(0)),
        _ => ManagerError::Remote {
            message: match args.first() {
                Some(PyValue::Str(s)) => s.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            },
            exception: name,
        },
    }
}

fn lock(m: &Mutex<Conn>) -> std::sync::MutexGuard<'_, Conn> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RawProxy {
    /// Connects, sends the first request (`#attach_new` or `#attach`) and
    /// keeps the connection for calls.
    pub(crate) fn open(
        address: &Address,
        authkey: &[u8],
        max_message: usize,
        first: PyValue,
        want: Option<ObjectKind>,
    ) -> Result<Self, ManagerError> {
        let mut c = Client::connect(address, authkey)?;
        let mut buf = Vec::new();
        dumps_into(&first, &mut buf)?;
        c.send_bytes(&buf).map_err(conn_err)?;
        let r = reply(&c.recv_bytes(max_message).map_err(conn_err)?)?;
        // (ident, kind typeid, typeid)
        let (id, kind, typeid) = match r {
            PyValue::Tuple(t) if t.len() == 3 => match (&t[0], &t[1], &t[2]) {
                (PyValue::Str(i), PyValue::Str(k), PyValue::Str(ty)) => {
                    (i.clone(), k.clone(), ty.clone())
                }
                _ => return Err(ManagerError::Protocol("bad attach reply")),
            },
            _ => return Err(ManagerError::Protocol("bad attach reply")),
        };
        let kind = ObjectKind::from_typeid(&kind).ok_or(ManagerError::Protocol("unknown kind"))?;
        if let Some(w) = want {
            if w != kind {
                return Err(ManagerError::WrongKind {
                    expected: w,
                    found: kind,
                });
            }
        }
        Ok(Self {
            conn: Mutex::new(Conn {
                c,
                buf,
                broken: false,
            }),
            token: Token {
                typeid,
                address: address.clone(),
                id,
                kind,
            },
            max_message,
        })
    }

    /// Calls `method`; waits for the reply at most `wait` (`None`: until
    /// it comes or the connection ends).
    pub(crate) fn call(
        &self,
        method: &str,
        args: Vec<PyValue>,
        kw: Vec<(PyValue, PyValue)>,
        wait: Option<Duration>,
    ) -> Result<PyValue, ManagerError> {
        let mut g = lock(&self.conn);
        let Conn { c, buf, broken } = &mut *g;
        if *broken {
            return Err(ManagerError::Broken);
        }
        buf.clear();
        dumps_into(&request(&self.token.id, method, args, kw), buf)?;
        if buf.len() > self.max_message {
            return Err(ManagerError::TooLarge {
                len: buf.len(),
                max: self.max_message,
            });
        }
        let sent = c.send_bytes(buf);
        let got = sent.and_then(|()| match wait {
            Some(w) => c.recv_bytes_timeout(self.max_message, w),
            None => c.recv_bytes(self.max_message),
        });
        match got {
            Ok(m) => reply(&m),
            Err(e) => {
                // The reply may still come: this connection is out of step.
                *broken = true;
                Err(conn_err(e))
            }
        }
    }
}

fn timeout_kw(t: Duration) -> Vec<(PyValue, PyValue)> {
    vec![("timeout".into(), PyValue::Float(t.as_secs_f64()))]
}

fn bytes_of(v: PyValue) -> Result<Vec<u8>, ManagerError> {
    match v {
        PyValue::Bytes(b) => Ok(b),
        other => Err(ManagerError::NotBytes(other.type_name().to_owned())),
    }
}

#[cfg(feature = "serde")]
fn to_postcard<T: serde::Serialize + ?Sized>(v: &T) -> Result<PyValue, ManagerError> {
    Ok(PyValue::Bytes(
        postcard::to_stdvec(v).map_err(ManagerError::Encode)?,
    ))
}

#[cfg(feature = "serde")]
fn from_postcard<T: serde::de::DeserializeOwned>(v: PyValue) -> Result<T, ManagerError> {
    postcard::from_bytes(&bytes_of(v)?).map_err(ManagerError::Decode)
}

impl ManagerClient {
    /// Connects to the Manager at `address` and checks that it answers
    /// (Python's `connect()`, which calls the server's `dummy`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Connection`] (nothing listens there, wrong key,
    /// ...), [`ManagerError::Remote`].
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Self, ManagerError> {
        let m = Self {
            address: address.clone(),
            authkey: authkey.to_vec(),
            max_message: DEFAULT_MAX_MESSAGE,
        };
        m.dispatch("dummy", Vec::new())?;
        Ok(m)
    }

    /// The largest message the client's proxies send or take (default
    /// 64 MiB).
    pub fn max_message(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// One server function call on a connection of its own (Python's
    /// `dispatch`).
    fn dispatch(&self, func: &str, args: Vec<PyValue>) -> Result<PyValue, ManagerError> {
        let mut c = Client::connect(&self.address, &self.authkey)?;
        let mut buf = Vec::new();
        let req = PyValue::Tuple(vec![
            PyValue::None,
            func.into(),
            PyValue::Tuple(args),
            PyValue::Dict(Vec::new()),
        ]);
        dumps_into(&req, &mut buf)?;
        c.send_bytes(&buf).map_err(conn_err)?;
        reply(&c.recv_bytes(self.max_message).map_err(conn_err)?)
    }

    fn open(
        &self,
        kind: ObjectKind,
        typeid: &str,
        args: Vec<PyValue>,
    ) -> Result<RawProxy, ManagerError> {
        let mut a = vec![PyValue::Str(typeid.to_owned())];
        a.extend(args);
        let first = PyValue::Tuple(vec![
            PyValue::None,
            "#attach_new".into(),
            PyValue::Tuple(a),
            PyValue::Dict(Vec::new()),
        ]);
        RawProxy::open(
            &self.address,
            &self.authkey,
            self.max_message,
            first,
            Some(kind),
        )
    }

    /// A new unbounded queue.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn queue(&self) -> Result<QueueProxy, ManagerError> {
        self.queue_bounded(0)
    }

    /// A new queue of at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn queue_bounded(&self, maxsize: usize) -> Result<QueueProxy, ManagerError> {
        let n = i64::try_from(maxsize).unwrap_or(i64::MAX);
        Ok(QueueProxy(self.open(
            ObjectKind::Queue,
            "Queue",
            vec![PyValue::Int(n)],
        )?))
    }

    /// A new queue of byte messages in shared memory, of `capacity`
    /// messages of at most `max_message` bytes: on this machine its proxies
    /// put and get through the shared memory itself (no server round
    /// trip); elsewhere through the server. See [`ShmQueueProxy`](super::ShmQueueProxy).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); [`ManagerError::Remote`] if the
    /// server cannot make the segment.
    pub fn shm_queue(
        &self,
        capacity: u64,
        max_message: u64,
    ) -> Result<super::ShmQueueProxy, ManagerError> {
        let n = |v: u64| PyValue::Int(i64::try_from(v).unwrap_or(i64::MAX));
        let raw = self.open(
            ObjectKind::ShmQueue,
            "ShmQueue",
            vec![n(capacity), n(max_message)],
        )?;
        Ok(super::ShmQueueProxy::new(raw))
    }

    /// A new empty dict.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn dict(&self) -> Result<DictProxy, ManagerError> {
        Ok(DictProxy(self.open(
            ObjectKind::Dict,
            "dict",
            Vec::new(),
        )?))
    }

    /// A new empty list.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn list(&self) -> Result<ListProxy, ManagerError> {
        Ok(ListProxy(self.open(
            ObjectKind::List,
            "list",
            Vec::new(),
        )?))
    }

    /// A new value holding `initial`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn value(&self, initial: impl Into<PyValue>) -> Result<ValueProxy, ManagerError> {
        Ok(ValueProxy(self.open(
            ObjectKind::Value,
            "Value",
            vec![initial.into()],
        )?))
    }

    /// A new lock.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn lock(&self) -> Result<LockProxy, ManagerError> {
        Ok(LockProxy(self.open(
            ObjectKind::Lock,
            "Lock",
            Vec::new(),
        )?))
    }

    /// A new event.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn event(&self) -> Result<EventProxy, ManagerError> {
        Ok(EventProxy(self.open(
            ObjectKind::Event,
            "Event",
            Vec::new(),
        )?))
    }

    /// The queue the server shares as `typeid` ([`Server::share`](super::Server::share)).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); [`ManagerError::WrongKind`] if
    /// `typeid` is no queue; [`ManagerError::Remote`] if it is unknown.
    pub fn shared_queue(&self, typeid: &str) -> Result<QueueProxy, ManagerError> {
        Ok(QueueProxy(self.open(
            ObjectKind::Queue,
            typeid,
            Vec::new(),
        )?))
    }

    /// The dict the server shares as `typeid`.
    ///
    /// # Errors
    ///
    /// As [`shared_queue`](Self::shared_queue).
    pub fn shared_dict(&self, typeid: &str) -> Result<DictProxy, ManagerError> {
        Ok(DictProxy(self.open(
            ObjectKind::Dict,
            typeid,
            Vec::new(),
        )?))
    }

    /// The number of objects the server holds (Python's
    /// `_number_of_objects`).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn number_of_objects(&self) -> Result<usize, ManagerError> {
        let v = self.dispatch("number_of_objects", Vec::new())?;
        v.as_int()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(ManagerError::Protocol("number_of_objects is not a count"))
    }

    /// Asks the server to stop (Python's `shutdown`): it serves no new
    /// connection afterwards.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn shutdown(&self) -> Result<(), ManagerError> {
        self.dispatch("shutdown", Vec::new()).map(drop)
    }
}

macro_rules! proxy_common {
    ($t:ident, $kind:expr) => {
        impl $t {
            /// Connects to the object `token` names, from any process
            /// holding `authkey`; the new proxy holds a reference of its
            /// own.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Connection`], [`ManagerError::Remote`] (the
            /// object is gone), [`ManagerError::WrongKind`].
            pub fn connect(token: &Token, authkey: &[u8]) -> Result<Self, ManagerError> {
                let first = PyValue::Tuple(vec![
                    PyValue::None,
                    "#attach".into(),
                    PyValue::Tuple(vec![PyValue::Str(token.id.clone())]),
                    PyValue::Dict(Vec::new()),
                ]);
                RawProxy::open(
                    &token.address,
                    authkey,
                    DEFAULT_MAX_MESSAGE,
                    first,
                    Some($kind),
                )
                .map(Self)
            }

            /// What names the object, for [`connect`](Self::connect).
            pub fn token(&self) -> &Token {
                &self.0.token
            }

            /// Calls any exposed method with Python values (see
            /// [`ObjectKind::exposed`]), waiting for the reply at most
            /// `wait` (`None`: as long as it takes).
            ///
            /// # Errors
            ///
            /// [`ManagerError::Remote`] for what the method raised, and the
            /// connection errors of every call: [`ManagerError::Disconnected`]
            /// (the server went away), [`ManagerError::Timeout`] (after
            /// which the proxy is [`Broken`](ManagerError::Broken)).
            pub fn call(
                &self,
                method: &str,
                args: Vec<PyValue>,
                kwds: Vec<(PyValue, PyValue)>,
                wait: Option<Duration>,
            ) -> Result<PyValue, ManagerError> {
                self.0.call(method, args, kwds, wait)
            }
        }
    };
}

/// A proxy of a shared queue (Python's `Queue` proxy): items are bytes,
/// serde values (postcard, feature `serde`) or Python values.
///
/// A `get` that is cut off by its client's death leaves the item in the
/// queue.
#[derive(Debug)]
pub struct QueueProxy(RawProxy);
proxy_common!(QueueProxy, ObjectKind::Queue);

impl QueueProxy {
    /// Puts `item` (waits while a bounded queue is full).
    ///
    /// # Errors
    ///
    /// The connection errors of [`call`](Self::call).
    pub fn put(&self, item: &[u8]) -> Result<(), ManagerError> {
        self.put_value(PyValue::Bytes(item.to_vec()))
    }

    /// [`put`](Self::put), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Full`] if no room came in time; as
    /// [`call`](Self::call) (the reply is awaited `timeout` plus
    /// [`REPLY_GRACE`]).
    pub fn put_timeout(&self, item: &[u8], timeout: Duration) -> Result<(), ManagerError> {
        self.put_value_timeout(PyValue::Bytes(item.to_vec()), timeout)
    }

    /// Takes the oldest item, waiting for one.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotBytes`] if the item is another Python value (it
    /// is taken all the same); as [`call`](Self::call).
    pub fn get(&self) -> Result<Vec<u8>, ManagerError> {
        bytes_of(self.get_value()?)
    }

    /// [`get`](Self::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Empty`] if nothing came in time; as
    /// [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, ManagerError> {
        bytes_of(self.get_value_timeout(timeout)?)
    }

    /// Takes the oldest item if there is one.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Empty`]; as [`get`](Self::get).
    pub fn try_get(&self) -> Result<Vec<u8>, ManagerError> {
        bytes_of(self.0.call("get_nowait", Vec::new(), Vec::new(), None)?)
    }

    /// Puts a Python value.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub fn put_value(&self, item: PyValue) -> Result<(), ManagerError> {
        self.0.call("put", vec![item], Vec::new(), None).map(drop)
    }

    /// [`put_value`](Self::put_value), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Self::put_timeout).
    pub fn put_value_timeout(&self, item: PyValue, timeout: Duration) -> Result<(), ManagerError> {
        self.0
            .call(
                "put",
                vec![item],
                timeout_kw(timeout),
                Some(timeout.saturating_add(REPLY_GRACE)),
            )
            .map(drop)
    }

    /// Takes the oldest item as a Python value.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn get_value(&self) -> Result<PyValue, ManagerError> {
        self.0.call("get", Vec::new(), Vec::new(), None)
    }

    /// [`get_value`](Self::get_value), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_value_timeout(&self, timeout: Duration) -> Result<PyValue, ManagerError> {
        self.0.call(
            "get",
            Vec::new(),
            timeout_kw(timeout),
            Some(timeout.saturating_add(REPLY_GRACE)),
        )
    }

    /// The number of items (racy, as Python's `qsize`).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn qsize(&self) -> Result<usize, ManagerError> {
        let v = self.0.call("qsize", Vec::new(), Vec::new(), None)?;
        Ok(v.as_int().unwrap_or(0).max(0) as usize)
    }
}

#[cfg(feature = "serde")]
impl QueueProxy {
    /// Puts a serde value (postcard bytes, as the pipes use).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`]; as [`put`](Self::put).
    pub fn put_serde<T: serde::Serialize + ?Sized>(&self, v: &T) -> Result<(), ManagerError> {
        self.put_value(to_postcard(v)?)
    }

    /// Takes a serde value.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`]; as [`get`](Self::get).
    pub fn get_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T, ManagerError> {
        from_postcard(self.get_value()?)
    }

    /// [`get_serde`](Self::get_serde), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Self::get_timeout) and [`get_serde`](Self::get_serde).
    pub fn get_serde_timeout<T: serde::de::DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T, ManagerError> {
        from_postcard(self.get_value_timeout(timeout)?)
    }
}

/// A proxy of a shared dict (Python's `DictProxy`): keys and values are
/// Python values ([`PyValue`]; `&str`, `&[u8]`, integers convert).
#[derive(Debug)]
pub struct DictProxy(RawProxy);
proxy_common!(DictProxy, ObjectKind::Dict);

impl DictProxy {
    /// `d[key] = value`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Remote`] (`TypeError`) for a key Python could not
    /// hash; as [`call`](Self::call).
    pub fn set(
        &self,
        key: impl Into<PyValue>,
        value: impl Into<PyValue>,
    ) -> Result<(), ManagerError> {
        self.0
            .call(
                "__setitem__",
                vec![key.into(), value.into()],
                Vec::new(),
                None,
            )
            .map(drop)
    }

    /// [`set`](Self::set), waiting for the reply at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set), and [`ManagerError::Timeout`].
    pub fn set_timeout(
        &self,
        key: impl Into<PyValue>,
        value: impl Into<PyValue>,
        timeout: Duration,
    ) -> Result<(), ManagerError> {
        self.0
            .call(
                "__setitem__",
                vec![key.into(), value.into()],
                Vec::new(),
                Some(timeout),
            )
            .map(drop)
    }

    /// `d.get(key)`: the value, or `None` if the key is absent.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn get(&self, key: impl Into<PyValue>) -> Result<Option<PyValue>, ManagerError> {
        self.get_inner(key.into(), None)
    }

    /// [`get`](Self::get), waiting for the reply at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`set_timeout`](Self::set_timeout).
    pub fn get_timeout(
        &self,
        key: impl Into<PyValue>,
        timeout: Duration,
    ) -> Result<Option<PyValue>, ManagerError> {
        self.get_inner(key.into(), Some(timeout))
    }

    fn get_inner(
        &self,
        key: PyValue,
        wait: Option<Duration>,
    ) -> Result<Option<PyValue>, ManagerError> {
        match self.0.call("__getitem__", vec![key], Vec::new(), wait) {
            Ok(v) => Ok(Some(v)),
            Err(ManagerError::KeyError(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `d.pop(key, None)`: removes the key; its value if it was there.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn remove(&self, key: impl Into<PyValue>) -> Result<Option<PyValue>, ManagerError> {
        match self.0.call("pop", vec![key.into()], Vec::new(), None) {
            Ok(v) => Ok(Some(v)),
            Err(ManagerError::KeyError(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `len(d)`.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn len(&self) -> Result<usize, ManagerError> {
        let v = self.0.call("__len__", Vec::new(), Vec::new(), None)?;
        Ok(v.as_int().unwrap_or(0).max(0) as usize)
    }

    /// `len(d) == 0`.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// `d.keys()`, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn keys(&self) -> Result<Vec<PyValue>, ManagerError> {
        match self.0.call("keys", Vec::new(), Vec::new(), None)? {
            PyValue::List(v) => Ok(v),
            _ => Err(ManagerError::Protocol("keys() is not a list")),
        }
    }
}

#[cfg(feature = "serde")]
impl DictProxy {
    /// `d[key] = postcard(value)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`]; as [`set`](Self::set).
    pub fn set_serde<T: serde::Serialize + ?Sized>(
        &self,
        key: impl Into<PyValue>,
        value: &T,
    ) -> Result<(), ManagerError> {
        self.set(key, to_postcard(value)?)
    }

    /// The serde value under `key`, if any.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`]; as [`get`](Self::get).
    pub fn get_serde<T: serde::de::DeserializeOwned>(
        &self,
        key: impl Into<PyValue>,
    ) -> Result<Option<T>, ManagerError> {
        self.get(key)?.map(from_postcard).transpose()
    }
}

/// A proxy of a shared list (Python's `ListProxy`).
#[derive(Debug)]
pub struct ListProxy(RawProxy);
proxy_common!(ListProxy, ObjectKind::List);

impl ListProxy {
    /// `l.append(item)`.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn append(&self, item: impl Into<PyValue>) -> Result<(), ManagerError> {
        self.0
            .call("append", vec![item.into()], Vec::new(), None)
            .map(drop)
    }

    /// `l[index]` (negative counts from the end).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Remote`] (`IndexError`); as [`call`](Self::call).
    pub fn get(&self, index: i64) -> Result<PyValue, ManagerError> {
        self.0
            .call("__getitem__", vec![PyValue::Int(index)], Vec::new(), None)
    }

    /// `l[index] = item`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn set(&self, index: i64, item: impl Into<PyValue>) -> Result<(), ManagerError> {
        self.0
            .call(
                "__setitem__",
                vec![PyValue::Int(index), item.into()],
                Vec::new(),
                None,
            )
            .map(drop)
    }

    /// `l.pop()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Remote`] (`IndexError`) if empty; as [`call`](Self::call).
    pub fn pop(&self) -> Result<PyValue, ManagerError> {
        self.0.call("pop", Vec::new(), Vec::new(), None)
    }

    /// `len(l)`.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn len(&self) -> Result<usize, ManagerError> {
        let v = self.0.call("__len__", Vec::new(), Vec::new(), None)?;
        Ok(v.as_int().unwrap_or(0).max(0) as usize)
    }

    /// `len(l) == 0`.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// A copy of the whole list.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn to_vec(&self) -> Result<Vec<PyValue>, ManagerError> {
        match self.0.call("#GETVALUE", Vec::new(), Vec::new(), None)? {
            PyValue::List(v) => Ok(v),
            _ => Err(ManagerError::Protocol("#GETVALUE of a list is not a list")),
        }
    }
}

/// A proxy of a shared value (Python's `ValueProxy`).
#[derive(Debug)]
pub struct ValueProxy(RawProxy);
proxy_common!(ValueProxy, ObjectKind::Value);

impl ValueProxy {
    /// The value.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn get(&self) -> Result<PyValue, ManagerError> {
        self.0.call("get", Vec::new(), Vec::new(), None)
    }

    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn set(&self, v: impl Into<PyValue>) -> Result<(), ManagerError> {
        self.0
            .call("set", vec![v.into()], Vec::new(), None)
            .map(drop)
    }
}

/// A proxy of a shared lock (Python's `AcquirerProxy` of a
/// `threading.Lock`). The lock belongs to the proxy's connection: if the
/// process holding it dies, the server releases it.
#[derive(Debug)]
pub struct LockProxy(RawProxy);
proxy_common!(LockProxy, ObjectKind::Lock);

impl LockProxy {
    /// Waits for the lock and takes it.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn acquire(&self) -> Result<(), ManagerError> {
        self.0
            .call("acquire", Vec::new(), Vec::new(), None)
            .map(drop)
    }

    /// [`acquire`](Self::acquire), waiting at most `timeout`: `true` if
    /// the lock was taken.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call) (the reply is awaited `timeout` plus
    /// [`REPLY_GRACE`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        let v = self.0.call(
            "acquire",
            vec![PyValue::Bool(true)],
            timeout_kw(timeout),
            Some(timeout.saturating_add(REPLY_GRACE)),
        )?;
        Ok(v.truthy())
    }

    /// Takes the lock if it is free: `true` if taken.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn try_acquire(&self) -> Result<bool, ManagerError> {
        let v = self
            .0
            .call("acquire", vec![PyValue::Bool(false)], Vec::new(), None)?;
        Ok(v.truthy())
    }

    /// Releases the lock.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Remote`] (`RuntimeError`) if it was not held; as
    /// [`call`](Self::call).
    pub fn release(&self) -> Result<(), ManagerError> {
        self.0
            .call("release", Vec::new(), Vec::new(), None)
            .map(drop)
    }
}

/// A proxy of a shared event (Python's `EventProxy`).
#[derive(Debug)]
pub struct EventProxy(RawProxy);
proxy_common!(EventProxy, ObjectKind::Event);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn set(&self) -> Result<(), ManagerError> {
        self.0.call("set", Vec::new(), Vec::new(), None).map(drop)
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.0.call("clear", Vec::new(), Vec::new(), None).map(drop)
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        Ok(self
            .0
            .call("is_set", Vec::new(), Vec::new(), None)?
            .truthy())
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.0.call("wait", Vec::new(), Vec::new(), None).map(drop)
    }

    /// [`wait`](Self::wait) at most `timeout`: `true` if the flag was set.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call) (the reply is awaited `timeout` plus
    /// [`REPLY_GRACE`]).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        let v = self.0.call(
            "wait",
            Vec::new(),
            timeout_kw(timeout),
            Some(timeout.saturating_add(REPLY_GRACE)),
        )?;
        Ok(v.truthy())
    }
}
