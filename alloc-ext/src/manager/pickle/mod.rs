//! The pickle subset the Manager speaks: an allow-listed reader and a small
//! writer, over one value type, [`PyValue`].
//!
//! # Why not serde-pickle
//!
//! serde-pickle 1.2 reads protocols 0 to 5, but it drops the names of the
//! globals it meets: every class other than a handful of builtins becomes
//! one anonymous stand-in, and `NEWOBJ`/`BUILD` keep only the arguments or
//! the state. So it can neither refuse a global that is not on a list
//! (any class name is silently accepted), nor tell a
//! `multiprocessing.managers.Token` from a `KeyError` from `_queue.Empty`,
//! which the Manager protocol needs (Tokens in `get_methods`, exception
//! classes in `#ERROR` replies). And it cannot write globals at all. The
//! reader here is about 500 lines, refuses every global not on
//! [`ALLOWED_GLOBALS`] (and all of `INST`, `OBJ`, `PERSID`, extension
//! codes and out-of-band buffers), and never runs or imports anything: an
//! allowed class becomes an inert [`PyValue::Object`] naming it.
//!
//! # What is read
//!
//! Protocols 0 to 5: `None`, `bool`, `int` (within 64 bits), `float`,
//! `str`, `bytes` (and Python 2 `str`, read as bytes), `bytearray` (read
//! as bytes), `tuple`, `list`, `dict`, `set`, `frozenset`, shared and
//! memoized references (copied out; a self-containing value is refused),
//! and instances of the [allowed globals](ALLOWED_GLOBALS), made with
//! `REDUCE`, `NEWOBJ` or `copyreg._reconstructor` and given state with
//! `BUILD`. Limits: nesting depth [`MAX_DEPTH`], and at most
//! [`MAX_NODES`] values after memo references are copied out (so a small
//! pickle cannot expand into a huge value).
//!
//! # What is written
//!
//! Protocol 4 opcodes without frames or memo, which every Python 3.4 and
//! newer reads: the same value kinds, and objects as `STACK_GLOBAL`,
//! argument tuple, `NEWOBJ` and, with state, `BUILD` (how Python itself
//! pickles a `Token`; an exception made with `NEWOBJ` has its `args`).

use std::fmt;

mod read;
mod write;

pub use read::{loads, ALLOWED_GLOBALS, MAX_DEPTH, MAX_NODES};
pub use write::{dumps, dumps_into};

/// A Python value of the subset the Manager exchanges (see the
/// [module docs](self)).
///
/// Equality and hashing are by kind and value: `Int(1)`, `Float(1.0)` and
/// `Bool(true)` are three different keys (in Python they are one), and
/// floats compare by their bits.
#[derive(Debug, Clone)]
pub enum PyValue {
    /// `None`.
    None,
    /// `bool`.
    Bool(bool),
    /// `int` within 64 bits.
    Int(i64),
    /// `float`.
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes` (also what `bytearray` and Python 2 `str` read as).
    Bytes(Vec<u8>),
    /// `tuple`.
    Tuple(Vec<PyValue>),
    /// `list`.
    List(Vec<PyValue>),
    /// `dict`, in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
    /// `set`.
    Set(Vec<PyValue>),
    /// `frozenset`.
    FrozenSet(Vec<PyValue>),
    /// An instance of an allowed class, never instantiated here: its
    /// module and name, the arguments it was made with, and the state
    /// `BUILD` gave it.
    Object {
        /// Module of the class (`"builtins"`, `"multiprocessing.managers"`).
        module: String,
        /// Name of the class (`"KeyError"`, `"Token"`).
        name: String,
        /// Constructor arguments (an exception's `args`).
        args: Vec<PyValue>,
        /// The state set by `BUILD`, if any (a `Token`'s
        /// `(typeid, address, id)`).
        state: Option<Box<PyValue>>,
    },
}

impl PyValue {
    /// An instance of `module.name` made with `args` and no state.
    pub fn object(module: &str, name: &str, args: Vec<PyValue>) -> Self {
        Self::Object {
            module: module.to_owned(),
            name: name.to_owned(),
            args,
            state: None,
        }
    }

    /// A builtin exception (`builtins.<name>(message)`), as a `#ERROR`
    /// reply carries it.
    pub fn exception(name: &str, message: impl Into<String>) -> Self {
        Self::object("builtins", name, vec![Self::Str(message.into())])
    }

    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a `bytes`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is an `int` (or a `bool`, as in Python).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Python's truth value of the scalar kinds and containers (objects
    /// are true).
    pub fn truthy(&self) -> bool {
        match self {
            Self::None => false,
            Self::Bool(b) => *b,
            Self::Int(i) => *i != 0,
            Self::Float(f) => *f != 0.0,
            Self::Str(s) => !s.is_empty(),
            Self::Bytes(b) => !b.is_empty(),
            Self::Tuple(v) | Self::List(v) | Self::Set(v) | Self::FrozenSet(v) => !v.is_empty(),
            Self::Dict(d) => !d.is_empty(),
            Self::Object { .. } => true,
        }
    }

    /// Whether Python could use this as a dict key (no list, dict or set
    /// inside).
    pub fn is_hashable(&self) -> bool {
        match self {
            Self::List(_) | Self::Dict(_) | Self::Set(_) | Self::Object { .. } => false,
            Self::Tuple(v) | Self::FrozenSet(v) => v.iter().all(Self::is_hashable),
            _ => true,
        }
    }

    /// Python's type name of the value.
    pub fn type_name(&self) -> &str {
        match self {
            Self::None => "NoneType",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Str(_) => "str",
            Self::Bytes(_) => "bytes",
            Self::Tuple(_) => "tuple",
            Self::List(_) => "list",
            Self::Dict(_) => "dict",
            Self::Set(_) => "set",
            Self::FrozenSet(_) => "frozenset",
            Self::Object { name, .. } => name,
        }
    }
}

impl PartialEq for PyValue {
    fn eq(&self, other: &Self) -> bool {
        use PyValue as V;
        match (self, other) {
            (V::None, V::None) => true,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Int(a), V::Int(b)) => a == b,
            (V::Float(a), V::Float(b)) => a.to_bits() == b.to_bits(),
            (V::Str(a), V::Str(b)) => a == b,
            (V::Bytes(a), V::Bytes(b)) => a == b,
            (V::Tuple(a), V::Tuple(b))
            | (V::List(a), V::List(b))
            | (V::Set(a), V::Set(b))
            | (V::FrozenSet(a), V::FrozenSet(b)) => a == b,
            (V::Dict(a), V::Dict(b)) => a == b,
            (
                V::Object {
                    module: m1,
                    name: n1,
                    args: a1,
                    state: s1,
                },
                V::Object {
                    module: m2,
                    name: n2,
                    args: a2,
                    state: s2,
                },
            ) => m1 == m2 && n1 == n2 && a1 == a2 && s1 == s2,
            _ => false,
        }
    }
}

impl Eq for PyValue {}

impl std::hash::Hash for PyValue {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        use PyValue as V;
        std::mem::discriminant(self).hash(h);
        match self {
            V::None => {}
            V::Bool(b) => b.hash(h),
            V::Int(i) => i.hash(h),
            V::Float(f) => f.to_bits().hash(h),
            V::Str(s) => s.hash(h),
            V::Bytes(b) => b.hash(h),
            V::Tuple(v) | V::List(v) | V::Set(v) | V::FrozenSet(v) => v.hash(h),
            V::Dict(d) => d.hash(h),
            V::Object {
                module,
                name,
                args,
                state,
            } => {
                module.hash(h);
                name.hash(h);
                args.hash(h);
                state.hash(h);
            }
        }
    }
}

macro_rules! from_impls {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for PyValue {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

from_impls! {
    () => |_v| PyValue::None,
    bool => |v| PyValue::Bool(v),
    i64 => |v| PyValue::Int(v),
    i32 => |v| PyValue::Int(i64::from(v)),
    u32 => |v| PyValue::Int(i64::from(v)),
    f64 => |v| PyValue::Float(v),
    &str => |v| PyValue::Str(v.to_owned()),
    String => |v| PyValue::Str(v),
    &[u8] => |v| PyValue::Bytes(v.to_vec()),
    Vec<u8> => |v| PyValue::Bytes(v),
}

/// Why a pickle could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PickleError {
    /// The input ended before `STOP`.
    Truncated,
    /// An opcode this reader does not take (`INST`, `OBJ`, `PERSID`,
    /// extension codes, out-of-band buffers, or not an opcode at all).
    Unsupported(u8),
    /// A global that is not on [`ALLOWED_GLOBALS`].
    Global {
        /// Its module.
        module: String,
        /// Its name.
        name: String,
    },
    /// An opcode found the stack, a mark or the memo not as it needs them.
    Malformed(&'static str),
    /// An integer beyond 64 bits.
    IntTooLarge,
    /// Text that is not UTF-8 (or a bad escape in protocol 0).
    BadText,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_NODES`] values.
    TooBig,
    /// A protocol above 5.
    Protocol(u8),
    /// Bytes after `STOP`.
    TrailingBytes,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("pickle ends before STOP"),
            Self::Unsupported(op) => write!(f, "unsupported pickle opcode 0x{op:02x}"),
            Self::Global { module, name } => write!(f, "global {module}.{name} is not allowed"),
            Self::Malformed(what) => write!(f, "malformed pickle: {what}"),
            Self::IntTooLarge => f.write_str("integer beyond 64 bits"),
            Self::BadText => f.write_str("text that is not valid UTF-8 or a bad escape"),
            Self::TooDeep => write!(f, "pickle nested deeper than {MAX_DEPTH}"),
            Self::TooBig => write!(f, "pickle of more than {MAX_NODES} values"),
            Self::Protocol(p) => write!(f, "pickle protocol {p} (at most 5 is read)"),
            Self::TrailingBytes => f.write_str("bytes after the pickle's STOP"),
        }
    }
}

impl std::error::Error for PickleError {}

#[cfg(test)]
mod tests;
