//! **Not public API.** Thin wrappers over this crate's private decoders for
//! the cargo-fuzz targets in `fuzz/` (`tokens`, `wire`, `sync_stamp`).
//!
//! The module exists only when the crate is built with its `fuzzing`
//! feature (which the fuzz crate turns on) or for its own unit tests; it
//! is hidden from the docs, follows no semver, and may change or go in any
//! release. A feature, not the `--cfg fuzzing` that cargo-fuzz sets for
//! every crate of a build: a user fuzzing a program of theirs that depends
//! on this crate does not get the module.
//!
//! Every wrapper is pure: it decodes or encodes bytes, or reads a region
//! the caller owns. None opens, creates or unlinks a shared memory segment,
//! so no fuzzed name ever reaches `shm_open`.
//!
//! | decoder | wrapper |
//! |---|---|
//! | queue handle token (`segment::Token`) | [`QueueToken::decode`], [`QueueToken::encode`], [`mpmc_token_parse`] |
//! | SPSC end token (`spsc::parse_token`) | [`spsc_token_parse`], [`spsc_token_make`] |
//! | pipe end token (`pipe::PipeToken`) | [`PipeToken::decode`], [`PipeToken::encode`] |
//! | shm names (`shm::ShmName::parse`) | [`shm_name_parse`] |
//! | spawn/fork-server frames (`process::wire`) | [`Frames`], [`wire_frame`], [`wire_parse_header`], [`wire_report`], [`wire_decode_status`], [`wire_parse_nonce`], [`wire_job_encode`], [`wire_job_decode`], [`ForkRequest`] |
//! | spawn identity path (`process::spawn::parse_path`) | [`parse_path`], [`path_str`] |
//! | sync segment type stamps (`sync::attach_checked`) | [`sync_cases`], [`sync_segment_type`], [`sync_handle_from_tag`] |
//! | socket connection frames (`connection::wire`) | [`conn_parse_header`], [`conn_frame`], [`conn_read_frames`] |
//! | socket handshake, both roles (`connection::handshake`) | [`conn_handshake`] |
//! | pool result frames, the owner's side (`pool::state`), and task items, the worker's side (`pool::func`) | [`pool_result_frames`], [`pool_run_items`], [`pool_messages`] |
//! | MPI pool messages: TASK, RESULT and HELLO (`mpi::wire`, built here without MPI) | [`mpi_task_chunks`], [`mpi_result_chunks`], [`mpi_hello`] |

use std::time::Duration;

use bytemuck::Pod;
use multiproc_core::region::{InitError, Kind, Region};
use multiproc_core::{barrier, event, mutex, semaphore, value};

pub use multiproc_core::peers::Side;

use crate::connection::wire::{Dest, FrameReader, MemTransport};
use crate::connection::{Challenge, ConnectionError};
use crate::pipe::PipeError;
use crate::process::{spawn, wire};
use crate::queue::QueueError;
use crate::segment::{self, Token};
use crate::shm::ShmError;
use crate::sync::{attach_checked, HandleKind, SegmentType, SyncError};
use crate::sys::WaitStatus;

// ---------------------------------------------------------------------------
// Queue, SPSC and pipe tokens
// ---------------------------------------------------------------------------

/// The token kind of an MPMC queue's `Sender`/`Receiver` (`KIND_MPMC` in
/// `queue/channel.rs`; a unit test checks they agree).
pub const KIND_MPMC: u8 = 1;

/// The fields of a queue handle token (all three token users share its
/// encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueToken {
    /// Which structure (MPMC 1, SPSC 2, pipe 3; bit 7: SPSC last handle).
    pub kind: u8,
    /// The side handed on.
    pub side: Side,
    /// The process that made the token.
    pub from_pid: u32,
    /// Element size (pipe: 1 if duplex).
    pub size: u64,
    /// Element alignment (pipe: ring stride).
    pub align: u64,
    /// Element type tag.
    pub tag: u64,
    /// MPMC tokens: the ticket word (0 for the other kinds).
    pub ticket: u64,
    /// The segment's name.
    pub name: String,
}

impl From<Token> for QueueToken {
    fn from(t: Token) -> Self {
        Self {
            kind: t.kind,
            side: t.side,
            from_pid: t.from_pid,
            size: t.size,
            align: t.align,
            tag: t.tag,
            ticket: t.ticket,
            name: t.name,
        }
    }
}

impl QueueToken {
    fn to_token(&self) -> Token {
        Token {
            kind: self.kind,
            side: self.side,
            from_pid: self.from_pid,
            size: self.size,
            align: self.align,
            tag: self.tag,
            ticket: self.ticket,
            name: self.name.clone(),
        }
    }

    /// The token's bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_token().encode()
    }

    /// Decodes a token.
    ///
    /// # Errors
    ///
    /// [`QueueError::BadToken`].
    pub fn decode(b: &[u8]) -> Result<Self, QueueError> {
        Token::decode(b).map(Self::from)
    }
}

/// The type tag a queue of `T` records.
pub fn queue_type_tag<T>() -> u64 {
    segment::type_tag::<T>()
}

/// What `Sender::<T>::from_token`/`Receiver::<T>::from_token` check before
/// they open the segment the token names.
///
/// # Errors
///
/// [`QueueError::BadToken`].
pub fn mpmc_token_parse<T: Pod>(b: &[u8], side: Side) -> Result<QueueToken, QueueError> {
    let t = Token::decode(b)?;
    t.check::<T>(KIND_MPMC, side)?;
    Ok(t.into())
}

/// What `Producer::<T>::from_token`/`Consumer::<T>::from_token` check
/// before they open the segment: the token (kind without the last-handle
/// bit) and that bit.
///
/// # Errors
///
/// [`QueueError::BadToken`].
pub fn spsc_token_parse<T: Pod>(b: &[u8], side: Side) -> Result<(QueueToken, bool), QueueError> {
    crate::spsc::parse_token::<T>(b, side).map(|(t, last)| (t.into(), last))
}

/// The token `into_token` of a `T` channel's `side` end makes.
pub fn spsc_token_make<T: Pod>(side: Side, from_pid: u32, last: bool, name: &str) -> Vec<u8> {
    crate::spsc::make_token::<T>(side, from_pid, last, name).encode()
}

/// A pipe end's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeToken {
    /// The end handed on.
    pub end: Side,
    /// The process that made the token.
    pub from_pid: u32,
    /// Two rings or one.
    pub duplex: bool,
    /// Bytes per ring region.
    pub stride: usize,
    /// Its ticket word (claimed once).
    pub ticket: u64,
    /// The segment's name.
    pub name: String,
}

impl PipeToken {
    fn to_inner(&self) -> crate::pipe::PipeToken {
        crate::pipe::PipeToken {
            end: self.end,
            from_pid: self.from_pid,
            duplex: self.duplex,
            stride: self.stride,
            ticket: self.ticket,
            name: self.name.clone(),
        }
    }

    /// The token's bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_inner().encode()
    }

    /// What `Connection::from_token` checks before it opens the segment.
    ///
    /// # Errors
    ///
    /// [`PipeError::Setup`] with [`QueueError::BadToken`].
    pub fn decode(b: &[u8]) -> Result<Self, PipeError> {
        let t = crate::pipe::PipeToken::decode(b)?;
        Ok(Self {
            end: t.end,
            from_pid: t.from_pid,
            duplex: t.duplex,
            stride: t.stride,
            ticket: t.ticket,
            name: t.name,
        })
    }
}

/// The stride a pipe gives each ring of `ring` bytes (`None`: no ring has
/// that size).
pub fn pipe_ring_stride(ring: u64) -> Option<usize> {
    crate::pipe::ring_stride(ring)
}

// ---------------------------------------------------------------------------
// Shared memory names
// ---------------------------------------------------------------------------

/// The longest shm name this platform takes, the leading `/` included.
pub const SHM_NAME_MAX: usize = crate::sys::SHM_NAME_MAX;

/// Validates a segment name as `SharedMemory::open` does before any system
/// call: the normalised `/name` and the bytes of its C string (without the
/// NUL).
///
/// # Errors
///
/// [`ShmError::InvalidName`].
pub fn shm_name_parse(name: &str) -> Result<(String, Vec<u8>), ShmError> {
    crate::shm::parse_name(name)
}

// ---------------------------------------------------------------------------
// Spawn and fork-server wire
// ---------------------------------------------------------------------------

/// Bytes of a frame header.
pub const WIRE_HEADER: usize = wire::HEADER;
/// Largest payload a frame may announce.
pub const WIRE_MAX_FRAME: usize = wire::MAX_FRAME;
/// Longest report message.
pub const WIRE_MAX_REPORT: usize = wire::MAX_REPORT;

/// Encodes one frame.
pub fn wire_frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    wire::frame(tag, payload)
}

/// Decodes a frame header: tag and payload length.
pub fn wire_parse_header(h: &[u8; WIRE_HEADER]) -> Option<(u8, usize)> {
    wire::parse_header(h)
}

/// Bytes of a launch challenge (`C` and `K` frames).
pub const WIRE_NONCE_LEN: usize = wire::NONCE_LEN;

/// Decodes the payload of a `C` (challenge) or `K` (proof) frame.
pub fn wire_parse_nonce(p: &[u8]) -> Option<[u8; WIRE_NONCE_LEN]> {
    wire::parse_nonce(p)
}

/// A report frame of `msg`, cut to [`WIRE_MAX_REPORT`].
pub fn wire_report(tag: u8, msg: &str) -> Vec<u8> {
    wire::report(tag, msg)
}

/// The peer sent bytes that are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadFrame;

/// The stream splitter of the spawn and fork-server sockets.
#[derive(Debug, Default)]
pub struct Frames(wire::FrameBuf);

impl Frames {
    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
    }

    /// The next complete frame, if one has arrived.
    ///
    /// # Errors
    ///
    /// [`BadFrame`] if the buffered bytes start with a bad header.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, BadFrame> {
        self.0.next_frame().map_err(|wire::BadFrame| BadFrame)
    }
}

/// A wait status in an `S` frame: `(signaled, value)`.
pub fn wire_encode_status(signaled: bool, v: i32) -> [u8; 5] {
    wire::encode_status(if signaled {
        WaitStatus::Signaled(v)
    } else {
        WaitStatus::Exited(v)
    })
}

/// Decodes an `S` frame's payload: `(signaled, value)`.
pub fn wire_decode_status(p: &[u8]) -> Option<(bool, i32)> {
    wire::decode_status(p).map(|s| match s {
        WaitStatus::Exited(v) => (false, v),
        WaitStatus::Signaled(v) => (true, v),
    })
}

/// The payload of a spawn child's `A` frame: the parent's auth key, then
/// the argument bytes.
pub fn wire_job_encode(authkey: &[u8], args: &[u8]) -> Vec<u8> {
    let mut v = wire::job_prefix(authkey);
    v.extend_from_slice(args);
    v
}

/// Decodes an `A` frame's payload as the spawn child does: `(auth key,
/// arguments)`.
pub fn wire_job_decode(p: &[u8]) -> Option<(&[u8], &[u8])> {
    wire::decode_job(p)
}

/// A fork-server request (`Q` frame payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkRequest {
    /// Daemonic child.
    pub daemon: bool,
    /// The requesting process.
    pub parent_pid: u32,
    /// Entry point name.
    pub entry: String,
    /// Process name.
    pub name: String,
    /// Identity path (at most [`FORK_REQUEST_MAX_IDENT`] decode).
    pub ident: Vec<u32>,
    /// The requesting client's auth key.
    pub authkey: Vec<u8>,
    /// Argument bytes.
    pub args: Vec<u8>,
}

/// The longest identity path a request decodes with.
pub const FORK_REQUEST_MAX_IDENT: usize = 64;

impl ForkRequest {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        wire::Request {
            daemon: self.daemon,
            parent_pid: self.parent_pid,
            entry: self.entry.clone(),
            name: self.name.clone(),
            ident: self.ident.clone(),
            authkey: self.authkey.clone(),
            args: self.args.clone(),
        }
        .encode()
    }

    /// Decodes a payload, as the fork server does.
    pub fn decode(p: &[u8]) -> Option<Self> {
        wire::Request::decode(p).map(|r| Self {
            daemon: r.daemon,
            parent_pid: r.parent_pid,
            entry: r.entry,
            name: r.name,
            ident: r.ident,
            authkey: r.authkey,
            args: r.args,
        })
    }
}

/// A spawned child's identity path from its argv.
pub fn parse_path(s: &str) -> Option<Vec<u32>> {
    spawn::parse_path(s)
}

/// The argv form of an identity path.
pub fn path_str(path: &[u32]) -> String {
    spawn::path_str(path)
}

// ---------------------------------------------------------------------------
// Sync type stamps
// ---------------------------------------------------------------------------

/// One handle over one element type: builds its first region's structure,
/// and attaches to a region with the handle's stamp check.
#[derive(Debug, Clone, Copy)]
pub struct SyncCase {
    /// The handle, as in `"Mutex<u32>"`.
    pub what: &'static str,
    /// The stamp its segment records.
    pub stamp: SegmentType,
    create: fn(Region<'_>) -> Result<(), InitError>,
    attach: fn(Region<'_>) -> Result<(), SyncError>,
}

impl SyncCase {
    /// Builds the handle's first structure in `region`, stamped.
    ///
    /// # Errors
    ///
    /// As the core `create`.
    pub fn create(&self, region: Region<'_>) -> Result<(), InitError> {
        (self.create)(region)
    }

    /// Attaches to `region` as the handle's `open` does to a segment's
    /// first region (core `attach` with the stamp, then the stamp check),
    /// without waiting for an unpublished header.
    ///
    /// # Errors
    ///
    /// [`SyncError::Attach`], [`SyncError::WrongType`].
    pub fn attach(&self, region: Region<'_>) -> Result<(), SyncError> {
        (self.attach)(region)
    }
}

macro_rules! sync_case {
    ($what:literal, $h:ident, $e:ty, |$r:ident, $tag:ident| $create:expr, $attach:path) => {
        SyncCase {
            what: $what,
            stamp: HandleKind::$h.stamp::<$e>(),
            create: |$r| {
                let $tag = HandleKind::$h.tag::<$e>();
                $create.map(drop)
            },
            attach: |r| {
                let stamp = HandleKind::$h.stamp::<$e>();
                attach_checked(r, stamp, |r| $attach(r, stamp.elem.tag, Duration::ZERO)).map(drop)
            },
        }
    };
}

/// Every handle of `sync` (generic ones over a few element types).
pub fn sync_cases() -> Vec<SyncCase> {
    vec![
        sync_case!(
            "Lock",
            Lock,
            (),
            |r, t| mutex::Mutex::create_tagged(r, (), t),
            mutex::Mutex::<()>::attach_tagged_timeout
        ),
        sync_case!(
            "Mutex<u32>",
            Mutex,
            u32,
            |r, t| mutex::Mutex::create_tagged(r, 0u32, t),
            mutex::Mutex::<u32>::attach_tagged_timeout
        ),
        sync_case!(
            "Mutex<u64>",
            Mutex,
            u64,
            |r, t| mutex::Mutex::create_tagged(r, 0u64, t),
            mutex::Mutex::<u64>::attach_tagged_timeout
        ),
        sync_case!(
            "RLock",
            RLock,
            (),
            |r, t| mutex::Mutex::create_tagged(r, (), t),
            mutex::Mutex::<()>::attach_tagged_timeout
        ),
        sync_case!(
            "Condition<u64>",
            Condition,
            u64,
            |r, t| mutex::Mutex::create_tagged(r, 0u64, t),
            mutex::Mutex::<u64>::attach_tagged_timeout
        ),
        sync_case!(
            "Semaphore",
            Semaphore,
            (),
            |r, t| semaphore::Semaphore::create_tagged(r, 1, t),
            semaphore::Semaphore::attach_tagged_timeout
        ),
        sync_case!(
            "BoundedSemaphore",
            BoundedSemaphore,
            (),
            |r, t| semaphore::Semaphore::create_bounded_tagged(r, 1, t),
            semaphore::Semaphore::attach_tagged_timeout
        ),
        sync_case!(
            "Event",
            Event,
            (),
            |r, t| event::Event::create_tagged(r, t),
            event::Event::attach_tagged_timeout
        ),
        sync_case!(
            "Barrier",
            Barrier,
            (),
            |r, t| barrier::Barrier::create_tagged(r, 2, t),
            barrier::Barrier::attach_tagged_timeout
        ),
        sync_case!(
            "Value<u64>",
            Value,
            u64,
            |r, t| value::Value::create_tagged(r, 0u64, t),
            value::Value::<u64>::attach_tagged_timeout
        ),
        sync_case!(
            "Value<u32>",
            Value,
            u32,
            |r, t| value::Value::create_tagged(r, 0u32, t),
            value::Value::<u32>::attach_tagged_timeout
        ),
        sync_case!(
            "AtomicValue<u64>",
            AtomicValue,
            u64,
            |r, t| value::AtomicValue::create_tagged(r, 0u64, t),
            value::AtomicValue::<u64>::attach_tagged_timeout
        ),
        sync_case!(
            "Array<u32>",
            Array,
            u32,
            |r, t| value::Array::create_tagged(r, 3, 0u32, t),
            value::Array::<u32>::attach_tagged_timeout
        ),
    ]
}

/// What the header of `region` records, as `WrongType` reports it.
pub fn sync_segment_type(region: Region<'_>) -> Option<SegmentType> {
    SegmentType::read(region)
}

/// The handle whose stamp `tag` is, for a region of core `kind`.
pub fn sync_handle_from_tag(tag: u64, kind: Option<Kind>) -> Option<HandleKind> {
    HandleKind::from_tag(tag, kind)
}

/// Every handle kind, and the top 16 bits of its stamps (prefix and
/// handle number) and its core structure.
pub fn sync_handle_kinds() -> Vec<(HandleKind, u64, Kind)> {
    HandleKind::ALL
        .into_iter()
        .map(|h| (h, h.tag::<()>() >> 48, h.core_kind()))
        .collect()
}

// ---------------------------------------------------------------------------
// Socket connections
// ---------------------------------------------------------------------------

/// Decodes a frame header (Python's): `Ok(Some((payload_len,
/// header_len)))`, `Ok(None)` if `b` is too short.
///
/// # Errors
///
/// [`ConnectionError::BadLength`].
pub fn conn_parse_header(b: &[u8]) -> Result<Option<(u64, usize)>, ConnectionError> {
    crate::connection::wire::parse_header(b)
}

/// One frame (header and payload) as a connection sends it.
pub fn conn_frame(payload: &[u8]) -> Vec<u8> {
    let mut t = MemTransport::default();
    let r = crate::connection::wire::write_frame(&mut t, &mut Vec::new(), payload, None);
    debug_assert!(r.is_ok());
    t.output
}

/// What a connection's reader makes of `input`: the payloads it returns,
/// in order, until the first error (the last element), reading at most
/// `chunk` bytes per read (0: any), buffering `buf_cap` bytes, with `max`
/// as each call's maximum; every other frame goes through `recv_bytes_into`
/// with a buffer of `max` bytes. A `TooLarge` is retried once with a
/// larger maximum (`2 * max`), as a caller may.
pub fn conn_read_frames(
    input: &[u8],
    chunk: usize,
    buf_cap: usize,
    max: usize,
) -> Vec<Result<Vec<u8>, ConnectionError>> {
    let mut t = MemTransport {
        input: input.to_vec(),
        chunk,
        ..Default::default()
    };
    let mut r = FrameReader::with_capacity(buf_cap);
    let mut out = Vec::new();
    let mut retried = false;
    for i in 0.. {
        let m = if retried { max.saturating_mul(2) } else { max };
        let got = if i % 2 == 0 {
            let mut v = Vec::new();
            r.read_frame(&mut t, None, m, Dest::Vec(&mut v)).map(|_| v)
        } else {
            let mut b = vec![0u8; m.min(1 << 20)];
            r.read_frame(&mut t, None, m, Dest::Slice(&mut b))
                .map(|n| b[..n].to_vec())
        };
        match got {
            Ok(v) => {
                retried = false;
                out.push(Ok(v));
            }
            Err(ConnectionError::TooLarge { .. }) if !retried => retried = true,
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    out
}

/// Runs one side of the handshake against `input` (the peer's bytes):
/// the listener's (deliver, then answer) if `listener`, else the client's
/// (answer, then deliver); the delivered challenge is legacy if `legacy`,
/// its random bytes all `fill`. Returns the outcome and what this side
/// wrote.
pub fn conn_handshake(
    input: &[u8],
    key: &[u8],
    listener: bool,
    legacy: bool,
    fill: u8,
) -> (Result<(), ConnectionError>, Vec<u8>) {
    use crate::connection::{answer_challenge, deliver_challenge};
    let mut t = MemTransport {
        input: input.to_vec(),
        ..Default::default()
    };
    let mut r = FrameReader::default();
    let kind = if legacy {
        Challenge::Legacy
    } else {
        Challenge::Sha256
    };
    let random = |b: &mut [u8]| b.fill(fill);
    let res = if listener {
        deliver_challenge(&mut t, &mut r, key, kind, random, None)
            .and_then(|()| answer_challenge(&mut t, &mut r, key, None))
    } else {
        answer_challenge(&mut t, &mut r, key, None)
            .and_then(|()| deliver_challenge(&mut t, &mut r, key, kind, random, None))
    };
    (res, t.output)
}

/// The longest frame a handshake reads.
pub const CONN_MAX_HANDSHAKE_FRAME: usize = crate::connection::MAX_HANDSHAKE_FRAME;

/// Feeds `frames` to the pool owner's handling of one worker's result
/// frames for a chunk of `count` items; see `pool::state`. Returns whether
/// all were accepted and, once the chunk finished, how many outcomes it
/// decoded (always `count`).
#[cfg(feature = "serde")]
pub fn pool_result_frames(frames: &[&[u8]], count: u32) -> (bool, Option<usize>) {
    crate::pool::fuzz::result_frames(frames, count)
}

/// Runs a worker's chunk runner over arbitrary item bytes claiming
/// `count` items (items `String`, function `len`), collecting its result
/// frames of at most `max_frame` bytes; returns the outcomes they carry.
#[cfg(feature = "serde")]
pub fn pool_run_items(input: &[u8], count: u32, max_frame: usize) -> usize {
    crate::pool::fuzz::run_items(input, count, max_frame)
}

/// Decodes `bytes` as each of the pool's small control messages (a
/// spawned worker's arguments, a zygote report); returns how many parsed,
/// after checking that each re-encodes to the same bytes.
#[cfg(feature = "serde")]
pub fn pool_messages(bytes: &[u8]) -> usize {
    crate::pool::fuzz::messages(bytes)
}

// ---------------------------------------------------------------------------
// MPI pool messages
// ---------------------------------------------------------------------------

/// Splits a TASK message into its chunks as a rank does: for each chunk
/// that parses, its header and items encoded again (which must be the
/// bytes it took), until the message ends (`true`) or a chunk does not
/// parse (`false`).
pub fn mpi_task_chunks(msg: &[u8]) -> (Vec<(Vec<u8>, usize)>, bool) {
    use crate::mpi_wire::TaskHead;
    let mut out = Vec::new();
    let mut rest = msg;
    while !rest.is_empty() {
        match TaskHead::read(rest) {
            Ok((head, items, next)) => {
                let mut enc = Vec::new();
                head.write(&mut enc);
                enc.extend_from_slice(items);
                out.push((enc, rest.len() - next.len()));
                rest = next;
            }
            Err(_) => return (out, false),
        }
    }
    (out, true)
}

/// Reads a RESULT message as the master does: per chunk its header, then
/// its outcomes; the outcome count of each chunk read whole, and whether
/// the message ended cleanly (`true`) or at an error (`false`).
pub fn mpi_result_chunks(msg: &[u8]) -> (Vec<usize>, bool) {
    use crate::mpi_wire::{read_outcomes, ResultHead};
    let mut out = Vec::new();
    let mut rest = msg;
    while !rest.is_empty() {
        let Ok((head, body)) = ResultHead::read(rest) else {
            return (out, false);
        };
        match read_outcomes(body, head.count) {
            Ok((outcomes, next)) => {
                out.push(outcomes.len());
                rest = next;
            }
            Err(_) => return (out, false),
        }
    }
    (out, true)
}

/// Decodes a HELLO message and encodes it again (`None` if it does not
/// parse). The text is read lossily, so only a message whose text is UTF-8
/// comes back byte for byte.
pub fn mpi_hello(msg: &[u8]) -> Option<Vec<u8>> {
    let h = crate::mpi_wire::Hello::decode(msg).ok()?;
    Some(h.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_mpmc_is_the_queues() {
        let (tx, rx) = crate::queue::Queue::<u64>::new(4)
            .unique_name()
            .channel()
            .unwrap();
        let tok = tx.to_token().unwrap();
        let t = mpmc_token_parse::<u64>(&tok, Side::Sender).unwrap();
        assert_eq!(t.kind, KIND_MPMC);
        // Claim it, so the pending count goes.
        drop(crate::queue::Sender::<u64>::from_token(&tok).unwrap());
        drop((tx, rx));
    }

    #[repr(C, align(128))]
    struct Line([u8; 128]);

    #[test]
    fn each_sync_case_attaches_as_itself_and_no_other() {
        let cases = sync_cases();
        for made in &cases {
            let mut lines: Vec<Line> = (0..16).map(|_| Line([0; 128])).collect();
            // SAFETY: the lines are plain bytes, contiguous, 128-aligned.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), lines.len() * 128)
            };
            let r = Region::from_mut_slice(bytes);
            made.create(r).unwrap();
            assert_eq!(sync_segment_type(r), Some(made.stamp), "{}", made.what);
            for opener in &cases {
                match opener.attach(r) {
                    Ok(()) => assert_eq!(made.what, opener.what),
                    Err(SyncError::WrongType { expected, found }) => {
                        assert_ne!(made.what, opener.what);
                        assert_eq!((expected, found), (opener.stamp, made.stamp));
                    }
                    Err(e) => panic!("{} as {}: {e}", made.what, opener.what),
                }
            }
        }
        for (h, prefix, kind) in sync_handle_kinds() {
            assert_eq!(sync_handle_from_tag(prefix << 48, Some(kind)), Some(h));
            assert_eq!(sync_handle_from_tag(prefix << 48, None), None);
        }
    }
}
