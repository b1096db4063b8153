//! The frame decoder of `multiproc::connection` (Python's
//! `multiprocessing.connection` framing), against a reference decoder.
//!
//! On every input (first bytes: read chunk size, reader buffer size and
//! maximum message size; the rest: the byte stream):
//! - the reader returns exactly the payloads, and then exactly the error
//!   (`Closed` at a frame boundary, `Truncated` mid-frame, `BadLength`,
//!   `TooLarge` after one retry with twice the maximum), that a reference
//!   decoder finds, whatever the chunking and buffer size;
//! - a header parses as the reference reads it;
//! - payloads cut from the input round-trip through the encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::connection::ConnectionError;
use multiproc::fuzzing::{conn_frame, conn_parse_header, conn_read_frames};

#[derive(Debug, PartialEq)]
enum Want {
    Frame(Vec<u8>),
    Closed,
    Truncated,
    BadLength(i64),
    TooLarge(u64),
}

fn reference(mut data: &[u8], max: usize) -> Vec<Want> {
    let mut out = Vec::new();
    let mut retried = false;
    loop {
        if data.is_empty() {
            out.push(Want::Closed);
            return out;
        }
        if data.len() < 4 {
            out.push(Want::Truncated);
            return out;
        }
        let n = i32::from_be_bytes(data[..4].try_into().unwrap());
        let (len, hl) = match n {
            0.. => (n as u64, 4),
            -1 => {
                if data.len() < 12 {
                    out.push(Want::Truncated);
                    return out;
                }
                (u64::from_be_bytes(data[4..12].try_into().unwrap()), 12)
            }
            _ => {
                out.push(Want::BadLength(i64::from(n)));
                return out;
            }
        };
        let m = if retried { max * 2 } else { max };
        if len > m as u64 {
            if retried {
                out.push(Want::TooLarge(len));
                return out;
            }
            retried = true;
            continue;
        }
        retried = false;
        let len = len as usize;
        if data.len() < hl + len {
            out.push(Want::Truncated);
            return out;
        }
        out.push(Want::Frame(data[hl..hl + len].to_vec()));
        data = &data[hl + len..];
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let chunk = usize::from(data[0] % 8);
    let buf_cap = [12, 16, 64, 65536][usize::from(data[1] % 4)];
    let max = usize::from(data[2]) * 64;
    let stream = &data[3..];

    let got: Vec<Want> = conn_read_frames(stream, chunk, buf_cap, max)
        .into_iter()
        .map(|r| match r {
            Ok(v) => Want::Frame(v),
            Err(ConnectionError::Closed) => Want::Closed,
            Err(ConnectionError::Truncated) => Want::Truncated,
            Err(ConnectionError::BadLength(n)) => Want::BadLength(n),
            Err(ConnectionError::TooLarge { len, .. }) => Want::TooLarge(len),
            Err(e) => panic!("unexpected error {e:?}"),
        })
        .collect();
    assert_eq!(got, reference(stream, max));

    match conn_parse_header(stream) {
        Ok(Some((len, hl))) => {
            assert!(hl == 4 || hl == 12);
            if hl == 4 {
                assert_eq!(
                    len,
                    u64::from(u32::from_be_bytes(stream[..4].try_into().unwrap()))
                );
            }
        }
        Ok(None) => assert!(stream.len() < 12),
        Err(ConnectionError::BadLength(n)) => assert!(n < -1),
        Err(e) => panic!("{e:?}"),
    }

    // Round trip: the stream cut into payloads at its zero bytes.
    let payloads: Vec<&[u8]> = stream.split(|&b| b == 0).collect();
    let encoded: Vec<u8> = payloads.iter().flat_map(|p| conn_frame(p)).collect();
    let back = conn_read_frames(&encoded, chunk, buf_cap, stream.len());
    assert_eq!(back.len(), payloads.len() + 1);
    for (b, p) in back.iter().zip(&payloads) {
        assert_eq!(b.as_ref().unwrap(), p);
    }
    assert!(matches!(back.last(), Some(Err(ConnectionError::Closed))));
});
