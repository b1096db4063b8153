//! `Semaphore`, `BoundedSemaphore`, `Event` and `Barrier`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use multiproc_core::barrier::{self, BarrierError, BarrierWaitResult};
use multiproc_core::event;
use multiproc_core::semaphore::{self, OwnerDied, SemaphoreError};

use super::{attach_stamped, map, AcquireTimeoutError, HandleKind, Owned, SyncError, TimedOut};
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
            self.0.view().acquire()
        }

        /// Takes a unit if one is available now (it does not look for dead
        /// holders; [`recover`](Self::recover) does).
        pub fn try_acquire(&self) -> bool {
            self.0.view().try_acquire()
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
            match self.0.view().acquire_timeout(timeout)? {
                true => Ok(()),
                false => Err(AcquireTimeoutError::TimedOut),
            }
        }

        /// The units available now (a diagnostic: other processes may change
        /// it at any moment). Python's `get_value()`.
        pub fn value(&self) -> u32 {
            self.0.view().value()
        }

        /// The units this process holds (acquired and not yet released).
        pub fn held_by_me(&self) -> u32 {
            self.0.view().held_by_me()
        }

        /// Gives the units of dead holders back to the semaphore now;
        /// returns how many came back. [`acquire`](Self::acquire) does this
        /// on its own while it waits: this is for callers that only poll
        /// with [`try_acquire`](Self::try_acquire).
        pub fn recover(&self) -> u32 {
            self.0.view().recover()
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
#[derive(Clone)]
pub struct Semaphore(Arc<Owned<semaphore::Semaphore<'static>>>);

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.name())
            .field("value", &self.value())
            .finish()
    }
}

impl Semaphore {
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
        Self::create_in(map(None, Some(Self::memory_size()))?, initial)
    }

    /// A semaphore in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`SyncError::Shm`] for the name.
    pub fn named(name: &str, initial: u32) -> Result<Self, SyncError> {
        Self::create_in(map(Some(name), Some(Self::memory_size()))?, initial)
    }

    /// Builds the semaphore in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory, initial: u32) -> Result<Self, SyncError> {
        Ok(Self(Arc::new(Owned::create(shm, |r| {
            semaphore::Semaphore::create_tagged(r, initial, HandleKind::Semaphore.tag::<()>())
        })?)))
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
        let shm = map(None, Some(semaphore::Semaphore::memory_size_for(holders)))?;
        Ok(Self(Arc::new(Owned::create(shm, |r| {
            semaphore::Semaphore::create_with(
                r,
                initial,
                false,
                holders,
                HandleKind::Semaphore.tag::<()>(),
            )
        })?)))
    }

    open_attach!("semaphore", |shm| {
        attach_stamped::<(), _>(
            shm,
            HandleKind::Semaphore,
            semaphore::Semaphore::attach_tagged_timeout,
        )
        .map(Self)
    });
    semaphore_methods!();

    /// Gives a unit back, waking an acquirer if one sleeps.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] past
    /// [`MAX_VALUE`](multiproc_core::semaphore::MAX_VALUE).
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.0.view().release()
    }

    /// Gives `n` units back at once.
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release); nothing is released then.
    pub fn release_n(&self, n: u32) -> Result<(), SemaphoreError> {
        self.0.view().release_n(n)
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
#[derive(Clone)]
pub struct BoundedSemaphore(Arc<Owned<semaphore::Semaphore<'static>>>);

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("name", &self.name())
            .field("value", &self.value())
            .field("max", &self.max_value())
            .finish()
    }
}

impl BoundedSemaphore {
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
        Self::create_in(map(None, Some(Self::memory_size()))?, initial)
    }

    /// A bounded semaphore in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::named`].
    pub fn named(name: &str, initial: u32) -> Result<Self, SyncError> {
        Self::create_in(map(Some(name), Some(Self::memory_size()))?, initial)
    }

    /// Builds the bounded semaphore in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory, initial: u32) -> Result<Self, SyncError> {
        Ok(Self(Arc::new(Owned::create(shm, |r| {
            semaphore::Semaphore::create_bounded_tagged(
                r,
                initial,
                HandleKind::BoundedSemaphore.tag::<()>(),
            )
        })?)))
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
        let shm = map(None, Some(semaphore::Semaphore::memory_size_for(holders)))?;
        Ok(Self(Arc::new(Owned::create(shm, |r| {
            semaphore::Semaphore::create_with(
                r,
                initial,
                true,
                holders,
                HandleKind::BoundedSemaphore.tag::<()>(),
            )
        })?)))
    }

    open_attach!("bounded semaphore", |shm| {
        attach_stamped::<(), _>(
            shm,
            HandleKind::BoundedSemaphore,
            semaphore::Semaphore::attach_tagged_timeout,
        )
        .map(Self)
    });
    semaphore_methods!();

    /// Gives a unit back.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if that would pass the initial value
    /// (Python's `ValueError`).
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.0.view().release()
    }

    /// Gives `n` units back at once.
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release); nothing is released then.
    pub fn release_n(&self, n: u32) -> Result<(), SemaphoreError> {
        self.0.view().release_n(n)
    }

    /// The bound (the initial value).
    pub fn max_value(&self) -> u32 {
        self.0.view().max_value().unwrap_or(0)
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
#[derive(Clone)]
pub struct Event(Arc<Owned<event::Event<'static>>>);

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("set", &self.is_set())
            .finish()
    }
}

impl Event {
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
        Self::create_in(map(None, Some(Self::memory_size()))?)
    }

    /// A clear event in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] (invalid name, already exists, ...).
    pub fn named(name: &str) -> Result<Self, SyncError> {
        Self::create_in(map(Some(name), Some(Self::memory_size()))?)
    }

    /// Builds the event in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory) -> Result<Self, SyncError> {
        Ok(Self(Arc::new(Owned::create(shm, |r| {
            event::Event::create_tagged(r, HandleKind::Event.tag::<()>())
        })?)))
    }

    open_attach!("event", |shm| {
        attach_stamped::<(), _>(shm, HandleKind::Event, event::Event::attach_tagged_timeout)
            .map(Self)
    });

    /// Sets the flag, waking every waiter.
    pub fn set(&self) {
        self.0.view().set();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.0.view().clear();
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.0.view().is_set()
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        self.0.view().wait();
    }

    /// Blocks until the flag is set or `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] if the flag was still clear when `timeout` passed.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        if self.0.view().wait_timeout(timeout) {
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
#[derive(Clone)]
pub struct Barrier(Arc<Owned<barrier::Barrier<'static>>>);

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("name", &self.name())
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Barrier {
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
        Self::create_in(map(None, Some(Self::memory_size(parties)))?, parties)
    }

    /// A barrier in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`SyncError::Shm`] for the name.
    pub fn named(name: &str, parties: u32) -> Result<Self, SyncError> {
        Self::create_in(map(Some(name), Some(Self::memory_size(parties)))?, parties)
    }

    /// Builds the barrier in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory, parties: u32) -> Result<Self, SyncError> {
        Ok(Self(Arc::new(Owned::create(shm, |r| {
            barrier::Barrier::create_tagged(r, parties, HandleKind::Barrier.tag::<()>())
        })?)))
    }

    open_attach!("barrier", |shm| {
        attach_stamped::<(), _>(
            shm,
            HandleKind::Barrier,
            barrier::Barrier::attach_tagged_timeout,
        )
        .map(Self)
    });

    /// Registers this process as a party, so that its death before its
    /// first [`wait`](Self::wait) is noticed too (see
    /// [Dead parties](Barrier#dead-parties)). Returns `false` if the
    /// party table is full (the process then takes part untracked).
    pub fn register(&self) -> bool {
        self.0.view().register()
    }

    /// Withdraws this process from the parties: for a process that stops
    /// taking part while the others go on, whose exit would otherwise
    /// break the barrier as a death. Returns whether it was registered.
    pub fn leave(&self) -> bool {
        self.0.view().leave()
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
        self.0.view().wait()
    }

    /// [`wait`](Self::wait), giving up after `timeout`, which breaks the
    /// barrier (as in Python).
    ///
    /// # Errors
    ///
    /// [`BarrierError::TimedOut`] for this caller, [`BarrierError::Broken`]
    /// as for `wait`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.0.view().wait_timeout(timeout)
    }

    /// Breaks the barrier: current and later waiters get
    /// [`BarrierError::Broken`] until [`reset`](Self::reset).
    pub fn abort(&self) {
        self.0.view().abort();
    }

    /// Returns the barrier to its empty, unbroken state; current waiters
    /// get [`BarrierError::Broken`].
    pub fn reset(&self) {
        self.0.view().reset();
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.0.view().parties()
    }

    /// How many wait in the current generation.
    pub fn n_waiting(&self) -> u32 {
        self.0.view().n_waiting()
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.0.view().is_broken()
    }
}
