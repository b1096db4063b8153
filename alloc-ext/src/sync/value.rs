//! `Value<T>`, `AtomicValue<T>` and `Array<T>`.

use std::time::Duration;

use bytemuck::Pod;
use multiproc_core::mutex::{LockResult, LockTimeoutError, PoisonCause, TryLockError};
use multiproc_core::value::{self, ArrayError};

use super::lock::MutexGuard;
use super::shared::{ArrayKind, AtomicValueKind, Shared, ValueKind};
use super::{wrap, wrap_timeout, wrap_try, Guard, SyncError};
use crate::shm::SharedMemory;

// ---------------------------------------------------------------------------
// Value
// ---------------------------------------------------------------------------

/// A lock-protected `T: Pod` shared between processes: Python's
/// `multiprocessing.Value` (with its default lock).
///
/// # Examples
///
/// ```
/// use multiproc::sync::Value;
///
/// let v = Value::new(1.5f64)?;
/// v.set(2.0).unwrap();
/// assert_eq!(v.update(|x| { *x *= 2.0; *x }).unwrap(), 4.0);
/// assert_eq!(v.get().unwrap(), 4.0);
/// # Ok::<(), multiproc::sync::SyncError>(())
/// ```
pub type Value<T> = Shared<ValueKind<T>>;

impl<T: Pod> Shared<ValueKind<T>> {
    /// Bytes of the segment (`None` if it overflows).
    pub fn memory_size() -> Option<usize> {
        value::Value::<T>::memory_size()
    }

    /// A value holding `init` in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new(init: T) -> Result<Self, SyncError> {
        Self::build(None, init)
    }

    /// A value in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] (invalid name, already exists, ...).
    pub fn named(name: &str, init: T) -> Result<Self, SyncError> {
        Self::build(Some(name), init)
    }

    /// Builds the value in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if the segment is too small or already used.
    pub fn create_in(shm: SharedMemory, init: T) -> Result<Self, SyncError> {
        Self::build_in(shm, init)
    }

    /// Locks the value, blocking; the guard derefs to `T`.
    ///
    /// # Errors
    ///
    /// [`PoisonError`](super::PoisonError) with the guard if poisoned.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        wrap(self.view().lock())
    }

    /// Locks if free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError`].
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        wrap_try(self.view().try_lock())
    }

    /// Locks, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, LockTimeoutError<MutexGuard<'_, T>>> {
        wrap_timeout(self.view().lock_timeout(timeout))
    }

    /// A copy of the value, read under the lock.
    ///
    /// # Errors
    ///
    /// [`PoisonError`](super::PoisonError) holding the value if poisoned.
    pub fn get(&self) -> LockResult<T> {
        self.update(|v| *v)
    }

    /// Replaces the value, under the lock.
    ///
    /// # Errors
    ///
    /// [`PoisonError`](super::PoisonError) if poisoned (the value is
    /// replaced all the same).
    pub fn set(&self, v: T) -> LockResult<()> {
        self.update(|x| *x = v)
    }

    /// Runs `f` on the value under the lock (a panic in `f` poisons it).
    ///
    /// # Errors
    ///
    /// [`PoisonError`](super::PoisonError) holding `f`'s result if the lock
    /// was poisoned (`f` ran all the same).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> LockResult<R> {
        match self.lock() {
            Ok(mut g) => Ok(f(&mut g)),
            Err(p) => Err(p.map(|mut g| f(&mut g))),
        }
    }

    /// Whether the lock is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.view().is_poisoned()
    }

    /// Why the lock is poisoned, if it is.
    pub fn poison_cause(&self) -> Option<PoisonCause> {
        self.view().raw().poison_cause()
    }

    /// Clears the poison.
    pub fn clear_poison(&self) {
        self.view().clear_poison();
    }
}

// ---------------------------------------------------------------------------
// AtomicValue
// ---------------------------------------------------------------------------

/// A lock-free `T: Pod` of 1, 2, 4 or 8 bytes shared between processes
/// (Python's `Value(..., lock=False)`, made atomic).
///
/// # Examples
///
/// ```
/// use multiproc::sync::AtomicValue;
///
/// let n = AtomicValue::new(5u32)?;
/// assert_eq!(n.fetch_add(2), 5);
/// assert_eq!(n.compare_exchange(7, 9), Ok(7));
/// assert_eq!(n.load(), 9);
/// # Ok::<(), multiproc::sync::SyncError>(())
/// ```
pub type AtomicValue<T> = Shared<AtomicValueKind<T>>;

impl<T: Pod> Shared<AtomicValueKind<T>> {
    /// Bytes of the segment; `None` if `T` is not 1, 2, 4 or 8 bytes.
    pub fn memory_size() -> Option<usize> {
        value::AtomicValue::<T>::memory_size()
    }

    /// A value holding `init` in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] with `UnsupportedType` if `T` is not 1, 2, 4 or
    /// 8 bytes; [`SyncError::Shm`] if the mapping fails.
    pub fn new(init: T) -> Result<Self, SyncError> {
        Self::build(None, init)
    }

    /// A value in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`SyncError::Shm`] for the name.
    pub fn named(name: &str, init: T) -> Result<Self, SyncError> {
        Self::build(Some(name), init)
    }

    /// Builds the value in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory, init: T) -> Result<Self, SyncError> {
        Self::build_in(shm, init)
    }

    /// The value.
    pub fn load(&self) -> T {
        self.view().load()
    }

    /// Replaces the value.
    pub fn store(&self, v: T) {
        self.view().store(v);
    }

    /// Replaces the value, returning the old one.
    pub fn swap(&self, v: T) -> T {
        self.view().swap(v)
    }

    /// Stores `new` if the value is bitwise `current`.
    ///
    /// # Errors
    ///
    /// The value found, if it was not `current`.
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        self.view().compare_exchange(current, new)
    }

    /// Applies `f` atomically (retrying on contention) until it returns
    /// `None` or its result is stored.
    ///
    /// # Errors
    ///
    /// The last value seen, if `f` returned `None`.
    pub fn fetch_update(&self, f: impl FnMut(T) -> Option<T>) -> Result<T, T> {
        self.view().fetch_update(f)
    }
}

macro_rules! atomic_arith {
    ($($t:ty),*) => {$(
        impl AtomicValue<$t> {
            /// Adds `v` (wrapping), returning the old value.
            pub fn fetch_add(&self, v: $t) -> $t {
                self.view().fetch_add(v)
            }

            /// Subtracts `v` (wrapping), returning the old value.
            pub fn fetch_sub(&self, v: $t) -> $t {
                self.view().fetch_sub(v)
            }
        }
    )*};
}

atomic_arith!(u64, i64, u32, i32, u16, i16, u8, i8);

// ---------------------------------------------------------------------------
// Array
// ---------------------------------------------------------------------------

/// Holds an [`Array`] locked; derefs to `[T]`; unlocks on drop, poisoning
/// the lock first if the thread is panicking.
pub type ArrayGuard<'a, T> = Guard<value::ArrayGuard<'a, T>>;

/// A lock-protected, fixed-length array of `T: Pod` shared between
/// processes: Python's `multiprocessing.Array`.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Array;
///
/// let a = Array::new(4, 0u16)?;
/// a.set(1, 5).unwrap();
/// a.lock().unwrap()[2] = 6;
/// assert_eq!(a.to_vec().unwrap(), [0, 5, 6, 0]);
/// assert!(a.get(4).is_err());
/// # Ok::<(), multiproc::sync::SyncError>(())
/// ```
pub type Array<T> = Shared<ArrayKind<T>>;

impl<T: Pod> Shared<ArrayKind<T>> {
    /// Bytes of the segment for `len` elements (`None` if it overflows).
    pub fn memory_size(len: usize) -> Option<usize> {
        value::Array::<T>::memory_size(len)
    }

    /// An array of `len` copies of `fill`, in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] for a length the core rejects or that overflows;
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new(len: usize, fill: T) -> Result<Self, SyncError> {
        Self::build(None, (len, fill))
    }

    /// An array in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`SyncError::Shm`] for the name.
    pub fn named(name: &str, len: usize, fill: T) -> Result<Self, SyncError> {
        Self::build(Some(name), (len, fill))
    }

    /// An array holding a copy of `items`, in an anonymous segment.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_slice(items: &[T]) -> Result<Self, SyncError> {
        let a = Self::new(items.len(), T::zeroed())?;
        // Cannot fail: fresh, unpoisoned, of the same length.
        let _ = a.copy_from_slice(items);
        Ok(a)
    }

    /// Builds the array in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`].
    pub fn create_in(shm: SharedMemory, len: usize, fill: T) -> Result<Self, SyncError> {
        Self::build_in(shm, (len, fill))
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.view().is_empty()
    }

    /// Locks the array, blocking; the guard derefs to `[T]`.
    ///
    /// # Errors
    ///
    /// [`PoisonError`](super::PoisonError) with the guard if poisoned.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        wrap(self.view().lock())
    }

    /// Locks if free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError`].
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        wrap_try(self.view().try_lock())
    }

    /// Locks, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>, LockTimeoutError<ArrayGuard<'_, T>>> {
        wrap_timeout(self.view().lock_timeout(timeout))
    }

    /// Element `index`, read under the lock.
    ///
    /// # Errors
    ///
    /// [`ArrayError::OutOfBounds`], or [`ArrayError::Poisoned`] holding the
    /// element.
    pub fn get(&self, index: usize) -> Result<T, ArrayError<T>> {
        self.view().get(index)
    }

    /// Writes element `index` under the lock.
    ///
    /// # Errors
    ///
    /// [`ArrayError::OutOfBounds`], or [`ArrayError::Poisoned`] (written all
    /// the same).
    pub fn set(&self, index: usize, v: T) -> Result<(), ArrayError<()>> {
        self.view().set(index, v)
    }

    /// A copy of every element, read under the lock.
    ///
    /// # Errors
    ///
    /// [`PoisonError`](super::PoisonError) holding the copy if poisoned.
    pub fn to_vec(&self) -> LockResult<Vec<T>> {
        match self.lock() {
            Ok(g) => Ok(g.to_vec()),
            Err(p) => Err(p.map(|g| g.to_vec())),
        }
    }

    /// Copies every element into `dst`, under the lock.
    ///
    /// # Errors
    ///
    /// [`ArrayError::LengthMismatch`] or [`ArrayError::Poisoned`].
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<(), ArrayError<()>> {
        self.view().copy_to_slice(dst)
    }

    /// Overwrites every element from `src`, under the lock.
    ///
    /// # Errors
    ///
    /// [`ArrayError::LengthMismatch`] or [`ArrayError::Poisoned`] (copied
    /// all the same).
    pub fn copy_from_slice(&self, src: &[T]) -> Result<(), ArrayError<()>> {
        self.view().copy_from_slice(src)
    }

    /// Whether the lock is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.view().is_poisoned()
    }

    /// Clears the poison.
    pub fn clear_poison(&self) {
        self.view().clear_poison();
    }
}
