//! The spawn and fork-server wire of the std crate (`multiproc`): frames
//! split from a byte stream, frame headers, `S` status payloads, `Q`
//! fork-server requests, report frames, and the identity path a spawned
//! child reads from its argv.
//!
//! On every input:
//! - the input as a stream, fed in chunks the input picks: the frames that
//!   come out, re-encoded, are exactly the bytes consumed, and a `BadFrame`
//!   comes only at a header announcing more than `MAX_FRAME` bytes (a
//!   reference splitter says the same);
//! - the input as a header, a status payload, a challenge, a request
//!   payload, a spawn job (`A`) payload and a path:
//!   what decodes encodes back to the input (every encoding is canonical);
//! - values built from the input round-trip: requests (an identity of up
//!   to `FORK_REQUEST_MAX_IDENT`, any auth key), jobs (any auth key and
//!   arguments), statuses, paths, frames; a report frame
//!   fits `PIPE_BUF` and carries a prefix of its message cut on a character
//!   boundary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::fuzzing::{
    parse_path, path_str, wire_decode_status, wire_encode_status, wire_frame, wire_parse_header,
    wire_job_decode, wire_job_encode, wire_parse_nonce, wire_report, BadFrame, ForkRequest, Frames, FORK_REQUEST_MAX_IDENT,
    WIRE_HEADER, WIRE_MAX_FRAME, WIRE_MAX_REPORT, WIRE_NONCE_LEN,
};

/// The frames a correct splitter finds in `data`, and whether it stops at a
/// bad header (else at an incomplete frame or the end).
fn reference_split(mut data: &[u8]) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut out = Vec::new();
    while data.len() >= WIRE_HEADER {
        let len = u32::from_le_bytes(data[1..5].try_into().unwrap()) as usize;
        if len > WIRE_MAX_FRAME {
            return (out, true);
        }
        if data.len() < WIRE_HEADER + len {
            break;
        }
        out.push((data[0], data[WIRE_HEADER..WIRE_HEADER + len].to_vec()));
        data = &data[WIRE_HEADER + len..];
    }
    (out, false)
}

fn split_stream(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 16) + 1;
    let mut frames = Frames::default();
    let mut got = Vec::new();
    let mut bad = false;
    'feed: for piece in stream.chunks(chunk) {
        frames.extend(piece);
        loop {
            match frames.next_frame() {
                Ok(Some(f)) => got.push(f),
                Ok(None) => break,
                Err(BadFrame) => {
                    bad = true;
                    break 'feed;
                }
            }
        }
    }
    // However the stream was cut, the same frames, and a bad header where
    // (and only where) the reference stops at one.
    let (want, want_bad) = reference_split(stream);
    assert_eq!(got, want);
    assert_eq!(bad, want_bad);
    let consumed: Vec<u8> = got.iter().flat_map(|(t, p)| wire_frame(*t, p)).collect();
    assert_eq!(consumed, stream[..consumed.len()]);
}

fn decode_raw(data: &[u8]) {
    if let Some(h) = data.first_chunk::<WIRE_HEADER>() {
        let len = u32::from_le_bytes(h[1..].try_into().unwrap()) as usize;
        match wire_parse_header(h) {
            Some((tag, l)) => {
                assert_eq!((tag, l), (h[0], len));
                assert!(l <= WIRE_MAX_FRAME);
            }
            None => assert!(len > WIRE_MAX_FRAME),
        }
    }
    if let Some((signaled, v)) = wire_decode_status(data) {
        assert_eq!(wire_encode_status(signaled, v), data);
    }
    match wire_parse_nonce(data) {
        Some(n) => assert_eq!(n.as_slice(), data),
        None => assert_ne!(data.len(), WIRE_NONCE_LEN),
    }
    if let Some(r) = ForkRequest::decode(data) {
        assert!(r.ident.len() <= FORK_REQUEST_MAX_IDENT);
        assert_eq!(r.encode(), data, "not canonical: {r:?}");
    }
    match wire_job_decode(data) {
        Some((key, args)) => {
            assert_eq!(4 + key.len() + args.len(), data.len());
            assert_eq!(wire_job_encode(key, args), data, "not canonical");
        }
        None => {
            // Only a length that runs past the payload is refused.
            let len = data
                .first_chunk::<4>()
                .map(|l| u32::from_le_bytes(*l) as usize);
            assert!(len.is_none_or(|l| l > data.len() - 4));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(p) = parse_path(s) {
            assert_eq!(path_str(&p), s, "not canonical");
        }
    }
}

fn build(data: &[u8]) {
    let [a, b, c, d, e, ..] = *data else {
        return;
    };
    let rest = &data[5..];
    let words: Vec<u32> = rest
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect();

    let (signaled, v) = (a & 1 == 1, i32::from_le_bytes([b, c, d, e]));
    assert_eq!(
        wire_decode_status(&wire_encode_status(signaled, v)),
        Some((signaled, v))
    );

    let n = usize::from(b) % (words.len() + 1);
    assert_eq!(
        parse_path(&path_str(&words[..n])).as_deref(),
        Some(&words[..n])
    );

    let text = String::from_utf8_lossy(rest);
    let cut = usize::from(c) % (text.len() + 1);
    let cut = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap();
    let (entry, name) = text.split_at(cut);
    let key_len = usize::from(e) % (rest.len() + 1);
    let (key, args) = rest.split_at(key_len);
    assert_eq!(wire_job_decode(&wire_job_encode(key, args)), Some((key, args)));
    let r = ForkRequest {
        daemon: a & 2 != 0,
        parent_pid: u32::from_le_bytes([b, c, d, e]),
        entry: entry.to_owned(),
        name: name.to_owned(),
        ident: words[..n].to_vec(),
        authkey: key.to_vec(),
        args: args.to_vec(),
    };
    let dec = ForkRequest::decode(&r.encode());
    if r.ident.len() <= FORK_REQUEST_MAX_IDENT {
        assert_eq!(dec, Some(r));
    } else {
        assert_eq!(dec, None);
    }

    let f = wire_frame(a, rest);
    let mut frames = Frames::default();
    frames.extend(&f);
    assert_eq!(frames.next_frame(), Ok(Some((a, rest.to_vec()))));
    assert_eq!(frames.next_frame(), Ok(None));

    // Long messages: the text repeated past the report limit.
    let msg = text.repeat(usize::from(d) % 64 + 1);
    let rep = wire_report(a, &msg);
    assert!(rep.len() <= 4096);
    let (tag, len) = wire_parse_header(rep.first_chunk().unwrap()).unwrap();
    assert_eq!((tag, len), (a, rep.len() - WIRE_HEADER));
    let body = std::str::from_utf8(&rep[WIRE_HEADER..]).expect("cut on a char boundary");
    assert!(msg.starts_with(body));
    if msg.len() <= WIRE_MAX_REPORT {
        assert_eq!(body, msg);
    } else {
        // Cut at most one character short of the limit.
        assert!(body.len() + 4 > WIRE_MAX_REPORT);
    }
}

fuzz_target!(|data: &[u8]| {
    split_stream(data);
    decode_raw(data);
    build(data);
});
