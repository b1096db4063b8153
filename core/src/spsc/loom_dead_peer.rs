//! loom models of an SPSC ring recovering from a dead peer: a producer
//! killed mid-push, a consumer killed mid-pop, and the handle that claims
//! the dead one's role (`Claimed::FromDead`) resuming the stream. Threads
//! stand for processes, `sync::loom_die` for a `kill -9` (a dead handle's
//! destructor never runs: `mem::forget`). Under loom the clock is frozen,
//! so a blocked call never reaches its liveness check: the survivors use
//! the non-blocking calls and the role's `peer()`. Run with
//! `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p multiproc-core --release --lib spsc::loom_dead_peer`.

extern crate std;

use super::*;
use crate::role::Peer;
use ::loom::thread;
use std::vec::Vec;

fn ring(cap: u64) -> SpscRing<'static, u64> {
    let mem = crate::test_util::leak(SpscRing::<u64>::memory_size(cap).unwrap());
    SpscRing::create(Region::from_mut_slice(mem), cap).unwrap()
}

/// Pushes `v`, retrying while the ring is full.
fn push(tx: &mut Producer<'_, u64>, mut v: u64) {
    loop {
        match tx.try_push(v) {
            Ok(()) => return,
            Err(PushError::Full(back)) => {
                v = back;
                thread::yield_now();
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// The producer publishes 1, writes 2 into the next slot in place and is
/// killed before committing it; a new producer claims the role from the
/// dead one and pushes 3, then leaves cleanly. The consumer, popping all
/// along, gets exactly 1 then 3 and then `Disconnected`: never the
/// uncommitted 2, and no slot read while written (loom tracks the slots).
#[test]
fn spsc_producer_killed_mid_push_is_replaced() {
    ::loom::model(|| {
        let r = ring(2);
        let mut rx = r.consumer().unwrap();
        let dying = thread::spawn(move || {
            let mut tx = r.producer().unwrap();
            tx.try_push(1).unwrap();
            {
                let mut s = tx.write_slot().unwrap();
                *s = 2;
                // Killed here: the slot is never committed (its guard has
                // no destructor: going out of scope is the same as a
                // kill), the handle never dropped.
            }
            core::mem::forget(tx);
            crate::sync::loom_die();
            crate::sync::current_pid()
        });
        let next = thread::spawn(move || {
            let dead = dying.join().unwrap();
            assert_eq!(r.producer_peer(), Peer::Dead(dead));
            let mut tx = r.producer().unwrap();
            assert_eq!(tx.claimed(), Claimed::FromDead(dead));
            push(&mut tx, 3);
        });
        let mut got = Vec::new();
        loop {
            match rx.try_pop() {
                Ok(v) => got.push(v),
                Err(PopError::Empty) => thread::yield_now(),
                Err(PopError::Disconnected) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        next.join().unwrap();
        assert_eq!(got, [1, 3]);
    });
}

/// The consumer holds value 1 in place (`read_slot`) and is killed before
/// freeing it, while the producer pushes 1 to 4 into a 2-slot ring; a
/// new consumer claims the role from the dead one. It reads 1 again (at
/// least once across a consumer's death), then 2 to 4, and the producer
/// never overwrites the slot the dead consumer was reading (loom would
/// see the race).
#[test]
fn spsc_consumer_killed_mid_pop_is_replaced() {
    ::loom::model(|| {
        let r = ring(2);
        let mut tx = r.producer().unwrap();
        tx.try_push(1).unwrap();
        let dying = thread::spawn(move || {
            let mut rx = r.consumer().unwrap();
            let s = rx.read_slot().unwrap();
            assert_eq!(*s, 1);
            // Killed here: the slot is never freed, the handle never
            // dropped.
            core::mem::forget(s);
            core::mem::forget(rx);
            crate::sync::loom_die();
            crate::sync::current_pid()
        });
        let next = thread::spawn(move || {
            let dead = dying.join().unwrap();
            let mut rx = r.consumer().unwrap();
            assert_eq!(rx.claimed(), Claimed::FromDead(dead));
            let mut got = Vec::new();
            while got.len() < 4 {
                match rx.try_pop() {
                    Ok(v) => got.push(v),
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
            got
        });
        for v in 2..=4 {
            push(&mut tx, v);
        }
        assert_eq!(next.join().unwrap(), [1, 2, 3, 4]);
    });
}
