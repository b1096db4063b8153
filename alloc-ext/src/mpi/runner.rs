//! How a chunk runs on a worker rank: a *rank runner*, monomorphized on
//! the master for the job's types, named on the wire by its offset from the
//! local pool's anchor function (every rank runs the same executable, so
//! the same offset names the same code there: see `pool::func`).
//!
//! A rank runner runs a chunk's first items in the rank itself (as long as
//! its time budget lasts), appending their outcomes to the RESULT message,
//! or finds where each item ends, so that the rank can cut the rest of the
//! chunk for its local pool without decoding it. The local pool runs those
//! with the pool's own runner of the same types (`pool::func::run_map`,
//! named in the TASK too), its workers decoding the items.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{push_err, push_ok};
use crate::pool::func::{self, address_at, Runner};
use crate::pool::TaskError;

/// What a rank runner does with a chunk's items.
#[derive(Debug)]
pub(crate) enum Op<'a> {
    /// Runs items in this process, appending their outcomes to `out`, until
    /// `deadline` has passed (checked after each item; `None`: all).
    Run {
        out: &'a mut Vec<u8>,
        deadline: Option<Instant>,
    },
    /// Pushes the end offset of each item that decodes to `ends`.
    Ends { ends: &'a mut Vec<usize> },
}

/// The type of every rank runner: `(user fn offset, items, count, op)` →
/// (items handled, bytes of the input they took). After an item that does
/// not decode, `Run` fails every item left (`Codec`: they cannot be found)
/// and `Ends` stops.
pub(crate) type RankRunner = fn(u64, &[u8], u32, Op<'_>) -> (u32, usize);

/// The two runners of a job's types: the rank's and its local pool's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Runners {
    pub(crate) rank: RankRunner,
    pub(crate) local: Runner,
}

impl Runners {
    /// For `map`: items `T`, function `fn(T) -> R`.
    pub(crate) fn map<T, R>() -> Self
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Self {
            rank: rank_map::<T, R>,
            local: func::run_map::<T, R>,
        }
    }

    /// For `starmap` over pairs: `fn(A, B) -> R`.
    pub(crate) fn star2<A, B, R>() -> Self
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Self {
            rank: rank_star2::<A, B, R>,
            local: func::run_star2::<A, B, R>,
        }
    }

    /// For `starmap3` over triples: `fn(A, B, C) -> R`.
    pub(crate) fn star3<A, B, C, R>() -> Self
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Self {
            rank: rank_star3::<A, B, C, R>,
            local: func::run_star3::<A, B, C, R>,
        }
    }
}

/// Does `op` over the items with `f`.
fn run<T, R, F>(input: &[u8], count: u32, op: Op<'_>, mut f: F) -> (u32, usize)
where
    T: DeserializeOwned,
    R: Serialize,
    F: FnMut(T) -> R,
{
    let mut rest = input;
    let used = |rest: &[u8]| input.len() - rest.len();
    match op {
        Op::Ends { ends } => {
            for k in 0..count {
                match postcard::take_from_bytes::<T>(rest) {
                    Ok((_, r)) => {
                        rest = r;
                        ends.push(used(rest));
                    }
                    Err(_) => return (k, used(rest)),
                }
            }
            (count, used(rest))
        }
        Op::Run { out, deadline } => {
            let mut scratch = Vec::new();
            for k in 0..count {
                let item = match postcard::take_from_bytes::<T>(rest) {
                    Ok((item, r)) => {
                        rest = r;
                        item
                    }
                    Err(e) => {
                        let e = TaskError::Codec(format!("cannot decode the item: {e}"));
                        for _ in k..count {
                            push_err(out, &e);
                        }
                        return (count, input.len());
                    }
                };
                match catch_unwind(AssertUnwindSafe(|| f(item))) {
                    Ok(v) => {
                        scratch.clear();
                        match postcard::to_extend(&v, std::mem::take(&mut scratch)) {
                            Ok(bytes) => {
                                push_ok(out, &bytes);
                                scratch = bytes;
                            }
                            Err(e) => push_err(
                                out,
                                &TaskError::Codec(format!("cannot encode the result: {e}")),
                            ),
                        }
                    }
                    Err(payload) => {
                        let msg = func::take_panic_message()
                            .unwrap_or_else(|| crate::process::panic_message(&*payload));
                        // Dropping the payload could panic again.
                        std::mem::forget(payload);
                        push_err(out, &TaskError::Panicked(msg));
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return (k + 1, used(rest));
                }
            }
            (count, used(rest))
        }
    }
}

/// The rank runner of `map`: items `T`, function `fn(T) -> R`.
pub(crate) fn rank_map<T, R>(func: u64, input: &[u8], count: u32, op: Op<'_>) -> (u32, usize)
where
    T: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    // SAFETY: the master sent `func` = the offset of an `fn(T) -> R`
    // together with the offset of this very instance `rank_map::<T, R>`
    // (both taken in `mpi::Pool` from values of those types); every rank
    // runs the same executable (checked at start by the fingerprint in
    // HELLO), so the offset names the same function here; a fn pointer and
    // a usize have the same size.
    let f: fn(T) -> R = unsafe { std::mem::transmute::<usize, fn(T) -> R>(address_at(func)) };
    run(input, count, op, f)
}

/// The rank runner of `starmap` over pairs: `fn(A, B) -> R`.
pub(crate) fn rank_star2<A, B, R>(func: u64, input: &[u8], count: u32, op: Op<'_>) -> (u32, usize)
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    // SAFETY: as in `rank_map`, for `fn(A, B) -> R`.
    let f: fn(A, B) -> R = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(address_at(func)) };
    run(input, count, op, |(a, b)| f(a, b))
}

/// The rank runner of `starmap3` over triples: `fn(A, B, C) -> R`.
pub(crate) fn rank_star3<A, B, C, R>(
    func: u64,
    input: &[u8],
    count: u32,
    op: Op<'_>,
) -> (u32, usize)
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
    C: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    // SAFETY: as in `rank_map`, for `fn(A, B, C) -> R`.
    let f: fn(A, B, C) -> R =
        unsafe { std::mem::transmute::<usize, fn(A, B, C) -> R>(address_at(func)) };
    run(input, count, op, |(a, b, c)| f(a, b, c))
}

/// Identifies the executable this process runs: its size and a hash of
/// its first and last 64 KiB, with the offset of a function of the pool.
/// Ranks that send another fingerprint than the master's run another
/// program (an MPMD launch, or another build at the same path), in which
/// the master's function offsets would name other code: the pool refuses
/// them.
pub(crate) fn fingerprint() -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
    };
    let marker = func::offset_of(rank_map::<u64, u64> as RankRunner as usize);
    eat(&marker.to_le_bytes());
    if let Ok(mut f) = std::fs::File::open("/proc/self/exe") {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        eat(&len.to_le_bytes());
        let mut buf = vec![0u8; 64 << 10];
        if let Ok(n) = f.read(&mut buf) {
            eat(&buf[..n]);
        }
        if f.seek(SeekFrom::End(-(len.min(64 << 10) as i64))).is_ok() {
            if let Ok(n) = f.read(&mut buf) {
                eat(&buf[..n]);
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpi::wire::read_outcomes;
    use crate::pool::func::offset_of;

    fn add(a: u32, b: u32) -> u32 {
        if a == 13 {
            panic!("unlucky");
        }
        a + b
    }

    #[test]
    fn inline_runner_through_offsets() {
        let runner: RankRunner = Runners::star2::<u32, u32, u32>().rank;
        // SAFETY: the offset was just taken from a `RankRunner`.
        let again: RankRunner = unsafe {
            std::mem::transmute::<usize, RankRunner>(address_at(offset_of(runner as usize)))
        };
        let mut input = Vec::new();
        for p in [(1u32, 2u32), (13, 0), (40, 2)] {
            input = postcard::to_extend(&p, input).unwrap();
        }
        let good = input.len();
        // A fourth item that does not decode.
        input.extend_from_slice(&[0xff; 6]);
        let mut out = Vec::new();
        let func = offset_of(add as fn(u32, u32) -> u32 as usize);
        let run = Op::Run {
            out: &mut out,
            deadline: None,
        };
        assert_eq!(again(func, &input, 4, run), (4, input.len()));
        let (got, _) = read_outcomes(&out, 4).unwrap();
        assert_eq!(got[0], Ok(postcard::to_allocvec(&3u32).unwrap()));
        assert!(matches!(&got[1], Err(TaskError::Panicked(m)) if m.contains("unlucky")));
        assert_eq!(got[2], Ok(postcard::to_allocvec(&42u32).unwrap()));
        assert!(matches!(&got[3], Err(TaskError::Codec(_))));
        // A deadline already past: one item, then the rank stops.
        let mut out = Vec::new();
        let run = Op::Run {
            out: &mut out,
            deadline: Some(Instant::now()),
        };
        assert_eq!(again(func, &input, 4, run), (1, 2));
        assert_eq!(read_outcomes(&out, 1).unwrap().0.len(), 1);
        // The item ends, up to the one that does not decode.
        let mut ends = Vec::new();
        let (n, used) = again(func, &input, 4, Op::Ends { ends: &mut ends });
        assert_eq!((n, used), (3, good));
        assert_eq!(ends, vec![2, 4, good]);
        assert_eq!(fingerprint(), fingerprint());
    }
}
