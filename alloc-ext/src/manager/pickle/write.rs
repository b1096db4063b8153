//! The pickle writer: protocol 4 opcodes, no frames, no memo.

use super::{PickleError, PyValue, MAX_DEPTH};

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const BINUNICODE8: u8 = 0x8d;
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const BINBYTES8: u8 = 0x8e;
const EMPTY_TUPLE: u8 = b')';
const TUPLE1: u8 = 0x85;
const TUPLE: u8 = b't';
const EMPTY_LIST: u8 = b']';
const APPENDS: u8 = b'e';
const EMPTY_DICT: u8 = b'}';
const SETITEMS: u8 = b'u';
const EMPTY_SET: u8 = 0x8f;
const ADDITEMS: u8 = 0x90;
const FROZENSET: u8 = 0x91;
const STACK_GLOBAL: u8 = 0x93;
const NEWOBJ: u8 = 0x81;
const BUILD: u8 = b'b';

/// Pickles `v` (protocol 4; see the [module docs](super)).
///
/// # Errors
///
/// [`PickleError::TooDeep`] for a value nested deeper than [`MAX_DEPTH`]
/// (what the reader would refuse).
///
/// # Examples
///
/// ```
/// use multiproc::manager::pickle::{dumps, loads, PyValue};
///
/// let v = PyValue::Tuple(vec!["#RETURN".into(), PyValue::Int(42)]);
/// assert_eq!(loads(&dumps(&v)?)?, v);
/// # Ok::<(), multiproc::manager::pickle::PickleError>(())
/// ```
pub fn dumps(v: &PyValue) -> Result<Vec<u8>, PickleError> {
    let mut out = Vec::with_capacity(64);
    dumps_into(v, &mut out)?;
    Ok(out)
}

/// [`dumps`] appending to `out` (which it leaves as it was on error).
///
/// # Errors
///
/// As [`dumps`].
pub fn dumps_into(v: &PyValue, out: &mut Vec<u8>) -> Result<(), PickleError> {
    let start = out.len();
    out.extend_from_slice(&[PROTO, 4]);
    let r = write(v, out, 0);
    if r.is_err() {
        out.truncate(start);
    } else {
        out.push(STOP);
    }
    r
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let b = s.as_bytes();
    if let Ok(n) = u8::try_from(b.len()) {
        out.extend_from_slice(&[SHORT_BINUNICODE, n]);
    } else if let Ok(n) = u32::try_from(b.len()) {
        out.push(BINUNICODE);
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(BINUNICODE8);
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    out.extend_from_slice(b);
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    if let Ok(n) = u8::try_from(b.len()) {
        out.extend_from_slice(&[SHORT_BINBYTES, n]);
    } else if let Ok(n) = u32::try_from(b.len()) {
        out.push(BINBYTES);
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(BINBYTES8);
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    out.extend_from_slice(b);
}

fn write_int(i: i64, out: &mut Vec<u8>) {
    if let Ok(b) = u8::try_from(i) {
        out.extend_from_slice(&[BININT1, b]);
    } else if let Ok(h) = u16::try_from(i) {
        out.push(BININT2);
        out.extend_from_slice(&h.to_le_bytes());
    } else if let Ok(w) = i32::try_from(i) {
        out.push(BININT);
        out.extend_from_slice(&w.to_le_bytes());
    } else {
        // The shortest little-endian two's complement form.
        let b = i.to_le_bytes();
        let mut n = 8;
        while n > 1 {
            let (hi, next) = (b[n - 1], b[n - 2]);
            let redundant = (hi == 0 && next & 0x80 == 0) || (hi == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            n -= 1;
        }
        out.extend_from_slice(&[LONG1, n as u8]);
        out.extend_from_slice(&b[..n]);
    }
}

fn write_items(items: &[PyValue], out: &mut Vec<u8>, depth: usize) -> Result<(), PickleError> {
    for x in items {
        write(x, out, depth + 1)?;
    }
    Ok(())
}

fn write_tuple(items: &[PyValue], out: &mut Vec<u8>, depth: usize) -> Result<(), PickleError> {
    match items.len() {
        0 => out.push(EMPTY_TUPLE),
        1..=3 => {
            write_items(items, out, depth)?;
            out.push(TUPLE1 + items.len() as u8 - 1);
        }
        _ => {
            out.push(MARK);
            write_items(items, out, depth)?;
            out.push(TUPLE);
        }
    }
    Ok(())
}

fn write(v: &PyValue, out: &mut Vec<u8>, depth: usize) -> Result<(), PickleError> {
    if depth >= MAX_DEPTH {
        return Err(PickleError::TooDeep);
    }
    match v {
        PyValue::None => out.push(NONE),
        PyValue::Bool(true) => out.push(NEWTRUE),
        PyValue::Bool(false) => out.push(NEWFALSE),
        PyValue::Int(i) => write_int(*i, out),
        PyValue::Float(f) => {
            out.push(BINFLOAT);
            out.extend_from_slice(&f.to_be_bytes());
        }
        PyValue::Str(s) => write_str(s, out),
        PyValue::Bytes(b) => write_bytes(b, out),
        PyValue::Tuple(items) => write_tuple(items, out, depth)?,
        PyValue::List(items) => {
            out.push(EMPTY_LIST);
            if !items.is_empty() {
                out.push(MARK);
                write_items(items, out, depth)?;
                out.push(APPENDS);
            }
        }
        PyValue::Dict(pairs) => {
            out.push(EMPTY_DICT);
            if !pairs.is_empty() {
                out.push(MARK);
                for (k, x) in pairs {
                    write(k, out, depth + 1)?;
                    write(x, out, depth + 1)?;
                }
                out.push(SETITEMS);
            }
        }
        PyValue::Set(items) => {
            out.push(EMPTY_SET);
            if !items.is_empty() {
                out.push(MARK);
                write_items(items, out, depth)?;
                out.push(ADDITEMS);
            }
        }
        PyValue::FrozenSet(items) => {
            out.push(MARK);
            write_items(items, out, depth)?;
            out.push(FROZENSET);
        }
        PyValue::Object {
            module,
            name,
            args,
            state,
        } => {
            // cls.__new__(cls, *args), then __setstate__(state): a Token
            // as Python pickles it; an exception gets its args from __new__.
            write_str(module, out);
            write_str(name, out);
            out.push(STACK_GLOBAL);
            write_tuple(args, out, depth)?;
            out.push(NEWOBJ);
            if let Some(s) = state {
                write(s, out, depth + 1)?;
                out.push(BUILD);
            }
        }
    }
    Ok(())
}
