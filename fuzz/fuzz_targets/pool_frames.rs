//! The process pool's decoders and validators:
//! - the owner's handling of a worker's result frames (first byte: the
//!   chunk's item count; the rest: frames, each prefixed by a u16 LE
//!   length) never panics, never records more outcomes than items, and a
//!   finished chunk decodes to exactly one outcome per item;
//! - a worker's chunk runner over arbitrary item bytes sends exactly one
//!   well-formed outcome per claimed item, in frames within the limit;
//! - a spawned worker's arguments and a zygote report re-encode to the
//!   bytes they were decoded from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::fuzzing::{pool_messages, pool_result_frames, pool_run_items};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let count = u32::from(data[0] % 16);
    let mut frames = Vec::new();
    let mut rest = &data[1..];
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        frames.push(&rest[2..2 + n]);
        rest = &rest[2 + n..];
    }
    let (_, done) = pool_result_frames(&frames, count);
    if let Some(n) = done {
        assert_eq!(n, count as usize);
    }
    let max_frame = 64 + usize::from(data[1]) * 16;
    pool_run_items(&data[3..], u32::from(data[2]), max_frame);
    pool_messages(data);
});
