//! Waiting without a system call when nobody sleeps: an eventcount over a
//! shared futex word, and the adaptive spin that precedes sleeping.
//!
//! A structure that can block (a ring that is full or empty, a lock that is
//! held) embeds an [`EventCount`] per condition. The side that makes the
//! condition true calls [`EventCount::notify_all`] after publishing, which
//! costs one fence and one load while nobody sleeps. (The two
//! single-producer single-consumer rings, [`spsc`](crate::spsc) and
//! [`bytering`](crate::bytering), skip even that fence on their fast path:
//! they wrap the eventcount in a *bell*, see `core/src/bell.rs`.) The side
//! that waits:
//!
//! ```text
//!  waiter                                   notifier
//!  ------                                   --------
//!  try the operation -> ok? done            publish (Release store)
//!  spin a while, retrying                   fence(SeqCst)
//!  key = prepare_wait()                     if waiters != 0:
//!     waiters += 1; fence(SeqCst);              seq += 1
//!     key = seq                                 futex_wake(seq, all)
//!  try again -> ok? cancel_wait, done
//!  wait(key): futex_wait(seq, key);
//!     waiters -= 1
//! ```
//!
//! The two `SeqCst` fences order "waiters += 1" before the waiter's retry and
//! the publish before the notifier's read of `waiters`: either the retry sees
//! the data, or the notifier sees the waiter and bumps `seq`, so the futex
//! wait returns at once or is woken. No wake-up is lost (checked under loom).
//!
//! A waiter killed while asleep leaves `waiters` above zero: notifiers then
//! make a (harmless) wake system call each time, never a wrong result. A
//! notifier killed between its publish and its wake-up leaves a waiter
//! asleep with the condition true: so no [`EventCount::wait`] sleeps longer
//! than [`RECHECK`] before it returns and its caller re-checks.

use core::time::Duration;

use crate::sync::{fence, spin_loop, yield_now, AtomicU32, Futex, Ordering, WaitOutcome};
use crate::time::{now_ns, Deadline};

/// The longest one [`EventCount::wait`] sleeps before it returns for its
/// caller to re-check the condition, notified or not: a bound on how long
/// a notifier killed between its publish and its wake-up can delay a
/// waiter. Idle waiters wake this often, for one poll each.
pub const RECHECK: Duration = Duration::from_millis(50);

/// A futex wait on `word` while it holds `expected`, for [`RECHECK`] at
/// most: it reports [`WaitOutcome::TimedOut`] only once the caller's
/// `deadline` has passed; the re-check bound ends it as a wake-up like any
/// other. Every sleep that waits for another process's notification goes
/// through this, so that a notifier killed before its wake-up delays it by
/// one `RECHECK` at most.
pub(crate) fn futex_wait_rechecked(
    word: &Futex,
    expected: u32,
    deadline: Option<Deadline>,
) -> WaitOutcome {
    match word.wait(expected, Some(Deadline::after(RECHECK).min(deadline))) {
        WaitOutcome::TimedOut if !deadline.is_some_and(Deadline::has_passed) => WaitOutcome::Woken,
        r => r,
    }
}

/// A wait/notify pair for one condition, living in shared memory.
///
/// # Examples
///
/// ```
/// use multiproc_core::wait::EventCount;
/// let ec = EventCount::new();
/// let key = ec.prepare_wait();
/// ec.notify_all(); // someone made the condition true
/// // The key is stale now, so this returns at once.
/// ec.wait(key, None);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct EventCount {
    /// Bumped by every notify that saw a waiter; the futex word sleepers
    /// watch.
    seq: Futex,
    /// Number of waiters between `prepare_wait` and the end of `wait`.
    waiters: AtomicU32,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(EventCount, u64);
static_assertions::const_assert!(core::mem::align_of::<EventCount>() <= 8);

// SAFETY: repr(C) of two 32-bit atomics: valid for every bit pattern, no
// pointers; size pinned above.
unsafe impl crate::region::ShmSafe for EventCount {}

/// A ticket from [`EventCount::prepare_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a prepared wait must be finished with `wait` or `cancel_wait`"]
pub struct WaitKey(u32);

impl Default for EventCount {
    fn default() -> Self {
        Self::new()
    }
}

impl EventCount {
    /// An eventcount with nobody waiting.
    pub fn new() -> Self {
        Self {
            seq: Futex::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Wakes every waiter, if there is one. Call it after publishing the
    /// change that waiters wait for.
    #[inline]
    pub fn notify_all(&self) {
        // SeqCst fence: orders the caller's publish before the `waiters` load;
        // pairs with the fence in `prepare_wait`.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.notify_slow(true);
        }
    }

    /// Wakes one waiter, if there is one.
    #[inline]
    pub fn notify_one(&self) {
        // SeqCst fence: as in `notify_all`.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.notify_slow(false);
        }
    }

    #[cold]
    fn notify_slow(&self, all: bool) {
        // SeqCst: a waiter that loads `seq` after this sees the publish too.
        self.seq.fetch_add(1, Ordering::SeqCst);
        if all {
            self.seq.wake_all();
        } else {
            self.seq.wake_one();
        }
    }

    /// Announces a waiter. The caller must re-check its condition after
    /// this, then call [`wait`](Self::wait) or
    /// [`cancel_wait`](Self::cancel_wait).
    #[inline]
    pub fn prepare_wait(&self) -> WaitKey {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // SeqCst fence: pairs with the fence in `notify_*`; the caller's
        // re-check that follows cannot be ordered before the increment.
        fence(Ordering::SeqCst);
        WaitKey(self.seq.load(Ordering::SeqCst))
    }

    /// Withdraws a prepared wait (the re-check succeeded).
    #[inline]
    pub fn cancel_wait(&self, key: WaitKey) {
        let _ = key;
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sleeps until notified after `key` was taken, or until `deadline`,
    /// or for [`RECHECK`] at most (then it returns
    /// [`WaitOutcome::Woken`]). May return spuriously: the caller
    /// re-checks its condition.
    pub fn wait(&self, key: WaitKey, deadline: Option<Deadline>) -> WaitOutcome {
        let r = futex_wait_rechecked(&self.seq, key.0, deadline);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// Runs `poll` until it returns `Some`, spinning per `spin` and then
    /// sleeping on this eventcount. Returns `None` if `deadline` passes
    /// first (after one last poll).
    pub fn wait_for<T>(
        &self,
        spin: Spin,
        deadline: Option<Deadline>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if let Some(v) = poll() {
            return Some(v);
        }
        let mut backoff = spin.start();
        while backoff.spin() {
            if let Some(v) = poll() {
                return Some(v);
            }
        }
        loop {
            let key = self.prepare_wait();
            if let Some(v) = poll() {
                self.cancel_wait(key);
                return Some(v);
            }
            if self.wait(key, deadline) == WaitOutcome::TimedOut {
                return poll();
            }
            if let Some(v) = poll() {
                return Some(v);
            }
        }
    }
}

/// How long to spin before sleeping.
///
/// Waking a process asleep on another CPU costs tens of microseconds; a
/// busy peer usually answers within a few. The default spins up to
/// 20 µs, retrying between spin hints, then yields a few times, then sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spin {
    budget_ns: u32,
}

impl Default for Spin {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Spin {
    /// Spin up to 20 µs.
    pub const DEFAULT: Spin = Spin { budget_ns: 20_000 };
    /// Never spin: sleep at once (after one retry).
    pub const NONE: Spin = Spin { budget_ns: 0 };

    /// Spin up to `d` (saturating at about 4 s).
    pub fn for_duration(d: Duration) -> Spin {
        Spin {
            budget_ns: u32::try_from(d.as_nanos()).unwrap_or(u32::MAX),
        }
    }

    /// The spin budget.
    pub fn budget(self) -> Duration {
        Duration::from_nanos(u64::from(self.budget_ns))
    }

    /// Starts spinning.
    pub fn start(self) -> Backoff {
        Backoff {
            budget_ns: self.budget_ns,
            started: 0,
            step: 0,
        }
    }
}

/// A running spin: call [`spin`](Backoff::spin) between retries until it
/// returns `false`.
#[derive(Debug)]
pub struct Backoff {
    budget_ns: u32,
    started: u64,
    step: u32,
}

impl Backoff {
    /// Spins a little; `false` when the budget is used up and the caller
    /// should sleep instead.
    #[inline]
    pub fn spin(&mut self) -> bool {
        if self.budget_ns == 0 {
            return false;
        }
        #[cfg(multiproc_loom)]
        {
            // The model checker explores interleavings, not time: one round.
            if self.step > 0 {
                return false;
            }
            self.step += 1;
            spin_loop();
            true
        }
        #[cfg(not(multiproc_loom))]
        {
            if self.step == 0 {
                self.started = now_ns();
            }
            self.step += 1;
            if self.step <= 6 {
                for _ in 0..(1u32 << self.step) {
                    spin_loop();
                }
                return true;
            }
            if self.step % 8 == 0 {
                let spent = now_ns().saturating_sub(self.started);
                if spent >= u64::from(self.budget_ns) {
                    return false;
                }
                if spent >= u64::from(self.budget_ns) / 2 {
                    yield_now();
                    return true;
                }
            }
            for _ in 0..64 {
                spin_loop();
            }
            true
        }
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::Arc;
    use std::thread;

    /// A notifier that publishes and dies before its wake-up (here: never
    /// notifies) delays a sleeper by one `RECHECK` at most, never forever.
    #[test]
    fn a_lost_notify_delays_a_sleeper_only_until_its_recheck() {
        let ec = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicU32::new(0));
        let (e, f) = (Arc::clone(&ec), Arc::clone(&flag));
        let sleeper = thread::spawn(move || {
            e.wait_for(Spin::NONE, None, || {
                (f.load(Ordering::Acquire) != 0).then_some(())
            })
        });
        // Let it fall asleep, then publish without notifying.
        thread::sleep(Duration::from_millis(20));
        flag.store(1, Ordering::Release);
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || tx.send(sleeper.join().unwrap()).unwrap());
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(30)),
            Ok(Some(())),
            "the sleeper never re-checked"
        );
        // A timed wait still times out at its own deadline.
        let key = ec.prepare_wait();
        let d = Deadline::after(Duration::from_millis(1));
        assert_eq!(ec.wait(key, Some(d)), WaitOutcome::TimedOut);
    }

    #[test]
    fn wait_for_returns_value_or_times_out() {
        let ec = EventCount::new();
        assert_eq!(ec.wait_for(Spin::DEFAULT, None, || Some(3)), Some(3));
        let t0 = now_ns();
        let d = Deadline::after(Duration::from_millis(5));
        assert_eq!(ec.wait_for(Spin::NONE, Some(d), || None::<u8>), None);
        assert!(now_ns() - t0 >= 5_000_000);
        assert_eq!(ec.waiters.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn notify_wakes_sleeper_in_other_thread() {
        let ec = Arc::new(EventCount::new());
        let flag = Arc::new(crate::sync::AtomicU32::new(0));
        let (e2, f2) = (ec.clone(), flag.clone());
        let h = thread::spawn(move || {
            e2.wait_for(Spin::NONE, None, || {
                (f2.load(Ordering::Acquire) == 1).then_some(())
            })
        });
        thread::sleep(std::time::Duration::from_millis(20));
        flag.store(1, Ordering::Release);
        ec.notify_all();
        assert_eq!(h.join().unwrap(), Some(()));
    }

    #[test]
    fn backoff_gives_up() {
        let mut b = Spin::for_duration(Duration::from_micros(50)).start();
        let mut n = 0u64;
        while b.spin() {
            n += 1;
            assert!(n < 100_000_000);
        }
        assert!(!Spin::NONE.start().spin());
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// No lost wake-up: a waiter that sleeps on the eventcount always sees
    /// the flag once the notifier has set it and notified.
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let ec = Arc::new(EventCount::new());
            let flag = Arc::new(AtomicU32::new(0));
            let (e2, f2) = (ec.clone(), flag.clone());
            let t = thread::spawn(move || {
                f2.store(1, Ordering::Release);
                e2.notify_all();
            });
            let got = ec.wait_for(Spin::NONE, None, || {
                (flag.load(Ordering::Acquire) == 1).then_some(())
            });
            assert_eq!(got, Some(()));
            t.join().unwrap();
        });
    }

    /// Two waiters, one notify_all: both wake.
    #[test]
    fn notify_all_wakes_every_waiter() {
        loom::model(|| {
            let ec = Arc::new(EventCount::new());
            let flag = Arc::new(AtomicU32::new(0));
            let mut hs = std::vec::Vec::new();
            for _ in 0..2 {
                let (e, f) = (ec.clone(), flag.clone());
                hs.push(thread::spawn(move || {
                    e.wait_for(Spin::NONE, None, || {
                        (f.load(Ordering::Acquire) == 1).then_some(())
                    })
                    .unwrap();
                }));
            }
            flag.store(1, Ordering::Release);
            ec.notify_all();
            for h in hs {
                h.join().unwrap();
            }
        });
    }
}
