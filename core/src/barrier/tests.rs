//! Unit tests of the barrier (threads as processes).

extern crate std;
use super::*;
use std::sync::Arc;
use std::thread;
use std::vec::Vec;

use crate::test_util::{buf, bytes};

/// Waits until `n` parties are counted as arrived (they are about to
/// block), without asserting any time.
fn until_waiting(b: &RawBarrier, n: u32) {
    while b.n_waiting() < n {
        thread::yield_now();
    }
}

#[test]
fn one_party_always_leads() {
    let b = RawBarrier::new(1);
    for _ in 0..5 {
        let r = b.wait().unwrap();
        assert!(r.is_leader());
        assert_eq!(r.index(), 0);
    }
    assert_eq!(b.parties(), 1);
    assert_eq!(b.n_waiting(), 0);
}

#[test]
#[should_panic(expected = "parties")]
fn zero_parties_panics() {
    let _ = RawBarrier::new(0);
}

/// Three threads through 100 generations in a row: nobody leaves a
/// generation before all arrived, one leader per generation, indices
/// 0, 1, 2 each once.
#[test]
fn reused_generations() {
    const PARTIES: usize = 3;
    const GENS: usize = 100;
    let b = Arc::new(RawBarrier::new(PARTIES as u32));
    let arrived: Arc<Vec<AtomicU32>> = Arc::new((0..GENS).map(|_| AtomicU32::new(0)).collect());
    let leaders: Arc<Vec<AtomicU32>> = Arc::new((0..GENS).map(|_| AtomicU32::new(0)).collect());
    let indices: Arc<Vec<AtomicU32>> = Arc::new((0..GENS).map(|_| AtomicU32::new(0)).collect());
    let hs: Vec<_> = (0..PARTIES)
        .map(|t| {
            let (b, arrived, leaders, indices) =
                (b.clone(), arrived.clone(), leaders.clone(), indices.clone());
            thread::spawn(move || {
                for g in 0..GENS {
                    arrived[g].fetch_add(1, Ordering::Relaxed);
                    let r = if (g + t) % 2 == 0 {
                        b.wait().unwrap()
                    } else {
                        b.wait_timeout(Duration::from_secs(60)).unwrap()
                    };
                    // Relaxed suffices: the barrier orders it.
                    assert_eq!(
                        arrived[g].load(Ordering::Relaxed),
                        PARTIES as u32,
                        "left gen {g} early"
                    );
                    assert!(r.index() < PARTIES as u32);
                    assert_eq!(r.is_leader(), r.index() == PARTIES as u32 - 1);
                    if r.is_leader() {
                        leaders[g].fetch_add(1, Ordering::Relaxed);
                    }
                    indices[g].fetch_or(1 << r.index(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    for g in 0..GENS {
        assert_eq!(leaders[g].load(Ordering::Relaxed), 1, "gen {g}");
        assert_eq!(indices[g].load(Ordering::Relaxed), 0b111, "gen {g}");
    }
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn timeout_breaks_for_everyone() {
    let b = Arc::new(RawBarrier::new(3));
    let b2 = b.clone();
    let other = thread::spawn(move || b2.wait());
    until_waiting(&b, 1);
    assert_eq!(
        b.wait_timeout(Duration::from_millis(5)),
        Err(BarrierError::TimedOut)
    );
    assert_eq!(other.join().unwrap(), Err(BarrierError::Broken));
    assert!(b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    assert_eq!(b.wait(), Err(BarrierError::Broken));
    assert_eq!(
        b.wait_timeout(Duration::from_millis(1)),
        Err(BarrierError::Broken)
    );
    assert_eq!(b.waiters.load(Ordering::Relaxed), 0);

    b.reset();
    assert!(!b.is_broken());
    assert_eq!(
        b.wait_deadline(Deadline::after(Duration::ZERO)),
        Err(BarrierError::TimedOut)
    );
}

#[test]
fn abort_breaks_waiters_and_later_calls() {
    let b = Arc::new(RawBarrier::new(2));
    let b2 = b.clone();
    let h = thread::spawn(move || b2.wait());
    until_waiting(&b, 1);
    b.abort();
    assert_eq!(h.join().unwrap(), Err(BarrierError::Broken));
    assert!(b.is_broken());
    b.abort(); // twice: still broken, no harm
    assert_eq!(b.wait(), Err(BarrierError::Broken));
    b.reset();
    assert!(!b.is_broken());
    let b2 = b.clone();
    let h = thread::spawn(move || b2.wait().unwrap());
    let mine = b.wait().unwrap();
    assert_ne!(mine.is_leader(), h.join().unwrap().is_leader());
}

#[test]
fn reset_throws_out_waiters() {
    let b = Arc::new(RawBarrier::new(3));
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            thread::spawn(move || b.wait())
        })
        .collect();
    until_waiting(&b, 2);
    b.reset();
    for h in hs {
        assert_eq!(h.join().unwrap(), Err(BarrierError::Broken));
    }
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    // Usable again, and a reset with nobody waiting changes nothing
    // visible.
    b.reset();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            thread::spawn(move || b.wait().unwrap())
        })
        .collect();
    let r = b.wait().unwrap();
    let leaders = hs
        .into_iter()
        .map(|h| h.join().unwrap().is_leader() as u32)
        .sum::<u32>()
        + r.is_leader() as u32;
    assert_eq!(leaders, 1);
}

#[test]
fn outcome_reads_the_word() {
    let mine = 5 * GEN_ONE + 3 * EPOCH_ONE + 1;
    assert_eq!(outcome(mine, mine + 1), None, "more arrivals");
    assert_eq!(
        outcome(mine, mine | BROKEN_BIT),
        Some(Err(BarrierError::Broken))
    );
    assert_eq!(outcome(mine, 6 * GEN_ONE + 3 * EPOCH_ONE), Some(Ok(())));
    assert_eq!(
        outcome(mine, 5 * GEN_ONE + 4 * EPOCH_ONE),
        Some(Err(BarrierError::Broken))
    );
    // Completed, then reset: passed.
    assert_eq!(outcome(mine, 6 * GEN_ONE + 4 * EPOCH_ONE), Some(Ok(())));
    // The generation wraps.
    let last = GEN_MASK | 1;
    assert_eq!(
        outcome(last, last.wrapping_add(GEN_ONE) & GEN_MASK),
        Some(Ok(()))
    );
}

#[test]
fn corrupt_state_is_broken_not_ub() {
    let b = RawBarrier::new(2);
    b.state.store(COUNT_MASK, Ordering::Relaxed); // count >= parties
    assert!(b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    assert_eq!(b.wait(), Err(BarrierError::Broken));
    b.reset();
    assert!(!b.is_broken());
    b.parties.store(0, Ordering::Relaxed);
    assert!(b.is_broken());
    assert_eq!(b.wait(), Err(BarrierError::Broken));
    b.parties.store(u32::MAX, Ordering::Relaxed);
    assert_eq!(b.wait(), Err(BarrierError::Broken));
}

#[test]
fn region_create_attach_and_errors() {
    let mut b = buf(256);
    let r = Region::from_mut_slice(bytes(&mut b));
    assert!(Barrier::memory_size(2) <= 256);
    assert_eq!(Barrier::attach(r).unwrap_err(), AttachError::NotReady);
    assert_eq!(
        Barrier::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
        AttachError::NotReady
    );
    for bad in [0, MAX_PARTIES + 1] {
        assert_eq!(
            Barrier::create(r, bad).unwrap_err(),
            InitError::InvalidCapacity {
                capacity: u64::from(bad)
            }
        );
    }
    let a = Barrier::create(r, 2).unwrap();
    assert_eq!(
        Barrier::create(r, 2).unwrap_err(),
        InitError::AlreadyInitialized
    );
    let c = Barrier::attach_timeout(r, Duration::from_millis(2)).unwrap();
    let d = Barrier::attach_deadline(r, Deadline::after(Duration::ZERO)).unwrap();
    assert_eq!(c.parties(), 2);
    assert_eq!(r.header().unwrap().capacity(), 2);
    thread::scope(|s| {
        let h = s.spawn(|| c.wait().unwrap());
        let mine = a.as_raw().wait().unwrap();
        assert_ne!(mine.is_leader(), h.join().unwrap().is_leader());
    });
    assert_eq!(d.n_waiting(), 0);

    // A header whose parties are out of range is refused.
    let mut copy = buf(Barrier::memory_size(2));
    let c2 = bytes(&mut copy);
    c2.copy_from_slice(bytes(&mut b));
    c2[40..48].copy_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        Barrier::attach(Region::from_mut_slice(c2)),
        Err(AttachError::CorruptCapacity { capacity: 0 })
    ));

    let mut small = buf(128);
    assert!(matches!(
        Barrier::create(Region::from_mut_slice(bytes(&mut small)), 2),
        Err(InitError::TooSmall { .. })
    ));
}

#[test]
fn tagged_attach_needs_the_same_tag() {
    let mut b = buf(Barrier::memory_size(2));
    let r = Region::from_mut_slice(bytes(&mut b));
    Barrier::create_tagged(r, 2, 3).unwrap();
    let t = Barrier::attach_tagged_timeout(r, 3, Duration::ZERO).unwrap();
    assert_eq!(t.parties(), 2);
    assert!(matches!(
        Barrier::attach_tagged_timeout(r, 4, Duration::ZERO),
        Err(AttachError::TypeMismatch { .. })
    ));
    assert!(matches!(
        Barrier::attach(r),
        Err(AttachError::TypeMismatch { .. })
    ));
    let mut b = buf(Barrier::memory_size(2));
    let r = Region::from_mut_slice(bytes(&mut b));
    assert!(matches!(
        Barrier::create_tagged(r, 0, 3),
        Err(InitError::InvalidCapacity { capacity: 0 })
    ));
}

#[test]
fn errors_display() {
    assert_eq!(
        std::format!("{}", BarrierError::Broken),
        "barrier is broken"
    );
    assert!(std::format!("{}", BarrierError::TimedOut).starts_with("barrier wait timed out"));
    assert_eq!(std::format!("{:?}", BarrierError::TimedOut), "TimedOut");
}

/// An identity word that names no live process: this pid, another start.
fn dead_word() -> u64 {
    let me = crate::identity::Identity::current();
    crate::identity::Identity::new(me.pid(), Some(me.start_ticks().unwrap() + 1))
        .unwrap()
        .to_word()
}

#[test]
fn a_dead_registered_party_breaks_the_barrier_in_its_name() {
    let mut b = buf(Barrier::memory_size(3));
    let r = Region::from_mut_slice(bytes(&mut b));
    let bar = Barrier::create(r, 3).unwrap();
    assert!(bar.register());
    assert!(bar.register(), "twice is once");
    assert_eq!(bar.registered(), 1);
    // A party that registered and died before arriving.
    bar.slots[2].owner.store(dead_word(), Ordering::Relaxed);
    let pid = crate::identity::Identity::current().pid();
    assert_eq!(bar.wait(), Err(BarrierError::PartyDied { pid }));
    assert!(bar.is_broken());
    assert_eq!(bar.wait(), Err(BarrierError::PartyDied { pid }));
    assert_eq!(bar.registered(), 1, "the dead party's slot is freed");
    bar.reset();
    assert_eq!(
        bar.as_raw().wait_timeout(Duration::ZERO),
        Err(BarrierError::TimedOut)
    );
    bar.reset();
    // A party that arrived in this generation and then died is harmless.
    let bar2 = Barrier::attach(r).unwrap();
    thread::scope(|s| {
        let h = s.spawn(|| bar2.as_raw().wait().unwrap());
        until_waiting(&bar, 1);
        let mark = arrival_mark(bar.state.load(Ordering::Relaxed));
        bar.slots[2].owner.store(dead_word(), Ordering::Relaxed);
        bar.slots[2].arrived.store(mark, Ordering::Relaxed);
        // Its arrival, counted: it died waiting.
        bar.state.fetch_add(1, Ordering::SeqCst);
        // The untracked `as_raw` wait above, the dead one, and us.
        let mine = bar.wait().unwrap();
        assert_ne!(mine.is_leader(), h.join().unwrap().is_leader());
    });
    assert!(bar.leave());
    assert!(!bar.leave());
    assert_eq!(
        std::format!("{}", BarrierError::PartyDied { pid: 7 }),
        "barrier is broken: party process 7 died before arriving"
    );
}
