//! The handle tokens of the std crate (`multiproc`) and the shm names they
//! carry: queue `Sender`/`Receiver`, SPSC `Producer`/`Consumer`, pipe
//! `Connection`.
//!
//! Two halves, on every input:
//! - the input as a token: each decoder (plain, MPMC for `u64`, SPSC for
//!   `u64`, pipe) returns a value or a typed error; what decodes is in
//!   range (a pid a process can have, a pipe stride some ring has) and
//!   encodes back to the input bytes (the encoding is canonical); the
//!   typed decoders accept only what the plain one does;
//! - a token built from the input (fields, a name, optionally the right
//!   element type): `decode(encode(t)) == t` when its pid is in range, and
//!   the `from_token` of each handle, with the name replaced by one that
//!   cannot name a segment (an invalid name: no system call), or, for one
//!   input in 16, by a valid name this process never creates (one
//!   `shm_open` that fails with `ENOENT`), fails with a typed error and
//!   nothing else: no fuzzed name ever reaches `shm_open`, and no segment
//!   of another process is opened.
//!
//! Every name met (the input as text, the decoded names) also goes through
//! the shm name validator: what it accepts is `/` and one non-empty path
//! component, no NUL, within the platform's limit, and parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::fuzzing::{
    mpmc_token_parse, pipe_ring_stride, queue_type_tag, shm_name_parse, spsc_token_make,
    spsc_token_parse, PipeToken, QueueToken, Side, KIND_MPMC, SHM_NAME_MAX,
};
use multiproc::queue::QueueError;
use multiproc::shm::ShmError;
use multiproc::spsc::{Consumer, Producer};
use multiproc::{Connection, PipeError};

/// The input, read a few bytes at a time (zeros once exhausted).
struct Input<'d>(&'d [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn byte(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

fn check_name(name: &str) {
    let Ok((text, c)) = shm_name_parse(name) else {
        return;
    };
    let bare = name.strip_prefix('/').unwrap_or(name);
    assert_eq!(text, format!("/{bare}"));
    assert!(text.len() > 1 && text.len() <= SHM_NAME_MAX, "{text:?}");
    assert!(!text[1..].contains('/') && !text.contains('\0'), "{text:?}");
    assert!(bare != "." && bare != "..");
    assert_eq!(c, text.as_bytes());
    assert_eq!(shm_name_parse(&text).unwrap(), (text.clone(), c));
}

fn pid_in_range(pid: u32) -> bool {
    pid != 0 && i32::try_from(pid).is_ok()
}

/// The input as token bytes.
fn decode_raw(data: &[u8]) {
    let plain = QueueToken::decode(data);
    if let Ok(t) = &plain {
        assert!(pid_in_range(t.from_pid), "{t:?}");
        assert_eq!(t.name.len() + 48, data.len());
        assert_eq!(t.encode(), data, "not canonical: {t:?}");
        check_name(&t.name);
    }
    for side in [Side::Sender, Side::Receiver] {
        if let Ok(t) = mpmc_token_parse::<u64>(data, side) {
            assert_eq!(plain.as_ref().ok(), Some(&t));
            assert_eq!((t.kind, t.side, t.size, t.align), (KIND_MPMC, side, 8, 8));
            assert_eq!(t.tag, queue_type_tag::<u64>());
        }
        if let Ok((t, last)) = spsc_token_parse::<u64>(data, side) {
            let p = plain.as_ref().expect("the plain decoder accepts it");
            assert_eq!(p.kind, t.kind | if last { 0x80 } else { 0 });
            assert_eq!((t.side, t.size, t.align), (side, 8, 8));
            assert_eq!(
                spsc_token_make::<u64>(side, t.from_pid, last, &t.name),
                data
            );
        }
    }
    if let Ok(p) = PipeToken::decode(data) {
        let t = plain.as_ref().expect("the plain decoder accepts it");
        assert_eq!((p.end, p.from_pid, &p.name), (t.side, t.from_pid, &t.name));
        assert_eq!(p.duplex, t.size == 1);
        assert_eq!(p.stride as u64, t.align);
        assert_eq!(p.ticket, t.ticket);
        assert!((0..64).any(|k| pipe_ring_stride(1 << k) == Some(p.stride)));
        assert_eq!(p.encode(), data);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        check_name(s);
    }
}

fn bad_or_absent_queue(e: &QueueError) -> bool {
    matches!(
        e,
        QueueError::BadToken { .. }
            | QueueError::Shm(ShmError::InvalidName { .. } | ShmError::NotFound { .. })
    )
}

/// A token built from the input, and the handles' `from_token` on it.
fn build_and_claim(data: &[u8], absent: &str) {
    let mut inp = Input(data);
    let flags = inp.byte();
    let side = if flags & 1 == 0 {
        Side::Sender
    } else {
        Side::Receiver
    };
    let mut t = QueueToken {
        kind: inp.byte(),
        side,
        from_pid: inp.u32(),
        size: inp.u64(),
        align: inp.u64(),
        tag: inp.u64(),
        ticket: inp.u64(),
        name: String::from_utf8_lossy(inp.0).into_owned(),
    };
    match flags >> 1 & 3 {
        // A token whose type checks pass for `u64` (MPMC or SPSC) or a
        // pipe's: the claim then reaches the segment's name.
        1 => {
            t.kind = if flags & 8 == 0 {
                KIND_MPMC
            } else {
                2 | (flags & 0x80)
            };
            (t.size, t.align, t.tag) = (8, 8, queue_type_tag::<u64>());
        }
        2 => {
            let p = PipeToken {
                end: side,
                from_pid: t.from_pid,
                duplex: flags & 8 != 0,
                stride: 0,
                ticket: t.ticket,
                name: String::new(),
            };
            // Take the pipe's kind and tag from an encoded pipe token.
            let proto = QueueToken::decode(&PipeToken { from_pid: 1, ..p }.encode());
            if let Ok(proto) = proto {
                (t.kind, t.tag) = (proto.kind, proto.tag);
                t.size = u64::from(flags & 8 != 0);
                // The stride of some ring size, usually.
                let ring = 1u64.checked_shl((t.align % 72) as u32).unwrap_or(0);
                t.align = pipe_ring_stride(ring).map_or(t.align, |s| s as u64);
            }
        }
        _ => {}
    }
    if flags & 6 != 0 {
        t.from_pid = t.from_pid % i32::MAX as u32 + 1;
    }
    if t.kind != KIND_MPMC {
        // Only MPMC tokens carry a ticket.
        t.ticket = 0;
    }
    let bytes = t.encode();
    match QueueToken::decode(&bytes) {
        Ok(d) => assert_eq!(d, t),
        Err(e) => {
            assert!(!pid_in_range(t.from_pid), "{t:?}: {e}");
            return;
        }
    }
    // Never a fuzzed name to `shm_open`: one that cannot be valid, or one
    // this process never creates.
    t.name = if flags & 0xf0 == 0x10 {
        absent.to_owned()
    } else if t.name.len().is_multiple_of(2) {
        // An inner `/`: invalid whatever the fuzzed part.
        format!("not/a/segment{}", t.name)
    } else {
        String::new()
    };
    let bytes = t.encode();
    for r in [
        multiproc::queue::Sender::<u64>::from_token(&bytes).map(drop),
        multiproc::queue::Receiver::<u64>::from_token(&bytes).map(drop),
        Producer::<u64>::from_token(&bytes).map(drop),
        Consumer::<u64>::from_token(&bytes).map(drop),
    ] {
        let e = r.expect_err("no such segment");
        assert!(bad_or_absent_queue(&e), "{e:?}");
        let _ = e.to_string();
    }
    match Connection::from_token(&bytes) {
        Ok(_) => panic!("no such segment"),
        Err(PipeError::Setup(e)) => assert!(bad_or_absent_queue(&e), "{e:?}"),
        Err(e) => panic!("{e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static ABSENT: String = format!("multiproc-fuzz-absent-{}", std::process::id());
    }
    decode_raw(data);
    ABSENT.with(|absent| build_and_claim(data, absent));
});
