//! Shared regions: the memory every structure is built in, and the header
//! that is validated before any of it is trusted.
//!
//! Every structure in this crate occupies one region laid out as:
//!
//! ```text
//!  offset 0            128                     array offset          total
//!  +-------------------+-----------------------+---------------------+
//!  | RegionHeader      | body (indices, locks, | elements (slots,    |
//!  | magic, version,   |  futex words; each    |  bytes, values)     |
//!  | kind, elem type,  |  hot field on its own |                     |
//!  | capacity, state   |  128-byte line)       |                     |
//!  +-------------------+-----------------------+---------------------+
//! ```
//!
//! Creating a region claims it (`state`: uninit -> initializing), writes the
//! body and elements, fills the header and publishes it (`ready`, with
//! `Release`). Attaching waits for `ready` (with `Acquire`) and then checks the
//! magic, layout version, kind, element size, alignment and tag, and that the
//! capacity describes a layout that fits the memory it was handed. Anything
//! else is a typed [`AttachError`], whatever bytes the memory holds.
//!
//! The claim also records who claimed it (the creator's identity word, with
//! its pid namespace). A creator killed between the claim and the publish
//! leaves the region `initializing` for good; an attacher checks that
//! record once per nap of its wait (and before giving up) and returns
//! [`AttachError::CreatorDied`] as soon as the creator is gone, rather
//! than `NotReady` at its deadline. The memory is not reclaimed in place:
//! its owner removes it and creates it again.
//!
//! # Pid namespaces
//!
//! The structures name processes by pid (locks, roles, peer tables), and a
//! pid means nothing in another pid namespace: the same process has another
//! pid there, and a pid from outside names another process or none (so a
//! live lock holder would look dead, or a dead one alive). The header
//! records the creator's pid namespace (the inode of `/proc/self/ns/pid`),
//! and attaching from another one fails with
//! [`AttachError::ForeignPidNamespace`], as with two containers sharing
//! `/dev/shm` (`docker --ipc=host`) but not their pids. Where either side
//! cannot read its namespace (no `/proc`), it is unknown and the attach is
//! allowed: the check cannot be made, and pid namespaces then are rarely
//! in play.
//!
//! Every field a process can write lives in an atomic, so reading memory that
//! a foreign, buggy or dead process wrote is never a data race and never an
//! invalid value: at worst it is a wrong number, which each structure bounds-
//! checks before use.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::time::Duration;

use static_assertions::assert_eq_size;

use crate::sync::{spin_loop, AtomicU32, AtomicU64, Futex, Ordering};
use crate::time::Deadline;

/// `b"MPROCrg\x01"` read as a little-endian u64: the first word of every region.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MPROCrg\x01");

/// The version of the shared layouts. Bumped whenever any structure's bytes
/// change meaning; a region of another version is refused on attach.
///
/// 4: the header records the creator's pid namespace; mutexes carry their
/// holder's identity (16 bytes); role words are 64-bit identity words; an
/// MPMC slot free for its first lap reads 0 (rings start all-zero); peer
/// slots are two words (identity, counts); semaphores record their
/// holders and barriers their parties (identity words).
/// 5: an MPMC slot records its owner's identity word beside `seq` (slots
/// are `seq`, `owner`, value).
/// 6: a byte ring's wake-up line holds two bells (eventcount and `asleep`
/// flag, 12 bytes each) instead of two eventcounts; the header records
/// the creator's identity word at the claim (offset 72).
/// 7: an MPMC push claims by its CAS on the slot and `tail` is a hint (no
/// longer carrying the closed bit); the control line's `closed` word is the
/// closed flag (same bytes, new meaning: a version-6 process would claim on
/// `tail`).
/// 8: a message queue's send claims by its CAS on the slot, as an MPMC
/// push (7), and its `tail` is a hint without the closed bit; its control
/// line's `closed` word is the closed flag (same bytes, new meaning: a
/// version-7 process would claim on `tail` and steal claims).
pub const LAYOUT_VERSION: u32 = 8;

/// Size and alignment of [`RegionHeader`]; also the alignment a region's
/// memory must have (page-aligned mappings always do).
pub const REGION_ALIGN: usize = 128;

/// Writes the four attach functions of a structure that lives in a region,
/// over its private `fn open(region, tag, deadline)`: `attach` (no
/// waiting), `attach_timeout` (waits for the creator to publish), and
/// `attach_tagged`/`attach_tagged_timeout` for a structure made by its
/// `create_tagged` with an element tag. `$what` names the structure in the
/// docs ("a mutex"); `$errors`, if given, is one more sentence for their
/// `# Errors`.
macro_rules! attach_fns {
    ($lt:lifetime, $what:literal $(, $errors:literal)?) => {
        #[doc = concat!("Attaches to ", $what, " that another process (or thread) created in `region`, without waiting.")]
        ///
        /// # Errors
        ///
        /// [`AttachError::NotReady`](crate::region::AttachError::NotReady)
        /// if the creator has not published it yet, and every validation
        /// error of [`AttachError`](crate::region::AttachError).
        $(#[doc = $errors])?
        pub fn attach(region: Region<$lt>) -> Result<Self, AttachError> {
            Self::open(region, 0, None)
        }

        /// As [`attach`](Self::attach), waiting up to `timeout` for the
        /// creator to publish it.
        ///
        /// # Errors
        ///
        /// As [`attach`](Self::attach); `NotReady` once `timeout` has passed.
        pub fn attach_timeout(
            region: Region<$lt>,
            timeout: core::time::Duration,
        ) -> Result<Self, AttachError> {
            Self::open(region, 0, Some(crate::time::Deadline::after(timeout)))
        }

        #[doc = concat!("As [`attach`](Self::attach), for ", $what, " made by `create_tagged` with the same `tag`.")]
        ///
        /// # Errors
        ///
        /// As [`attach`](Self::attach); another tag is an
        /// [`AttachError::TypeMismatch`](crate::region::AttachError::TypeMismatch).
        pub fn attach_tagged(region: Region<$lt>, tag: u64) -> Result<Self, AttachError> {
            Self::open(region, tag, None)
        }

        /// As [`attach_tagged`](Self::attach_tagged), waiting up to
        /// `timeout` for the creator to publish it.
        ///
        /// # Errors
        ///
        /// As [`attach_tagged`](Self::attach_tagged); `NotReady` once
        /// `timeout` has passed.
        pub fn attach_tagged_timeout(
            region: Region<$lt>,
            tag: u64,
            timeout: core::time::Duration,
        ) -> Result<Self, AttachError> {
            Self::open(region, tag, Some(crate::time::Deadline::after(timeout)))
        }
    };
}
pub(crate) use attach_fns;

const STATE_UNINIT: u32 = 0;
const STATE_INITIALIZING: u32 = 1;
const STATE_READY: u32 = 2;

/// Which structure a region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum Kind {
    /// [`crate::spsc`] ring.
    Spsc = 1,
    /// [`crate::mpmc`] ring.
    Mpmc = 2,
    /// [`crate::bytering`] frame ring.
    ByteRing = 3,
    /// [`crate::mutex::Mutex`].
    Mutex = 4,
    /// [`crate::condvar::Condvar`].
    Condvar = 5,
    /// [`crate::semaphore::Semaphore`].
    Semaphore = 6,
    /// [`crate::event::Event`].
    Event = 7,
    /// [`crate::barrier::Barrier`].
    Barrier = 8,
    /// [`crate::value::Value`].
    Value = 9,
    /// [`crate::value::Array`].
    Array = 10,
    /// [`crate::value::AtomicValue`].
    AtomicValue = 11,
    /// [`crate::peers::Peers`]: the peer table of a std-layer queue.
    Peers = 12,
    /// [`crate::msgqueue::MsgQueue`]: an MPMC queue of variable-size byte
    /// messages.
    MsgQueue = 13,
    /// A structure defined outside this crate (the std layer's queues).
    External = 0x1000,
}

impl Kind {
    /// The kind for a raw header value, if it names one.
    pub fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Spsc,
            2 => Kind::Mpmc,
            3 => Kind::ByteRing,
            4 => Kind::Mutex,
            5 => Kind::Condvar,
            6 => Kind::Semaphore,
            7 => Kind::Event,
            8 => Kind::Barrier,
            9 => Kind::Value,
            10 => Kind::Array,
            11 => Kind::AtomicValue,
            12 => Kind::Peers,
            13 => Kind::MsgQueue,
            0x1000 => Kind::External,
            _ => return None,
        })
    }
}

/// The element type a region was made for: its size, alignment and an
/// optional user tag (for example a hash of the type name) that tells apart
/// two types of the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ElemType {
    /// `size_of::<T>()`.
    pub size: u64,
    /// `align_of::<T>()`.
    pub align: u64,
    /// User tag; 0 when unused.
    pub tag: u64,
}

impl ElemType {
    /// The element type of `T`, untagged.
    pub const fn of<T>() -> Self {
        Self {
            size: size_of::<T>() as u64,
            align: align_of::<T>() as u64,
            tag: 0,
        }
    }

    /// The same type with `tag` set.
    #[must_use]
    pub const fn tagged(self, tag: u64) -> Self {
        Self { tag, ..self }
    }
}

/// The first 128 bytes of every region.
///
/// All fields are atomics: see the module docs for why.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct RegionHeader {
    magic: AtomicU64,
    version: AtomicU32,
    kind: AtomicU32,
    elem_size: AtomicU64,
    elem_align: AtomicU64,
    elem_tag: AtomicU64,
    capacity: AtomicU64,
    total_size: AtomicU64,
    /// Uninit (0), initializing (1), ready (2). A futex word: attachers sleep
    /// on it until the creator publishes.
    state: Futex,
    _reserved: u32,
    /// The inode of the creator's pid namespace; 0 if it could not be read.
    pid_ns: AtomicU64,
    /// The identity word of the process that claimed the region (written
    /// right after the claim, before the body): lets an attacher tell a
    /// creator still building from one that died mid-init. 0: not known
    /// (not yet written, or a region of a build before this field).
    creator: AtomicU64,
}

#[cfg(not(multiproc_loom))]
assert_eq_size!(RegionHeader, [u8; REGION_ALIGN]);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(RegionHeader, state), 56);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(RegionHeader, pid_ns), 64);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(RegionHeader, creator), 72);
static_assertions::const_assert_eq!(align_of::<RegionHeader>(), REGION_ALIGN);

impl RegionHeader {
    /// Under loom the header's atomics are objects that `create` constructs.
    #[cfg(multiproc_loom)]
    fn new_uninit() -> Self {
        Self {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            kind: AtomicU32::new(0),
            elem_size: AtomicU64::new(0),
            elem_align: AtomicU64::new(0),
            elem_tag: AtomicU64::new(0),
            capacity: AtomicU64::new(0),
            total_size: AtomicU64::new(0),
            state: Futex::new(STATE_UNINIT),
            _reserved: 0,
            pid_ns: AtomicU64::new(0),
            creator: AtomicU64::new(0),
        }
    }

    /// The kind recorded in the header (`None` if unknown).
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_u32(self.kind.load(Ordering::Relaxed))
    }

    /// The capacity recorded in the header.
    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// The element type recorded in the header.
    pub fn elem_type(&self) -> ElemType {
        ElemType {
            size: self.elem_size.load(Ordering::Relaxed),
            align: self.elem_align.load(Ordering::Relaxed),
            tag: self.elem_tag.load(Ordering::Relaxed),
        }
    }

    /// Total bytes the structure occupies, header included.
    pub fn total_size(&self) -> u64 {
        self.total_size.load(Ordering::Relaxed)
    }

    /// The inode number of the creator's pid namespace, if it was known.
    pub fn creator_pid_namespace(&self) -> Option<u64> {
        match self.pid_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(ns),
        }
    }

    /// Whether the creator has published the region.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == STATE_READY
    }

    /// Waits until the creator has published the region, at most until
    /// `deadline` (`None`: not at all): spins briefly, then sleeps on the
    /// state word (woken by the publish) in naps of 10 ms, checking
    /// [`check_creator`](Self::check_creator) before each nap and before
    /// giving up.
    ///
    /// # Errors
    ///
    /// [`AttachError::NotReady`] once the deadline has passed,
    /// [`AttachError::CreatorDied`], [`AttachError::CorruptState`].
    pub fn wait_ready(&self, deadline: Option<Deadline>) -> Result<(), AttachError> {
        wait_ready(self, deadline)
    }

    /// Right after the claim: who is building the region, and in which pid
    /// namespace, for [`check_creator`](Self::check_creator).
    fn record_creator(&self) {
        self.pid_ns
            .store(crate::sync::pid_namespace().unwrap_or(0), Ordering::Relaxed);
        // Release: pairs with the Acquire in `check_creator` (the
        // namespace above is read with the word).
        self.creator
            .store(crate::sync::current_identity(), Ordering::Release);
    }

    /// [`AttachError::CreatorDied`] if the region is still being
    /// initialized and the process that claimed it no longer runs (it died
    /// between the claim and the publish, so the region will never be
    /// ready); `Ok` otherwise: ready, not claimed yet, or a creator that
    /// runs, is not known yet, or lives in another pid namespace (whose
    /// pids mean nothing here). Reads `/proc` once when there is a
    /// creator to check: for the slow path of a wait.
    ///
    /// # Errors
    ///
    /// [`AttachError::CreatorDied`], as above.
    pub fn check_creator(&self) -> Result<(), AttachError> {
        if self.state.load(Ordering::Acquire) != STATE_INITIALIZING {
            return Ok(());
        }
        // Acquire: pairs with the creator's Release store of the word, so
        // its namespace (stored before) is seen with it.
        let word = self.creator.load(Ordering::Acquire);
        if word == 0 {
            return Ok(());
        }
        let ns = self.pid_ns.load(Ordering::Relaxed);
        if ns != 0 && crate::sync::pid_namespace().is_some_and(|ours| ours != ns) {
            return Ok(());
        }
        if crate::sync::identity_alive(word) {
            return Ok(());
        }
        // Look again: a creator that published and then exited is not a
        // creator that died mid-init. Its publish happened before its
        // death, which happened before the liveness check above saw it.
        if self.state.load(Ordering::Acquire) != STATE_INITIALIZING {
            return Ok(());
        }
        Err(AttachError::CreatorDied {
            pid: crate::identity::Identity::from_word(word).map_or(0, |id| id.pid()),
        })
    }
}

/// A piece of memory that may be shared with other processes, in which one
/// structure of this crate is built or found.
///
/// It is a pointer and a length with a lifetime: `Copy`, `Send` and `Sync`
/// like a shared reference, because all access to the memory goes through
/// atomics and through slot protocols that hand out exclusive access.
#[derive(Clone, Copy)]
pub struct Region<'a> {
    ptr: NonNull<u8>,
    len: usize,
    /// The creator promised that every byte is zero ([`Region::assume_zeroed`]):
    /// structures whose initial elements are all-zero skip writing them.
    zeroed: bool,
    _memory: PhantomData<&'a [u8]>,
}

// SAFETY: a Region is a borrowed view of memory that is only read and written
// through atomics, futexes and the slot protocols of this crate, which are
// designed for concurrent access from many processes (hence many threads).
unsafe impl Send for Region<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for Region<'_> {}

impl fmt::Debug for Region<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("zeroed", &self.zeroed)
            .finish()
    }
}

impl<'a> Region<'a> {
    /// A region over memory this process owns exclusively for `'a`.
    ///
    /// Useful for tests and for structures shared between threads. The slice
    /// must be 128-byte aligned for `create`/`attach` to accept it.
    pub fn from_mut_slice(mem: &'a mut [u8]) -> Self {
        Self {
            // SAFETY: a slice pointer is never null.
            ptr: unsafe { NonNull::new_unchecked(mem.as_mut_ptr()) },
            len: mem.len(),
            zeroed: false,
            _memory: PhantomData,
        }
    }

    /// A region over `len` bytes at `ptr`, typically a shared mapping.
    ///
    /// # Safety
    ///
    /// - `ptr` is valid for reads and writes of `len` bytes for all of `'a`
    ///   (the mapping stays mapped, with at least that size, while any
    ///   structure built on this region is in use).
    /// - Within this process, the memory is accessed only through this
    ///   crate's structures for `'a` (no `&mut` to it exists). Other
    ///   processes may write anything to it: that is what attach validation
    ///   and the structures' bounds checks are for.
    pub unsafe fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> Self {
        Self {
            ptr,
            len,
            zeroed: false,
            _memory: PhantomData,
        }
    }

    /// The same region, marked as holding only zero bytes: a structure
    /// created in it then writes only its header and body, and leaves the
    /// elements whose initial state is all-zero (the slots of the rings)
    /// untouched, so that the pages behind them are not made resident until
    /// they are used. A freshly created shared memory segment is zero-filled
    /// by the kernel; memory of any other origin is not known to be, and
    /// its structures write every element.
    ///
    /// # Safety
    ///
    /// Every byte of the region is zero, and stays so until a structure is
    /// created in it (or in a part of it taken with
    /// [`split_off`](Self::split_off)). A structure created over bytes that
    /// are not zero starts in whatever state those bytes encode: still
    /// memory-safe (every element is valid for every bit pattern), but not
    /// the empty structure `create` promises.
    #[must_use]
    pub unsafe fn assume_zeroed(mut self) -> Self {
        self.zeroed = true;
        self
    }

    /// Whether the region was marked with [`assume_zeroed`](Self::assume_zeroed).
    pub fn is_zeroed(&self) -> bool {
        self.zeroed
    }

    /// The part of the region from `offset` on (`None` if `offset` is past
    /// its end), keeping the [`assume_zeroed`](Self::assume_zeroed) mark.
    pub fn split_off(self, offset: usize) -> Option<Self> {
        if offset > self.len {
            return None;
        }
        Some(Self {
            // SAFETY: offset <= len: inside the region or one past its end,
            // and the region's pointer is non-null.
            ptr: unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(offset)) },
            len: self.len - offset,
            zeroed: self.zeroed,
            _memory: PhantomData,
        })
    }

    /// Start of the region.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The header, if the region is large and aligned enough to hold one.
    ///
    /// Reading the header of foreign memory is always sound: all its fields
    /// are atomics, valid for every bit pattern.
    pub fn header(&self) -> Result<&'a RegionHeader, AttachError> {
        self.check_fits(size_of::<RegionHeader>())?;
        // SAFETY: the region is aligned to 128 and holds at least a header's
        // bytes (checked above); every bit pattern is a valid RegionHeader
        // (all atomics); the memory lives for 'a (Region's contract).
        Ok(unsafe { &*self.ptr.as_ptr().cast::<RegionHeader>() })
    }

    fn check_fits(&self, needed: usize) -> Result<(), AttachError> {
        if self.ptr.as_ptr() as usize % REGION_ALIGN != 0 {
            return Err(AttachError::Misaligned {
                required: REGION_ALIGN,
            });
        }
        if self.len < needed {
            return Err(AttachError::TooSmall {
                needed: needed as u64,
                available: self.len as u64,
            });
        }
        Ok(())
    }
}

/// Marks a type that may be placed in shared memory and read back from
/// memory any other process wrote.
///
/// # Safety
///
/// An implementing type:
/// - is `#[repr(C)]` (or `repr(transparent)` over such a type);
/// - holds no pointers or references, only offsets and integers;
/// - is valid for every bit pattern and has no invariant that a wrong value
///   could turn into undefined behaviour: it is built from the `sync`
///   facade's atomics and futexes, integers, and `UnsafeCell<T>` of
///   `T: bytemuck::Pod`, and arrays of these;
/// - has an alignment of at most [`REGION_ALIGN`], and its size and
///   alignment are pinned with `static_assertions` where it is defined.
pub unsafe trait ShmSafe: Sized {}

// SAFETY: integers are valid for every bit pattern and hold no pointers.
unsafe impl ShmSafe for u8 {}
// SAFETY: as for u8.
unsafe impl ShmSafe for u64 {}

/// Byte offsets of a region's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Offset of the body (always 128).
    pub(crate) body: usize,
    /// Offset of the element array.
    pub(crate) array: usize,
    /// Total size, header included.
    pub(crate) total: usize,
}

const fn align_up(v: usize, align: usize) -> Option<usize> {
    match v.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}

impl Layout {
    /// The layout of a region with body `B` and `count` elements `E`, or
    /// `None` if it overflows the address space.
    pub(crate) fn of<B, E>(count: u64) -> Option<Layout> {
        let body = size_of::<RegionHeader>();
        debug_assert!(align_of::<B>() <= REGION_ALIGN && align_of::<E>() <= REGION_ALIGN);
        let array = align_up(body.checked_add(size_of::<B>())?, align_of::<E>().max(8))?;
        let count = usize::try_from(count).ok()?;
        let bytes = count.checked_mul(size_of::<E>())?;
        let total = align_up(array.checked_add(bytes)?, 8)?;
        if total > isize::MAX as usize {
            return None;
        }
        Some(Layout { body, array, total })
    }
}

/// What a region's creator asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) kind: Kind,
    pub(crate) elem: ElemType,
    pub(crate) capacity: u64,
    /// Number of array elements the capacity implies.
    pub(crate) count: u64,
}

/// The typed parts of a region: its header, body and element array.
#[derive(Debug)]
pub(crate) struct Parts<'a, B, E> {
    pub(crate) header: &'a RegionHeader,
    pub(crate) body: &'a B,
    pub(crate) array: NonNull<E>,
    pub(crate) count: usize,
}

impl<B, E> Clone for Parts<'_, B, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B, E> Copy for Parts<'_, B, E> {}

impl<'a, B: ShmSafe, E: ShmSafe> Parts<'a, B, E> {
    /// The element at `i`, which the caller has bounds-checked or masked.
    #[inline]
    pub(crate) fn elem(&self, i: usize) -> &'a E {
        debug_assert!(i < self.count);
        assert!(i < self.count, "index out of bounds");
        // SAFETY: `i < count` and the array holds `count` initialised elements
        // for 'a (checked by create/open); E is valid for every bit pattern.
        unsafe { &*self.array.as_ptr().add(i) }
    }

    /// The element at `i` without a bounds check.
    ///
    /// # Safety
    ///
    /// `i < self.count`. Never call it with an index read from shared memory
    /// that was not masked or checked first.
    #[inline]
    pub(crate) unsafe fn elem_unchecked(&self, i: usize) -> &'a E {
        debug_assert!(i < self.count);
        // SAFETY: the caller guarantees i < count; see `elem`.
        unsafe { &*self.array.as_ptr().add(i) }
    }

    /// Builds a structure in `region`: claims it, writes the body and every
    /// element, fills the header and publishes it.
    pub(crate) fn create(
        region: Region<'a>,
        spec: Spec,
        body: impl FnOnce() -> B,
        elem: impl FnMut(usize) -> E,
    ) -> Result<Self, InitError> {
        Self::create_in(region, spec, body, elem, false)
    }

    /// As [`create`](Self::create), for elements whose initial value
    /// `elem(i)` is the all-zero bit pattern for every `i`: in a region
    /// marked [`Region::assume_zeroed`] they are not written at all (nor
    /// their pages touched). Under loom, whose atomics are objects that must
    /// be constructed, they always are.
    pub(crate) fn create_zeroed_elems(
        region: Region<'a>,
        spec: Spec,
        body: impl FnOnce() -> B,
        elem: impl FnMut(usize) -> E,
    ) -> Result<Self, InitError> {
        let skip = region.zeroed && cfg!(not(multiproc_loom));
        Self::create_in(region, spec, body, elem, skip)
    }

    fn create_in(
        region: Region<'a>,
        spec: Spec,
        body: impl FnOnce() -> B,
        mut elem: impl FnMut(usize) -> E,
        skip_elems: bool,
    ) -> Result<Self, InitError> {
        let layout = Layout::of::<B, E>(spec.count).ok_or(InitError::CapacityOverflow {
            capacity: spec.capacity,
        })?;
        if region.ptr.as_ptr() as usize % REGION_ALIGN != 0 {
            return Err(InitError::Misaligned {
                required: REGION_ALIGN,
            });
        }
        if region.len < layout.total {
            return Err(InitError::TooSmall {
                needed: layout.total as u64,
                available: region.len as u64,
            });
        }
        let base = region.ptr.as_ptr();
        let header_ptr = base.cast::<RegionHeader>();
        // Under loom the atomics are objects that must be constructed before
        // use; in a real build zeroed memory already is an uninit header.
        #[cfg(multiproc_loom)]
        if !crate::sync::loom_header_is_prebuilt() {
            // SAFETY: the region holds a header's bytes, aligned (checked
            // above), and nothing else in this model uses them yet.
            unsafe { header_ptr.write(RegionHeader::new_uninit()) };
        }
        // SAFETY: as above; every bit pattern is a valid header.
        let header = unsafe { &*header_ptr };
        header
            .state
            .compare_exchange(
                STATE_UNINIT,
                STATE_INITIALIZING,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .map_err(|_| InitError::AlreadyInitialized)?;
        header.record_creator();

        // SAFETY: layout.body + size_of::<B>() <= layout.total <= len, and the
        // offset is a multiple of 128 >= align_of::<B>(); we own the region
        // exclusively while it is in the initializing state.
        let body_ptr = unsafe { base.add(layout.body) }.cast::<B>();
        // SAFETY: as above.
        unsafe { body_ptr.write(body()) };
        // SAFETY: array offset is aligned for E and array + count * size_of E
        // <= total <= len (Layout::of); exclusive during initializing.
        let array = unsafe { base.add(layout.array) }.cast::<E>();
        let count = spec.count as usize;
        if !skip_elems {
            for i in 0..count {
                // SAFETY: i < count, see above.
                unsafe { array.add(i).write(elem(i)) };
            }
        }

        header.magic.store(MAGIC, Ordering::Relaxed);
        header.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        header.kind.store(spec.kind as u32, Ordering::Relaxed);
        header.elem_size.store(spec.elem.size, Ordering::Relaxed);
        header.elem_align.store(spec.elem.align, Ordering::Relaxed);
        header.elem_tag.store(spec.elem.tag, Ordering::Relaxed);
        header.capacity.store(spec.capacity, Ordering::Relaxed);
        header
            .total_size
            .store(layout.total as u64, Ordering::Relaxed);
        // Release: pairs with the Acquire load of `state` in `open`, which
        // then sees the body, the elements and every header field.
        header.state.store(STATE_READY, Ordering::Release);
        header.state.wake_all();

        Ok(Parts {
            header,
            // SAFETY: written above, lives in the region for 'a.
            body: unsafe { &*body_ptr },
            // SAFETY: derived from the non-null region pointer.
            array: unsafe { NonNull::new_unchecked(array) },
            count,
        })
    }

    /// Finds a structure in `region` and validates its header against the
    /// expected kind and element type. `count_for` maps the capacity read
    /// from the header to the number of elements, or `None` if the capacity
    /// is invalid for this kind.
    pub(crate) fn open(
        region: Region<'a>,
        kind: Kind,
        elem: ElemType,
        count_for: impl Fn(u64) -> Option<u64>,
        deadline: Option<Deadline>,
    ) -> Result<Self, AttachError> {
        let header = region.header()?;
        wait_ready(header, deadline)?;

        let magic = header.magic.load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(AttachError::BadMagic { found: magic });
        }
        let version = header.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(AttachError::VersionMismatch {
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        check_pid_namespace(header)?;
        let found_kind = header.kind.load(Ordering::Relaxed);
        if found_kind != kind as u32 {
            return Err(AttachError::KindMismatch {
                found: found_kind,
                expected: kind,
            });
        }
        let found_elem = header.elem_type();
        if found_elem != elem {
            return Err(AttachError::TypeMismatch {
                found: found_elem,
                expected: elem,
            });
        }
        let capacity = header.capacity();
        let count = count_for(capacity).ok_or(AttachError::CorruptCapacity { capacity })?;
        let layout = Layout::of::<B, E>(count).ok_or(AttachError::CorruptCapacity { capacity })?;
        if header.total_size() != layout.total as u64 {
            return Err(AttachError::CorruptCapacity { capacity });
        }
        region.check_fits(layout.total)?;
        let base = region.ptr.as_ptr();
        Ok(Parts {
            header,
            // SAFETY: the layout fits the region (checked); the body offset is
            // aligned; B is ShmSafe, so every bit pattern is a valid B.
            body: unsafe { &*base.add(layout.body).cast::<B>() },
            // SAFETY: inside the region, aligned for E (Layout::of).
            array: unsafe { NonNull::new_unchecked(base.add(layout.array).cast::<E>()) },
            count: count as usize,
        })
    }
}

/// Refuses a region made in another pid namespace than this process's
/// (both known): the pids in it would name other processes here.
pub fn check_pid_namespace(header: &RegionHeader) -> Result<(), AttachError> {
    match (header.creator_pid_namespace(), crate::sync::pid_namespace()) {
        (Some(creator), Some(ours)) if creator != ours => {
            Err(AttachError::ForeignPidNamespace { creator, ours })
        }
        _ => Ok(()),
    }
}

/// Waits until the creator has published the header (see
/// [`RegionHeader::wait_ready`]).
fn wait_ready(header: &RegionHeader, deadline: Option<Deadline>) -> Result<(), AttachError> {
    let mut spins = 0u32;
    loop {
        let s = header.state.load(Ordering::Acquire);
        match s {
            STATE_READY => return Ok(()),
            STATE_UNINIT | STATE_INITIALIZING => {}
            other => return Err(AttachError::CorruptState { found: other }),
        }
        // No waiting (none asked, or the deadline has passed): a creator
        // that died mid-init is told apart from one still at work.
        match deadline.filter(|d| !d.has_passed()) {
            None => {
                header.check_creator()?;
                return Err(AttachError::NotReady);
            }
            Some(d) => {
                // No spins under loom: its scheduler would let the creator
                // finish during them and never explore the sleep (and its
                // wake-up).
                if spins < 64 && cfg!(not(multiproc_loom)) {
                    spins += 1;
                    spin_loop();
                } else {
                    // Short naps: the creator may be another process that
                    // never wakes us (it died), so never sleep past `d`.
                    // Once per nap (a `/proc` read): a creator that died
                    // mid-init never publishes; say so rather than wait
                    // out the deadline.
                    header.check_creator()?;
                    let nap = Deadline::after(Duration::from_millis(10)).min(Some(d));
                    header.state.wait(s, Some(nap));
                }
            }
        }
    }
}

/// Why a structure could not be created in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitError {
    /// The region is smaller than the structure needs.
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The region does not start on a `required`-byte boundary.
    Misaligned {
        /// The alignment needed.
        required: usize,
    },
    /// The region was already initialised (or is being initialised).
    AlreadyInitialized,
    /// The capacity is not valid for this structure (zero, or not what its
    /// docs allow).
    InvalidCapacity {
        /// The capacity asked for.
        capacity: u64,
    },
    /// The capacity makes the layout overflow the address space.
    CapacityOverflow {
        /// The capacity asked for.
        capacity: u64,
    },
    /// The element type cannot be stored by this structure.
    UnsupportedType,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::TooSmall { needed, available } => write!(
                f,
                "region too small: {needed} bytes needed, {available} available"
            ),
            InitError::Misaligned { required } => {
                write!(f, "region not aligned to {required} bytes")
            }
            InitError::AlreadyInitialized => f.write_str("region already initialized"),
            InitError::InvalidCapacity { capacity } => write!(f, "invalid capacity {capacity}"),
            InitError::CapacityOverflow { capacity } => {
                write!(f, "capacity {capacity} overflows the address space")
            }
            InitError::UnsupportedType => f.write_str("element type not supported here"),
        }
    }
}

impl core::error::Error for InitError {}

/// Why a region could not be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The memory is smaller than the header or the layout it describes.
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The memory does not start on a `required`-byte boundary.
    Misaligned {
        /// The alignment needed.
        required: usize,
    },
    /// The first word is not [`MAGIC`]: not a multiproc region.
    BadMagic {
        /// What was found.
        found: u64,
    },
    /// Made by a build with another layout version.
    VersionMismatch {
        /// Version in the header.
        found: u32,
        /// This build's version.
        expected: u32,
    },
    /// Holds another kind of structure.
    KindMismatch {
        /// Raw kind in the header.
        found: u32,
        /// The kind asked for.
        expected: Kind,
    },
    /// Made for another element type.
    TypeMismatch {
        /// Element type in the header.
        found: ElemType,
        /// The element type asked for.
        expected: ElemType,
    },
    /// The capacity or size in the header is impossible for this kind.
    CorruptCapacity {
        /// Capacity in the header.
        capacity: u64,
    },
    /// The init state word holds no valid state.
    CorruptState {
        /// What was found.
        found: u32,
    },
    /// The creator has not published the region (in time).
    NotReady,
    /// The process that claimed the region died before publishing it: it
    /// will never be ready (remove and create it again).
    CreatorDied {
        /// The dead creator's pid (0 if the header's record was invalid).
        pid: u32,
    },
    /// Made by a process in another pid namespace: the pids that locks,
    /// roles and peer tables record there name other processes here, so
    /// sharing it would break death detection (see the module docs).
    ForeignPidNamespace {
        /// The inode of the creator's pid namespace.
        creator: u64,
        /// The inode of this process's.
        ours: u64,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::TooSmall { needed, available } => write!(
                f,
                "region too small: {needed} bytes needed, {available} available"
            ),
            AttachError::Misaligned { required } => {
                write!(f, "region not aligned to {required} bytes")
            }
            AttachError::BadMagic { found } => {
                write!(f, "not a multiproc region (magic {found:#018x})")
            }
            AttachError::VersionMismatch { found, expected } => write!(
                f,
                "region has layout version {found}, this build uses {expected}"
            ),
            AttachError::KindMismatch { found, expected } => match Kind::from_u32(*found) {
                Some(k) => write!(f, "region holds a {k:?}, not a {expected:?}"),
                None => write!(f, "region holds unknown kind {found}, not a {expected:?}"),
            },
            AttachError::TypeMismatch { found, expected } => write!(
                f,
                "region element type is size {} align {} tag {:#x}, expected size {} align {} tag {:#x}",
                found.size, found.align, found.tag, expected.size, expected.align, expected.tag
            ),
            AttachError::CorruptCapacity { capacity } => {
                write!(f, "corrupt region: impossible capacity {capacity}")
            }
            AttachError::CorruptState { found } => {
                write!(f, "corrupt region: init state {found}")
            }
            AttachError::NotReady => f.write_str("region not initialized in time"),
            AttachError::CreatorDied { pid } => write!(
                f,
                "the creator of the region (pid {pid}) died before initializing it"
            ),
            AttachError::ForeignPidNamespace { creator, ours } => write!(
                f,
                "region made in another pid namespace (pid:[{creator}], this process is in pid:[{ours}])"
            ),
        }
    }
}

impl core::error::Error for AttachError {}

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom_init;
