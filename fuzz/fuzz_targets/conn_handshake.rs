//! Python's connection handshake in `multiproc::connection`, both roles
//! (listener: deliver then answer; client: answer then deliver), both
//! generations, over an in-memory stream.
//!
//! On every input:
//! - raw: the input as the peer's bytes never panics, writes only frames
//!   of at most 256 bytes, and succeeds only if the input holds the right
//!   MAC of our challenge;
//! - structured: a correct peer transcript (computed here with RustCrypto
//!   directly, in Python's formats: bare HMAC-MD5 or `{sha256}` + MAC;
//!   a legacy or `{sha256}` challenge from the peer) succeeds, and this
//!   side's bytes are exactly Python's; the same transcript with one bit
//!   of the peer's MAC flipped fails with `AuthFailed`.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use multiproc::connection::ConnectionError;
use multiproc::fuzzing::{conn_frame, conn_handshake, conn_parse_header, CONN_MAX_HANDSHAKE_FRAME};

fn md5(key: &[u8], m: &[u8]) -> Vec<u8> {
    let mut h = <Hmac<md5::Md5> as Mac>::new_from_slice(key).unwrap();
    h.update(m);
    h.finalize().into_bytes().to_vec()
}

fn sha256(key: &[u8], m: &[u8]) -> Vec<u8> {
    let mut h = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    h.update(m);
    h.finalize().into_bytes().to_vec()
}

/// Python 3.12's `_create_response`.
fn python_response(key: &[u8], message: &[u8], bare_md5: bool) -> Vec<u8> {
    if message.len() == 20 || bare_md5 {
        md5(key, message)
    } else {
        [&b"{sha256}"[..], &sha256(key, message)].concat()
    }
}

/// The challenge message this side delivers when its random bytes are all
/// `fill`.
fn our_message(legacy: bool, fill: u8) -> Vec<u8> {
    if legacy {
        vec![fill; 20]
    } else {
        [&b"{sha256}"[..], &[fill; 40]].concat()
    }
}

/// Checks that `out` is a sequence of frames of at most 256 bytes.
fn only_small_frames(mut out: &[u8]) {
    while !out.is_empty() {
        let (len, hl) = conn_parse_header(out).unwrap().unwrap();
        assert!(len as usize <= CONN_MAX_HANDSHAKE_FRAME);
        out = &out[hl + len as usize..];
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let flags = data[0];
    let fill = data[1];
    let klen = usize::from(data[2] % 40).min(data.len() - 3);
    let key = &data[3..3 + klen];
    let rest = &data[3 + klen..];
    let listener = flags & 1 != 0;
    let legacy = flags & 2 != 0;

    if flags & 4 == 0 {
        let (r, out) = conn_handshake(rest, key, listener, legacy, fill);
        only_small_frames(&out);
        if r.is_ok() {
            // Only a right answer to our challenge passes.
            let ours = our_message(legacy, fill);
            let right = [md5(key, &ours), sha256(key, &ours)];
            assert!(
                right
                    .iter()
                    .any(|m| rest.windows(m.len()).any(|w| w == &m[..])),
                "handshake accepted a wrong answer: {rest:?}"
            );
        }
        return;
    }

    // Structured: a correct transcript.
    let ours = our_message(legacy, fill);
    let peer_bare_md5 = flags & 8 != 0;
    let peer_legacy = flags & 16 != 0;
    let corrupt = flags & 32 != 0;
    let mut peer_random = rest.to_vec();
    peer_random.resize(40, 0xa5);
    let theirs: Vec<u8> = if peer_legacy {
        peer_random[..20].to_vec()
    } else {
        [&b"{sha256}"[..], &peer_random].concat()
    };
    let mut answer = python_response(key, &ours, peer_bare_md5);
    if corrupt {
        let i = usize::from(fill) % answer.len();
        // Flip a bit of the MAC (not of the `{sha256}` prefix).
        let i = if answer.len() > 16 && i < 8 { i + 8 } else { i };
        answer[i] ^= 1;
    }
    let challenge = |m: &[u8]| conn_frame(&[&b"#CHALLENGE#"[..], m].concat());
    let input: Vec<u8> = if listener {
        [
            conn_frame(&answer),
            challenge(&theirs),
            conn_frame(b"#WELCOME#"),
        ]
        .concat()
    } else {
        [
            challenge(&theirs),
            conn_frame(b"#WELCOME#"),
            conn_frame(&answer),
        ]
        .concat()
    };
    let (r, out) = conn_handshake(&input, key, listener, legacy, fill);
    only_small_frames(&out);
    let my_answer = conn_frame(&python_response(key, &theirs, false));
    if corrupt {
        assert!(matches!(r, Err(ConnectionError::AuthFailed)), "{r:?}");
        let failure = conn_frame(b"#FAILURE#");
        assert!(out.ends_with(&failure));
    } else {
        assert!(r.is_ok(), "{r:?}");
        let want = if listener {
            [challenge(&ours), conn_frame(b"#WELCOME#"), my_answer].concat()
        } else {
            [my_answer, challenge(&ours), conn_frame(b"#WELCOME#")].concat()
        };
        assert_eq!(out, want);
    }
});
