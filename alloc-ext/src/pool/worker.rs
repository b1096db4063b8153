//! A worker's life: claim its two rings, run the initializer, then read a
//! chunk, count it in its row, run it, send its outcomes; until the owner
//! closes the task ring, dies, or `maxtasksperchild` is reached.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use multiproc_core::bytering::{RecvError, SendError};
use multiproc_core::claim_gate::Claim;
use multiproc_core::identity::Identity;

use super::func::{self, address_at, Runner, Sink};
use super::layout::{holding_word, read_head, Dir, PoolMem, TaskHead};

/// Exit codes of a worker that stopped on its own.
pub(crate) mod exit {
    /// The owner closed the pool, or `maxtasksperchild` was reached.
    pub(crate) const DONE: i32 = 0;
    /// A task frame or a ring was malformed.
    pub(crate) const CORRUPT: i32 = 70;
    /// The initializer panicked.
    pub(crate) const INIT_PANICKED: i32 = 71;
    /// The pool's segment or rings could not be attached.
    pub(crate) const ATTACH: i32 = 72;
}

/// What a worker is told at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerSpec {
    /// Its row and ring pair.
    pub(crate) index: u32,
    /// Offset of the initializer `fn()`, if any (see [`func`]).
    pub(crate) initializer: Option<u64>,
    /// Chunks to run before leaving (0: no limit).
    pub(crate) max_tasks: u64,
}

impl WorkerSpec {
    const LEN: usize = 4 + 1 + 8 + 8;

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_le_bytes());
        out.push(u8::from(self.initializer.is_some()));
        out.extend_from_slice(&self.initializer.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.max_tasks.to_le_bytes());
    }

    pub(crate) fn decode(b: &[u8]) -> Option<(Self, &[u8])> {
        if b.len() < Self::LEN {
            return None;
        }
        let index = u32::from_le_bytes(b[0..4].try_into().ok()?);
        let has_init = match b[4] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let init = u64::from_le_bytes(b[5..13].try_into().ok()?);
        if !has_init && init != 0 {
            return None;
        }
        let max_tasks = u64::from_le_bytes(b[13..21].try_into().ok()?);
        Some((
            Self {
                index,
                initializer: has_init.then_some(init),
                max_tasks,
            },
            &b[Self::LEN..],
        ))
    }
}

/// Runs the worker; returns its exit code.
pub(crate) fn worker_main(mem: &PoolMem, spec: WorkerSpec) -> i32 {
    let w = spec.index as usize;
    if w >= mem.geometry().workers {
        return exit::ATTACH;
    }
    func::capture_panics();
    let row = mem.row(w);
    row.identity
        .store(Identity::current().to_word(), Ordering::Relaxed);
    let (Ok(task_ring), Ok(result_ring)) = (mem.ring(w, Dir::Task), mem.ring(w, Dir::Result))
    else {
        return exit::ATTACH;
    };
    let (Ok(mut rx), Ok(mut tx)) = (task_ring.receiver(), result_ring.sender()) else {
        return exit::ATTACH;
    };
    if let Some(init) = spec.initializer {
        // SAFETY: the owner took this offset from an `fn()` of this
        // executable (see `func`).
        let f: fn() = unsafe { std::mem::transmute::<usize, fn()>(address_at(init)) };
        if catch_unwind(f).is_err() {
            return exit::INIT_PANICKED;
        }
    }
    let doorbell = &mem.control().doorbell.0;
    let max_frame = mem.geometry().max_frame as usize;
    let mut buf = Vec::new();
    let mut done = 0u64;
    let owner_gone = Cell::new(false);
    loop {
        if spec.max_tasks != 0 && done >= spec.max_tasks {
            return exit::DONE;
        }
        let frame = match rx.read() {
            Ok(f) => f,
            Err(RecvError::Disconnected) => return exit::DONE,
            Err(_) => return exit::CORRUPT,
        };
        let Some((head, items)) = read_head::<TaskHead>(&frame) else {
            return exit::CORRUPT;
        };
        // Claimed before the function runs, so an unclaimed chunk never
        // ran; a chunk the owner took back is skipped.
        if row.gate.claim() == Claim::Skip {
            continue;
        }
        row.holding
            .store(holding_word(head.job, head.chunk), Ordering::Relaxed);
        // SAFETY: the owner wrote `runner` as the offset of a `Runner` of
        // this executable (see `func`).
        let runner: Runner =
            unsafe { std::mem::transmute::<usize, Runner>(address_at(head.runner)) };
        let mut flush = |f: &[u8]| {
            if owner_gone.get() {
                return;
            }
            match tx.send(f) {
                Ok(()) => doorbell.notify_all(),
                Err(SendError::Disconnected) => owner_gone.set(true),
                // A frame is never above max_frame (the sink splits them);
                // treat anything else as the owner gone.
                Err(_) => owner_gone.set(true),
            }
        };
        let mut sink = Sink::new(head.job, head.chunk, max_frame, buf, &mut flush);
        let began = std::time::Instant::now();
        let run = catch_unwind(AssertUnwindSafe(|| {
            runner(head.func, items, head.count, &mut sink)
        }));
        if run.is_err() {
            // Only encoding code runs outside the per-item guard; a panic
            // there leaves the chunk's outcomes incomplete: leave, and the
            // owner reports the chunk's remaining items lost.
            return exit::CORRUPT;
        }
        buf = sink.finish(began.elapsed());
        drop(frame);
        if owner_gone.get() {
            return exit::DONE;
        }
        done += 1;
    }
}

/// The name of the entry point spawned workers run.
pub(crate) const ENTRY: &str = "multiproc.pool.worker";

/// Registers [`ENTRY`] (from `multiproc::init`).
pub(crate) fn register_entry() {
    let _ = crate::process::register_entry(ENTRY, spawned_main);
}

/// Arguments of a spawned worker: its spec, then the segment's name.
pub(crate) fn spawn_args(spec: WorkerSpec, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(WorkerSpec::LEN + name.len());
    spec.encode(&mut out);
    out.extend_from_slice(name.as_bytes());
    out
}

fn spawned_main(args: &[u8]) -> i32 {
    let Some((spec, name)) = WorkerSpec::decode(args) else {
        return exit::ATTACH;
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return exit::ATTACH;
    };
    let Ok(mem) = PoolMem::open(name) else {
        return exit::ATTACH;
    };
    worker_main(&mem, spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip_and_rejects() {
        let s = WorkerSpec {
            index: 7,
            initializer: Some(0x1234),
            max_tasks: 9,
        };
        let b = spawn_args(s, "/mp-x");
        let (d, rest) = WorkerSpec::decode(&b).unwrap();
        assert_eq!(d, s);
        assert_eq!(rest, b"/mp-x");
        assert!(WorkerSpec::decode(&b[..5]).is_none());
        let mut bad = b.clone();
        bad[4] = 2;
        assert!(WorkerSpec::decode(&bad).is_none());
    }
}
