//! The pool's decoders, driven by the fuzz targets through
//! `crate::fuzzing`.

use super::error::TaskError;
use super::func::{offset_of, run_map, Sink};
use super::layout::{next_outcome, read_head, ResultHead};
use super::result::decode_chunk;
use super::state::fuzz_feed_result_frames;
use super::worker::{spawn_args, WorkerSpec};
use super::zygote::Report;

/// Feeds `frames` as one worker's result frames for a chunk of `count`
/// items, as the owner does, then decodes the finished chunk's outcomes as
/// `String`s and as `u64`s. Returns whether every frame was accepted, and
/// the outcomes' count once the chunk finished (`None` while it has not).
pub(crate) fn result_frames(frames: &[&[u8]], count: u32) -> (bool, Option<usize>) {
    let (accepted, chunk) = fuzz_feed_result_frames(frames, count);
    let Some(c) = chunk else {
        return (accepted, None);
    };
    let mut strings: Vec<Result<String, TaskError>> = Vec::new();
    decode_chunk(&c, 1 << 20, &mut strings);
    let mut ints: Vec<Result<u64, TaskError>> = Vec::new();
    decode_chunk(&c, 1 << 20, &mut ints);
    assert_eq!(strings.len(), ints.len());
    (accepted, Some(strings.len()))
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

#[cfg(test)]
mod tests {
    use super::super::layout::tag;
    use super::*;

    fn frame(first: u32, outcomes: &[(u8, &[u8])], last: bool) -> Vec<u8> {
        let head = ResultHead {
            job: 1,
            chunk: 0,
            first,
            count: outcomes.len() as u32,
            last: u32::from(last),
            run_ns: 5,
        };
        let mut f = bytemuck::bytes_of(&head).to_vec();
        for (t, b) in outcomes {
            f.push(*t);
            f.extend_from_slice(&(b.len() as u32).to_le_bytes());
            f.extend_from_slice(b);
        }
        f
    }

    #[test]
    fn result_frames_are_checked() {
        let a = frame(0, &[(tag::OK, &[3])], false);
        let b = frame(1, &[(tag::PANICKED, b"boom")], true);
        assert_eq!(result_frames(&[&a, &b], 2), (true, Some(2)));
        // A gap in the outcomes, too many outcomes, a truncated frame.
        let gap = frame(1, &[(tag::OK, &[3])], true);
        assert_eq!(result_frames(&[&gap], 2), (false, None));
        let many = frame(0, &[(tag::OK, &[1]), (tag::OK, &[2])], true);
        assert_eq!(result_frames(&[&many], 1), (false, None));
        assert_eq!(result_frames(&[&a[..a.len() - 1]], 1), (false, None));
        // Fewer outcomes than items: the rest fail, the chunk finishes.
        let short = frame(0, &[(tag::OK, &[1])], true);
        assert_eq!(result_frames(&[&short], 3), (true, Some(3)));
    }
}
