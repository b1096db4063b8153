//! `Lock`, `Mutex<T>`, `RLock` and `Condition<T>`.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytemuck::Pod;
use multiproc_core::condvar::{self, WaitTimeoutResult};
use multiproc_core::mutex::{self, LockResult, LockTimeoutError, PoisonError, TryLockError};
use multiproc_core::peers::current_pid;
use multiproc_core::region::{AttachError, InitError, Region};
use multiproc_core::value::AtomicValue;

use super::shared::kind::Kind;
use super::shared::{ConditionKind, LockKind, MutexKind, RLockKind, Shared, SharedKind};
use super::{
    second_offset, split_region, wrap, wrap_timeout, wrap_try, Guard, HandleKind, SyncError,
    OPEN_WAIT,
};
use crate::shm::SharedMemory;

// ---------------------------------------------------------------------------
// Mutex<T>
// ---------------------------------------------------------------------------

/// Holds a [`Mutex`] (or [`Value`](super::Value), [`Condition`]) locked;
/// derefs to the data; unlocks on drop, poisoning the lock first if the
/// thread is panicking.
pub type MutexGuard<'a, T> = Guard<mutex::MutexGuard<'a, T>>;

/// Holds a [`Lock`] locked.
pub type LockGuard<'a> = MutexGuard<'a, ()>;

/// A process-shared, robust lock protecting a `T: Pod`, like
/// `std::sync::Mutex<T>`.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Mutex;
///
/// let m = Mutex::new([0u32; 4])?;
/// let m2 = m.clone(); // same segment: a forked child may hold it
/// m2.lock().unwrap()[1] = 7;
/// assert_eq!(m.lock().unwrap()[1], 7);
/// # Ok::<(), multiproc::sync::SyncError>(())
/// ```
pub type Mutex<T> = Shared<MutexKind<T>>;

impl<T: Pod> Shared<MutexKind<T>> {
    /// Bytes of the segment (`None` if it overflows).
    pub fn memory_size() -> Option<usize> {
        mutex::Mutex::<T>::memory_size()
    }

    /// A mutex holding `init` in an anonymous segment (shared with children
    /// forked afterwards).
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new(init: T) -> Result<Self, SyncError> {
        Self::build(None, init)
    }

    /// A mutex holding `init` in a new segment named `name`, which
    /// [`open`](Self::open) reaches from any process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] (invalid name, already exists, ...).
    pub fn named(name: &str, init: T) -> Result<Self, SyncError> {
        Self::build(Some(name), init)
    }

    /// Builds the mutex in `shm` (at least [`memory_size`](Self::memory_size)
    /// zeroed bytes).
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if the segment is too small or already used.
    pub fn create_in(shm: SharedMemory, init: T) -> Result<Self, SyncError> {
        Self::build_in(shm, init)
    }
}

/// The lock of the handles over one core mutex: [`Mutex<T>`] and [`Lock`]
/// (`T = ()`).
impl<T: Pod, K> Shared<K>
where
    K: SharedKind + Kind<View = mutex::Mutex<'static, T>>,
{
    /// Locks, blocking until the lock is free or its holder is found dead.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] holding the guard if the lock is poisoned (a holder
    /// died or panicked); repair the data and call
    /// [`clear_poison`](Self::clear_poison). A process that locks a mutex it
    /// already holds waits forever (see [`RLock`]).
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        wrap(self.view().lock())
    }

    /// Locks if free, without waiting (a dead holder is not detected here).
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if held; [`TryLockError::Poisoned`] with
    /// the guard if poisoned.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        wrap_try(self.view().try_lock())
    }

    /// Locks, giving up after `timeout`; a dead holder is taken over even
    /// with a zero timeout.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::TimedOut`], or [`LockTimeoutError::Poisoned`]
    /// with the guard.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, LockTimeoutError<MutexGuard<'_, T>>> {
        wrap_timeout(self.view().lock_timeout(timeout))
    }

    /// Whether the lock is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.view().is_poisoned()
    }

    /// Why the lock is poisoned, if it is.
    pub fn poison_cause(&self) -> Option<mutex::PoisonCause> {
        self.view().raw().poison_cause()
    }

    /// Clears the poison (best done holding the guard, after repair).
    pub fn clear_poison(&self) {
        self.view().clear_poison();
    }

    /// Whether some process holds the lock.
    pub fn is_locked(&self) -> bool {
        self.view().raw().is_locked()
    }
}

// ---------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------

/// A process-shared, robust lock without data: Python's
/// `multiprocessing.Lock`.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Lock;
///
/// let lock = Lock::new()?;
/// {
///     let _held = lock.acquire().unwrap();
///     assert!(lock.try_lock().is_err());
/// }
/// assert!(lock.try_lock().is_ok());
/// # Ok::<(), multiproc::sync::SyncError>(())
/// ```
pub type Lock = Shared<LockKind>;

impl Shared<LockKind> {
    /// Bytes of the segment.
    pub fn memory_size() -> Option<usize> {
        mutex::Mutex::<()>::memory_size()
    }

    /// An unlocked lock in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new() -> Result<Self, SyncError> {
        Self::build(None, ())
    }

    /// An unlocked lock in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] (invalid name, already exists, ...).
    pub fn named(name: &str) -> Result<Self, SyncError> {
        Self::build(Some(name), ())
    }

    /// Builds the lock in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if the segment is too small or already used.
    pub fn create_in(shm: SharedMemory) -> Result<Self, SyncError> {
        Self::build_in(shm, ())
    }

    /// Python's name for [`lock`](Self::lock).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        self.lock()
    }
}

// ---------------------------------------------------------------------------
// RLock
// ---------------------------------------------------------------------------

/// The views of an [`RLock`] segment.
// `pub` (in this private module): the view of a public kind (E0446).
#[allow(unreachable_pub)]
#[derive(Debug)]
pub struct RLockView {
    lock: mutex::Mutex<'static, ()>,
    /// `pid << 32 | thread number` of the holder, 0 when free. Written only
    /// by the holder (set after locking, cleared before unlocking); read by
    /// any thread, which only compares it with its own identity: only the
    /// thread itself ever writes its identity there.
    owner: AtomicValue<'static, u64>,
    /// Recursion depth; touched only by the holder.
    count: AtomicValue<'static, u64>,
}

impl RLockView {
    fn offsets() -> Option<(usize, usize, usize)> {
        let a = second_offset(mutex::Mutex::<()>::memory_size()?);
        let v = AtomicValue::<u64>::memory_size()?;
        let b = a + second_offset(v);
        Some((a, b, b + v))
    }

    pub(super) fn memory_size() -> Option<usize> {
        Self::offsets().map(|(_, _, total)| total)
    }

    pub(super) fn debug(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("locked", &self.lock.raw().is_locked());
    }

    pub(super) fn create(r: Region<'static>, tag: u64) -> Result<Self, InitError> {
        let (a, b, total) = Self::offsets().ok_or(InitError::UnsupportedType)?;
        let small = InitError::TooSmall {
            needed: total as u64,
            available: r.len() as u64,
        };
        let ra = split_region(r, a).ok_or(small)?;
        let rb = split_region(r, b).ok_or(small)?;
        let lock = mutex::Mutex::create_tagged(r, (), tag)?;
        Ok(Self {
            lock,
            owner: AtomicValue::create(ra, 0)?,
            count: AtomicValue::create(rb, 0)?,
        })
    }

    pub(super) fn attach(r: Region<'static>, tag: u64) -> Result<Self, AttachError> {
        let (a, b, total) = Self::offsets().ok_or(AttachError::NotReady)?;
        let small = AttachError::TooSmall {
            needed: total as u64,
            available: r.len() as u64,
        };
        // The lock first, so that another handle's segment is told by its
        // stamp before anything else is read.
        let lock = mutex::Mutex::attach_tagged_timeout(r, tag, OPEN_WAIT)?;
        let ra = split_region(r, a).ok_or(small)?;
        let rb = split_region(r, b).ok_or(small)?;
        // The creator builds the owner, then the count: once the count is
        // published, so is the owner.
        let count = AtomicValue::attach_timeout(rb, OPEN_WAIT)?;
        Ok(Self {
            lock,
            owner: AtomicValue::attach(ra)?,
            count,
        })
    }
}

/// This thread's identity in an [`RLock`]: `pid << 32 | thread number`.
fn rlock_identity() -> u64 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        static MINE: Cell<u32> = const { Cell::new(0) };
    }
    let n = MINE.with(|m| {
        if m.get() == 0 {
            // Relaxed: only uniqueness within the process matters; 0 is
            // skipped on wrap-around.
            let mut n = NEXT.fetch_add(1, Ordering::Relaxed);
            if n == 0 {
                n = NEXT.fetch_add(1, Ordering::Relaxed);
            }
            m.set(n);
        }
        m.get()
    });
    (u64::from(current_pid()) << 32) | u64::from(n)
}

/// A re-entrant lock: the thread that holds it may lock it again, and it is
/// released when every guard is dropped. Python's `multiprocessing.RLock`.
///
/// The holder is a thread of a process: `(pid, thread)`. Other threads of
/// the same process wait like other processes do. A holder that dies is
/// reported as for [`Lock`]: [`PoisonCause::OwnerDied`](mutex::PoisonCause).
///
/// # Limits
///
/// As [`Lock`] (pid reuse, pid namespaces), and: a guard must be dropped
/// on the thread that took it (it is not `Send`).
///
/// # Examples
///
/// ```
/// use multiproc::sync::RLock;
///
/// let r = RLock::new()?;
/// let outer = r.lock().unwrap();
/// let inner = r.lock().unwrap(); // no deadlock
/// assert_eq!(r.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!r.is_locked());
/// # Ok::<(), multiproc::sync::SyncError>(())
/// ```
pub type RLock = Shared<RLockKind>;

/// Holds an [`RLock`] (one level of it); releases that level on drop,
/// poisoning the lock first if the thread is panicking.
#[must_use = "if unused the lock unlocks at once"]
pub struct RLockGuard<'a> {
    view: &'a RLockView,
    /// The holder is this thread: not `Send`.
    _thread: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("depth", &self.view.count.load())
            .finish()
    }
}

impl RLockGuard<'_> {
    /// Marks the lock poisoned ([`PoisonCause::Panicked`](mutex::PoisonCause)).
    pub fn poison(&self) {
        self.view.lock.raw().poison();
    }

    /// Clears the lock's poison, once the state it guards is repaired (see
    /// [`Guard::clear_poison`](super::Guard::clear_poison)).
    pub fn clear_poison(&self) {
        self.view.lock.raw().clear_poison();
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.poison();
        }
        let depth = self.view.count.load();
        if depth > 1 {
            self.view.count.store(depth - 1);
            return;
        }
        self.view.count.store(0);
        self.view.owner.store(0);
        // SAFETY: this guard exists only while this thread (hence this
        // process) holds the raw lock, and this is its outermost level.
        unsafe { self.view.lock.raw().unlock() };
    }
}

/// What re-entry or a fresh acquisition returns.
enum Took {
    Again,
    Fresh,
}

impl Shared<RLockKind> {
    /// Bytes of the segment.
    pub fn memory_size() -> Option<usize> {
        RLockView::memory_size()
    }

    /// An unlocked re-entrant lock in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new() -> Result<Self, SyncError> {
        Self::build(None, ())
    }

    /// An unlocked re-entrant lock in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] (invalid name, already exists, ...).
    pub fn named(name: &str) -> Result<Self, SyncError> {
        Self::build(Some(name), ())
    }

    /// Builds the lock in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if the segment is too small or already used.
    pub fn create_in(shm: SharedMemory) -> Result<Self, SyncError> {
        Self::build_in(shm, ())
    }

    /// Whether this thread holds it already: then one more level.
    fn reenter(&self) -> bool {
        let v = self.view();
        if v.owner.load() == rlock_identity() {
            v.count.store(v.count.load().saturating_add(1));
            true
        } else {
            false
        }
    }

    /// Records this thread as the holder after the raw lock was taken.
    fn took(&self) {
        let v = self.view();
        v.owner.store(rlock_identity());
        v.count.store(1);
    }

    fn result(&self, how: Took) -> LockResult<RLockGuard<'_>> {
        if let Took::Fresh = how {
            self.took();
        }
        let guard = RLockGuard {
            view: self.view(),
            _thread: PhantomData,
        };
        match self.view().lock.raw().poison_cause() {
            None => Ok(guard),
            Some(cause) => Err(PoisonError::new(guard, cause)),
        }
    }

    /// Locks (again, if this thread holds it), blocking.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] with the guard if poisoned (a holder died or
    /// panicked).
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        if self.reenter() {
            return self.result(Took::Again);
        }
        let _ = self.view().lock.raw().lock();
        self.result(Took::Fresh)
    }

    /// Python's name for [`lock`](Self::lock).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn acquire(&self) -> LockResult<RLockGuard<'_>> {
        self.lock()
    }

    /// Locks (again) if free or held by this thread, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if another thread or process holds it;
    /// [`TryLockError::Poisoned`] with the guard.
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        if self.reenter() {
            return Ok(self.result(Took::Again)?);
        }
        match self.view().lock.raw().try_lock() {
            Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
            _ => Ok(self.result(Took::Fresh)?),
        }
    }

    /// Locks (again), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::TimedOut`], or [`LockTimeoutError::Poisoned`]
    /// with the guard.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, LockTimeoutError<RLockGuard<'_>>> {
        if self.reenter() {
            return Ok(self.result(Took::Again)?);
        }
        match self.view().lock.raw().lock_timeout(timeout) {
            Err(LockTimeoutError::TimedOut) => Err(LockTimeoutError::TimedOut),
            _ => Ok(self.result(Took::Fresh)?),
        }
    }

    /// How many levels this thread holds (0 if it does not hold it).
    pub fn depth(&self) -> u64 {
        let v = self.view();
        if v.owner.load() == rlock_identity() {
            v.count.load()
        } else {
            0
        }
    }

    /// Whether this thread holds it.
    pub fn is_owned(&self) -> bool {
        self.depth() > 0
    }

    /// Whether some thread of some process holds it.
    pub fn is_locked(&self) -> bool {
        self.view().lock.raw().is_locked()
    }

    /// Whether the lock is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.view().lock.is_poisoned()
    }

    /// Clears the poison.
    pub fn clear_poison(&self) {
        self.view().lock.clear_poison();
    }
}

// ---------------------------------------------------------------------------
// Condition
// ---------------------------------------------------------------------------

/// The views of a [`Condition`] segment.
// `pub` (in this private module): the view of a public kind (E0446).
#[allow(unreachable_pub)]
pub struct ConditionView<T: Pod> {
    lock: mutex::Mutex<'static, T>,
    cv: condvar::Condvar<'static>,
}

impl<T: Pod> fmt::Debug for ConditionView<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConditionView");
        self.debug(&mut d);
        d.finish_non_exhaustive()
    }
}

impl<T: Pod> ConditionView<T> {
    fn offsets() -> Option<(usize, usize)> {
        let a = second_offset(mutex::Mutex::<T>::memory_size()?);
        Some((a, a.checked_add(condvar::Condvar::memory_size()?)?))
    }

    pub(super) fn memory_size() -> Option<usize> {
        Self::offsets().map(|(_, total)| total)
    }

    pub(super) fn debug(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("owner_pid", &self.lock.raw().owner_pid())
            .field("poison", &self.lock.raw().poison_cause());
    }

    pub(super) fn create(r: Region<'static>, init: T, tag: u64) -> Result<Self, InitError> {
        let (a, total) = Self::offsets().ok_or(InitError::UnsupportedType)?;
        let rb = split_region(r, a).ok_or(InitError::TooSmall {
            needed: total as u64,
            available: r.len() as u64,
        })?;
        Ok(ConditionView {
            lock: mutex::Mutex::create_tagged(r, init, tag)?,
            cv: condvar::Condvar::create(rb)?,
        })
    }

    pub(super) fn attach(r: Region<'static>, tag: u64) -> Result<Self, AttachError> {
        // The lock first: its creator builds it first, and its stamp
        // tells another handle's segment before anything else is read.
        let lock = mutex::Mutex::attach_tagged_timeout(r, tag, OPEN_WAIT)?;
        let (a, total) = Self::offsets().ok_or(AttachError::NotReady)?;
        let rb = split_region(r, a).ok_or(AttachError::TooSmall {
            needed: total as u64,
            available: r.len() as u64,
        })?;
        let cv = condvar::Condvar::attach_timeout(rb, OPEN_WAIT)?;
        Ok(ConditionView { lock, cv })
    }
}

/// A condition variable with its lock (and the data that lock protects) in
/// one segment: Python's `multiprocessing.Condition`, shaped like
/// `std::sync::Mutex<T>` plus `std::sync::Condvar`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::sync::Condition;
///
/// let c = Condition::new(0u32)?;
/// let g = c.lock().unwrap();
/// let (g, r) = c.wait_for_timeout(g, Duration::from_millis(5), |v| *v > 0).unwrap();
/// assert!(r.timed_out() && *g == 0);
/// # Ok::<(), multiproc::sync::SyncError>(())
/// ```
pub type Condition<T = ()> = Shared<ConditionKind<T>>;

impl<T: Pod> Shared<ConditionKind<T>> {
    /// Bytes of the segment.
    pub fn memory_size() -> Option<usize> {
        ConditionView::<T>::memory_size()
    }

    /// A condition whose lock holds `init`, in an anonymous segment.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] if the mapping fails.
    pub fn new(init: T) -> Result<Self, SyncError> {
        Self::build(None, init)
    }

    /// A condition in a new segment named `name`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] (invalid name, already exists, ...).
    pub fn named(name: &str, init: T) -> Result<Self, SyncError> {
        Self::build(Some(name), init)
    }

    /// Builds the condition in `shm`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Init`] if the segment is too small or already used.
    pub fn create_in(shm: SharedMemory, init: T) -> Result<Self, SyncError> {
        Self::build_in(shm, init)
    }

    /// Locks the condition's lock, blocking.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] with the guard if poisoned.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        wrap(self.view().lock.lock())
    }

    /// Python's name for [`lock`](Self::lock).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn acquire(&self) -> LockResult<MutexGuard<'_, T>> {
        self.lock()
    }

    /// Locks if free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError`].
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        wrap_try(self.view().lock.try_lock())
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
        wrap_timeout(self.view().lock.lock_timeout(timeout))
    }

    /// Unlocks `guard`, waits for a notification (or a spurious wake-up),
    /// and locks again.
    ///
    /// The guard must come from this condition's [`lock`](Self::lock).
    ///
    /// # Errors
    ///
    /// [`PoisonError`] with the guard if the lock was poisoned when taken
    /// back.
    pub fn wait<'a>(&'a self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.view().cv.wait(guard)
    }

    /// [`wait`](Self::wait), giving up after `timeout` (the lock is taken
    /// back either way); [`WaitTimeoutResult::timed_out`] tells which.
    ///
    /// This is std's `Condvar::wait_timeout` shape: the guard comes back in
    /// both outcomes, and inside the [`PoisonError`] when the lock was
    /// poisoned meanwhile (a holder died), which a `Result<Guard, (Guard,
    /// Timeout)>` or parking_lot's `&mut guard` form could not also carry.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<'a>(
        &'a self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.view().cv.wait_timeout(guard, timeout)
    }

    /// Waits until `pred` holds for the data (checked first, then after
    /// every wake-up): Python's `wait_for`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for<'a>(
        &'a self,
        guard: MutexGuard<'a, T>,
        mut pred: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        self.view().cv.wait_while(guard, |t| !pred(t))
    }

    /// [`wait_for`](Self::wait_for), giving up after `timeout`;
    /// [`WaitTimeoutResult::timed_out`] if the time ran out with `pred`
    /// still false (std's `Condvar::wait_timeout_while`).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for_timeout<'a>(
        &'a self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut pred: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.view()
            .cv
            .wait_timeout_while(guard, timeout, |t| !pred(t))
    }

    /// Wakes one waiter (in any process).
    pub fn notify(&self) {
        self.view().cv.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.view().cv.notify_all();
    }

    /// Whether the lock is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.view().lock.is_poisoned()
    }

    /// Clears the poison.
    pub fn clear_poison(&self) {
        self.view().lock.clear_poison();
    }
}

// The kinds of the two handles whose views live here (the others are
// declared with their views in `shared`).

impl SharedKind for RLockKind {}
impl Kind for RLockKind {
    type View = RLockView;
    type Init = ();
    type Elem = ();
    const HANDLE: HandleKind = HandleKind::RLock;
    fn memory_size((): &()) -> Option<usize> {
        RLockView::memory_size()
    }
    fn create(r: Region<'static>, (): (), tag: u64) -> Result<RLockView, InitError> {
        RLockView::create(r, tag)
    }
    fn attach(r: Region<'static>, tag: u64) -> Result<RLockView, AttachError> {
        RLockView::attach(r, tag)
    }
    fn debug(v: &RLockView, d: &mut fmt::DebugStruct<'_, '_>) {
        v.debug(d);
    }
}

impl<T: Pod> SharedKind for ConditionKind<T> {}
impl<T: Pod> Kind for ConditionKind<T> {
    type View = ConditionView<T>;
    type Init = T;
    type Elem = T;
    const HANDLE: HandleKind = HandleKind::Condition;
    fn memory_size(_: &T) -> Option<usize> {
        ConditionView::<T>::memory_size()
    }
    fn create(r: Region<'static>, init: T, tag: u64) -> Result<ConditionView<T>, InitError> {
        ConditionView::create(r, init, tag)
    }
    fn attach(r: Region<'static>, tag: u64) -> Result<ConditionView<T>, AttachError> {
        ConditionView::attach(r, tag)
    }
    fn debug(v: &ConditionView<T>, d: &mut fmt::DebugStruct<'_, '_>) {
        v.debug(d);
    }
}
