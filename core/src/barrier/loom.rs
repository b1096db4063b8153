//! Loom models of the barrier: threads stand in for processes.

use super::*;
use crate::sync::UnsafeCell;
use ::loom::sync::Arc;
use ::loom::thread;

/// Two parties, two generations: both pass each, one leader per
/// generation, and what each wrote before a generation's wait is seen by
/// the other after it.
#[test]
fn two_parties_two_generations() {
    ::loom::model(|| {
        let b = Arc::new(RawBarrier::new(2));
        // cells[g][party]: written by `party` before generation g's
        // wait, read by the other party after it.
        let cells = Arc::new([
            [UnsafeCell::new(0u32), UnsafeCell::new(0u32)],
            [UnsafeCell::new(0u32), UnsafeCell::new(0u32)],
        ]);
        let run = |me: usize, b: &RawBarrier, cells: &[[UnsafeCell<u32>; 2]; 2]| {
            let mut leads = [false; 2];
            for (g, lead) in leads.iter_mut().enumerate() {
                // SAFETY: only this party writes this cell, and the other
                // reads it only after the barrier below.
                cells[g][me].with_mut(|p| unsafe { *p = g as u32 + 1 });
                let r = b.wait().unwrap();
                *lead = r.is_leader();
                // SAFETY: the other party wrote this cell before the
                // barrier we just passed and never writes it again.
                let seen = cells[g][1 - me].with(|p| unsafe { *p });
                assert_eq!(seen, g as u32 + 1);
            }
            leads
        };
        let (b2, c2) = (b.clone(), cells.clone());
        let t = thread::spawn(move || run(1, &b2, &c2));
        let mine = run(0, &b, &cells);
        let theirs = t.join().unwrap();
        for g in 0..2 {
            assert!(mine[g] != theirs[g], "one leader in generation {g}");
        }
    });
}

/// Three parties, one generation: all pass, exactly one leader.
#[test]
fn three_parties_one_leader() {
    ::loom::model(|| {
        let b = Arc::new(RawBarrier::new(3));
        let spawn = |b: &Arc<RawBarrier>| {
            let b = b.clone();
            thread::spawn(move || b.wait().unwrap())
        };
        let t1 = spawn(&b);
        let t2 = spawn(&b);
        let r0 = b.wait().unwrap();
        let r1 = t1.join().unwrap();
        let r2 = t2.join().unwrap();
        let leaders = [r0, r1, r2].iter().filter(|r| r.is_leader()).count();
        assert_eq!(leaders, 1);
        assert_eq!(r0.index() + r1.index() + r2.index(), 3);
    });
}

/// A waiter whose deadline has passed (loom's frozen clock can only
/// fire those) races its peer: either both pass, or it breaks the
/// barrier and the peer, asleep or arriving, gets `Broken`.
#[test]
fn timeout_break_reaches_peer() {
    ::loom::model(|| {
        let b = Arc::new(RawBarrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || b2.wait());
        let mine = b.wait_deadline(Deadline::from_monotonic_nanos(0));
        let theirs = t.join().unwrap();
        match mine {
            Ok(r) => assert_ne!(r.is_leader(), theirs.unwrap().is_leader()),
            Err(e) => {
                assert_eq!(e, BarrierError::TimedOut);
                assert_eq!(theirs, Err(BarrierError::Broken));
            }
        }
    });
}

/// A waiter thrown out by `abort` is woken (no lost wake-up).
#[test]
fn abort_wakes_waiter() {
    ::loom::model(|| {
        let b = Arc::new(RawBarrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || b2.abort());
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        t.join().unwrap();
    });
}

/// A region barrier for `parties`, leaked for the model's run.
fn region_barrier(parties: u32) -> Barrier<'static> {
    let mem = crate::test_util::leak(Barrier::memory_size(parties));
    Barrier::create(Region::from_mut_slice(mem), parties).unwrap()
}

/// A party registers and dies before arriving while the other waits: the
/// waiter never passes, and breaks the barrier in the dead one's name
/// once it sees the death. (Loom's clock is frozen, so a nap never ends
/// by itself: the waiter's deadline is already past, and a waiter that
/// looked only before the death times out instead, as a real one would
/// not, its nap ending after 50 ms to look again.)
#[test]
fn registered_party_dies_before_arriving() {
    ::loom::model(|| {
        let b = region_barrier(2);
        let d = thread::spawn(move || {
            assert!(b.register());
            crate::sync::loom_die();
        });
        let r = b.wait_deadline(Deadline::from_monotonic_nanos(0));
        d.join().unwrap();
        match r {
            Err(BarrierError::PartyDied { pid }) => assert_ne!(pid, 0),
            Err(BarrierError::TimedOut) => {}
            other => panic!("{other:?}"),
        }
        assert!(b.is_broken());
        // Once dead, a later waiter sees it at once.
        b.reset();
        if r == Err(BarrierError::TimedOut) {
            let again = b.wait_deadline(Deadline::from_monotonic_nanos(0));
            assert!(
                matches!(again, Err(BarrierError::PartyDied { .. })),
                "{again:?}"
            );
        }
    });
}
