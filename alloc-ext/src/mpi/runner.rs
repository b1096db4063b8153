//! How a chunk runs on a worker rank: a *rank runner*, monomorphized on
//! the master for the job's types, named on the wire by its offset from the
//! local pool's anchor function (every rank runs the same executable, so
//! the same offset names the same code there: see `pool::func`).
//!
//! A rank runner decodes the chunk's items, runs them (on the rank's local
//! [`Pool`], or in the rank itself when it has none) and appends one
//! outcome per item to the RESULT message.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{push_err, push_ok};
use crate::pool::func::address_at;
use crate::pool::{Pool, TaskError};

/// Where a rank runs a chunk's items.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exec<'a> {
    /// On this node's shared-memory pool.
    Local(&'a Pool),
    /// In the rank process itself (no local pool).
    Inline,
}

/// The type of every rank runner: `(exec, user fn offset, items, count,
/// outcomes out)`. `Err` means the local pool as a whole cannot run work
/// any more (its message); the items' own failures are outcomes.
pub(crate) type RankRunner = fn(Exec<'_>, u64, &[u8], u32, &mut Vec<u8>) -> Result<(), String>;

/// Decodes up to `count` items; the error, if one did not decode (the
/// items after it cannot be found either).
fn decode<T: DeserializeOwned>(mut input: &[u8], count: u32) -> (Vec<T>, Option<String>) {
    let mut items = Vec::with_capacity(count as usize);
    for _ in 0..count {
        match postcard::take_from_bytes::<T>(input) {
            Ok((item, rest)) => {
                items.push(item);
                input = rest;
            }
            Err(e) => return (items, Some(format!("cannot decode the item: {e}"))),
        }
    }
    (items, None)
}

/// Runs `f` over the items in `exec`, appending their outcomes.
fn run<T, R, F>(
    exec: Exec<'_>,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
    local: impl FnOnce(&Pool, Vec<T>) -> Result<Vec<Result<R, TaskError>>, crate::pool::PoolError>,
    mut f: F,
) -> Result<(), String>
where
    T: DeserializeOwned,
    R: Serialize,
    F: FnMut(T) -> R,
{
    let (items, bad) = decode::<T>(input, count);
    let decoded = items.len();
    let mut scratch = Vec::new();
    let mut put = |out: &mut Vec<u8>, r: Result<R, TaskError>| match r {
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
        Err(e) => push_err(out, &e),
    };
    match exec {
        Exec::Local(pool) => {
            let results = local(pool, items).map_err(|e| e.to_string())?;
            for r in results {
                put(out, r);
            }
        }
        Exec::Inline => {
            for item in items {
                let r = catch_unwind(AssertUnwindSafe(|| f(item))).map_err(|payload| {
                    let msg = crate::pool::func::take_panic_message()
                        .unwrap_or_else(|| crate::process::panic_message(&*payload));
                    // Dropping the payload could panic again.
                    std::mem::forget(payload);
                    TaskError::Panicked(msg)
                });
                put(out, r);
            }
        }
    }
    if let Some(msg) = bad {
        for _ in decoded..count as usize {
            push_err(out, &TaskError::Codec(msg.clone()));
        }
    }
    Ok(())
}

/// The rank runner of `map`: items `T`, function `fn(T) -> R`.
pub(crate) fn rank_map<T, R>(
    exec: Exec<'_>,
    func: u64,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
) -> Result<(), String>
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
    run(
        exec,
        input,
        count,
        out,
        |pool, items| pool.map_results(f, items),
        f,
    )
}

/// Calls the `fn(A, B) -> R` at offset `off` (the item of a local pool's
/// `map` standing for one `starmap` pair).
fn star2_shim<A, B, R>((off, a, b): (u64, A, B)) -> R {
    // SAFETY: `rank_star2::<A, B, R>` made this item with the offset it got
    // for an `fn(A, B) -> R` (see there); the local workers run the same
    // executable.
    let f: fn(A, B) -> R = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(address_at(off)) };
    f(a, b)
}

/// Calls the `fn(A, B, C) -> R` at offset `off`.
fn star3_shim<A, B, C, R>((off, a, b, c): (u64, A, B, C)) -> R {
    // SAFETY: as in `star2_shim`, for `fn(A, B, C) -> R`.
    let f: fn(A, B, C) -> R =
        unsafe { std::mem::transmute::<usize, fn(A, B, C) -> R>(address_at(off)) };
    f(a, b, c)
}

/// The rank runner of `starmap` over pairs: `fn(A, B) -> R`.
pub(crate) fn rank_star2<A, B, R>(
    exec: Exec<'_>,
    func: u64,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
) -> Result<(), String>
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    // SAFETY: as in `rank_map`, for `fn(A, B) -> R`.
    let f: fn(A, B) -> R = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(address_at(func)) };
    run(
        exec,
        input,
        count,
        out,
        |pool, items: Vec<(A, B)>| {
            let items = items.into_iter().map(|(a, b)| (func, a, b));
            pool.map_results(star2_shim::<A, B, R>, items)
        },
        |(a, b)| f(a, b),
    )
}

/// The rank runner of `starmap3` over triples: `fn(A, B, C) -> R`.
pub(crate) fn rank_star3<A, B, C, R>(
    exec: Exec<'_>,
    func: u64,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
) -> Result<(), String>
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
    C: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    // SAFETY: as in `rank_map`, for `fn(A, B, C) -> R`.
    let f: fn(A, B, C) -> R =
        unsafe { std::mem::transmute::<usize, fn(A, B, C) -> R>(address_at(func)) };
    run(
        exec,
        input,
        count,
        out,
        |pool, items: Vec<(A, B, C)>| {
            let items = items.into_iter().map(|(a, b, c)| (func, a, b, c));
            pool.map_results(star3_shim::<A, B, C, R>, items)
        },
        |(a, b, c)| f(a, b, c),
    )
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
    let marker = crate::pool::func::offset_of(rank_map::<u64, u64> as RankRunner as usize);
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
        let runner: RankRunner = rank_star2::<u32, u32, u32>;
        // SAFETY: the offset was just taken from a `RankRunner`.
        let again: RankRunner = unsafe {
            std::mem::transmute::<usize, RankRunner>(address_at(offset_of(runner as usize)))
        };
        let mut input = Vec::new();
        for p in [(1u32, 2u32), (13, 0), (40, 2)] {
            input = postcard::to_extend(&p, input).unwrap();
        }
        // A fourth item that does not decode.
        input.extend_from_slice(&[0xff; 6]);
        let mut out = Vec::new();
        let func = offset_of(add as fn(u32, u32) -> u32 as usize);
        again(Exec::Inline, func, &input, 4, &mut out).unwrap();
        let got = read_outcomes(&out, 4).unwrap();
        assert_eq!(got[0], Ok(postcard::to_allocvec(&3u32).unwrap()));
        assert!(matches!(&got[1], Err(TaskError::Panicked(m)) if m.contains("unlucky")));
        assert_eq!(got[2], Ok(postcard::to_allocvec(&42u32).unwrap()));
        assert!(matches!(&got[3], Err(TaskError::Codec(_))));
        assert_eq!(fingerprint(), fingerprint());
    }
}
