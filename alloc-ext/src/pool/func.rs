//! How a task's function reaches a worker: as an offset from an anchor
//! function of this binary, and a runner monomorphized for its types.
//!
//! A closure cannot cross a process boundary, but a plain `fn` can, as an
//! address: under `fork` it is the same in the worker, and a spawned
//! worker runs the same executable (its launch proves it), mapped at
//! another base address but with the same layout, so the *offset* of a
//! function from any other function of the binary is the same. Each task
//! frame carries two offsets from [`anchor`]: the user's `fn(T) -> R`, and
//! `run::<T, R>`, which decodes the items, calls the function under
//! `catch_unwind`, and encodes the outcomes. Only a function of the main
//! executable has a stable offset (a function in a shared library loaded
//! at another address does not); the pool checks that with `dladdr` for
//! the start methods that re-execute ([`same_object_as_anchor`]).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::layout::{tag, ResultHead, OUTCOME_HEAD, RESULT_HEAD};

/// The function every offset is taken from.
#[inline(never)]
fn anchor() {
    std::hint::black_box(());
}

fn anchor_addr() -> usize {
    anchor as fn() as usize
}

/// The offset of the function at `addr` from the anchor.
pub(crate) fn offset_of(addr: usize) -> u64 {
    addr.wrapping_sub(anchor_addr()) as u64
}

/// The address at `offset` from the anchor, in this process.
pub(crate) fn address_at(offset: u64) -> usize {
    anchor_addr().wrapping_add(offset as usize)
}

/// Whether the code at `addr` belongs to the same loaded object (the main
/// executable) as the anchor, so that its offset names it in a re-executed
/// copy of the program too.
pub(crate) fn same_object_as_anchor(addr: usize) -> bool {
    fn base_of(addr: usize) -> Option<usize> {
        // SAFETY: an all-zero Dl_info is a valid out-parameter.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads its address argument and fills `info`.
        let r = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
        (r != 0).then_some(info.dli_fbase as usize)
    }
    matches!((base_of(addr), base_of(anchor_addr())), (Some(a), Some(b)) if a == b)
}

/// The type of every runner: `(user fn offset, items, item count, sink)`.
pub(crate) type Runner = fn(u64, &[u8], u32, &mut Sink<'_>);

/// Runs a chunk of `map`: items `T`, function `fn(T) -> R`.
pub(crate) fn run_map<T: DeserializeOwned, R: Serialize>(
    func: u64,
    input: &[u8],
    count: u32,
    sink: &mut Sink<'_>,
) {
    let addr = address_at(func);
    // SAFETY: the owner wrote this frame with `func` = the offset of an
    // `fn(T) -> R` and `runner` = the offset of this very instance
    // `run_map::<T, R>` (both taken in `Pool` from values of those types),
    // in the same executable (fork: same address space; spawn: checked by
    // the launch and by `same_object_as_anchor`); a fn pointer and a usize
    // have the same size.
    let f: fn(T) -> R = unsafe { std::mem::transmute::<usize, fn(T) -> R>(addr) };
    run_items(input, count, sink, |item: T| f(item));
}

/// Runs a chunk of `starmap` over pairs: `fn(A, B) -> R`.
pub(crate) fn run_star2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    func: u64,
    input: &[u8],
    count: u32,
    sink: &mut Sink<'_>,
) {
    let addr = address_at(func);
    // SAFETY: as in `run_map`, for `fn(A, B) -> R`.
    let f: fn(A, B) -> R = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(addr) };
    run_items(input, count, sink, |(a, b): (A, B)| f(a, b));
}

/// Runs a chunk of `starmap` over triples: `fn(A, B, C) -> R`.
pub(crate) fn run_star3<
    A: DeserializeOwned,
    B: DeserializeOwned,
    C: DeserializeOwned,
    R: Serialize,
>(
    func: u64,
    input: &[u8],
    count: u32,
    sink: &mut Sink<'_>,
) {
    let addr = address_at(func);
    // SAFETY: as in `run_map`, for `fn(A, B, C) -> R`.
    let f: fn(A, B, C) -> R = unsafe { std::mem::transmute::<usize, fn(A, B, C) -> R>(addr) };
    run_items(input, count, sink, |(a, b, c): (A, B, C)| f(a, b, c));
}

fn run_items<T: DeserializeOwned, R: Serialize>(
    mut input: &[u8],
    count: u32,
    sink: &mut Sink<'_>,
    mut f: impl FnMut(T) -> R,
) {
    for _ in 0..count {
        match postcard::take_from_bytes::<T>(input) {
            Ok((item, rest)) => {
                input = rest;
                match catch_unwind(AssertUnwindSafe(|| f(item))) {
                    Ok(r) => sink.ok(&r),
                    Err(payload) => {
                        let msg = take_panic_message()
                            .unwrap_or_else(|| crate::process::panic_message(&*payload));
                        // Dropping the payload could panic again.
                        std::mem::forget(payload);
                        sink.other(tag::PANICKED, msg.as_bytes());
                    }
                }
            }
            Err(e) => {
                // The rest of the chunk cannot be found either.
                let msg = format!("cannot decode the item: {e}");
                sink.other(tag::CODEC, msg.as_bytes());
                input = &[];
            }
        }
    }
}

thread_local! {
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, in a worker, a panic hook that keeps the message (with its
/// location) for the task's outcome instead of printing it: the owner
/// reports it as [`TaskError::Panicked`](super::TaskError::Panicked).
pub(crate) fn capture_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(msg));
    }));
}

pub(crate) fn take_panic_message() -> Option<String> {
    PANIC_MESSAGE.with(|m| m.borrow_mut().take())
}

/// Where a runner puts outcomes: frames of at most `max_frame` bytes,
/// handed to `flush` as they fill.
pub(crate) struct Sink<'f> {
    head: ResultHead,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    max_frame: usize,
    flush: &'f mut dyn FnMut(&[u8]),
}

impl<'f> Sink<'f> {
    pub(crate) fn new(
        job: u64,
        chunk: u64,
        max_frame: usize,
        mut buf: Vec<u8>,
        flush: &'f mut dyn FnMut(&[u8]),
    ) -> Self {
        buf.clear();
        buf.resize(RESULT_HEAD, 0);
        Self {
            head: ResultHead {
                job,
                chunk,
                first: 0,
                count: 0,
                last: 0,
                run_ns: 0,
            },
            buf,
            scratch: Vec::new(),
            max_frame,
            flush,
        }
    }

    /// The largest outcome body a frame carries.
    pub(crate) fn max_body(&self) -> usize {
        self.max_frame - RESULT_HEAD - OUTCOME_HEAD
    }

    fn ok<R: Serialize>(&mut self, r: &R) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        match postcard::to_extend(r, scratch) {
            Ok(bytes) => {
                if bytes.len() > self.max_body() {
                    let len = (bytes.len() as u64).to_le_bytes();
                    self.other(tag::TOO_LARGE, &len);
                } else {
                    self.push(tag::OK, &bytes);
                }
                self.scratch = bytes;
            }
            Err(e) => {
                let msg = format!("cannot encode the result: {e}");
                self.other(tag::CODEC, msg.as_bytes());
            }
        }
    }

    fn other(&mut self, t: u8, bytes: &[u8]) {
        let max = self.max_body();
        self.push(t, &bytes[..bytes.len().min(max)]);
    }

    fn push(&mut self, t: u8, bytes: &[u8]) {
        if self.buf.len() + OUTCOME_HEAD + bytes.len() > self.max_frame {
            self.emit(false);
        }
        self.buf.push(t);
        self.buf
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(bytes);
        self.head.count += 1;
    }

    fn emit(&mut self, last: bool) {
        self.head.last = u32::from(last);
        self.buf[..RESULT_HEAD].copy_from_slice(bytemuck::bytes_of(&self.head));
        (self.flush)(&self.buf);
        self.head.first += self.head.count;
        self.head.count = 0;
        self.buf.truncate(RESULT_HEAD);
    }

    /// Sends the last frame, with the chunk's run time; gives the buffer
    /// back for the next chunk.
    pub(crate) fn finish(mut self, run: std::time::Duration) -> Vec<u8> {
        self.head.run_ns = u32::try_from(run.as_nanos()).unwrap_or(u32::MAX);
        self.emit(true);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::{next_outcome, read_head};
    use super::*;

    fn double(x: u32) -> u64 {
        u64::from(x) * 2
    }

    fn collect(frames: &[Vec<u8>]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        for f in frames {
            let (h, mut body) = read_head::<ResultHead>(f).unwrap();
            assert_eq!(h.first as usize, out.len());
            for _ in 0..h.count {
                let (o, rest) = next_outcome(body).unwrap();
                out.push((o.tag, o.bytes.to_vec()));
                body = rest;
            }
            assert!(body.is_empty());
        }
        out
    }

    #[test]
    fn runner_round_trip_through_offsets() {
        let func = offset_of(double as fn(u32) -> u64 as usize);
        let runner: Runner = run_map::<u32, u64>;
        let runner_off = offset_of(runner as usize);
        // SAFETY: the offset was just taken from a `Runner`.
        let again: Runner = unsafe { std::mem::transmute::<usize, Runner>(address_at(runner_off)) };
        let mut input = Vec::new();
        for i in 0..10u32 {
            input = postcard::to_extend(&i, input).unwrap();
        }
        let mut frames = Vec::new();
        let mut flush = |f: &[u8]| frames.push(f.to_vec());
        let mut sink = Sink::new(1, 2, 64, Vec::new(), &mut flush);
        again(func, &input, 10, &mut sink);
        sink.finish(std::time::Duration::ZERO);
        assert!(frames.len() > 1, "64-byte frames split the results");
        let out = collect(&frames);
        assert_eq!(out.len(), 10);
        for (i, (t, b)) in out.iter().enumerate() {
            assert_eq!(*t, tag::OK);
            assert_eq!(postcard::from_bytes::<u64>(b).unwrap(), i as u64 * 2);
        }
        assert!(same_object_as_anchor(double as fn(u32) -> u64 as usize));
    }

    #[test]
    fn bad_input_is_a_codec_outcome_per_item() {
        let func = offset_of(double as fn(u32) -> u64 as usize);
        let mut frames = Vec::new();
        let mut flush = |f: &[u8]| frames.push(f.to_vec());
        let mut sink = Sink::new(0, 0, 4096, Vec::new(), &mut flush);
        run_map::<u32, u64>(func, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 3, &mut sink);
        sink.finish(std::time::Duration::ZERO);
        let out = collect(&frames);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(t, _)| *t == tag::CODEC));
    }
}
