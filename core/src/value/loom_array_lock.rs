//! loom models of the `Array` lock path: its guard, element operations and
//! poison, over the array's `RawMutex`. Threads stand for processes,
//! `sync::loom_die` for a `kill -9`. Run with
//! `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p multiproc-core --release --lib loom_array_lock`.
//!
//! The elements are plain memory, not loom cells (a guard hands out one
//! `&mut [T]`, which loom's cells cannot form), so loom cannot see a race
//! on them: these models catch a broken exclusion by its effect instead.
//! Each holder yields to the model checker between reading and writing the
//! elements, so two holders at once lose an update or tear a pair.

extern crate std;

use super::*;
use crate::mutex::PoisonCause;
use ::loom::thread;

fn array(len: usize) -> Array<'static, u64> {
    let mem = crate::test_util::leak(Array::<u64>::memory_size(len).unwrap());
    Array::create(Region::from_mut_slice(mem), len, 0).unwrap()
}

/// Adds one to both elements of `a` through its guard, yielding between
/// the read and the writes.
fn bump(a: Array<'static, u64>) {
    let mut g = a.lock().unwrap();
    let old = g[0];
    assert_eq!(g[1], old, "torn pair");
    thread::yield_now();
    g[0] = old + 1;
    thread::yield_now();
    g[1] = old + 1;
}

/// Two processes bump a pair through `lock` while a third reads it with
/// `copy_to_slice` and `get`: no update is lost and no reader sees a torn
/// pair.
#[test]
fn array_lock_excludes() {
    ::loom::model(|| {
        let a = array(2);
        let t = thread::spawn(move || bump(a));
        let reader = thread::spawn(move || {
            let mut pair = [0; 2];
            a.copy_to_slice(&mut pair).unwrap();
            assert_eq!(pair[0], pair[1], "torn pair");
        });
        bump(a);
        t.join().unwrap();
        reader.join().unwrap();
        assert_eq!(a.get(0).unwrap(), 2);
        assert_eq!(a.get(1).unwrap(), 2);
        assert!(!a.raw().is_locked());
    });
}

/// A holder is killed halfway through writing the pair (guard never
/// dropped); the next locker (`lock_timeout`, whose liveness check runs
/// under loom's frozen clock) gets the guard inside a poison naming the
/// dead pid, sees the half-written pair, repairs it and clears the
/// poison; after that the element operations are clean.
#[test]
fn array_holder_killed_mid_write_is_reported() {
    ::loom::model(|| {
        let a = array(2);
        let t = thread::spawn(move || {
            let mut g = a.lock().unwrap();
            g[0] = 1;
            core::mem::forget(g);
            crate::sync::loom_die();
            crate::sync::current_pid()
        });
        let poisoned = loop {
            match a.lock_timeout(Duration::ZERO) {
                Ok(g) => {
                    // Before the holder took it: leave it to the holder.
                    assert_eq!(*g, [0, 0]);
                    drop(g);
                    thread::yield_now();
                }
                Err(LockTimeoutError::Poisoned(p)) => break p,
                Err(LockTimeoutError::TimedOut) => thread::yield_now(),
            }
        };
        let dead = t.join().unwrap();
        assert_eq!(poisoned.cause(), PoisonCause::OwnerDied { pid: dead });
        let mut g = poisoned.into_inner();
        assert_eq!(*g, [1, 0], "the dead holder's half write");
        g[1] = 1;
        a.clear_poison();
        drop(g);
        assert_eq!(a.get(1).unwrap(), 1);
        a.set(0, 5).unwrap();
        let mut pair = [0; 2];
        a.copy_to_slice(&mut pair).unwrap();
        assert_eq!(pair, [5, 1]);
    });
}
