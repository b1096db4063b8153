//! The allow-listed pickle reader.
//!
//! A stack machine over [`Node`]s, Python's `Unpickler.load` without the
//! imports: a global is looked up in [`ALLOWED_GLOBALS`] and becomes a
//! name. A memoized value is moved into the memo and the stack keeps a
//! reference to it, so what later opcodes add to it (a list memoized
//! before its items, as Python writes it) is seen by every reference; the
//! references are copied out at `STOP`, within [`MAX_NODES`].

use std::collections::HashMap;

use super::{PickleError, PyValue};

/// Deepest nesting of containers (and objects) read.
pub const MAX_DEPTH: usize = 100;
/// Most values in one pickle, after memo references are copied out.
pub const MAX_NODES: usize = 1 << 20;

/// The globals the reader takes, as `(module, name)`: each one is read as
/// a name ([`PyValue::Object`], or the builtin container it builds); none
/// is imported or called. Anything else is [`PickleError::Global`].
pub const ALLOWED_GLOBALS: &[(&str, &str)] = &[
    ("multiprocessing.managers", "Token"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "bytearray"),
    ("builtins", "object"),
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
    ("__builtin__", "list"),
    ("__builtin__", "tuple"),
    ("__builtin__", "bytearray"),
    ("__builtin__", "object"),
    ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
    ("_queue", "Empty"),
    ("queue", "Empty"),
    ("queue", "Full"),
    ("Queue", "Empty"),
    ("Queue", "Full"),
];

/// Exception classes taken from `builtins` (and Python 2's `exceptions`),
/// besides [`ALLOWED_GLOBALS`].
const EXCEPTIONS: &[&str] = &[
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BrokenPipeError",
    "ConnectionError",
    "EOFError",
    "FileNotFoundError",
    "IndexError",
    "KeyError",
    "LookupError",
    "NameError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "RuntimeError",
    "StopIteration",
    "TimeoutError",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
];

fn allowed(module: &str, name: &str) -> bool {
    ALLOWED_GLOBALS.contains(&(module, name))
        || (matches!(module, "builtins" | "exceptions") && EXCEPTIONS.contains(&name))
}

/// A value while the pickle is read: as [`PyValue`], plus globals and
/// memo references, with each container's depth.
#[derive(Debug, Clone)]
enum Node {
    V(PyValue),
    Tuple(Vec<Node>, usize),
    List(Vec<Node>, usize),
    Dict(Vec<(Node, Node)>, usize),
    Set(Vec<Node>, usize, bool),
    Object {
        module: String,
        name: String,
        args: Vec<Node>,
        state: Option<Box<Node>>,
        depth: usize,
    },
    Global(String, String),
    Ref(u64),
}

impl Node {
    /// Nesting depth (a reference counts as a leaf; it is checked when
    /// copied out).
    fn depth(&self) -> usize {
        match self {
            Self::Tuple(_, d) | Self::List(_, d) | Self::Dict(_, d) | Self::Set(_, d, _) => *d,
            Self::Object { depth, .. } => *depth,
            _ => 1,
        }
    }

    /// Values in the node (references count one).
    fn size(&self) -> usize {
        match self {
            Self::Tuple(v, _) | Self::List(v, _) | Self::Set(v, _, _) => {
                1 + v.iter().map(Self::size).sum::<usize>()
            }
            Self::Dict(v, _) => 1 + v.iter().map(|(k, x)| k.size() + x.size()).sum::<usize>(),
            Self::Object { args, state, .. } => {
                1 + args.iter().map(Self::size).sum::<usize>()
                    + state.as_ref().map_or(0, |s| s.size())
            }
            _ => 1,
        }
    }
}

fn depth_of(items: &[Node]) -> Result<usize, PickleError> {
    let d = 1 + items.iter().map(Node::depth).max().unwrap_or(0);
    if d > MAX_DEPTH {
        return Err(PickleError::TooDeep);
    }
    Ok(d)
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    stack: Vec<Node>,
    marks: Vec<usize>,
    memo: HashMap<u64, Node>,
    /// Values made so far (parsing and copying out), within [`MAX_NODES`].
    made: usize,
}

/// Reads one pickle (protocols 0 to 5) into a [`PyValue`], taking only
/// the [allowed globals](ALLOWED_GLOBALS).
///
/// # Errors
///
/// A [`PickleError`] naming what is wrong: truncated input, an opcode or
/// a global outside the subset, too deep or too big, trailing bytes.
///
/// # Examples
///
/// ```
/// use multiproc::manager::pickle::{loads, PyValue};
///
/// // pickle.dumps((None, 'dummy', (), {}), 4)
/// let p = b"\x80\x04\x95\x13\x00\x00\x00\x00\x00\x00\x00(N\x8c\x05dummy\x94)}\x94t\x94.";
/// let v = loads(p)?;
/// assert_eq!(v, PyValue::Tuple(vec![
///     PyValue::None, "dummy".into(), PyValue::Tuple(vec![]), PyValue::Dict(vec![]),
/// ]));
/// # Ok::<(), multiproc::manager::pickle::PickleError>(())
/// ```
pub fn loads(input: &[u8]) -> Result<PyValue, PickleError> {
    let mut r = Reader {
        input,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        made: 0,
    };
    let top = r.run()?;
    if r.pos != input.len() {
        return Err(PickleError::TrailingBytes);
    }
    r.resolve(top, 0)
}

fn int_node(i: i64) -> Node {
    Node::V(PyValue::Int(i))
}

fn parse_i64(text: &[u8]) -> Result<i64, PickleError> {
    let s = std::str::from_utf8(text).map_err(|_| PickleError::BadText)?;
    let s = s.trim().trim_end_matches('L');
    s.parse::<i64>().map_err(|_| {
        if !s.is_empty()
            && s.trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            PickleError::IntTooLarge
        } else {
            PickleError::Malformed("bad integer text")
        }
    })
}

/// A little-endian two's complement integer of `b.len()` bytes.
fn le_int(b: &[u8]) -> Result<i64, PickleError> {
    if b.is_empty() {
        return Ok(0);
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let fill = if neg { 0xff } else { 0 };
    let mut w = [fill; 8];
    if b.len() > 8 {
        // Extra high bytes must only extend the sign of the low eight.
        let low_neg = b[7] & 0x80 != 0;
        if low_neg != neg || b[8..].iter().any(|&x| x != fill) {
            return Err(PickleError::IntTooLarge);
        }
        w.copy_from_slice(&b[..8]);
    } else {
        w[..b.len()].copy_from_slice(b);
    }
    Ok(i64::from_le_bytes(w))
}

/// Python's `string-escape` of a protocol 0 `STRING` (quotes included).
fn unquote(line: &[u8]) -> Result<Vec<u8>, PickleError> {
    let q = *line.first().ok_or(PickleError::BadText)?;
    if line.len() < 2 || !matches!(q, b'\'' | b'"') || line[line.len() - 1] != q {
        return Err(PickleError::BadText);
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i).ok_or(PickleError::BadText)?;
        i += 1;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'x' => {
                let h = body.get(i..i + 2).ok_or(PickleError::BadText)?;
                let h = std::str::from_utf8(h).map_err(|_| PickleError::BadText)?;
                out.push(u8::from_str_radix(h, 16).map_err(|_| PickleError::BadText)?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'\n' => {}
            _ => {
                out.push(b'\\');
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// Python's `raw-unicode-escape` of a protocol 0 `UNICODE`.
fn raw_unicode(line: &[u8]) -> Result<String, PickleError> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        let n = match (c, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if n == 0 {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let h = line.get(i + 2..i + 2 + n).ok_or(PickleError::BadText)?;
        let h = std::str::from_utf8(h).map_err(|_| PickleError::BadText)?;
        let v = u32::from_str_radix(h, 16).map_err(|_| PickleError::BadText)?;
        out.push(char::from_u32(v).ok_or(PickleError::BadText)?);
        i += 2 + n;
    }
    Ok(out)
}

fn latin1(s: &str) -> Result<Vec<u8>, PickleError> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| PickleError::BadText))
        .collect()
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self.pos.checked_add(n).ok_or(PickleError::Truncated)?;
        let b = self
            .input
            .get(self.pos..end)
            .ok_or(PickleError::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(w))
    }

    fn len64(&mut self) -> Result<usize, PickleError> {
        usize::try_from(self.u64()?).map_err(|_| PickleError::Truncated)
    }

    fn line(&mut self) -> Result<&[u8], PickleError> {
        let rest = &self.input[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn text(&mut self, n: usize) -> Result<Node, PickleError> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| PickleError::BadText)?;
        Ok(Node::V(PyValue::Str(s.to_owned())))
    }

    fn bytes(&mut self, n: usize) -> Result<Node, PickleError> {
        Ok(Node::V(PyValue::Bytes(self.take(n)?.to_vec())))
    }

    fn push(&mut self, n: Node) -> Result<(), PickleError> {
        self.made += 1;
        if self.made > MAX_NODES {
            return Err(PickleError::TooBig);
        }
        self.stack.push(n);
        Ok(())
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Node, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(PickleError::Malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or(PickleError::Malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Node>, PickleError> {
        let m = self.marks.pop().ok_or(PickleError::Malformed("no mark"))?;
        Ok(self.stack.split_off(m))
    }

    /// The node `n` stands for, through memo references.
    fn deref<'n>(&'n self, mut n: &'n Node) -> Result<&'n Node, PickleError> {
        for _ in 0..=self.memo.len() {
            match n {
                Node::Ref(i) => n = self.memo.get(i).ok_or(PickleError::Malformed("memo"))?,
                _ => return Ok(n),
            }
        }
        Err(PickleError::Malformed("memo cycle"))
    }

    /// The node on top of the stack, through memo references, to change.
    fn top_mut(&mut self) -> Result<&mut Node, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(PickleError::Malformed("stack underflow"));
        }
        let mut key = match self.stack.last() {
            Some(Node::Ref(i)) => *i,
            _ => {
                return self
                    .stack
                    .last_mut()
                    .ok_or(PickleError::Malformed("stack underflow"))
            }
        };
        for _ in 0..=self.memo.len() {
            match self.memo.get(&key) {
                Some(Node::Ref(j)) => key = *j,
                Some(_) => {
                    return self
                        .memo
                        .get_mut(&key)
                        .ok_or(PickleError::Malformed("memo"))
                }
                None => return Err(PickleError::Malformed("memo")),
            }
        }
        Err(PickleError::Malformed("memo cycle"))
    }

    fn string_of(&self, n: &Node) -> Result<String, PickleError> {
        match self.deref(n)? {
            Node::V(PyValue::Str(s)) => Ok(s.clone()),
            _ => Err(PickleError::Malformed("global name is not a str")),
        }
    }

    fn global(module: &str, name: &str) -> Result<Node, PickleError> {
        if !allowed(module, name) {
            return Err(PickleError::Global {
                module: module.to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(Node::Global(module.to_owned(), name.to_owned()))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(PickleError::Malformed("memoize of nothing"));
        }
        let top = self
            .stack
            .pop()
            .ok_or(PickleError::Malformed("stack underflow"))?;
        let r = match top {
            Node::Ref(i) if i == key => Node::Ref(i),
            Node::Ref(i) => {
                self.memo.insert(key, Node::Ref(i));
                Node::Ref(key)
            }
            other => {
                self.memo.insert(key, other);
                Node::Ref(key)
            }
        };
        self.stack.push(r);
        if self.memo.len() > MAX_NODES {
            return Err(PickleError::TooBig);
        }
        Ok(())
    }

    /// The items of an iterable argument (list, tuple, set), copied.
    fn items_of(&mut self, n: &Node) -> Result<Vec<Node>, PickleError> {
        let items = match self.deref(n)? {
            Node::Tuple(v, _) | Node::List(v, _) | Node::Set(v, _, _) => v.clone(),
            _ => return Err(PickleError::Malformed("not an iterable")),
        };
        self.charge(items.iter().map(Node::size).sum())?;
        Ok(items)
    }

    fn charge(&mut self, n: usize) -> Result<(), PickleError> {
        self.made = self.made.saturating_add(n);
        if self.made > MAX_NODES {
            return Err(PickleError::TooBig);
        }
        Ok(())
    }

    /// `callable(*args)` for an allowed global (`REDUCE`, `NEWOBJ`).
    fn call(&mut self, callable: Node, args: Node) -> Result<Node, PickleError> {
        let (module, name) = match self.deref(&callable)? {
            Node::Global(m, n) => (m.clone(), n.clone()),
            _ => return Err(PickleError::Malformed("call of a non-global")),
        };
        let args = match self.deref(&args)? {
            Node::Tuple(v, _) => v.clone(),
            _ => return Err(PickleError::Malformed("arguments are not a tuple")),
        };
        self.charge(args.iter().map(Node::size).sum())?;
        let module_is_builtins = matches!(module.as_str(), "builtins" | "__builtin__");
        let node = match (module_is_builtins, name.as_str(), args.as_slice()) {
            (true, "list" | "tuple" | "set" | "frozenset", []) => container(&name, Vec::new())?,
            (true, "list" | "tuple" | "set" | "frozenset", [it]) => {
                let items = self.items_of(it)?;
                container(&name, items)?
            }
            (true, "bytearray", []) => Node::V(PyValue::Bytes(Vec::new())),
            (true, "bytearray", [b]) => match self.deref(b)? {
                Node::V(PyValue::Bytes(b)) => Node::V(PyValue::Bytes(b.clone())),
                _ => return Err(PickleError::Malformed("bytearray argument")),
            },
            (true, "bytearray", [s, _enc]) => {
                let s = self.string_of(s)?;
                Node::V(PyValue::Bytes(latin1(&s)?))
            }
            (true, "object", _) => return Err(PickleError::Malformed("object() called")),
            (false, "encode", [s, _enc]) if module == "_codecs" => {
                let s = self.string_of(s)?;
                Node::V(PyValue::Bytes(latin1(&s)?))
            }
            (false, "encode", _) if module == "_codecs" => {
                return Err(PickleError::Malformed("_codecs.encode arguments"))
            }
            (false, "_reconstructor", [cls, _base, _state]) => match self.deref(cls)? {
                Node::Global(m, n) if !matches!(n.as_str(), "object") => Node::Object {
                    module: m.clone(),
                    name: n.clone(),
                    args: Vec::new(),
                    state: None,
                    depth: 1,
                },
                _ => return Err(PickleError::Malformed("_reconstructor of a non-class")),
            },
            (false, "_reconstructor", _) => {
                return Err(PickleError::Malformed("_reconstructor arguments"))
            }
            _ => {
                let depth = depth_of(&args)?;
                Node::Object {
                    module,
                    name,
                    args,
                    state: None,
                    depth,
                }
            }
        };
        Ok(node)
    }

    fn run(&mut self) -> Result<Node, PickleError> {
        loop {
            let op = self.byte()?;
            match op {
                0x80 => {
                    let p = self.byte()?;
                    if p > 5 {
                        return Err(PickleError::Protocol(p));
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => {
                    let top = self.pop()?;
                    return Ok(top);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    if self.stack.len() > self.floor() {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.pop()?;
                    self.charge(top.size())?;
                    self.stack.push(top.clone());
                    self.stack.push(top);
                }
                b'N' => self.push(Node::V(PyValue::None))?,
                0x88 => self.push(Node::V(PyValue::Bool(true)))?,
                0x89 => self.push(Node::V(PyValue::Bool(false)))?,
                b'I' => {
                    let l = self.line()?;
                    let n = match l {
                        b"00" => Node::V(PyValue::Bool(false)),
                        b"01" => Node::V(PyValue::Bool(true)),
                        _ => int_node(parse_i64(l)?),
                    };
                    self.push(n)?;
                }
                b'L' => {
                    let i = parse_i64(self.line()?)?;
                    self.push(int_node(i))?;
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(int_node(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(int_node(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(int_node(i64::from(v)))?;
                }
                0x8a => {
                    let n = usize::from(self.byte()?);
                    let v = le_int(self.take(n)?)?;
                    self.push(int_node(v))?;
                }
                0x8b => {
                    let n = self.u32()? as i32;
                    let n = usize::try_from(n).map_err(|_| PickleError::Malformed("LONG4"))?;
                    let v = le_int(self.take(n)?)?;
                    self.push(int_node(v))?;
                }
                b'F' => {
                    let l = self.line()?;
                    let s = std::str::from_utf8(l).map_err(|_| PickleError::BadText)?;
                    let f = s
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| PickleError::Malformed("bad float text"))?;
                    self.push(Node::V(PyValue::Float(f)))?;
                }
                b'G' => {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(self.take(8)?);
                    self.push(Node::V(PyValue::Float(f64::from_be_bytes(w))))?;
                }
                b'S' => {
                    let b = unquote(self.line()?)?;
                    self.push(Node::V(PyValue::Bytes(b)))?;
                }
                b'V' => {
                    let s = raw_unicode(self.line()?)?;
                    self.push(Node::V(PyValue::Str(s)))?;
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.bytes(n)?;
                    self.push(v)?;
                }
                b'U' | b'C' => {
                    let n = usize::from(self.byte()?);
                    let v = self.bytes(n)?;
                    self.push(v)?;
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let v = self.bytes(n)?;
                    self.push(v)?;
                }
                0x8e | 0x96 => {
                    let n = self.len64()?;
                    let v = self.bytes(n)?;
                    self.push(v)?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?;
                }
                0x8c => {
                    let n = usize::from(self.byte()?);
                    let v = self.text(n)?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = self.len64()?;
                    let v = self.text(n)?;
                    self.push(v)?;
                }
                b')' => self.push(Node::Tuple(Vec::new(), 1))?,
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < self.floor() + n {
                        return Err(PickleError::Malformed("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let d = depth_of(&items)?;
                    self.push(Node::Tuple(items, d))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let d = depth_of(&items)?;
                    self.push(Node::Tuple(items, d))?;
                }
                b']' => self.push(Node::List(Vec::new(), 1))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    let d = depth_of(&items)?;
                    self.push(Node::List(items, d))?;
                }
                b'}' => self.push(Node::Dict(Vec::new(), 1))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.dict_from(items)?;
                    self.push(d)?;
                }
                0x8f => self.push(Node::Set(Vec::new(), 1, false))?,
                0x91 => {
                    let items = self.pop_mark()?;
                    let d = depth_of(&items)?;
                    self.push(Node::Set(items, d, true))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend(vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.extend(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'g' => {
                    let k = parse_i64(self.line()?)? as u64;
                    self.get(k)?;
                }
                b'h' => {
                    let k = u64::from(self.byte()?);
                    self.get(k)?;
                }
                b'j' => {
                    let k = u64::from(self.u32()?);
                    self.get(k)?;
                }
                b'p' => {
                    let k = parse_i64(self.line()?)? as u64;
                    self.memo_put(k)?;
                }
                b'q' => {
                    let k = u64::from(self.byte()?);
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = u64::from(self.u32()?);
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'c' => {
                    let module = std::str::from_utf8(self.line()?)
                        .map_err(|_| PickleError::BadText)?
                        .to_owned();
                    let name = std::str::from_utf8(self.line()?)
                        .map_err(|_| PickleError::BadText)?
                        .to_owned();
                    let g = Self::global(&module, &name)?;
                    self.push(g)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (module, name) = (self.string_of(&module)?, self.string_of(&name)?);
                    let g = Self::global(&module, &name)?;
                    self.push(g)?;
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let n = self.call(callable, args)?;
                    self.push(n)?;
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    match self.deref(&kwargs)? {
                        Node::Dict(d, _) if d.is_empty() => {}
                        _ => return Err(PickleError::Malformed("NEWOBJ_EX keyword arguments")),
                    }
                    let n = self.call(callable, args)?;
                    self.push(n)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let sd = state.depth();
                    match self.top_mut()? {
                        Node::Object {
                            state: s, depth, ..
                        } => {
                            *depth = (*depth).max(sd + 1);
                            if *depth > MAX_DEPTH {
                                return Err(PickleError::TooDeep);
                            }
                            *s = Some(Box::new(state));
                        }
                        _ => return Err(PickleError::Malformed("BUILD of a non-object")),
                    }
                }
                other => return Err(PickleError::Unsupported(other)),
            }
        }
    }

    fn get(&mut self, k: u64) -> Result<(), PickleError> {
        if !self.memo.contains_key(&k) {
            return Err(PickleError::Malformed("memo key not set"));
        }
        self.push(Node::Ref(k))
    }

    fn dict_from(&self, items: Vec<Node>) -> Result<Node, PickleError> {
        if items.len() % 2 != 0 {
            return Err(PickleError::Malformed("odd dict items"));
        }
        let d = depth_of(&items)?;
        let mut it = items.into_iter();
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(Node::Dict(pairs, d))
    }

    /// `APPEND`, `APPENDS`, `ADDITEMS` onto the top (a list or a set).
    fn extend(&mut self, items: Vec<Node>) -> Result<(), PickleError> {
        let d = depth_of(&items)?;
        match self.top_mut()? {
            Node::List(v, depth) | Node::Set(v, depth, false) => {
                v.extend(items);
                *depth = (*depth).max(d);
                Ok(())
            }
            _ => Err(PickleError::Malformed("append to a non-list")),
        }
    }

    /// `SETITEM`, `SETITEMS` onto the top (a dict).
    fn set_items(&mut self, items: Vec<Node>) -> Result<(), PickleError> {
        let Node::Dict(new, d) = self.dict_from(items)? else {
            return Err(PickleError::Malformed("dict items"));
        };
        match self.top_mut()? {
            Node::Dict(pairs, depth) => {
                // Repeated keys are merged when copied out.
                pairs.extend(new);
                *depth = (*depth).max(d);
                Ok(())
            }
            _ => Err(PickleError::Malformed("setitem on a non-dict")),
        }
    }

    /// Copies the references out: the value `n` stands for.
    fn resolve(&mut self, n: Node, depth: usize) -> Result<PyValue, PickleError> {
        if depth >= MAX_DEPTH {
            return Err(PickleError::TooDeep);
        }
        self.charge(1)?;
        let list = |r: &mut Self, v: Vec<Node>| -> Result<Vec<PyValue>, PickleError> {
            v.into_iter().map(|x| r.resolve(x, depth + 1)).collect()
        };
        Ok(match n {
            Node::V(v) => v,
            Node::Tuple(v, _) => PyValue::Tuple(list(self, v)?),
            Node::List(v, _) => PyValue::List(list(self, v)?),
            Node::Set(v, _, false) => PyValue::Set(list(self, v)?),
            Node::Set(v, _, true) => PyValue::FrozenSet(list(self, v)?),
            Node::Dict(pairs, _) => {
                let mut out: Vec<(PyValue, PyValue)> = Vec::with_capacity(pairs.len());
                let mut index: HashMap<PyValue, usize> = HashMap::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.resolve(k, depth + 1)?;
                    let v = self.resolve(v, depth + 1)?;
                    if !k.is_hashable() {
                        return Err(PickleError::Malformed("unhashable dict key"));
                    }
                    // A repeated key keeps its first place and its last value.
                    match index.get(&k) {
                        Some(&i) => out[i].1 = v,
                        None => {
                            index.insert(k.clone(), out.len());
                            out.push((k, v));
                        }
                    }
                }
                PyValue::Dict(out)
            }
            Node::Object {
                module,
                name,
                args,
                state,
                ..
            } => {
                let args = list(self, args)?;
                let state = match state {
                    Some(s) => Some(Box::new(self.resolve(*s, depth + 1)?)),
                    None => None,
                };
                PyValue::Object {
                    module,
                    name,
                    args,
                    state,
                }
            }
            Node::Global(..) => return Err(PickleError::Malformed("a bare global")),
            Node::Ref(k) => {
                let target = self.memo.get(&k).ok_or(PickleError::Malformed("memo"))?;
                let size = target.size();
                let target = target.clone();
                self.charge(size)?;
                // Depth bounds the chain (and a value that contains itself).
                return self.resolve(target, depth + 1);
            }
        })
    }
}

fn container(name: &str, items: Vec<Node>) -> Result<Node, PickleError> {
    let d = depth_of(&items)?;
    Ok(match name {
        "list" => Node::List(items, d),
        "tuple" => Node::Tuple(items, d),
        "set" => Node::Set(items, d, false),
        _ => Node::Set(items, d, true),
    })
}
