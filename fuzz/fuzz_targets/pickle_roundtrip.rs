//! The Manager's pickle writer against its reader: any value built from
//! the input (every kind, nested, with allowed objects) reads back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::manager::pickle::{dumps, loads, PyValue};

struct Src<'a>(&'a [u8]);

impl Src<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte()).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }

    fn int(&mut self) -> i64 {
        let mut w = [0u8; 8];
        let n = usize::from(self.byte() % 9);
        for x in w.iter_mut().take(n) {
            *x = self.byte();
        }
        let v = i64::from_le_bytes(w);
        if self.byte() & 1 == 1 {
            v.wrapping_neg()
        } else {
            v
        }
    }

    fn items(&mut self, depth: usize, hashable: bool) -> Vec<PyValue> {
        let n = usize::from(self.byte() % 6);
        (0..n).map(|_| self.value(depth + 1, hashable)).collect()
    }

    fn value(&mut self, depth: usize, hashable: bool) -> PyValue {
        let leaf = depth > 8;
        let k = self.byte() % if leaf { 6 } else { 12 };
        match k {
            0 => PyValue::None,
            1 => PyValue::Bool(self.byte() & 1 == 1),
            2 => PyValue::Int(self.int()),
            3 => PyValue::Float(f64::from_bits(self.int() as u64)),
            4 => PyValue::Str(String::from_utf8_lossy(&self.bytes()).into_owned()),
            5 => PyValue::Bytes(self.bytes()),
            6 | 7 => PyValue::Tuple(self.items(depth, hashable)),
            8 if hashable => PyValue::FrozenSet(self.items(depth, true)),
            8 => PyValue::List(self.items(depth, false)),
            9 if hashable => PyValue::Tuple(self.items(depth, true)),
            9 => {
                let mut pairs: Vec<(PyValue, PyValue)> = Vec::new();
                for _ in 0..self.byte() % 5 {
                    let key = self.value(depth + 1, true);
                    let v = self.value(depth + 1, false);
                    if !pairs.iter().any(|(k, _)| *k == key) {
                        pairs.push((key, v));
                    }
                }
                PyValue::Dict(pairs)
            }
            10 if !hashable => PyValue::Set(self.items(depth, true)),
            _ if hashable => PyValue::Str(String::new()),
            _ => {
                let (module, name) = [
                    ("multiprocessing.managers", "Token"),
                    ("builtins", "KeyError"),
                    ("builtins", "ValueError"),
                    ("_queue", "Empty"),
                    ("queue", "Full"),
                ][usize::from(self.byte() % 5)];
                let args = self.items(depth, false);
                let state = (self.byte() & 1 == 1).then(|| Box::new(self.value(depth + 1, false)));
                PyValue::Object {
                    module: module.into(),
                    name: name.into(),
                    args,
                    state,
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let v = Src(data).value(0, false);
    let p = dumps(&v).expect("shallow enough to write");
    assert_eq!(loads(&p), Ok(v));
});
