//! The Manager's server: Python's `multiprocessing.managers.Server`
//! protocol over authenticated connections, one thread per client
//! connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::objects::{Args, Caller, Object, ObjectKind, Outcome};
use super::pickle::{dumps_into, loads, PyValue};
use super::ManagerError;
use crate::connection::{Address, ConnectionError, Listener, SocketConnection};

/// How often the accept loop looks whether `shutdown` was asked.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Default largest request a server reads (64 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug)]
struct Entry {
    obj: Arc<Object>,
    typeid: String,
    refs: usize,
}

#[derive(Debug, Default)]
struct Registry {
    objects: HashMap<String, Entry>,
    /// Typeids registered with [`Server::share`]: the ident of the one
    /// object every `create` of them returns.
    shared: HashMap<String, String>,
    next: u64,
}

#[derive(Debug)]
struct State {
    registry: Mutex<Registry>,
    address: Address,
    stop: AtomicBool,
    next_conn: AtomicU64,
    max_message: usize,
}

impl State {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A Manager server bound to its address, not yet serving (see the
/// [module docs](super)).
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    state: Arc<State>,
}

type Reply = Result<PyValue, String>;

fn traceback(msg: impl Into<String>) -> Reply {
    Err(msg.into())
}

impl Server {
    /// Listens at `address` for clients holding `authkey`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Connection`] if the address cannot be bound.
    pub fn bind(address: &Address, authkey: &[u8]) -> Result<Self, ManagerError> {
        Self::bind_with(address, authkey, DEFAULT_MAX_MESSAGE)
    }

    /// [`bind`](Self::bind) with the largest request a client may send.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub fn bind_with(
        address: &Address,
        authkey: &[u8],
        max_message: usize,
    ) -> Result<Self, ManagerError> {
        let listener = Listener::bind(address, authkey)?;
        let state = Arc::new(State {
            registry: Mutex::new(Registry::default()),
            address: listener.address().clone(),
            stop: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            max_message,
        });
        Ok(Self { listener, state })
    }

    /// The listening socket's descriptor.
    pub(crate) fn listener_fd(&self) -> std::os::fd::RawFd {
        self.listener.raw_fd()
    }

    /// Where the server listens.
    pub fn address(&self) -> &Address {
        &self.state.address
    }

    /// Makes one `kind` object that every `create` of `typeid` returns
    /// (Python's `register(typeid, callable=lambda: obj)`): clients share
    /// it, and it lives as long as the server.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Protocol`] if `typeid` is one of the built-in
    /// typeids or is already shared.
    pub fn share(&self, typeid: &str, kind: ObjectKind) -> Result<(), ManagerError> {
        if ObjectKind::from_typeid(typeid).is_some() {
            return Err(ManagerError::Protocol("typeid is a built-in one"));
        }
        let obj = Object::new(
            kind,
            Args {
                pos: Vec::new(),
                kw: Vec::new(),
            },
        )
        .map_err(|_| ManagerError::Protocol("cannot make the object"))?;
        let mut r = self.state.registry();
        if r.shared.contains_key(typeid) {
            return Err(ManagerError::Protocol("typeid already shared"));
        }
        let ident = new_ident(&mut r);
        r.objects.insert(
            ident.clone(),
            Entry {
                obj: Arc::new(obj),
                typeid: typeid.to_owned(),
                // The server's own reference: never released.
                refs: 1,
            },
        );
        r.shared.insert(typeid.to_owned(), ident);
        Ok(())
    }

    /// Serves clients until one calls `shutdown`.
    ///
    /// Each client connection is authenticated and served on a thread of
    /// its own. Connections still open at shutdown are left to end with
    /// their clients.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Connection`] if the listening socket fails.
    pub fn serve_forever(self) -> Result<(), ManagerError> {
        let (key, opts) = self.listener.auth();
        let key: Arc<[u8]> = key.into();
        while !self.state.stop.load(Ordering::Acquire) {
            let c = match self
                .listener
                .accept_unauthenticated(Instant::now().checked_add(STOP_CHECK))
            {
                Ok(c) => c,
                Err(ConnectionError::Timeout) => continue,
                Err(ConnectionError::Io(e)) if is_transient(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let state = Arc::clone(&self.state);
            let key = Arc::clone(&key);
            let spawned = std::thread::Builder::new()
                .name("multiproc-manager-client".into())
                .spawn(move || {
                    let mut c = c;
                    if c.authenticate_client(&key, &opts).is_ok() {
                        handle(&state, c);
                    }
                });
            // Out of threads: that client is dropped, the server goes on.
            drop(spawned);
        }
        Ok(())
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    // A client that left before accept, or a full descriptor table.
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EPROTO
        )
    )
}

fn new_ident(r: &mut Registry) -> String {
    r.next += 1;
    format!("{:x}", r.next)
}

/// What one client connection holds, released when it ends however it
/// ends (closed, killed, or a panic on its thread).
struct Held<'s> {
    state: &'s State,
    conn: u64,
    refs: Vec<String>,
    locks: Vec<Arc<Object>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for l in &self.locks {
            l.release_if_held_by(self.conn);
        }
        for ident in std::mem::take(&mut self.refs) {
            let _ = decref(self.state, &ident);
        }
    }
}

fn decref(state: &State, ident: &str) -> Reply {
    let mut r = state.registry();
    let Some(e) = r.objects.get_mut(ident) else {
        return traceback(format!("KeyError: {ident:?}"));
    };
    if e.refs == 0 {
        return traceback(format!("AssertionError: Id {ident} has refcount 0, not 1+"));
    }
    e.refs -= 1;
    if e.refs == 0 {
        r.objects.remove(ident);
    }
    Ok(PyValue::None)
}

fn send_reply(c: &mut SocketConnection, buf: &mut Vec<u8>, kind: &str, v: PyValue) -> bool {
    buf.clear();
    let msg = PyValue::Tuple(vec![PyValue::Str(kind.to_owned()), v]);
    if dumps_into(&msg, buf).is_err() {
        buf.clear();
        let msg = PyValue::Tuple(vec![
            PyValue::Str("#UNSERIALIZABLE".into()),
            PyValue::Str("reply nested too deep".into()),
        ]);
        if dumps_into(&msg, buf).is_err() {
            return false;
        }
    }
    c.send_bytes(buf).is_ok()
}

fn send(c: &mut SocketConnection, buf: &mut Vec<u8>, r: Reply) -> bool {
    match r {
        Ok(v) => send_reply(c, buf, "#RETURN", v),
        Err(tb) => send_reply(c, buf, "#TRACEBACK", PyValue::Str(tb)),
    }
}

/// A request `(ident, methodname, args, kwds)`.
struct Request {
    ident: PyValue,
    method: String,
    args: Args,
}

fn parse_request(msg: &[u8]) -> Result<Request, String> {
    let v = loads(msg).map_err(|e| format!("UnpicklingError: {e}"))?;
    let PyValue::Tuple(mut t) = v else {
        return Err("ValueError: a request is a 4-tuple".into());
    };
    if t.len() != 4 {
        return Err("ValueError: a request is a 4-tuple".into());
    }
    let kw = match t.pop() {
        Some(PyValue::Dict(d)) => d,
        _ => return Err("TypeError: keyword arguments are not a dict".into()),
    };
    let pos = match t.pop() {
        Some(PyValue::Tuple(v) | PyValue::List(v)) => v,
        _ => return Err("TypeError: arguments are not a tuple".into()),
    };
    let method = match t.pop() {
        Some(PyValue::Str(s)) => s,
        _ => return Err("TypeError: method name is not a str".into()),
    };
    let ident = t.pop().unwrap_or(PyValue::None);
    Ok(Request {
        ident,
        method,
        args: Args { pos, kw },
    })
}

fn exposed_tuple(kind: ObjectKind) -> PyValue {
    PyValue::Tuple(
        kind.exposed()
            .iter()
            .map(|m| PyValue::Str((*m).to_owned()))
            .collect(),
    )
}

/// `create(typeid, *args, **kwds)`: a new object (or the shared one),
/// with one reference.
fn create(state: &State, mut a: Args) -> Result<(String, ObjectKind), String> {
    if a.pos.is_empty() {
        return Err("TypeError: create() needs a typeid".into());
    }
    let typeid = match a.pos.remove(0) {
        PyValue::Str(s) => s,
        _ => return Err("TypeError: typeid is not a str".into()),
    };
    let mut r = state.registry();
    if let Some(ident) = r.shared.get(&typeid).cloned() {
        let e = r.objects.get_mut(&ident).ok_or("KeyError: shared object")?;
        e.refs += 1;
        return Ok((ident, e.obj.kind()));
    }
    let kind = ObjectKind::from_typeid(&typeid)
        .ok_or_else(|| format!("KeyError: {typeid:?} (typeid not registered)"))?;
    drop(r);
    let obj = Object::new(kind, a).map_err(|o| match o {
        Outcome::Error(e) => format!("{}: could not create {typeid}", e.type_name()),
        _ => "could not create".to_owned(),
    })?;
    let mut r = state.registry();
    let ident = new_ident(&mut r);
    r.objects.insert(
        ident.clone(),
        Entry {
            obj: Arc::new(obj),
            typeid,
            refs: 1,
        },
    );
    Ok((ident, kind))
}

fn incref(state: &State, ident: &PyValue) -> Result<(String, ObjectKind), String> {
    let ident = ident.as_str().ok_or("TypeError: ident is not a str")?;
    let mut r = state.registry();
    let e = r
        .objects
        .get_mut(ident)
        .ok_or_else(|| format!("KeyError: {ident:?}"))?;
    e.refs += 1;
    Ok((ident.to_owned(), e.obj.kind()))
}

/// The first request of a connection: a server function.
fn handle(state: &State, mut c: SocketConnection) {
    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut held = Held {
        state,
        conn,
        refs: Vec::new(),
        locks: Vec::new(),
    };
    let mut buf = Vec::new();
    let msg = match c.recv_bytes(state.max_message) {
        Ok(m) => m,
        Err(ConnectionError::TooLarge { len, max }) => {
            let tb = format!("ValueError: request of {len} bytes is over the limit of {max}");
            send(&mut c, &mut buf, traceback(tb));
            return;
        }
        Err(_) => return,
    };
    let req = match parse_request(&msg) {
        Ok(r) => r,
        Err(tb) => {
            send(&mut c, &mut buf, traceback(tb));
            return;
        }
    };
    let a = req.args;
    let reply: Reply = match req.method.as_str() {
        "dummy" => Ok(PyValue::None),
        "create" => create(state, a)
            .map(|(ident, kind)| PyValue::Tuple(vec![PyValue::Str(ident), exposed_tuple(kind)])),
        "incref" => match a.pos.first() {
            Some(i) => incref(state, i).map(|_| PyValue::None),
            None => traceback("TypeError: incref() needs an ident"),
        },
        "decref" => match a.pos.first().and_then(PyValue::as_str) {
            Some(i) => decref(state, i),
            None => traceback("TypeError: decref() needs an ident"),
        },
        "number_of_objects" => {
            let r = state.registry();
            Ok(PyValue::Int(r.objects.len() as i64))
        }
        "debug_info" => {
            let r = state.registry();
            let mut lines: Vec<String> = r
                .objects
                .iter()
                .map(|(i, e)| format!("  {i}:       refcount={}\n    {}", e.refs, e.typeid))
                .collect();
            lines.sort();
            Ok(PyValue::Str(lines.join("\n")))
        }
        "get_methods" => get_methods(state, a.pos.first()),
        "shutdown" => {
            send(&mut c, &mut buf, Ok(PyValue::None));
            state.stop.store(true, Ordering::Release);
            return;
        }
        "accept_connection" => {
            if send(&mut c, &mut buf, Ok(PyValue::None)) {
                serve_client(state, &mut c, &mut held, &mut buf);
            }
            return;
        }
        // multiproc's proxies: one connection holds one reference, which
        // the server drops when the connection ends, however it ends.
        "#attach_new" => match create(state, a) {
            Ok((ident, kind)) => {
                held.refs.push(ident.clone());
                attach_reply(state, &mut c, &mut held, &mut buf, ident, kind);
                return;
            }
            Err(tb) => traceback(tb),
        },
        "#attach" => match a.pos.first().map(|i| incref(state, i)) {
            Some(Ok((ident, kind))) => {
                held.refs.push(ident.clone());
                attach_reply(state, &mut c, &mut held, &mut buf, ident, kind);
                return;
            }
            Some(Err(tb)) => traceback(tb),
            None => traceback("TypeError: #attach needs an ident"),
        },
        other => traceback(format!("AssertionError: {other:?} unrecognized")),
    };
    send(&mut c, &mut buf, reply);
}

fn attach_reply(
    state: &State,
    c: &mut SocketConnection,
    held: &mut Held<'_>,
    buf: &mut Vec<u8>,
    ident: String,
    kind: ObjectKind,
) {
    let typeid = state
        .registry()
        .objects
        .get(&ident)
        .map(|e| e.typeid.clone())
        .unwrap_or_default();
    let r = PyValue::Tuple(vec![
        PyValue::Str(ident),
        PyValue::Str(kind.typeid().to_owned()),
        PyValue::Str(typeid),
    ]);
    if send(c, buf, Ok(r)) {
        serve_client(state, c, held, buf);
    }
}

fn get_methods(state: &State, token: Option<&PyValue>) -> Reply {
    // Token(typeid, address, id): its state is (typeid, address, id).
    let ident = match token {
        Some(PyValue::Object { state: Some(s), .. }) => match &**s {
            PyValue::Tuple(t) if t.len() == 3 => t[2].as_str().map(str::to_owned),
            _ => None,
        },
        _ => None,
    };
    let Some(ident) = ident else {
        return traceback("TypeError: get_methods() needs a Token");
    };
    let r = state.registry();
    match r.objects.get(&ident) {
        Some(e) => Ok(exposed_tuple(e.obj.kind())),
        None => traceback(format!("KeyError: {ident:?}")),
    }
}

/// Serves method calls on one connection until it ends.
fn serve_client(state: &State, c: &mut SocketConnection, held: &mut Held<'_>, buf: &mut Vec<u8>) {
    loop {
        let msg = match c.recv_bytes(state.max_message) {
            Ok(m) => m,
            Err(ConnectionError::TooLarge { len, max }) => {
                // The frame stays unread: the stream cannot go on.
                let tb = format!("ValueError: request of {len} bytes is over the limit of {max}");
                send(c, buf, traceback(tb));
                return;
            }
            Err(_) => return,
        };
        let req = match parse_request(&msg) {
            Ok(r) => r,
            Err(tb) => {
                if !send(c, buf, traceback(tb)) {
                    return;
                }
                continue;
            }
        };
        let obj = match req.ident.as_str() {
            Some(i) => state.registry().objects.get(i).map(|e| Arc::clone(&e.obj)),
            None => None,
        };
        let Some(obj) = obj else {
            if !send(c, buf, traceback(format!("KeyError: {:?}", req.ident))) {
                return;
            }
            continue;
        };
        let exposed = obj.kind().exposed();
        if req.method != "#GETVALUE" && !exposed.contains(&req.method.as_str()) {
            let tb = format!(
                "AttributeError: method {:?} of {} object is not in exposed={exposed:?}",
                req.method,
                obj.kind().typeid()
            );
            if !send(c, buf, traceback(tb)) {
                return;
            }
            continue;
        }
        let outcome = {
            let fd = &*c;
            let mut gone = || client_gone(fd);
            let mut caller = Caller {
                conn: held.conn,
                gone: &mut gone,
            };
            obj.call(&req.method, req.args, &mut caller)
        };
        match outcome {
            Outcome::Return(v) => {
                let got_item = obj.kind() == ObjectKind::Queue
                    && matches!(req.method.as_str(), "get" | "get_nowait");
                let acquired = obj.kind() == ObjectKind::Lock
                    && req.method == "acquire"
                    && matches!(v, PyValue::Bool(true));
                if acquired && !held.locks.iter().any(|l| Arc::ptr_eq(l, &obj)) {
                    held.locks.push(Arc::clone(&obj));
                }
                let item = got_item.then(|| v.clone());
                if !send_reply(c, buf, "#RETURN", v) {
                    // The client never got the item: it stays queued.
                    if let Some(item) = item {
                        obj.requeue_front(item);
                    }
                    return;
                }
            }
            Outcome::Error(e) => {
                if !send_reply(c, buf, "#ERROR", e) {
                    return;
                }
            }
            Outcome::Gone => return,
        }
    }
}

/// Whether the client of a call that waits has gone: in this
/// request-reply protocol a client sends nothing while it waits, so a
/// readable socket means it closed (or broke the protocol).
fn client_gone(c: &SocketConnection) -> bool {
    use std::os::fd::AsFd;
    crate::sys::poll_readable(c.as_fd(), Some(Duration::ZERO)).unwrap_or(true)
}
