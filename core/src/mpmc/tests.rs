extern crate std;
use super::blocking::*;
use super::claim::{walk, LAP_JUMPS};
use super::slot::*;
use super::*;
use crate::identity::Identity;
use crate::test_util::{buf, bytes};
use std::vec::Vec;

fn with_ring<T: Pod, R>(cap: u64, f: impl FnOnce(MpmcRing<'_, T>) -> R) -> R {
    let mut b = buf(MpmcRing::<T>::memory_size(cap).unwrap());
    let r = Region::from_mut_slice(bytes(&mut b));
    f(MpmcRing::<T>::create(r, cap).unwrap())
}

/// A ring made in memory marked zeroed writes no slot: the all-zero
/// slot must be `F(i)` for every capacity, and later laps must work.
#[test]
fn a_ring_in_zeroed_memory_starts_empty_and_wraps() {
    for cap in [1u64, 2, 3, 5, 8, 13] {
        let mut b = buf(MpmcRing::<u64>::memory_size(cap).unwrap());
        // SAFETY: `buf` is zero-filled and nothing else writes it.
        let r = unsafe { Region::from_mut_slice(bytes(&mut b)).assume_zeroed() };
        let ring = MpmcRing::<u64>::create(r, cap).unwrap();
        assert_eq!(ring.try_pop(), Err(PopError::Empty));
        for lap in 0..5 * cap + 3 {
            for k in 0..cap {
                ring.try_push(lap * 100 + k).unwrap();
            }
            assert!(matches!(ring.try_push(0), Err(PushError::Full(0))));
            for k in 0..cap {
                assert_eq!(ring.try_pop(), Ok(lap * 100 + k), "cap {cap}");
            }
            // An odd shift of the positions against the slots.
            ring.try_push(lap).unwrap();
            assert_eq!(ring.try_pop(), Ok(lap));
        }
    }
}

#[test]
fn fifo_and_wrap_around_many_times() {
    for cap in [1u64, 2, 3, 5, 8, 13, 64] {
        with_ring::<u64, _>(cap, |ring| {
            let (mut next_in, mut next_out) = (0u64, 0u64);
            for round in 0..(40 * cap + 11) {
                for _ in 0..round % (cap + 2) {
                    match ring.try_push(next_in) {
                        Ok(()) => next_in += 1,
                        Err(PushError::Full(v)) => {
                            assert_eq!(v, next_in);
                            assert_eq!(next_in - next_out, cap);
                            assert!(ring.is_full());
                            break;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
                assert_eq!(ring.len(), next_in - next_out);
                // Varying burst sizes, uncorrelated with the pushes.
                let take = (round.wrapping_mul(0x9e37_79b9) >> 7) % (cap + 2);
                for _ in 0..take {
                    match ring.try_pop() {
                        Ok(v) => {
                            assert_eq!(v, next_out);
                            next_out += 1;
                        }
                        Err(PopError::Empty) => {
                            assert_eq!(next_in, next_out);
                            assert!(ring.is_empty());
                            break;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            assert!(next_in > 10 * cap);
        });
    }
}

#[test]
fn capacity_one_and_large() {
    with_ring::<u32, _>(1, |ring| {
        assert_eq!(ring.try_pop(), Err(PopError::Empty));
        ring.try_push(1).unwrap();
        assert!(ring.try_push(2).unwrap_err().is_full());
        assert_eq!(ring.try_pop(), Ok(1));
        assert_eq!(ring.try_pop(), Err(PopError::Empty));
    });
    with_ring::<u16, _>(70_001, |ring| {
        for round in 0..2u32 {
            for i in 0..70_001u32 {
                ring.try_push((i + round) as u16).unwrap();
            }
            assert!(ring.is_full());
            for i in 0..70_001u32 {
                assert_eq!(ring.try_pop(), Ok((i + round) as u16));
            }
        }
    });
}

#[test]
fn zero_sized_and_over_aligned_elements() {
    with_ring::<(), _>(3, |ring| {
        assert_eq!(ring.push_slice(&[(); 5]), 3);
        assert!(ring.try_push(()).unwrap_err().is_full());
        assert_eq!(ring.pop_slice(&mut [(); 2]), 2);
        assert_eq!(ring.try_pop(), Ok(()));
        assert_eq!(ring.try_pop(), Err(PopError::Empty));
    });
    #[derive(Clone, Copy, PartialEq, Debug, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(64))]
    struct Line64([u64; 8]);
    assert_eq!(core::mem::size_of::<Slot<Line64>>(), 128);
    with_ring::<Line64, _>(3, |ring| {
        for round in 0..5u64 {
            ring.try_push(Line64([round; 8])).unwrap();
            let addr = ring.try_pop_with(|v| v as *const Line64 as usize);
            assert_eq!(addr.unwrap() % 64, 0);
        }
    });
}

#[test]
fn memory_size_and_invalid_capacity() {
    assert_eq!(MpmcRing::<u64>::memory_size(0), None);
    assert_eq!(MpmcRing::<u8>::memory_size(3), Some(512 + 3 * 24));
    let mut b = buf(1024);
    let r = Region::from_mut_slice(bytes(&mut b));
    assert_eq!(
        MpmcRing::<u64>::create(r, 0).unwrap_err(),
        InitError::InvalidCapacity { capacity: 0 }
    );
    assert_eq!(
        MpmcRing::<u64>::create(r, MAX_CAPACITY + 1).unwrap_err(),
        InitError::InvalidCapacity {
            capacity: MAX_CAPACITY + 1
        }
    );
}

#[test]
fn slices_across_the_wrap() {
    for cap in [5u64, 8] {
        with_ring::<u32, _>(cap, |ring| {
            let (mut next, mut expect) = (0u32, 0u32);
            let mut out = [0u32; 11];
            for round in 0..60usize {
                let src: Vec<u32> = (next..next + (round % 9) as u32).collect();
                let free = cap as usize - (next - expect) as usize;
                let n = ring.push_slice(&src);
                assert_eq!(n, src.len().min(free));
                next += n as u32;
                let want = (round * 7) % 11;
                let m = ring.pop_slice(&mut out[..want]);
                assert_eq!(m, want.min((next - expect) as usize));
                for v in &out[..m] {
                    assert_eq!(*v, expect);
                    expect += 1;
                }
            }
            assert_eq!(ring.push_slice(&[]), 0);
            assert_eq!(ring.pop_slice(&mut []), 0);
        });
    }
}

#[test]
fn in_place_push_and_pop() {
    with_ring::<[u64; 4], _>(2, |ring| {
        ring.try_push_with(|v| *v = [1, 2, 3, 4]).unwrap();
        ring.try_push_with(|v| v[0] = 9).unwrap();
        assert!(ring
            .try_push_with(|_| unreachable!())
            .unwrap_err()
            .is_full());
        assert_eq!(ring.try_pop_with(|v| v.iter().sum::<u64>()), Ok(10));
        // The second slot held zeros: only v[0] was written.
        assert_eq!(ring.try_pop_with(|v| *v), Ok([9, 0, 0, 0]));
        assert_eq!(ring.try_pop_with(|_| ()), Err(PopError::Empty));
    });
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn blocked_calls_recover_slots_of_dead_or_stalled_owners() {
    let long = Duration::from_secs(10);
    with_ring::<u64, _>(2, |r| {
        let b = r.parts.body;
        // A producer took the slot of position 0 and was killed before
        // recording its identity or moving `tail` on: the next push walks
        // past the held slot; a blocking pop steps over it once its pid
        // is found dead, a non-blocking one does not.
        let dead = u64::from(dead_pid());
        r.slot(0).seq.store(busy(0, dead), Ordering::Relaxed);
        r.try_push(7).unwrap();
        assert_eq!(b.tail.pos.load(Ordering::Relaxed), 2);
        assert_eq!(r.try_pop(), Err(PopError::Empty));
        assert_eq!(r.pop_timeout(long), Ok(7));

        // A producer died writing position 2 (slot 0), before recording
        // its identity: its pid decides.
        let me = Identity::current().to_word();
        r.slot(2)
            .seq
            .store(busy(free_stamp(2), dead), Ordering::Relaxed);
        b.tail.pos.store(3, Ordering::Relaxed);
        r.try_push(8).unwrap();
        assert_eq!(r.pop_timeout(long), Ok(8));

        // A live owner's slot is never taken from it, however long.
        let slot = r.slot(4);
        slot.seq.store(busy(free_stamp(4), me), Ordering::Relaxed);
        slot.owner.store(me, Ordering::Relaxed);
        b.tail.pos.store(5, Ordering::Relaxed);
        r.try_push(9).unwrap();
        assert_eq!(
            r.pop_timeout(Duration::from_millis(30)),
            Err(PopError::Empty)
        );
        // SAFETY: the slot is ours (W with our pid), nobody else
        // touches it.
        slot.value.with_mut(|p| unsafe { p.write(10) });
        r.publish(slot, 4);
        assert_eq!(r.pop_timeout(long), Ok(10));
        assert_eq!(r.pop_timeout(long), Ok(9));

        // A consumer died reading position 6 of a full ring: a blocking
        // push frees its slot (its value is lost).
        r.try_push(11).unwrap();
        r.try_push(12).unwrap();
        r.slot(6)
            .seq
            .store(busy(full_stamp(6), dead), Ordering::Relaxed);
        b.head.pos.store(7, Ordering::Relaxed);
        assert!(matches!(r.try_push(13), Err(PushError::Full(13))));
        r.push_timeout(13, long).unwrap();
        assert_eq!(r.try_pop(), Ok(12));
        assert_eq!(r.try_pop(), Ok(13));
        assert_eq!(r.try_pop(), Err(PopError::Empty));
    });
}

/// A slot held under a pid that runs again (here: ours) by a process
/// that had that pid before and died (its recorded start time differs)
/// is recovered, and its record cleared; held under a live pid with no
/// record, or with the live process's own record, it is not.
#[test]
fn a_dead_owner_whose_pid_was_reused_is_recovered() {
    let short = Duration::from_millis(20);
    let long = Duration::from_secs(10);
    let me = Identity::current();
    let earlier = Identity::new(me.pid(), Some(me.start_ticks().unwrap().wrapping_sub(1))).unwrap();
    with_ring::<u64, _>(2, |r| {
        let b = r.parts.body;
        // A producer writing position 0 under our pid, no record yet:
        // the pid decides, alive.
        let slot = r.slot(0);
        slot.seq
            .store(busy(free_stamp(0), me.to_word()), Ordering::Relaxed);
        b.tail.pos.store(1, Ordering::Relaxed);
        r.try_push(1).unwrap();
        assert_eq!(r.pop_timeout(short), Err(PopError::Empty));
        // Our own record: alive.
        slot.owner.store(me.to_word(), Ordering::Relaxed);
        assert_eq!(r.pop_timeout(short), Err(PopError::Empty));
        // The record of the earlier process with our pid: dead, so the
        // slot is stepped over and the record cleared.
        slot.owner.store(earlier.to_word(), Ordering::Relaxed);
        assert_eq!(r.pop_timeout(long), Ok(1));
        assert_eq!(slot.owner.load(Ordering::Relaxed), 0);

        // A consumer reading position 2 (slot 0) of a full ring, the
        // same three ways.
        r.try_push(2).unwrap();
        r.try_push(3).unwrap();
        let slot = r.slot(2);
        slot.seq
            .store(busy(full_stamp(2), me.to_word()), Ordering::Relaxed);
        b.head.pos.store(3, Ordering::Relaxed);
        slot.owner.store(0, Ordering::Relaxed);
        assert!(matches!(r.push_timeout(4, short), Err(PushError::Full(4))));
        slot.owner.store(me.to_word(), Ordering::Relaxed);
        assert!(matches!(r.push_timeout(4, short), Err(PushError::Full(4))));
        slot.owner.store(earlier.to_word(), Ordering::Relaxed);
        r.push_timeout(4, long).unwrap();
        assert_eq!(r.try_pop(), Ok(3));
        assert_eq!(r.try_pop(), Ok(4));
        // Every hand-on left `owner` cleared.
        for i in 0..2 {
            assert_eq!(r.slot(i).owner.load(Ordering::Relaxed), 0);
        }
    });
}

#[test]
fn pop_ref_holds_its_slot_until_dropped() {
    with_ring::<u64, _>(2, |r| {
        assert_eq!(r.try_pop_ref().map(|g| *g), Err(PopError::Empty));
        r.try_push(1).unwrap();
        r.try_push(2).unwrap();
        let one = r.try_pop_ref().unwrap();
        assert_eq!((*one, one.position()), (1, 0));
        assert_eq!(std::format!("{one:?}"), "PopRef(1)");
        r.try_push(3).unwrap_err(); // slot 0 is still held
        let two = r.pop_ref_deadline(None).unwrap();
        assert_eq!(*two, 2);
        drop(one);
        r.try_push(3).unwrap();
        assert!(matches!(r.try_push(4), Err(PushError::Full(4))));
        drop(two);
        r.try_push(4).unwrap();
        assert_eq!(r.try_pop(), Ok(3));
        r.close();
        assert_eq!(*r.pop_ref_deadline(None).unwrap(), 4);
        assert_eq!(
            r.pop_ref_deadline(None).map(|g| *g),
            Err(PopError::Disconnected)
        );
    });
}

#[test]
fn push_ref_publishes_on_commit_and_skips_otherwise() {
    with_ring::<[u64; 4], _>(2, |r| {
        let mut g = r.try_push_ref().unwrap();
        *g = [1, 2, 3, 4];
        assert_eq!(g.position(), 0);
        assert!(std::format!("{g:?}").starts_with("PushRef("));
        assert_eq!(r.try_pop(), Err(PopError::Empty), "not before the commit");
        g.commit();
        // Dropped uncommitted, and by a panic: both skipped.
        drop(r.try_push_ref().unwrap());
        assert_eq!(r.try_pop(), Ok([1, 2, 3, 4]));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut g = r.push_ref_deadline(None).unwrap();
            g[0] = 9;
            panic!("writer fails");
        }));
        assert!(caught.is_err());
        // Stepping over both skipped slots frees them.
        assert_eq!(r.try_pop(), Err(PopError::Empty));
        let g = r.push_ref_deadline(None).unwrap();
        assert_eq!(g.position(), 3);
        g.commit();
        assert!(r.try_pop().is_ok(), "committed (stale data)");
        assert_eq!(r.try_pop(), Err(PopError::Empty));
        r.try_push([0; 4]).unwrap();
        r.try_push([0; 4]).unwrap();
        assert!(matches!(r.try_push_ref(), Err(PushError::Full(()))));
        r.close();
        assert!(matches!(
            r.push_ref_deadline(None),
            Err(PushError::Disconnected(()))
        ));
    });
}

#[test]
fn seq_word_fields() {
    assert_eq!(stamp_diff(free_stamp(0), full_stamp(u64::MAX)), 1);
    assert_eq!(stamp_diff(full_stamp(5), free_stamp(5)), 1);
    assert_eq!(stamp_diff(free_stamp(5), full_stamp(5)), -1);
    let cap = MAX_CAPACITY;
    assert_eq!(stamp_diff(full_stamp(cap), full_stamp(0)), 2 * cap as i64);
    let id = Identity::new(4_194_303, Some(99)).unwrap().to_word();
    let w = busy(full_stamp(3), id);
    assert_eq!((owner_pid(w), stamp(w), w & SKIPPED), (4_194_303, 7, 0));
    assert_eq!(owner_pid(busy(1, 0)), 0, "no identity: unknown");
}

#[test]
fn panicking_closures_skip_or_free_the_slot() {
    with_ring::<u64, _>(2, |ring| {
        ring.try_push(1).unwrap();
        let r = std::panic::catch_unwind(|| ring.try_push_with(|_| panic!("writer")));
        assert!(r.is_err());
        ring.try_push(3).unwrap_err(); // full: the skipped slot counts
        assert_eq!(ring.try_pop(), Ok(1));
        ring.try_push(3).unwrap();
        // The skipped slot is stepped over, and freed.
        assert_eq!(ring.try_pop(), Ok(3));
        assert_eq!(ring.try_pop(), Err(PopError::Empty));
        ring.try_push(4).unwrap();
        ring.try_push(5).unwrap();
        let r = std::panic::catch_unwind(|| ring.try_pop_with(|_| panic!("reader")));
        assert!(r.is_err());
        assert_eq!(
            ring.try_pop(),
            Ok(5),
            "the value read by the panic is consumed"
        );
        // A skipped slot in the middle of a batch pop.
        ring.try_push(6).unwrap();
        let _ = std::panic::catch_unwind(|| ring.try_push_with(|_| panic!()));
        let mut out = [0; 4];
        assert_eq!(ring.pop_slice(&mut out), 1);
        assert_eq!(out[0], 6);
        ring.try_push(7).unwrap();
        assert_eq!(ring.pop_slice(&mut out), 1);
        assert_eq!(out[0], 7);
    });
}

#[test]
fn close_drains_then_disconnects() {
    with_ring::<u64, _>(4, |ring| {
        ring.try_push(1).unwrap();
        ring.try_push(2).unwrap();
        assert!(!ring.is_closed());
        ring.close();
        ring.close();
        assert!(ring.is_closed());
        assert!(ring.try_push(3).unwrap_err().is_disconnected());
        assert!(ring.push(3).unwrap_err().is_disconnected());
        assert!(ring.try_push_with(|_| ()).unwrap_err().is_disconnected());
        assert_eq!(ring.push_slice(&[3, 4]), 0);
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.try_pop(), Ok(1));
        assert_eq!(ring.pop(), Ok(2));
        assert_eq!(ring.try_pop(), Err(PopError::Disconnected));
        assert_eq!(ring.pop(), Err(PopError::Disconnected));
        assert_eq!(
            ring.pop_timeout(Duration::from_millis(1)),
            Err(PopError::Disconnected)
        );
        assert_eq!(ring.pop_slice(&mut [0; 2]), 0);
        assert!(std::format!("{ring:?}").contains("closed: true"));
    });
}

#[test]
fn timeouts_return_full_and_empty() {
    with_ring::<u64, _>(1, |ring| {
        let ring = ring.with_spin(Spin::for_duration(Duration::from_micros(5)));
        assert_eq!(
            ring.pop_timeout(Duration::from_millis(20)),
            Err(PopError::Empty)
        );
        assert_eq!(
            ring.pop_deadline(Some(Deadline::after(Duration::ZERO))),
            Err(PopError::Empty)
        );
        ring.push_timeout(1, Duration::ZERO).unwrap();
        assert!(matches!(
            ring.push_timeout(2, Duration::from_millis(20)),
            Err(PushError::Full(2))
        ));
        assert_eq!(ring.pop_timeout(Duration::ZERO), Ok(1));
    });
}

#[test]
fn attach_validates() {
    let mut b = buf(4096);
    let r = Region::from_mut_slice(bytes(&mut b));
    assert_eq!(
        MpmcRing::<u64>::attach(r).unwrap_err(),
        AttachError::NotReady
    );
    let ring = MpmcRing::<u64>::create_tagged(r, 6, 5).unwrap();
    ring.try_push(42).unwrap();
    let other = MpmcRing::<u64>::attach_tagged(r, 5).unwrap();
    assert_eq!(other.capacity(), 6);
    assert_eq!(other.try_pop(), Ok(42));
    assert!(MpmcRing::<u64>::attach_tagged_timeout(r, 5, Duration::ZERO).is_ok());
    assert!(matches!(
        MpmcRing::<u64>::attach_timeout(r, Duration::ZERO).unwrap_err(),
        AttachError::TypeMismatch { .. }
    ));
    assert!(matches!(
        MpmcRing::<i32>::attach_tagged(r, 5).unwrap_err(),
        AttachError::TypeMismatch { .. }
    ));
}

/// A tiny deterministic generator for garbage.
fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn corrupt_memory_never_goes_out_of_bounds_or_hangs() {
    const TAIL: usize = 128;
    const HEAD: usize = 256;
    const SLOTS: usize = 512;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for cap in [1u64, 3, 4] {
        for trial in 0..300 {
            let mut b = buf(MpmcRing::<u64>::memory_size(cap).unwrap());
            let mem = bytes(&mut b);
            {
                let r = Region::from_mut_slice(&mut *mem);
                let ring = MpmcRing::<u64>::create(r, cap).unwrap();
                for i in 0..trial % 5 {
                    let _ = ring.try_push(i);
                }
            }
            // Overwrite indices and sequence numbers with small or
            // arbitrary values.
            let g = |s: &mut u64| {
                let x = xorshift(s);
                if x & 1 == 0 {
                    x >> 60
                } else {
                    x
                }
            };
            let mut poke = |off: usize, v: u64| mem[off..off + 8].copy_from_slice(&v.to_ne_bytes());
            if trial % 3 != 0 {
                poke(TAIL, g(&mut seed));
            }
            if trial % 3 != 1 {
                poke(HEAD, g(&mut seed));
            }
            for i in 0..cap as usize {
                if xorshift(&mut seed) & 1 == 0 {
                    poke(SLOTS + 24 * i, g(&mut seed));
                    if xorshift(&mut seed) & 1 == 0 {
                        poke(SLOTS + 24 * i + 8, g(&mut seed));
                    }
                }
            }
            let ring = MpmcRing::<u64>::attach(Region::from_mut_slice(&mut *mem)).unwrap();
            for k in 0..20u64 {
                let _ = ring.try_push(k);
                let _ = ring.try_pop();
                let _ = ring.push_slice(&[1, 2, 3]);
                let _ = ring.pop_slice(&mut [0; 3]);
                let _ = ring.try_push_with(|v| *v = 1);
                let _ = ring.try_pop_with(|v| *v);
                let _ = ring.push_timeout(k, Duration::ZERO);
                let _ = ring.pop_timeout(Duration::ZERO);
                assert!(ring.len() <= cap);
            }
            // Blocked calls long enough to recover slots (ask whether
            // the garbage owner pids live), on some trials.
            if trial % 10 == 0 {
                let slow = ring.with_spin(Spin::NONE);
                let wait = || Some(Deadline::after(Duration::from_millis(2)));
                let _ = slow.pop_deadline(wait());
                let _ = slow.push_deadline(5, wait());
                let _ = slow.pop_with_deadline(|v| *v, wait());
                let _ = slow.push_with_deadline(|v| *v = 6, wait());
                assert!(ring.len() <= cap);
            }
        }
    }
    // A sequence number in no state a slot can be in (skipped and busy,
    // skipped with an even stamp, an owner without the busy bit) is
    // reported.
    for word in [SKIPPED | BUSY | 5, SKIPPED | 4, 1 << 40 | 4] {
        let mut b = buf(MpmcRing::<u64>::memory_size(4).unwrap());
        let mem = bytes(&mut b);
        MpmcRing::<u64>::create(Region::from_mut_slice(&mut *mem), 4).unwrap();
        mem[SLOTS..SLOTS + 8].copy_from_slice(&word.to_ne_bytes());
        let ring = MpmcRing::<u64>::attach(Region::from_mut_slice(&mut *mem)).unwrap();
        assert!(matches!(ring.try_push(1), Err(PushError::Corrupt(1))));
        assert_eq!(ring.try_pop(), Err(PopError::Corrupt));
    }
    // A stamp that says "already pushed" at a `tail` that has not moved
    // reads as a stale hint: pushes walk on past it.
    let mut b = buf(MpmcRing::<u64>::memory_size(4).unwrap());
    let mem = bytes(&mut b);
    MpmcRing::<u64>::create(Region::from_mut_slice(&mut *mem), 4).unwrap();
    mem[SLOTS..SLOTS + 8].copy_from_slice(&18u64.to_ne_bytes());
    let ring = MpmcRing::<u64>::attach(Region::from_mut_slice(&mut *mem)).unwrap();
    // (Slot 0 says "free for 9": the walk jumps to 6, whose slot is
    // still in its first lap: the ring looks full.)
    assert!(matches!(ring.try_push(1), Err(PushError::Full(1))));
}

/// `head` is a hint moved on by plain stores, so a consumer that stalls
/// between its load and its store can move it back, by laps: pops walk
/// (and jump) forward from there instead of calling the ring corrupt, and
/// a slot whose stamp is beyond anything pushed still is.
#[test]
fn a_head_stale_by_laps_is_walked_forward() {
    with_ring::<u64, _>(4, |r| {
        let b = r.parts.body;
        for i in 0..20 {
            r.try_push(i).unwrap();
            assert_eq!(r.try_pop(), Ok(i));
        }
        // Five laps back: slot 0 says "free for 20".
        b.head.pos.store(0, Ordering::Relaxed);
        assert_eq!(r.try_pop(), Err(PopError::Empty));
        assert_eq!(b.head.pos.load(Ordering::Relaxed), 20);
        b.head.pos.store(1, Ordering::Relaxed);
        r.try_push(20).unwrap();
        r.try_push(21).unwrap();
        assert!(r.len() <= 4);
        assert_eq!(r.try_pop(), Ok(20));
        b.head.pos.store(2, Ordering::Relaxed);
        assert_eq!(r.try_pop(), Ok(21));
        assert_eq!(r.try_pop(), Err(PopError::Empty));
        // `tail` stale by laps too: pushes jump forward the same way.
        b.tail.pos.store(2, Ordering::Relaxed);
        r.try_push(22).unwrap();
        assert_eq!(b.tail.pos.load(Ordering::Relaxed), 23);
        assert_eq!(r.try_pop(), Ok(22));
    });
}

/// Stamps that keep saying "a later lap" cannot keep a call jumping:
/// after `LAP_JUMPS` jumps it reports the ring full or empty.
#[test]
fn lap_jumps_are_bounded() {
    with_ring::<u64, _>(4, |r| {
        let mut jumps = 0;
        let mut pos = 0u64;
        for _ in 0..LAP_JUMPS {
            // The slot of `pos` says "free for a position ten laps on".
            let seq = free_stamp(pos + 40);
            pos = walk(r.capacity, pos, seq, free_stamp(pos), &mut jumps).unwrap();
        }
        assert_eq!(pos, LAP_JUMPS as u64 * 37);
        let seq = free_stamp(pos + 40);
        assert_eq!(
            walk(r.capacity, pos, seq, free_stamp(pos), &mut jumps),
            Err(Miss::Idle)
        );
        // Within a lap, a walk steps and never counts a jump.
        let mut jumps = 0;
        assert_eq!(
            walk(r.capacity, 5, full_stamp(5), free_stamp(5), &mut jumps),
            Ok(6)
        );
        assert_eq!(
            walk(r.capacity, 5, free_stamp(9), free_stamp(5), &mut jumps),
            Ok(6)
        );
        assert_eq!(jumps, 0);
    });
}

#[test]
fn errors_are_shared_with_spsc() {
    let e: crate::spsc::PushError<u8> = PushError::Full(1);
    assert_eq!(std::format!("{e:?}"), "Full(..)");
    assert_eq!(
        std::format!("{}", PopError::Corrupt),
        "ring indices are corrupt"
    );
}

#[test]
fn threads_stress_with_checksums() {
    const PER: u64 = 60_000;
    // `spin` NONE sends every wait through the sleeper counts and naps.
    for (cap, producers, consumers, spin) in [
        (1u64, 2u64, 2usize, Spin::DEFAULT),
        (1, 2, 2, Spin::NONE),
        (6, 3, 2, Spin::DEFAULT),
        (64, 2, 3, Spin::NONE),
        (1000, 1, 1, Spin::DEFAULT),
        (1000, 1, 1, Spin::NONE),
    ] {
        with_ring::<[u64; 2], _>(cap, |ring| {
            let ring = ring.with_spin(spin);
            let (sum, count) = std::thread::scope(|s| {
                let cons: Vec<_> = (0..consumers)
                    .map(|c| {
                        s.spawn(move || {
                            let mut last = std::vec![None::<u64>; producers as usize];
                            let (mut sum, mut count) = (0u64, 0u64);
                            let mut out = [[0u64; 2]; 5];
                            let mut ops = 0usize;
                            let mut check = |v: [u64; 2]| {
                                let (p, i) = (v[0] >> 32, v[0] & 0xffff_ffff);
                                assert_eq!(v[1], v[0].wrapping_mul(31));
                                // Each producer's values come in order.
                                assert!(last[p as usize].is_none_or(|l| l < i));
                                last[p as usize] = Some(i);
                                sum = sum.wrapping_add(v[0]);
                                count += 1;
                            };
                            loop {
                                ops += 1;
                                let r = match (c + ops) % 3 {
                                    0 => ring.pop(),
                                    1 => ring.try_pop_with(|v| *v).or_else(|e| match e {
                                        PopError::Empty => ring.pop(),
                                        e => Err(e),
                                    }),
                                    _ => {
                                        let n = ring.pop_slice(&mut out);
                                        if n > 0 {
                                            for v in &out[..n] {
                                                check(*v);
                                            }
                                            continue;
                                        }
                                        ring.pop()
                                    }
                                };
                                match r {
                                    Ok(v) => check(v),
                                    Err(PopError::Disconnected) => break,
                                    Err(e) => panic!("{e:?}"),
                                }
                            }
                            (sum, count)
                        })
                    })
                    .collect();
                let prods: Vec<_> = (0..producers)
                    .map(|p| {
                        s.spawn(move || {
                            let mk = |i: u64| {
                                let k = (p << 32) | i;
                                [k, k.wrapping_mul(31)]
                            };
                            let mut i = 0;
                            while i < PER {
                                match i % 4 {
                                    0 => ring.push(mk(i)).unwrap(),
                                    1 => {
                                        if ring.try_push_with(|v| *v = mk(i)).is_err() {
                                            ring.push(mk(i)).unwrap();
                                        }
                                    }
                                    _ => {
                                        let batch: Vec<_> = (i..(i + 2).min(PER)).map(mk).collect();
                                        let n = ring.push_slice(&batch);
                                        if n == 0 {
                                            ring.push(batch[0]).unwrap();
                                            i += 1;
                                        } else {
                                            i += n as u64;
                                        }
                                        continue;
                                    }
                                }
                                i += 1;
                            }
                        })
                    })
                    .collect();
                for h in prods {
                    h.join().unwrap();
                }
                ring.close();
                cons.into_iter()
                    .map(|h| h.join().unwrap())
                    .fold((0u64, 0u64), |a, b| (a.0.wrapping_add(b.0), a.1 + b.1))
            });
            let want = (0..producers)
                .flat_map(|p| (0..PER).map(move |i| (p << 32) | i))
                .fold(0u64, u64::wrapping_add);
            assert_eq!(count, producers * PER);
            assert_eq!(sum, want);
        });
    }
}
