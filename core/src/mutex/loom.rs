use super::*;
use ::loom::sync::Arc;
use ::loom::thread;
use core::time::Duration;

/// A lock and a counter it protects; loom checks the counter for races.
struct Shared {
    lock: RawMutex,
    count: UnsafeCell<u32>,
}

// SAFETY: `count` is accessed only under `lock`.
unsafe impl Sync for Shared {}

impl Shared {
    fn new() -> Self {
        Self {
            lock: RawMutex::new(),
            count: UnsafeCell::new(0),
        }
    }
    fn increment(&self) {
        self.lock.lock().unwrap();
        // SAFETY: under the lock.
        self.count.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: locked above.
        unsafe { self.lock.unlock() };
    }
}

/// Mutual exclusion: loom reports a data race on `count` if two holders
/// overlap, or if a holder's writes are not released to the next one.
#[test]
fn mutual_exclusion_two_threads() {
    ::loom::model(|| {
        let s = Arc::new(Shared::new());
        let s2 = s.clone();
        let t = thread::spawn(move || {
            s2.increment();
            s2.increment();
        });
        s.increment();
        t.join().unwrap();
        s.lock.lock().unwrap();
        // SAFETY: under the lock.
        assert_eq!(s.count.with(|p| unsafe { *p }), 3);
        // SAFETY: locked above.
        unsafe { s.lock.unlock() };
    });
}

/// Three contenders: the slow path sleeps, the waiters bit is handed on,
/// and no wake-up is lost (a lost one is a loom deadlock).
#[test]
fn no_lost_wakeup_three_threads() {
    ::loom::model(|| {
        let s = Arc::new(Shared::new());
        let hs: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.increment())
            })
            .collect();
        s.increment();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: every thread joined: no concurrent access.
        assert_eq!(s.count.with(|p| unsafe { *p }), 3);
        assert_eq!(s.lock.word.load(Ordering::Relaxed), 0);
    });
}

/// Tries `lock_timeout(ZERO)` (one liveness check under loom's frozen
/// clock) until it returns a hold; `Some(pid)` if taken from a dead one.
fn lock_checking(m: &RawMutex) -> Option<u32> {
    loop {
        match m.lock_timeout(Duration::ZERO) {
            Ok(()) => return None,
            Err(LockTimeoutError::Poisoned(p)) => match p.cause() {
                PoisonCause::OwnerDied { pid } => return Some(pid),
                PoisonCause::Panicked => unreachable!(),
            },
            Err(LockTimeoutError::TimedOut) => thread::yield_now(),
        }
    }
}

/// A holder killed at each point of its protocol: (0) after winning
/// the word, before recording its identity; (1) while holding, recorded;
/// (2) after clearing its identity, before freeing the word. A waiter
/// racing with it never takes a live hold over (loom sees the race on
/// `count`), and once the holder is dead takes the lock over, poisoned
/// with the holder's pid.
#[test]
fn dead_holder_is_taken_over_at_every_point() {
    let only: Option<u32> = std::env::var("POINT").ok().map(|v| v.parse().unwrap());
    for point in (0..3).filter(|p| only.is_none_or(|o| o == *p)) {
        ::loom::model(move || {
            let s = Arc::new(Shared::new());
            let s2 = s.clone();
            let t = thread::spawn(move || {
                let me = RawMutex::me();
                // Contended with the waiter's own acquisitions: wait
                // for the word like a locker would, then follow the
                // protocol step by step up to the death point.
                while !s2.lock.try_acquire(me) {
                    thread::yield_now();
                }
                // SAFETY: held.
                s2.count.with_mut(|p| unsafe { *p += 1 });
                if point >= 1 {
                    s2.lock.set_owner();
                }
                if point >= 2 {
                    s2.lock.clear_owner();
                }
                crate::sync::loom_die();
                me
            });
            // One attempt while the holder runs (it may also be dead
            // already), then the rest after.
            let early = match s.lock.lock_timeout(Duration::ZERO) {
                Ok(()) => Some(None),
                Err(LockTimeoutError::Poisoned(p)) => Some(Some(p.cause())),
                Err(LockTimeoutError::TimedOut) => None,
            };
            let took_over = match early {
                Some(cause) => {
                    // SAFETY: held.
                    s.count.with_mut(|p| unsafe { *p += 1 });
                    // SAFETY: held.
                    unsafe { s.lock.unlock() };
                    cause.is_some()
                }
                None => false,
            };
            let dead = t.join().unwrap();
            let died = lock_checking(&s.lock);
            if took_over {
                // The poison is sticky.
                assert_eq!(
                    s.lock.poison_cause(),
                    Some(PoisonCause::OwnerDied { pid: dead })
                );
            } else {
                assert_eq!(died, Some(dead));
            }
            // SAFETY: held.
            s.count.with_mut(|p| unsafe { *p += 1 });
            // SAFETY: held.
            unsafe { s.lock.unlock() };
        });
    }
}

/// The holder dies holding; then a thread that reuses its pid and a
/// third one both lock. Exactly one takes the dead hold over, and the
/// third never takes over the reuser's hold while it runs (in the
/// reuser's window between its takeover and recording its identity,
/// `owner` must not show the dead identity under the reused pid).
#[test]
fn reused_pid_taker_is_never_taken_over() {
    ::loom::model(|| {
        let s = Arc::new(Shared::new());
        let s2 = s.clone();
        let dead = thread::spawn(move || {
            s2.lock.lock().unwrap();
            crate::sync::loom_die();
            RawMutex::me()
        })
        .join()
        .unwrap();
        let s3 = s.clone();
        let other = thread::spawn(move || {
            let died = lock_checking(&s3.lock);
            // SAFETY: held.
            s3.count.with_mut(|p| unsafe { *p += 1 });
            // SAFETY: held.
            unsafe { s3.lock.unlock() };
            died
        });
        crate::sync::loom_reuse_pid();
        assert_eq!(RawMutex::me(), dead);
        let mine = lock_checking(&s.lock);
        // SAFETY: held.
        s.count.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: held.
        unsafe { s.lock.unlock() };
        let theirs = other.join().unwrap();
        // One of the two took the dead hold over, the other found the
        // poison it left (sticky) or took it cleanly after.
        assert!(mine == Some(dead) || theirs == Some(dead));
        // SAFETY: joined.
        assert_eq!(s.count.with(|p| unsafe { *p }), 2);
        assert!(!s.lock.is_locked());
    });
}

/// The holder sleeps-waits for a second thread that must be woken by
/// `unlock`; try_lock never blocks.
#[test]
fn sleeper_is_woken_by_unlock() {
    ::loom::model(|| {
        let s = Arc::new(Shared::new());
        s.lock.lock().unwrap();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            if s2.lock.try_lock().is_ok() {
                // The main thread already unlocked: give it back.
                // SAFETY: try_lock succeeded.
                unsafe { s2.lock.unlock() };
            }
            s2.increment();
        });
        // SAFETY: under the lock.
        s.count.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: locked above.
        unsafe { s.lock.unlock() };
        t.join().unwrap();
        // SAFETY: joined.
        assert_eq!(s.count.with(|p| unsafe { *p }), 2);
    });
}
