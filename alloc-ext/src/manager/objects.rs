//! The shared objects a Manager hosts, and their methods as Python's
//! proxies call them (names, arguments and exceptions of `queue.Queue`,
//! `dict`, `list`, `threading.Lock`, `threading.Event` and a `Value`).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use super::pickle::PyValue;
use crate::queue::{
    MessageQueue, MessageReceiver, MessageRecvError, MessageSendError, MessageSender,
};

/// How often a call that waits (a `get` on an empty queue, an `acquire`,
/// a `wait`) looks whether its client is still there.
const CLIENT_CHECK: Duration = Duration::from_millis(50);

/// The kinds of object a Manager hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// A FIFO queue (`queue.Queue`; Python typeid `"Queue"`).
    Queue,
    /// A key-value map in insertion order (`dict`; typeid `"dict"`).
    Dict,
    /// A list (`list`; typeid `"list"`).
    List,
    /// One value (`Value`; typeid `"Value"`).
    Value,
    /// A lock, released when the client that holds it goes away
    /// (`threading.Lock`; typeid `"Lock"`).
    Lock,
    /// An event flag (`threading.Event`; typeid `"Event"`).
    Event,
    /// A queue of byte messages in shared memory (typeid `"ShmQueue"`, a
    /// multiproc extension): proxies on the server's machine put and get
    /// through the shared memory directly, others through the server.
    ShmQueue,
}

impl ObjectKind {
    /// The Python typeid of `SyncManager` that makes this kind.
    pub fn typeid(self) -> &'static str {
        match self {
            Self::Queue => "Queue",
            Self::Dict => "dict",
            Self::List => "list",
            Self::Value => "Value",
            Self::Lock => "Lock",
            Self::Event => "Event",
            Self::ShmQueue => "ShmQueue",
        }
    }

    /// The kind a `SyncManager` typeid makes (`"JoinableQueue"` is a
    /// `Queue`).
    pub fn from_typeid(typeid: &str) -> Option<Self> {
        Some(match typeid {
            "Queue" | "JoinableQueue" => Self::Queue,
            "dict" => Self::Dict,
            "list" => Self::List,
            "Value" => Self::Value,
            "Lock" => Self::Lock,
            "Event" => Self::Event,
            "ShmQueue" => Self::ShmQueue,
            _ => return None,
        })
    }

    /// The methods a proxy may call (Python's `exposed`).
    pub fn exposed(self) -> &'static [&'static str] {
        match self {
            Self::Queue => &[
                "empty",
                "full",
                "get",
                "get_nowait",
                "join",
                "put",
                "put_nowait",
                "qsize",
                "task_done",
            ],
            Self::Dict => &[
                "__contains__",
                "__delitem__",
                "__getitem__",
                "__len__",
                "__setitem__",
                "clear",
                "copy",
                "get",
                "items",
                "keys",
                "pop",
                "popitem",
                "setdefault",
                "update",
                "values",
            ],
            Self::List => &[
                "__contains__",
                "__delitem__",
                "__getitem__",
                "__len__",
                "__setitem__",
                "append",
                "count",
                "extend",
                "index",
                "insert",
                "pop",
                "remove",
                "reverse",
            ],
            Self::Value => &["get", "set"],
            Self::Lock => &["acquire", "release"],
            Self::Event => &["is_set", "set", "clear", "wait"],
            Self::ShmQueue => &[
                "#tokens",
                "empty",
                "get",
                "get_nowait",
                "put",
                "put_nowait",
                "qsize",
            ],
        }
    }
}

/// What a call came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `('#RETURN', value)`.
    Return(PyValue),
    /// `('#ERROR', exception)`.
    Error(PyValue),
    /// The client went away while the call waited; nothing is sent.
    Gone,
}

fn err(name: &str, msg: impl Into<String>) -> Outcome {
    Outcome::Error(PyValue::exception(name, msg))
}

/// The calling client: who it is, and whether it is still there.
pub(crate) struct Caller<'a> {
    /// The connection's number (a lock's holder).
    pub(crate) conn: u64,
    /// `true` once the client has gone (checked while a call waits).
    pub(crate) gone: &'a mut dyn FnMut() -> bool,
}

/// Positional and keyword arguments of a call.
pub(crate) struct Args {
    pub(crate) pos: Vec<PyValue>,
    pub(crate) kw: Vec<(PyValue, PyValue)>,
}

impl Args {
    /// Argument `i`, or keyword `name`.
    fn get(&self, i: usize, name: &str) -> Option<&PyValue> {
        self.pos.get(i).or_else(|| {
            self.kw
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v)
        })
    }

    fn need(&self, i: usize, name: &str) -> Result<&PyValue, Outcome> {
        self.get(i, name)
            .ok_or_else(|| err("TypeError", format!("missing argument '{name}'")))
    }

    fn take(&mut self, i: usize, name: &str) -> Result<PyValue, Outcome> {
        if i < self.pos.len() {
            return Ok(std::mem::replace(&mut self.pos[i], PyValue::None));
        }
        match self.kw.iter().position(|(k, _)| k.as_str() == Some(name)) {
            Some(j) => Ok(self.kw.swap_remove(j).1),
            None => Err(err("TypeError", format!("missing argument '{name}'"))),
        }
    }

    fn flag(&self, i: usize, name: &str, default: bool) -> bool {
        self.get(i, name).map_or(default, PyValue::truthy)
    }

    /// A timeout argument: `None` (or absent) is no deadline.
    fn timeout(&self, i: usize, name: &str) -> Result<Option<Duration>, Outcome> {
        let secs = match self.get(i, name) {
            None | Some(PyValue::None) => return Ok(None),
            Some(PyValue::Int(n)) => *n as f64,
            Some(PyValue::Float(f)) => *f,
            Some(v) => {
                return Err(err(
                    "TypeError",
                    format!("timeout must be a number, not {}", v.type_name()),
                ))
            }
        };
        if secs.is_nan() || secs < 0.0 {
            return Err(err("ValueError", "'timeout' must be a non-negative number"));
        }
        Ok(Some(
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX),
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in one client's call must not take the object from the
    // others: the data is left consistent at every step of each method.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Waited {
    Timeout,
    Gone,
}

/// Waits on `cv` until `ready`, the deadline, or the client's departure.
fn wait_until<'m, T>(
    m: &'m Mutex<T>,
    cv: &Condvar,
    deadline: Option<Instant>,
    caller: &mut Caller<'_>,
    mut ready: impl FnMut(&mut T) -> bool,
) -> Result<MutexGuard<'m, T>, Waited> {
    let mut g = lock(m);
    loop {
        if ready(&mut g) {
            return Ok(g);
        }
        let now = Instant::now();
        let slice = match deadline {
            Some(d) if d <= now => return Err(Waited::Timeout),
            Some(d) => (d - now).min(CLIENT_CHECK),
            None => CLIENT_CHECK,
        };
        let (g2, t) = cv
            .wait_timeout(g, slice)
            .unwrap_or_else(PoisonError::into_inner);
        g = g2;
        if t.timed_out() && !ready(&mut g) {
            drop(g);
            if (caller.gone)() {
                return Err(Waited::Gone);
            }
            g = lock(m);
        }
    }
}

fn deadline(t: Option<Duration>) -> Option<Instant> {
    t.and_then(|t| Instant::now().checked_add(t))
}

#[derive(Debug, Default)]
pub(crate) struct QueueState {
    items: VecDeque<PyValue>,
    maxsize: usize,
    unfinished: usize,
}

/// A shared object.
#[derive(Debug)]
pub(crate) enum Object {
    Queue {
        state: Mutex<QueueState>,
        changed: Condvar,
    },
    Dict(Mutex<IndexMap<PyValue, PyValue>>),
    List(Mutex<Vec<PyValue>>),
    Value(Mutex<PyValue>),
    Lock {
        holder: Mutex<Option<u64>>,
        changed: Condvar,
    },
    Event {
        set: Mutex<bool>,
        changed: Condvar,
    },
    /// The server's own handles keep the queue alive; local proxies get
    /// handles of their own from tokens (`#tokens`).
    ShmQueue {
        tx: MessageSender,
        rx: MessageReceiver,
    },
}

fn index_of(i: &PyValue, len: usize) -> Result<usize, Outcome> {
    let i = i
        .as_int()
        .ok_or_else(|| err("TypeError", "list indices must be integers"))?;
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j >= len as i64 {
        return Err(err("IndexError", "list index out of range"));
    }
    Ok(j as usize)
}

fn hashable(k: &PyValue) -> Result<(), Outcome> {
    if k.is_hashable() {
        Ok(())
    } else {
        Err(err(
            "TypeError",
            format!("unhashable type: '{}'", k.type_name()),
        ))
    }
}

impl Object {
    /// A new object of `kind`, from the arguments of `create` (Python's
    /// constructor arguments: `Queue(maxsize)`, `dict(mapping)`,
    /// `list(items)`, `Value(typecode, value)` or `Value(value)`).
    pub(crate) fn new(kind: ObjectKind, args: Args) -> Result<Self, Outcome> {
        Ok(match kind {
            ObjectKind::Queue => {
                let maxsize = match args.get(0, "maxsize") {
                    None => 0,
                    Some(v) => v.as_int().unwrap_or(0).max(0) as usize,
                };
                Self::Queue {
                    state: Mutex::new(QueueState {
                        maxsize,
                        ..QueueState::default()
                    }),
                    changed: Condvar::new(),
                }
            }
            ObjectKind::Dict => {
                let mut m = IndexMap::new();
                match args.get(0, "mapping") {
                    None => {}
                    Some(PyValue::Dict(pairs)) => m.extend(pairs.iter().cloned()),
                    Some(_) => return Err(err("TypeError", "dict() takes a dict")),
                }
                for (k, v) in &args.kw {
                    m.insert(k.clone(), v.clone());
                }
                Self::Dict(Mutex::new(m))
            }
            ObjectKind::List => match args.get(0, "iterable") {
                None => Self::List(Mutex::new(Vec::new())),
                Some(PyValue::List(v) | PyValue::Tuple(v)) => Self::List(Mutex::new(v.clone())),
                Some(_) => return Err(err("TypeError", "list() takes a list or a tuple")),
            },
            ObjectKind::Value => {
                // `Value(typecode, value)` as SyncManager, or `Value(value)`.
                let v = match (args.pos.len(), args.get(1, "value")) {
                    (_, Some(v)) => v.clone(),
                    (1, None) => args.pos[0].clone(),
                    _ => PyValue::None,
                };
                Self::Value(Mutex::new(v))
            }
            ObjectKind::Lock => Self::Lock {
                holder: Mutex::new(None),
                changed: Condvar::new(),
            },
            ObjectKind::Event => Self::Event {
                set: Mutex::new(false),
                changed: Condvar::new(),
            },
            ObjectKind::ShmQueue => {
                let int = |i, name, default: u64| match args.get(i, name) {
                    None => Ok(default),
                    Some(v) => v
                        .as_int()
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or_else(|| err("TypeError", format!("{name} must be a positive int"))),
                };
                let capacity = int(0, "capacity", SHM_QUEUE_CAPACITY)?;
                let max_message = int(1, "max_message", SHM_QUEUE_MAX_MESSAGE)?;
                let (tx, rx) = MessageQueue::new(capacity, max_message)
                    .unique_name()
                    .channel()
                    .map_err(|e| err("OSError", format!("shared-memory queue: {e}")))?;
                Self::ShmQueue { tx, rx }
            }
        })
    }

    /// The object's kind.
    pub(crate) fn kind(&self) -> ObjectKind {
        match self {
            Self::Queue { .. } => ObjectKind::Queue,
            Self::Dict(_) => ObjectKind::Dict,
            Self::List(_) => ObjectKind::List,
            Self::Value(_) => ObjectKind::Value,
            Self::Lock { .. } => ObjectKind::Lock,
            Self::Event { .. } => ObjectKind::Event,
            Self::ShmQueue { .. } => ObjectKind::ShmQueue,
        }
    }

    /// Puts back an item whose `get` reply could not be delivered.
    pub(crate) fn requeue_front(&self, item: PyValue) {
        if let Self::Queue { state, changed } = self {
            lock(state).items.push_front(item);
            changed.notify_all();
        }
    }

    /// Releases the lock if the connection `conn` holds it (its client
    /// went away).
    pub(crate) fn release_if_held_by(&self, conn: u64) {
        if let Self::Lock { holder, changed } = self {
            let mut h = lock(holder);
            if *h == Some(conn) {
                *h = None;
                changed.notify_one();
            }
        }
    }

    /// A copy of the value (Python's `#GETVALUE`).
    fn value(&self) -> PyValue {
        match self {
            Self::Queue { state, .. } => PyValue::List(lock(state).items.iter().cloned().collect()),
            Self::Dict(m) => PyValue::Dict(
                lock(m)
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            Self::List(l) => PyValue::List(lock(l).clone()),
            Self::Value(v) => lock(v).clone(),
            Self::Lock { holder, .. } => PyValue::Bool(lock(holder).is_some()),
            Self::Event { set, .. } => PyValue::Bool(*lock(set)),
            Self::ShmQueue { tx, .. } => PyValue::Int(tx.len() as i64),
        }
    }

    /// Calls `method` (which the caller checked is exposed, or `#GETVALUE`).
    pub(crate) fn call(&self, method: &str, mut a: Args, caller: &mut Caller<'_>) -> Outcome {
        if method == "#GETVALUE" {
            return Outcome::Return(self.value());
        }
        let r = match self {
            Self::Queue { state, changed } => queue_call(state, changed, method, &mut a, caller),
            Self::ShmQueue { tx, rx } => shm_queue_call(tx, rx, method, &mut a, caller),
            Self::Dict(m) => dict_call(m, method, &mut a),
            Self::List(l) => list_call(l, method, &mut a),
            Self::Value(v) => match method {
                "get" => Ok(lock(v).clone()),
                "set" => a.take(0, "value").map(|x| {
                    *lock(v) = x;
                    PyValue::None
                }),
                _ => Err(not_exposed(method)),
            },
            Self::Lock { holder, changed } => match method {
                "acquire" => {
                    let block = a.flag(0, "blocking", true);
                    // threading.Lock: timeout -1 is no deadline.
                    let t = match a.get(1, "timeout") {
                        Some(PyValue::Int(-1)) => Ok(None),
                        Some(PyValue::Float(f)) if *f == -1.0 => Ok(None),
                        _ => a.timeout(1, "timeout"),
                    };
                    t.and_then(|t| {
                        let d = if block {
                            deadline(t)
                        } else {
                            Some(Instant::now())
                        };
                        match wait_until(holder, changed, d, caller, |h| h.is_none()) {
                            Ok(mut h) => {
                                *h = Some(caller.conn);
                                Ok(PyValue::Bool(true))
                            }
                            Err(Waited::Timeout) => Ok(PyValue::Bool(false)),
                            Err(Waited::Gone) => Err(Outcome::Gone),
                        }
                    })
                }
                "release" => {
                    let mut h = lock(holder);
                    if h.take().is_none() {
                        Err(err("RuntimeError", "release unlocked lock"))
                    } else {
                        changed.notify_one();
                        Ok(PyValue::None)
                    }
                }
                _ => Err(not_exposed(method)),
            },
            Self::Event { set, changed } => match method {
                "is_set" => Ok(PyValue::Bool(*lock(set))),
                "set" => {
                    *lock(set) = true;
                    changed.notify_all();
                    Ok(PyValue::None)
                }
                "clear" => {
                    *lock(set) = false;
                    Ok(PyValue::None)
                }
                "wait" => a.timeout(0, "timeout").and_then(|t| {
                    match wait_until(set, changed, deadline(t), caller, |s| *s) {
                        Ok(_) => Ok(PyValue::Bool(true)),
                        Err(Waited::Timeout) => Ok(PyValue::Bool(false)),
                        Err(Waited::Gone) => Err(Outcome::Gone),
                    }
                }),
                _ => Err(not_exposed(method)),
            },
        };
        match r {
            Ok(v) => Outcome::Return(v),
            Err(o) => o,
        }
    }
}

fn not_exposed(method: &str) -> Outcome {
    err("AttributeError", format!("no method {method:?}"))
}

/// Default slots of a shared-memory queue.
pub(crate) const SHM_QUEUE_CAPACITY: u64 = 1024;
/// Default largest message of a shared-memory queue.
pub(crate) const SHM_QUEUE_MAX_MESSAGE: u64 = 64 * 1024;

/// This kernel's boot id: two processes that read the same one share a
/// machine (and its `/dev/shm`).
pub(crate) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Runs `attempt` (a wait of at most its argument) in slices of
/// [`CLIENT_CHECK`] until it returns `Some`, `deadline` passes (then the
/// exception `timed_out` makes), or the caller goes away.
fn in_slices(
    deadline: Option<Instant>,
    caller: &mut Caller<'_>,
    timed_out: impl FnOnce() -> PyValue,
    mut attempt: impl FnMut(Duration) -> Option<Result<PyValue, Outcome>>,
) -> Result<PyValue, Outcome> {
    loop {
        let slice = deadline.map_or(CLIENT_CHECK, |d| {
            d.saturating_duration_since(Instant::now())
                .min(CLIENT_CHECK)
        });
        if let Some(r) = attempt(slice) {
            return r;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Outcome::Error(timed_out()));
        }
        if (caller.gone)() {
            return Err(Outcome::Gone);
        }
    }
}

fn shm_queue_call(
    tx: &MessageSender,
    rx: &MessageReceiver,
    method: &str,
    a: &mut Args,
    caller: &mut Caller<'_>,
) -> Result<PyValue, Outcome> {
    match method {
        "put" | "put_nowait" => {
            let item = match a.take(0, "item")? {
                PyValue::Bytes(b) => b,
                other => {
                    return Err(err(
                        "TypeError",
                        format!("a ShmQueue carries bytes, not {}", other.type_name()),
                    ))
                }
            };
            let (block, t) = if method == "put" {
                (a.flag(1, "block", true), a.timeout(2, "timeout")?)
            } else {
                (false, None)
            };
            let d = if block {
                deadline(t)
            } else {
                Some(Instant::now())
            };
            in_slices(
                d,
                caller,
                || PyValue::object("queue", "Full", vec![]),
                |slice| match tx.send_timeout(&item, slice) {
                    Ok(()) => Some(Ok(PyValue::None)),
                    Err(MessageSendError::Timeout) | Err(MessageSendError::Full) => None,
                    Err(e) => Some(Err(err("ValueError", e.to_string()))),
                },
            )
        }
        "get" | "get_nowait" => {
            let (block, t) = if method == "get" {
                (a.flag(0, "block", true), a.timeout(1, "timeout")?)
            } else {
                (false, None)
            };
            let d = if block {
                deadline(t)
            } else {
                Some(Instant::now())
            };
            in_slices(
                d,
                caller,
                || PyValue::object("_queue", "Empty", vec![]),
                |slice| match rx.recv_timeout(slice) {
                    Ok(v) => Some(Ok(PyValue::Bytes(v))),
                    Err(MessageRecvError::Timeout) | Err(MessageRecvError::Empty) => None,
                    Err(e) => Some(Err(err("ValueError", e.to_string()))),
                },
            )
        }
        "qsize" => Ok(PyValue::Int(tx.len() as i64)),
        "empty" => Ok(PyValue::Bool(tx.is_empty())),
        // A proxy on this machine asks for handles of its own; elsewhere
        // the tokens would name a segment it cannot open.
        "#tokens" => {
            let theirs = a.take(0, "boot_id")?;
            match (theirs.as_str(), boot_id()) {
                (Some(t), Some(ours)) if t == ours => {
                    let tt = tx.to_token().map_err(|e| err("OSError", e.to_string()))?;
                    let rt = rx.to_token().map_err(|e| err("OSError", e.to_string()))?;
                    Ok(PyValue::Tuple(vec![PyValue::Bytes(tt), PyValue::Bytes(rt)]))
                }
                _ => Err(err("ValueError", "not on the server's machine")),
            }
        }
        _ => Err(not_exposed(method)),
    }
}

fn queue_call(
    state: &Mutex<QueueState>,
    changed: &Condvar,
    method: &str,
    a: &mut Args,
    caller: &mut Caller<'_>,
) -> Result<PyValue, Outcome> {
    let empty = || Outcome::Error(PyValue::object("_queue", "Empty", vec![]));
    match method {
        "put" | "put_nowait" => {
            let item = a.take(0, "item")?;
            let (block, t) = if method == "put" {
                (a.flag(1, "block", true), a.timeout(2, "timeout")?)
            } else {
                (false, None)
            };
            let d = if block {
                deadline(t)
            } else {
                Some(Instant::now())
            };
            let r = wait_until(state, changed, d, caller, |s| {
                s.maxsize == 0 || s.items.len() < s.maxsize
            });
            match r {
                Ok(mut s) => {
                    s.items.push_back(item);
                    s.unfinished += 1;
                    drop(s);
                    changed.notify_all();
                    Ok(PyValue::None)
                }
                Err(Waited::Timeout) => {
                    Err(Outcome::Error(PyValue::object("queue", "Full", vec![])))
                }
                Err(Waited::Gone) => Err(Outcome::Gone),
            }
        }
        "get" | "get_nowait" => {
            let (block, t) = if method == "get" {
                (a.flag(0, "block", true), a.timeout(1, "timeout")?)
            } else {
                (false, None)
            };
            let d = if block {
                deadline(t)
            } else {
                Some(Instant::now())
            };
            match wait_until(state, changed, d, caller, |s| !s.items.is_empty()) {
                Ok(mut s) => {
                    let v = s.items.pop_front().unwrap_or(PyValue::None);
                    drop(s);
                    changed.notify_all();
                    Ok(v)
                }
                Err(Waited::Timeout) => Err(empty()),
                Err(Waited::Gone) => Err(Outcome::Gone),
            }
        }
        "qsize" => Ok(PyValue::Int(lock(state).items.len() as i64)),
        "empty" => Ok(PyValue::Bool(lock(state).items.is_empty())),
        "full" => {
            let s = lock(state);
            Ok(PyValue::Bool(s.maxsize > 0 && s.items.len() >= s.maxsize))
        }
        "task_done" => {
            let mut s = lock(state);
            if s.unfinished == 0 {
                return Err(err("ValueError", "task_done() called too many times"));
            }
            s.unfinished -= 1;
            drop(s);
            changed.notify_all();
            Ok(PyValue::None)
        }
        "join" => match wait_until(state, changed, None, caller, |s| s.unfinished == 0) {
            Ok(_) => Ok(PyValue::None),
            Err(_) => Err(Outcome::Gone),
        },
        _ => Err(not_exposed(method)),
    }
}

fn dict_call(
    m: &Mutex<IndexMap<PyValue, PyValue>>,
    method: &str,
    a: &mut Args,
) -> Result<PyValue, Outcome> {
    let key_error = |k: PyValue| Outcome::Error(PyValue::object("builtins", "KeyError", vec![k]));
    match method {
        "__getitem__" => {
            let k = a.need(0, "key")?;
            hashable(k)?;
            lock(m).get(k).cloned().ok_or_else(|| key_error(k.clone()))
        }
        "__setitem__" => {
            let k = a.take(0, "key")?;
            let v = a.take(1, "value")?;
            hashable(&k)?;
            lock(m).insert(k, v);
            Ok(PyValue::None)
        }
        "__delitem__" => {
            let k = a.need(0, "key")?;
            hashable(k)?;
            match lock(m).shift_remove(k) {
                Some(_) => Ok(PyValue::None),
                None => Err(key_error(k.clone())),
            }
        }
        "__contains__" => {
            let k = a.need(0, "key")?;
            hashable(k)?;
            Ok(PyValue::Bool(lock(m).contains_key(k)))
        }
        "__len__" => Ok(PyValue::Int(lock(m).len() as i64)),
        "get" => {
            let k = a.need(0, "key")?;
            hashable(k)?;
            let default = a.get(1, "default").cloned().unwrap_or(PyValue::None);
            Ok(lock(m).get(k).cloned().unwrap_or(default))
        }
        "setdefault" => {
            let k = a.take(0, "key")?;
            hashable(&k)?;
            let default = a.get(1, "default").cloned().unwrap_or(PyValue::None);
            Ok(lock(m).entry(k).or_insert(default).clone())
        }
        "pop" => {
            let k = a.need(0, "key")?;
            hashable(k)?;
            match (lock(m).shift_remove(k), a.get(1, "default")) {
                (Some(v), _) => Ok(v),
                (None, Some(d)) => Ok(d.clone()),
                (None, None) => Err(key_error(k.clone())),
            }
        }
        "popitem" => match lock(m).pop() {
            Some((k, v)) => Ok(PyValue::Tuple(vec![k, v])),
            None => Err(err("KeyError", "popitem(): dictionary is empty")),
        },
        "keys" => Ok(PyValue::List(lock(m).keys().cloned().collect())),
        "values" => Ok(PyValue::List(lock(m).values().cloned().collect())),
        "items" => Ok(PyValue::List(
            lock(m)
                .iter()
                .map(|(k, v)| PyValue::Tuple(vec![k.clone(), v.clone()]))
                .collect(),
        )),
        "copy" => Ok(PyValue::Dict(
            lock(m)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )),
        "clear" => {
            lock(m).clear();
            Ok(PyValue::None)
        }
        "update" => {
            let mut new: Vec<(PyValue, PyValue)> = Vec::new();
            match a.pos.first() {
                None => {}
                Some(PyValue::Dict(pairs)) => new.extend(pairs.iter().cloned()),
                Some(PyValue::List(items) | PyValue::Tuple(items)) => {
                    for it in items {
                        match it {
                            PyValue::Tuple(kv) | PyValue::List(kv) if kv.len() == 2 => {
                                new.push((kv[0].clone(), kv[1].clone()));
                            }
                            _ => return Err(err("ValueError", "update() takes pairs")),
                        }
                    }
                }
                Some(v) => {
                    return Err(err("TypeError", format!("update() of a {}", v.type_name())))
                }
            }
            new.extend(a.kw.iter().cloned());
            for (k, _) in &new {
                hashable(k)?;
            }
            lock(m).extend(new);
            Ok(PyValue::None)
        }
        _ => Err(not_exposed(method)),
    }
}

fn list_call(l: &Mutex<Vec<PyValue>>, method: &str, a: &mut Args) -> Result<PyValue, Outcome> {
    match method {
        "__len__" => Ok(PyValue::Int(lock(l).len() as i64)),
        "__getitem__" => {
            let g = lock(l);
            let i = index_of(a.need(0, "index")?, g.len())?;
            Ok(g[i].clone())
        }
        "__setitem__" => {
            let v = a.take(1, "value")?;
            let mut g = lock(l);
            let i = index_of(a.need(0, "index")?, g.len())?;
            g[i] = v;
            Ok(PyValue::None)
        }
        "__delitem__" => {
            let mut g = lock(l);
            let i = index_of(a.need(0, "index")?, g.len())?;
            g.remove(i);
            Ok(PyValue::None)
        }
        "__contains__" => {
            let x = a.need(0, "value")?;
            Ok(PyValue::Bool(lock(l).contains(x)))
        }
        "append" => {
            let v = a.take(0, "object")?;
            lock(l).push(v);
            Ok(PyValue::None)
        }
        "extend" => match a.take(0, "iterable")? {
            PyValue::List(v) | PyValue::Tuple(v) => {
                lock(l).extend(v);
                Ok(PyValue::None)
            }
            v => Err(err("TypeError", format!("extend() of a {}", v.type_name()))),
        },
        "insert" => {
            let v = a.take(1, "object")?;
            let i = a
                .need(0, "index")?
                .as_int()
                .ok_or_else(|| err("TypeError", "index must be an integer"))?;
            let mut g = lock(l);
            let n = g.len() as i64;
            let j = if i < 0 { (i + n).max(0) } else { i.min(n) };
            g.insert(j as usize, v);
            Ok(PyValue::None)
        }
        "pop" => {
            let mut g = lock(l);
            if g.is_empty() {
                return Err(err("IndexError", "pop from empty list"));
            }
            let i = match a.get(0, "index") {
                None => g.len() - 1,
                Some(i) => index_of(i, g.len())?,
            };
            Ok(g.remove(i))
        }
        "count" => {
            let x = a.need(0, "value")?;
            Ok(PyValue::Int(
                lock(l).iter().filter(|y| *y == x).count() as i64
            ))
        }
        "index" => {
            let x = a.need(0, "value")?;
            match lock(l).iter().position(|y| y == x) {
                Some(i) => Ok(PyValue::Int(i as i64)),
                None => Err(err("ValueError", "value is not in list")),
            }
        }
        "remove" => {
            let x = a.need(0, "value")?;
            let mut g = lock(l);
            match g.iter().position(|y| y == x) {
                Some(i) => {
                    g.remove(i);
                    Ok(PyValue::None)
                }
                None => Err(err("ValueError", "list.remove(x): x not in list")),
            }
        }
        "reverse" => {
            lock(l).reverse();
            Ok(PyValue::None)
        }
        _ => Err(not_exposed(method)),
    }
}
