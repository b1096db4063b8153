//! loom models of the poison a dead holder leaves: written by the waiter
//! that takes the hold over, it must reach every later locker (and so must
//! its clear). Threads stand for processes, `sync::loom_die` for a
//! `kill -9`. Run with
//! `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p multiproc-core --release --lib loom_poison`.

extern crate std;

use super::*;
use ::loom::sync::Arc;
use ::loom::thread;
use core::time::Duration;

/// A lock and the value it protects; loom checks the value for races.
struct Shared {
    lock: RawMutex,
    value: UnsafeCell<u32>,
}

// SAFETY: `value` is accessed only under `lock`.
unsafe impl Sync for Shared {}

/// A shared lock whose holder (a thread of its own, joined) died holding
/// it, after writing 1 to the value; returns the dead holder's pid.
fn held_by_the_dead() -> (Arc<Shared>, u32) {
    let s = Arc::new(Shared {
        lock: RawMutex::new(),
        value: UnsafeCell::new(0),
    });
    let s2 = s.clone();
    let dead = thread::spawn(move || {
        s2.lock.lock().unwrap();
        // SAFETY: under the lock.
        s2.value.with_mut(|p| unsafe { *p = 1 });
        crate::sync::loom_die();
        RawMutex::me()
    })
    .join()
    .unwrap();
    (s, dead)
}

/// Locks with `lock_timeout(ZERO)` (one liveness check under loom's
/// frozen clock) until it holds; the poison it found, if any.
fn lock_poisoned(m: &RawMutex) -> Option<PoisonCause> {
    loop {
        match m.lock_timeout(Duration::ZERO) {
            Ok(()) => return None,
            Err(LockTimeoutError::Poisoned(p)) => return Some(p.cause()),
            Err(LockTimeoutError::TimedOut) => thread::yield_now(),
        }
    }
}

/// Two lockers after a holder died: the one that takes the hold over
/// writes the poison (a Relaxed store under the lock), and the other,
/// locking after it, must read it: both report the dead holder's pid.
/// Checks that the takeover's poison is published by the taker's unlock
/// (Release swap) to the next locker's Acquire CAS.
#[test]
fn taker_poison_is_seen_by_the_next_locker() {
    ::loom::model(|| {
        let (s, dead) = held_by_the_dead();
        let s2 = s.clone();
        let other = thread::spawn(move || {
            let cause = lock_poisoned(&s2.lock);
            // SAFETY: held.
            s2.value.with_mut(|p| unsafe { *p += 1 });
            // SAFETY: held.
            unsafe { s2.lock.unlock() };
            cause
        });
        let mine = lock_poisoned(&s.lock);
        // SAFETY: held.
        s.value.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: held.
        unsafe { s.lock.unlock() };
        let theirs = other.join().unwrap();
        let died = Some(PoisonCause::OwnerDied { pid: dead });
        assert_eq!(mine, died);
        assert_eq!(theirs, died);
        // SAFETY: joined: no concurrent access.
        assert_eq!(s.value.with(|p| unsafe { *p }), 3);
        assert!(!s.lock.is_locked());
    });
}

/// Two lockers after a holder died, each repairing what it finds: the one
/// that finds the poison (the taker) repairs the value and clears the
/// poison before unlocking, and the other must then lock clean and see the
/// repair. Exactly one of them ever sees the poison.
#[test]
fn cleared_poison_is_seen_by_the_next_locker() {
    ::loom::model(|| {
        let (s, dead) = held_by_the_dead();
        let locker = |s: &Shared| {
            let cause = lock_poisoned(&s.lock);
            if cause.is_some() {
                // The dead holder's write may be half done: repair it.
                // SAFETY: held.
                s.value.with_mut(|p| unsafe { *p = 10 });
                s.lock.clear_poison();
            } else {
                // SAFETY: held.
                assert_eq!(s.value.with(|p| unsafe { *p }), 10, "repair lost");
            }
            // SAFETY: held.
            unsafe { s.lock.unlock() };
            cause
        };
        let s2 = s.clone();
        let other = thread::spawn(move || locker(&s2));
        let mine = locker(&s);
        let theirs = other.join().unwrap();
        let died = Some(PoisonCause::OwnerDied { pid: dead });
        assert!(
            (mine == died && theirs.is_none()) || (mine.is_none() && theirs == died),
            "exactly one locker sees the poison: {mine:?} {theirs:?}"
        );
        assert!(!s.lock.is_poisoned());
    });
}

/// A holder that poisons the lock (what the std layer does when it
/// panics) while a second thread locks: the second sees the poison exactly
/// when it locks after that holder, which it tells by the value.
#[test]
fn panic_poison_is_seen_by_the_next_locker() {
    ::loom::model(|| {
        let s = Arc::new(Shared {
            lock: RawMutex::new(),
            value: UnsafeCell::new(0),
        });
        let s2 = s.clone();
        let t = thread::spawn(move || {
            s2.lock.lock().unwrap();
            // SAFETY: under the lock.
            s2.value.with_mut(|p| unsafe { *p = 1 });
            s2.lock.poison();
            // SAFETY: locked above.
            unsafe { s2.lock.unlock() };
        });
        let cause = s.lock.lock().err().map(|p| p.cause());
        // SAFETY: under the lock.
        let after = s.value.with(|p| unsafe { *p }) == 1;
        // SAFETY: locked above.
        unsafe { s.lock.unlock() };
        t.join().unwrap();
        assert_eq!(cause, after.then_some(PoisonCause::Panicked));
    });
}
