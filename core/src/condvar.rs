//! A process-shared condition variable: [`RawCondvar`] (8 bytes,
//! embeddable) and [`Condvar`], a region holding one.
//!
//! It works with any guard of a [`RawMutex`]
//! ([`LockGuard`]): a [`MutexGuard`](crate::mutex::MutexGuard), an
//! [`ArrayGuard`](crate::value::ArrayGuard), a guard of the std layer. The
//! mutex and the condition variable need not live in the same region; the
//! guard carries the mutex.
//!
//! ```text
//!  RawCondvar (8 bytes, repr(C)):
//!  +------------------+------------------+
//!  | seq: u32 futex   | waiters: u32     |
//!  +------------------+------------------+
//!
//!  wait (mutex held)                      notify (after changing the state
//!  ----                                   under the mutex)
//!  waiters += 1                           ----
//!  key = seq                              if waiters != 0:
//!  unlock mutex   (Release)                   seq += 1
//!  futex_wait(seq, key)                       futex_wake(seq, 1 or all)
//!  waiters -= 1
//!  lock mutex     (Acquire; may report a
//!                  dead owner like lock)
//! ```
//!
//! A notify costs one load and no system call while nobody waits.
//!
//! Why no notify is lost: a waiter registers (`waiters += 1`) and reads
//! `key` *before* unlocking the mutex. A notifier that matters changed the
//! waited-for state under that mutex after the waiter unlocked it (had it
//! locked before, the waiter would have seen the new state and not waited),
//! so its lock's Acquire synchronises with the waiter's unlock: it sees
//! `waiters != 0`, and its `seq += 1` comes after `key` in `seq`'s
//! modification order. The futex wait then either finds `seq != key` and
//! returns, or is asleep already and is woken (the kernel checks the value
//! and queues the sleeper atomically with respect to wakes). This holds
//! whether the notifier calls notify while holding the mutex or after
//! unlocking it; a notifier that changes the state *without* the mutex can
//! lose a wake-up, as with every condition variable.
//!
//! A waiter killed while asleep leaves `waiters` above zero: notifiers then
//! make a (harmless) wake system call each time. A notifier killed before
//! its wake-up cannot leave a waiter asleep for good: no wait sleeps longer
//! than [`RECHECK`](crate::wait::RECHECK) at a time, then it relocks (and
//! finds the mutex poisoned if the notifier died holding it). Waits may
//! return spuriously; loop on the condition, or use
//! [`wait_while`](RawCondvar::wait_while). Use one mutex with a given
//! condition variable.

use core::fmt;
use core::ops::DerefMut;
use core::time::Duration;

use crate::mutex::{LockGuard, LockResult, RawMutex};
use crate::region::{AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec};
use crate::sync::{AtomicU32, Futex, Ordering, WaitOutcome};
use crate::time::Deadline;
use crate::wait::futex_wait_rechecked;

/// Whether a timed wait returned because its time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// `true` if the wait ended because the timeout passed (for the
    /// `*_while` variants: and the condition still held).
    pub fn timed_out(self) -> bool {
        self.0
    }
}

/// A condition variable in shared memory, without a lock of its own.
///
/// # Examples
///
/// ```
/// use multiproc_core::condvar::RawCondvar;
/// use multiproc_core::mutex::Mutex;
/// use multiproc_core::region::Region;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 512]);
/// let mut mem = Box::new(Mem([0; 512]));
/// let ready = Mutex::<u32>::create(Region::from_mut_slice(&mut mem.0), 0).unwrap();
/// let cv = RawCondvar::new();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *ready.lock().unwrap() = 1;
///         cv.notify_all();
///     });
///     let g = cv.wait_while(ready.lock().unwrap(), |r| *r == 0).unwrap();
///     assert_eq!(*g, 1);
/// });
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawCondvar {
    /// Bumped by every notify that saw a waiter: the futex word.
    seq: Futex,
    /// Waiters between registering and waking up.
    waiters: AtomicU32,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RawCondvar, u64);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(RawCondvar, u32);

// SAFETY: repr(C) of two 32-bit atomics: no pointers, every bit pattern
// valid (garbage only costs spurious wake-ups or wake calls); size pinned.
unsafe impl ShmSafe for RawCondvar {}

impl Default for RawCondvar {
    fn default() -> Self {
        Self::new()
    }
}

impl RawCondvar {
    /// A condition variable nobody waits on.
    pub fn new() -> Self {
        Self {
            seq: Futex::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Wakes one waiter, if any. Call it after changing the state under the
    /// mutex (while holding it or after unlocking).
    #[inline]
    pub fn notify_one(&self) {
        // Relaxed: see the module docs; a waiter that matters registered
        // before unlocking the mutex this caller has locked since.
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.notify_slow(false);
        }
    }

    /// Wakes every waiter. Call it as [`notify_one`](Self::notify_one).
    #[inline]
    pub fn notify_all(&self) {
        // Relaxed: as in `notify_one`.
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.notify_slow(true);
        }
    }

    #[cold]
    fn notify_slow(&self, all: bool) {
        // Relaxed: the bump only has to differ from every waiter's key,
        // which coherence gives (the key was read before the waiter's
        // unlock, which happens before this); the data travels through the
        // mutex.
        self.seq.fetch_add(1, Ordering::Relaxed);
        if all {
            self.seq.wake_all();
        } else {
            self.seq.wake_one();
        }
    }

    /// Unlocks `mutex`, sleeps until notified (or spuriously, or until
    /// `deadline`), and locks `mutex` again.
    ///
    /// # Safety
    ///
    /// This process holds `mutex` (the caller's guard stays alive across
    /// the call and holds it again when this returns).
    ///
    /// # Errors
    ///
    /// A [`PoisonError`](crate::mutex::PoisonError) if the mutex is poisoned
    /// when relocked (its holder meanwhile died, or it already was); the
    /// mutex is held then too.
    pub unsafe fn wait_raw(
        &self,
        mutex: &RawMutex,
        deadline: Option<Deadline>,
    ) -> LockResult<WaitTimeoutResult> {
        // Relaxed, both: sequenced before the unlock's Release, which the
        // notifier's lock acquires (module docs).
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let key = self.seq.load(Ordering::Relaxed);
        // SAFETY: the caller holds `mutex`.
        unsafe { mutex.unlock() };
        // At most `RECHECK` per sleep (a spurious wake-up then): a notifier
        // killed before its wake-up, with or without the mutex, must not
        // leave us asleep for good.
        let outcome = futex_wait_rechecked(&self.seq, key, deadline);
        // Relaxed: a count, publishing nothing.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        let r = WaitTimeoutResult(outcome == WaitOutcome::TimedOut);
        match mutex.lock() {
            Ok(()) => Ok(r),
            Err(p) => Err(p.map(|()| r)),
        }
    }

    /// Unlocks the guard's mutex, sleeps until notified, and relocks it.
    /// May return spuriously.
    ///
    /// # Errors
    ///
    /// A [`PoisonError`](crate::mutex::PoisonError) with the guard if the
    /// mutex is poisoned when relocked.
    pub fn wait<G: LockGuard>(&self, guard: G) -> LockResult<G> {
        match self.wait_deadline(guard, None) {
            Ok((g, _)) => Ok(g),
            Err(p) => Err(p.map(|(g, _)| g)),
        }
    }

    /// As [`wait`](Self::wait), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<G: LockGuard>(
        &self,
        guard: G,
        timeout: Duration,
    ) -> LockResult<(G, WaitTimeoutResult)> {
        self.wait_deadline(guard, Some(Deadline::after(timeout)))
    }

    /// As [`wait`](Self::wait), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_deadline<G: LockGuard>(
        &self,
        guard: G,
        deadline: Option<Deadline>,
    ) -> LockResult<(G, WaitTimeoutResult)> {
        // SAFETY: the guard holds its mutex (LockGuard's contract) and is
        // alive across the call; it is handed back holding it again.
        let r = unsafe { self.wait_raw(guard.raw_mutex(), deadline) };
        match r {
            Ok(t) => Ok((guard, t)),
            Err(p) => Err(p.map(|t| (guard, t))),
        }
    }

    /// Waits while `condition` holds, re-checking it under the lock after
    /// every wake-up.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); returns at the first poisoned relock.
    pub fn wait_while<G, F>(&self, mut guard: G, mut condition: F) -> LockResult<G>
    where
        G: LockGuard + DerefMut,
        F: FnMut(&mut G::Target) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits while `condition` holds, for at most `timeout`. The result
    /// says `timed_out` only if the condition still holds at the end.
    ///
    /// # Errors
    ///
    /// As [`wait_while`](Self::wait_while).
    pub fn wait_timeout_while<G, F>(
        &self,
        mut guard: G,
        timeout: Duration,
        mut condition: F,
    ) -> LockResult<(G, WaitTimeoutResult)>
    where
        G: LockGuard + DerefMut,
        F: FnMut(&mut G::Target) -> bool,
    {
        let deadline = Deadline::after(timeout);
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            if deadline.has_passed() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self.wait_deadline(guard, Some(deadline))?.0;
        }
    }
}

/// A [`RawCondvar`] alone on its 128-byte line.
#[repr(C, align(128))]
#[derive(Debug)]
struct CondvarLine {
    cv: RawCondvar,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(CondvarLine, [u8; 128]);
static_assertions::const_assert_eq!(core::mem::align_of::<CondvarLine>(), 128);

// SAFETY: repr(C) holding one ShmSafe RawCondvar plus padding; size pinned.
unsafe impl ShmSafe for CondvarLine {}

/// The element type recorded for a condvar region: it has no elements.
const NO_ELEM: ElemType = ElemType::of::<()>();

/// A process-shared condition variable built in a region, for use with a
/// [`Mutex`](crate::mutex::Mutex) (or any [`LockGuard`]) that may live in
/// another region.
///
/// ```text
///  0          128                         256
///  +----------+---------------------------+
///  | header   | RawCondvar (8 B) + padding|
///  +----------+---------------------------+
/// ```
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc_core::condvar::Condvar;
/// use multiproc_core::mutex::Mutex;
/// use multiproc_core::region::Region;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 512]);
/// let (mut a, mut b) = (Box::new(Mem([0; 512])), Box::new(Mem([0; 512])));
/// let m = Mutex::<u32>::create(Region::from_mut_slice(&mut a.0), 0).unwrap();
/// let cv = Condvar::create(Region::from_mut_slice(&mut b.0)).unwrap();
///
/// // Nobody notifies: the wait times out, the lock is held again.
/// let (g, r) = cv
///     .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(1), |v| *v == 0)
///     .unwrap();
/// assert!(r.timed_out());
/// drop(g);
///
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *m.lock().unwrap() = 1;
///         cv.notify_all();
///     });
///     let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
///     assert_eq!(*g, 1);
/// });
/// ```
#[derive(Clone, Copy)]
pub struct Condvar<'a> {
    raw: &'a RawCondvar,
}

impl fmt::Debug for Condvar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

impl<'a> Condvar<'a> {
    /// Bytes a `Condvar` occupies in a region, header included.
    pub fn memory_size() -> Option<usize> {
        Layout::of::<CondvarLine, u8>(0).map(|l| l.total)
    }

    /// Builds a condition variable in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError`] if the region is too small, misaligned or already
    /// initialised.
    pub fn create(region: Region<'a>) -> Result<Self, InitError> {
        let spec = Spec {
            kind: Kind::Condvar,
            elem: NO_ELEM,
            capacity: 0,
            count: 0,
        };
        let parts = Parts::<CondvarLine, u8>::create(
            region,
            spec,
            || CondvarLine {
                cv: RawCondvar::new(),
            },
            |_| 0,
        )?;
        Ok(Self {
            raw: &parts.body.cv,
        })
    }

    /// Attaches to a condition variable another process created, without
    /// waiting.
    ///
    /// # Errors
    ///
    /// [`AttachError`] if the region holds no published condvar.
    pub fn attach(region: Region<'a>) -> Result<Self, AttachError> {
        Self::open(region, None)
    }

    /// Attaches, waiting up to `timeout` for the creator to publish it.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach); `NotReady` once `timeout` has passed.
    pub fn attach_timeout(region: Region<'a>, timeout: Duration) -> Result<Self, AttachError> {
        Self::open(region, Some(Deadline::after(timeout)))
    }

    fn open(region: Region<'a>, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let parts = Parts::<CondvarLine, u8>::open(
            region,
            Kind::Condvar,
            NO_ELEM,
            |c| (c == 0).then_some(0),
            deadline,
        )?;
        Ok(Self {
            raw: &parts.body.cv,
        })
    }

    /// The underlying condition variable.
    pub fn raw(&self) -> &'a RawCondvar {
        self.raw
    }

    /// Wakes one waiter, if any. See [`RawCondvar::notify_one`].
    #[inline]
    pub fn notify_one(&self) {
        self.raw.notify_one();
    }

    /// Wakes every waiter. See [`RawCondvar::notify_all`].
    #[inline]
    pub fn notify_all(&self) {
        self.raw.notify_all();
    }

    /// Unlocks, sleeps until notified, relocks. See [`RawCondvar::wait`].
    ///
    /// # Errors
    ///
    /// A [`PoisonError`](crate::mutex::PoisonError) with the guard if the
    /// mutex is poisoned when relocked.
    pub fn wait<G: LockGuard>(&self, guard: G) -> LockResult<G> {
        self.raw.wait(guard)
    }

    /// As [`wait`](Self::wait), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<G: LockGuard>(
        &self,
        guard: G,
        timeout: Duration,
    ) -> LockResult<(G, WaitTimeoutResult)> {
        self.raw.wait_timeout(guard, timeout)
    }

    /// As [`wait`](Self::wait), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_deadline<G: LockGuard>(
        &self,
        guard: G,
        deadline: Option<Deadline>,
    ) -> LockResult<(G, WaitTimeoutResult)> {
        self.raw.wait_deadline(guard, deadline)
    }

    /// Waits while `condition` holds. See [`RawCondvar::wait_while`].
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_while<G, F>(&self, guard: G, condition: F) -> LockResult<G>
    where
        G: LockGuard + DerefMut,
        F: FnMut(&mut G::Target) -> bool,
    {
        self.raw.wait_while(guard, condition)
    }

    /// Waits while `condition` holds, for at most `timeout`. See
    /// [`RawCondvar::wait_timeout_while`].
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout_while<G, F>(
        &self,
        guard: G,
        timeout: Duration,
        condition: F,
    ) -> LockResult<(G, WaitTimeoutResult)>
    where
        G: LockGuard + DerefMut,
        F: FnMut(&mut G::Target) -> bool,
    {
        self.raw.wait_timeout_while(guard, timeout, condition)
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    extern crate std;
    use super::*;
    use crate::mutex::{Mutex, PoisonCause};
    use crate::test_util::DEAD_PID;
    use crate::test_util::{buf, region};
    use std::thread;

    fn waiters(cv: &Condvar<'_>) -> u32 {
        cv.raw().waiters.load(Ordering::Relaxed)
    }

    #[test]
    fn ping_pong_between_threads() {
        const ROUNDS: u64 = 2_000;
        let mut a = buf(Mutex::<u64>::memory_size().unwrap());
        let mut b = buf(Condvar::memory_size().unwrap());
        let m = Mutex::<u64>::create(region(&mut a), 0).unwrap();
        let cv = Condvar::create(region(&mut b)).unwrap();
        thread::scope(|s| {
            for parity in 0..2u64 {
                let (m, cv) = (m, cv);
                s.spawn(move || {
                    for _ in 0..ROUNDS {
                        let mut g = cv
                            .wait_while(m.lock().unwrap(), |t| *t % 2 != parity)
                            .unwrap();
                        *g += 1;
                        drop(g);
                        cv.notify_one();
                    }
                });
            }
        });
        assert_eq!(*m.lock().unwrap(), 2 * ROUNDS);
        assert_eq!(waiters(&cv), 0);
    }

    #[test]
    fn notify_while_holding_the_lock_wakes_every_waiter() {
        let mut a = buf(Mutex::<u32>::memory_size().unwrap());
        let mut b = buf(Condvar::memory_size().unwrap());
        let m = Mutex::<u32>::create(region(&mut a), 0).unwrap();
        let cv = Condvar::create(region(&mut b)).unwrap();
        thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let g = cv.wait_while(m.lock().unwrap(), |go| *go == 0).unwrap();
                    assert_eq!(*g, 1);
                });
            }
            while waiters(&cv) < 3 {
                thread::yield_now();
            }
            let mut g = m.lock().unwrap();
            *g = 1;
            cv.notify_all();
        });
        assert_eq!(waiters(&cv), 0);
    }

    #[test]
    fn wait_timeout_times_out_and_keeps_the_lock() {
        let mut a = buf(Mutex::<u32>::memory_size().unwrap());
        let mut b = buf(Condvar::memory_size().unwrap());
        let m = Mutex::<u32>::create(region(&mut a), 5).unwrap();
        let cv = Condvar::create(region(&mut b)).unwrap();
        let mut g = m.lock().unwrap();
        let mut timed_out = false;
        // A spurious wake-up is allowed; a time-out must come eventually.
        for _ in 0..100 {
            let (g2, r) = cv.wait_timeout(g, Duration::from_millis(10)).unwrap();
            g = g2;
            if r.timed_out() {
                timed_out = true;
                break;
            }
        }
        assert!(timed_out);
        assert_eq!(*g, 5);
        assert!(m.raw().is_locked());
        assert!(m.try_lock().is_err());
        assert_eq!(waiters(&cv), 0);
        drop(g);
        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(10), |v| *v == 5)
            .unwrap();
        assert!(r.timed_out());
        let (g, r) = cv
            .wait_timeout_while(g, Duration::from_secs(10), |v| *v != 5)
            .unwrap();
        assert!(!r.timed_out());
        drop(g);
        let (_g, r) = cv
            .wait_deadline(m.lock().unwrap(), Some(Deadline::after(Duration::ZERO)))
            .unwrap();
        assert!(r.timed_out());
    }

    #[test]
    fn notify_without_waiters_touches_nothing() {
        let cv = RawCondvar::new();
        cv.notify_one();
        cv.notify_all();
        assert_eq!(cv.seq.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn relock_reports_an_owner_that_died_meanwhile() {
        let mut a = buf(Mutex::<u32>::memory_size().unwrap());
        let m = Mutex::<u32>::create(region(&mut a), 0).unwrap();
        let cv = RawCondvar::new();
        thread::scope(|s| {
            let h = s.spawn(|| {
                let e = cv.wait(m.lock().unwrap()).unwrap_err();
                assert_eq!(e.cause(), PoisonCause::OwnerDied { pid: DEAD_PID });
                assert_eq!(m.raw().owner_pid(), Some(crate::sync::current_pid()));
            });
            // Wait until the waiter is registered and has unlocked the mutex,
            // then make a "process" take the mutex and die.
            while cv.waiters.load(Ordering::Relaxed) == 0 || m.raw().is_locked() {
                thread::yield_now();
            }
            m.raw().hold_as_dead(false);
            cv.notify_one();
            h.join().unwrap();
        });
        assert!(m.is_poisoned());
        assert!(!m.raw().is_locked());
    }

    #[test]
    fn works_with_a_raw_mutex_and_another_guard_type() {
        let mut a = buf(crate::value::Array::<u8>::memory_size(4).unwrap());
        let arr = crate::value::Array::<u8>::create(region(&mut a), 4, 0).unwrap();
        let cv = RawCondvar::new();
        thread::scope(|s| {
            s.spawn(|| {
                arr.lock().unwrap()[3] = 1;
                cv.notify_one();
            });
            let g = cv.wait_while(arr.lock().unwrap(), |a| a[3] == 0).unwrap();
            assert_eq!(&*g, &[0, 0, 0, 1]);
        });
    }

    #[test]
    fn attach_checks_kind() {
        let mut b = buf(4096);
        let r = region(&mut b);
        assert_eq!(Condvar::attach(r).unwrap_err(), AttachError::NotReady);
        assert_eq!(
            Condvar::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
            AttachError::NotReady
        );
        Condvar::create(r).unwrap();
        assert!(matches!(
            Condvar::create(r),
            Err(InitError::AlreadyInitialized)
        ));
        assert!(Condvar::attach(r).is_ok());
        assert!(Condvar::attach_timeout(r, Duration::from_millis(2)).is_ok());
        assert!(matches!(
            Mutex::<u64>::attach(r),
            Err(AttachError::KindMismatch { found: 5, .. })
        ));
        assert_eq!(Condvar::memory_size(), Some(256));
        let mut small = buf(128);
        assert!(matches!(
            Condvar::create(region(&mut small)),
            Err(InitError::TooSmall { .. })
        ));
        assert_eq!(
            std::format!("{:?}", Condvar::attach(r).unwrap()),
            "Condvar { .. }"
        );
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// A mutex, the flag it protects (race-checked by loom) and a condvar.
    struct Shared {
        lock: RawMutex,
        flag: UnsafeCell<bool>,
        cv: RawCondvar,
    }

    // SAFETY: `flag` is accessed only under `lock`.
    unsafe impl Sync for Shared {}
    // SAFETY: as for Sync.
    unsafe impl Send for Shared {}

    impl Shared {
        fn new() -> Self {
            Self {
                lock: RawMutex::new(),
                flag: UnsafeCell::new(false),
                cv: RawCondvar::new(),
            }
        }

        /// Waits for the flag (a lost notify is a loom deadlock).
        fn wait_for_flag(&self) {
            self.lock.lock().unwrap();
            // SAFETY: under the lock (wait_raw relocks before returning).
            while !self.flag.with(|p| unsafe { *p }) {
                // SAFETY: this thread holds the lock.
                unsafe { self.cv.wait_raw(&self.lock, None) }.unwrap();
            }
            // SAFETY: locked.
            unsafe { self.lock.unlock() };
        }

        fn set_flag(&self, notify_under_lock: bool) {
            self.lock.lock().unwrap();
            // SAFETY: under the lock.
            self.flag.with_mut(|p| unsafe { *p = true });
            if notify_under_lock {
                self.cv.notify_one();
            }
            // SAFETY: locked above.
            unsafe { self.lock.unlock() };
            if !notify_under_lock {
                self.cv.notify_one();
            }
        }
    }

    fn no_lost_notify(notify_under_lock: bool) {
        loom::model(move || {
            let s = Arc::new(Shared::new());
            let s2 = s.clone();
            let t = thread::spawn(move || s2.set_flag(notify_under_lock));
            s.wait_for_flag();
            t.join().unwrap();
        });
    }

    #[test]
    fn no_lost_notify_after_unlock() {
        no_lost_notify(false);
    }

    #[test]
    fn no_lost_notify_under_lock() {
        no_lost_notify(true);
    }

    /// Two waiters, one `notify_all` after the change: both wake.
    #[test]
    fn notify_all_wakes_both_waiters() {
        loom::model(|| {
            let s = Arc::new(Shared::new());
            let hs: std::vec::Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    thread::spawn(move || s.wait_for_flag())
                })
                .collect();
            s.lock.lock().unwrap();
            // SAFETY: under the lock.
            s.flag.with_mut(|p| unsafe { *p = true });
            // SAFETY: locked above.
            unsafe { s.lock.unlock() };
            s.cv.notify_all();
            for h in hs {
                h.join().unwrap();
            }
        });
    }
}
