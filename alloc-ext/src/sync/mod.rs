//! Owning, process-shared locks and values: Python's `Lock`, `RLock`,
//! `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier`,
//! `Value` and `Array`, over the structures of [`multiproc_core`].
//!
//! Each handle owns (an `Arc` of) the [`SharedMemory`] segment its structure
//! lives in. Handles are `Clone + Send + Sync`; clones share the segment.
//!
//! Every handle is one generic type, [`Shared<K>`](Shared), over its kind
//! ([`SharedKind`]: the core structure, its stamp, how it is built and
//! found), as lock_api's `Mutex<R, T>` serves every raw mutex: `Lock` is
//! `Shared<LockKind>`, `Semaphore` is `Shared<SemaphoreKind>`, and so on.
//! `Clone`, `Debug`, `open`, `attach`, `name` and `shm` are written once,
//! on `Shared`; each handle adds only its own methods.
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
//! # Type stamps
//!
//! The header of a segment's first region records which handle made it and
//! for which element type: the element tag is
//!
//! ```text
//!  63      56 55      48 47                                        0
//!  +---------+----------+-------------------------------------------+
//!  |  0xA5   | handle   | low 48 bits of a hash of the element type |
//!  +---------+----------+-------------------------------------------+
//! ```
//!
//! (`handle` numbers [`HandleKind`]; the element type is `()` for the
//! handles without data.) `open` and `attach` check it with the core
//! header's size and alignment, so opening a segment as another handle
//! (an [`RLock`]'s as a [`Lock`], a [`BoundedSemaphore`]'s as a
//! [`Semaphore`]) or over another element type (`Value<u32>` as
//! `Value<u64>`, `Mutex<i32>` as `Mutex<u32>`) fails with
//! [`SyncError::WrongType`], which names both. The hash is of the type's
//! name, stable across processes running one build of a program.
//!
//! # Poison
//!
//! The locks are robust: a holder killed with `SIGKILL` is noticed by the
//! next locker (within about 100 ms of waiting), which gets the lock inside a
//! [`PoisonError`] with [`PoisonCause::OwnerDied`]. A guard dropped while its
//! thread panics poisons the lock with [`PoisonCause::Panicked`] (core,
//! being `no_std`, cannot see panics; the guards here can). Poison is sticky
//! until `clear_poison`: on the guard ([`Guard::clear_poison`],
//! [`RLockGuard::clear_poison`]), once the data is repaired, or on the lock
//! as std's `Mutex::clear_poison`.
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
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use multiproc_core::mutex::{LockGuard as CoreLockGuard, RawMutex};
use multiproc_core::region::{AttachError, ElemType, InitError, Kind, Region};

use crate::segment::type_tag;
use crate::shm::{SharedMemory, ShmError};

mod lock;
mod prims;
mod shared;
mod value;
mod wait_error;

pub use lock::{Condition, Lock, LockGuard, Mutex, MutexGuard, RLock, RLockGuard};
pub use multiproc_core::barrier::{BarrierError, BarrierWaitResult};
pub use multiproc_core::condvar::WaitTimeoutResult;
pub use multiproc_core::mutex::{
    LockResult, LockTimeoutError, PoisonCause, PoisonError, TryLockError,
};
pub use multiproc_core::semaphore::{OwnerDied, SemaphoreError};
pub use multiproc_core::value::ArrayError;
pub use prims::{Barrier, BoundedSemaphore, Event, Semaphore};
pub use shared::{
    ArrayKind, AtomicValueKind, BarrierKind, BoundedSemaphoreKind, ConditionKind, EventKind,
    LockKind, MutexKind, RLockKind, SemaphoreKind, Shared, SharedKind, ValueKind,
};
pub use value::{Array, ArrayGuard, AtomicValue, Value};
pub use wait_error::{AcquireTimeoutError, TimedOut};

#[cfg(test)]
mod tests;

/// How long [`open`](Lock::open) waits for a creator that is still
/// building the structure in a segment it has just made.
pub const OPEN_WAIT: Duration = Duration::from_millis(500);

/// The handle types of this module, as stamped in the segments they make
/// (see [Type stamps](self#type-stamps)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandleKind {
    /// [`Lock`].
    Lock = 1,
    /// [`Mutex`].
    Mutex = 2,
    /// [`RLock`].
    RLock = 3,
    /// [`Condition`].
    Condition = 4,
    /// [`Semaphore`].
    Semaphore = 5,
    /// [`BoundedSemaphore`].
    BoundedSemaphore = 6,
    /// [`Event`].
    Event = 7,
    /// [`Barrier`].
    Barrier = 8,
    /// [`Value`].
    Value = 9,
    /// [`AtomicValue`].
    AtomicValue = 10,
    /// [`Array`].
    Array = 11,
}

/// The top byte of every stamp: tells a stamp from another user tag.
const STAMP_PREFIX: u64 = 0xA5;
/// The bits of a stamp that hold the element type's hash.
const ELEM_HASH_MASK: u64 = (1 << 48) - 1;

impl HandleKind {
    pub(crate) const ALL: [HandleKind; 11] = [
        HandleKind::Lock,
        HandleKind::Mutex,
        HandleKind::RLock,
        HandleKind::Condition,
        HandleKind::Semaphore,
        HandleKind::BoundedSemaphore,
        HandleKind::Event,
        HandleKind::Barrier,
        HandleKind::Value,
        HandleKind::AtomicValue,
        HandleKind::Array,
    ];

    /// The handle's name, as in `"BoundedSemaphore"`.
    pub fn name(self) -> &'static str {
        match self {
            HandleKind::Lock => "Lock",
            HandleKind::Mutex => "Mutex",
            HandleKind::RLock => "RLock",
            HandleKind::Condition => "Condition",
            HandleKind::Semaphore => "Semaphore",
            HandleKind::BoundedSemaphore => "BoundedSemaphore",
            HandleKind::Event => "Event",
            HandleKind::Barrier => "Barrier",
            HandleKind::Value => "Value",
            HandleKind::AtomicValue => "AtomicValue",
            HandleKind::Array => "Array",
        }
    }

    /// "a" or "an", for messages.
    fn article(self) -> &'static str {
        match self {
            HandleKind::RLock | HandleKind::Event | HandleKind::AtomicValue | HandleKind::Array => {
                "an"
            }
            _ => "a",
        }
    }

    /// Whether the handle is generic over an element type.
    fn is_generic(self) -> bool {
        matches!(
            self,
            HandleKind::Mutex
                | HandleKind::Condition
                | HandleKind::Value
                | HandleKind::AtomicValue
                | HandleKind::Array
        )
    }

    /// The core structure in the first region of the handle's segment.
    pub(crate) fn core_kind(self) -> Kind {
        match self {
            HandleKind::Lock | HandleKind::Mutex | HandleKind::RLock | HandleKind::Condition => {
                Kind::Mutex
            }
            HandleKind::Semaphore | HandleKind::BoundedSemaphore => Kind::Semaphore,
            HandleKind::Event => Kind::Event,
            HandleKind::Barrier => Kind::Barrier,
            HandleKind::Value => Kind::Value,
            HandleKind::AtomicValue => Kind::AtomicValue,
            HandleKind::Array => Kind::Array,
        }
    }

    /// The element tag of this handle over core element type `E`.
    pub(crate) fn tag<E>(self) -> u64 {
        (STAMP_PREFIX << 56) | ((self as u64) << 48) | (type_tag::<E>() & ELEM_HASH_MASK)
    }

    /// What the first region of this handle's segment over core element
    /// type `E` records.
    pub(crate) fn stamp<E>(self) -> SegmentType {
        SegmentType {
            handle: Some(self),
            kind: Some(self.core_kind()),
            elem: ElemType::of::<E>().tagged(self.tag::<E>()),
        }
    }

    /// The handle whose stamp `tag` is, if the core `kind` fits it.
    pub(crate) fn from_tag(tag: u64, kind: Option<Kind>) -> Option<Self> {
        if tag >> 56 != STAMP_PREFIX {
            return None;
        }
        let id = (tag >> 48) & 0xff;
        Self::ALL
            .into_iter()
            .find(|h| *h as u64 == id && Some(h.core_kind()) == kind)
    }
}

impl fmt::Display for HandleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a segment holds (or was expected to hold), as the header of its
/// first region records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentType {
    /// The handle that made it; `None` if the header names none of this
    /// module's (a queue's segment, a core structure built directly).
    pub handle: Option<HandleKind>,
    /// The core structure in the first region (`None`: a kind this build
    /// does not know).
    pub kind: Option<Kind>,
    /// The element type's size and alignment, and the stamp (see
    /// [Type stamps](self#type-stamps)).
    pub elem: ElemType,
}

impl SegmentType {
    /// What the header of `region` records. Only meaningful once the
    /// header is published.
    pub(crate) fn read(region: Region<'_>) -> Option<Self> {
        let header = region.header().ok()?;
        let kind = header.kind();
        let elem = header.elem_type();
        Some(Self {
            handle: HandleKind::from_tag(elem.tag, kind),
            kind,
            elem,
        })
    }
}

impl fmt::Display for SegmentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.handle, self.kind) {
            (Some(h), _) if h.is_generic() => write!(
                f,
                "{} {h}<T> of a {}-byte T aligned to {} (type hash {:012x})",
                h.article(),
                self.elem.size,
                self.elem.align,
                self.elem.tag & ELEM_HASH_MASK
            ),
            (Some(h), _) => write!(f, "{} {h}", h.article()),
            (None, Some(k)) => write!(f, "a core {k:?} that no sync handle made"),
            (None, None) => f.write_str("a structure of an unknown kind"),
        }
    }
}

/// Why a handle could not be created or opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum SyncError {
    /// Mapping, creating or opening the segment failed.
    Shm(ShmError),
    /// Building the structure failed (a segment too small, an argument out
    /// of range such as a barrier of zero parties, an unsupported type).
    Init(InitError),
    /// The segment does not hold a published structure (not ready in time,
    /// too small, truncated, corrupt, of another layout version), or it was
    /// made in another pid namespace
    /// ([`AttachError::ForeignPidNamespace`]).
    Attach(AttachError),
    /// The segment holds another handle's structure (a plain semaphore
    /// opened as a bounded one, a queue opened as a lock), or this handle's
    /// over another element type.
    WrongType {
        /// What the handle opening it needs.
        expected: SegmentType,
        /// What the segment holds.
        found: SegmentType,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Shm(e) => write!(f, "shared memory: {e}"),
            SyncError::Init(e) => write!(f, "cannot build the structure: {e}"),
            SyncError::Attach(e) => write!(f, "cannot attach to the structure: {e}"),
            SyncError::WrongType { expected, found } => {
                write!(f, "the segment holds {found}, not {expected}")
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
            SyncError::WrongType { .. } => None,
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

    /// Finds the view in `shm` with `attach`, which checks the first
    /// region against `expected` first.
    ///
    /// A kind or type mismatch becomes [`SyncError::WrongType`] when the
    /// first region's header differs from `expected` (a mismatch further
    /// on, in a region after the first, stays an [`SyncError::Attach`]).
    pub(crate) fn attach(
        shm: SharedMemory,
        expected: SegmentType,
        attach: impl FnOnce(Region<'static>) -> Result<V, AttachError>,
    ) -> Result<Self, SyncError> {
        // SAFETY: as in `create`.
        let region = unsafe { sub_region(&shm, 0) }.ok_or(AttachError::TooSmall {
            needed: 1,
            available: 0,
        })?;
        let view = attach_checked(region, expected, attach)?;
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

/// Runs `attach` on `region`, the first region of a segment expected to
/// hold `expected`, and turns a kind or type mismatch into
/// [`SyncError::WrongType`] naming what the header records (the stamp check
/// of [`Owned::attach`]; reads nothing but the region's header).
pub(crate) fn attach_checked<'a, V>(
    region: Region<'a>,
    expected: SegmentType,
    attach: impl FnOnce(Region<'a>) -> Result<V, AttachError>,
) -> Result<V, SyncError> {
    match attach(region) {
        Ok(view) => Ok(view),
        Err(e @ (AttachError::KindMismatch { .. } | AttachError::TypeMismatch { .. })) => {
            // The header was published (core checks kind and type only
            // after it is ready), so reading it tells what it holds.
            match SegmentType::read(region) {
                Some(found) if found != expected => Err(SyncError::WrongType { expected, found }),
                _ => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
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
///
/// Not `Send` (as `std`'s guards): the lock stays with the thread that took
/// it. Otherwise a guard could ride into a forked child, which would write
/// through it while the parent's copy unlocks, or into a thread that
/// outlives the lock's owner. Neither compiles:
///
/// ```compile_fail,E0277
/// use std::sync::LazyLock;
/// use multiproc::{sync::Mutex, Process};
///
/// static M: LazyLock<Mutex<u64>> = LazyLock::new(|| Mutex::new(0).unwrap());
/// let mut guard = M.lock().unwrap();
/// // error: the guard is not `Send`
/// Process::new(move || *guard += 1).start().unwrap();
/// ```
///
/// ```compile_fail,E0277
/// use std::sync::LazyLock;
/// use multiproc::sync::Lock;
///
/// static L: LazyLock<Lock> = LazyLock::new(|| Lock::new().unwrap());
/// let guard = L.lock().unwrap();
/// std::thread::spawn(move || drop(guard)); // error: not `Send`
/// ```
#[must_use = "if unused the lock unlocks at once"]
pub struct Guard<G: CoreLockGuard> {
    inner: G,
    /// Stays with the locking thread: not `Send`, whatever `G` is.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared `Guard` gives `&G` only (deref, `poison`), so it is as
// shareable as `G`; the `*const ()` marker is there for `Send` alone (as
// lock_api's `GuardNoSend`).
unsafe impl<G: CoreLockGuard + Sync> Sync for Guard<G> {}

impl<G: CoreLockGuard> Guard<G> {
    fn new(inner: G) -> Self {
        Self {
            inner,
            _not_send: PhantomData,
        }
    }

    /// Marks the lock poisoned ([`PoisonCause::Panicked`]) now.
    pub fn poison(&self) {
        self.inner.raw_mutex().poison();
    }

    /// Clears the lock's poison: call it once the data is repaired. The
    /// guard is where this belongs (the lock's own `clear_poison`, as std's
    /// `Mutex::clear_poison`, does the same): holding it, no other process
    /// can see the data between the repair and the clear, and the unlock
    /// publishes both.
    ///
    /// ```
    /// use multiproc::sync::Mutex;
    ///
    /// let m = Mutex::new(1u32)?;
    /// m.lock().unwrap().poison();
    /// let mut g = m.lock().unwrap_err().into_inner();
    /// *g = 0; // repair
    /// g.clear_poison();
    /// drop(g);
    /// assert!(!m.is_poisoned());
    /// # Ok::<(), multiproc::sync::SyncError>(())
    /// ```
    pub fn clear_poison(&self) {
        self.inner.raw_mutex().clear_poison();
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
