//! The Manager's allow-listed pickle reader on any input.
//!
//! It never panics, never allocates beyond its limits, and whatever it
//! accepts survives a round trip through the writer: `loads(dumps(v)) ==
//! v`, and the writer is deterministic on what it reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::manager::pickle::{dumps, loads};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = loads(data) else {
        return;
    };
    let p = dumps(&v).expect("a value the reader made is writable");
    let back = loads(&p).expect("the writer's pickle is readable");
    assert_eq!(back, v);
    assert_eq!(dumps(&back).unwrap(), p);
});
