//! The pool's decoders, driven by the fuzz targets through
//! `crate::fuzzing`.

use super::func::{offset_of, run_map, Sink};
use super::layout::{next_outcome, read_head, ResultHead};
use super::worker::{spawn_args, WorkerSpec};
use super::zygote::Report;

pub(crate) fn result_frames(frames: &[&[u8]], count: u32) -> (bool, Option<usize>) {
    super::state::fuzz_result_frames(frames, count)
}

fn len_of(s: String) -> usize {
    s.len()
}

pub(crate) fn run_items(input: &[u8], count: u32, max_frame: usize) -> usize {
    let max_frame = max_frame.clamp(64, 1 << 16);
    let count = count % 4096;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut flush = |f: &[u8]| frames.push(f.to_vec());
    let mut sink = Sink::new(1, 0, max_frame, Vec::new(), &mut flush);
    run_map::<String, usize>(
        offset_of(len_of as fn(String) -> usize as usize),
        input,
        count,
        &mut sink,
    );
    sink.finish(std::time::Duration::ZERO);
    let mut outcomes = 0usize;
    for f in &frames {
        assert!(f.len() <= max_frame, "a frame above max_frame");
        let (head, mut body) = read_head::<ResultHead>(f).expect("a whole head");
        assert_eq!(head.first as usize, outcomes);
        for _ in 0..head.count {
            let (_, rest) = next_outcome(body).expect("well-formed outcome");
            body = rest;
            outcomes += 1;
        }
        assert!(body.is_empty());
    }
    assert_eq!(outcomes, count as usize, "one outcome per item");
    outcomes
}

pub(crate) fn messages(bytes: &[u8]) -> usize {
    let mut parsed = 0;
    if let Some((spec, rest)) = WorkerSpec::decode(bytes) {
        if let Ok(name) = std::str::from_utf8(rest) {
            assert_eq!(spawn_args(spec, name), bytes);
        }
        parsed += 1;
    }
    if let Some(r) = Report::decode(bytes) {
        let again = Report::decode(&r.encode());
        assert_eq!(again, Some(r));
        parsed += 1;
    }
    parsed
}
