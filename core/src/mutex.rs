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
// Errors
// ---------------------------------------------------------------------------

/// Why a lock is poisoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoisonCause {
    /// Process `pid` died (was killed) while holding the lock: whatever it
    /// was writing may be half-written.
    OwnerDied {
        /// The dead owner's process id.
        pid: u32,
    },
    /// A holder panicked (reported by the std layer through
    /// [`MutexGuard::poison`]).
    Panicked,
}

impl PoisonCause {
    fn from_word(p: u32) -> Option<PoisonCause> {
        match p {
            0 => None,
            p if p & OWNER_DIED_BIT != 0 => Some(PoisonCause::OwnerDied { pid: p & PID_MASK }),
            _ => Some(PoisonCause::Panicked),
        }
    }
}

impl fmt::Display for PoisonCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoisonCause::OwnerDied { pid } => {
                write!(f, "its holder (pid {pid}) died while holding it")
            }
            PoisonCause::Panicked => f.write_str("a holder panicked while holding it"),
        }
    }
}

/// The lock was acquired, but it is poisoned: the data may be inconsistent.
///
/// Holds what the operation produced (usually the guard), so the caller can
/// inspect and repair the data: [`into_inner`](Self::into_inner).
pub struct PoisonError<G> {
    guard: G,
    cause: PoisonCause,
}

impl<G> PoisonError<G> {
    /// A poison error carrying `guard`.
    pub fn new(guard: G, cause: PoisonCause) -> Self {
        Self { guard, cause }
    }

    /// Why the lock is poisoned.
    pub fn cause(&self) -> PoisonCause {
        self.cause
    }

    /// The guard (or value), to go on despite the poison.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard (or value).
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard (or value).
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// The same poison around another payload.
    pub fn map<U>(self, f: impl FnOnce(G) -> U) -> PoisonError<U> {
        PoisonError {
            guard: f(self.guard),
            cause: self.cause,
        }
    }
}

impl<G> fmt::Debug for PoisonError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoisonError")
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

impl<G> fmt::Display for PoisonError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "poisoned lock: {}", self.cause)
    }
}

impl<G> core::error::Error for PoisonError<G> {}

/// The result of a blocking lock: the guard, or the guard inside a
/// [`PoisonError`]. The same shape as `std::sync::LockResult`.
pub type LockResult<G> = Result<G, PoisonError<G>>;

/// Why [`Mutex::try_lock`] did not return a clean guard.
pub enum TryLockError<G> {
    /// Another holder has the lock.
    WouldBlock,
    /// Acquired, but poisoned.
    Poisoned(PoisonError<G>),
}

impl<G> TryLockError<G> {
    /// The same error around another payload.
    pub fn map<U>(self, f: impl FnOnce(G) -> U) -> TryLockError<U> {
        match self {
            TryLockError::WouldBlock => TryLockError::WouldBlock,
            TryLockError::Poisoned(p) => TryLockError::Poisoned(p.map(f)),
        }
    }
}

impl<G> From<PoisonError<G>> for TryLockError<G> {
    fn from(e: PoisonError<G>) -> Self {
        TryLockError::Poisoned(e)
    }
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::Poisoned(p) => f.debug_tuple("Poisoned").field(p).finish(),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("lock is held by another holder"),
            TryLockError::Poisoned(p) => fmt::Display::fmt(p, f),
        }
    }
}

impl<G> core::error::Error for TryLockError<G> {}

/// Why [`Mutex::lock_timeout`] did not return a clean guard.
pub enum LockTimeoutError<G> {
    /// The timeout passed with the lock still held by a live process.
    TimedOut,
    /// Acquired, but poisoned.
    Poisoned(PoisonError<G>),
}

impl<G> LockTimeoutError<G> {
    /// The same error around another payload.
    pub fn map<U>(self, f: impl FnOnce(G) -> U) -> LockTimeoutError<U> {
        match self {
            LockTimeoutError::TimedOut => LockTimeoutError::TimedOut,
            LockTimeoutError::Poisoned(p) => LockTimeoutError::Poisoned(p.map(f)),
        }
    }
}

impl<G> From<PoisonError<G>> for LockTimeoutError<G> {
    fn from(e: PoisonError<G>) -> Self {
        LockTimeoutError::Poisoned(e)
    }
}

impl<G> fmt::Debug for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::TimedOut => f.write_str("TimedOut"),
            LockTimeoutError::Poisoned(p) => f.debug_tuple("Poisoned").field(p).finish(),
        }
    }
}

impl<G> fmt::Display for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::TimedOut => f.write_str("timed out waiting for the lock"),
            LockTimeoutError::Poisoned(p) => fmt::Display::fmt(p, f),
        }
    }
}

impl<G> core::error::Error for LockTimeoutError<G> {}

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

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(all(test, not(multiproc_loom)))]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::thread;
    use std::vec;
    use std::vec::Vec;

    /// A pid no process can have: Linux's pid_max is at most 2^22.
    pub(crate) const DEAD_PID: u32 = (1 << 22) + 5;

    /// 128-aligned heap memory.
    #[repr(C, align(128))]
    #[derive(Clone, Copy)]
    pub(crate) struct Line([u8; 128]);

    pub(crate) fn buf(bytes: usize) -> Vec<Line> {
        vec![Line([0; 128]); bytes.div_ceil(128)]
    }

    pub(crate) fn region(b: &mut [Line]) -> Region<'_> {
        // SAFETY: Line is 128 plain bytes with no padding.
        let bytes =
            unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len() * 128) };
        Region::from_mut_slice(bytes)
    }

    /// Makes `m` look held by a process that died holding it.
    pub(crate) fn kill_owner(m: &RawMutex, waiters: bool) {
        let w = DEAD_PID | if waiters { WAITERS_BIT } else { 0 };
        m.word.store(w, Ordering::Relaxed);
    }

    #[test]
    fn layout_is_pinned() {
        assert_eq!(core::mem::size_of::<RawMutex>(), 16);
        assert_eq!(core::mem::align_of::<RawMutex>(), 8);
        assert_eq!(core::mem::offset_of!(RawMutex, owner), 8);
        assert_eq!(Mutex::<u64>::memory_size(), Some(264));
        assert_eq!(Mutex::<[u8; 1000]>::memory_size(), Some(1256));
    }

    #[test]
    fn raw_lock_unlock_and_snapshots() {
        let m = RawMutex::new();
        assert!(!m.is_locked());
        assert_eq!(m.owner_pid(), None);
        m.lock().unwrap();
        assert!(m.is_locked());
        assert_eq!(m.owner_pid(), Some(current_pid()));
        assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
        // SAFETY: locked above.
        unsafe { m.unlock() };
        assert!(!m.is_locked());
        m.try_lock().unwrap();
        // SAFETY: locked above.
        unsafe { m.unlock() };
        m.lock_timeout(Duration::ZERO).unwrap();
        // SAFETY: locked above.
        unsafe { m.unlock() };
        assert_eq!(m.word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn guard_gives_access_and_unlocks_on_drop() {
        let mut b = buf(Mutex::<[u64; 3]>::memory_size().unwrap());
        let m = Mutex::<[u64; 3]>::create(region(&mut b), [1, 2, 3]).unwrap();
        {
            let mut g = m.lock().unwrap();
            assert_eq!(*g, [1, 2, 3]);
            g[1] = 20;
            assert!(m.raw().is_locked());
            assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
            assert_eq!(format!("{g:?}"), "[1, 20, 3]");
        }
        assert!(!m.raw().is_locked());
        assert_eq!(*m.try_lock().unwrap(), [1, 20, 3]);
        let g = m.lock_timeout(Duration::from_millis(1)).unwrap();
        assert_eq!(g[1], 20);
    }

    #[test]
    fn lock_timeout_times_out_while_another_thread_holds_it() {
        let mut b = buf(Mutex::<u32>::memory_size().unwrap());
        let m = Mutex::<u32>::create(region(&mut b), 0).unwrap();
        let held = AtomicU32::new(0);
        let release = AtomicU32::new(0);
        thread::scope(|s| {
            s.spawn(|| {
                let _g = m.lock().unwrap();
                held.store(1, Ordering::Release);
                while release.load(Ordering::Acquire) == 0 {
                    thread::sleep(std::time::Duration::from_millis(1));
                }
            });
            while held.load(Ordering::Acquire) == 0 {
                thread::yield_now();
            }
            // The holder is this very process, alive: never taken over.
            assert!(matches!(
                m.lock_timeout(Duration::from_millis(30)),
                Err(LockTimeoutError::TimedOut)
            ));
            assert!(matches!(
                m.lock_timeout(Duration::ZERO),
                Err(LockTimeoutError::TimedOut)
            ));
            assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
            release.store(1, Ordering::Release);
            // Now it is released within a millisecond or so.
            *m.lock_timeout(Duration::from_secs(30)).unwrap() += 1;
        });
        assert_eq!(*m.lock().unwrap(), 1);
        assert!(!m.is_poisoned());
    }

    #[test]
    fn poison_via_guard_is_sticky_until_cleared() {
        let mut b = buf(Mutex::<u8>::memory_size().unwrap());
        let m = Mutex::<u8>::create(region(&mut b), 0).unwrap();
        {
            let mut g = m.lock().unwrap();
            *g = 9;
            g.poison();
        }
        assert!(m.is_poisoned());
        for _ in 0..2 {
            let e = m.lock().unwrap_err();
            assert_eq!(e.cause(), PoisonCause::Panicked);
            assert_eq!(**e.get_ref(), 9);
        }
        match m.try_lock() {
            Err(TryLockError::Poisoned(p)) => assert_eq!(*p.into_inner(), 9),
            other => panic!("{other:?}"),
        }
        match m.lock_timeout(Duration::ZERO) {
            Err(LockTimeoutError::Poisoned(mut p)) => {
                **p.get_mut() = 10;
                m.clear_poison();
            }
            other => panic!("{other:?}"),
        }
        assert!(!m.is_poisoned());
        assert_eq!(*m.lock().unwrap(), 10);
    }

    #[test]
    fn dead_owner_is_taken_over_and_reported() {
        for waiters in [false, true] {
            let mut b = buf(Mutex::<u64>::memory_size().unwrap());
            let m = Mutex::<u64>::create(region(&mut b), 41).unwrap();
            kill_owner(m.raw(), waiters);
            // try_lock makes no system call: it cannot tell a dead holder.
            assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
            let e = m.lock().unwrap_err();
            assert_eq!(e.cause(), PoisonCause::OwnerDied { pid: DEAD_PID });
            let mut g = e.into_inner();
            assert_eq!(*g, 41);
            assert_eq!(m.raw().owner_pid(), Some(current_pid()));
            *g = 43;
            drop(g);
            // Unlocked cleanly despite the WAITERS_BIT taken over with it.
            assert_eq!(m.raw().word.load(Ordering::Relaxed), 0);
            // Sticky, with the same cause, for every later locker.
            let e = m.lock().unwrap_err();
            assert_eq!(e.cause(), PoisonCause::OwnerDied { pid: DEAD_PID });
            drop(e);
            m.clear_poison();
            assert_eq!(*m.lock().unwrap(), 43);
        }
    }

    #[test]
    fn dead_owner_is_taken_over_even_with_zero_timeout() {
        let m = RawMutex::new();
        kill_owner(&m, false);
        match m.lock_timeout(Duration::ZERO) {
            Err(LockTimeoutError::Poisoned(p)) => {
                assert_eq!(p.cause(), PoisonCause::OwnerDied { pid: DEAD_PID });
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.owner_pid(), Some(current_pid()));
        // SAFETY: taken over above.
        unsafe { m.unlock() };
    }

    #[test]
    fn dead_owner_is_taken_over_by_one_of_several_waiters() {
        let m = RawMutex::new();
        kill_owner(&m, false);
        let died = AtomicU32::new(0);
        let count = AtomicU32::new(0);
        thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    match m.lock() {
                        Ok(()) => {}
                        Err(p) => {
                            assert_eq!(p.cause(), PoisonCause::OwnerDied { pid: DEAD_PID });
                            died.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: locked above (Ok or poisoned).
                    unsafe { m.unlock() };
                });
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), 3);
        // All three see the poison: the first took over, the others find
        // it sticky.
        assert_eq!(died.load(Ordering::Relaxed), 3);
        assert!(!m.is_locked());
    }

    /// The holder's pid runs again, but as another process (its start time
    /// differs): the owner is dead and its lock taken over, promptly.
    #[test]
    fn a_reused_pid_does_not_keep_a_dead_owner_alive() {
        let me = Identity::current();
        let t = me.start_ticks().expect("start times are readable here");
        let earlier = Identity::new(me.pid(), Some(t.saturating_sub(1))).unwrap();
        for waiters in [0, WAITERS_BIT] {
            let m = RawMutex::new();
            // Held by a process that had this very pid before us and died.
            m.word.store(me.pid() | waiters, Ordering::Relaxed);
            m.owner.store(earlier.to_word(), Ordering::Relaxed);
            match m.lock_timeout(Duration::ZERO) {
                Err(LockTimeoutError::Poisoned(p)) => {
                    assert_eq!(p.cause(), PoisonCause::OwnerDied { pid: me.pid() });
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(m.owner.load(Ordering::Relaxed), me.to_word());
            // SAFETY: taken over above.
            unsafe { m.unlock() };
            assert_eq!(m.owner.load(Ordering::Relaxed), 0);
        }
    }

    /// An identity naming another pid than the word's says nothing about
    /// the holder (it is between its CAS and its store): the pid decides,
    /// and a live pid is never taken over.
    #[test]
    fn an_identity_of_another_pid_falls_back_to_the_pid() {
        let m = RawMutex::new();
        m.word.store(current_pid(), Ordering::Relaxed);
        let other = Identity::new(4_000_000, Some(1)).unwrap();
        m.owner.store(other.to_word(), Ordering::Relaxed);
        assert!(matches!(
            m.lock_timeout(Duration::ZERO),
            Err(LockTimeoutError::TimedOut)
        ));
        // And the identity of a live process under the word's pid (this
        // one) is alive.
        m.owner
            .store(Identity::current().to_word(), Ordering::Relaxed);
        assert!(matches!(
            m.lock_timeout(Duration::ZERO),
            Err(LockTimeoutError::TimedOut)
        ));
        // Every lock records its holder, and unlock clears it.
        let n = RawMutex::new();
        for how in 0..3 {
            match how {
                0 => n.lock().unwrap(),
                1 => n.try_lock().unwrap(),
                _ => n.lock_timeout(Duration::ZERO).unwrap(),
            }
            assert_eq!(
                n.owner.load(Ordering::Relaxed),
                Identity::current().to_word()
            );
            // SAFETY: locked above.
            unsafe { n.unlock() };
            assert_eq!(n.owner.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn garbage_words_do_not_hang() {
        // Only the waiters bit: no owner, so free.
        let m = RawMutex::new();
        m.word.store(WAITERS_BIT, Ordering::Relaxed);
        m.lock().unwrap();
        // SAFETY: locked above.
        unsafe { m.unlock() };
        // A garbage poison word still decodes to a cause.
        m.poison.store(0x1234, Ordering::Relaxed);
        assert_eq!(m.poison_cause(), Some(PoisonCause::Panicked));
        m.poison.store(OWNER_DIED_BIT | 77, Ordering::Relaxed);
        assert_eq!(m.poison_cause(), Some(PoisonCause::OwnerDied { pid: 77 }));
    }

    #[test]
    fn four_threads_count_exactly_and_leave_no_waiters_bit() {
        const PER: u64 = 10_000;
        let mut b = buf(Mutex::<u64>::memory_size().unwrap());
        let m = Mutex::<u64>::create(region(&mut b), 0).unwrap();
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..PER {
                        let mut g = m.lock().unwrap();
                        // A read-modify-write spread over the critical
                        // section, so a broken lock loses updates.
                        let v = *g;
                        if i % 64 == 0 {
                            thread::yield_now();
                        }
                        *g = v + 1;
                    }
                });
            }
        });
        assert_eq!(*m.lock().unwrap(), 4 * PER);
        assert_eq!(m.raw().word.load(Ordering::Relaxed), 0);
        assert!(!m.is_poisoned());
    }

    #[test]
    fn raw_lock_may_be_unlocked_by_another_thread_of_the_holder() {
        let mut b = buf(Mutex::<u64>::memory_size().unwrap());
        let m = Mutex::<u64>::create(region(&mut b), 0).unwrap();
        core::mem::forget(m.lock().unwrap());
        let raw = m.raw();
        thread::scope(|s| {
            // SAFETY: this process holds the lock (the guard was forgotten,
            // not dropped); ownership is per process.
            s.spawn(move || unsafe { raw.unlock() });
        });
        assert!(m.try_lock().is_ok());
    }

    #[test]
    fn attach_checks_kind_type_and_readiness() {
        let mut b = buf(4096);
        let r = region(&mut b);
        assert_eq!(Mutex::<u64>::attach(r).unwrap_err(), AttachError::NotReady);
        assert_eq!(
            Mutex::<u64>::attach_timeout(r, Duration::from_millis(5)).unwrap_err(),
            AttachError::NotReady
        );
        let m = Mutex::<u64>::create(r, 5).unwrap();
        assert!(matches!(
            Mutex::<u64>::create(r, 5),
            Err(InitError::AlreadyInitialized)
        ));
        let a = Mutex::<u64>::attach_timeout(r, Duration::from_secs(1)).unwrap();
        *a.lock().unwrap() += 1;
        assert_eq!(*m.lock().unwrap(), 6);
        assert!(matches!(
            Mutex::<u32>::attach(r),
            Err(AttachError::TypeMismatch { .. })
        ));
        // Same size and alignment, untagged: indistinguishable (a tag would
        // tell them apart).
        assert!(Mutex::<i64>::attach(r).is_ok());
        assert!(matches!(
            crate::value::Value::<u64>::attach(r),
            Err(AttachError::KindMismatch { found: 4, .. })
        ));
        let mut small = buf(128);
        assert!(matches!(
            Mutex::<u64>::create(region(&mut small), 0),
            Err(InitError::TooSmall { .. })
        ));
    }

    #[test]
    fn tagged_attach_needs_the_same_tag() {
        let mut mem = buf(4096);
        let r = region(&mut mem);
        let m = Mutex::<u64>::create_tagged(r, 5, 7).unwrap();
        let a = Mutex::<u64>::attach_tagged_timeout(r, 7, Duration::ZERO).unwrap();
        *a.lock().unwrap() += 1;
        assert_eq!(*m.lock().unwrap(), 6);
        let tagged = ElemType::of::<u64>().tagged(7);
        assert_eq!(
            Mutex::<u64>::attach_tagged_timeout(r, 8, Duration::ZERO).unwrap_err(),
            AttachError::TypeMismatch {
                found: tagged,
                expected: ElemType::of::<u64>().tagged(8)
            }
        );
        // The untagged attach is refused too.
        assert!(matches!(
            Mutex::<u64>::attach(r),
            Err(AttachError::TypeMismatch { .. })
        ));
        // A Value with the same tag is another kind.
        assert!(matches!(
            crate::value::Value::<u64>::attach_tagged_timeout(r, 7, Duration::ZERO),
            Err(AttachError::KindMismatch { found: 4, .. })
        ));
    }

    #[test]
    fn errors_debug_and_display() {
        let p = PoisonError::new(
            std::string::String::from("guard"),
            PoisonCause::OwnerDied { pid: 12 },
        );
        assert_eq!(
            format!("{p:?}"),
            "PoisonError { cause: OwnerDied { pid: 12 }, .. }"
        );
        assert_eq!(
            format!("{p}"),
            "poisoned lock: its holder (pid 12) died while holding it"
        );
        let t: TryLockError<()> = TryLockError::WouldBlock;
        assert_eq!(format!("{t:?}"), "WouldBlock");
        assert_eq!(format!("{t}"), "lock is held by another holder");
        let t: TryLockError<u8> = PoisonError::new(1, PoisonCause::Panicked).into();
        assert_eq!(
            format!("{t:?}"),
            "Poisoned(PoisonError { cause: Panicked, .. })"
        );
        assert_eq!(
            format!("{t}"),
            "poisoned lock: a holder panicked while holding it"
        );
        let l: LockTimeoutError<()> = LockTimeoutError::TimedOut;
        assert_eq!(format!("{l:?}"), "TimedOut");
        assert_eq!(format!("{l}"), "timed out waiting for the lock");
        let l: LockTimeoutError<u8> = PoisonError::new(3, PoisonCause::Panicked).into();
        assert!(format!("{l:?}").starts_with("Poisoned("));
        let p = PoisonError::new(3u8, PoisonCause::Panicked).map(u32::from);
        assert_eq!(p.into_inner(), 3u32);
        let mut b = buf(Mutex::<u64>::memory_size().unwrap());
        let m = Mutex::<u64>::create(region(&mut b), 0).unwrap();
        assert_eq!(
            format!("{m:?}"),
            "Mutex { owner_pid: None, poison: None, .. }"
        );
    }

    /// Uncontended lock + unlock against std's, printed, never asserted:
    /// `cargo test -p multiproc-core --release --lib -- --ignored --nocapture uncontended`
    #[test]
    #[ignore = "a measurement, not a test"]
    fn uncontended_lock_unlock_vs_std() {
        use std::hint::black_box;
        use std::time::Instant;
        const N: u64 = 20_000_000;
        let mut b = buf(Mutex::<u64>::memory_size().unwrap());
        let m = Mutex::<u64>::create(region(&mut b), 0).unwrap();
        let s = std::sync::Mutex::new(0u64);
        for round in 0..3 {
            let t = Instant::now();
            for _ in 0..N {
                let mut g = black_box(&m).lock().unwrap();
                *g = black_box(*g + 1);
            }
            let ours = t.elapsed().as_nanos() as f64 / N as f64;
            let t = Instant::now();
            for _ in 0..N {
                let mut g = black_box(&s).lock().unwrap();
                *g = black_box(*g + 1);
            }
            let std_ns = t.elapsed().as_nanos() as f64 / N as f64;
            std::println!(
                "round {round}: multiproc {ours:.2} ns, std {std_ns:.2} ns, ratio {:.2}",
                ours / std_ns
            );
        }
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use core::time::Duration;
    use loom::sync::Arc;
    use loom::thread;

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
        loom::model(|| {
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
        loom::model(|| {
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
            loom::model(move || {
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
        loom::model(|| {
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
        loom::model(|| {
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
}

#[cfg(all(test, multiproc_loom))]
mod loom_poison;
