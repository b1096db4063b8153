//! Loom models of the semaphore: threads stand in for processes.

use super::*;
use crate::sync::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// Two permits, three threads: never more than two inside, and every
/// thread gets through (no lost wake-up strands a sleeper).
#[test]
fn two_permits_three_threads() {
    loom::model(|| {
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
    loom::model(|| {
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
    loom::model(|| {
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
