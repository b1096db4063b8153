//! Owning, process-shared locks and values: Python's `Lock`, `RLock`,
//! `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier`,
//! `Value` and `Array`, over the structures of [`multiproc_core`].
//!
//! Each handle owns (an `Arc` of) the [`SharedMemory`] segment its structure
//! lives in. Handles are `Clone + Send + Sync`; clones share the segment.
//!
//! | Python | here | segment |
//! |---|---|---|
//! | `Lock` | [`Lock`], [`Mutex<T>`](Mutex) (a lock with data) | core `Mutex<()>` / `Mutex<T>` |
//! | `RLock` | [`RLock`] | core `Mutex<()>`, then owner and count (`AtomicValue<u64>` each) |
//! | `Semaphore`, `BoundedSemaphore` | [`Semaphore`], [`BoundedSemaphore`] | core `Semaphore` |
//! | `Condition` | [`Condition<T>`](Condition) | core `Mutex<T>`, then core `Condvar` |
//! | `Event` | [`Event`] | core `Event` |
//! | `Barrier` | [`Barrier`] | core `Barrier` |
//! | `Value` | [`Value<T>`](Value), [`AtomicValue<T>`](AtomicValue) (`lock=False`) | core `Value<T>` / `AtomicValue<T>` |
//! | `Array` | [`Array<T>`](Array) | core `Array<T>` |
//!
//! Composite segments put each core structure in its own region, at
//! 128-byte aligned offsets, each with its own header:
//!
//! ```text
//!  0                       off = size(first) rounded up to 128
//!  +-----------------------+-----------------------------------+
//!  | core Mutex<T> region  | core Condvar region (Condition)   |
//!  +-----------------------+-----------------------------------+
//! ```
//!
//! # Sharing
//!
//! | constructor | segment | reached by |
//! |---|---|---|
//! | `new(..)` | anonymous | children forked after it (a [`Process`](crate::Process) closure captures a clone) |
//! | `named(name, ..)` | named, unlinked when this (creating) handle's last clone drops, in the creating process | [`open`](Lock::open) from any process, spawned ones included |
//! | `create_in(shm, ..)` | the [`SharedMemory`] given (for custom options: persist, mode) | as that segment |
//! | `open(name)` / `attach(shm)` | an existing segment | - |
//!
//! # Poison
//!
//! The locks are robust: a holder killed with `SIGKILL` is noticed by the
//! next locker (within about 100 ms of waiting), which gets the lock inside a
//! [`PoisonError`] with [`PoisonCause::OwnerDied`]. A guard dropped while its
//! thread panics poisons the lock with [`PoisonCause::Panicked`] (core,
//! being `no_std`, cannot see panics; the guards here can). Poison is sticky
//! until `clear_poison`.
//!
//! # Example: a counter across a fork
//!
//! ```
//! use multiproc::sync::Value;
//! use multiproc::Process;
//!
//! let counter = Value::<u64>::new(0)?;
//! let workers: Vec<Process> = (0..2)
//!     .map(|_| {
//!         let counter = counter.clone();
//!         Process::new(move || {
//!             for _ in 0..1000 {
//!                 *counter.lock().unwrap() += 1;
//!             }
//!         })
//!         .start()
//!     })
//!     .collect::<Result<_, _>>()?;
//! for w in &workers {
//!     assert!(w.join()?.success());
//! }
//! assert_eq!(counter.get().unwrap(), 2000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use multiproc_core::mutex::{LockGuard as CoreLockGuard, RawMutex};
use multiproc_core::region::{AttachError, InitError, Region};

use crate::shm::{SharedMemory, ShmError};

mod lock;
mod prims;
mod value;

pub use lock::{Condition, Lock, LockGuard, Mutex, MutexGuard, RLock, RLockGuard};
pub use multiproc_core::barrier::{BarrierError, BarrierWaitResult};
pub use multiproc_core::condvar::WaitTimeoutResult;
pub use multiproc_core::mutex::{
    LockResult, LockTimeoutError, PoisonCause, PoisonError, TryLockError,
};
pub use multiproc_core::semaphore::SemaphoreError;
pub use multiproc_core::value::ArrayError;
pub use prims::{Barrier, BoundedSemaphore, Event, Semaphore};
pub use value::{Array, ArrayGuard, AtomicValue, Value};

/// How long [`open`](Lock::open) waits for a creator that is still
/// building the structure in a segment it has just made.
pub const OPEN_WAIT: Duration = Duration::from_millis(500);

/// Why a handle could not be created or opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum SyncError {
    /// Mapping, creating or opening the segment failed.
    Shm(ShmError),
    /// Building the structure failed (a segment too small, an argument out
    /// of range such as a barrier of zero parties, an unsupported type).
    Init(InitError),
    /// The segment does not hold the structure asked for (another kind or
    /// type, not yet published, corrupt).
    Attach(AttachError),
    /// The segment holds the structure, in the other variant (a plain
    /// semaphore opened as a bounded one or the reverse).
    Variant {
        /// What was asked for.
        expected: &'static str,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Shm(e) => write!(f, "shared memory: {e}"),
            SyncError::Init(e) => write!(f, "cannot build the structure: {e}"),
            SyncError::Attach(e) => write!(f, "cannot attach to the structure: {e}"),
            SyncError::Variant { expected } => {
                write!(f, "the segment does not hold a {expected}")
            }
        }
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SyncError::Shm(e) => Some(e),
            SyncError::Init(e) => Some(e),
            SyncError::Attach(e) => Some(e),
            SyncError::Variant { .. } => None,
        }
    }
}

impl From<ShmError> for SyncError {
    fn from(e: ShmError) -> Self {
        SyncError::Shm(e)
    }
}

impl From<InitError> for SyncError {
    fn from(e: InitError) -> Self {
        SyncError::Init(e)
    }
}

impl From<AttachError> for SyncError {
    fn from(e: AttachError) -> Self {
        SyncError::Attach(e)
    }
}

/// A segment and the core view built in it.
///
/// The view's `'static` is a lie confined to this module: the view borrows
/// `shm`, which stays mapped for the life of `self` (the mapping's address
/// does not move with the handle). Nothing here hands the view (or a
/// `'static` reference out of it) to users: every accessor reborrows it for
/// at most the life of `&self`.
pub(crate) struct Owned<V> {
    view: V,
    shm: SharedMemory,
}

impl<V> fmt::Debug for Owned<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Owned")
            .field("shm", &self.shm)
            .finish_non_exhaustive()
    }
}

impl<V> Owned<V> {
    /// Builds the view in `shm` with `create`.
    pub(crate) fn create(
        shm: SharedMemory,
        create: impl FnOnce(Region<'static>) -> Result<V, InitError>,
    ) -> Result<Self, SyncError> {
        // SAFETY: the region and the view built on it are stored next to
        // `shm` in the returned value and never outlive it (see `Owned`).
        let view = create(unsafe { sub_region(&shm, 0) }.ok_or(InitError::TooSmall {
            needed: 1,
            available: 0,
        })?)?;
        Ok(Self { view, shm })
    }

    /// Finds the view in `shm` with `attach`.
    pub(crate) fn attach(
        shm: SharedMemory,
        attach: impl FnOnce(Region<'static>) -> Result<V, AttachError>,
    ) -> Result<Self, SyncError> {
        // SAFETY: as in `create`.
        let region = unsafe { sub_region(&shm, 0) }.ok_or(AttachError::TooSmall {
            needed: 1,
            available: 0,
        })?;
        let view = attach(region)?;
        Ok(Self { view, shm })
    }

    /// The view, borrowed no longer than `self`.
    pub(crate) fn view(&self) -> &V {
        &self.view
    }

    /// The segment.
    pub(crate) fn shm(&self) -> &SharedMemory {
        &self.shm
    }
}

/// The part of `shm` from `off` on (`None` if `off` is not inside it).
///
/// # Safety
///
/// The caller keeps `shm` mapped for as long as the region or any view
/// built on it is used.
unsafe fn sub_region(shm: &SharedMemory, off: usize) -> Option<Region<'static>> {
    if off >= shm.len() {
        return None;
    }
    // SAFETY: off < len, so the pointer is inside the mapping and non-null;
    // the caller guarantees the lifetime; this process reaches the memory
    // only through core structures (SharedMemory::region's contract).
    Some(unsafe {
        Region::from_raw_parts(
            NonNull::new_unchecked(shm.as_ptr().add(off)),
            shm.len() - off,
        )
    })
}

/// The part of `region` from `off` on, for a second structure after the
/// first (`None` if `off` is not inside it).
fn split_region(region: Region<'static>, off: usize) -> Option<Region<'static>> {
    if off >= region.len() {
        return None;
    }
    // SAFETY: off < len, inside the region's memory, which is valid for the
    // region's lifetime; the sub-range is reached only through the core
    // structure built in it.
    Some(unsafe {
        Region::from_raw_parts(
            NonNull::new_unchecked(region.as_ptr().add(off)),
            region.len() - off,
        )
    })
}

/// Where the second structure of a composite segment starts, after a first
/// of `first` bytes.
fn second_offset(first: usize) -> usize {
    first.next_multiple_of(128)
}

/// Maps a segment of `size` bytes: anonymous, or created under `name`.
fn map(name: Option<&str>, size: Option<usize>) -> Result<SharedMemory, SyncError> {
    let size = size.ok_or(InitError::UnsupportedType)?;
    Ok(match name {
        None => SharedMemory::anonymous(size)?,
        Some(n) => SharedMemory::create(n, size)?,
    })
}

/// A core lock guard that poisons its lock when dropped during a panic.
///
/// Derefs to what the core guard derefs to.
#[must_use = "if unused the lock unlocks at once"]
pub struct Guard<G: CoreLockGuard> {
    inner: G,
}

impl<G: CoreLockGuard> Guard<G> {
    fn new(inner: G) -> Self {
        Self { inner }
    }

    /// Marks the lock poisoned ([`PoisonCause::Panicked`]) now.
    pub fn poison(&self) {
        self.inner.raw_mutex().poison();
    }
}

/// Wraps the guard inside a lock result.
fn wrap<G: CoreLockGuard>(r: LockResult<G>) -> LockResult<Guard<G>> {
    r.map(Guard::new).map_err(|p| p.map(Guard::new))
}

fn wrap_try<G: CoreLockGuard>(
    r: Result<G, TryLockError<G>>,
) -> Result<Guard<G>, TryLockError<Guard<G>>> {
    r.map(Guard::new).map_err(|e| e.map(Guard::new))
}

fn wrap_timeout<G: CoreLockGuard>(
    r: Result<G, LockTimeoutError<G>>,
) -> Result<Guard<G>, LockTimeoutError<Guard<G>>> {
    r.map(Guard::new).map_err(|e| e.map(Guard::new))
}

impl<G: CoreLockGuard> Drop for Guard<G> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.poison();
        }
        // The core guard, dropped next, unlocks.
    }
}

// SAFETY: the guard holds the lock its inner guard holds, and reports that
// same lock.
unsafe impl<G: CoreLockGuard> CoreLockGuard for Guard<G> {
    fn raw_mutex(&self) -> &RawMutex {
        self.inner.raw_mutex()
    }
}

impl<G: CoreLockGuard + Deref> Deref for Guard<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.inner
    }
}

impl<G: CoreLockGuard + DerefMut> DerefMut for Guard<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.inner
    }
}

impl<G: CoreLockGuard + fmt::Debug> fmt::Debug for Guard<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}
