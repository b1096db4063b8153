//! A bounded single-producer single-consumer ring of `T: Pod` in a shared
//! region: the one-way pipe between two processes.
//!
//! One process (or thread) pushes, one pops; each side is a handle
//! ([`Producer`], [`Consumer`]) obtained by claiming a role word in the
//! region, so the uniqueness the borrow checker cannot see across processes
//! is enforced in shared memory. Values are copied in and out, or written and
//! read in place through [`WriteSlot`]/[`ReadSlot`] guards (zero-copy).
//!
//! # Examples
//!
//! ```
//! use multiproc_core::region::Region;
//! use multiproc_core::spsc::{PopError, SpscRing};
//!
//! #[repr(C, align(128))]
//! struct Mem([u8; 4096]);
//! let mut mem = Box::new(Mem([0; 4096]));
//! let region = Region::from_mut_slice(&mut mem.0);
//!
//! let ring = SpscRing::<u64>::create(region, 8).unwrap();
//! // Another process would call `SpscRing::<u64>::attach(region)`.
//! let (mut tx, mut rx) = ring.split().unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(move || {
//!         for i in 0..1000u64 {
//!             tx.push(i).unwrap(); // blocks while the ring is full
//!         }
//!         // Dropping `tx` closes the producer role.
//!     });
//!     let mut sum = 0;
//!     loop {
//!         match rx.pop() {
//!             Ok(v) => sum += v,
//!             Err(PopError::Disconnected) => break, // drained and closed
//!             Err(e) => panic!("{e}"),
//!         }
//!     }
//!     assert_eq!(sum, 999 * 1000 / 2);
//! });
//! ```
//!
//! # Layout
//!
//! ```text
//!  0         128          256          384               512
//!  +---------+------------+------------+-----------------+-----------------------+
//!  | header  | tail: u64  | head: u64  | not_empty bell  | slot 0 | slot 1 | ... |
//!  | (kind   | written by | written by |   ec, asleep    | T      | T      |     |
//!  |  Spsc)  | producer   | consumer   | not_full bell   |        |        |     |
//!  |         |            |            | producer role   |        |        |     |
//!  |         |            |            | consumer role   |        |        |     |
//!  +---------+------------+------------+-----------------+-----------------------+
//!   tail and head lines: each written by one side only; the control line:
//!   read by both on every operation, written only around sleeps and role
//!   changes (ec = EventCount)
//! ```
//!
//! `tail` and `head` are free-running 64-bit counters: the value pushed as
//! the `n`-th (from 0) lives in slot `n % capacity`. Any capacity from 1 to
//! 2^62 works; neither side divides on its fast path, each keeps its own
//! slot cursor and wraps it with a compare.
//!
//! | `tail - head` | ring | producer may write | consumer may read |
//! |---|---|---|---|
//! | `0` | empty | slot `tail % cap` | nothing |
//! | `1..cap` | partly full | slot `tail % cap` | slot `head % cap` |
//! | `cap` | full | nothing | slot `head % cap` |
//! | `> cap` (wrapping) | corrupt: reported as `Corrupt`, nothing is read or written | | |
//!
//! # Speed
//!
//! Each handle keeps a local copy of its own index (it is the only writer)
//! and a cached copy of the other side's, refreshed only when the cache says
//! full (producer) or empty (consumer). An uncontended push is a slot write,
//! one `Release` store of `tail` and one load of the consumer's `asleep`
//! flag, in a line nobody writes while nobody sleeps: no fence and no
//! `lock`ed instruction, as in rtrb. [`Producer::push_slice`] and
//! [`Consumer::pop_slice`] move a batch with one store and one flag check.
//!
//! # Blocking
//!
//! `push`/`pop` spin briefly ([`Spin`], settable per handle), then sleep on
//! a shared futex in naps of at most 20 ms (the liveness slice). The other
//! end wakes a sleeper at once after it publishes, and pays for that only
//! while someone sleeps: an uncontended push or pop makes no system call.
//! No value is ever lost and no wait outlasts its deadline. After each
//! nap the sleeper also checks whether its peer is still alive (a peer
//! killed with `SIGKILL` wakes nobody). The wake-up protocol and why the
//! ringer needs no fence are in the `bell` module (`core/src/bell.rs`).
//!
//! # Disconnection
//!
//! Dropping a [`Producer`] releases the producer role and wakes the consumer.
//! The consumer then pops what was published and gets
//! [`PopError::Disconnected`]. A producer killed without dropping its handle
//! is noticed by a blocked consumer within about 20 ms (the role word names a
//! process that no longer runs); `try_pop` checks only the cheap "released"
//! flag, and only when the ring is empty. The same holds the other way round:
//! a producer whose consumer is gone gets [`PushError::Disconnected`] once the
//! ring is full. A role released or abandoned can be claimed again by a new
//! handle ([`Claimed::FromDead`] if its holder died), which resumes where the
//! old one stopped.
//!
//! # Delivery when a process dies
//!
//! - A producer killed before publishing a value leaves no trace: a slot
//!   written but not committed is simply overwritten by the next producer.
//! - A consumer killed after reading a value but before publishing its new
//!   `head` (inside `pop`, or while it held a [`ReadSlot`]) did not free the
//!   slot. A new consumer (claiming the role `FromDead`) reads that value
//!   again: delivery is **at least once** across consumer deaths, exactly
//!   once otherwise.
//!
//! # Untrusted memory
//!
//! A handle never reads its own index back from shared memory after it is
//! created, and never indexes a slot with a value read from shared memory:
//! slot cursors are local and always below the capacity. The other side's
//! index is validated on every refresh (`tail - head <= capacity`); a
//! violation is reported as [`PushError::Corrupt`]/[`PopError::Corrupt`].
//! A hostile process that writes plausible but wrong indices can make a
//! handle read stale slots or overwrite unread ones, but never reach outside
//! the region.

use core::fmt;
use core::marker::PhantomData;
use core::mem::align_of;

use bytemuck::Pod;

use crate::region::{
    AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec, REGION_ALIGN,
};
use crate::ring::IndexLine;
pub use crate::ring::{PopError, PushError};

pub use consumer::{Consumer, ReadSlot};
pub use producer::{Producer, WriteSlot};

use crate::bell::Bell;

mod consumer;
mod producer;
use crate::role::{Claimed, RoleTaken, RoleWord};
use crate::sync::{Ordering, UnsafeCell};
use crate::time::Deadline;
use crate::wait::Spin;

/// The largest capacity the rings accept (2^62 slots): far beyond any
/// memory, and it keeps every index sum below 2^63.
pub(crate) const MAX_CAPACITY: u64 = 1 << 62;

/// Whether `capacity` is one the rings accept.
#[inline]
pub(crate) fn valid_capacity(capacity: u64) -> bool {
    (1..=MAX_CAPACITY).contains(&capacity)
}

/// Why a push cannot proceed, before a value is attached to the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Full,
    Disconnected,
    Corrupt,
}

impl Stop {
    #[inline]
    fn with<T>(self, v: T) -> PushError<T> {
        match self {
            Stop::Full => PushError::Full(v),
            Stop::Disconnected => PushError::Disconnected(v),
            Stop::Corrupt => PushError::Corrupt(v),
        }
    }
}

// ---------------------------------------------------------------------------
// Shared layout
// ---------------------------------------------------------------------------

/// The line both sides read on every operation (the bells' request words)
/// and write only around sleeps and role changes.
#[repr(C, align(128))]
#[derive(Debug)]
struct Control {
    /// The consumer sleeps here while the ring is empty; the producer rings.
    not_empty: Bell,
    /// The producer sleeps here while the ring is full; the consumer rings.
    not_full: Bell,
    /// Who holds the producer handle.
    producer: RoleWord,
    /// Who holds the consumer handle.
    consumer: RoleWord,
}

/// The body of an SPSC region (after the region header).
#[repr(C)]
#[derive(Debug)]
struct SpscBody {
    /// Number of values ever pushed; written by the producer only.
    tail: IndexLine,
    /// Number of values ever popped; written by the consumer only.
    head: IndexLine,
    control: Control,
}

impl SpscBody {
    fn new() -> Self {
        Self {
            tail: IndexLine::new(0),
            head: IndexLine::new(0),
            control: Control {
                not_empty: Bell::new(),
                not_full: Bell::new(),
                producer: RoleWord::new(),
                consumer: RoleWord::new(),
            },
        }
    }
}

#[cfg(not(multiproc_loom))]
mod layout_pins {
    use super::*;
    use core::mem::offset_of;
    static_assertions::assert_eq_size!(Control, [u8; 128]);
    static_assertions::assert_eq_size!(SpscBody, [u8; 384]);
    static_assertions::const_assert_eq!(offset_of!(Control, producer), 24);
    static_assertions::const_assert_eq!(offset_of!(Control, consumer), 32);
    static_assertions::const_assert_eq!(offset_of!(SpscBody, tail), 0);
    static_assertions::const_assert_eq!(offset_of!(SpscBody, head), 128);
    static_assertions::const_assert_eq!(offset_of!(SpscBody, control), 256);
    static_assertions::assert_eq_size!(Slot<u64>, u64);
    static_assertions::assert_eq_align!(Slot<u64>, u64);
    static_assertions::assert_eq_size!(Slot<[u8; 3]>, [u8; 3]);
}
static_assertions::const_assert_eq!(align_of::<SpscBody>(), 128);

// SAFETY: repr(C) of Bells and RoleWords, all ShmSafe (atomics only, valid
// for every bit pattern, no pointers); size and field offsets pinned above.
unsafe impl ShmSafe for Control {}
// SAFETY: as for Control.
unsafe impl ShmSafe for SpscBody {}

/// One element of the ring: a cell that exactly one side owns at a time
/// (the producer while `tail - head < capacity` says it is free, then the
/// consumer once `tail` has published it).
#[repr(transparent)]
struct Slot<T>(UnsafeCell<T>);

// SAFETY: repr(transparent) over UnsafeCell<T> (itself transparent over T in
// real builds), and T: Pod is valid for every bit pattern and holds no
// references; bytemuck's Pod also rules out padding. Alignment is checked
// against REGION_ALIGN in `create`/`attach`.
unsafe impl<T: Pod> ShmSafe for Slot<T> {}

// ---------------------------------------------------------------------------
// The ring view
// ---------------------------------------------------------------------------

/// A view of an SPSC ring in a region: cheap to copy, shareable between
/// threads. Obtain the one [`Producer`] and the one [`Consumer`] from it.
///
/// See the [module docs](self) for an example, the layout and the guarantees.
pub struct SpscRing<'a, T> {
    parts: Parts<'a, SpscBody, Slot<T>>,
    capacity: u64,
}

impl<T> Clone for SpscRing<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SpscRing<'_, T> {}

// SAFETY: the view only reaches shared memory through atomics and role
// words; slot access needs a Producer/Consumer, whose uniqueness the role
// words enforce. Values of T move between threads, hence T: Send.
unsafe impl<T: Send> Send for SpscRing<'_, T> {}
// SAFETY: as for Send: every `&self` method is an atomic operation.
unsafe impl<T: Send> Sync for SpscRing<'_, T> {}

// The view's methods are single atomic operations: an unwind cannot leave
// the ring half-updated.
impl<T> core::panic::UnwindSafe for SpscRing<'_, T> {}
impl<T> core::panic::RefUnwindSafe for SpscRing<'_, T> {}

impl<T> fmt::Debug for SpscRing<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.parts.body;
        f.debug_struct("SpscRing")
            .field("capacity", &self.capacity)
            .field("tail", &b.tail.pos.load(Ordering::Relaxed))
            .field("head", &b.head.pos.load(Ordering::Relaxed))
            .field("producer", &b.control.producer.raw())
            .field("consumer", &b.control.consumer.raw())
            .finish()
    }
}

impl<'a, T: Pod> SpscRing<'a, T> {
    /// Bytes a ring of `capacity` values of `T` occupies, header included;
    /// `None` if the capacity is invalid (0 or above 2^62), overflows the
    /// address space, or `T` is aligned to more than 128 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_core::spsc::SpscRing;
    /// assert_eq!(SpscRing::<u64>::memory_size(16), Some(512 + 16 * 8));
    /// assert_eq!(SpscRing::<u64>::memory_size(0), None);
    /// ```
    pub fn memory_size(capacity: u64) -> Option<usize> {
        if !valid_capacity(capacity) || align_of::<T>() > REGION_ALIGN {
            return None;
        }
        Layout::of::<SpscBody, Slot<T>>(capacity).map(|l| l.total)
    }

    /// Builds an empty ring of `capacity` values in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] for 0 or more than 2^62,
    /// [`InitError::UnsupportedType`] if `T` is aligned to more than 128
    /// bytes, and the region errors of [`InitError`] (too small, misaligned,
    /// already initialised).
    pub fn create(region: Region<'a>, capacity: u64) -> Result<Self, InitError> {
        Self::create_tagged(region, capacity, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` for the element
    /// type (for example a hash of its name) that [`attach_tagged`](Self::attach_tagged)
    /// must match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, capacity: u64, tag: u64) -> Result<Self, InitError> {
        if !valid_capacity(capacity) {
            return Err(InitError::InvalidCapacity { capacity });
        }
        if align_of::<T>() > REGION_ALIGN {
            return Err(InitError::UnsupportedType);
        }
        let spec = Spec {
            kind: Kind::Spsc,
            elem: ElemType::of::<T>().tagged(tag),
            capacity,
            count: capacity,
        };
        // All-zero slots: not written at all in a region known to be zeroed.
        let parts = Parts::create_zeroed_elems(region, spec, SpscBody::new, |_| {
            Slot(UnsafeCell::new(T::zeroed()))
        })?;
        Ok(Self { parts, capacity })
    }

    crate::region::attach_fns!('a, "a ring");

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let expected = ElemType::of::<T>().tagged(tag);
        if align_of::<T>() > REGION_ALIGN {
            // No ring of this type can exist: `create` refuses it.
            return Err(AttachError::TypeMismatch {
                found: region.header()?.elem_type(),
                expected,
            });
        }
        let parts = Parts::open(
            region,
            Kind::Spsc,
            expected,
            |c| valid_capacity(c).then_some(c),
            deadline,
        )?;
        Ok(Self {
            parts,
            capacity: parts.count as u64,
        })
    }

    /// The number of slots.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The number of values in the ring at some moment during the call
    /// (either side may change it at once); clamped to `0..=capacity` if the
    /// shared indices are corrupt.
    pub fn len(&self) -> u64 {
        let b = self.parts.body;
        // Acquire (both): the snapshot is only advisory, but loading `head`
        // first makes `tail - head` non-negative for a correct ring.
        let head = b.head.pos.load(Ordering::Acquire);
        let tail = b.tail.pos.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head);
        if n > self.capacity {
            // Either the consumer moved on between the loads (the ring was
            // full) or the indices are corrupt.
            if tail < head {
                0
            } else {
                self.capacity
            }
        } else {
            n
        }
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`len`](Self::len) is the capacity.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity
    }

    /// Claims the producer role and returns its handle.
    ///
    /// # Errors
    ///
    /// [`RoleTaken`] if a live process (this one included) holds it. A role
    /// whose holder died is taken over ([`Producer::claimed`] tells).
    pub fn producer(&self) -> Result<Producer<'a, T>, RoleTaken> {
        let claimed = self.parts.body.control.producer.claim()?;
        Ok(self.producer_with(claimed))
    }

    /// Takes over the producer role that process `holder` handed on with
    /// [`Producer::hand_over`] (typically to this process through a token):
    /// the role moves without ever being free, so the consumer never sees
    /// the producer gone in between.
    ///
    /// Returns `None` unless the role is still recorded under `holder`:
    /// each hand-over is taken at most once.
    pub fn take_over_producer(&self, holder: u32) -> Option<Producer<'a, T>> {
        self.parts
            .body
            .control
            .producer
            .take_over(holder)
            .then(|| self.producer_with(Claimed::Fresh))
    }

    /// The producer handle, once its role is this process's.
    fn producer_with(&self, claimed: Claimed) -> Producer<'a, T> {
        let b = self.parts.body;
        b.control.not_full.reset();
        // Acquire: after the claim (itself Acquire, paired with the previous
        // holder's `release`), this is the last tail the previous producer
        // published, and the consumer's slot reads before `head` are done.
        let tail = b.tail.pos.load(Ordering::Acquire);
        let head = b.head.pos.load(Ordering::Acquire);
        let cached_head = if tail.wrapping_sub(head) > self.capacity {
            // Corrupt: pretend full so the first push re-checks and reports.
            tail.wrapping_sub(self.capacity)
        } else {
            head
        };
        Producer {
            ring: *self,
            tail,
            slot: (tail % self.capacity) as usize,
            cached_head,
            spin: Spin::DEFAULT,
            claimed,
            held: RoleWord::holder_here(),
            _not_sync: PhantomData,
        }
    }

    /// Claims the consumer role and returns its handle.
    ///
    /// # Errors
    ///
    /// [`RoleTaken`] if a live process (this one included) holds it. A role
    /// whose holder died is taken over ([`Consumer::claimed`] tells); see the
    /// module docs for what that means for a value it was reading.
    pub fn consumer(&self) -> Result<Consumer<'a, T>, RoleTaken> {
        let claimed = self.parts.body.control.consumer.claim()?;
        Ok(self.consumer_with(claimed))
    }

    /// Takes over the consumer role that process `holder` handed on with
    /// [`Consumer::hand_over`]; see
    /// [`take_over_producer`](Self::take_over_producer).
    pub fn take_over_consumer(&self, holder: u32) -> Option<Consumer<'a, T>> {
        self.parts
            .body
            .control
            .consumer
            .take_over(holder)
            .then(|| self.consumer_with(Claimed::Fresh))
    }

    /// Whether either role was handed on ([`Producer::hand_over`],
    /// [`Consumer::hand_over`]) and not taken over yet. A process that
    /// takes a role over and then finds none handed knows that no other
    /// hand-over of this ring is pending (the two loads and take-overs are
    /// sequentially consistent).
    pub fn in_hand_over(&self) -> bool {
        let c = &self.parts.body.control;
        c.producer.is_handed() || c.consumer.is_handed()
    }

    /// The state of the producer role's holder (a liveness check by pid
    /// plus start time when it is held: a few system calls). A role handed
    /// on and not yet taken over counts as held by the process that handed
    /// it on.
    pub fn producer_peer(&self) -> crate::role::Peer {
        self.parts.body.control.producer.peer()
    }

    /// The state of the consumer role's holder; see
    /// [`producer_peer`](Self::producer_peer).
    pub fn consumer_peer(&self) -> crate::role::Peer {
        self.parts.body.control.consumer.peer()
    }

    /// The consumer handle, once its role is this process's.
    fn consumer_with(&self, claimed: Claimed) -> Consumer<'a, T> {
        let b = self.parts.body;
        b.control.not_empty.reset();
        // Acquire: as in `producer`.
        let head = b.head.pos.load(Ordering::Acquire);
        let tail = b.tail.pos.load(Ordering::Acquire);
        let cached_tail = if tail.wrapping_sub(head) > self.capacity {
            // Corrupt: pretend empty so the first pop re-checks and reports.
            head
        } else {
            tail
        };
        Consumer {
            ring: *self,
            head,
            slot: (head % self.capacity) as usize,
            cached_tail,
            spin: Spin::DEFAULT,
            claimed,
            held: RoleWord::holder_here(),
            _not_sync: PhantomData,
        }
    }

    /// Claims both roles: the two ends for use within one process.
    ///
    /// # Errors
    ///
    /// [`RoleTaken`] if either role is held by a live process; then neither
    /// is claimed (unless another process claims the consumer role in the
    /// instant between the two claims, in which case the producer role taken
    /// here is released again).
    pub fn split(self) -> Result<(Producer<'a, T>, Consumer<'a, T>), RoleTaken> {
        let c = &self.parts.body.control;
        for role in [&c.producer, &c.consumer] {
            if let crate::role::Peer::Alive(pid) = role.peer() {
                return Err(RoleTaken { pid });
            }
        }
        let p = self.producer()?;
        let c = self.consumer()?;
        Ok((p, c))
    }

    #[inline]
    fn body(&self) -> &'a SpscBody {
        self.parts.body
    }

    /// The slot at cursor `i`.
    ///
    /// # Safety
    ///
    /// `i < capacity`: a handle's local cursor, never a value read from
    /// shared memory.
    #[inline]
    unsafe fn slot(&self, i: usize) -> &'a Slot<T> {
        // SAFETY: the caller guarantees i < capacity == parts.count.
        unsafe { self.parts.elem_unchecked(i) }
    }

    /// Copies `src` into the slots `start..start + src.len()`.
    ///
    /// # Safety
    ///
    /// `start + src.len() <= capacity`, and the caller (the producer) owns
    /// those slots: they are free per the published `head`.
    #[inline]
    unsafe fn copy_in(&self, start: usize, src: &[T]) {
        debug_assert!(start + src.len() <= self.parts.count);
        #[cfg(not(multiproc_loom))]
        // SAFETY: Slot<T> has T's layout (repr(transparent) down to T), the
        // range is inside the array (caller), the array pointer carries the
        // whole region's provenance, and nobody else accesses free slots.
        unsafe {
            core::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.parts.array.as_ptr().add(start).cast::<T>(),
                src.len(),
            );
        }
        #[cfg(multiproc_loom)]
        for (k, v) in src.iter().enumerate() {
            // SAFETY: as above, one slot at a time (tracked by loom).
            unsafe { self.slot(start + k) }
                .0
                .with_mut(|p| unsafe { p.write(*v) });
        }
    }

    /// Copies the slots `start..start + dst.len()` into `dst`.
    ///
    /// # Safety
    ///
    /// `start + dst.len() <= capacity`, and the caller (the consumer) owns
    /// those slots: they are published per the loaded `tail`.
    #[inline]
    unsafe fn copy_out(&self, start: usize, dst: &mut [T]) {
        debug_assert!(start + dst.len() <= self.parts.count);
        #[cfg(not(multiproc_loom))]
        // SAFETY: as in `copy_in`, reading published slots.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.parts.array.as_ptr().add(start).cast::<T>(),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        #[cfg(multiproc_loom)]
        for (k, v) in dst.iter_mut().enumerate() {
            // SAFETY: as above, one slot at a time (tracked by loom).
            *v = unsafe { self.slot(start + k) }
                .0
                .with(|p| unsafe { p.read() });
        }
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;

#[cfg(all(test, multiproc_loom))]
mod loom_dead_peer;
