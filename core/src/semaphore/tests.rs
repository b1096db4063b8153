//! Unit tests of the semaphore (threads as processes).

extern crate std;
use super::*;
use std::sync::Arc;
use std::thread;
use std::vec::Vec;

use crate::sync::{AtomicU32, AtomicU64};
use crate::test_util::{buf, bytes};

#[test]
fn counts_units() {
    let s = RawSemaphore::new(3);
    assert_eq!(s.value(), 3);
    assert!(!s.is_bounded());
    assert_eq!(s.max_value(), None);
    for left in (0..3).rev() {
        assert!(s.try_acquire());
        assert_eq!(s.value(), left);
    }
    assert!(!s.try_acquire());
    s.release_n(5).unwrap();
    assert_eq!(s.value(), 5);
    s.release_n(0).unwrap();
    assert_eq!(s.value(), 5);
    s.acquire();
    assert_eq!(s.value(), 4);
}

#[test]
fn bounded_refuses_to_exceed_initial() {
    let s = RawSemaphore::new_bounded(2);
    assert!(s.is_bounded());
    assert_eq!(s.max_value(), Some(2));
    assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    assert!(s.try_acquire());
    assert!(s.try_acquire());
    assert_eq!(s.release_n(3), Err(SemaphoreError::Overflow));
    assert_eq!(s.value(), 0, "a failed release_n releases nothing");
    s.release_n(2).unwrap();
    assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    assert_eq!(s.value(), 2);

    let zero = RawSemaphore::new_bounded(0);
    assert_eq!(zero.release(), Err(SemaphoreError::Overflow));
}

#[test]
fn unbounded_stops_at_max_value() {
    let s = RawSemaphore::new(MAX_VALUE - 1);
    s.release().unwrap();
    assert_eq!(s.value(), MAX_VALUE);
    assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    assert_eq!(s.release_n(u32::MAX), Err(SemaphoreError::Overflow));
    assert_eq!(s.value(), MAX_VALUE);
}

#[test]
#[should_panic(expected = "MAX_VALUE")]
fn new_above_max_panics() {
    let _ = RawSemaphore::new(MAX_VALUE + 1);
}

#[test]
fn garbage_max_still_gives_a_limit() {
    let s = RawSemaphore::new(0);
    s.max.store(7, Ordering::Relaxed);
    s.release_n(7).unwrap();
    assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    s.max.store(u32::MAX - 1, Ordering::Relaxed);
    s.word.store(u64::from(MAX_VALUE), Ordering::Relaxed);
    assert_eq!(s.release(), Err(SemaphoreError::Overflow));
}

#[test]
fn timeouts() {
    let s = RawSemaphore::new(0);
    assert!(!s.acquire_timeout(Duration::ZERO));
    assert!(!s.acquire_timeout(Duration::from_millis(5)));
    assert!(!s.acquire_deadline(Deadline::after(Duration::from_millis(1))));
    s.release().unwrap();
    assert!(s.acquire_timeout(Duration::ZERO));
    s.release().unwrap();
    assert!(s.acquire_deadline(Deadline::after(Duration::ZERO)));
    assert_eq!(s.value(), 0);
}

#[test]
fn release_wakes_a_sleeper() {
    let s = Arc::new(RawSemaphore::new(0));
    let got = Arc::new(AtomicU32::new(0));
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let (s, got) = (s.clone(), got.clone());
            thread::spawn(move || {
                s.acquire();
                got.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // Let them sleep (not required for correctness), then feed them.
    thread::sleep(std::time::Duration::from_millis(20));
    s.release().unwrap();
    s.release_n(2).unwrap();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(got.load(Ordering::SeqCst), 3);
    assert_eq!(s.value(), 0);
}

#[test]
fn never_more_than_k_inside() {
    const K: u32 = 2;
    const THREADS: usize = 6;
    const ROUNDS: usize = 2_000;
    let s = Arc::new(RawSemaphore::new_bounded(K));
    let inside = Arc::new(AtomicU32::new(0));
    let max_seen = Arc::new(AtomicU32::new(0));
    let hs: Vec<_> = (0..THREADS)
        .map(|i| {
            let (s, inside, max_seen) = (s.clone(), inside.clone(), max_seen.clone());
            thread::spawn(move || {
                for r in 0..ROUNDS {
                    if (i + r) % 3 == 0 {
                        while !s.acquire_timeout(Duration::from_micros(50)) {}
                    } else {
                        s.acquire();
                    }
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut m = max_seen.load(Ordering::Relaxed);
                    while n > m {
                        match max_seen.compare_exchange(m, n, Ordering::Relaxed, Ordering::Relaxed)
                        {
                            Ok(_) => break,
                            Err(now) => m = now,
                        }
                    }
                    if r % 64 == 0 {
                        thread::yield_now();
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                    s.release().unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let m = max_seen.load(Ordering::SeqCst);
    assert!(m <= K, "{m} threads inside a semaphore of {K}");
    assert!(m >= 1);
    assert_eq!(s.value(), K);
}

#[test]
fn region_create_attach_and_errors() {
    let lines = Semaphore::memory_size().div_ceil(128);
    {
        let mut b = buf(lines * 128);
        let r = Region::from_mut_slice(bytes(&mut b));
        assert_eq!(Semaphore::attach(r).unwrap_err(), AttachError::NotReady);
        assert_eq!(
            Semaphore::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
            AttachError::NotReady
        );
        assert_eq!(
            Semaphore::create(r, MAX_VALUE + 1).unwrap_err(),
            InitError::InvalidCapacity {
                capacity: u64::from(MAX_VALUE + 1)
            }
        );
        let s = Semaphore::create(r, 2).unwrap();
        assert!(!s.is_bounded());
        assert_eq!(
            Semaphore::create(r, 1).unwrap_err(),
            InitError::AlreadyInitialized
        );
        let t = Semaphore::attach_timeout(r, Duration::from_millis(2)).unwrap();
        let u = Semaphore::attach_deadline(r, Deadline::after(Duration::ZERO)).unwrap();
        assert!(t.try_acquire());
        assert!(s.as_raw().try_acquire());
        assert!(!u.try_acquire());
        u.release_n(2).unwrap();
        assert_eq!(s.value(), 2);
    }
    {
        let mut b2 = buf(lines * 128);
        let r = Region::from_mut_slice(bytes(&mut b2));
        let s = Semaphore::create_bounded(r, 1).unwrap();
        let t = Semaphore::attach(r).unwrap();
        assert!(t.is_bounded());
        assert_eq!(t.max_value(), Some(1));
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    }
    let mut small = buf(128);
    assert!(matches!(
        Semaphore::create(Region::from_mut_slice(bytes(&mut small)), 0),
        Err(InitError::TooSmall { .. })
    ));
}

#[test]
fn tagged_attach_needs_the_same_tag() {
    let mut b = buf(Semaphore::memory_size());
    let r = Region::from_mut_slice(bytes(&mut b));
    let s = Semaphore::create_tagged(r, 1, 3).unwrap();
    let t = Semaphore::attach_tagged_timeout(r, 3, Duration::ZERO).unwrap();
    assert!(t.try_acquire() && !s.try_acquire());
    assert!(matches!(
        Semaphore::attach_tagged_timeout(r, 4, Duration::ZERO),
        Err(AttachError::TypeMismatch { .. })
    ));
    assert!(matches!(
        Semaphore::attach(r),
        Err(AttachError::TypeMismatch { .. })
    ));
    let mut b = buf(Semaphore::memory_size());
    let r = Region::from_mut_slice(bytes(&mut b));
    Semaphore::create_bounded_tagged(r, 2, 9).unwrap();
    let t = Semaphore::attach_tagged_timeout(r, 9, Duration::ZERO).unwrap();
    assert_eq!((t.is_bounded(), t.max_value()), (true, Some(2)));
}

#[test]
fn errors_display() {
    assert_eq!(
        std::format!("{}", SemaphoreError::Overflow),
        "semaphore released too many times"
    );
    assert_eq!(std::format!("{:?}", SemaphoreError::Overflow), "Overflow");
}

/// A region semaphore with `holders` slots in a fresh buffer.
fn region_sem(
    initial: u32,
    bounded: bool,
    holders: u32,
) -> (std::vec::Vec<crate::test_util::Line>, usize) {
    let mut b = buf(Semaphore::memory_size_for(holders));
    let r = Region::from_mut_slice(bytes(&mut b));
    Semaphore::create_with(r, initial, bounded, holders, 0).unwrap();
    let len = b.len();
    (b, len)
}

fn sem(b: &mut [crate::test_util::Line]) -> Semaphore<'_> {
    Semaphore::attach(Region::from_mut_slice(bytes(b))).unwrap()
}

/// An identity word that names no live process: this pid, another start.
fn dead_word() -> u64 {
    let me = crate::identity::Identity::current();
    crate::identity::Identity::new(me.pid(), Some(me.start_ticks().unwrap() + 1))
        .unwrap()
        .to_word()
}

/// Plants a dead holder of `held` units in slot `i`.
fn plant_dead(s: &Semaphore<'_>, i: usize, held: u32) {
    s.slots[i].owner.store(dead_word(), Ordering::Relaxed);
    s.slots[i]
        .state
        .store(u64::from(held) | (7 * SEQ_ONE), Ordering::Relaxed);
}

#[test]
fn tracked_units_are_recorded_and_given_back() {
    let (mut b, _) = region_sem(2, false, 4);
    let s = sem(&mut b);
    assert_eq!(s.holders(), 4);
    assert_eq!(s.holder_slots_free(), 4);
    s.acquire().unwrap();
    assert!(s.try_acquire());
    assert_eq!((s.value(), s.held_by_me()), (0, 2));
    assert_eq!(s.holder_slots_free(), 3);
    s.release().unwrap();
    assert_eq!((s.value(), s.held_by_me()), (1, 1));
    // Two at once: one held, one anonymous.
    s.release_n(2).unwrap();
    assert_eq!((s.value(), s.held_by_me()), (3, 0));
    // Anonymous release with nothing held (a semaphore as a signal).
    s.release().unwrap();
    assert_eq!(s.value(), 4);
    assert_eq!(marker_of(s.raw.word.load(Ordering::Relaxed)), 0);
}

#[test]
fn dead_holders_unit_goes_to_a_waiter_that_learns_it() {
    let (mut b, _) = region_sem(0, false, 4);
    let s = sem(&mut b);
    plant_dead(&s, 2, 1);
    let pid = crate::identity::Identity::current().pid();
    assert_eq!(s.acquire(), Err(OwnerDied { pid }));
    assert_eq!((s.value(), s.held_by_me()), (0, 1));
    // The adopted slot is ours now; the unit goes back as any other.
    s.release().unwrap();
    assert_eq!((s.value(), s.held_by_me()), (1, 0));
    // Three units held by the dead: one for the waiter, two back.
    let (mut b, _) = region_sem(0, false, 4);
    let s = sem(&mut b);
    plant_dead(&s, 0, 3);
    assert_eq!(
        s.acquire_timeout(Duration::from_secs(5)),
        Err(OwnerDied { pid })
    );
    assert_eq!((s.value(), s.held_by_me()), (2, 1));
    // `recover` on demand.
    let (mut b, _) = region_sem(0, false, 4);
    let s = sem(&mut b);
    plant_dead(&s, 1, 2);
    assert!(!s.try_acquire());
    assert_eq!(s.recover(), 2);
    assert_eq!(s.value(), 2);
    assert_eq!(s.recover(), 0);
}

#[test]
fn recovery_keeps_the_bound() {
    let (mut b, _) = region_sem(1, true, 4);
    let s = sem(&mut b);
    // The dead held the only unit, but an anonymous release refilled it.
    plant_dead(&s, 3, 1);
    assert_eq!(s.recover(), 1);
    assert_eq!(s.value(), 1, "the unit with no room is dropped");
    assert_eq!(s.held_by_me(), 0);
    assert_eq!(s.release(), Err(SemaphoreError::Overflow));
}

#[test]
fn a_dead_movers_marker_is_finished_or_rolled_back() {
    for (give, done, expect) in [
        (false, false, 1), // take, slot untouched: the unit returns
        (false, true, 0),  // take, slot updated: the dead holds it
        (true, false, 0),  // give, slot untouched: still held
        (true, true, 1),   // give, slot updated: counted
    ] {
        let (mut b, _) = region_sem(0, false, 4);
        let s = sem(&mut b);
        plant_dead(&s, 1, 1);
        let state = s.slots[1].state.load(Ordering::Relaxed);
        let c = if give { 1 } else { 0 };
        s.raw
            .word
            .store(c | marker(1, state, give), Ordering::Relaxed);
        if done {
            let next = if give { state - 1 } else { state + 1 };
            s.slots[1].state.store(next + SEQ_ONE, Ordering::Relaxed);
        }
        assert_eq!(s.raw.load_unmarked(s.slots) as u32, expect, "{give} {done}");
        let held = held_of(s.slots[1].state.load(Ordering::Relaxed));
        // Before the move: a take from count 1, a give to count 0, with one
        // held: every unit is still counted or held, exactly once.
        assert_eq!(expect + held, if give { 1 } else { 2 }, "{give} {done}");
    }
    // A lock marker (nothing moved yet) of a dead owner is simply cleared.
    let (mut b, _) = region_sem(3, false, 4);
    let s = sem(&mut b);
    plant_dead(&s, 0, 0);
    s.raw
        .word
        .store(3 | 1 << M_SLOT_SHIFT | M_LOCK_BIT, Ordering::Relaxed);
    assert!(s.try_acquire());
    assert_eq!(s.value(), 2);
    // A marker naming no slot (corrupt) is dropped.
    s.raw.word.store(2 | 999 << M_SLOT_SHIFT, Ordering::Relaxed);
    assert_eq!(s.value(), 2);
    assert!(s.try_acquire());
    assert_eq!(s.value(), 1);
}

#[test]
fn a_full_table_acquires_untracked_and_dead_slots_are_reused() {
    let (mut b, _) = region_sem(2, false, 1);
    let s = sem(&mut b);
    // A live other owner (pid 1) fills the only slot.
    let init = crate::identity::of_pid(1).unwrap().to_word();
    s.slots[0].owner.store(init, Ordering::Relaxed);
    assert_eq!(s.holder_slots_free(), 0);
    assert!(s.try_acquire());
    assert_eq!((s.value(), s.held_by_me()), (1, 0));
    s.release().unwrap();
    // A dead owner holding nothing: its slot is taken.
    plant_dead(&s, 0, 0);
    assert_eq!(s.holder_slots_free(), 1);
    assert!(s.try_acquire());
    assert_eq!(s.held_by_me(), 1);
    assert!(matches!(
        Semaphore::create_with(
            Region::from_mut_slice(bytes(&mut buf(40 * 128))),
            0,
            false,
            MAX_HOLDERS + 1,
            0
        ),
        Err(InitError::InvalidCapacity { .. })
    ));
}

#[test]
fn tracked_never_more_than_k_inside() {
    const K: u32 = 2;
    let (mut b, _) = region_sem(K, true, 8);
    let s = sem(&mut b);
    let inside = AtomicU32::new(0);
    thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for r in 0..2000 {
                    if r % 2 == 0 {
                        s.acquire().unwrap();
                    } else {
                        while !s.acquire_timeout(Duration::from_micros(50)).unwrap() {}
                    }
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(n <= K);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    s.release().unwrap();
                }
            });
        }
    });
    assert_eq!((s.value(), s.held_by_me()), (K, 0));
    let _ = AtomicU64::new(0);
}
