extern crate std;
use super::*;
use crate::test_util::{buf, bytes};
use core::time::Duration;
use std::format;
use std::vec::Vec;

fn with_ring<T: Pod, R>(cap: u64, f: impl FnOnce(SpscRing<'_, T>) -> R) -> R {
    let mut b = buf(SpscRing::<T>::memory_size(cap).unwrap());
    let r = Region::from_mut_slice(bytes(&mut b));
    f(SpscRing::<T>::create(r, cap).unwrap())
}

#[test]
fn fifo_and_wrap_around_many_times() {
    for cap in [1u64, 2, 3, 5, 7, 8, 64] {
        with_ring::<u64, _>(cap, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            let mut next_in = 0u64;
            let mut next_out = 0u64;
            // Pushes in bursts of varying size, so both cursors wrap
            // many times at every offset.
            for round in 0..(50 * cap + 17) {
                let burst = round % (cap + 1);
                for _ in 0..burst {
                    match tx.try_push(next_in) {
                        Ok(()) => next_in += 1,
                        Err(PushError::Full(v)) => {
                            assert_eq!(v, next_in);
                            assert_eq!(next_in - next_out, cap);
                            break;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
                assert_eq!(ring.len(), next_in - next_out);
                let take = (round * 7) % (cap + 1);
                for _ in 0..take {
                    match rx.try_pop() {
                        Ok(v) => {
                            assert_eq!(v, next_out);
                            next_out += 1;
                        }
                        Err(PopError::Empty) => {
                            assert_eq!(next_in, next_out);
                            break;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            while let Ok(v) = rx.try_pop() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
            assert_eq!(next_in, next_out);
            assert!(next_in > 10 * cap);
        });
    }
}

#[test]
fn capacity_one_edges() {
    with_ring::<u32, _>(1, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        assert!(ring.is_empty() && !ring.is_full());
        assert!(rx.is_empty());
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
        tx.try_push(1).unwrap();
        assert!(ring.is_full() && tx.is_full());
        assert_eq!(tx.free_slots(), 0);
        assert_eq!(tx.try_push(2).unwrap_err().into_inner(), 2);
        assert!(tx.write_slot().is_none());
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.peek(), Some(1));
        assert_eq!(rx.try_pop(), Ok(1));
        assert_eq!(tx.free_slots(), 1);
        assert!(!tx.is_full());
        assert_eq!(rx.peek(), None);
    });
}

#[test]
fn large_and_odd_capacities() {
    with_ring::<u16, _>(100_003, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        for round in 0..3u32 {
            for i in 0..100_003u32 {
                tx.try_push((i ^ round) as u16).unwrap();
            }
            assert!(tx.try_push(0).unwrap_err().is_full());
            for i in 0..100_003u32 {
                assert_eq!(rx.try_pop(), Ok((i ^ round) as u16));
            }
            assert_eq!(rx.try_pop(), Err(PopError::Empty));
        }
    });
}

#[test]
fn zero_sized_and_over_aligned_elements() {
    with_ring::<(), _>(3, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        for _ in 0..3 {
            tx.try_push(()).unwrap();
        }
        assert!(tx.try_push(()).unwrap_err().is_full());
        assert_eq!(rx.pop_slice(&mut [(); 5]), 3);
        assert_eq!(tx.push_slice(&[(); 4]), 3);
    });
    #[derive(Clone, Copy, PartialEq, Debug, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(64))]
    struct Line64([u64; 8]);
    with_ring::<Line64, _>(3, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        for round in 0..5u64 {
            assert_eq!(tx.push_slice(&[Line64([round; 8]); 2]), 2);
            let s = rx.read_slot().unwrap();
            assert_eq!(&*s as *const Line64 as usize % 64, 0);
            assert_eq!(*s, Line64([round; 8]));
            drop(s);
            assert_eq!(rx.try_pop(), Ok(Line64([round; 8])));
        }
    });
}

#[test]
fn memory_size_and_invalid_capacity() {
    assert_eq!(SpscRing::<u64>::memory_size(0), None);
    assert_eq!(SpscRing::<u64>::memory_size(MAX_CAPACITY + 1), None);
    assert_eq!(SpscRing::<u8>::memory_size(3), Some(512 + 8));
    let mut b = buf(4096);
    let r = Region::from_mut_slice(bytes(&mut b));
    assert_eq!(
        SpscRing::<u64>::create(r, 0).unwrap_err(),
        InitError::InvalidCapacity { capacity: 0 }
    );
    assert!(matches!(
        SpscRing::<u64>::create(r, 1000).unwrap_err(),
        InitError::TooSmall { .. }
    ));
    #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(256))]
    struct Huge([u8; 256]);
    assert_eq!(SpscRing::<Huge>::memory_size(1), None);
    assert_eq!(
        SpscRing::<Huge>::create(r, 1).unwrap_err(),
        InitError::UnsupportedType
    );
    assert!(matches!(
        SpscRing::<Huge>::attach(r).unwrap_err(),
        AttachError::TypeMismatch { .. }
    ));
}

#[test]
fn slices_across_the_wrap() {
    with_ring::<u32, _>(5, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        let mut expect = 0u32;
        let mut next = 0u32;
        let mut out = [0u32; 7];
        for round in 0..40usize {
            let want = round % 8;
            let src: Vec<u32> = (next..next + want as u32).collect();
            let free = 5 - (next - expect) as usize;
            let n = tx.push_slice(&src);
            assert_eq!(n, want.min(free));
            next += n as u32;
            let take = (round * 3) % 8;
            let m = rx.pop_slice(&mut out[..take.min(7)]);
            for v in &out[..m] {
                assert_eq!(*v, expect);
                expect += 1;
            }
        }
        // Fill completely: a partial batch when there is less room.
        let free = tx.free_slots() as usize;
        let src: Vec<u32> = (next..next + 9).collect();
        assert_eq!(tx.push_slice(&src), free);
        assert_eq!(tx.push_slice(&src), 0);
        next += free as u32;
        let m = rx.pop_slice(&mut out);
        assert_eq!(m, 5);
        for v in &out[..m] {
            assert_eq!(*v, expect);
            expect += 1;
        }
        assert_eq!(expect, next);
        assert_eq!(rx.pop_slice(&mut out), 0);
        assert_eq!(tx.push_slice(&[]), 0);
    });
}

#[test]
fn write_slot_commit_and_abort() {
    with_ring::<[u32; 4], _>(2, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        {
            let mut s = tx.write_slot().unwrap();
            *s = [9; 4];
            // dropped: nothing published
        }
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
        let mut s = tx.write_slot().unwrap();
        s[0] = 1;
        s[1] = 2;
        assert_eq!(s[3], 9, "stale data of the aborted write");
        s.commit();
        tx.try_push([3; 4]).unwrap();
        assert!(tx.write_slot().is_none());
        {
            let r = rx.read_slot().unwrap();
            assert_eq!(r[..2], [1, 2]);
            // dropping releases
        }
        let r = rx.read_slot().unwrap();
        assert_eq!(*r, [3; 4]);
        r.release();
        assert!(rx.read_slot().is_none());
        assert!(tx.write_slot().is_some());
    });
}

#[test]
fn roles_are_unique_and_reclaimable() {
    with_ring::<u8, _>(4, |ring| {
        let me = crate::sync::current_pid();
        let tx = ring.producer().unwrap();
        assert_eq!(tx.claimed(), Claimed::Fresh);
        assert_eq!(ring.producer().unwrap_err(), RoleTaken { pid: me });
        assert_eq!(ring.split().unwrap_err(), RoleTaken { pid: me });
        let rx = ring.consumer().unwrap();
        assert_eq!(ring.consumer().unwrap_err(), RoleTaken { pid: me });
        drop(tx);
        drop(rx);
        let (tx, rx) = ring.split().unwrap();
        assert_eq!(
            (tx.claimed(), rx.claimed()),
            (Claimed::Fresh, Claimed::Fresh)
        );
    });
}

#[test]
fn dead_holder_is_taken_over_and_value_redelivered() {
    with_ring::<u64, _>(4, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.try_push(10).unwrap();
        tx.try_push(11).unwrap();
        // A consumer "dies" while holding a read slot: forget the guard
        // and the handle, then make the role word name a dead pid.
        let s = rx.read_slot().unwrap();
        assert_eq!(*s, 10);
        core::mem::forget(s);
        core::mem::forget(rx);
        let dead = (1 << 22) - 7; // started at tick 5: cannot be alive
        ring.parts.body.control.consumer.claim().unwrap_err();
        force_role(&ring.parts.body.control.consumer, dead);
        let mut rx2 = ring.consumer().unwrap();
        assert_eq!(rx2.claimed(), Claimed::FromDead(dead));
        assert_eq!(rx2.try_pop(), Ok(10), "at-least-once: read again");
        assert_eq!(rx2.try_pop(), Ok(11));
        drop(tx);
    });
}

#[test]
fn hand_over_and_take_over_keep_the_stream() {
    with_ring::<u64, _>(4, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.try_push(1).unwrap();
        tx.try_push(2).unwrap();
        assert_eq!(rx.try_pop(), Ok(1));
        assert!(!ring.in_hand_over());
        let holder = tx.hand_over().unwrap();
        assert!(ring.in_hand_over());
        // In transit: still held, the consumer does not see it gone.
        assert_eq!(rx.try_pop(), Ok(2));
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
        assert_eq!(ring.producer().unwrap_err(), RoleTaken { pid: holder });
        assert!(ring.take_over_producer(holder + 1).is_none());
        let mut tx = ring.take_over_producer(holder).unwrap();
        assert!(!ring.in_hand_over());
        assert_eq!(tx.claimed(), Claimed::Fresh);
        assert!(ring.take_over_producer(holder).is_none(), "taken once");
        tx.try_push(3).unwrap();
        assert_eq!(rx.try_pop(), Ok(3));
        let holder = rx.hand_over().unwrap();
        let mut rx = ring.take_over_consumer(holder).unwrap();
        tx.try_push(4).unwrap();
        assert_eq!(rx.try_pop(), Ok(4));
        drop(tx);
        assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
        // A released role is not taken over (the token was used up).
        assert!(ring.take_over_producer(holder).is_none());
    });
}

/// Overwrites a role word (as a dead process would have left it).
/// Makes `r` look held by process `pid`, dead (its start time is one
/// no process of that pid has).
fn force_role(r: &RoleWord, pid: u32) {
    r.force(crate::role::dead_identity(pid));
}

#[test]
fn drop_producer_then_consumer_drains_then_disconnected() {
    with_ring::<u64, _>(4, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.try_push(1).unwrap();
        tx.try_push(2).unwrap();
        drop(tx);
        assert_eq!(rx.try_pop(), Ok(1));
        assert_eq!(rx.pop(), Ok(2));
        assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
        assert_eq!(rx.pop(), Err(PopError::Disconnected));
        assert_eq!(
            rx.pop_timeout(Duration::from_millis(1)),
            Err(PopError::Disconnected)
        );
        // A new producer resumes the ring.
        let mut tx = ring.producer().unwrap();
        tx.try_push(3).unwrap();
        assert_eq!(rx.try_pop(), Ok(3));
    });
}

#[test]
fn drop_consumer_then_full_producer_is_disconnected() {
    with_ring::<u64, _>(2, |ring| {
        let (mut tx, rx) = ring.split().unwrap();
        drop(rx);
        tx.try_push(1).unwrap(); // room: pushes are not checked
        tx.try_push(2).unwrap();
        assert!(tx.try_push(3).unwrap_err().is_disconnected());
        assert!(tx.push(3).unwrap_err().is_disconnected());
    });
}

#[test]
fn dead_peer_is_noticed_by_blocking_calls() {
    with_ring::<u64, _>(1, |ring| {
        let (mut tx, rx) = ring.split().unwrap();
        core::mem::forget(rx);
        force_role(&ring.parts.body.control.consumer, (1 << 22) - 9);
        tx.try_push(1).unwrap();
        // Full, consumer dead but not closed: try_push says Full, the
        // blocking push notices the death.
        assert!(tx.try_push(2).unwrap_err().is_full());
        assert!(tx.push(2).unwrap_err().is_disconnected());
    });
    with_ring::<u64, _>(1, |ring| {
        let (tx, mut rx) = ring.split().unwrap();
        core::mem::forget(tx);
        force_role(&ring.parts.body.control.producer, (1 << 22) - 9);
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
        assert_eq!(rx.pop(), Err(PopError::Disconnected));
    });
}

#[test]
fn timeouts_return_full_and_empty() {
    with_ring::<u64, _>(1, |ring| {
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.set_spin(Spin::NONE);
        rx.set_spin(Spin::for_duration(Duration::from_micros(10)));
        assert_eq!(
            rx.pop_timeout(Duration::from_millis(30)),
            Err(PopError::Empty)
        );
        assert_eq!(
            rx.pop_deadline(Some(Deadline::after(Duration::ZERO))),
            Err(PopError::Empty)
        );
        tx.push_timeout(1, Duration::ZERO).unwrap();
        let e = tx.push_timeout(2, Duration::from_millis(30)).unwrap_err();
        assert!(matches!(e, PushError::Full(2)));
        assert!(tx
            .push_deadline(2, Some(Deadline::after(Duration::ZERO)))
            .unwrap_err()
            .is_full());
        assert_eq!(rx.pop_timeout(Duration::ZERO), Ok(1));
    });
}

#[test]
fn attach_validates() {
    let mut b = buf(4096);
    let r = Region::from_mut_slice(bytes(&mut b));
    assert_eq!(
        SpscRing::<u64>::attach(r).unwrap_err(),
        AttachError::NotReady
    );
    assert_eq!(
        SpscRing::<u64>::attach_timeout(r, Duration::from_millis(5)).unwrap_err(),
        AttachError::NotReady
    );
    let ring = SpscRing::<u64>::create_tagged(r, 10, 77).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.try_push(5).unwrap();
    let other = SpscRing::<u64>::attach_tagged(r, 77).unwrap();
    assert_eq!(other.capacity(), 10);
    assert_eq!(other.len(), 1);
    let mut rx = other.consumer().unwrap();
    assert_eq!(rx.try_pop(), Ok(5));
    assert!(SpscRing::<u64>::attach_tagged_timeout(r, 77, Duration::ZERO).is_ok());
    assert!(matches!(
        SpscRing::<u64>::attach(r).unwrap_err(),
        AttachError::TypeMismatch { .. }
    ));
    assert!(matches!(
        SpscRing::<u64>::attach_tagged(r, 78).unwrap_err(),
        AttachError::TypeMismatch { .. }
    ));
    assert!(matches!(
        SpscRing::<u32>::attach_tagged(r, 77).unwrap_err(),
        AttachError::TypeMismatch { .. }
    ));
    assert_eq!(
        SpscRing::<u64>::create(r, 10).unwrap_err(),
        InitError::AlreadyInitialized
    );
}

/// Writes `v` at byte offset `off` of the region (a hostile process).
fn poke(mem: &mut [u8], off: usize, v: u64) {
    mem[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

#[test]
fn corrupt_indices_are_reported_never_out_of_bounds() {
    const TAIL: usize = 128;
    const HEAD: usize = 256;
    for (tail, head) in [
        (100u64, 0u64),
        (0, 5),
        (u64::MAX, 3),
        (7, 7 + (1 << 40)),
        (u64::MAX, u64::MAX - 4), // valid: 4 in a ring of 4, near wrap
    ] {
        let mut b = buf(4096);
        let mem = bytes(&mut b);
        let cap = 4u64;
        {
            let r = Region::from_mut_slice(&mut *mem);
            SpscRing::<u64>::create(r, cap).unwrap();
        }
        poke(mem, TAIL, tail);
        poke(mem, HEAD, head);
        let r = Region::from_mut_slice(&mut *mem);
        let ring = SpscRing::<u64>::attach(r).unwrap();
        assert!(ring.len() <= cap);
        let (mut tx, mut rx) = ring.split().unwrap();
        let valid = tail.wrapping_sub(head) <= cap;
        let pushed = tx.try_push(1);
        let popped = rx.try_pop();
        if valid {
            assert!(pushed.is_err(), "ring of 4 holding 4 is full");
            assert!(popped.is_ok());
            assert_eq!(tx.push_slice(&[1, 2]), 1);
            let mut out = [0; 8];
            assert_eq!(rx.pop_slice(&mut out), 4);
        } else {
            assert!(matches!(pushed, Err(PushError::Corrupt(1))), "{pushed:?}");
            assert_eq!(popped, Err(PopError::Corrupt));
            assert_eq!(tx.push_slice(&[1, 2, 3]), 0);
            assert_eq!(rx.pop_slice(&mut [0; 3]), 0);
            assert!(tx.write_slot().is_none());
            assert!(rx.read_slot().is_none());
            assert_eq!(rx.len(), 0);
            assert_eq!(tx.free_slots(), 0);
            assert!(tx.push(1).unwrap_err().into_inner() == 1);
            assert_eq!(rx.pop(), Err(PopError::Corrupt));
        }
    }
    // Corruption that appears while running: the consumer's refresh
    // catches it, the producer's own index is local and unaffected.
    let mut b = buf(4096);
    let mem = bytes(&mut b);
    let mem_ptr = mem.as_mut_ptr();
    let r = Region::from_mut_slice(mem);
    let ring = SpscRing::<u64>::create(r, 4).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();
    tx.try_push(1).unwrap();
    assert_eq!(rx.try_pop(), Ok(1));
    // SAFETY: test-only hostile write through the atomic's address.
    unsafe { &*(mem_ptr.add(TAIL) as *const crate::sync::AtomicU64) }
        .store(1000, Ordering::Relaxed);
    assert_eq!(rx.try_pop(), Err(PopError::Corrupt));
}

#[test]
fn errors_format() {
    assert_eq!(
        format!("{:?}", PushError::Disconnected(1)),
        "Disconnected(..)"
    );
    assert_eq!(format!("{:?}", PushError::Corrupt(1)), "Corrupt(..)");
    assert_eq!(
        format!("{}", PushError::Corrupt(())),
        "ring indices are corrupt"
    );
    assert_eq!(
        format!("{}", PopError::Disconnected),
        "ring is disconnected"
    );
    assert_eq!(format!("{}", PopError::Empty), "ring is empty");
    let e: &dyn core::error::Error = &PushError::Full(0u8);
    assert_eq!(format!("{e}"), "ring is full");
    assert!(format!("{:?}", SpscRing::<u8>::memory_size(1)).starts_with("Some"));
}

#[test]
fn two_thread_stress_with_checksum() {
    const N: u64 = 100_000;
    // `spin` NONE sends every wait through the bells and naps.
    for (cap, batch, spin) in [
        (1u64, false, Spin::DEFAULT),
        (1, false, Spin::NONE),
        (7, false, Spin::DEFAULT),
        (64, true, Spin::NONE),
        (64, true, Spin::DEFAULT),
        (1024, false, Spin::NONE),
    ] {
        with_ring::<[u64; 2], _>(cap, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            tx.set_spin(spin);
            rx.set_spin(spin);
            std::thread::scope(|s| {
                s.spawn(move || {
                    if batch {
                        let mut i = 0;
                        let mut buf = Vec::new();
                        while i < N {
                            buf.clear();
                            buf.extend((i..(i + 13).min(N)).map(|k| [k, k * 3]));
                            let mut off = 0;
                            while off < buf.len() {
                                let n = tx.push_slice(&buf[off..]);
                                if n == 0 {
                                    tx.push(buf[off]).unwrap();
                                    off += 1;
                                }
                                off += n;
                            }
                            i += buf.len() as u64;
                        }
                    } else {
                        for i in 0..N {
                            if i % 3 == 0 {
                                let mut s = loop {
                                    if let Some(s) = tx.write_slot() {
                                        break s;
                                    }
                                    std::thread::yield_now();
                                };
                                *s = [i, i * 3];
                                s.commit();
                            } else {
                                tx.push([i, i * 3]).unwrap();
                            }
                        }
                    }
                });
                let mut sum = 0u64;
                let mut expect = 0u64;
                let mut out = [[0u64; 2]; 9];
                while expect < N {
                    let got: &[[u64; 2]] = if batch && expect % 2 == 0 {
                        let n = rx.pop_slice(&mut out);
                        if n == 0 {
                            out[0] = rx.pop().unwrap();
                            &out[..1]
                        } else {
                            &out[..n]
                        }
                    } else if expect % 5 == 0 {
                        let r = rx.read_slot().map(|s| *s);
                        match r {
                            Some(v) => {
                                out[0] = v;
                                &out[..1]
                            }
                            None => continue,
                        }
                    } else {
                        out[0] = rx.pop().unwrap();
                        &out[..1]
                    };
                    for v in got {
                        assert_eq!(v[0], expect);
                        assert_eq!(v[1], expect * 3);
                        sum = sum.wrapping_add(v[0] ^ v[1]);
                        expect += 1;
                    }
                }
                let want = (0..N).fold(0u64, |a, k| a.wrapping_add(k ^ (k * 3)));
                assert_eq!(sum, want);
                assert_eq!(rx.pop(), Err(PopError::Disconnected));
            });
        });
    }
}
