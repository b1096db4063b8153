//! `Semaphore`, `BoundedSemaphore`, `Event` and `Barrier`.

use std::time::Duration;

use multiproc_core::barrier::{self, BarrierError, BarrierWaitResult};
use multiproc_core::event;
use multiproc_core::semaphore::{self, OwnerDied, SemaphoreError, DEFAULT_HOLDERS};

use super::shared::{BarrierKind, BoundedSemaphoreKind, EventKind, SemaphoreKind, Shared};
use super::{AcquireTimeoutError, SyncError, TimedOut};
use crate::shm::SharedMemory;

// ---------------------------------------------------------------------------
// Semaphore, BoundedSemaphore
// ---------------------------------------------------------------------------

/// Generates the methods both semaphores share.
macro_rules! semaphore_methods {
    () => {
        /// Takes a unit, blocking until one is available.
        ///
        /// # Errors
        ///
        /// [`OwnerDied`] if the unit taken is one a process held when it
        /// died (noticed within about 50 ms of waiting; see
        /// [Dead holders](Semaphore#dead-holders)). The unit **is** acquired
        /// then, as a poisoned lock is locked: release it as any other.
        pub fn acquire(&self) -> Result<(), OwnerDied> {
            self.view().acquire()
        }

        /// Takes a unit if one is available now (it does not look for dead
        /// holders; [`recover`](Self::recover) does).
        pub fn try_acquire(&self) -> bool {
            self.view().try_acquire()
        }

        /// Takes a unit, giving up after `timeout`.
        ///
        /// # Errors
        ///
        /// [`AcquireTimeoutError::TimedOut`] if the time ran out (nothing
        /// is acquired); [`AcquireTimeoutError::OwnerDied`] as
        /// [`acquire`](Self::acquire)'s [`OwnerDied`] (the unit is
        /// acquired).
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), AcquireTimeoutError> {
            match self.view().acquire_timeout(timeout)? {
                true => Ok(()),
                false => Err(AcquireTimeoutError::TimedOut),
            }
        }

        /// The units available now (a diagnostic: other processes may change
        /// it at any moment). Python's `get_value()`.
        pub fn value(&self) -> u32 {
            self.view().value()
        }

        /// The units this process holds (acquired and not yet released).
        pub fn held_by_me(&self) -> u32 {
            self.view().held_by_me()
        }

        /// Gives the units of dead holders back to the semaphore now;
        /// returns how many came back. [`acquire`](Self::acquire) does this
        /// on its own while it waits: this is for callers that only poll
        /// with [`try_acquire`](Self::try_acquire).
        pub fn recover(&self) -> u32 {
            self.view().recover()
        }
    };
}

/// A counting semaphore shared between processes: Python's
/// `multiprocessing.Semaphore`.
///
/// # Dead holders
///
/// The segment records, per process, the units it holds (up to
/// [`DEFAULT_HOLDERS`](multiproc_core::semaphore::DEFAULT_HOLDERS) = 64
/// processes at once; a further process acquires untracked). A unit held
/// by a process that dies, killed with `SIGKILL` included, comes back: an
/// `acquire` that waits for it gets it within about 50 ms, as
/// `Err(OwnerDied { pid })`. A pid reused by another process does not pass
/// for the dead holder (identity = pid plus start time). `release` gives
/// back a unit this process holds, or else an anonymous one (a semaphore
/// used as a signal between processes, as Python allows). See
/// [`multiproc_core::semaphore`] for the protocol.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Semaphore;
///
/// let s = Semaphore::new(1)?;
/// s.acquire()?;
/// assert!(!s.try_acquire());
/// s.release()?;
/// assert_eq!(s.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Semaphore = Shared<SemaphoreKind>;

impl Shared<SemaphoreKind> {
    /// Bytes of the segment.
    pub fn memory_size() -> usize {
        semaphore::Semaphore::memory_size()
    }

    /// A semaphore holding `initial` units, in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if `initial` exceeds
    /// [`MAX_VALUE`](multiproc_core::semaphore::MAX_VALUE);
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new(initial: u32) -> Result<Self, SyncError> {
        Self::build(None, (initial, DEFAULT_HOLDERS))
    }

    /// A semaphore in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`SyncError::Shm`] for the name.
    pub fn named(name: &str, initial: u32) -> Result<Self, SyncError> {
        Self::build(Some(name), (initial, DEFAULT_HOLDERS))
    }

    /// Builds the semaphore in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory, initial: u32) -> Result<Self, SyncError> {
        Self::build_in(shm, (initial, DEFAULT_HOLDERS))
    }

    /// A semaphore holding `initial` units whose segment records up to
    /// `holders` holding processes (instead of
    /// [`DEFAULT_HOLDERS`](multiproc_core::semaphore::DEFAULT_HOLDERS)), in
    /// an anonymous segment; see [Dead holders](Semaphore#dead-holders).
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if `holders` is 0 or above
    /// [`MAX_HOLDERS`](multiproc_core::semaphore::MAX_HOLDERS), or `initial`
    /// above [`MAX_VALUE`](multiproc_core::semaphore::MAX_VALUE);
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn with_holders(initial: u32, holders: u32) -> Result<Self, SyncError> {
        Self::build(None, (initial, holders))
    }
    semaphore_methods!();

    /// Gives a unit back, waking an acquirer if one sleeps.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] past
    /// [`MAX_VALUE`](multiproc_core::semaphore::MAX_VALUE).
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.view().release()
    }

    /// Gives `n` units back at once.
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release); nothing is released then.
    pub fn release_n(&self, n: u32) -> Result<(), SemaphoreError> {
        self.view().release_n(n)
    }
}

/// A semaphore that may never hold more than its initial value: Python's
/// `multiprocessing.BoundedSemaphore`.
///
/// Units of dead holders come back as for a [`Semaphore`] (see
/// [Dead holders](Semaphore#dead-holders)), never past the bound: a
/// returning unit that finds the semaphore full (anonymous releases
/// refilled it) is dropped.
///
/// # Examples
///
/// ```
/// use multiproc::sync::{BoundedSemaphore, SemaphoreError};
///
/// let s = BoundedSemaphore::new(1)?;
/// assert_eq!(s.release(), Err(SemaphoreError::Overflow));
/// s.acquire()?;
/// s.release()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type BoundedSemaphore = Shared<BoundedSemaphoreKind>;

impl Shared<BoundedSemaphoreKind> {
    /// Bytes of the segment.
    pub fn memory_size() -> usize {
        semaphore::Semaphore::memory_size()
    }

    /// A bounded semaphore holding (at most) `initial` units, in an
    /// anonymous segment.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    pub fn new(initial: u32) -> Result<Self, SyncError> {
        Self::build(None, (initial, DEFAULT_HOLDERS))
    }

    /// A bounded semaphore in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::named`].
    pub fn named(name: &str, initial: u32) -> Result<Self, SyncError> {
        Self::build(Some(name), (initial, DEFAULT_HOLDERS))
    }

    /// Builds the bounded semaphore in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory, initial: u32) -> Result<Self, SyncError> {
        Self::build_in(shm, (initial, DEFAULT_HOLDERS))
    }

    /// A bounded semaphore holding `initial` units whose segment records up to
    /// `holders` holding processes (instead of
    /// [`DEFAULT_HOLDERS`](multiproc_core::semaphore::DEFAULT_HOLDERS)), in
    /// an anonymous segment; see [Dead holders](Semaphore#dead-holders).
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if `holders` is 0 or above
    /// [`MAX_HOLDERS`](multiproc_core::semaphore::MAX_HOLDERS), or `initial`
    /// above [`MAX_VALUE`](multiproc_core::semaphore::MAX_VALUE);
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn with_holders(initial: u32, holders: u32) -> Result<Self, SyncError> {
        Self::build(None, (initial, holders))
    }
    semaphore_methods!();

    /// Gives a unit back.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if that would pass the initial value
    /// (Python's `ValueError`).
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.view().release()
    }

    /// Gives `n` units back at once.
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release); nothing is released then.
    pub fn release_n(&self, n: u32) -> Result<(), SemaphoreError> {
        self.view().release_n(n)
    }

    /// The bound (the initial value).
    pub fn max_value(&self) -> u32 {
        self.view().max_value().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------

/// A flag processes wait on: Python's `multiprocessing.Event`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::sync::Event;
///
/// let e = Event::new()?;
/// assert_eq!(e.wait_timeout(Duration::from_millis(1)), Err(multiproc::sync::TimedOut));
/// e.set();
/// assert!(e.is_set() && e.wait_timeout(Duration::ZERO).is_ok());
/// # Ok::<(), multiproc::sync::SyncError>(())
/// ```
pub type Event = Shared<EventKind>;

impl Shared<EventKind> {
    /// Bytes of the segment.
    pub fn memory_size() -> usize {
        event::Event::memory_size()
    }

    /// A clear event in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new() -> Result<Self, SyncError> {
        Self::build(None, ())
    }

    /// A clear event in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] (invalid name, already exists, ...).
    pub fn named(name: &str) -> Result<Self, SyncError> {
        Self::build(Some(name), ())
    }

    /// Builds the event in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory) -> Result<Self, SyncError> {
        Self::build_in(shm, ())
    }

    /// Sets the flag, waking every waiter.
    pub fn set(&self) {
        self.view().set();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.view().clear();
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.view().is_set()
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        self.view().wait();
    }

    /// Blocks until the flag is set or `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] if the flag was still clear when `timeout` passed.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        if self.view().wait_timeout(timeout) {
            Ok(())
        } else {
            Err(TimedOut)
        }
    }
}

// ---------------------------------------------------------------------------
// Barrier
// ---------------------------------------------------------------------------

/// A barrier for a fixed number of parties, reusable generation after
/// generation: Python's `multiprocessing.Barrier`.
///
/// # Dead parties
///
/// The segment records the identity (pid plus start time) of each party
/// process: one registers on its first `wait`, or up front with
/// [`register`](Self::register). A registered party that dies (killed with
/// `SIGKILL` included) without arriving in a generation breaks it within
/// about 50 ms: every waiter gets [`BarrierError::PartyDied`] naming its
/// pid, instead of waiting forever. A process that dies before it
/// registered is unknown to the barrier (the others wait as for a slow
/// party): call `register` at the start of each party process. A
/// registered process that exits while the others go on counts as dead:
/// call [`leave`](Self::leave) first. See [`multiproc_core::barrier`].
///
/// # Examples
///
/// ```
/// use multiproc::sync::Barrier;
///
/// let b = Barrier::new(1)?;
/// assert!(b.wait()?.is_leader());
/// assert_eq!((b.parties(), b.n_waiting(), b.broken()), (1, 0, false));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Barrier = Shared<BarrierKind>;

impl Shared<BarrierKind> {
    /// Bytes of the segment of a barrier for `parties` parties.
    pub fn memory_size(parties: u32) -> usize {
        barrier::Barrier::memory_size(parties)
    }

    /// A barrier for `parties` parties in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if `parties` is 0 or above
    /// [`MAX_PARTIES`](multiproc_core::barrier::MAX_PARTIES);
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new(parties: u32) -> Result<Self, SyncError> {
        Self::build(None, parties)
    }

    /// A barrier in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`SyncError::Shm`] for the name.
    pub fn named(name: &str, parties: u32) -> Result<Self, SyncError> {
        Self::build(Some(name), parties)
    }

    /// Builds the barrier in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory, parties: u32) -> Result<Self, SyncError> {
        Self::build_in(shm, parties)
    }

    /// Registers this process as a party, so that its death before its
    /// first [`wait`](Self::wait) is noticed too (see
    /// [Dead parties](Barrier#dead-parties)). Returns `false` if the
    /// party table is full (the process then takes part untracked).
    pub fn register(&self) -> bool {
        self.view().register()
    }

    /// Withdraws this process from the parties: for a process that stops
    /// taking part while the others go on, whose exit would otherwise
    /// break the barrier as a death. Returns whether it was registered.
    pub fn leave(&self) -> bool {
        self.view().leave()
    }

    /// Waits until `parties` callers wait, then releases them all;
    /// registers this process as a party first.
    ///
    /// # Errors
    ///
    /// [`BarrierError::PartyDied`] if a registered party died without
    /// arriving (noticed within about 50 ms); [`BarrierError::Broken`] if
    /// the barrier is or becomes broken otherwise (aborted, reset, a waiter
    /// timed out).
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.view().wait()
    }

    /// [`wait`](Self::wait), giving up after `timeout`, which breaks the
    /// barrier (as in Python).
    ///
    /// # Errors
    ///
    /// [`BarrierError::TimedOut`] for this caller, [`BarrierError::Broken`]
    /// as for `wait`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.view().wait_timeout(timeout)
    }

    /// Breaks the barrier: current and later waiters get
    /// [`BarrierError::Broken`] until [`reset`](Self::reset).
    pub fn abort(&self) {
        self.view().abort();
    }

    /// Returns the barrier to its empty, unbroken state; current waiters
    /// get [`BarrierError::Broken`].
    pub fn reset(&self) {
        self.view().reset();
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.view().parties()
    }

    /// How many wait in the current generation.
    pub fn n_waiting(&self) -> u32 {
        self.view().n_waiting()
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.view().is_broken()
    }
}
