//! A bounded multi-producer multi-consumer queue of variable-size byte
//! messages in a shared region: what the std layer's `message_channel` and
//! `object_channel` (serde values) stand on.
//!
//! [`MsgQueue`] is a `Copy` view that every process and thread uses through
//! `&self`; there are no roles. Each message is 0 to `max_message` bytes
//! (fixed when the queue is made), copied in and out
//! ([`try_send`](MsgQueue::try_send),
//! [`try_recv_into`](MsgQueue::try_recv_into)) or written and read in place
//! through guards ([`try_send_ref`](MsgQueue::try_send_ref) and
//! [`MsgWriter::commit`], [`try_recv_ref`](MsgQueue::try_recv_ref)).
//!
//! # Examples
//!
//! ```
//! use multiproc_core::msgqueue::MsgQueue;
//! use multiproc_core::region::Region;
//!
//! #[repr(C, align(128))]
//! struct Mem([u8; 8192]);
//! let mut mem = Box::new(Mem([0; 8192]));
//! assert!(MsgQueue::memory_size(16, 100).unwrap() <= 8192);
//! let q = MsgQueue::create(Region::from_mut_slice(&mut mem.0), 16, 100).unwrap();
//! // Another process would call `MsgQueue::attach(region)`.
//!
//! let total = std::thread::scope(|s| {
//!     let consumer = s.spawn(move || {
//!         let mut buf = [0u8; 100];
//!         let mut bytes = 0;
//!         // Receives block while empty; after `close`, they drain and stop.
//!         while let Ok(n) = q.recv_into(&mut buf) {
//!             assert!(buf[..n].iter().all(|&b| b == n as u8));
//!             bytes += n;
//!         }
//!         bytes
//!     });
//!     let producers: Vec<_> = (0..2)
//!         .map(|_| s.spawn(move || (0..=100u8).for_each(|n| q.send(&[n; 100][..n as usize]).unwrap())))
//!         .collect();
//!     producers.into_iter().for_each(|h| h.join().unwrap());
//!     q.close();
//!     consumer.join().unwrap()
//! });
//! assert_eq!(total, 2 * 100 * 101 / 2);
//! ```
//!
//! # Layout
//!
//! ```text
//!  0        128          256          384            512        640
//!  +--------+------------+------------+--------------+----------+----------------+---------------------------+
//!  | header | tail: u64  | head: u64  | not_empty ec | config   | Slot 0, 1, ... | data 0 | data 1 | ...      |
//!  | (kind  | (a hint)   | (a hint)   | not_full ec  | max_msg  | seq: u64       | stride | stride |          |
//!  | Msg-   |            |            | sleepers     | stride   | owner: u64     | bytes  | bytes  |          |
//!  | Queue) |            |            | closed       |          | len: u64, pad  |        |        |          |
//!  +--------+------------+------------+--------------+----------+----------------+---------------------------+
//!                                                                 32 B a slot     64-aligned, `stride` bytes a slot
//! ```
//!
//! The first three lines after the header are an MPMC ring's
//! ([`crate::mpmc`]): the same indices, the same eventcounts and sleeper
//! counts. The slot array holds, per slot, the `seq` and `owner` words of
//! [`crate::mpmc`] and the message's length; the message's bytes sit in a
//! data area after the slot array, `stride` bytes a slot (`max_message`
//! rounded up to 8). Keeping the bytes apart from the slot words keeps
//! every shared word a typed atomic (so loom checks the same layout) and
//! the data area's size a multiple of the slot count.
//!
//! # Protocol
//!
//! The protocol is [`crate::mpmc`]'s, slot for slot: the same `seq` states
//! (`F`, `W`, `V`, `S`, `R`), the same claims (a producer's or consumer's
//! CAS that takes the slot, with `tail` and `head` as hints), the same
//! closed flag (the control line's `closed` word, read by a producer after
//! its claim), the same blocking (spin, then sleep on an eventcount, woken only when someone
//! sleeps), and the same recovery of slots held by processes that died
//! (see "Processes killed in the middle of an operation" in
//! [`crate::mpmc`]). A producer writes the message's bytes and its length
//! into the slot it took (`W`) and publishes it with the Release store of
//! `V`; a consumer that took the slot (`R`, Acquire) reads the length and
//! the bytes, then frees it with a Release store. Creation writes the
//! header, body and config only: an all-zero slot is free for the first
//! lap, so a queue in freshly zeroed memory touches no slot page before
//! messages reach it.
//!
//! A producer killed while writing leaves a `W` slot that consumers step
//! over once its owner is found dead: a half-written message is never
//! read. A consumer killed while reading loses that message; producers
//! free its slot one lap later.
//!
//! # Untrusted memory
//!
//! Slot indices are reduced modulo the capacity of the validated header,
//! and the data area's bounds are computed at attach from the capacity and
//! `max_message` (checked against the region's length), then kept in this
//! process: a byte of shared memory can change neither. A message's
//! length is read from the slot and checked against the cached
//! `max_message` before any byte is touched; a longer one is reported as
//! [`RecvError::BadLength`] (and consumed). A `seq` word in a state no
//! slot can be in is [`SendError::Corrupt`]/[`RecvError::Corrupt`]; stamps
//! that contradict the hints are walked past for a bounded number of laps,
//! after which the queue looks full or empty. No state of
//! the memory makes a call read or write outside the region, or panic.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use crate::mpmc::blocking::{block_on, Miss, Poll, Stuck};
use crate::mpmc::slot::{clear_owner, free_stamp, full_stamp, valid_capacity, MpmcBody, SKIPPED};
use crate::region::{AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec};
use crate::sync::{AtomicU64, Ordering, UnsafeCell};
use crate::time::Deadline;
use crate::wait::Spin;

pub use error::{RecvError, SendError};

mod claim;
mod error;

#[cfg(all(test, multiproc_loom))]
mod loom;
#[cfg(all(test, not(multiproc_loom)))]
mod tests;

/// The largest `max_message`: 1 GiB.
pub const MAX_MESSAGE: u64 = 1 << 30;

/// Alignment of the data area in the region.
const DATA_ALIGN: usize = 64;

/// `max_message` rounded up to 8: the bytes of a slot in the data area.
#[inline]
const fn stride_for(max_message: u64) -> u64 {
    (max_message + 7) & !7
}

/// The queue's fixed parameters, written once by the creator (before the
/// region is published) and read by each attacher, which validates them.
#[repr(C, align(128))]
#[derive(Debug)]
struct Config {
    /// The largest message, in bytes (at most [`MAX_MESSAGE`]).
    max_message: AtomicU64,
    /// `max_message` rounded up to 8 (checked against it at attach).
    stride: AtomicU64,
    _reserved: [AtomicU64; 14],
}

/// The body of a message queue region (after the region header).
#[repr(C)]
#[derive(Debug)]
struct MsgBody {
    /// Indices and control line, as an MPMC ring's.
    ring: MpmcBody,
    config: Config,
}

/// One slot's words; its message bytes are in the data area.
#[repr(C)]
pub(crate) struct Slot {
    /// The [`crate::mpmc`] sequence word.
    seq: AtomicU64,
    /// The identity word of the process that owns the slot (`W` or `R`),
    /// as in [`crate::mpmc`]; 0 while nobody owns it.
    owner: AtomicU64,
    /// The message's length, written by the producer that owns the slot
    /// (`W`) and read by the consumer that owns it (`R`). Untrusted: checked
    /// against `max_message` before use.
    len: UnsafeCell<u64>,
    _reserved: u64,
}

#[cfg(not(multiproc_loom))]
mod layout_pins {
    use super::*;
    use core::mem::{align_of, offset_of};
    static_assertions::assert_eq_size!(Config, [u8; 128]);
    static_assertions::const_assert_eq!(offset_of!(Config, stride), 8);
    static_assertions::assert_eq_size!(MsgBody, [u8; 512]);
    static_assertions::const_assert_eq!(offset_of!(MsgBody, config), 384);
    static_assertions::const_assert_eq!(align_of::<MsgBody>(), 128);
    static_assertions::assert_eq_size!(Slot, [u64; 4]);
    static_assertions::const_assert_eq!(offset_of!(Slot, owner), 8);
    static_assertions::const_assert_eq!(offset_of!(Slot, len), 16);
    static_assertions::const_assert_eq!(align_of::<Slot>(), 8);
}

// SAFETY: repr(C) of atomics only (valid for every bit pattern, no
// pointers); size pinned above.
unsafe impl ShmSafe for Config {}
// SAFETY: repr(C) of an MpmcBody (atomics only) and a Config; size and
// offsets pinned above.
unsafe impl ShmSafe for MsgBody {}
// SAFETY: repr(C) of two atomic u64s, an UnsafeCell<u64> and a u64 (valid
// for every bit pattern, no references; a garbage `owner` at worst names a
// wrong process, a garbage `len` is checked before use); size and
// alignment pinned above.
unsafe impl ShmSafe for Slot {}

/// Byte offsets and sizes of a queue of `capacity` slots of `max_message`
/// bytes in a region: the [`Layout`] of its header, body and slot array,
/// then the data area.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Offset of the data area.
    data: usize,
    /// Bytes a slot takes in the data area.
    stride: usize,
    /// Total bytes, data area included.
    total: usize,
}

impl Geometry {
    fn of(capacity: u64, max_message: u64) -> Option<Geometry> {
        if !valid_capacity(capacity) || max_message > MAX_MESSAGE {
            return None;
        }
        let layout = Layout::of::<MsgBody, Slot>(capacity)?;
        let data = layout.total.checked_next_multiple_of(DATA_ALIGN)?;
        let stride = usize::try_from(stride_for(max_message)).ok()?;
        let bytes = usize::try_from(capacity).ok()?.checked_mul(stride)?;
        let total = data.checked_add(bytes)?;
        if total > isize::MAX as usize {
            return None;
        }
        Some(Geometry {
            data,
            stride,
            total,
        })
    }
}

/// A view of a message queue in a region: `Copy`, `Send` and `Sync`; any
/// number of threads and processes send and receive through `&self`.
///
/// Blocking calls spin per the view's [`Spin`] ([`Spin::DEFAULT`] unless
/// set with [`with_spin`](Self::with_spin)). See the [module docs](self)
/// for an example, the layout and the fault model.
#[derive(Clone, Copy)]
pub struct MsgQueue<'a> {
    parts: Parts<'a, MsgBody, Slot>,
    /// Start of the data area: `capacity * stride` bytes inside the region.
    data: NonNull<u8>,
    capacity: u64,
    /// `capacity - 1` when the capacity is a power of two, else `u64::MAX`.
    mask: u64,
    stride: usize,
    max_message: usize,
    spin: Spin,
    _region: PhantomData<&'a [u8]>,
}

// SAFETY: all shared state is reached through atomics; a slot's length and
// bytes are accessed only by the one thread that took the slot (its `seq`
// CAS) and only while `seq` says so. Bytes are plain data.
unsafe impl Send for MsgQueue<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for MsgQueue<'_> {}

// A panic while a guard is alive publishes its slot as skipped or frees
// it, so the queue stays consistent across an unwind.
impl core::panic::UnwindSafe for MsgQueue<'_> {}
impl core::panic::RefUnwindSafe for MsgQueue<'_> {}

impl fmt::Debug for MsgQueue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.parts.body.ring;
        f.debug_struct("MsgQueue")
            .field("capacity", &self.capacity)
            .field("max_message", &self.max_message)
            .field("tail", &b.tail.pos.load(Ordering::Relaxed))
            .field("head", &b.head.pos.load(Ordering::Relaxed))
            .field("closed", &(b.control.closed.load(Ordering::Relaxed) != 0))
            .finish()
    }
}

impl<'a> MsgQueue<'a> {
    /// Bytes a queue of `capacity` messages of at most `max_message` bytes
    /// occupies, header included; `None` if the capacity is invalid (0 or
    /// above 2^32), `max_message` is above [`MAX_MESSAGE`], or the size
    /// overflows the address space.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_core::msgqueue::MsgQueue;
    /// // 640 bytes of header and body, 32 bytes of words per slot, then
    /// // the data area (64-aligned), 104 bytes per slot (100 rounded up).
    /// assert_eq!(MsgQueue::memory_size(4, 100), Some(640 + 4 * 32 + 4 * 104));
    /// assert_eq!(MsgQueue::memory_size(0, 100), None);
    /// ```
    pub fn memory_size(capacity: u64, max_message: u64) -> Option<usize> {
        Geometry::of(capacity, max_message).map(|g| g.total)
    }

    /// Builds an empty, open queue of `capacity` messages of at most
    /// `max_message` bytes in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] for 0 or more than 2^32,
    /// [`InitError::UnsupportedType`] for a `max_message` above
    /// [`MAX_MESSAGE`], [`InitError::CapacityOverflow`] if the size
    /// overflows, and the region errors of [`InitError`].
    pub fn create(region: Region<'a>, capacity: u64, max_message: u64) -> Result<Self, InitError> {
        Self::create_tagged(region, capacity, max_message, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` (say, of the
    /// type encoded in the messages) that
    /// [`attach_tagged`](Self::attach_tagged) must match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(
        region: Region<'a>,
        capacity: u64,
        max_message: u64,
        tag: u64,
    ) -> Result<Self, InitError> {
        if !valid_capacity(capacity) {
            return Err(InitError::InvalidCapacity { capacity });
        }
        if max_message > MAX_MESSAGE {
            return Err(InitError::UnsupportedType);
        }
        let geo =
            Geometry::of(capacity, max_message).ok_or(InitError::CapacityOverflow { capacity })?;
        if region.len() < geo.total {
            return Err(InitError::TooSmall {
                needed: geo.total as u64,
                available: region.len() as u64,
            });
        }
        let spec = Spec {
            kind: Kind::MsgQueue,
            elem: ElemType::of::<Slot>().tagged(tag),
            capacity,
            count: capacity,
        };
        let body = || MsgBody {
            ring: MpmcBody::new(),
            config: Config {
                max_message: AtomicU64::new(max_message),
                stride: AtomicU64::new(stride_for(max_message)),
                _reserved: core::array::from_fn(|_| AtomicU64::new(0)),
            },
        };
        let base = region.as_ptr();
        // Every slot starts as `F(i)` (0 in the first lap), owned by nobody,
        // with length 0: an all-zero slot, not written at all in a region
        // known to be zeroed. The data area needs no initial value.
        let parts = Parts::create_zeroed_elems(region, spec, body, |_| Slot {
            seq: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            len: UnsafeCell::new(0),
            _reserved: 0,
        })?;
        Ok(Self::from_parts(parts, base, geo, max_message))
    }

    crate::region::attach_fns!('a, "a message queue");

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let base = region.as_ptr();
        let len = region.len();
        let parts = Parts::<MsgBody, Slot>::open(
            region,
            Kind::MsgQueue,
            ElemType::of::<Slot>().tagged(tag),
            |c| valid_capacity(c).then_some(c),
            deadline,
        )?;
        let capacity = parts.count as u64;
        let config = &parts.body.config;
        // Relaxed: `Parts::open` loaded the header state with Acquire, which
        // pairs with the creator's publishing Release after it wrote these.
        let max_message = config.max_message.load(Ordering::Relaxed);
        let stride = config.stride.load(Ordering::Relaxed);
        let geo = match Geometry::of(capacity, max_message) {
            Some(g) if g.stride as u64 == stride => g,
            _ => return Err(AttachError::CorruptCapacity { capacity }),
        };
        if len < geo.total {
            return Err(AttachError::TooSmall {
                needed: geo.total as u64,
                available: len as u64,
            });
        }
        Ok(Self::from_parts(parts, base, geo, max_message))
    }

    fn from_parts(
        parts: Parts<'a, MsgBody, Slot>,
        base: *mut u8,
        geo: Geometry,
        max_message: u64,
    ) -> Self {
        let capacity = parts.count as u64;
        // SAFETY: `geo.data <= geo.total <= region length` (checked by the
        // callers), so the pointer is inside (or one past) the region, whose
        // base is non-null.
        let data = unsafe { NonNull::new_unchecked(base.add(geo.data)) };
        Self {
            parts,
            data,
            capacity,
            mask: if capacity.is_power_of_two() {
                capacity - 1
            } else {
                u64::MAX
            },
            stride: geo.stride,
            max_message: max_message as usize,
            spin: Spin::DEFAULT,
            _region: PhantomData,
        }
    }

    /// A copy of this view whose blocking calls spin per `spin` before
    /// sleeping.
    #[must_use]
    pub fn with_spin(self, spin: Spin) -> Self {
        Self { spin, ..self }
    }

    /// The spin setting of this view.
    pub fn spin(&self) -> Spin {
        self.spin
    }

    /// The number of slots.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The largest message, in bytes.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The number of messages in the queue, approximately: the hints of
    /// the next send and receive positions (`tail` and `head`), read one
    /// after the other while others may move both, clamped to
    /// `0..=capacity`. It counts sends and receives in progress as done; a
    /// hint moved back by a stalled thread can make it off until the next
    /// send or receive moves that hint on.
    pub fn len(&self) -> u64 {
        let b = &self.parts.body.ring;
        // Relaxed: an advisory snapshot, no data is read on its strength.
        let head = b.head.pos.load(Ordering::Relaxed);
        let tail = b.tail.pos.load(Ordering::Relaxed);
        if tail <= head {
            0
        } else {
            (tail - head).min(self.capacity)
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

    /// Closes the queue: sends fail with `Disconnected` from now on,
    /// receives return what is left and then `Disconnected`. Wakes every
    /// sleeper. Closing twice is harmless; a queue cannot be reopened.
    pub fn close(&self) {
        let c = &self.parts.body.ring.control;
        // SeqCst: as in `MpmcRing::close`, ordered against every send's
        // claim and the drained test of receives (see
        // `mpmc::claim::closed_after_claim`): a send whose claim comes after
        // a receive's "closed and drained" sees the flag and fails.
        c.closed.store(1, Ordering::SeqCst);
        c.not_empty.notify_all();
        c.not_full.notify_all();
    }

    /// Whether [`close`](Self::close) was called (by any process).
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the store in `close` (SeqCst, so Release).
        self.parts.body.ring.control.closed.load(Ordering::Acquire) != 0
    }

    // -- sending -------------------------------------------------------------

    fn check_len(&self, len: usize) -> Result<(), SendError> {
        if len > self.max_message {
            return Err(SendError::TooLarge {
                len: len as u64,
                max: self.max_message as u64,
            });
        }
        Ok(())
    }

    /// Sends a copy of `msg` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `msg` is longer than
    /// [`max_message`](Self::max_message), [`SendError::Full`],
    /// [`SendError::Disconnected`] once the queue is closed,
    /// [`SendError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{msgqueue::{MsgQueue, SendError}, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 2048]);
    /// # let mut mem = Box::new(Mem([0; 2048]));
    /// let q = MsgQueue::create(Region::from_mut_slice(&mut mem.0), 1, 8).unwrap();
    /// assert_eq!(q.try_send(b"too long!"), Err(SendError::TooLarge { len: 9, max: 8 }));
    /// q.try_send(b"hi").unwrap();
    /// assert_eq!(q.try_send(b"x"), Err(SendError::Full));
    /// let mut buf = [0u8; 8];
    /// assert_eq!(q.try_recv_into(&mut buf), Ok(2));
    /// assert_eq!(&buf[..2], b"hi");
    /// ```
    #[inline]
    pub fn try_send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.check_len(msg.len())?;
        let (slot, pos) = self.claim_push(false).map_err(Miss::send_error)?;
        self.write_and_publish(slot, pos, msg);
        Ok(())
    }

    /// Sends a copy of `msg`, blocking while the queue is full.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send), except `Full`.
    #[inline]
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline(msg, None)
    }

    /// Sends a copy of `msg`, blocking at most `timeout` while the queue is
    /// full.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] if it stayed full until the timeout; else as
    /// [`try_send`](Self::try_send).
    #[inline]
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        match self.try_send(msg) {
            Err(SendError::Full) => self.send_slow(msg, Some(Deadline::after(timeout))),
            r => r,
        }
    }

    /// Sends a copy of `msg`, blocking while the queue is full until
    /// `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    #[inline]
    pub fn send_deadline(&self, msg: &[u8], deadline: Option<Deadline>) -> Result<(), SendError> {
        match self.try_send(msg) {
            Err(SendError::Full) => self.send_slow(msg, deadline),
            r => r,
        }
    }

    #[cold]
    fn send_slow(&self, msg: &[u8], deadline: Option<Deadline>) -> Result<(), SendError> {
        let (slot, pos) = self.claim_push_blocking(deadline)?;
        self.write_and_publish(slot, pos, msg);
        Ok(())
    }

    /// Copies `msg` (checked: at most `max_message` bytes) into the slot of
    /// `pos`, which this thread took, and publishes it.
    #[inline]
    fn write_and_publish(&self, slot: &'a Slot, pos: u64, msg: &[u8]) {
        debug_assert!(msg.len() <= self.max_message);
        let dst = self.data_ptr(pos);
        // SAFETY: the slot is ours (`W`, taken by the CAS in `take_push`,
        // whose Acquire pairs with the last consumer's freeing Release):
        // nobody else accesses its bytes until we publish. `dst` points to
        // `stride >= max_message >= msg.len()` bytes of the data area, which
        // `msg` (memory of this process) does not overlap.
        unsafe { core::ptr::copy_nonoverlapping(msg.as_ptr(), dst, msg.len()) };
        // SAFETY: as above, the slot's length is ours to write.
        slot.len.with_mut(|p| unsafe { *p = msg.len() as u64 });
        self.publish(slot, pos);
    }

    /// Takes a free slot and returns a guard that writes a message in place
    /// (zero-copy send), without blocking. [`MsgWriter::commit`] publishes
    /// it with its length; a guard dropped without a commit (by a panic,
    /// say) publishes the slot as skipped, and receivers step over it.
    ///
    /// The slot's bytes are stale: write the ones you send. Receivers that
    /// reach the slot wait for the guard: keep it short-lived. If the
    /// process is killed holding it, receivers step over the slot once they
    /// find its owner dead.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`], [`SendError::Disconnected`],
    /// [`SendError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{msgqueue::MsgQueue, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 2048]);
    /// # let mut mem = Box::new(Mem([0; 2048]));
    /// let q = MsgQueue::create(Region::from_mut_slice(&mut mem.0), 2, 64).unwrap();
    /// let mut w = q.try_send_ref().unwrap();
    /// assert_eq!(w.len(), 64); // room for the largest message
    /// w[..5].copy_from_slice(b"hello");
    /// w.commit(5).unwrap();
    /// let r = q.try_recv_ref().unwrap();
    /// assert_eq!(&*r, b"hello");
    /// ```
    pub fn try_send_ref(&self) -> Result<MsgWriter<'a>, SendError> {
        let (slot, pos) = self.claim_push(false).map_err(Miss::send_error)?;
        Ok(MsgWriter {
            queue: *self,
            slot,
            pos,
        })
    }

    /// As [`try_send_ref`](Self::try_send_ref), blocking while the queue is
    /// full until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_ref_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<MsgWriter<'a>, SendError> {
        let (slot, pos) = match self.claim_push(false) {
            Ok(claim) => claim,
            Err(Miss::Idle | Miss::InFlight(_)) => self.claim_push_blocking(deadline)?,
            Err(miss) => return Err(miss.send_error()),
        };
        Ok(MsgWriter {
            queue: *self,
            slot,
            pos,
        })
    }

    // -- receiving -----------------------------------------------------------

    /// Receives the oldest message into the front of `buf`, without
    /// blocking, and returns its length.
    ///
    /// # Errors
    ///
    /// [`RecvError::BufferTooSmall`] (checked first: nothing is taken) if
    /// `buf` is shorter than [`max_message`](Self::max_message);
    /// [`RecvError::Empty`] if there is nothing to receive (or the oldest
    /// message is still being written); [`RecvError::Disconnected`] if the
    /// queue is closed and drained; [`RecvError::BadLength`] or
    /// [`RecvError::Corrupt`] if the memory is corrupt.
    #[inline]
    pub fn try_recv_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.check_buf(buf)?;
        let (slot, pos) = self.claim_pop(false).map_err(Miss::recv_error)?;
        self.read_and_free(slot, pos, buf)
    }

    /// Receives the oldest message into `buf`, blocking while the queue is
    /// empty.
    ///
    /// # Errors
    ///
    /// As [`try_recv_into`](Self::try_recv_into), except `Empty`.
    #[inline]
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_into_deadline(buf, None)
    }

    /// Receives the oldest message into `buf`, blocking at most `timeout`
    /// while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`] if it stayed empty until the timeout; else as
    /// [`try_recv_into`](Self::try_recv_into).
    #[inline]
    pub fn recv_into_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        match self.try_recv_into(buf) {
            Err(RecvError::Empty) => self.recv_slow(buf, Some(Deadline::after(timeout))),
            r => r,
        }
    }

    /// Receives the oldest message into `buf`, blocking while the queue is
    /// empty until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`recv_into_timeout`](Self::recv_into_timeout).
    #[inline]
    pub fn recv_into_deadline(
        &self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<usize, RecvError> {
        match self.try_recv_into(buf) {
            Err(RecvError::Empty) => self.recv_slow(buf, deadline),
            r => r,
        }
    }

    #[cold]
    fn recv_slow(&self, buf: &mut [u8], deadline: Option<Deadline>) -> Result<usize, RecvError> {
        let (slot, pos) = self.claim_pop_blocking(deadline)?;
        self.read_and_free(slot, pos, buf)
    }

    fn check_buf(&self, buf: &[u8]) -> Result<(), RecvError> {
        if buf.len() < self.max_message {
            return Err(RecvError::BufferTooSmall {
                needed: self.max_message as u64,
            });
        }
        Ok(())
    }

    /// Reads the length of the message in the slot of `pos`, which this
    /// thread took (`R`), and checks it; frees the slot if it is corrupt.
    #[inline]
    fn message_len(&self, slot: &'a Slot, pos: u64) -> Result<usize, RecvError> {
        // SAFETY: the slot is ours (`R`, taken by a CAS whose Acquire pairs
        // with the producer's publishing Release): nobody writes it now.
        let len = slot.len.with(|p| unsafe { *p });
        if len > self.max_message as u64 {
            self.free_slot(slot, pos);
            return Err(RecvError::BadLength {
                len,
                max: self.max_message as u64,
            });
        }
        Ok(len as usize)
    }

    /// Copies the message of `pos` (whose slot this thread took) into `buf`
    /// (at least `max_message` bytes) and frees the slot.
    #[inline]
    fn read_and_free(&self, slot: &'a Slot, pos: u64, buf: &mut [u8]) -> Result<usize, RecvError> {
        let len = self.message_len(slot, pos)?;
        debug_assert!(buf.len() >= len);
        let len = len.min(buf.len());
        let src = self.data_ptr(pos);
        // SAFETY: the slot is ours (`R`, see `message_len`); `src` points to
        // `stride >= max_message >= len` bytes of the data area; `buf` has
        // `len` bytes (min above) in this process's memory, not the region's.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), len) };
        self.free_slot(slot, pos);
        Ok(len)
    }

    /// Takes the oldest message and returns a guard that reads it in place
    /// (zero-copy receive), without blocking; the slot is freed when the
    /// guard drops.
    ///
    /// Producers that reach the slot one lap later wait for the guard: keep
    /// it short-lived. If the process is killed holding it, the message is
    /// lost and producers free the slot once they find its owner dead.
    ///
    /// # Errors
    ///
    /// As [`try_recv_into`](Self::try_recv_into), without `BufferTooSmall`.
    pub fn try_recv_ref(&self) -> Result<MsgReader<'a>, RecvError> {
        let (slot, pos) = self.claim_pop(false).map_err(Miss::recv_error)?;
        self.reader(slot, pos)
    }

    /// As [`try_recv_ref`](Self::try_recv_ref), blocking while the queue is
    /// empty until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`recv_into_timeout`](Self::recv_into_timeout), without
    /// `BufferTooSmall`.
    pub fn recv_ref_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<MsgReader<'a>, RecvError> {
        let (slot, pos) = match self.claim_pop(false) {
            Ok(claim) => claim,
            Err(Miss::Idle | Miss::InFlight(_)) => self.claim_pop_blocking(deadline)?,
            Err(miss) => return Err(miss.recv_error()),
        };
        self.reader(slot, pos)
    }

    fn reader(&self, slot: &'a Slot, pos: u64) -> Result<MsgReader<'a>, RecvError> {
        let len = self.message_len(slot, pos)?;
        Ok(MsgReader {
            queue: *self,
            slot,
            pos,
            len,
        })
    }
}

/// A slot taken in a [`MsgQueue`] to write a message in place: dereferences
/// (mutably) to the slot's `max_message` bytes; [`commit`](Self::commit)
/// publishes the first `len` of them, and a drop without a commit publishes
/// the slot as skipped. Made by [`MsgQueue::try_send_ref`] and
/// [`MsgQueue::send_ref_deadline`].
///
/// Not `Send`: the slot is recorded as this process's, and the guard
/// stays in the thread that took it.
pub struct MsgWriter<'a> {
    queue: MsgQueue<'a>,
    slot: &'a Slot,
    pos: u64,
}

impl MsgWriter<'_> {
    /// Publishes the first `len` bytes as the message.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `len` exceeds `max_message`: then the
    /// slot is published as skipped, and nothing is sent.
    pub fn commit(self, len: usize) -> Result<(), SendError> {
        self.queue.check_len(len)?;
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: the slot is ours (`W`) until the publish below.
        this.slot.len.with_mut(|p| unsafe { *p = len as u64 });
        this.queue.publish(this.slot, this.pos);
        Ok(())
    }

    /// The position the message is sent at (positions count every send
    /// since the queue was made).
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl core::ops::Deref for MsgWriter<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the slot is ours (`W`, see `MsgQueue::write_and_publish`)
        // until `commit` or `drop` publishes it; its data is `stride >=
        // max_message` bytes inside the region, any bit pattern a valid u8;
        // the borrow cannot outlive the guard.
        unsafe {
            core::slice::from_raw_parts(self.queue.data_ptr(self.pos), self.queue.max_message)
        }
    }
}

impl core::ops::DerefMut for MsgWriter<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this borrow the only one.
        unsafe {
            core::slice::from_raw_parts_mut(self.queue.data_ptr(self.pos), self.queue.max_message)
        }
    }
}

impl Drop for MsgWriter<'_> {
    fn drop(&mut self) {
        self.queue.publish_skipped(self.slot, self.pos);
    }
}

impl fmt::Debug for MsgWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgWriter")
            .field("position", &self.pos)
            .field("max_message", &self.queue.max_message)
            .finish()
    }
}

/// A message taken from a [`MsgQueue`] and read in place: dereferences to
/// its bytes, and frees the slot when dropped. Made by
/// [`MsgQueue::try_recv_ref`] and [`MsgQueue::recv_ref_deadline`].
pub struct MsgReader<'a> {
    queue: MsgQueue<'a>,
    slot: &'a Slot,
    pos: u64,
    /// Checked against `max_message` when the slot was taken.
    len: usize,
}

impl MsgReader<'_> {
    /// The position the message was sent at.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl core::ops::Deref for MsgReader<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the slot is ours (`R`, taken by a CAS whose Acquire pairs
        // with the producer's publishing Release) until `drop` frees it;
        // `len <= max_message <= stride` bytes of its data lie inside the
        // region; the borrow cannot outlive the guard.
        unsafe { core::slice::from_raw_parts(self.queue.data_ptr(self.pos), self.len) }
    }
}

impl Drop for MsgReader<'_> {
    fn drop(&mut self) {
        self.queue.free_slot(self.slot, self.pos);
    }
}

impl fmt::Debug for MsgReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgReader")
            .field("position", &self.pos)
            .field("len", &self.len)
            .finish()
    }
}
