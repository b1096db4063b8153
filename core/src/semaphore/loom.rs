//! Loom models of the semaphore: threads stand in for processes.

use super::*;
use crate::sync::AtomicU32;
use crate::sync::UnsafeCell;
use ::loom::sync::Arc;
use ::loom::thread;

/// Two permits, three threads: never more than two inside, and every
/// thread gets through (no lost wake-up strands a sleeper).
#[test]
fn two_permits_three_threads() {
    ::loom::model(|| {
        let s = Arc::new(RawSemaphore::new(2));
        let inside = Arc::new(AtomicU32::new(0));
        let body = {
            let (s, inside) = (s.clone(), inside.clone());
            move || {
                s.acquire();
                let n = inside.fetch_add(1, Ordering::Relaxed) + 1;
                assert!(n <= 2, "{n} inside a semaphore of 2");
                inside.fetch_sub(1, Ordering::Relaxed);
                s.release().unwrap();
            }
        };
        let a = thread::spawn(body.clone());
        let b = thread::spawn(body.clone());
        body();
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.value(), 2);
    });
}

/// Two acquirers on an empty semaphore, two single releases: each
/// release wakes one sleeper (`wake_one`), and both get through.
#[test]
fn two_sleepers_two_single_releases() {
    ::loom::model(|| {
        let s = Arc::new(RawSemaphore::new(0));
        let spawn = |s: &Arc<RawSemaphore>| {
            let s = s.clone();
            thread::spawn(move || s.acquire())
        };
        let a = spawn(&s);
        let b = spawn(&s);
        s.release().unwrap();
        s.release().unwrap();
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.value(), 0);
    });
}

/// A sleeper waiting on an empty semaphore is woken by the release, and
/// sees what the releaser wrote before releasing.
#[test]
fn release_wakes_sleeper_and_publishes() {
    ::loom::model(|| {
        let s = Arc::new(RawSemaphore::new(0));
        let data = Arc::new(UnsafeCell::new(0u32));
        let (s2, d2) = (s.clone(), data.clone());
        let t = thread::spawn(move || {
            // SAFETY: nobody reads `data` before the release below.
            d2.with_mut(|p| unsafe { *p = 42 });
            s2.release().unwrap();
        });
        s.acquire();
        // SAFETY: the writer finished before its release, which our
        // acquire synchronised with.
        assert_eq!(data.with(|p| unsafe { *p }), 42);
        t.join().unwrap();
    });
}

/// A region semaphore with two holder slots, leaked for the model's run.
fn region_sem(initial: u32, bounded: bool) -> Semaphore<'static> {
    let mem = crate::test_util::leak(Semaphore::memory_size_for(2));
    let r = Region::from_mut_slice(mem);
    Semaphore::create_with(r, initial, bounded, 2, 0).unwrap()
}

/// A holder of the only unit of a bounded semaphore is killed at `stop`
/// (its take stopped after step 1a, 1b, 2, or done and then holding),
/// while another thread waits in `acquire`: the waiter gets the unit,
/// learning of the death if the dead one had it; the bound holds; no unit
/// is lost or doubled.
fn holder_dies_at(stop: u8, give_back: bool) {
    ::loom::model(move || {
        let s = region_sem(1, true);
        let d = thread::spawn(move || {
            let me = crate::sync::current_identity();
            let i = s.my_slot(me).unwrap();
            if give_back {
                if s.raw.move_unit(s.slots, i, false).is_ok() {
                    let _ = s.raw.move_steps(s.slots, i, true, stop);
                }
            } else {
                let _ = s.raw.move_steps(s.slots, i, false, stop);
            }
            crate::sync::loom_die();
            // Time passes: under loom a nap ends only when notified.
            s.raw.ec.notify_all();
        });
        let r = s.acquire();
        d.join().unwrap();
        if let Err(e) = r {
            assert_ne!(e.pid, 0);
        }
        assert_eq!(s.held_by_me(), 1);
        assert_eq!(s.value(), 0, "one unit in all");
        s.release().unwrap();
        assert_eq!(s.value(), 1);
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    });
}

#[test]
fn holder_dies_after_lock() {
    holder_dies_at(1, false);
}

#[test]
fn holder_dies_after_count_moved() {
    holder_dies_at(2, false);
}

#[test]
fn holder_dies_after_slot_moved() {
    holder_dies_at(3, false);
}

#[test]
fn holder_dies_holding() {
    holder_dies_at(u8::MAX, false);
}

#[test]
fn holder_dies_mid_release_after_lock() {
    holder_dies_at(1, true);
}

#[test]
fn holder_dies_mid_release_after_count_moved() {
    holder_dies_at(2, true);
}

#[test]
fn holder_dies_mid_release_after_slot_moved() {
    holder_dies_at(3, true);
}

/// Two live threads take and give back units through their slots while a
/// third polls: never more than the bound inside, all units back at the
/// end, and what a releaser wrote is seen by the next taker.
#[test]
fn tracked_two_threads_one_unit() {
    ::loom::model(|| {
        let s = region_sem(1, true);
        let data = Arc::new(UnsafeCell::new(0u32));
        let d2 = data.clone();
        let t = thread::spawn(move || {
            s.acquire().unwrap();
            // SAFETY: we hold the only unit.
            d2.with_mut(|p| unsafe { *p += 1 });
            s.release().unwrap();
        });
        s.acquire().unwrap();
        // SAFETY: we hold the only unit.
        data.with_mut(|p| unsafe { *p += 1 });
        s.release().unwrap();
        t.join().unwrap();
        assert_eq!(s.value(), 1);
        // SAFETY: both joined.
        assert_eq!(data.with(|p| unsafe { *p }), 2);
    });
}
