use super::*;
use crate::test_util::leak;
use ::loom::thread;

fn ring(cap: u64) -> SpscRing<'static, u64> {
    let mem = leak(SpscRing::<u64>::memory_size(cap).unwrap());
    SpscRing::create(Region::from_mut_slice(mem), cap).unwrap()
}

/// A 2-slot ring, 3 values: they arrive in order, and loom checks that
/// no slot is read while written (no data race).
#[test]
fn spsc_try_push_pop_in_order() {
    ::loom::model(|| {
        let r = ring(2);
        let (mut tx, mut rx) = r.split().unwrap();
        let t = thread::spawn(move || {
            for i in 1..=3u64 {
                let mut v = i;
                loop {
                    match tx.try_push(v) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => {
                            v = back;
                            thread::yield_now();
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
        });
        let mut next = 1;
        while next <= 3 {
            match rx.try_pop() {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Err(PopError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
        t.join().unwrap();
    });
}

/// Blocking push on a full 1-slot ring and blocking pop on an empty one
/// wake each other through the bells: a lost wake-up would be a loom
/// deadlock (naps end only by notifications in the model).
#[test]
fn spsc_blocking_no_lost_wakeup() {
    ::loom::model(|| {
        let r = ring(1);
        let (mut tx, mut rx) = r.split().unwrap();
        tx.set_spin(Spin::NONE);
        rx.set_spin(Spin::NONE);
        let t = thread::spawn(move || {
            for i in 1..=3u64 {
                tx.push(i).unwrap();
            }
        });
        for i in 1..=3u64 {
            assert_eq!(rx.pop(), Ok(i));
        }
        t.join().unwrap();
    });
}

/// Dropping the producer wakes a consumer blocked on the empty ring,
/// which drains and then sees Disconnected.
#[test]
fn spsc_drop_producer_wakes_and_disconnects() {
    ::loom::model(|| {
        let r = ring(2);
        // The producer is claimed by the thread that drops it: a
        // release is a CAS from the holder's own identity, which
        // differs per thread under loom.
        let mut rx = r.consumer().unwrap();
        rx.set_spin(Spin::NONE);
        let t = thread::spawn(move || {
            let mut tx = r.producer().unwrap();
            tx.try_push(7).unwrap();
            drop(tx);
        });
        assert_eq!(rx.pop(), Ok(7));
        assert_eq!(rx.pop(), Err(PopError::Disconnected));
        t.join().unwrap();
    });
}

/// The producer role moves between threads (loom's stand-in for
/// processes) by hand-over while the consumer pops: every value
/// arrives once, in order, and the taker sees the tail the first
/// holder published (Release in `hand_over`, Acquire in `take_over`).
#[test]
fn spsc_hand_over_producer() {
    ::loom::model(|| {
        let r = ring(2);
        let (mut tx, mut rx) = r.split().unwrap();
        tx.try_push(1).unwrap();
        let holder = tx.hand_over().unwrap();
        let t = thread::spawn(move || {
            let mut tx = r.take_over_producer(holder).unwrap();
            assert!(r.take_over_producer(holder).is_none());
            let mut v = 2;
            loop {
                match tx.try_push(v) {
                    Ok(()) => break,
                    Err(PushError::Full(back)) => {
                        v = back;
                        thread::yield_now();
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        let mut next = 1;
        loop {
            match rx.try_pop() {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Err(PopError::Empty) => thread::yield_now(),
                Err(PopError::Disconnected) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(next, 3);
        t.join().unwrap();
    });
}

/// In-place write and read guards over a 1-slot ring.
#[test]
fn spsc_slots_in_place() {
    ::loom::model(|| {
        let r = ring(1);
        let (mut tx, mut rx) = r.split().unwrap();
        let t = thread::spawn(move || {
            for i in 1..=2u64 {
                loop {
                    if let Some(mut s) = tx.write_slot() {
                        *s = i;
                        s.commit();
                        break;
                    }
                    thread::yield_now();
                }
            }
        });
        let mut next = 1;
        while next <= 2 {
            match rx.read_slot() {
                Some(s) => {
                    assert_eq!(*s, next);
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        t.join().unwrap();
    });
}
