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
//!       | not_empty: Bell, not_full: Bell              |  own 128-byte line
//!       | (each: EventCount + asleep flag, 12 bytes)   |
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
//! # Speed and blocking
//!
//! An uncontended send is a copy into the data, the frame header, one
//! `Release` store of `tail` and one load of the receiver's `asleep` flag,
//! in a line nobody writes while nobody sleeps: no fence, no `lock`ed
//! instruction, no system call. A receive is the same with `head` and the
//! sender's flag. Each side refreshes its copy of the other's position only
//! when its cached copy says empty (full).
//!
//! A blocking call (`send` on a full ring, `recv` on an empty one) spins
//! briefly ([`Spin`], settable per handle), then raises its *bell*'s
//! `asleep` flag and sleeps on a shared futex in naps of at most 20 ms;
//! the other end, seeing the flag after its publishing store, wakes it at
//! once. The wake-up protocol, and why the ringer needs no fence (a
//! publish that races with a waiter falling asleep is caught by a few
//! grace polls, or at worst by the end of the current nap), are in the
//! `bell` module (`core/src/bell.rs`), shared with [`spsc`](crate::spsc).
//! No frame is ever lost and no wait outlasts its deadline.
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

use core::fmt;
use core::marker::PhantomData;
use core::ptr;
use core::time::Duration;

pub use error::{Corruption, RecvError, SendError};
pub use receiver::{FrameReader, FrameReceiver};
pub use sender::{FrameSender, FrameWriter};

mod error;
mod receiver;
mod sender;

use crate::bell::{self, Bell, Woken};
use crate::region::{AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec};
use crate::role::{RoleTaken, RoleWord};
use crate::sync::{spin_loop, AtomicU64, Ordering};
use crate::time::Deadline;
use crate::wait::Spin;

/// The frame header value that means "no frame here: the next frame is at
/// offset 0".
pub const WRAP: u64 = u64::MAX;

/// Bytes of a frame header.
pub const HEADER_LEN: u64 = 8;

/// The smallest capacity a ring may have.
pub const MIN_CAPACITY: u64 = 64;

/// Under loom, data bytes are tracked per 8-byte word by this many cells, so
/// rings of at most `8 * TRACK_WORDS` bytes are allowed there.
#[cfg(multiproc_loom)]
const TRACK_WORDS: usize = 32;

/// One field on its own 128-byte line.
#[repr(C, align(128))]
#[derive(Debug)]
struct Line<T>(T);

/// The wake-up line: read by both sides on every operation (each loads the
/// other's `asleep` flag), written only around sleeps.
#[repr(C)]
#[derive(Debug)]
struct Events {
    /// The receiver sleeps here while the ring is empty; the sender rings
    /// after each publish, and when it leaves.
    not_empty: Bell,
    /// The sender sleeps here while the ring is full; the receiver rings
    /// after each release, and when it leaves.
    not_full: Bell,
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
static_assertions::assert_eq_size!(Events, [u8; 24]);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(Events, not_full), 12);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(Body, events), 256);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(Body, meta), 384);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(Meta, consumer), 8);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(Meta, max_frame), 16);
static_assertions::const_assert_eq!(core::mem::align_of::<Body>(), 128);

// SAFETY: repr(C) of 128-aligned lines holding atomics, bells and role
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
                not_empty: Bell::new(),
                not_full: Bell::new(),
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
// bells, and reaches data bytes only through a FrameSender or
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
        // The sender waits on `not_full`: clear the flag a dead predecessor
        // may have left raised, so the receiver stops notifying for nobody.
        b.events.0.not_full.reset();
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
        // As in `sender`, for the bell the receiver waits on.
        b.events.0.not_empty.reset();
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
        unsafe { copy_bytes(src.as_ptr(), self.data().add(off as usize), src.len()) };
    }

    /// Copies `dst.len()` bytes at `off` out of the data.
    #[inline]
    fn copy_out(&self, off: u64, dst: &mut [u8]) {
        self.check_range(off, dst.len() as u64);
        self.track(off, dst.len() as u64, false);
        // SAFETY: in bounds (checked); a validated, published frame that the
        // sender does not write until the receiver releases it (a hostile
        // sender can only make these bytes garbage, see the module docs).
        unsafe { copy_bytes(self.data().add(off as usize), dst.as_mut_ptr(), dst.len()) };
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
    #[inline]
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

/// Copies `len` bytes from `src` to `dst`: a message of 8 to 16 bytes as
/// two (overlapping) unaligned words inline, anything else through
/// `memcpy`, whose call and size dispatch cost more than the copy for
/// the small messages a pipe mostly carries (profile of an 8-byte
/// stream: 7% of the samples in `memmove`).
///
/// # Safety
///
/// `src` is valid for reads and `dst` for writes of `len` bytes, and the
/// two ranges do not overlap.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    if (8..=16).contains(&len) {
        // SAFETY: both words lie within the `len` bytes the caller vouches
        // for (`len - 8 >= 0`, and `len - 8 + 8 = len`); unaligned
        // accesses of plain bytes.
        unsafe {
            let first = ptr::read_unaligned(src.cast::<u64>());
            let last = ptr::read_unaligned(src.add(len - 8).cast::<u64>());
            ptr::write_unaligned(dst.cast::<u64>(), first);
            ptr::write_unaligned(dst.add(len - 8).cast::<u64>(), last);
        }
    } else {
        // SAFETY: the caller's contract.
        unsafe { ptr::copy_nonoverlapping(src, dst, len) };
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

/// Polls a blocking call makes, one spin hint apart, before it reads the
/// clock and starts its [`Spin`] backoff (none with [`Spin::NONE`], nor
/// under loom, where they would only multiply the interleavings).
const EAGER_POLLS: u32 = 16;

/// Blocks on `bell` until `poll` stops returning `pending`, the deadline
/// passes (`pending`), or `peer` is gone for good (one last poll, then
/// `gone`). The bell checks the peer every liveness slice of sleeping,
/// since a dead peer never rings.
fn block_on<T, E: PartialEq>(
    bell: &Bell,
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
    // A streaming peer publishes (releases) again within tens of
    // nanoseconds: look a few more times, one spin hint apart, before
    // the clock reads and growing pauses of the wait proper.
    if spin != Spin::NONE && !cfg!(multiproc_loom) {
        for _ in 0..EAGER_POLLS {
            spin_loop();
            match poll() {
                Err(e) if e == pending => {}
                r => return r,
            }
        }
    }
    // A deadline already past (a zero timeout): no spin, no sleep.
    if deadline.is_some_and(Deadline::has_passed) {
        return Err(pending);
    }
    match bell::block_on(bell, peer, spin, deadline, || match poll() {
        Err(e) if e == pending => None,
        r => Some(r),
    }) {
        Woken::Ready(r) => r,
        Woken::TimedOut => Err(pending),
        // Drain what the peer published before it went.
        Woken::PeerGone => match poll() {
            Err(e) if e == pending => Err(gone),
            r => r,
        },
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;

#[cfg(all(test, multiproc_loom))]
mod loom_dead_peer;
