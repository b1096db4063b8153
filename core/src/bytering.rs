//! A single-producer single-consumer ring of variable-length byte frames.
//!
//! For messages of mixed size (a `Pipe`'s `send_bytes`, a queue of byte
//! messages up to a few MiB): each message is one *frame*, stored contiguously
//! so the receiver can hand out a `&[u8]` over it without copying, and the
//! sender can let the caller write a message in place
//! ([`FrameSender::try_reserve`]).
//!
//! # Layout
//!
//! ```text
//!  region offset
//!    0  +---------------------------------------------+
//!       | RegionHeader (kind ByteRing, elem u8,        |
//!       |               capacity = data bytes)         |
//!  128  +---------------------------------------------+
//!       | tail: u64   (written by the sender)          |  own 128-byte line
//!  256  +---------------------------------------------+
//!       | head: u64   (written by the receiver)        |  own 128-byte line
//!  384  +---------------------------------------------+
//!       | not_empty: EventCount, not_full: EventCount  |  own 128-byte line
//!  512  +---------------------------------------------+
//!       | producer: RoleWord, consumer: RoleWord,      |  cold line
//!       | max_frame: u64                               |
//!  640  +---------------------------------------------+
//!       | data: `capacity` bytes                       |
//!       +---------------------------------------------+
//! ```
//!
//! `head` and `tail` are byte positions that only grow (wrapping at 2^64,
//! which `capacity`, a power of two, divides); a position's offset in the
//! data is `pos & (capacity - 1)`. The bytes of `[head, tail)` are published
//! frames. Both are always multiples of 8.
//!
//! # Frames
//!
//! ```text
//!   offset o (8-aligned)
//!   +----------------+------------------------+---------+
//!   | len: u64 (LE)  | payload: len bytes     | padding |   8 + pad8(len) bytes
//!   +----------------+------------------------+---------+
//!
//!   a frame that does not fit before the end of the data:
//!   +---------------+ ........ +----------------+-------------+
//!   | frame at 0    |  ...     | WRAP (u64::MAX)| (skipped)   |
//!   +---------------+ ........ +----------------+-------------+
//!   0                          o                              capacity
//! ```
//!
//! A frame never crosses the end of the data. When the frame about to be
//! written does not fit in the `capacity - o` bytes left before the end, the
//! sender writes the [`WRAP`] marker at `o` and the frame at offset 0, and
//! publishes both at once: `tail` moves by `(capacity - o) + 8 + pad8(len)`.
//! A wrap marker therefore appears exactly where the next frame could not
//! fit, and a frame always follows it.
//!
//! # The `max_frame` rule
//!
//! `capacity` must be a power of two of at least [`MIN_CAPACITY`] (64) bytes,
//! and `max_frame <= capacity / 2 - 8` ([`ByteRing::max_frame_for`]). Then a
//! frame of any allowed length, `8 + pad8(len) <= capacity / 2` bytes, always
//! fits in an empty ring, whatever offset the ring is at: if it does not fit
//! before the end, then more than half the ring lies before the current
//! offset, and it fits at 0. So a 1 MiB message needs a 4 MiB ring
//! (`max_frame` up to 2 MiB - 8).
//!
//! # Roles and disconnection
//!
//! | producer role word | receiver, ring empty | receiver, frames left |
//! |---|---|---|
//! | never claimed or held by a live process | `Empty` (blocking calls wait) | frame |
//! | released (the [`FrameSender`] was dropped) | `Disconnected` | frame |
//! | held by a dead process | `Empty` from `try_*`; blocking calls notice within ~20 ms and return `Disconnected` | frame |
//!
//! The same holds for a sender whose receiver is gone, except that a sender
//! gets `Disconnected` as soon as the receiver role is released, even if
//! there is room. Fast paths never make a system call: only blocking waits
//! check the peer's liveness, every 20 ms of sleeping.
//!
//! # Untrusted memory
//!
//! `head`, `tail` and every frame header are read from memory that a dead or
//! hostile process may have scribbled on. The receiver validates, before it
//! touches a payload byte: positions are 8-aligned, `tail - head <=
//! capacity`, a length is at most `max_frame` (the value checked at attach,
//! cached in this process), the frame lies within `[head, tail)` and within
//! the data without crossing its end, and a wrap marker sits only where the
//! following frame could not have fitted. Any violation is a
//! [`RecvError::Corrupt`] naming the [`Corruption`]; it is sticky: the
//! receiver reports it on every later call (the ring cannot be repaired
//! while a sender may be writing). A sender that finds `head` impossible
//! treats the ring as full; it only ever writes inside the data.
//!
//! A corrupt ring never makes this process read or write out of bounds or
//! panic. What it cannot prevent: a hostile sender that rewrites a payload
//! while the receiver copies it, or while a [`FrameReader`] is alive, makes
//! the receiver see garbage bytes (every byte pattern is a valid `u8`).
//!
//! # Examples
//!
//! ```
//! use multiproc_core::bytering::ByteRing;
//! use multiproc_core::region::Region;
//!
//! #[repr(C, align(128))]
//! struct Mem([u8; 4096]);
//! let mut mem = Box::new(Mem([0; 4096]));
//! assert!(ByteRing::memory_size(1024).unwrap() <= 4096);
//! let region = Region::from_mut_slice(&mut mem.0);
//!
//! let ring = ByteRing::create(region, 1024, 256).unwrap();
//! let (mut tx, mut rx) = ring.split().unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(move || {
//!         for i in 0..100usize {
//!             tx.send(&vec![i as u8; i]).unwrap();
//!         }
//!     }); // dropping `tx` disconnects
//!     let mut buf = [0u8; 256];
//!     for i in 0..100usize {
//!         let n = rx.recv_into(&mut buf).unwrap();
//!         assert_eq!(&buf[..n], &vec![i as u8; i][..]);
//!     }
//!     assert!(rx.recv_into(&mut buf).is_err());
//! });
//! ```

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::time::Duration;

use crate::region::{AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec};
use crate::role::{Holder, RoleTaken, RoleWord};
use crate::sync::{AtomicU64, Ordering};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin};

/// The frame header value that means "no frame here: the next frame is at
/// offset 0".
pub const WRAP: u64 = u64::MAX;

/// Bytes of a frame header.
pub const HEADER_LEN: u64 = 8;

/// The smallest capacity a ring may have.
pub const MIN_CAPACITY: u64 = 64;

/// How long a blocked call sleeps before it checks the peer's liveness.
const LIVENESS_SLICE: Duration = Duration::from_millis(20);

/// Under loom, data bytes are tracked per 8-byte word by this many cells, so
/// rings of at most `8 * TRACK_WORDS` bytes are allowed there.
#[cfg(multiproc_loom)]
const TRACK_WORDS: usize = 32;

/// One field on its own 128-byte line.
#[repr(C, align(128))]
#[derive(Debug)]
struct Line<T>(T);

#[repr(C)]
#[derive(Debug)]
struct Events {
    /// Notified by the sender after each publish and when it leaves.
    not_empty: EventCount,
    /// Notified by the receiver after each release and when it leaves.
    not_full: EventCount,
}

#[repr(C)]
#[derive(Debug)]
struct Meta {
    producer: RoleWord,
    consumer: RoleWord,
    /// Largest payload, fixed at create.
    max_frame: AtomicU64,
}

/// The ring's body, right after the region header.
#[repr(C)]
#[derive(Debug)]
struct Body {
    /// Position after the last published frame. Written by the sender only.
    tail: Line<AtomicU64>,
    /// Position of the first unread frame. Written by the receiver only.
    head: Line<AtomicU64>,
    events: Line<Events>,
    meta: Line<Meta>,
    /// Loom only: one cell per data word, touched on every data access, so
    /// loom checks that the frame protocol orders them.
    #[cfg(multiproc_loom)]
    track: [crate::sync::UnsafeCell<()>; TRACK_WORDS],
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(Body, [u8; 512]);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(Meta, consumer), 8);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(Meta, max_frame), 16);
static_assertions::const_assert_eq!(core::mem::align_of::<Body>(), 128);

// SAFETY: repr(C) of 128-aligned lines holding atomics, eventcounts and role
// words (themselves ShmSafe): valid for every bit pattern, no pointers;
// alignment 128 and size 512 pinned above. The loom-only tracking cells
// never live in real shared memory.
unsafe impl ShmSafe for Body {}

impl Body {
    fn new(max_frame: u64) -> Self {
        Self {
            tail: Line(AtomicU64::new(0)),
            head: Line(AtomicU64::new(0)),
            events: Line(Events {
                not_empty: EventCount::new(),
                not_full: EventCount::new(),
            }),
            meta: Line(Meta {
                producer: RoleWord::new(),
                consumer: RoleWord::new(),
                max_frame: AtomicU64::new(max_frame),
            }),
            #[cfg(multiproc_loom)]
            track: core::array::from_fn(|_| crate::sync::UnsafeCell::new(())),
        }
    }
}

/// Whether `capacity` is allowed: a power of two, at least [`MIN_CAPACITY`].
fn valid_capacity(capacity: u64) -> bool {
    capacity.is_power_of_two() && capacity >= MIN_CAPACITY
}

/// `len` rounded up to a multiple of 8. `len <= max_frame < 2^63`.
#[inline]
fn pad8(len: u64) -> u64 {
    (len + 7) & !7
}

/// Bytes a frame with a payload of `len` occupies.
#[inline]
fn frame_size(len: u64) -> u64 {
    HEADER_LEN + pad8(len)
}

/// A shared view of a byte-frame ring in a region.
///
/// It is `Copy`; the right to send or receive is a [`FrameSender`] or
/// [`FrameReceiver`], each handed out once at a time across all processes
/// through role words in the ring.
#[derive(Clone, Copy)]
pub struct ByteRing<'a> {
    parts: Parts<'a, Body, u8>,
    /// Data bytes; a power of two (validated at create or attach, cached).
    capacity: u64,
    /// Largest payload (validated at create or attach, cached).
    max_frame: u64,
}

// SAFETY: the view only reaches shared memory through atomics, role words and
// eventcounts, and reaches data bytes only through a FrameSender or
// FrameReceiver, of which the role words allow one each.
unsafe impl Send for ByteRing<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for ByteRing<'_> {}

impl fmt::Debug for ByteRing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.body();
        // Relaxed: a diagnostic snapshot, ordered with nothing.
        f.debug_struct("ByteRing")
            .field("capacity", &self.capacity)
            .field("max_frame", &self.max_frame)
            .field("head", &b.head.0.load(Ordering::Relaxed))
            .field("tail", &b.tail.0.load(Ordering::Relaxed))
            .finish()
    }
}

impl<'a> ByteRing<'a> {
    /// Bytes of memory a ring of `capacity` data bytes needs, header
    /// included, or `None` if `capacity` is not allowed (see
    /// [`create`](Self::create)) or overflows the address space.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_core::bytering::ByteRing;
    /// assert_eq!(ByteRing::memory_size(4 << 20), Some(640 + (4 << 20)));
    /// assert_eq!(ByteRing::memory_size(100), None);
    /// ```
    pub fn memory_size(capacity: u64) -> Option<usize> {
        if !valid_capacity(capacity) {
            return None;
        }
        Layout::of::<Body, u8>(capacity).map(|l| l.total)
    }

    /// The largest `max_frame` a ring of `capacity` bytes accepts:
    /// `capacity / 2 - 8`, or `None` if the capacity is not allowed.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_core::bytering::ByteRing;
    /// // A 1 MiB message fits a 4 MiB ring.
    /// assert!(ByteRing::max_frame_for(4 << 20).unwrap() >= 1 << 20);
    /// assert_eq!(ByteRing::max_frame_for(64), Some(24));
    /// ```
    pub fn max_frame_for(capacity: u64) -> Option<u64> {
        valid_capacity(capacity).then(|| capacity / 2 - HEADER_LEN)
    }

    /// Builds an empty ring of `capacity` data bytes for payloads of at most
    /// `max_frame` bytes in `region`.
    ///
    /// # Errors
    ///
    /// - [`InitError::InvalidCapacity`] if `capacity` is not a power of two of
    ///   at least 64, or if it is too small for `max_frame`
    ///   (`max_frame > capacity / 2 - 8`, see the module docs).
    /// - [`InitError::TooSmall`], [`InitError::Misaligned`],
    ///   [`InitError::AlreadyInitialized`], [`InitError::CapacityOverflow`]
    ///   as for every region.
    pub fn create(region: Region<'a>, capacity: u64, max_frame: u64) -> Result<Self, InitError> {
        match Self::max_frame_for(capacity) {
            Some(limit) if max_frame <= limit => {}
            _ => return Err(InitError::InvalidCapacity { capacity }),
        }
        #[cfg(multiproc_loom)]
        if capacity > 8 * TRACK_WORDS as u64 {
            return Err(InitError::InvalidCapacity { capacity });
        }
        let spec = Spec {
            kind: Kind::ByteRing,
            elem: ElemType::of::<u8>(),
            capacity,
            count: capacity,
        };
        // Zero bytes: not written at all in a region known to be zeroed.
        let parts = Parts::create_zeroed_elems(region, spec, || Body::new(max_frame), |_| 0u8)?;
        Ok(Self {
            parts,
            capacity,
            max_frame,
        })
    }

    /// Finds the ring another process (or thread) created in `region`,
    /// without waiting.
    ///
    /// # Errors
    ///
    /// Every [`AttachError`] of a region; [`AttachError::NotReady`] if the
    /// creator has not finished; [`AttachError::CorruptCapacity`] also when
    /// the recorded `max_frame` breaks the rule of [`create`](Self::create).
    pub fn attach(region: Region<'a>) -> Result<Self, AttachError> {
        Self::open(region, None)
    }

    /// As [`attach`](Self::attach), but waits up to `timeout` for the
    /// creator to publish the ring.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach); [`AttachError::NotReady`] once the
    /// timeout passes.
    pub fn attach_timeout(region: Region<'a>, timeout: Duration) -> Result<Self, AttachError> {
        Self::open(region, Some(Deadline::after(timeout)))
    }

    fn open(region: Region<'a>, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let parts = Parts::<Body, u8>::open(
            region,
            Kind::ByteRing,
            ElemType::of::<u8>(),
            |c| valid_capacity(c).then_some(c),
            deadline,
        )?;
        let capacity = parts.count as u64;
        // Relaxed: `Parts::open` loaded the header state with Acquire, which
        // orders the creator's write of the body before this load.
        let max_frame = parts.body.meta.0.max_frame.load(Ordering::Relaxed);
        match Self::max_frame_for(capacity) {
            Some(limit) if max_frame <= limit => {}
            _ => return Err(AttachError::CorruptCapacity { capacity }),
        }
        Ok(Self {
            parts,
            capacity,
            max_frame,
        })
    }

    /// Data bytes in the ring.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The largest payload a frame may carry.
    pub fn max_frame(&self) -> u64 {
        self.max_frame
    }

    /// Claims the sending role.
    ///
    /// A role whose holder died can be claimed again; the new sender goes on
    /// from the last published frame (a frame the dead one was writing is
    /// lost).
    ///
    /// # Errors
    ///
    /// [`RoleTaken`] if a live process (this one included) holds it.
    pub fn sender(&self) -> Result<FrameSender<'a>, RoleTaken> {
        let b = self.body();
        b.meta.0.producer.claim()?;
        // Acquire: pairs with the previous sender's Release store of `tail`
        // (its frames are complete); the claim's Acquire already covers a
        // sender that released the role cleanly.
        let tail = b.tail.0.load(Ordering::Acquire);
        // Acquire: pairs with the Release store of `head` in
        // `FrameReceiver::release_frame`: the receiver is done with the bytes
        // before it.
        let head = b.head.0.load(Ordering::Acquire);
        Ok(FrameSender {
            ring: *self,
            tail,
            cached_head: head,
            spin: Spin::DEFAULT,
            held: RoleWord::holder_here(),
            _not_sync: PhantomData,
        })
    }

    /// Claims the receiving role.
    ///
    /// A role whose holder died can be claimed again; the new receiver
    /// starts at the first frame not released (a frame the dead one was
    /// reading is delivered again).
    ///
    /// # Errors
    ///
    /// [`RoleTaken`] if a live process (this one included) holds it.
    pub fn receiver(&self) -> Result<FrameReceiver<'a>, RoleTaken> {
        let b = self.body();
        b.meta.0.consumer.claim()?;
        // Relaxed: only receivers write `head`; the claim's Acquire orders a
        // previous receiver's last store before this load.
        let head = b.head.0.load(Ordering::Relaxed);
        Ok(FrameReceiver {
            ring: *self,
            head,
            cached_tail: head,
            spin: Spin::DEFAULT,
            corrupt: None,
            held: RoleWord::holder_here(),
            _not_sync: PhantomData,
        })
    }

    /// Claims both roles, for a ring used between threads or handed to a
    /// child process after `fork`.
    ///
    /// # Errors
    ///
    /// [`RoleTaken`] if a live process holds either role. Nothing is claimed
    /// then, unless the receiver role was taken between the check and the
    /// claim, in which case the sender role is released again (which a live
    /// receiver sees as a closed sender).
    pub fn split(self) -> Result<(FrameSender<'a>, FrameReceiver<'a>), RoleTaken> {
        if let crate::role::Peer::Alive(pid) = self.body().meta.0.consumer.peer() {
            return Err(RoleTaken { pid });
        }
        let tx = self.sender()?;
        let rx = self.receiver()?;
        Ok((tx, rx))
    }

    #[inline]
    fn body(&self) -> &'a Body {
        self.parts.body
    }

    #[inline]
    fn data(&self) -> *mut u8 {
        self.parts.array.as_ptr()
    }

    /// Panics unless `[off, off + len)` lies in the data. Every caller passes
    /// a range it computed from its own position or validated; the check
    /// turns a bug into a panic instead of an out-of-bounds access.
    #[inline]
    fn check_range(&self, off: u64, len: u64) {
        let end = off.checked_add(len);
        assert!(
            end.is_some_and(|e| e <= self.capacity),
            "bytering: range outside the data"
        );
    }

    /// Reads the 8-byte word at `off` (masked into the data, 8-aligned).
    #[inline]
    fn read_word(&self, off: u64) -> u64 {
        let off = off & (self.capacity - HEADER_LEN);
        self.track(off, HEADER_LEN, false);
        // SAFETY: `capacity` is a power of two >= 64, so the mask keeps `off`
        // 8-aligned and `off + 8 <= capacity`; the data is 8-aligned (region
        // layout). Volatile: read exactly once, so the value validated is the
        // value used even if a hostile peer rewrites it meanwhile.
        let v = unsafe { ptr::read_volatile(self.data().add(off as usize).cast::<u64>()) };
        u64::from_le(v)
    }

    /// Writes the 8-byte word at `off` (masked into the data, 8-aligned).
    #[inline]
    fn write_word(&self, off: u64, v: u64) {
        let off = off & (self.capacity - HEADER_LEN);
        self.track(off, HEADER_LEN, true);
        // SAFETY: in bounds and aligned as in `read_word`; the caller holds
        // the sender role and the bytes lie after `tail`, where the receiver
        // does not read.
        unsafe { self.data().add(off as usize).cast::<u64>().write(v.to_le()) };
    }

    /// Copies `src` into the data at `off`.
    #[inline]
    fn copy_in(&self, off: u64, src: &[u8]) {
        self.check_range(off, src.len() as u64);
        self.track(off, src.len() as u64, true);
        // SAFETY: in bounds (checked); unpublished bytes owned by the sender.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), self.data().add(off as usize), src.len()) };
    }

    /// Copies `dst.len()` bytes at `off` out of the data.
    #[inline]
    fn copy_out(&self, off: u64, dst: &mut [u8]) {
        self.check_range(off, dst.len() as u64);
        self.track(off, dst.len() as u64, false);
        // SAFETY: in bounds (checked); a validated, published frame that the
        // sender does not write until the receiver releases it (a hostile
        // sender can only make these bytes garbage, see the module docs).
        unsafe {
            ptr::copy_nonoverlapping(self.data().add(off as usize), dst.as_mut_ptr(), dst.len())
        };
    }

    /// Loom only: records an access to the data words covering
    /// `[off, off + len)`, so loom checks it is ordered after the other
    /// side's accesses. Nothing in a normal build.
    #[inline]
    fn track(&self, off: u64, len: u64, write: bool) {
        #[cfg(multiproc_loom)]
        {
            let first = off / 8;
            let end = (off + len).div_ceil(8);
            for w in first..end {
                let cell = &self.body().track[w as usize % TRACK_WORDS];
                if write {
                    cell.with_mut(|_| ());
                } else {
                    cell.with(|_| ());
                }
            }
        }
        #[cfg(not(multiproc_loom))]
        let _ = (off, len, write);
    }

    /// Validates the frame at `head` given the published `tail`.
    fn parse_frame(&self, head: u64, tail: u64) -> Result<Frame, Corruption> {
        let cap = self.capacity;
        if (head | tail) & 7 != 0 {
            return Err(Corruption::Misaligned { head, tail });
        }
        let avail = tail.wrapping_sub(head);
        if avail > cap {
            return Err(Corruption::Distance { head, tail });
        }
        let off = head & (cap - 1);
        let mut at = off;
        let mut skip = 0;
        let mut len = self.read_word(off);
        if len == WRAP {
            skip = cap - off;
            if skip + HEADER_LEN > avail {
                return Err(Corruption::PastTail {
                    pos: head,
                    end: head.wrapping_add(skip + HEADER_LEN),
                    tail,
                });
            }
            at = 0;
            len = self.read_word(0);
        }
        let pos = head.wrapping_add(skip);
        if len > self.max_frame {
            return Err(Corruption::LengthTooLarge {
                pos,
                len,
                max: self.max_frame,
            });
        }
        let size = frame_size(len);
        if skip == 0 {
            if size > cap - off {
                return Err(Corruption::CrossesEnd { pos, len });
            }
        } else if size <= skip {
            return Err(Corruption::BadWrap { pos: head });
        }
        if skip + size > avail {
            return Err(Corruption::PastTail {
                pos,
                end: pos.wrapping_add(size),
                tail,
            });
        }
        Ok(Frame {
            payload: at + HEADER_LEN,
            len,
            advance: skip + size,
        })
    }
}

/// Where a frame about to be written goes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Data offset of the frame header.
    frame: u64,
    /// Data offset of a wrap marker to write first, if the frame wraps.
    wrap: Option<u64>,
    /// Payload length.
    len: u64,
    /// Bytes `tail` advances by (wrap gap + frame).
    advance: u64,
}

/// A validated frame at the receiver's head.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Data offset of the payload.
    payload: u64,
    /// Payload length, `<= max_frame`.
    len: u64,
    /// Bytes `head` advances by when the frame is released.
    advance: u64,
}

/// Sleeps on `ec` until `poll` stops returning `pending`, the deadline
/// passes (`pending`), or `peer` is gone for good (one last poll, then
/// `gone`). Checks the peer every [`LIVENESS_SLICE`] of waiting, since a
/// dead peer never wakes us.
fn block_on<T, E: PartialEq>(
    ec: &EventCount,
    peer: &RoleWord,
    spin: Spin,
    deadline: Option<Deadline>,
    pending: E,
    gone: E,
    mut poll: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    match poll() {
        Err(e) if e == pending => {}
        r => return r,
    }
    let expired = |d: Option<Deadline>| d.is_some_and(|d| d.has_passed());
    if expired(deadline) {
        return Err(pending);
    }
    let mut backoff = spin.start();
    while backoff.spin() {
        match poll() {
            Err(e) if e == pending => {}
            r => return r,
        }
    }
    let mut check_at = Deadline::after(LIVENESS_SLICE);
    loop {
        let key = ec.prepare_wait();
        match poll() {
            Err(e) if e == pending => {}
            r => {
                ec.cancel_wait(key);
                return r;
            }
        }
        ec.wait(key, Some(check_at.min(deadline)));
        match poll() {
            Err(e) if e == pending => {}
            r => return r,
        }
        if expired(deadline) {
            return Err(pending);
        }
        if check_at.has_passed() {
            if peer.peer().is_gone() {
                return match poll() {
                    Err(e) if e == pending => Err(gone),
                    r => r,
                };
            }
            check_at = Deadline::after(LIVENESS_SLICE);
        }
    }
}

/// The sending side of a [`ByteRing`].
///
/// `Send` but not `Sync`: one thread sends at a time. Dropping it releases
/// the role and wakes the receiver, which then drains the ring and gets
/// [`RecvError::Disconnected`].
pub struct FrameSender<'a> {
    ring: ByteRing<'a>,
    /// Our copy of `tail`; only the sender writes it.
    tail: u64,
    /// The receiver's `head` as last seen.
    cached_head: u64,
    spin: Spin,
    /// The claim this handle holds; only it releases the role.
    held: Holder,
    _not_sync: PhantomData<Cell<()>>,
}

impl fmt::Debug for FrameSender<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSender")
            .field("tail", &self.tail)
            .field("cached_head", &self.cached_head)
            .field("capacity", &self.ring.capacity)
            .field("max_frame", &self.ring.max_frame)
            .finish()
    }
}

impl<'a> FrameSender<'a> {
    /// Sends `msg` as one frame if there is room now.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `msg` is longer than `max_frame`;
    /// [`SendError::Disconnected`] if the receiver released its role;
    /// [`SendError::Full`] if the frame does not fit now (or `head` is
    /// corrupt).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let slot = self.poll_space(msg.len())?;
        self.write(slot, msg);
        Ok(())
    }

    /// Sends `msg`, waiting for room as long as it takes.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`]; [`SendError::Disconnected`] if the receiver
    /// released its role or died.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let slot = self.wait_space(msg.len(), None)?;
        self.write(slot, msg);
        Ok(())
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); [`SendError::Full`] when the timeout passes.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let slot = self.wait_space(msg.len(), Some(Deadline::after(timeout)))?;
        self.write(slot, msg);
        Ok(())
    }

    /// Reserves a frame of exactly `len` bytes to be written in place, if
    /// there is room now. [`FrameWriter::commit`] publishes it; dropping the
    /// writer publishes nothing.
    ///
    /// The bytes start with whatever the ring held there before.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{bytering::ByteRing, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = ByteRing::create(Region::from_mut_slice(&mut mem.0), 256, 64).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// let mut w = tx.try_reserve(5).unwrap();
    /// w.copy_from_slice(b"hello");
    /// w.commit();
    /// assert_eq!(&*rx.try_read().unwrap(), b"hello");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send).
    pub fn try_reserve(&mut self, len: usize) -> Result<FrameWriter<'_, 'a>, SendError> {
        let slot = self.poll_space(len)?;
        Ok(FrameWriter::new(self, slot))
    }

    /// As [`try_reserve`](Self::try_reserve), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn reserve(&mut self, len: usize) -> Result<FrameWriter<'_, 'a>, SendError> {
        let slot = self.wait_space(len, None)?;
        Ok(FrameWriter::new(self, slot))
    }

    /// As [`try_reserve`](Self::try_reserve), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<FrameWriter<'_, 'a>, SendError> {
        let slot = self.wait_space(len, Some(Deadline::after(timeout)))?;
        Ok(FrameWriter::new(self, slot))
    }

    /// Sets how long blocking calls spin before sleeping.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The largest payload a frame may carry.
    pub fn max_frame(&self) -> u64 {
        self.ring.max_frame
    }

    /// Finds room for a frame of `len` payload bytes, or says why not.
    fn poll_space(&mut self, len: usize) -> Result<Slot, SendError> {
        let ring = self.ring;
        let len = len as u64;
        if len > ring.max_frame {
            return Err(SendError::TooLarge {
                len,
                max: ring.max_frame,
            });
        }
        if ring.body().meta.0.consumer.is_closed() {
            return Err(SendError::Disconnected);
        }
        let cap = ring.capacity;
        let size = frame_size(len);
        let off = self.tail & (cap - 1);
        let room = cap - off;
        let slot = if size <= room {
            Slot {
                frame: off,
                wrap: None,
                len,
                advance: size,
            }
        } else {
            Slot {
                frame: 0,
                wrap: Some(off),
                len,
                advance: room + size,
            }
        };
        if !self.has_room(slot.advance) {
            // Acquire: pairs with the Release store of `head` in
            // `FrameReceiver::release_frame`: the receiver's reads of the
            // bytes we are about to reuse happen before our writes.
            self.cached_head = ring.body().head.0.load(Ordering::Acquire);
            if !self.has_room(slot.advance) {
                return Err(SendError::Full);
            }
        }
        Ok(slot)
    }

    /// Whether `need` bytes are free after `tail` as far as the cached head
    /// tells. An impossible head (misaligned, or more than a ring behind)
    /// leaves no room.
    #[inline]
    fn has_room(&self, need: u64) -> bool {
        let cap = self.ring.capacity;
        let used = self.tail.wrapping_sub(self.cached_head);
        used <= cap && (self.tail | self.cached_head) & 7 == 0 && need <= cap - used
    }

    fn wait_space(&mut self, len: usize, deadline: Option<Deadline>) -> Result<Slot, SendError> {
        let ring = self.ring;
        let b = ring.body();
        let spin = self.spin;
        block_on(
            &b.events.0.not_full,
            &b.meta.0.consumer,
            spin,
            deadline,
            SendError::Full,
            SendError::Disconnected,
            || self.poll_space(len),
        )
    }

    fn write(&mut self, slot: Slot, msg: &[u8]) {
        self.ring.copy_in(slot.frame + HEADER_LEN, msg);
        self.publish(slot);
    }

    /// Writes the headers of `slot` and publishes it.
    fn publish(&mut self, slot: Slot) {
        let ring = self.ring;
        if let Some(w) = slot.wrap {
            ring.write_word(w, WRAP);
        }
        ring.write_word(slot.frame, slot.len);
        self.tail = self.tail.wrapping_add(slot.advance);
        // Release: pairs with the Acquire load of `tail` in
        // `FrameReceiver::refresh_tail`: the frame's bytes are visible to a
        // receiver that sees the new tail.
        ring.body().tail.0.store(self.tail, Ordering::Release);
        ring.body().events.0.not_empty.notify_all();
    }
}

impl Drop for FrameSender<'_> {
    fn drop(&mut self) {
        let b = self.ring.body();
        b.meta.0.producer.release(self.held);
        b.events.0.not_empty.notify_all();
    }
}

/// A frame reserved by [`FrameSender::try_reserve`], written in place.
///
/// Derefs to exactly the reserved number of bytes. [`commit`](Self::commit)
/// publishes the frame; dropping the writer abandons it (nothing is
/// published).
#[must_use = "dropping a FrameWriter publishes nothing; call `commit`"]
pub struct FrameWriter<'s, 'a> {
    tx: &'s mut FrameSender<'a>,
    slot: Slot,
}

impl fmt::Debug for FrameWriter<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameWriter")
            .field("len", &self.slot.len)
            .finish()
    }
}

impl<'s, 'a> FrameWriter<'s, 'a> {
    fn new(tx: &'s mut FrameSender<'a>, slot: Slot) -> Self {
        let ring = tx.ring;
        ring.check_range(slot.frame + HEADER_LEN, slot.len);
        ring.track(slot.frame + HEADER_LEN, slot.len, true);
        Self { tx, slot }
    }

    /// Publishes the frame.
    pub fn commit(self) {
        let ring = self.tx.ring;
        ring.track(self.slot.frame + HEADER_LEN, self.slot.len, true);
        self.tx.publish(self.slot);
    }
}

impl Deref for FrameWriter<'_, '_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let ring = self.tx.ring;
        // SAFETY: the range lies in the data (checked in `new`); the bytes
        // are initialised (zeroed at create) and lie after `tail`, which only
        // this writer's sender can move, so the receiver does not touch them.
        unsafe {
            core::slice::from_raw_parts(
                ring.data().add((self.slot.frame + HEADER_LEN) as usize),
                self.slot.len as usize,
            )
        }
    }
}

impl DerefMut for FrameWriter<'_, '_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let ring = self.tx.ring;
        // SAFETY: as in `deref`; `&mut self` borrows the writer (and through
        // it the sender) exclusively.
        unsafe {
            core::slice::from_raw_parts_mut(
                ring.data().add((self.slot.frame + HEADER_LEN) as usize),
                self.slot.len as usize,
            )
        }
    }
}

/// The receiving side of a [`ByteRing`].
///
/// `Send` but not `Sync`. Dropping it releases the role and wakes the
/// sender, which then gets [`SendError::Disconnected`].
pub struct FrameReceiver<'a> {
    ring: ByteRing<'a>,
    /// Our copy of `head`; only the receiver writes it.
    head: u64,
    /// The sender's `tail` as last seen.
    cached_tail: u64,
    spin: Spin,
    /// Set once the ring was found corrupt: reported from then on.
    corrupt: Option<Corruption>,
    /// The claim this handle holds; only it releases the role.
    held: Holder,
    _not_sync: PhantomData<Cell<()>>,
}

impl fmt::Debug for FrameReceiver<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReceiver")
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("capacity", &self.ring.capacity)
            .field("max_frame", &self.ring.max_frame)
            .field("corrupt", &self.corrupt)
            .finish()
    }
}

impl<'a> FrameReceiver<'a> {
    /// Copies the next frame into `buf` if there is one now, and returns
    /// its length.
    ///
    /// # Errors
    ///
    /// - [`RecvError::Empty`]: no frame now.
    /// - [`RecvError::Disconnected`]: no frame, and the sender released its
    ///   role.
    /// - [`RecvError::BufferTooSmall`]: the frame is longer than `buf`; it
    ///   stays in the ring (see [`peek_len`](Self::peek_len)).
    /// - [`RecvError::Corrupt`]: the ring is corrupt (for good).
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let frame = self.poll_frame()?;
        self.take_into(frame, buf)
    }

    /// Copies the next frame into `buf`, waiting for one as long as it
    /// takes.
    ///
    /// # Errors
    ///
    /// As [`try_recv_into`](Self::try_recv_into), except `Empty`;
    /// `Disconnected` also once the sender died.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let frame = self.wait_frame(None)?;
        self.take_into(frame, buf)
    }

    /// Copies the next frame into `buf`, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_into`](Self::recv_into); [`RecvError::Empty`] when the
    /// timeout passes.
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        let frame = self.wait_frame(Some(Deadline::after(timeout)))?;
        self.take_into(frame, buf)
    }

    /// Borrows the next frame in place, if there is one now. Dropping (or
    /// [releasing](FrameReader::release)) the reader frees it.
    ///
    /// # Errors
    ///
    /// As [`try_recv_into`](Self::try_recv_into), without `BufferTooSmall`.
    pub fn try_read(&mut self) -> Result<FrameReader<'_, 'a>, RecvError> {
        let frame = self.poll_frame()?;
        Ok(FrameReader::new(self, frame))
    }

    /// As [`try_read`](Self::try_read), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`recv_into`](Self::recv_into), without `BufferTooSmall`.
    pub fn read(&mut self) -> Result<FrameReader<'_, 'a>, RecvError> {
        let frame = self.wait_frame(None)?;
        Ok(FrameReader::new(self, frame))
    }

    /// As [`try_read`](Self::try_read), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_into_timeout`](Self::recv_into_timeout), without
    /// `BufferTooSmall`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<FrameReader<'_, 'a>, RecvError> {
        let frame = self.wait_frame(Some(Deadline::after(timeout)))?;
        Ok(FrameReader::new(self, frame))
    }

    /// The length of the next frame, if there is one now; the frame stays.
    ///
    /// # Errors
    ///
    /// As [`try_read`](Self::try_read).
    pub fn peek_len(&mut self) -> Result<usize, RecvError> {
        let frame = self.poll_frame()?;
        Ok(frame.len as usize)
    }

    /// Sets how long blocking calls spin before sleeping.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The largest payload a frame may carry.
    pub fn max_frame(&self) -> u64 {
        self.ring.max_frame
    }

    #[inline]
    fn refresh_tail(&mut self) {
        // Acquire: pairs with the Release store of `tail` in
        // `FrameSender::publish`: the frames before it are fully written.
        self.cached_tail = self.ring.body().tail.0.load(Ordering::Acquire);
    }

    /// The next frame, validated, or why there is none.
    fn poll_frame(&mut self) -> Result<Frame, RecvError> {
        if let Some(c) = self.corrupt {
            return Err(RecvError::Corrupt(c));
        }
        if self.cached_tail == self.head {
            self.refresh_tail();
            if self.cached_tail == self.head {
                if !self.ring.body().meta.0.producer.is_closed() {
                    return Err(RecvError::Empty);
                }
                // The role word was loaded with Acquire, pairing with the
                // Release in `RoleWord::release`, which the sender did after
                // its last publish: this load sees the final tail.
                self.refresh_tail();
                if self.cached_tail == self.head {
                    return Err(RecvError::Disconnected);
                }
            }
        }
        match self.ring.parse_frame(self.head, self.cached_tail) {
            Ok(f) => Ok(f),
            Err(c) => {
                self.corrupt = Some(c);
                Err(RecvError::Corrupt(c))
            }
        }
    }

    fn wait_frame(&mut self, deadline: Option<Deadline>) -> Result<Frame, RecvError> {
        let ring = self.ring;
        let b = ring.body();
        let spin = self.spin;
        block_on(
            &b.events.0.not_empty,
            &b.meta.0.producer,
            spin,
            deadline,
            RecvError::Empty,
            RecvError::Disconnected,
            || self.poll_frame(),
        )
    }

    fn take_into(&mut self, frame: Frame, buf: &mut [u8]) -> Result<usize, RecvError> {
        let len = frame.len as usize;
        let Some(dst) = buf.get_mut(..len) else {
            return Err(RecvError::BufferTooSmall { needed: frame.len });
        };
        self.ring.copy_out(frame.payload, dst);
        self.release_frame(frame);
        Ok(len)
    }

    /// Frees `frame`, the one at `head`.
    fn release_frame(&mut self, frame: Frame) {
        let ring = self.ring;
        self.head = self.head.wrapping_add(frame.advance);
        // Release: pairs with the Acquire load of `head` in
        // `FrameSender::poll_space`: our reads of the frame happen before the
        // sender reuses its bytes.
        ring.body().head.0.store(self.head, Ordering::Release);
        ring.body().events.0.not_full.notify_all();
    }
}

impl Drop for FrameReceiver<'_> {
    fn drop(&mut self) {
        let b = self.ring.body();
        b.meta.0.consumer.release(self.held);
        b.events.0.not_full.notify_all();
    }
}

/// A frame borrowed in place from the ring by [`FrameReceiver::try_read`].
///
/// Derefs to the payload. Dropping it, or [`release`](Self::release), frees
/// the frame for the sender.
///
/// If the sender is hostile and rewrites the frame while it is borrowed, the
/// bytes seen may change under the reader: they are plain bytes, so this
/// gives garbage, never undefined values.
pub struct FrameReader<'r, 'a> {
    rx: &'r mut FrameReceiver<'a>,
    frame: Frame,
}

impl fmt::Debug for FrameReader<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("len", &self.frame.len)
            .finish()
    }
}

impl<'r, 'a> FrameReader<'r, 'a> {
    fn new(rx: &'r mut FrameReceiver<'a>, frame: Frame) -> Self {
        let ring = rx.ring;
        ring.check_range(frame.payload, frame.len);
        ring.track(frame.payload, frame.len, false);
        Self { rx, frame }
    }

    /// Frees the frame (the same as dropping the reader).
    pub fn release(self) {
        drop(self);
    }
}

impl Deref for FrameReader<'_, '_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let ring = self.rx.ring;
        // SAFETY: the range lies in the data (validated by `parse_frame`,
        // checked in `new`); the frame is published and not released, so a
        // well-behaved sender does not write it (a hostile one can only make
        // the bytes garbage).
        unsafe {
            core::slice::from_raw_parts(
                ring.data().add(self.frame.payload as usize),
                self.frame.len as usize,
            )
        }
    }
}

impl Drop for FrameReader<'_, '_> {
    fn drop(&mut self) {
        let ring = self.rx.ring;
        ring.track(self.frame.payload, self.frame.len, false);
        self.rx.release_frame(self.frame);
    }
}

/// Why a frame could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No room for the frame (now, or before the timeout).
    Full,
    /// The message is longer than the ring's `max_frame`.
    TooLarge {
        /// The message length.
        len: u64,
        /// The ring's `max_frame`.
        max: u64,
    },
    /// The receiver released its role or died.
    Disconnected,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str("ring full"),
            SendError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the frame limit of {max}")
            }
            SendError::Disconnected => f.write_str("receiver disconnected"),
        }
    }
}

impl core::error::Error for SendError {}

/// Why no frame was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// No frame (now, or before the timeout).
    Empty,
    /// No frame, and the sender released its role or died.
    Disconnected,
    /// The next frame is longer than the buffer; it stays in the ring.
    BufferTooSmall {
        /// The frame's length.
        needed: u64,
    },
    /// The ring's shared state is impossible; it stays corrupt.
    Corrupt(Corruption),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("ring empty"),
            RecvError::Disconnected => f.write_str("sender disconnected"),
            RecvError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the frame needs {needed} bytes")
            }
            RecvError::Corrupt(c) => write!(f, "corrupt ring: {c}"),
        }
    }
}

impl core::error::Error for RecvError {}

/// What a receiver found wrong in a corrupt ring. Positions are byte
/// positions (as `head` and `tail`), not data offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// A frame header holds a length above `max_frame`.
    LengthTooLarge {
        /// Position of the header.
        pos: u64,
        /// The length found.
        len: u64,
        /// The ring's `max_frame`.
        max: u64,
    },
    /// A frame, or the frame a wrap marker promises, ends after the
    /// published tail.
    PastTail {
        /// Position of the header.
        pos: u64,
        /// Where the frame would end.
        end: u64,
        /// The published tail.
        tail: u64,
    },
    /// A frame runs past the end of the data instead of following a wrap
    /// marker.
    CrossesEnd {
        /// Position of the header.
        pos: u64,
        /// The length found.
        len: u64,
    },
    /// A wrap marker where the next frame would have fitted before the end.
    BadWrap {
        /// Position of the marker.
        pos: u64,
    },
    /// `tail - head` exceeds the capacity.
    Distance {
        /// Our head.
        head: u64,
        /// The published tail.
        tail: u64,
    },
    /// `head` or `tail` is not a multiple of 8.
    Misaligned {
        /// Our head.
        head: u64,
        /// The published tail.
        tail: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Corruption::LengthTooLarge { pos, len, max } => {
                write!(f, "frame at {pos} has length {len} above the limit {max}")
            }
            Corruption::PastTail { pos, end, tail } => {
                write!(f, "frame at {pos} ends at {end}, past the tail {tail}")
            }
            Corruption::CrossesEnd { pos, len } => {
                write!(
                    f,
                    "frame at {pos} of length {len} crosses the end of the buffer"
                )
            }
            Corruption::BadWrap { pos } => {
                write!(f, "wrap marker at {pos} where the next frame fits")
            }
            Corruption::Distance { head, tail } => {
                write!(f, "tail {tail} is more than a ring ahead of head {head}")
            }
            Corruption::Misaligned { head, tail } => {
                write!(f, "misaligned position (head {head}, tail {tail})")
            }
        }
    }
}

impl core::error::Error for Corruption {}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::VecDeque;
    use std::vec;
    use std::vec::Vec;

    #[repr(C, align(128))]
    #[derive(Clone, Copy)]
    struct Line([u8; 128]);

    fn mem(capacity: u64) -> Vec<Line> {
        let size = ByteRing::memory_size(capacity).unwrap();
        vec![Line([0; 128]); size.div_ceil(128)]
    }

    fn bytes(b: &mut [Line]) -> &mut [u8] {
        // SAFETY: Line is 128 plain bytes with no padding.
        unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len() * 128) }
    }

    /// A tiny xorshift PRNG.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A message whose bytes depend on `seed` and position.
    fn msg(seed: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 1) as u8)
            .collect()
    }

    /// Writes raw bytes at `off` from the start of the region.
    fn scribble(ring: &ByteRing<'_>, off: usize, val: &[u8]) {
        // SAFETY: test-only: the data starts DATA bytes into the region,
        // the offset lies in the test buffer, and nothing reads these bytes
        // concurrently.
        unsafe {
            let base = ring.data().sub(DATA);
            ptr::copy_nonoverlapping(val.as_ptr(), base.add(off), val.len());
        }
    }

    const DATA: usize = 640;

    #[test]
    fn capacity_and_max_frame_rules() {
        for bad in [0u64, 8, 32, 63, 72, 100, 3 << 10] {
            assert_eq!(ByteRing::memory_size(bad), None, "{bad}");
            assert_eq!(ByteRing::max_frame_for(bad), None);
        }
        assert_eq!(ByteRing::memory_size(64), Some(640 + 64));
        assert_eq!(ByteRing::max_frame_for(4 << 20), Some((2 << 20) - 8));
        let mut m = mem(64);
        let r = Region::from_mut_slice(bytes(&mut m));
        assert_eq!(
            ByteRing::create(r, 64, 25).unwrap_err(),
            InitError::InvalidCapacity { capacity: 64 }
        );
        assert_eq!(
            ByteRing::create(r, 96, 8).unwrap_err(),
            InitError::InvalidCapacity { capacity: 96 }
        );
        assert!(matches!(
            ByteRing::create(r, 256, 8),
            Err(InitError::TooSmall { .. })
        ));
        let ring = ByteRing::create(r, 64, 24).unwrap();
        assert_eq!((ring.capacity(), ring.max_frame()), (64, 24));
        let again = ByteRing::attach(r).unwrap();
        assert_eq!((again.capacity(), again.max_frame()), (64, 24));
        let timed = ByteRing::attach_timeout(r, Duration::from_millis(1)).unwrap();
        assert_eq!(timed.capacity(), 64);
        assert!(std::format!("{ring:?}").contains("max_frame: 24"));
    }

    #[test]
    fn attach_rejects_bad_max_frame_and_unready() {
        let mut m = mem(64);
        let r = Region::from_mut_slice(bytes(&mut m));
        assert_eq!(ByteRing::attach(r).unwrap_err(), AttachError::NotReady);
        assert_eq!(
            ByteRing::attach_timeout(r, Duration::from_millis(5)).unwrap_err(),
            AttachError::NotReady
        );
        let ring = ByteRing::create(r, 64, 24).unwrap();
        scribble(&ring, 512 + 16, &25u64.to_le_bytes());
        assert_eq!(
            ByteRing::attach(r).unwrap_err(),
            AttachError::CorruptCapacity { capacity: 64 }
        );
    }

    #[test]
    fn round_trip_edge_sizes() {
        let mut m = mem(256);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 256, 120).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        let mut buf = [0u8; 120];
        for round in 0..6u64 {
            for len in [0usize, 1, 7, 8, 9, 120] {
                let m = msg(len as u64 + round, len);
                tx.try_send(&m).unwrap();
                assert_eq!(rx.peek_len(), Ok(len));
                let n = rx.try_recv_into(&mut buf).unwrap();
                assert_eq!(&buf[..n], &m[..]);
                // Zero-copy both ways.
                let mut w = tx.try_reserve(len).unwrap();
                assert_eq!(w.len(), len);
                w.copy_from_slice(&m);
                w.commit();
                let r = rx.try_read().unwrap();
                assert_eq!(&*r, &m[..]);
                r.release();
            }
        }
        assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Empty));
    }

    /// Predicts the ring's placement: (tail, head) positions and the
    /// advance of each queued frame.
    struct Model {
        cap: u64,
        max: u64,
        tail: u64,
        head: u64,
        q: VecDeque<(Vec<u8>, u64)>,
    }

    impl Model {
        fn send(&mut self, m: &[u8]) -> Result<(), SendError> {
            let len = m.len() as u64;
            if len > self.max {
                return Err(SendError::TooLarge { len, max: self.max });
            }
            let size = frame_size(len);
            let room = self.cap - self.tail % self.cap;
            let adv = if size <= room { size } else { room + size };
            if adv > self.cap - (self.tail - self.head) {
                return Err(SendError::Full);
            }
            self.tail += adv;
            self.q.push_back((m.to_vec(), adv));
            Ok(())
        }
        fn recv(&mut self) -> Option<Vec<u8>> {
            let (m, adv) = self.q.pop_front()?;
            self.head += adv;
            Some(m)
        }
    }

    #[test]
    fn random_sizes_against_model() {
        for (cap, max) in [(64u64, 24u64), (128, 56), (1024, 300), (4096, 2040)] {
            let mut m = mem(cap);
            let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), cap, max).unwrap();
            let (mut tx, mut rx) = ring.split().unwrap();
            let mut model = Model {
                cap,
                max,
                tail: 0,
                head: 0,
                q: VecDeque::new(),
            };
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ cap);
            let mut buf = vec![0u8; max as usize + 8];
            let mut wraps = 0;
            for step in 0..20_000u64 {
                let op = rng.below(10);
                if op < 5 {
                    let len = rng.below(max + 4) as usize;
                    let data = msg(step, len);
                    let expect = model.send(&data);
                    let before = tx.tail;
                    let got = if op == 0 {
                        tx.try_reserve(len).map(|mut w| {
                            w.copy_from_slice(&data);
                            w.commit();
                        })
                    } else {
                        tx.try_send(&data)
                    };
                    assert_eq!(got, expect, "step {step}");
                    if got.is_ok() && tx.tail % cap < before % cap {
                        wraps += 1;
                    }
                } else if op == 5 {
                    // An abandoned reservation publishes nothing.
                    let len = rng.below(max + 1) as usize;
                    if let Ok(mut w) = tx.try_reserve(len) {
                        w.fill(0xee);
                    }
                } else if op == 6 {
                    let want = model.q.front().map(|(m, _)| m.len());
                    match rx.peek_len() {
                        Ok(n) => assert_eq!(Some(n), want),
                        Err(e) => assert_eq!((e, want), (RecvError::Empty, None)),
                    }
                } else if op == 7 {
                    let expect = model.recv();
                    match rx.try_read() {
                        Ok(r) => assert_eq!(Some(&*r), expect.as_deref()),
                        Err(e) => assert_eq!((e, expect), (RecvError::Empty, None)),
                    }
                } else {
                    let expect = model.recv();
                    match rx.try_recv_into(&mut buf) {
                        Ok(n) => assert_eq!(Some(&buf[..n]), expect.as_deref()),
                        Err(e) => assert_eq!((e, expect), (RecvError::Empty, None)),
                    }
                }
            }
            assert!(wraps > 50, "cap {cap}: only {wraps} wraps");
        }
    }

    #[test]
    fn full_and_empty_edges() {
        let mut m = mem(64);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        let mut buf = [0u8; 24];
        assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Empty));
        assert_eq!(rx.peek_len(), Err(RecvError::Empty));
        assert!(matches!(rx.try_read(), Err(RecvError::Empty)));
        // Two frames of 32 bytes fill 64 exactly.
        tx.try_send(&[1; 24]).unwrap();
        tx.try_send(&[2; 17]).unwrap();
        assert_eq!(tx.try_send(&[]), Err(SendError::Full));
        assert!(matches!(tx.try_reserve(0), Err(SendError::Full)));
        assert_eq!(
            tx.send_timeout(&[3], Duration::from_millis(5)),
            Err(SendError::Full)
        );
        assert!(matches!(
            tx.reserve_timeout(1, Duration::ZERO),
            Err(SendError::Full)
        ));
        assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
        // Now at offset 0 after wrapping exactly: 32 free.
        tx.try_send(&[3; 24]).unwrap();
        assert_eq!(tx.try_send(&[]), Err(SendError::Full));
        assert_eq!(rx.try_recv_into(&mut buf), Ok(17));
        assert_eq!(&buf[..17], &[2; 17]);
        assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
        assert_eq!(buf, [3; 24]);
        assert_eq!(
            rx.recv_into_timeout(&mut buf, Duration::from_millis(5)),
            Err(RecvError::Empty)
        );
        assert!(matches!(
            rx.read_timeout(Duration::ZERO),
            Err(RecvError::Empty)
        ));
        // Head and tail at 96 (offset 32): a 24-byte frame fills 32..64
        // exactly, with no wrap marker, and the next frame starts at 0.
        tx.try_send(&[4; 24]).unwrap();
        tx.try_send(&[5; 8]).unwrap();
        assert_eq!(tx.tail, 144);
        assert_eq!(ring.read_word(0), 8);
        assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
        assert_eq!(rx.try_recv_into(&mut buf), Ok(8));
        assert_eq!(&buf[..8], &[5; 8]);
    }

    #[test]
    fn wrap_marker_is_written_and_skipped() {
        let mut m = mem(64);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        let mut buf = [0u8; 24];
        tx.try_send(&[1; 24]).unwrap(); // 0..32
        tx.try_send(&[2; 8]).unwrap(); // 32..48
        assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
        // 24 bytes of payload need 32, only 16 left before the end: wrap.
        tx.try_send(&[3; 24]).unwrap();
        assert_eq!(ring.read_word(48), WRAP);
        assert_eq!(ring.read_word(0), 24);
        assert_eq!(tx.tail, 48 + 16 + 32);
        assert_eq!(rx.try_recv_into(&mut buf), Ok(8));
        assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
        assert_eq!(buf, [3; 24]);
        assert_eq!(rx.head, 96);
    }

    #[test]
    fn too_large_is_refused() {
        let mut m = mem(128);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 128, 40).unwrap();
        let (mut tx, _rx) = ring.split().unwrap();
        let e = SendError::TooLarge { len: 41, max: 40 };
        assert_eq!(tx.try_send(&[0; 41]), Err(e));
        assert_eq!(tx.send(&[0; 41]), Err(e));
        assert!(matches!(tx.try_reserve(41), Err(x) if x == e));
        assert!(matches!(
            tx.reserve(1000),
            Err(SendError::TooLarge { len: 1000, max: 40 })
        ));
        assert_eq!(tx.max_frame(), 40);
        tx.try_send(&[0; 40]).unwrap();
    }

    #[test]
    fn buffer_too_small_keeps_the_frame() {
        let mut m = mem(128);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 128, 40).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.try_send(b"0123456789").unwrap();
        let mut small = [0u8; 9];
        let e = RecvError::BufferTooSmall { needed: 10 };
        assert_eq!(rx.try_recv_into(&mut small), Err(e));
        assert_eq!(rx.recv_into(&mut small), Err(e));
        assert_eq!(rx.recv_into_timeout(&mut small, Duration::ZERO), Err(e));
        assert_eq!(rx.peek_len(), Ok(10));
        let mut big = [0u8; 10];
        assert_eq!(rx.try_recv_into(&mut big), Ok(10));
        assert_eq!(&big, b"0123456789");
    }

    #[test]
    fn reserve_commit_and_abort() {
        let mut m = mem(128);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 128, 40).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        {
            let mut w = tx.try_reserve(5).unwrap();
            w.copy_from_slice(b"abort");
            assert!(std::format!("{w:?}").contains("len: 5"));
        } // dropped: nothing published
        assert_eq!(rx.peek_len(), Err(RecvError::Empty));
        let mut w = tx.reserve(6).unwrap();
        w.copy_from_slice(b"commit");
        w.commit();
        let mut w = tx.reserve_timeout(3, Duration::from_millis(1)).unwrap();
        w.copy_from_slice(b"two");
        w.commit();
        let r = rx.read().unwrap();
        assert_eq!(&*r, b"commit");
        drop(r);
        let r = rx.read_timeout(Duration::from_millis(1)).unwrap();
        assert_eq!(&*r, b"two");
        // Not released yet: the frame is still there.
        assert_eq!(r.len(), 3);
        r.release();
        assert_eq!(rx.peek_len(), Err(RecvError::Empty));
    }

    #[test]
    fn dropped_sender_drains_then_disconnects() {
        let mut m = mem(128);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 128, 40).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.try_send(b"a").unwrap();
        tx.try_send(b"bc").unwrap();
        drop(tx);
        let mut buf = [0u8; 40];
        assert_eq!(rx.try_recv_into(&mut buf), Ok(1));
        assert_eq!(rx.recv_into(&mut buf), Ok(2));
        assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Disconnected));
        assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
        assert!(matches!(rx.read(), Err(RecvError::Disconnected)));
        assert_eq!(rx.peek_len(), Err(RecvError::Disconnected));
        // A new sender reconnects and goes on from the tail.
        let mut tx = ring.sender().unwrap();
        tx.try_send(b"def").unwrap();
        assert_eq!(rx.try_recv_into(&mut buf), Ok(3));
        assert_eq!(&buf[..3], b"def");
    }

    #[test]
    fn dropped_receiver_disconnects_sender() {
        let mut m = mem(64);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
        let (mut tx, rx) = ring.split().unwrap();
        tx.try_send(b"x").unwrap();
        drop(rx);
        assert_eq!(tx.try_send(b"y"), Err(SendError::Disconnected));
        assert_eq!(tx.send(b"y"), Err(SendError::Disconnected));
        assert!(matches!(tx.try_reserve(1), Err(SendError::Disconnected)));
        // A new receiver gets the frame that was left.
        let mut rx = ring.receiver().unwrap();
        let mut buf = [0u8; 24];
        assert_eq!(rx.try_recv_into(&mut buf), Ok(1));
        tx.try_send(b"y").unwrap();
    }

    #[test]
    fn blocked_calls_are_woken_by_drop() {
        let mut m = mem(64);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
        let (tx, mut rx) = ring.split().unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                drop(tx);
            });
            let mut buf = [0u8; 24];
            assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
        });
        drop(rx);
        let (mut tx, rx) = ring.split().unwrap();
        tx.try_send(&[0; 24]).unwrap();
        tx.try_send(&[0; 24]).unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                drop(rx);
            });
            assert_eq!(tx.send(&[0; 24]), Err(SendError::Disconnected));
        });
    }

    /// A pid that cannot exist (pid_max is at most 2^22).
    const DEAD_PID: u32 = (1 << 22) - 5;

    #[test]
    fn dead_peer_is_noticed_by_blocking_calls() {
        let mut m = mem(64);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
        let mut rx = ring.receiver().unwrap();
        // The producer role is held by a process that died.
        scribble(
            &ring,
            512,
            &crate::role::dead_identity(DEAD_PID).to_le_bytes(),
        );
        let mut buf = [0u8; 24];
        assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Empty));
        assert_eq!(
            rx.recv_into_timeout(&mut buf, Duration::from_secs(30)),
            Err(RecvError::Disconnected)
        );
        assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
        // The dead sender's role can be taken over; the receiver then sees
        // Empty again.
        let mut tx = ring.sender().unwrap();
        assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Empty));
        // Same for a dead receiver, once the ring is full.
        drop(rx);
        scribble(
            &ring,
            520,
            &crate::role::dead_identity(DEAD_PID).to_le_bytes(),
        );
        tx.try_send(&[0; 24]).unwrap();
        tx.try_send(&[0; 24]).unwrap();
        assert_eq!(
            tx.send_timeout(&[1], Duration::from_secs(30)),
            Err(SendError::Disconnected)
        );
        let mut rx = ring.receiver().unwrap();
        assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
    }

    #[test]
    fn roles_are_unique() {
        let mut m = mem(64);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
        let me = crate::sync::current_pid();
        let tx = ring.sender().unwrap();
        assert_eq!(ring.sender().unwrap_err(), RoleTaken { pid: me });
        assert_eq!(ring.split().unwrap_err(), RoleTaken { pid: me });
        let rx = ring.receiver().unwrap();
        assert_eq!(ring.receiver().unwrap_err(), RoleTaken { pid: me });
        drop(tx);
        // split refuses without claiming the free sender role.
        assert_eq!(ring.split().unwrap_err(), RoleTaken { pid: me });
        let tx = ring.sender().unwrap();
        drop((tx, rx));
        let (tx, rx) = ring.split().unwrap();
        assert!(std::format!("{tx:?} {rx:?}").contains("FrameReceiver"));
    }

    /// Builds a ring, claims both roles, and hands them to `f`.
    fn with_ring(
        cap: u64,
        max: u64,
        f: impl FnOnce(ByteRing<'_>, FrameSender<'_>, FrameReceiver<'_>),
    ) {
        let mut m = mem(cap);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), cap, max).unwrap();
        let (tx, rx) = ring.split().unwrap();
        f(ring, tx, rx);
    }

    fn corrupt(rx: &mut FrameReceiver<'_>) -> Corruption {
        let mut buf = [0u8; 64];
        let Err(RecvError::Corrupt(c)) = rx.try_recv_into(&mut buf) else {
            panic!("not corrupt");
        };
        // Sticky, whatever the call.
        assert_eq!(rx.peek_len(), Err(RecvError::Corrupt(c)));
        assert!(matches!(rx.try_read(), Err(RecvError::Corrupt(x)) if x == c));
        assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Corrupt(c)));
        c
    }

    #[test]
    fn corrupt_length_above_max_frame() {
        with_ring(64, 24, |ring, mut tx, mut rx| {
            tx.try_send(&[1; 8]).unwrap();
            scribble(&ring, DATA, &25u64.to_le_bytes());
            assert_eq!(
                corrupt(&mut rx),
                Corruption::LengthTooLarge {
                    pos: 0,
                    len: 25,
                    max: 24
                }
            );
        });
        // The frame after a wrap marker too.
        with_ring(64, 24, |ring, mut tx, mut rx| {
            tx.try_send(&[1; 24]).unwrap();
            tx.try_send(&[1; 8]).unwrap();
            rx.try_recv_into(&mut [0; 24]).unwrap();
            tx.try_send(&[3; 24]).unwrap();
            scribble(&ring, DATA, &u64::MAX.to_le_bytes());
            rx.try_recv_into(&mut [0; 24]).unwrap();
            assert_eq!(
                corrupt(&mut rx),
                Corruption::LengthTooLarge {
                    pos: 64,
                    len: u64::MAX,
                    max: 24
                }
            );
        });
    }

    #[test]
    fn corrupt_frame_past_tail() {
        with_ring(64, 24, |ring, mut tx, mut rx| {
            tx.try_send(&[1; 8]).unwrap(); // 16 bytes
            scribble(&ring, DATA, &9u64.to_le_bytes()); // would need 24
            assert_eq!(
                corrupt(&mut rx),
                Corruption::PastTail {
                    pos: 0,
                    end: 24,
                    tail: 16
                }
            );
        });
        // A wrap marker with nothing published after it.
        with_ring(64, 24, |ring, mut tx, mut rx| {
            tx.try_send(&[1; 24]).unwrap(); // 0..32
            tx.try_send(&[1; 16]).unwrap(); // 32..56
            rx.try_recv_into(&mut [0; 24]).unwrap();
            rx.try_recv_into(&mut [0; 24]).unwrap();
            tx.try_send(&[1; 0]).unwrap(); // 56..64
            scribble(&ring, DATA + 56, &WRAP.to_le_bytes());
            assert_eq!(
                corrupt(&mut rx),
                Corruption::PastTail {
                    pos: 56,
                    end: 72,
                    tail: 64
                }
            );
        });
        // The tail claims more than was written: the frame after the real
        // one (a forged header) would end past it.
        with_ring(64, 24, |ring, mut tx, mut rx| {
            tx.try_send(&[1; 8]).unwrap(); // 0..16
            scribble(&ring, 128, &24u64.to_le_bytes());
            scribble(&ring, DATA + 16, &8u64.to_le_bytes());
            assert_eq!(rx.try_recv_into(&mut [0; 24]), Ok(8));
            assert_eq!(
                corrupt(&mut rx),
                Corruption::PastTail {
                    pos: 16,
                    end: 32,
                    tail: 24
                }
            );
        });
    }

    #[test]
    fn corrupt_frame_crossing_the_end() {
        with_ring(64, 24, |ring, mut tx, mut rx| {
            tx.try_send(&[1; 24]).unwrap(); // 0..32
            tx.try_send(&[1; 16]).unwrap(); // 32..56
            rx.try_recv_into(&mut [0; 24]).unwrap();
            rx.try_recv_into(&mut [0; 24]).unwrap();
            tx.try_send(&[1; 0]).unwrap(); // 56..64
                                           // Claim 16 bytes at 56: crosses 64. Make the tail allow it.
            scribble(&ring, DATA + 56, &16u64.to_le_bytes());
            scribble(&ring, 128, &88u64.to_le_bytes());
            assert_eq!(
                corrupt(&mut rx),
                Corruption::CrossesEnd { pos: 56, len: 16 }
            );
        });
    }

    #[test]
    fn corrupt_wrap_marker_where_frame_fits() {
        with_ring(64, 24, |ring, mut tx, mut rx| {
            tx.try_send(&[1; 8]).unwrap(); // 0..16
            tx.try_send(&[2; 8]).unwrap(); // 16..32
            rx.try_recv_into(&mut [0; 24]).unwrap();
            rx.try_recv_into(&mut [0; 24]).unwrap();
            // A marker at 32 (32 bytes before the end), followed by the
            // 16-byte frame still at 0, published by a forged tail.
            scribble(&ring, DATA + 32, &WRAP.to_le_bytes());
            scribble(&ring, 128, &(32u64 + 32 + 16).to_le_bytes());
            assert_eq!(corrupt(&mut rx), Corruption::BadWrap { pos: 32 });
        });
        // A marker at offset 0 can never be right.
        with_ring(64, 24, |ring, mut tx, mut rx| {
            tx.try_send(&[1; 24]).unwrap();
            tx.try_send(&[1; 24]).unwrap();
            scribble(&ring, DATA, &WRAP.to_le_bytes());
            assert_eq!(
                corrupt(&mut rx),
                Corruption::PastTail {
                    pos: 0,
                    end: 72,
                    tail: 64
                }
            );
        });
    }

    #[test]
    fn corrupt_distance_and_misaligned_tail() {
        with_ring(64, 24, |ring, _tx, mut rx| {
            scribble(&ring, 128, &72u64.to_le_bytes());
            assert_eq!(corrupt(&mut rx), Corruption::Distance { head: 0, tail: 72 });
        });
        with_ring(64, 24, |ring, _tx, mut rx| {
            // Behind the head: a huge wrapping distance.
            scribble(&ring, 128, &u64::MAX.wrapping_sub(7).to_le_bytes());
            assert!(matches!(corrupt(&mut rx), Corruption::Distance { .. }));
        });
        with_ring(64, 24, |ring, _tx, mut rx| {
            scribble(&ring, 128, &3u64.to_le_bytes());
            assert_eq!(
                corrupt(&mut rx),
                Corruption::Misaligned { head: 0, tail: 3 }
            );
        });
    }

    #[test]
    fn corrupt_head_found_at_claim() {
        let mut m = mem(64);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
        scribble(&ring, 256, &5u64.to_le_bytes());
        let mut tx = ring.sender().unwrap();
        // The sender sees an impossible head: no room, no write.
        assert_eq!(tx.try_send(b"x"), Err(SendError::Full));
        let mut rx = ring.receiver().unwrap();
        assert_eq!(
            corrupt(&mut rx),
            Corruption::Misaligned { head: 5, tail: 0 }
        );
    }

    #[test]
    fn sender_never_writes_outside_the_data() {
        // Garbage tail at claim, near the wrap of u64.
        let mut m = mem(64);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
        let start = u64::MAX - 15;
        scribble(&ring, 128, &start.to_le_bytes());
        scribble(&ring, 256, &start.to_le_bytes());
        let (mut tx, mut rx) = ring.split().unwrap();
        let mut buf = [0u8; 24];
        for i in 0..50u8 {
            tx.try_send(&[i; 13]).unwrap();
            assert_eq!(rx.try_recv_into(&mut buf), Ok(13));
            assert_eq!(&buf[..13], &[i; 13]);
        }
        assert!(rx.head < start);
    }

    #[test]
    fn two_threads_stress_with_checksums() {
        const N: u64 = 30_000;
        for (cap, max) in [(64u64, 24u64), (4096, 1000)] {
            let mut m = mem(cap);
            let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), cap, max).unwrap();
            let (mut tx, mut rx) = ring.split().unwrap();
            std::thread::scope(|s| {
                s.spawn(move || {
                    let mut rng = Rng(42 + cap);
                    for i in 0..N {
                        let len = rng.below(max + 1) as usize;
                        let mut data = msg(i, len);
                        if len >= 8 {
                            data[..8].copy_from_slice(&i.to_le_bytes());
                        }
                        if i % 3 == 0 {
                            let mut w = tx.reserve(len).unwrap();
                            w.copy_from_slice(&data);
                            w.commit();
                        } else {
                            tx.send(&data).unwrap();
                        }
                    }
                });
                let mut rng = Rng(42 + cap);
                let mut buf = vec![0u8; max as usize];
                let (mut sum_got, mut sum_want) = (0u64, 0u64);
                for i in 0..N {
                    let len = rng.below(max + 1) as usize;
                    let want = {
                        let mut d = msg(i, len);
                        if len >= 8 {
                            d[..8].copy_from_slice(&i.to_le_bytes());
                        }
                        d
                    };
                    let got: Vec<u8> = if i % 2 == 0 {
                        rx.read().unwrap().to_vec()
                    } else {
                        let n = rx.recv_into(&mut buf).unwrap();
                        buf[..n].to_vec()
                    };
                    for (k, b) in got.iter().enumerate() {
                        sum_got = sum_got
                            .wrapping_mul(131)
                            .wrapping_add(u64::from(*b) ^ k as u64);
                    }
                    for (k, b) in want.iter().enumerate() {
                        sum_want = sum_want
                            .wrapping_mul(131)
                            .wrapping_add(u64::from(*b) ^ k as u64);
                    }
                    assert_eq!(got.len(), len, "frame {i}");
                    assert_eq!(sum_got, sum_want, "frame {i}");
                }
                let mut buf = [0u8; 1];
                assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
            });
        }
    }

    #[test]
    fn one_mib_message_in_a_four_mib_ring() {
        let cap = 4u64 << 20;
        let mut m = mem(cap);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), cap, 1 << 20).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        let big = msg(7, 1 << 20);
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..9 {
            tx.try_send(&big).unwrap();
            tx.try_send(&big[..1000]).unwrap();
            assert_eq!(rx.try_recv_into(&mut buf), Ok(1 << 20));
            assert!(buf == big);
            assert_eq!(&*rx.try_read().unwrap(), &big[..1000]);
        }
    }

    #[test]
    fn errors_display_lowercase() {
        let all = [
            std::format!("{}", SendError::Full),
            std::format!("{}", SendError::TooLarge { len: 9, max: 8 }),
            std::format!("{}", SendError::Disconnected),
            std::format!("{}", RecvError::Empty),
            std::format!("{}", RecvError::Disconnected),
            std::format!("{}", RecvError::BufferTooSmall { needed: 3 }),
            std::format!("{}", RecvError::Corrupt(Corruption::BadWrap { pos: 8 })),
            std::format!(
                "{}",
                Corruption::LengthTooLarge {
                    pos: 0,
                    len: 1,
                    max: 0
                }
            ),
            std::format!(
                "{}",
                Corruption::PastTail {
                    pos: 0,
                    end: 1,
                    tail: 0
                }
            ),
            std::format!("{}", Corruption::CrossesEnd { pos: 0, len: 1 }),
            std::format!("{}", Corruption::Distance { head: 0, tail: 1 }),
            std::format!("{}", Corruption::Misaligned { head: 0, tail: 1 }),
        ];
        for s in all {
            assert!(s.starts_with(|c: char| c.is_lowercase()), "{s}");
            assert!(!s.ends_with('.'), "{s}");
        }
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    extern crate std;
    use super::*;
    use loom::thread;
    use std::boxed::Box;
    use std::vec;

    #[repr(C, align(128))]
    #[derive(Clone, Copy)]
    struct Line([u8; 128]);

    /// A ring in leaked memory, so threads can own its handles.
    fn ring(capacity: u64, max_frame: u64) -> ByteRing<'static> {
        let size = ByteRing::memory_size(capacity).unwrap();
        let lines: &'static mut [Line] =
            Box::leak(vec![Line([0; 128]); size.div_ceil(128)].into_boxed_slice());
        // SAFETY: Line is 128 plain bytes with no padding.
        let mem = unsafe {
            core::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), lines.len() * 128)
        };
        ByteRing::create(Region::from_mut_slice(mem), capacity, max_frame).unwrap()
    }

    fn frame(i: u8, len: usize) -> vec::Vec<u8> {
        (0..len)
            .map(|k| i.wrapping_mul(16).wrapping_add(k as u8))
            .collect()
    }

    /// Three frames through a 64-byte ring: the third needs a wrap marker
    /// and, unless the receiver was quick, waits for room; the receiver
    /// waits whenever the ring is empty. Order and contents are checked, and
    /// loom checks every data access is ordered by the protocol.
    #[test]
    fn frames_cross_the_wrap_with_blocking() {
        loom::model(|| {
            let ring = ring(64, 24);
            // Each role is claimed by the thread (loom's process) that
            // uses and drops it: a release is a CAS from the holder's own
            // identity, which differs per thread under loom.
            let mut rx = ring.receiver().unwrap();
            rx.set_spin(Spin::NONE);
            let sizes = [17usize, 10, 16];
            let t = thread::spawn(move || {
                let mut tx = ring.sender().unwrap();
                tx.set_spin(Spin::NONE);
                for (i, &n) in sizes.iter().enumerate() {
                    tx.send(&frame(i as u8, n)).unwrap();
                }
            });
            let mut buf = [0u8; 24];
            for (i, &n) in sizes.iter().enumerate() {
                let got = rx.recv_into(&mut buf).unwrap();
                assert_eq!(&buf[..got], &frame(i as u8, n)[..]);
            }
            assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
            t.join().unwrap();
        });
    }

    /// The zero-copy paths across the wrap: in-place writes and reads.
    #[test]
    fn zero_copy_across_the_wrap() {
        loom::model(|| {
            let ring = ring(64, 24);
            let (mut tx, mut rx) = ring.split().unwrap();
            tx.set_spin(Spin::NONE);
            rx.set_spin(Spin::NONE);
            let sizes = [24usize, 8, 24];
            let t = thread::spawn(move || {
                for (i, &n) in sizes.iter().enumerate() {
                    let mut w = tx.reserve(n).unwrap();
                    w.copy_from_slice(&frame(i as u8, n));
                    w.commit();
                }
            });
            for (i, &n) in sizes.iter().enumerate() {
                let r = rx.read().unwrap();
                assert_eq!(&*r, &frame(i as u8, n)[..]);
            }
            t.join().unwrap();
        });
    }

    /// A blocked sender is woken by the receiver leaving.
    #[test]
    fn blocked_send_woken_by_receiver_drop() {
        loom::model(|| {
            let ring = ring(64, 24);
            // The receiver is claimed by the thread that drops it (see
            // `frames_cross_the_wrap_with_blocking`); until then the sender
            // finds it never claimed, which is not gone.
            let mut tx = ring.sender().unwrap();
            tx.set_spin(Spin::NONE);
            tx.try_send(&[1; 24]).unwrap();
            tx.try_send(&[2; 24]).unwrap();
            let t = thread::spawn(move || drop(ring.receiver().unwrap()));
            assert_eq!(tx.send(&[3; 8]), Err(SendError::Disconnected));
            t.join().unwrap();
        });
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_dead_peer;
