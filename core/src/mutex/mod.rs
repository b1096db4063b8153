//! A process-shared, robust mutex: [`RawMutex`] (16 bytes, embeddable in any
//! shared structure) and [`Mutex<T>`](Mutex), a region holding a lock and a
//! `T: Pod`, with a guard and poisoning like `std::sync::Mutex`.
//!
//! *Robust* means that a holder killed with `SIGKILL` while holding the lock
//! never makes anyone wait forever: the next locker notices that the owner
//! process is gone, takes the lock over, and gets it back as a
//! [`PoisonError`] with [`PoisonCause::OwnerDied`], from which it can
//! recover the data ([`PoisonError::into_inner`]).
//!
//! # Examples
//!
//! ```
//! use multiproc_core::mutex::Mutex;
//! use multiproc_core::region::Region;
//!
//! #[repr(C, align(128))]
//! struct Mem([u8; 512]);
//! let mut mem = Box::new(Mem([0; 512]));
//! assert!(Mutex::<u64>::memory_size().unwrap() <= 512);
//! let region = Region::from_mut_slice(&mut mem.0);
//!
//! let m = Mutex::<u64>::create(region, 0).unwrap();
//! std::thread::scope(|s| {
//!     for _ in 0..4 {
//!         // Another process would `Mutex::<u64>::attach(region)` instead.
//!         s.spawn(|| for _ in 0..1000 { *m.lock().unwrap() += 1; });
//!     }
//! });
//! assert_eq!(*m.lock().unwrap(), 4000);
//! ```
//!
//! # Why not glibc's robust `pthread_mutex_t`
//!
//! The kernel already has robust futexes (`set_robust_list`,
//! `EOWNERDEAD`), reached through `pthread_mutexattr_setrobust`. They are
//! not used here, for three reasons:
//!
//! - `pthread_mutex_t` is 24 bytes on i386, 40 on x86_64 and something else
//!   on aarch64 or musl, with a layout private to each libc: a 32-bit and a
//!   64-bit process (or a glibc and a musl one) cannot share one, which
//!   breaks the rule that every shared layout is the same on every target.
//! - It cannot be model-checked with loom; this design goes through the
//!   `sync` facade like every other structure of the crate.
//! - The `raw-sync` crate, the usual wrapper, needs `std`, offers no robust
//!   mutex, and initialises its attributes from uninitialised memory.
//!
//! So this is an own futex mutex in the style of Drepper's "Futexes Are
//! Tricky" (mutex 3), with the owner's pid in the word and its
//! [identity](crate::identity) (pid plus start time) beside it, so that
//! death is detectable from user space, and a reused pid is not taken for
//! the dead owner.
//!
//! # The lock word
//!
//! [`RawMutex`] is `#[repr(C)] { word: u32 futex, poison: u32, owner: u64 }`,
//! 16 bytes, alignment 8, the same on every target:
//!
//! | `word` | meaning |
//! |---|---|
//! | `0` | unlocked |
//! | `pid` | held by process `pid`, nobody sleeps on it |
//! | `pid \| WAITERS_BIT` | held by `pid`; someone may sleep on it: unlock must wake one |
//! | `WAITERS_BIT` alone | never written; garbage, treated as unlocked |
//!
//! The pid sits in the low 31 bits ([`PID_MASK`]; Linux pids are below
//! 2<sup>22</sup>), [`WAITERS_BIT`] is bit 31.
//!
//! | `poison` | meaning |
//! |---|---|
//! | `0` | not poisoned |
//! | `OWNER_DIED_BIT \| pid` | process `pid` died holding the lock |
//! | [`POISON_PANICKED`] (or any other non-zero value) | a holder panicked (reported by the std layer through [`MutexGuard::poison`]) |
//!
//! The latest cause is recorded. Poison is sticky, as in std: every later
//! lock reports it until [`Mutex::clear_poison`].
//!
//! | `owner` | meaning |
//! |---|---|
//! | `0` | unlocked, or the holder has not recorded itself yet (or died before it could) |
//! | identity word | the holder's pid and start time ([`crate::identity`]) |
//!
//! # Locking
//!
//! ```text
//!  lock:    CAS word 0 -> me                    (fast path, Acquire)
//!  slow:    spin a few µs retrying the CAS
//!           loop:
//!             word has no owner -> CAS word -> me | WAITERS_BIT; done
//!             (a woken waiter cannot know whether others still sleep)
//!             set WAITERS_BIT, futex_wait(word) until woken or the
//!             liveness interval (1 ms doubling to 100 ms) or the deadline
//!             on time-out: w = word (Acquire), o = owner
//!                          holder of w dead (by o if it names w's pid,
//!                          else by the pid)?
//!                            CAS owner o -> 0, CAS word w -> me | WAITERS_BIT
//!                            (AcqRel), poison = OWNER_DIED_BIT | pid;
//!                            done (poisoned)
//!  then:    owner = my identity                 (Relaxed)
//!  unlock:  owner = 0                           (Relaxed)
//!           old = swap(word, 0)                 (Release)
//!           old has WAITERS_BIT -> futex_wake(word, 1)
//! ```
//!
//! An uncontended lock and unlock is one CAS, two stores and one swap, on
//! one cache line: no system call and no clock read. The pid and identity
//! come from a per-process cache.
//!
//! A waiter notices a dead owner within one liveness interval (at most
//! 100 ms, plus one read of `/proc/<pid>/stat`); a zombie counts as dead.
//! The same check makes a waiter whose wake-up was lost (the woken process
//! was killed before taking the lock) go on after one interval.
//!
//! # Owner identity
//!
//! The futex word is 32 bits (the kernel sleeps on 32-bit words), too
//! small for a pid plus start time, so the holder's identity sits in
//! `owner` beside it and is written after the word is won. A waiter
//! deciding liveness loads the word (`Acquire`), then `owner`:
//!
//! - `owner` names the word's pid: the identity decides, and a process
//!   that merely reuses the pid fails it (different start time).
//! - Anything else (0, or another pid): the holder is between its CAS and
//!   its store of `owner`, or died there. The pid alone decides, which can
//!   only err towards "alive".
//!
//! Why a waiter never reads a *stale dead* identity under the pid of a live
//! holder: every write to the word is an RMW, so every value it loads
//! continues the release sequence of every earlier unlock (Release swap)
//! and takeover (AcqRel CAS). Its Acquire load therefore synchronises with
//! them, and each of those cleared `owner` before its Release: `owner`
//! reads as this hold's own record, or 0. A takeover clears `owner` with a
//! CAS from the exact identity it judged dead, so two waiters cannot both
//! take one dead hold over, and the clear is what stops a waiter from
//! judging a live taker that reuses the dead holder's pid by the dead
//! identity. The loom models `dead_holder_is_taken_over_at_every_point`
//! and `reused_pid_taker_is_never_taken_over` check this; the second
//! fails (a double hold) when the takeover's word CAS is only `Acquire`,
//! when the waiter's word load is `Relaxed`, or when the takeover does not
//! clear `owner`.
//!
//! # Limits (read these)
//!
//! - **Pid reuse, narrowed.** A holder killed in the few instructions
//!   between winning the word and recording its identity is judged by its
//!   pid alone: if that pid is reused before a waiter looks, the waiters
//!   wait until the new process exits. Equally, a waiter that finds the
//!   pid dead, with no identity recorded, and takes the word over, races
//!   a process that reuses the pid *and* takes the lock in the
//!   microseconds between the check and the CAS. Any other hold is judged
//!   by pid plus start time, which a reused pid cannot pass. Where `/proc`
//!   cannot be read, the start time is unknown and only the pid counts.
//! - **Pid namespaces.** Processes in different pid namespaces see
//!   different pids for the same process. A region records its creator's
//!   pid namespace and refuses an attach from another one
//!   ([`AttachError::ForeignPidNamespace`]); a bare [`RawMutex`] placed in
//!   memory by other means has no such check: don't share it across pid
//!   namespaces.
//! - **Not re-entrant.** A process (any of its threads) that locks a mutex
//!   it already holds waits for itself forever. An `RLock` is built in the
//!   std layer.
//! - **Threads.** Ownership is per process. A *thread* that exits holding
//!   the lock (its guard leaked with `mem::forget`) is not detected, since
//!   its process still runs; Rust threads unwind and drop their guards. For
//!   the same reason the raw lock may be unlocked by another thread of the
//!   same process; the guard, though, is not `Send` (it could otherwise
//!   ride into a forked child, or a thread that outlives the lock).
//! - **exec.** A process that calls `exec` while holding the lock keeps its
//!   pid: the lock is never released.
//! - **fork.** A child forked while its parent holds the lock does not
//!   hold it (the word names the parent): it must not drop a guard it
//!   inherited (`_exit` without running destructors).
//! - **try_lock** never makes a system call, so it never detects a dead
//!   owner; [`Mutex::lock`] and [`Mutex::lock_timeout`] (even with a zero
//!   timeout) do.
//! - Under loom the pid is a per-thread id, and a thread may die
//!   (`loom_die`) and have its pid reused by another (`loom_reuse_pid`);
//!   real deaths are tested with real processes and `kill -9`.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::time::Duration;

use bytemuck::Pod;

use crate::identity::Identity;
use crate::region::{AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec};
use crate::sync::{
    current_identity, current_pid, identity_alive, pid_alive, AtomicU32, AtomicU64, Futex,
    Ordering, UnsafeCell, WaitOutcome,
};
use crate::time::Deadline;
use crate::wait::Spin;

pub use error::{LockResult, LockTimeoutError, PoisonCause, PoisonError, TryLockError};

mod error;

/// Bit 31 of the lock word: a process may sleep on the word, so unlocking
/// must wake one.
pub const WAITERS_BIT: u32 = 1 << 31;
/// The owner's pid in the lock word (and the dead owner's in the poison
/// word).
pub const PID_MASK: u32 = !WAITERS_BIT;
/// Bit 31 of the poison word: the pid in the low bits died holding the lock.
pub const OWNER_DIED_BIT: u32 = 1 << 31;
/// The poison word's value after [`MutexGuard::poison`].
pub const POISON_PANICKED: u32 = 1;

/// First time a waiter sleeps before checking that the owner still lives.
const LIVENESS_FIRST: Duration = Duration::from_millis(1);
/// The interval doubles up to this.
const LIVENESS_MAX: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// RawMutex
// ---------------------------------------------------------------------------

/// The lock word and poison word of a robust process-shared mutex, without
/// data: embeddable in any shared structure.
///
/// See the [module docs](self) for the word encoding and the limits of death
/// detection. Methods returning a [`PoisonError<()>`](PoisonError) hold the
/// lock on that error too.
///
/// # Examples
///
/// ```
/// use multiproc_core::mutex::RawMutex;
///
/// let m = RawMutex::new();
/// m.lock().unwrap();
/// assert!(m.is_locked());
/// assert!(m.try_lock().is_err());
/// // SAFETY: this process locked it just above.
/// unsafe { m.unlock() };
/// assert!(!m.is_locked());
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawMutex {
    /// `0`, or the owner's pid with [`WAITERS_BIT`]: the futex word.
    word: Futex,
    /// `0`, [`POISON_PANICKED`], or [`OWNER_DIED_BIT`] with a pid. Written
    /// only by a holder (or by `clear_poison`).
    poison: AtomicU32,
    /// `0`, or the [identity word](crate::identity) of the holder: written
    /// by a holder right after it takes the word, cleared before it gives
    /// the word back. Tells a dead holder from a live process that reuses
    /// its pid (see "Owner identity" in the module docs).
    owner: AtomicU64,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RawMutex, [u64; 2]);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(RawMutex, u64);

// SAFETY: repr(C) of two 32-bit atomics (the futex is a transparent
// AtomicU32) and a 64-bit one: no pointers, every bit pattern valid (a
// garbage word at worst names a wrong owner, which the liveness check takes
// over); size and alignment pinned.
unsafe impl ShmSafe for RawMutex {}

/// How the slow path got the lock.
enum Acquired {
    /// Normally.
    Clean,
    /// From process `pid`, which died holding it.
    FromDead(u32),
}

/// The deadline passed.
struct TimedOut;

impl Default for RawMutex {
    fn default() -> Self {
        Self::new()
    }
}

impl RawMutex {
    /// An unlocked, unpoisoned mutex.
    pub fn new() -> Self {
        Self {
            word: Futex::new(0),
            poison: AtomicU32::new(0),
            owner: AtomicU64::new(0),
        }
    }

    /// This process's identity in the word.
    #[inline]
    fn me() -> u32 {
        let me = current_pid() & PID_MASK;
        debug_assert!(me != 0, "pid 0 cannot own a lock");
        me
    }

    /// Locks, blocking until the lock is free or its owner is found dead.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] if the mutex is poisoned (an owner died, this call
    /// included, or a holder panicked). The lock is held then too.
    #[inline]
    pub fn lock(&self) -> LockResult<()> {
        let me = Self::me();
        if !self.try_acquire(me) {
            // Without a deadline the slow path never times out; the loop only
            // keeps that fact out of the types.
            let how = loop {
                if let Ok(how) = self.lock_slow(me, None) {
                    break how;
                }
            };
            self.after_slow(how);
        }
        self.set_owner();
        self.poison_result()
    }

    /// Locks if it is free, without waiting and without a system call.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held (even by a dead process:
    /// only the blocking calls detect that); [`TryLockError::Poisoned`]
    /// if acquired but poisoned (the lock is held then).
    #[inline]
    pub fn try_lock(&self) -> Result<(), TryLockError<()>> {
        if self.try_acquire(Self::me()) {
            self.set_owner();
            Ok(self.poison_result()?)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Locks, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::TimedOut`] if a live process held it throughout;
    /// [`LockTimeoutError::Poisoned`] if acquired but poisoned (held then).
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<(), LockTimeoutError<()>> {
        self.lock_deadline(Some(Deadline::after(timeout)))
    }

    /// Locks, giving up at `deadline` (`None`: never).
    ///
    /// Even with a deadline already past, a held lock's owner is checked for
    /// liveness once, so a dead owner's lock is taken over.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    pub fn lock_deadline(&self, deadline: Option<Deadline>) -> Result<(), LockTimeoutError<()>> {
        let me = Self::me();
        if !self.try_acquire(me) {
            match self.lock_slow(me, deadline) {
                Ok(how) => self.after_slow(how),
                Err(TimedOut) => return Err(LockTimeoutError::TimedOut),
            }
        }
        self.set_owner();
        Ok(self.poison_result()?)
    }

    /// The fast path: takes a free word with one CAS.
    #[inline]
    fn try_acquire(&self, me: u32) -> bool {
        // Acquire: pairs with the Release swap in `unlock`, so the data the
        // previous holder wrote (and its clear of `owner`) is visible to
        // this one.
        self.word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Records this process's identity as the holder's. Called by every
    /// path right after it took the word.
    #[inline]
    fn set_owner(&self) {
        // Relaxed: readers order their load of `owner` after an Acquire
        // load of `word` (see `holder_alive`); this store, made after our
        // CAS, is at worst not seen yet, and then `owner` still reads 0
        // (or a cleared or stale identity naming another pid), which means
        // "ask about the pid alone" and errs only towards "alive". Our
        // clear in `unlock` is sequenced after it, so it never outlives
        // our hold.
        self.owner.store(current_identity(), Ordering::Relaxed);
    }

    /// Records a takeover from a dead owner. The caller holds the lock.
    #[inline]
    fn after_slow(&self, how: Acquired) {
        if let Acquired::FromDead(pid) = how {
            // Relaxed: written while holding the lock; the Release of our
            // unlock publishes it to the next holder.
            self.poison
                .store(OWNER_DIED_BIT | (pid & PID_MASK), Ordering::Relaxed);
        }
    }

    /// The poison state, read by a holder.
    #[inline]
    fn poison_result(&self) -> LockResult<()> {
        // Relaxed: poison is written by holders (and `clear_poison`); the
        // Acquire that took the lock synchronised with the previous holder's
        // Release unlock, so its write is visible.
        match PoisonCause::from_word(self.poison.load(Ordering::Relaxed)) {
            None => Ok(()),
            Some(cause) => Err(PoisonError::new((), cause)),
        }
    }

    /// Whether the process holding the word `pid` still runs, given
    /// `owner`, loaded after an Acquire load of the word that returned
    /// `pid` (see "Owner identity" in the module docs).
    ///
    /// An identity naming `pid` decides (a reused pid fails it). Anything
    /// else (0, or an identity naming another pid) means the holder is
    /// between taking the word and recording itself, or died there: then
    /// the pid alone decides, which can wrongly say "alive" (a reused pid)
    /// but never wrongly "dead".
    fn holder_alive(pid: u32, owner: u64) -> bool {
        match Identity::from_word(owner) {
            Some(id) if id.pid() == pid => identity_alive(owner),
            _ => pid_alive(pid),
        }
    }

    /// Spins, then sleeps on the word, checking the owner's liveness each
    /// time a liveness interval passes without a wake-up.
    #[cold]
    #[inline(never)]
    fn lock_slow(&self, me: u32, deadline: Option<Deadline>) -> Result<Acquired, TimedOut> {
        // Spin: a holder on another CPU usually unlocks within microseconds,
        // far less than a sleep and wake-up cost. Not when the deadline has
        // passed already (a zero timeout): straight to the liveness check.
        let spin = if deadline.is_some_and(|d| d.has_passed()) {
            Spin::NONE
        } else {
            Spin::DEFAULT
        };
        let mut backoff = spin.start();
        while backoff.spin() {
            // Relaxed: only a hint for the CAS, which carries the Acquire.
            if self.word.load(Ordering::Relaxed) & PID_MASK == 0 && self.try_acquire(me) {
                return Ok(Acquired::Clean);
            }
        }

        let mut interval = LIVENESS_FIRST;
        // Relaxed: every decision below is made by a CAS on this word.
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            if w & PID_MASK == 0 {
                // Free. Take it with WAITERS_BIT set: this thread may have
                // been woken by an unlock, and others may still sleep; a
                // needless wake-up is the price of never losing one.
                // Acquire: pairs with the Release swap in `unlock`.
                match self.word.compare_exchange(
                    w,
                    me | WAITERS_BIT,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(Acquired::Clean),
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            if w & WAITERS_BIT == 0 {
                // Relaxed: the bit publishes no data; it only tells the
                // holder's unlock (an RMW on the same word, so it sees the
                // bit) to wake us.
                match self.word.compare_exchange(
                    w,
                    w | WAITERS_BIT,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => w |= WAITERS_BIT,
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            // Never sleep past the liveness interval: a dead owner wakes
            // nobody. Under loom the clock is frozen and this fires only
            // for a deadline already past.
            let nap = Deadline::after(interval).min(deadline);
            let outcome = self.word.wait(w, Some(nap));
            if outcome == WaitOutcome::TimedOut {
                // Acquire: synchronises with the Release of every earlier
                // unlock and takeover of the word (all writes to it are
                // RMWs, so each continues their release sequences): the
                // `owner` load below sees each earlier holder's clear, and
                // so never an identity older than this holder's hold.
                w = self.word.load(Ordering::Acquire);
                let owner_pid = w & PID_MASK;
                if owner_pid != 0 {
                    // Relaxed: ordered after the Acquire above (see there).
                    let o = self.owner.load(Ordering::Relaxed);
                    if !Self::holder_alive(owner_pid, o) {
                        if let Some(how) = self.take_over_dead(me, w, o) {
                            return Ok(how);
                        }
                        // Someone else took it over (or unlocked): retry.
                        w = self.word.load(Ordering::Relaxed);
                        continue;
                    }
                }
                if deadline.is_some_and(|d| d.has_passed()) {
                    return Err(TimedOut);
                }
                interval = (interval * 2).min(LIVENESS_MAX);
            } else {
                // Relaxed: as above.
                w = self.word.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes the word `w` over from its holder, found dead with `owner`
    /// (the identity word read with it); `None` if another waiter took it
    /// over first, or it changed.
    ///
    /// First `owner` is cleared, by a CAS from exactly the value the
    /// decision was made on: of several waiters that found the holder dead,
    /// one passes this step per decision, and the value left in `owner`
    /// can never be a dead identity while a live process holds the word
    /// under the same pid (which would make a waiter take a live hold over:
    /// the case of a taker that reuses the dead holder's pid). Then the
    /// word: its CAS is `AcqRel` so that a waiter that loads our value
    /// (Acquire) also sees the clear.
    fn take_over_dead(&self, me: u32, mut w: u32, owner: u64) -> Option<Acquired> {
        let dead = w & PID_MASK;
        // Relaxed: an RMW reads the latest value; what must be seen with
        // this clear is published by the word's Release below.
        if self
            .owner
            .compare_exchange(owner, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        loop {
            // Acquire: whatever the dead owner managed to write before
            // dying is visible (it is dead: nothing more will come).
            // Release: the clear of `owner` above is visible to every
            // waiter that loads this value of the word (`lock_slow`).
            match self.word.compare_exchange(
                w,
                me | WAITERS_BIT,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Acquired::FromDead(dead)),
                // The same dead holder, a waiter changed the waiters bit:
                // still ours to take (no other waiter takes a hold whose
                // `owner` we cleared: it finds the pid dead and its own
                // clear fails, or the pid alive and waits).
                Err(now) if now & PID_MASK == dead => w = now,
                Err(_) => return None,
            }
        }
    }

    /// Unlocks, waking one sleeper if there may be one.
    ///
    /// # Safety
    ///
    /// This process holds the lock (it locked it and has not unlocked it
    /// since): unlocking a lock another process holds breaks its mutual
    /// exclusion.
    #[inline]
    pub unsafe fn unlock(&self) {
        debug_assert_eq!(
            self.word.load(Ordering::Relaxed) & PID_MASK,
            Self::me(),
            "unlock by a process that does not hold the lock"
        );
        self.clear_owner();
        self.release_word();
    }

    /// The first half of `unlock`: this holder's identity leaves `owner`.
    #[inline]
    fn clear_owner(&self) {
        // Relaxed: published by the Release swap in `release_word`, which
        // every later holder's and waiter's Acquire on the word
        // synchronises with.
        self.owner.store(0, Ordering::Relaxed);
    }

    /// The second half of `unlock`: frees the word, waking a sleeper.
    #[inline]
    fn release_word(&self) {
        // Release: pairs with the Acquire CAS in `lock`, `try_lock` and
        // `lock_slow`: the next holder sees every write made under the lock;
        // and with the Acquire load of a waiter's liveness check, which
        // then sees `owner` cleared.
        let old = self.word.swap(0, Ordering::Release);
        if old & WAITERS_BIT != 0 {
            self.word.wake_one();
        }
    }

    /// Whether some process holds the lock (a racy snapshot).
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot for diagnostics, no data depends on it.
        self.word.load(Ordering::Relaxed) & PID_MASK != 0
    }

    /// The pid of the holder, if held (a racy snapshot; the holder may be
    /// dead).
    pub fn owner_pid(&self) -> Option<u32> {
        // Relaxed: as in `is_locked`.
        match self.word.load(Ordering::Relaxed) & PID_MASK {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Whether the mutex is poisoned (a racy snapshot unless the lock is
    /// held).
    pub fn is_poisoned(&self) -> bool {
        self.poison_cause().is_some()
    }

    /// Why the mutex is poisoned, if it is.
    pub fn poison_cause(&self) -> Option<PoisonCause> {
        // Relaxed: as `poison_result`; exact when the caller holds the lock.
        PoisonCause::from_word(self.poison.load(Ordering::Relaxed))
    }

    /// Marks the mutex poisoned with [`PoisonCause::Panicked`]. Call it
    /// while holding the lock, when the data may be left inconsistent.
    pub fn poison(&self) {
        // Relaxed: written under the lock, published by the unlock's Release.
        self.poison.store(POISON_PANICKED, Ordering::Relaxed);
    }

    /// Clears the poison. Call it while holding the lock, after repairing
    /// the data, so the next holder's Acquire sees the clear.
    pub fn clear_poison(&self) {
        // Relaxed: as `poison`.
        self.poison.store(0, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// Guards usable with a condition variable
// ---------------------------------------------------------------------------

/// A guard holding a [`RawMutex`] locked, which a condition variable may
/// unlock and relock while it waits.
///
/// Implemented by [`MutexGuard`] and [`ArrayGuard`](crate::value::ArrayGuard);
/// the std layer implements it for its own guards.
///
/// # Safety
///
/// While a value of the implementing type exists, this process holds the
/// mutex [`raw_mutex`](Self::raw_mutex) returns (always the same one), and
/// dropping the value unlocks it. A condition variable's wait unlocks that
/// mutex and locks it again before handing the guard back, so the guard
/// must not rely on anything else about the lock across the wait.
pub unsafe trait LockGuard {
    /// The mutex this guard holds.
    fn raw_mutex(&self) -> &RawMutex;
}

// ---------------------------------------------------------------------------
// Region-level Mutex<T>
// ---------------------------------------------------------------------------

/// The value of a lock-protected structure in shared memory.
#[repr(transparent)]
#[derive(Debug)]
pub(crate) struct DataCell<T>(UnsafeCell<T>);

// SAFETY: repr(transparent) over the facade's UnsafeCell of a T: Pod (valid
// for every bit pattern, no invariants); accessed only under its lock.
unsafe impl<T: Pod> ShmSafe for DataCell<T> {}

impl<T> DataCell<T> {
    pub(crate) fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }

    /// The pointer to the value, for a guard.
    pub(crate) fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// A [`RawMutex`] alone on its 128-byte line, so that a data value sharing
/// the region does not share its cache line with the lock word.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct LockLine {
    pub(crate) lock: RawMutex,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(LockLine, [u8; 128]);
static_assertions::const_assert_eq!(core::mem::align_of::<LockLine>(), 128);

// SAFETY: repr(C) holding one ShmSafe RawMutex plus padding; size pinned.
unsafe impl ShmSafe for LockLine {}

impl LockLine {
    pub(crate) fn new() -> Self {
        Self {
            lock: RawMutex::new(),
        }
    }
}

/// A robust process-shared mutex protecting a `T: Pod`, built in a region.
///
/// ```text
///  0          128                        256
///  +----------+--------------------------+--------+
///  | header   | RawMutex (16 B), padding | T      |
///  +----------+--------------------------+--------+
/// ```
///
/// The handle is a cheap view (`Copy`); every process builds its own with
/// [`create`](Self::create) or [`attach`](Self::attach).
///
/// # Examples
///
/// ```
/// use multiproc_core::mutex::{Mutex, PoisonCause};
/// use multiproc_core::region::Region;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 512]);
/// let mut mem = Box::new(Mem([0; 512]));
/// let m = Mutex::<[u32; 4]>::create(Region::from_mut_slice(&mut mem.0), [0; 4]).unwrap();
///
/// let mut g = m.lock().unwrap();
/// g[0] = 7;
/// g.poison(); // what the std layer does when the holder panics
/// drop(g);
///
/// let err = m.lock().unwrap_err();
/// assert_eq!(err.cause(), PoisonCause::Panicked);
/// assert_eq!(err.into_inner()[0], 7);
/// m.clear_poison();
/// assert!(m.lock().is_ok());
/// ```
pub struct Mutex<'a, T: Pod> {
    raw: &'a RawMutex,
    data: &'a DataCell<T>,
}

impl<T: Pod> Clone for Mutex<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Pod> Copy for Mutex<'_, T> {}

// SAFETY: the handle only reaches shared memory through the lock protocol;
// the value moves between threads (and processes) under the lock, as with
// std's Mutex, which needs T: Send for both.
unsafe impl<T: Pod + Send> Send for Mutex<'_, T> {}
// SAFETY: as for Send.
unsafe impl<T: Pod + Send> Sync for Mutex<'_, T> {}

impl<T: Pod> fmt::Debug for Mutex<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("owner_pid", &self.raw.owner_pid())
            .field("poison", &self.raw.poison_cause())
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> Mutex<'a, T> {
    /// Bytes a `Mutex<T>` occupies in a region, header included (`None` if
    /// it overflows the address space, which no `T` does in practice).
    pub fn memory_size() -> Option<usize> {
        Layout::of::<LockLine, DataCell<T>>(1).map(|l| l.total)
    }

    /// Builds an unlocked mutex holding `init` in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError`] if the region is too small, misaligned or already
    /// initialised.
    pub fn create(region: Region<'a>, init: T) -> Result<Self, InitError> {
        Self::create_as(region, init, Kind::Mutex, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` for the element
    /// type (for example a hash of its name, or of the handle that owns the
    /// region) that [`attach_tagged_timeout`](Self::attach_tagged_timeout)
    /// must match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, init: T, tag: u64) -> Result<Self, InitError> {
        Self::create_as(region, init, Kind::Mutex, tag)
    }

    crate::region::attach_fns!('a, "a mutex");

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        Self::open_as(region, Kind::Mutex, tag, deadline)
    }

    /// Builds the lock-plus-value layout under another kind (`Value`) and
    /// element tag.
    pub(crate) fn create_as(
        region: Region<'a>,
        init: T,
        kind: Kind,
        tag: u64,
    ) -> Result<Self, InitError> {
        let spec = Spec {
            kind,
            elem: ElemType::of::<T>().tagged(tag),
            capacity: 1,
            count: 1,
        };
        let parts = Parts::create(region, spec, LockLine::new, |_| DataCell::new(init))?;
        Ok(Self::from_parts(parts))
    }

    /// Opens the lock-plus-value layout under another kind (`Value`) and
    /// element tag.
    pub(crate) fn open_as(
        region: Region<'a>,
        kind: Kind,
        tag: u64,
        deadline: Option<Deadline>,
    ) -> Result<Self, AttachError> {
        let parts = Parts::<LockLine, DataCell<T>>::open(
            region,
            kind,
            ElemType::of::<T>().tagged(tag),
            |c| (c == 1).then_some(1),
            deadline,
        )?;
        Ok(Self::from_parts(parts))
    }

    fn from_parts(parts: Parts<'a, LockLine, DataCell<T>>) -> Self {
        Self {
            raw: &parts.body.lock,
            // Count is 1 (checked by create/open), so index 0 exists.
            data: parts.elem(0),
        }
    }

    /// Locks, blocking until the lock is free or its holder is found dead.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] holding the guard if the mutex is poisoned: a holder
    /// died ([`PoisonCause::OwnerDied`], detected within about 100 ms of
    /// waiting) or panicked. The data may be half-written; repair it through
    /// [`PoisonError::into_inner`] and call [`clear_poison`](Self::clear_poison).
    ///
    /// A process that locks a mutex it already holds waits forever.
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let r = self.raw.lock();
        let guard = MutexGuard::new(self.raw, self.data);
        match r {
            Ok(()) => Ok(guard),
            Err(p) => Err(p.map(|()| guard)),
        }
    }

    /// Locks if free, without waiting or a system call.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if held (a dead holder is not detected
    /// here); [`TryLockError::Poisoned`] with the guard if poisoned.
    #[inline]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        let guard = || MutexGuard::new(self.raw, self.data);
        match self.raw.try_lock() {
            Ok(()) => Ok(guard()),
            Err(e) => Err(e.map(|()| guard())),
        }
    }

    /// Locks, giving up after `timeout`. A dead holder is taken over even
    /// when the timeout is zero.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::TimedOut`] if a live process held it throughout;
    /// [`LockTimeoutError::Poisoned`] with the guard if poisoned.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, LockTimeoutError<MutexGuard<'_, T>>> {
        let guard = || MutexGuard::new(self.raw, self.data);
        match self.raw.lock_timeout(timeout) {
            Ok(()) => Ok(guard()),
            Err(e) => Err(e.map(|()| guard())),
        }
    }

    /// Whether the mutex is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.raw.is_poisoned()
    }

    /// Clears the poison (best done while holding the guard, after repair).
    pub fn clear_poison(&self) {
        self.raw.clear_poison();
    }

    /// The underlying lock.
    pub fn raw(&self) -> &'a RawMutex {
        self.raw
    }
}

/// Holds a [`Mutex`] locked; gives access to the value; unlocks on drop.
///
/// Not `Send` (as `std`'s guard, and parking_lot's `GuardNoSend`): the
/// lock belongs to the process that took it, and a guard moved elsewhere
/// (into another thread that may outlive the lock's owner, or into a
/// forked child, which would then write through it while the parent's
/// copy unlocks) would break mutual exclusion:
///
/// ```compile_fail,E0277
/// # use multiproc_core::{mutex::Mutex, region::Region};
/// # #[repr(C, align(128))] struct Mem([u8; 1024]);
/// # let mem: &'static mut Mem = Box::leak(Box::new(Mem([0; 1024])));
/// let m: &'static Mutex<'static, u64> =
///     Box::leak(Box::new(Mutex::create(Region::from_mut_slice(&mut mem.0), 0).unwrap()));
/// let mut guard = m.lock().unwrap();
/// std::thread::spawn(move || *guard += 1); // error: the guard is not `Send`
/// ```
#[must_use = "if unused the mutex unlocks at once"]
pub struct MutexGuard<'m, T: Pod> {
    raw: &'m RawMutex,
    data: &'m DataCell<T>,
    /// Behaves like an exclusive borrow of the value.
    _value: PhantomData<&'m mut T>,
    /// Stays with the locking thread: not `Send`.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard gives only &T (and `poison`, an atomic store), so
// sharing it is sharing &T; the `*const ()` marker is there for `Send`
// alone (as lock_api's guards).
unsafe impl<T: Pod + Sync> Sync for MutexGuard<'_, T> {}

impl<'m, T: Pod> MutexGuard<'m, T> {
    /// The caller holds `raw`, which protects `data`.
    fn new(raw: &'m RawMutex, data: &'m DataCell<T>) -> Self {
        Self {
            raw,
            data,
            _value: PhantomData,
            _not_send: PhantomData,
        }
    }

    /// Marks the mutex poisoned ([`PoisonCause::Panicked`]): every later
    /// lock reports it until [`Mutex::clear_poison`]. The std layer calls it
    /// when the holder panics (core, being `no_std`, cannot see panics).
    pub fn poison(&self) {
        self.raw.poison();
    }
}

// SAFETY: a MutexGuard exists only while this process holds `raw` (built
// after a successful lock), and its Drop unlocks exactly that mutex.
unsafe impl<T: Pod> LockGuard for MutexGuard<'_, T> {
    fn raw_mutex(&self) -> &RawMutex {
        self.raw
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this process holds the lock, so no one else accesses the
        // value; the pointer is valid and aligned for 'm (region contract).
        unsafe { &*self.data.get() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // handed out by the guard.
        unsafe { &mut *self.data.get() }
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this process holds the lock.
        unsafe { self.raw.unlock() };
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// Unit tests of every kind built on a mutex (values, condvars): make it
/// look held by a process that died holding it.
#[cfg(all(test, not(multiproc_loom)))]
impl RawMutex {
    pub(crate) fn hold_as_dead(&self, waiters: bool) {
        let w = crate::test_util::DEAD_PID | if waiters { WAITERS_BIT } else { 0 };
        self.word.store(w, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;

#[cfg(all(test, multiproc_loom))]
mod loom_poison;
