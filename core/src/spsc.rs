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
//! `push`/`pop` spin briefly ([`Spin`], settable per handle), then raise
//! their *bell*'s `asleep` flag, poll a few more times (the grace, see
//! below) and sleep on its [`EventCount`] in naps of 20 ms (the liveness
//! slice). After each push (pop), the other end loads the flag; while it
//! is raised, it runs the eventcount's fenced notify, which ends the nap at
//! once. Naps are not shorter because a sleep with a timer earlier than the
//! scheduler tick pays for arming and cancelling it (a timer reprogram, a
//! VM exit under a hypervisor): 50 µs first naps made a sleeping round
//! trip four times the bare futex's.
//!
//! | waiter | ringer (the other end), after each publishing store |
//! |---|---|
//! | spin, polling | |
//! | `asleep = 1` | `if asleep != 0 { notify_all() }` (fence, load, wake) |
//! | `prepare_wait` (fence); poll; grace polls; nap | |
//! | ... woken or nap over: poll again | |
//! | `asleep = 0` once ready | |
//!
//! Why no fence on the ringer's side: a notify check that never misses a
//! waiter needs a store-load fence after *every* publish (the eventcount's
//! `notify_all`), which measured ten times slower than rtrb here (each fence
//! waits for the publishing stores to reach the other core). Without it, the
//! flag check can miss a waiter that raised its flag in the same instant, so
//! that one publish notifies nobody. That can only happen at the start of a
//! sleep (once the flag has reached the other core, every check sees it),
//! and the publish that missed it reaches the waiter within a store-buffer
//! drain: the grace polls catch it (in a stress test forcing a sleep on
//! every operation, they caught all of about 180 such races per 100 000
//! sleeps). Past the grace, the nap bounds the damage: the waiter sees the
//! value when its current nap ends (20 ms at most). No value is ever lost
//! and no wait outlasts its deadline. Under loom the ringer does fence, which makes the
//! check exact, and naps end only by notifications, so the model checks
//! that the notification logic loses no wake-up.
//!
//! Naps never exceed 20 ms, after which the sleeper also checks whether its
//! peer is still alive (a peer killed with `SIGKILL` wakes nobody).
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

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::mem::align_of;
use core::ops::{Deref, DerefMut};
use core::time::Duration;

use bytemuck::Pod;

use crate::region::{
    AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec, REGION_ALIGN,
};
use crate::role::{Claimed, Holder, RoleTaken, RoleWord};
use crate::sync::{spin_loop, AtomicU32, AtomicU64, Ordering, UnsafeCell};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin, WaitKey};

/// The largest capacity the rings accept (2^62 slots): far beyond any
/// memory, and it keeps every index sum below 2^63.
pub(crate) const MAX_CAPACITY: u64 = 1 << 62;

/// The longest nap of a blocked call; a blocked SPSC handle checks that its
/// peer is alive this often.
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(20);

/// Whether `capacity` is one the rings accept.
#[inline]
pub(crate) fn valid_capacity(capacity: u64) -> bool {
    (1..=MAX_CAPACITY).contains(&capacity)
}

// ---------------------------------------------------------------------------
// Errors (shared with `mpmc`)
// ---------------------------------------------------------------------------

/// Why a push did not happen; the value is handed back.
///
/// # Examples
///
/// ```
/// use multiproc_core::spsc::PushError;
/// let e = PushError::Full(7u32);
/// assert_eq!(format!("{e:?}"), "Full(..)");
/// assert_eq!(e.to_string(), "ring is full");
/// assert_eq!(e.into_inner(), 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring is full (for a timed push: it stayed full until the
    /// deadline).
    Full(T),
    /// The other side is gone (SPSC: the consumer released its role or
    /// died) or the ring is closed (MPMC).
    Disconnected(T),
    /// The shared indices are impossible: the memory was overwritten by
    /// something other than this ring's code. Nothing was written.
    Corrupt(T),
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(v) | PushError::Disconnected(v) | PushError::Corrupt(v) => v,
        }
    }

    /// Whether this is [`PushError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full(_))
    }

    /// Whether this is [`PushError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, PushError::Disconnected(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Disconnected(_) => "Disconnected(..)",
            PushError::Corrupt(_) => "Corrupt(..)",
        })
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "ring is full",
            PushError::Disconnected(_) => "ring is disconnected",
            PushError::Corrupt(_) => "ring indices are corrupt",
        })
    }
}

impl<T> core::error::Error for PushError<T> {}

/// Why a pop returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// The ring is empty (for a timed pop: it stayed empty until the
    /// deadline).
    Empty,
    /// The ring is empty and will stay so: the producer is gone (SPSC) or
    /// the ring is closed (MPMC). Everything published was popped first.
    Disconnected,
    /// The shared indices are impossible: the memory was overwritten by
    /// something other than this ring's code. Nothing was read.
    Corrupt,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PopError::Empty => "ring is empty",
            PopError::Disconnected => "ring is disconnected",
            PopError::Corrupt => "ring indices are corrupt",
        })
    }
}

impl core::error::Error for PopError {}

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

/// A 64-bit index alone on a 128-byte line, so the side that writes it does
/// not slow down the side that writes the other one.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct IndexLine {
    pub(crate) pos: AtomicU64,
}

impl IndexLine {
    pub(crate) fn new(v: u64) -> Self {
        Self {
            pos: AtomicU64::new(v),
        }
    }
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(IndexLine, [u8; 128]);
static_assertions::const_assert_eq!(align_of::<IndexLine>(), 128);

// SAFETY: repr(C) over one atomic u64 (valid for every bit pattern, no
// pointers), padded to 128 bytes; size and alignment pinned above.
unsafe impl ShmSafe for IndexLine {}

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
    static_assertions::assert_eq_size!(Bell, [u8; 12]);
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

// SAFETY: repr(C) of an EventCount and an atomic u32: valid for every bit
// pattern, no pointers; size pinned above.
unsafe impl ShmSafe for Bell {}
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
// Waking: the bell
// ---------------------------------------------------------------------------

/// How many times a freshly blocked handle of the MPMC ring polls (with
/// spin hints, about a microsecond in all) before its first nap, whatever
/// its [`Spin`]. None under loom, whose notifiers are exact.
pub(crate) const GRACE_POLLS: u32 = if cfg!(multiproc_loom) { 0 } else { 32 };

/// The first nap of a blocked handle of the MPMC ring. Naps double up to
/// [`LIVENESS_SLICE`]; a notification ends them early.
pub(crate) const FIRST_NAP: Duration = Duration::from_micros(50);

/// How many times a blocked SPSC handle polls (with spin hints) between
/// raising its flag and its first nap: long enough for a store that a
/// ringer on another CPU made in the same instant to drain from its store
/// buffer (each poll of a line the ringer holds is a cross-core transfer,
/// about 100 ns), short enough not to delay a peer waiting for this CPU
/// (about 150 ns then). In a stress run (100 000 pops by a `Spin::NONE`
/// consumer, pushes 0-20 us apart, three runs) no pop was late by a nap
/// with 0, 4, 8 or 32 polls: the race this covers is rare. None under
/// loom, whose ringers are exact.
const SPSC_GRACE_POLLS: u32 = if cfg!(multiproc_loom) { 0 } else { 4 };

/// One direction of wake-ups between the two ends of an SPSC ring: the
/// *waiter* sleeps on it, the *ringer* (the other end) rings it after each
/// publishing store. See "Blocking" in the module docs for the protocol.
#[repr(C)]
#[derive(Debug)]
struct Bell {
    /// Where the waiter sleeps.
    ec: EventCount,
    /// 1 while the waiter is past its spin (napping, or about to), else 0.
    /// Written by the waiter only.
    asleep: AtomicU32,
}

impl Bell {
    fn new() -> Self {
        Self {
            ec: EventCount::new(),
            asleep: AtomicU32::new(0),
        }
    }

    /// Ringer: call after every store that publishes (`tail` or `head`).
    /// While the waiter is not asleep this is one load of a line nobody
    /// writes: no fence, no `lock`ed instruction.
    #[inline(always)]
    fn ring(&self) {
        // In the model, the fence that makes the check below exact (it
        // pairs with the fence in the waiter's `prepare_wait`), so that
        // loom's untimed sleeps check that no wake-up is lost. The real
        // build leaves it out: a check that misses a waiter which has just
        // fallen asleep delays it by at most one nap.
        #[cfg(multiproc_loom)]
        crate::sync::fence(Ordering::SeqCst);
        // Relaxed: the flag carries no data; see above for staleness.
        if self.asleep.load(Ordering::Relaxed) != 0 {
            self.ring_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn ring_slow(&self) {
        // The eventcount's fenced check: wakes the waiter if it sleeps.
        self.ec.notify_all();
    }

    /// A new waiter handle: clears the flag its predecessor left set when it
    /// died, so the ringer stops fencing.
    fn reset(&self) {
        // Relaxed: as in `block_on`.
        self.asleep.store(0, Ordering::Relaxed);
    }
}

/// Sleeps on `ec` until `until` or a notification: a nap that ends on its
/// own if nobody notifies.
///
/// Under loom the clock is frozen and the wait ends only by a notification;
/// the model's notifiers are exact (see [`Bell::ring`]), so that is what
/// it checks.
pub(crate) fn nap(ec: &EventCount, key: WaitKey, until: Deadline) {
    let _ = ec.wait(key, Some(until));
}

/// How a blocking wait ended.
enum Woken<R> {
    /// `poll` returned this.
    Ready(R),
    /// The deadline passed (after a last poll).
    TimedOut,
    /// The peer's role is released or its holder is dead.
    PeerGone,
}

/// Blocks until `poll` returns `Some`: spins per `spin`, then raises the
/// bell's `asleep` flag and naps, checking every [`LIVENESS_SLICE`] that the
/// `peer` (the ringer's role) is still there.
fn block_on<R>(
    bell: &Bell,
    peer: &RoleWord,
    spin: Spin,
    deadline: Option<Deadline>,
    mut poll: impl FnMut() -> Option<R>,
) -> Woken<R> {
    let mut backoff = spin.start();
    while backoff.spin() {
        if let Some(r) = poll() {
            return Woken::Ready(r);
        }
    }
    // Relaxed: the SeqCst fence in `prepare_wait` below orders it before
    // our polls, and pairs with the ringer's publish (see `Bell::ring`).
    bell.asleep.store(1, Ordering::Relaxed);
    let out = sleep_on(bell, peer, deadline, &mut poll);
    // Relaxed: a ringer that sees the flag late only notifies for nothing.
    bell.asleep.store(0, Ordering::Relaxed);
    out
}

#[cold]
fn sleep_on<R>(
    bell: &Bell,
    peer: &RoleWord,
    deadline: Option<Deadline>,
    poll: &mut impl FnMut() -> Option<R>,
) -> Woken<R> {
    let mut slice_end = Deadline::after(LIVENESS_SLICE);
    let mut grace = SPSC_GRACE_POLLS;
    loop {
        let key = bell.ec.prepare_wait();
        if let Some(r) = poll() {
            bell.ec.cancel_wait(key);
            return Woken::Ready(r);
        }
        // Grace, before the first nap only: a ringer that published in the
        // instant we raised the flag may have missed it, but its store
        // reaches us within a store-buffer drain; poll a few times rather
        // than sleep a whole nap on it.
        while grace > 0 {
            grace -= 1;
            spin_loop();
            if let Some(r) = poll() {
                bell.ec.cancel_wait(key);
                return Woken::Ready(r);
            }
        }
        if deadline.is_some_and(Deadline::has_passed) {
            bell.ec.cancel_wait(key);
            return Woken::TimedOut;
        }
        // One nap per liveness slice: a nap shorter than the scheduler
        // tick arms a timer that becomes the CPU's next event, and arming
        // and cancelling it (a timer reprogram, a VM exit under a
        // hypervisor) cost about 10 us per sleep, four times the futex
        // round trip itself; a notification ends the nap anyway.
        let until = slice_end.min(deadline);
        nap(&bell.ec, key, until);
        // Woken (most often by the ringer): look before announcing another
        // wait, which would cost two locked instructions and a fence.
        if let Some(r) = poll() {
            return Woken::Ready(r);
        }
        if slice_end.has_passed() {
            if peer.peer().is_gone() {
                return Woken::PeerGone;
            }
            slice_end = Deadline::after(LIVENESS_SLICE);
        }
    }
}

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

// ---------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------

/// The pushing end of an [`SpscRing`]: at most one exists per ring at a time,
/// across all processes.
///
/// It can move to another thread (`Send`) but not be shared (`!Sync`); its
/// methods take `&mut self`. Dropping it releases the producer role and
/// wakes the consumer, which then drains the ring and sees
/// [`PopError::Disconnected`].
pub struct Producer<'a, T> {
    ring: SpscRing<'a, T>,
    /// Values pushed so far: the shared `tail` this handle alone writes.
    tail: u64,
    /// `tail % capacity`, kept without dividing.
    slot: usize,
    /// Last `head` seen; the true one is at least this.
    cached_head: u64,
    spin: Spin,
    claimed: Claimed,
    /// The claim this handle holds; only it releases the role.
    held: Holder,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the producer role is unique (role word), so moving the handle to
// another thread keeps exactly one pusher; values of T move along (T: Send).
unsafe impl<T: Send> Send for Producer<'_, T> {}

impl<T> fmt::Debug for Producer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.capacity)
            .field("tail", &self.tail)
            .field("cached_head", &self.cached_head)
            .field("claimed", &self.claimed)
            .finish()
    }
}

impl<'a, T: Pod> Producer<'a, T> {
    /// Pushes `v` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if the ring is full;
    /// [`PushError::Disconnected`] if it is full and the consumer released
    /// its role; [`PushError::Corrupt`] if the shared `head` is impossible.
    /// The value is handed back in each case.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::region::Region;
    /// # use multiproc_core::spsc::{PushError, SpscRing};
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = SpscRing::<u32>::create(Region::from_mut_slice(&mut mem.0), 1).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// tx.try_push(1).unwrap();
    /// assert!(matches!(tx.try_push(2), Err(PushError::Full(2))));
    /// assert_eq!(rx.try_pop(), Ok(1));
    /// ```
    #[inline]
    pub fn try_push(&mut self, v: T) -> Result<(), PushError<T>> {
        if self.tail.wrapping_sub(self.cached_head) >= self.ring.capacity {
            if let Err(stop) = self.refresh_head() {
                return Err(stop.with(v));
            }
        }
        // SAFETY: `slot` is our local cursor (< capacity), and the slot is
        // free: `tail - head < capacity` for the head loaded with Acquire,
        // whose Release store in the consumer followed its read of this slot.
        unsafe { self.ring.slot(self.slot) }
            .0
            .with_mut(|p| unsafe { p.write(v) });
        self.advance(1);
        self.publish();
        Ok(())
    }

    /// Pushes `v`, blocking while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Disconnected`] if the consumer is gone (released its
    /// role, or died: noticed within about 20 ms of waiting) while the ring
    /// is full; [`PushError::Corrupt`] as for [`try_push`](Self::try_push).
    pub fn push(&mut self, v: T) -> Result<(), PushError<T>> {
        self.push_deadline(v, None)
    }

    /// Pushes `v`, blocking at most `timeout` while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if the ring stayed full until the timeout; else as
    /// [`push`](Self::push).
    pub fn push_timeout(&mut self, v: T, timeout: Duration) -> Result<(), PushError<T>> {
        // The clock is read only once the ring is found full.
        match self.try_push(v) {
            Err(PushError::Full(v)) => self.push_slow(v, Some(Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pushes `v`, blocking while the ring is full until `deadline` (`None`:
    /// no deadline).
    ///
    /// # Errors
    ///
    /// As [`push_timeout`](Self::push_timeout).
    pub fn push_deadline(&mut self, v: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        match self.try_push(v) {
            Err(PushError::Full(v)) => self.push_slow(v, deadline),
            r => r,
        }
    }

    #[cold]
    fn push_slow(&mut self, v: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        let c = &self.ring.body().control;
        let spin = self.spin;
        match block_on(&c.not_full, &c.consumer, spin, deadline, || {
            match self.try_push(v) {
                Err(PushError::Full(_)) => None,
                r => Some(r),
            }
        }) {
            Woken::Ready(r) => r,
            Woken::TimedOut => Err(PushError::Full(v)),
            // Last look: it may have freed slots before it went.
            Woken::PeerGone => match self.try_push(v) {
                Err(PushError::Full(v)) => Err(PushError::Disconnected(v)),
                r => r,
            },
        }
    }

    /// Pushes as many values from the front of `vs` as there is room for,
    /// without blocking, and returns how many. The batch is published with
    /// one store and one check of the consumer's `asleep` flag.
    ///
    /// Returns 0 when the ring is full, disconnected or corrupt; use
    /// [`try_push`](Self::try_push) to learn which.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::region::Region;
    /// # use multiproc_core::spsc::SpscRing;
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = SpscRing::<u8>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// assert_eq!(tx.push_slice(b"hello"), 4);
    /// let mut out = [0u8; 8];
    /// assert_eq!(rx.pop_slice(&mut out), 4);
    /// assert_eq!(&out[..4], b"hell");
    /// ```
    pub fn push_slice(&mut self, vs: &[T]) -> usize {
        let cap = self.ring.capacity;
        let mut free = cap - self.tail.wrapping_sub(self.cached_head);
        if free < vs.len() as u64 {
            free = self.refresh_head().unwrap_or(free);
        }
        let n = vs.len().min(usize::try_from(free).unwrap_or(usize::MAX));
        if n == 0 {
            return 0;
        }
        let first = n.min(self.ring.parts.count - self.slot);
        // SAFETY: slot + first <= capacity; 0 + (n - first) <= capacity; all
        // n slots are free (n <= free, computed from an Acquire load of head).
        unsafe {
            self.ring.copy_in(self.slot, &vs[..first]);
            self.ring.copy_in(0, &vs[first..n]);
        }
        self.advance(n);
        self.publish();
        n
    }

    /// Reserves the next slot for writing in place, or `None` when the ring
    /// is full (or disconnected, or corrupt).
    ///
    /// The guard dereferences to the slot, which holds stale data (an old
    /// value, or zeros): overwrite what you need, then
    /// [`commit`](WriteSlot::commit). Dropping the guard without committing
    /// publishes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::region::Region;
    /// # use multiproc_core::spsc::SpscRing;
    /// # #[repr(C, align(128))] struct Mem([u8; 4096]);
    /// # let mut mem = Box::new(Mem([0; 4096]));
    /// let ring = SpscRing::<[u64; 8]>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// let mut slot = tx.write_slot().unwrap();
    /// slot[0] = 42;
    /// slot[1..].fill(0);
    /// slot.commit();
    /// assert_eq!(rx.read_slot().unwrap()[0], 42);
    /// ```
    pub fn write_slot(&mut self) -> Option<WriteSlot<'_, 'a, T>> {
        if self.tail.wrapping_sub(self.cached_head) >= self.ring.capacity {
            self.refresh_head().ok()?;
        }
        Some(WriteSlot { producer: self })
    }

    /// Sets how long blocking pushes spin before sleeping
    /// ([`Spin::DEFAULT`] unless set).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The number of free slots now (reloads the consumer's index); 0 if the
    /// indices are corrupt.
    pub fn free_slots(&mut self) -> u64 {
        let _ = self.refresh_head();
        self.ring.capacity - self.tail.wrapping_sub(self.cached_head)
    }

    /// Whether the ring is full. If it is not, it stays so until this
    /// handle pushes (only the consumer can change it, towards emptier).
    /// Reloads the consumer's index only when the cached one says full.
    pub fn is_full(&mut self) -> bool {
        self.tail.wrapping_sub(self.cached_head) >= self.ring.capacity && self.free_slots() == 0
    }

    /// Gives this handle up without releasing its role, which is recorded
    /// from now on under this process: the first half of handing the
    /// producer to another process, which calls
    /// [`SpscRing::take_over_producer`] with the pid returned. Until then
    /// the role stays held, for as long as this process lives.
    ///
    /// Returns `None` (and the handle is gone) if the role was taken from
    /// under this handle by a claim that saw the pid it named dead.
    pub fn hand_over(self) -> Option<u32> {
        let pid = self.ring.body().control.producer.hand_over();
        // Not dropped: a drop would release the role.
        core::mem::forget(self);
        pid
    }

    /// How this handle obtained the producer role.
    pub fn claimed(&self) -> Claimed {
        self.claimed
    }

    /// The ring this handle pushes into.
    pub fn ring(&self) -> SpscRing<'a, T> {
        self.ring
    }

    /// Reloads `head`. Returns the number of free slots, at least one, or
    /// why there is none.
    #[cold]
    fn refresh_head(&mut self) -> Result<u64, Stop> {
        let body = self.ring.body();
        let cap = self.ring.capacity;
        // Acquire: pairs with the consumer's Release store of `head` in
        // `Consumer::publish`: its reads of the slots we reuse are done.
        let head = body.head.pos.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > cap {
            return Err(Stop::Corrupt);
        }
        self.cached_head = head;
        if used < cap {
            return Ok(cap - used);
        }
        if body.control.consumer.is_closed() {
            // The consumer released its role (Release, paired with the
            // Acquire in `is_closed`) after its last pop: one more look.
            let head = body.head.pos.load(Ordering::Acquire);
            let used = self.tail.wrapping_sub(head);
            if used > cap {
                return Err(Stop::Corrupt);
            }
            self.cached_head = head;
            if used < cap {
                return Ok(cap - used);
            }
            return Err(Stop::Disconnected);
        }
        Err(Stop::Full)
    }

    /// Moves the local cursor `n <= capacity` slots forward.
    #[inline]
    fn advance(&mut self, n: usize) {
        self.tail = self.tail.wrapping_add(n as u64);
        self.slot += n;
        if self.slot >= self.ring.parts.count {
            self.slot -= self.ring.parts.count;
        }
    }

    /// Publishes the local `tail` and rings the consumer's bell.
    #[inline]
    fn publish(&self) {
        let body = self.ring.body();
        // Release: pairs with the Acquire load of `tail` in
        // `Consumer::refresh_tail`: the slot writes before it are visible.
        body.tail.pos.store(self.tail, Ordering::Release);
        body.control.not_empty.ring();
    }
}

impl<T> Drop for Producer<'_, T> {
    fn drop(&mut self) {
        let c = &self.ring.parts.body.control;
        // Release inside `release`: everything published before is seen by a
        // consumer that observes the closed role (Acquire in `is_closed`).
        c.producer.release(self.held);
        // Fenced, armed or not: the consumer must see the release.
        c.not_empty.ec.notify_all();
    }
}

/// A reserved slot of a [`Producer`], written in place; see
/// [`Producer::write_slot`].
pub struct WriteSlot<'p, 'a, T: Pod> {
    producer: &'p mut Producer<'a, T>,
}

impl<T: Pod> WriteSlot<'_, '_, T> {
    /// Publishes the slot to the consumer.
    pub fn commit(self) {
        self.producer.advance(1);
        self.producer.publish();
    }

    #[inline]
    fn cell(&self) -> &UnsafeCell<T> {
        // SAFETY: the producer's cursor is < capacity.
        &unsafe { self.producer.ring.slot(self.producer.slot) }.0
    }
}

impl<T: Pod> Deref for WriteSlot<'_, '_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot is free (checked by `write_slot` against an Acquire
        // load of head) and only this guard, which borrows the unique
        // producer mutably, touches it until it is committed.
        unsafe { &*self.cell().get() }
    }
}

impl<T: Pod> DerefMut for WriteSlot<'_, '_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the reference unique.
        unsafe { &mut *self.cell().get() }
    }
}

impl<T: Pod> fmt::Debug for WriteSlot<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteSlot")
            .field("position", &self.producer.tail)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------

/// The popping end of an [`SpscRing`]: at most one exists per ring at a time,
/// across all processes.
///
/// It can move to another thread (`Send`) but not be shared (`!Sync`); its
/// methods take `&mut self`. Dropping it releases the consumer role and
/// wakes the producer, whose pushes fail with [`PushError::Disconnected`]
/// once the ring is full.
pub struct Consumer<'a, T> {
    ring: SpscRing<'a, T>,
    /// Values popped so far: the shared `head` this handle alone writes.
    head: u64,
    /// `head % capacity`, kept without dividing.
    slot: usize,
    /// Last `tail` seen; the true one is at least this.
    cached_tail: u64,
    spin: Spin,
    claimed: Claimed,
    /// The claim this handle holds; only it releases the role.
    held: Holder,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the consumer role is unique (role word), so moving the handle to
// another thread keeps exactly one popper; values of T move along (T: Send).
unsafe impl<T: Send> Send for Consumer<'_, T> {}

impl<T> fmt::Debug for Consumer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.capacity)
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("claimed", &self.claimed)
            .finish()
    }
}

impl<'a, T: Pod> Consumer<'a, T> {
    /// Pops the oldest value, without blocking.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if the ring is empty; [`PopError::Disconnected`]
    /// if it is empty and the producer released its role (a producer that
    /// died without releasing is noticed only by the blocking pops);
    /// [`PopError::Corrupt`] if the shared `tail` is impossible.
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        if self.head == self.cached_tail {
            self.refresh_tail()?;
        }
        // SAFETY: `slot` is our local cursor (< capacity), and the slot is
        // published: head < tail for the tail loaded with Acquire, whose
        // Release store in the producer followed its write of this slot.
        let v = unsafe { self.ring.slot(self.slot) }
            .0
            .with(|p| unsafe { p.read() });
        self.advance(1);
        self.publish();
        Ok(v)
    }

    /// Pops the oldest value, blocking while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`PopError::Disconnected`] once the ring is empty and the producer is
    /// gone (released its role, or died: noticed within about 20 ms of
    /// waiting); [`PopError::Corrupt`] as for [`try_pop`](Self::try_pop).
    pub fn pop(&mut self) -> Result<T, PopError> {
        self.pop_deadline(None)
    }

    /// Pops the oldest value, blocking at most `timeout` while the ring is
    /// empty.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if the ring stayed empty until the timeout; else
    /// as [`pop`](Self::pop).
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopError> {
        // The clock is read only once the ring is found empty.
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_slow(Some(Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pops the oldest value, blocking while the ring is empty until
    /// `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`pop_timeout`](Self::pop_timeout).
    pub fn pop_deadline(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_slow(deadline),
            r => r,
        }
    }

    #[cold]
    fn pop_slow(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        let c = &self.ring.body().control;
        let spin = self.spin;
        match block_on(&c.not_empty, &c.producer, spin, deadline, || {
            match self.try_pop() {
                Err(PopError::Empty) => None,
                r => Some(r),
            }
        }) {
            Woken::Ready(r) => r,
            Woken::TimedOut => Err(PopError::Empty),
            // Drain what it published before it went.
            Woken::PeerGone => match self.try_pop() {
                Err(PopError::Empty) => Err(PopError::Disconnected),
                r => r,
            },
        }
    }

    /// Pops as many values as are available, up to `out.len()`, into the
    /// front of `out`, without blocking, and returns how many. The batch is
    /// released with one store and one check of the producer's `asleep` flag.
    ///
    /// Returns 0 when the ring is empty, disconnected or corrupt; use
    /// [`try_pop`](Self::try_pop) to learn which.
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize {
        let mut avail = self.cached_tail.wrapping_sub(self.head);
        if avail < out.len() as u64 {
            avail = self.refresh_tail().unwrap_or(avail);
        }
        let n = out.len().min(usize::try_from(avail).unwrap_or(usize::MAX));
        if n == 0 {
            return 0;
        }
        let first = n.min(self.ring.parts.count - self.slot);
        // SAFETY: slot + first <= capacity; n - first <= capacity; all n
        // slots are published (n <= avail, from an Acquire load of tail).
        unsafe {
            self.ring.copy_out(self.slot, &mut out[..first]);
            self.ring.copy_out(0, &mut out[first..n]);
        }
        self.advance(n);
        self.publish();
        n
    }

    /// Borrows the oldest value in place, or `None` when the ring is empty
    /// (or disconnected, or corrupt).
    ///
    /// The slot is freed when the guard is released or dropped. If this
    /// process dies while holding the guard, the slot stays unreleased and
    /// the next consumer reads the value again (at-least-once delivery).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::region::Region;
    /// # use multiproc_core::spsc::SpscRing;
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = SpscRing::<u64>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// tx.try_push(5).unwrap();
    /// let v = rx.read_slot().unwrap();
    /// assert_eq!(*v, 5);
    /// v.release();
    /// assert!(rx.read_slot().is_none());
    /// ```
    pub fn read_slot(&mut self) -> Option<ReadSlot<'_, 'a, T>> {
        if self.head == self.cached_tail {
            self.refresh_tail().ok()?;
        }
        Some(ReadSlot { consumer: self })
    }

    /// A copy of the oldest value, left in the ring; `None` when empty (or
    /// disconnected, or corrupt).
    pub fn peek(&mut self) -> Option<T> {
        self.read_slot().map(|s| {
            let v = *s;
            core::mem::forget(s);
            v
        })
    }

    /// The number of values ready to pop now (reloads the producer's
    /// index); 0 if the indices are corrupt. If it is not 0, it stays at
    /// least that until this handle pops.
    pub fn len(&mut self) -> u64 {
        let _ = self.refresh_tail();
        self.cached_tail.wrapping_sub(self.head)
    }

    /// Whether [`len`](Self::len) is 0; reloads the producer's index only
    /// when the cached one says empty.
    pub fn is_empty(&mut self) -> bool {
        self.head == self.cached_tail && self.len() == 0
    }

    /// Sets how long blocking pops spin before sleeping
    /// ([`Spin::DEFAULT`] unless set).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// Gives this handle up without releasing its role; see
    /// [`Producer::hand_over`] and [`SpscRing::take_over_consumer`].
    pub fn hand_over(self) -> Option<u32> {
        let pid = self.ring.body().control.consumer.hand_over();
        // Not dropped: a drop would release the role.
        core::mem::forget(self);
        pid
    }

    /// How this handle obtained the consumer role.
    pub fn claimed(&self) -> Claimed {
        self.claimed
    }

    /// The ring this handle pops from.
    pub fn ring(&self) -> SpscRing<'a, T> {
        self.ring
    }

    /// Reloads `tail`. Returns the number of values ready, at least one, or
    /// why there is none.
    #[cold]
    fn refresh_tail(&mut self) -> Result<u64, PopError> {
        let body = self.ring.body();
        let cap = self.ring.capacity;
        // Acquire: pairs with the producer's Release store of `tail` in
        // `Producer::publish`: the slot writes before it are visible.
        let tail = body.tail.pos.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > cap {
            return Err(PopError::Corrupt);
        }
        self.cached_tail = tail;
        if avail > 0 {
            return Ok(avail);
        }
        if body.control.producer.is_closed() {
            // The producer released its role (Release, paired with the
            // Acquire in `is_closed`) after its last push: one more look.
            let tail = body.tail.pos.load(Ordering::Acquire);
            let avail = tail.wrapping_sub(self.head);
            if avail > cap {
                return Err(PopError::Corrupt);
            }
            self.cached_tail = tail;
            if avail > 0 {
                return Ok(avail);
            }
            return Err(PopError::Disconnected);
        }
        Err(PopError::Empty)
    }

    /// Moves the local cursor `n <= capacity` slots forward.
    #[inline]
    fn advance(&mut self, n: usize) {
        self.head = self.head.wrapping_add(n as u64);
        self.slot += n;
        if self.slot >= self.ring.parts.count {
            self.slot -= self.ring.parts.count;
        }
    }

    /// Publishes the local `head` and rings the producer's bell.
    #[inline]
    fn publish(&self) {
        let body = self.ring.body();
        // Release: pairs with the Acquire load of `head` in
        // `Producer::refresh_head`: our slot reads are done before the
        // producer overwrites them.
        body.head.pos.store(self.head, Ordering::Release);
        body.control.not_full.ring();
    }
}

impl<T> Drop for Consumer<'_, T> {
    fn drop(&mut self) {
        let c = &self.ring.parts.body.control;
        // Release inside `release`: a producer that sees the closed role also
        // sees our last `head`.
        c.consumer.release(self.held);
        // Fenced, armed or not: the producer must see the release.
        c.not_full.ec.notify_all();
    }
}

/// The oldest value of a [`Consumer`], borrowed in place; see
/// [`Consumer::read_slot`]. Dropping it frees the slot, as
/// [`release`](Self::release) does.
pub struct ReadSlot<'c, 'a, T: Pod> {
    consumer: &'c mut Consumer<'a, T>,
}

impl<T: Pod> ReadSlot<'_, '_, T> {
    /// Frees the slot (the same as dropping the guard).
    pub fn release(self) {}
}

impl<T: Pod> Deref for ReadSlot<'_, '_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the consumer's cursor is < capacity; the slot is published
        // (checked by `read_slot` against an Acquire load of tail) and the
        // producer does not touch it until this guard frees it.
        unsafe { &*self.consumer.ring.slot(self.consumer.slot).0.get() }
    }
}

impl<T: Pod> Drop for ReadSlot<'_, '_, T> {
    fn drop(&mut self) {
        self.consumer.advance(1);
        self.consumer.publish();
    }
}

impl<T: Pod> fmt::Debug for ReadSlot<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadSlot")
            .field("position", &self.consumer.head)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
pub(crate) mod test_mem {
    //! 128-aligned heap memory for tests.
    extern crate std;
    use std::boxed::Box;
    use std::vec;

    /// 128-aligned chunk of a test buffer.
    #[repr(C, align(128))]
    #[derive(Clone, Copy)]
    pub(crate) struct Line(pub(crate) [u8; 128]);

    /// A zeroed, 128-aligned buffer of at least `bytes` bytes.
    pub(crate) fn buf(bytes: usize) -> Box<[Line]> {
        vec![Line([0; 128]); bytes.div_ceil(128).max(1)].into_boxed_slice()
    }

    /// The buffer as bytes.
    pub(crate) fn bytes(b: &mut [Line]) -> &mut [u8] {
        // SAFETY: Line is 128 plain bytes with no padding.
        unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len() * 128) }
    }

    /// A leaked buffer, for loom threads that need `'static`.
    #[allow(dead_code)]
    pub(crate) fn leak(bytes_len: usize) -> &'static mut [u8] {
        bytes(Box::leak(buf(bytes_len)))
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    extern crate std;
    use super::test_mem::{buf, bytes};
    use super::*;
    use std::format;
    use std::vec::Vec;

    fn with_ring<T: Pod, R>(cap: u64, f: impl FnOnce(SpscRing<'_, T>) -> R) -> R {
        let mut b = buf(SpscRing::<T>::memory_size(cap).unwrap());
        let r = Region::from_mut_slice(bytes(&mut b));
        f(SpscRing::<T>::create(r, cap).unwrap())
    }

    #[test]
    fn fifo_and_wrap_around_many_times() {
        for cap in [1u64, 2, 3, 5, 7, 8, 64] {
            with_ring::<u64, _>(cap, |ring| {
                let (mut tx, mut rx) = ring.split().unwrap();
                let mut next_in = 0u64;
                let mut next_out = 0u64;
                // Pushes in bursts of varying size, so both cursors wrap
                // many times at every offset.
                for round in 0..(50 * cap + 17) {
                    let burst = round % (cap + 1);
                    for _ in 0..burst {
                        match tx.try_push(next_in) {
                            Ok(()) => next_in += 1,
                            Err(PushError::Full(v)) => {
                                assert_eq!(v, next_in);
                                assert_eq!(next_in - next_out, cap);
                                break;
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    assert_eq!(ring.len(), next_in - next_out);
                    let take = (round * 7) % (cap + 1);
                    for _ in 0..take {
                        match rx.try_pop() {
                            Ok(v) => {
                                assert_eq!(v, next_out);
                                next_out += 1;
                            }
                            Err(PopError::Empty) => {
                                assert_eq!(next_in, next_out);
                                break;
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
                while let Ok(v) = rx.try_pop() {
                    assert_eq!(v, next_out);
                    next_out += 1;
                }
                assert_eq!(next_in, next_out);
                assert!(next_in > 10 * cap);
            });
        }
    }

    #[test]
    fn capacity_one_edges() {
        with_ring::<u32, _>(1, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            assert!(ring.is_empty() && !ring.is_full());
            assert!(rx.is_empty());
            assert_eq!(rx.try_pop(), Err(PopError::Empty));
            tx.try_push(1).unwrap();
            assert!(ring.is_full() && tx.is_full());
            assert_eq!(tx.free_slots(), 0);
            assert_eq!(tx.try_push(2).unwrap_err().into_inner(), 2);
            assert!(tx.write_slot().is_none());
            assert_eq!(rx.len(), 1);
            assert_eq!(rx.peek(), Some(1));
            assert_eq!(rx.try_pop(), Ok(1));
            assert_eq!(tx.free_slots(), 1);
            assert!(!tx.is_full());
            assert_eq!(rx.peek(), None);
        });
    }

    #[test]
    fn large_and_odd_capacities() {
        with_ring::<u16, _>(100_003, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            for round in 0..3u32 {
                for i in 0..100_003u32 {
                    tx.try_push((i ^ round) as u16).unwrap();
                }
                assert!(tx.try_push(0).unwrap_err().is_full());
                for i in 0..100_003u32 {
                    assert_eq!(rx.try_pop(), Ok((i ^ round) as u16));
                }
                assert_eq!(rx.try_pop(), Err(PopError::Empty));
            }
        });
    }

    #[test]
    fn zero_sized_and_over_aligned_elements() {
        with_ring::<(), _>(3, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            for _ in 0..3 {
                tx.try_push(()).unwrap();
            }
            assert!(tx.try_push(()).unwrap_err().is_full());
            assert_eq!(rx.pop_slice(&mut [(); 5]), 3);
            assert_eq!(tx.push_slice(&[(); 4]), 3);
        });
        #[derive(Clone, Copy, PartialEq, Debug, bytemuck::Zeroable, bytemuck::Pod)]
        #[repr(C, align(64))]
        struct Line64([u64; 8]);
        with_ring::<Line64, _>(3, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            for round in 0..5u64 {
                assert_eq!(tx.push_slice(&[Line64([round; 8]); 2]), 2);
                let s = rx.read_slot().unwrap();
                assert_eq!(&*s as *const Line64 as usize % 64, 0);
                assert_eq!(*s, Line64([round; 8]));
                drop(s);
                assert_eq!(rx.try_pop(), Ok(Line64([round; 8])));
            }
        });
    }

    #[test]
    fn memory_size_and_invalid_capacity() {
        assert_eq!(SpscRing::<u64>::memory_size(0), None);
        assert_eq!(SpscRing::<u64>::memory_size(MAX_CAPACITY + 1), None);
        assert_eq!(SpscRing::<u8>::memory_size(3), Some(512 + 8));
        let mut b = buf(4096);
        let r = Region::from_mut_slice(bytes(&mut b));
        assert_eq!(
            SpscRing::<u64>::create(r, 0).unwrap_err(),
            InitError::InvalidCapacity { capacity: 0 }
        );
        assert!(matches!(
            SpscRing::<u64>::create(r, 1000).unwrap_err(),
            InitError::TooSmall { .. }
        ));
        #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
        #[repr(C, align(256))]
        struct Huge([u8; 256]);
        assert_eq!(SpscRing::<Huge>::memory_size(1), None);
        assert_eq!(
            SpscRing::<Huge>::create(r, 1).unwrap_err(),
            InitError::UnsupportedType
        );
        assert!(matches!(
            SpscRing::<Huge>::attach(r).unwrap_err(),
            AttachError::TypeMismatch { .. }
        ));
    }

    #[test]
    fn slices_across_the_wrap() {
        with_ring::<u32, _>(5, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            let mut expect = 0u32;
            let mut next = 0u32;
            let mut out = [0u32; 7];
            for round in 0..40usize {
                let want = round % 8;
                let src: Vec<u32> = (next..next + want as u32).collect();
                let free = 5 - (next - expect) as usize;
                let n = tx.push_slice(&src);
                assert_eq!(n, want.min(free));
                next += n as u32;
                let take = (round * 3) % 8;
                let m = rx.pop_slice(&mut out[..take.min(7)]);
                for v in &out[..m] {
                    assert_eq!(*v, expect);
                    expect += 1;
                }
            }
            // Fill completely: a partial batch when there is less room.
            let free = tx.free_slots() as usize;
            let src: Vec<u32> = (next..next + 9).collect();
            assert_eq!(tx.push_slice(&src), free);
            assert_eq!(tx.push_slice(&src), 0);
            next += free as u32;
            let m = rx.pop_slice(&mut out);
            assert_eq!(m, 5);
            for v in &out[..m] {
                assert_eq!(*v, expect);
                expect += 1;
            }
            assert_eq!(expect, next);
            assert_eq!(rx.pop_slice(&mut out), 0);
            assert_eq!(tx.push_slice(&[]), 0);
        });
    }

    #[test]
    fn write_slot_commit_and_abort() {
        with_ring::<[u32; 4], _>(2, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            {
                let mut s = tx.write_slot().unwrap();
                *s = [9; 4];
                // dropped: nothing published
            }
            assert_eq!(rx.try_pop(), Err(PopError::Empty));
            let mut s = tx.write_slot().unwrap();
            s[0] = 1;
            s[1] = 2;
            assert_eq!(s[3], 9, "stale data of the aborted write");
            s.commit();
            tx.try_push([3; 4]).unwrap();
            assert!(tx.write_slot().is_none());
            {
                let r = rx.read_slot().unwrap();
                assert_eq!(r[..2], [1, 2]);
                // dropping releases
            }
            let r = rx.read_slot().unwrap();
            assert_eq!(*r, [3; 4]);
            r.release();
            assert!(rx.read_slot().is_none());
            assert!(tx.write_slot().is_some());
        });
    }

    #[test]
    fn roles_are_unique_and_reclaimable() {
        with_ring::<u8, _>(4, |ring| {
            let me = crate::sync::current_pid();
            let tx = ring.producer().unwrap();
            assert_eq!(tx.claimed(), Claimed::Fresh);
            assert_eq!(ring.producer().unwrap_err(), RoleTaken { pid: me });
            assert_eq!(ring.split().unwrap_err(), RoleTaken { pid: me });
            let rx = ring.consumer().unwrap();
            assert_eq!(ring.consumer().unwrap_err(), RoleTaken { pid: me });
            drop(tx);
            drop(rx);
            let (tx, rx) = ring.split().unwrap();
            assert_eq!(
                (tx.claimed(), rx.claimed()),
                (Claimed::Fresh, Claimed::Fresh)
            );
        });
    }

    #[test]
    fn dead_holder_is_taken_over_and_value_redelivered() {
        with_ring::<u64, _>(4, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            tx.try_push(10).unwrap();
            tx.try_push(11).unwrap();
            // A consumer "dies" while holding a read slot: forget the guard
            // and the handle, then make the role word name a dead pid.
            let s = rx.read_slot().unwrap();
            assert_eq!(*s, 10);
            core::mem::forget(s);
            core::mem::forget(rx);
            let dead = (1 << 22) - 7; // started at tick 5: cannot be alive
            ring.parts.body.control.consumer.claim().unwrap_err();
            force_role(&ring.parts.body.control.consumer, dead);
            let mut rx2 = ring.consumer().unwrap();
            assert_eq!(rx2.claimed(), Claimed::FromDead(dead));
            assert_eq!(rx2.try_pop(), Ok(10), "at-least-once: read again");
            assert_eq!(rx2.try_pop(), Ok(11));
            drop(tx);
        });
    }

    #[test]
    fn hand_over_and_take_over_keep_the_stream() {
        with_ring::<u64, _>(4, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            tx.try_push(1).unwrap();
            tx.try_push(2).unwrap();
            assert_eq!(rx.try_pop(), Ok(1));
            assert!(!ring.in_hand_over());
            let holder = tx.hand_over().unwrap();
            assert!(ring.in_hand_over());
            // In transit: still held, the consumer does not see it gone.
            assert_eq!(rx.try_pop(), Ok(2));
            assert_eq!(rx.try_pop(), Err(PopError::Empty));
            assert_eq!(ring.producer().unwrap_err(), RoleTaken { pid: holder });
            assert!(ring.take_over_producer(holder + 1).is_none());
            let mut tx = ring.take_over_producer(holder).unwrap();
            assert!(!ring.in_hand_over());
            assert_eq!(tx.claimed(), Claimed::Fresh);
            assert!(ring.take_over_producer(holder).is_none(), "taken once");
            tx.try_push(3).unwrap();
            assert_eq!(rx.try_pop(), Ok(3));
            let holder = rx.hand_over().unwrap();
            let mut rx = ring.take_over_consumer(holder).unwrap();
            tx.try_push(4).unwrap();
            assert_eq!(rx.try_pop(), Ok(4));
            drop(tx);
            assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
            // A released role is not taken over (the token was used up).
            assert!(ring.take_over_producer(holder).is_none());
        });
    }

    /// Overwrites a role word (as a dead process would have left it).
    /// Makes `r` look held by process `pid`, dead (its start time is one
    /// no process of that pid has).
    fn force_role(r: &RoleWord, pid: u32) {
        r.force(crate::role::dead_identity(pid));
    }

    #[test]
    fn drop_producer_then_consumer_drains_then_disconnected() {
        with_ring::<u64, _>(4, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            tx.try_push(1).unwrap();
            tx.try_push(2).unwrap();
            drop(tx);
            assert_eq!(rx.try_pop(), Ok(1));
            assert_eq!(rx.pop(), Ok(2));
            assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
            assert_eq!(rx.pop(), Err(PopError::Disconnected));
            assert_eq!(
                rx.pop_timeout(Duration::from_millis(1)),
                Err(PopError::Disconnected)
            );
            // A new producer resumes the ring.
            let mut tx = ring.producer().unwrap();
            tx.try_push(3).unwrap();
            assert_eq!(rx.try_pop(), Ok(3));
        });
    }

    #[test]
    fn drop_consumer_then_full_producer_is_disconnected() {
        with_ring::<u64, _>(2, |ring| {
            let (mut tx, rx) = ring.split().unwrap();
            drop(rx);
            tx.try_push(1).unwrap(); // room: pushes are not checked
            tx.try_push(2).unwrap();
            assert!(tx.try_push(3).unwrap_err().is_disconnected());
            assert!(tx.push(3).unwrap_err().is_disconnected());
        });
    }

    #[test]
    fn dead_peer_is_noticed_by_blocking_calls() {
        with_ring::<u64, _>(1, |ring| {
            let (mut tx, rx) = ring.split().unwrap();
            core::mem::forget(rx);
            force_role(&ring.parts.body.control.consumer, (1 << 22) - 9);
            tx.try_push(1).unwrap();
            // Full, consumer dead but not closed: try_push says Full, the
            // blocking push notices the death.
            assert!(tx.try_push(2).unwrap_err().is_full());
            assert!(tx.push(2).unwrap_err().is_disconnected());
        });
        with_ring::<u64, _>(1, |ring| {
            let (tx, mut rx) = ring.split().unwrap();
            core::mem::forget(tx);
            force_role(&ring.parts.body.control.producer, (1 << 22) - 9);
            assert_eq!(rx.try_pop(), Err(PopError::Empty));
            assert_eq!(rx.pop(), Err(PopError::Disconnected));
        });
    }

    #[test]
    fn timeouts_return_full_and_empty() {
        with_ring::<u64, _>(1, |ring| {
            let (mut tx, mut rx) = ring.split().unwrap();
            tx.set_spin(Spin::NONE);
            rx.set_spin(Spin::for_duration(Duration::from_micros(10)));
            assert_eq!(
                rx.pop_timeout(Duration::from_millis(30)),
                Err(PopError::Empty)
            );
            assert_eq!(
                rx.pop_deadline(Some(Deadline::after(Duration::ZERO))),
                Err(PopError::Empty)
            );
            tx.push_timeout(1, Duration::ZERO).unwrap();
            let e = tx.push_timeout(2, Duration::from_millis(30)).unwrap_err();
            assert!(matches!(e, PushError::Full(2)));
            assert!(tx
                .push_deadline(2, Some(Deadline::after(Duration::ZERO)))
                .unwrap_err()
                .is_full());
            assert_eq!(rx.pop_timeout(Duration::ZERO), Ok(1));
        });
    }

    #[test]
    fn attach_validates() {
        let mut b = buf(4096);
        let r = Region::from_mut_slice(bytes(&mut b));
        assert_eq!(
            SpscRing::<u64>::attach(r).unwrap_err(),
            AttachError::NotReady
        );
        assert_eq!(
            SpscRing::<u64>::attach_timeout(r, Duration::from_millis(5)).unwrap_err(),
            AttachError::NotReady
        );
        let ring = SpscRing::<u64>::create_tagged(r, 10, 77).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.try_push(5).unwrap();
        let other = SpscRing::<u64>::attach_tagged(r, 77).unwrap();
        assert_eq!(other.capacity(), 10);
        assert_eq!(other.len(), 1);
        let mut rx = other.consumer().unwrap();
        assert_eq!(rx.try_pop(), Ok(5));
        assert!(SpscRing::<u64>::attach_tagged_timeout(r, 77, Duration::ZERO).is_ok());
        assert!(matches!(
            SpscRing::<u64>::attach(r).unwrap_err(),
            AttachError::TypeMismatch { .. }
        ));
        assert!(matches!(
            SpscRing::<u64>::attach_tagged(r, 78).unwrap_err(),
            AttachError::TypeMismatch { .. }
        ));
        assert!(matches!(
            SpscRing::<u32>::attach_tagged(r, 77).unwrap_err(),
            AttachError::TypeMismatch { .. }
        ));
        assert!(matches!(
            crate::mpmc::MpmcRing::<u64>::attach_tagged(r, 77).unwrap_err(),
            AttachError::KindMismatch { .. }
        ));
        assert_eq!(
            SpscRing::<u64>::create(r, 10).unwrap_err(),
            InitError::AlreadyInitialized
        );
    }

    /// Writes `v` at byte offset `off` of the region (a hostile process).
    fn poke(mem: &mut [u8], off: usize, v: u64) {
        mem[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn corrupt_indices_are_reported_never_out_of_bounds() {
        const TAIL: usize = 128;
        const HEAD: usize = 256;
        for (tail, head) in [
            (100u64, 0u64),
            (0, 5),
            (u64::MAX, 3),
            (7, 7 + (1 << 40)),
            (u64::MAX, u64::MAX - 4), // valid: 4 in a ring of 4, near wrap
        ] {
            let mut b = buf(4096);
            let mem = bytes(&mut b);
            let cap = 4u64;
            {
                let r = Region::from_mut_slice(&mut *mem);
                SpscRing::<u64>::create(r, cap).unwrap();
            }
            poke(mem, TAIL, tail);
            poke(mem, HEAD, head);
            let r = Region::from_mut_slice(&mut *mem);
            let ring = SpscRing::<u64>::attach(r).unwrap();
            assert!(ring.len() <= cap);
            let (mut tx, mut rx) = ring.split().unwrap();
            let valid = tail.wrapping_sub(head) <= cap;
            let pushed = tx.try_push(1);
            let popped = rx.try_pop();
            if valid {
                assert!(pushed.is_err(), "ring of 4 holding 4 is full");
                assert!(popped.is_ok());
                assert_eq!(tx.push_slice(&[1, 2]), 1);
                let mut out = [0; 8];
                assert_eq!(rx.pop_slice(&mut out), 4);
            } else {
                assert!(matches!(pushed, Err(PushError::Corrupt(1))), "{pushed:?}");
                assert_eq!(popped, Err(PopError::Corrupt));
                assert_eq!(tx.push_slice(&[1, 2, 3]), 0);
                assert_eq!(rx.pop_slice(&mut [0; 3]), 0);
                assert!(tx.write_slot().is_none());
                assert!(rx.read_slot().is_none());
                assert_eq!(rx.len(), 0);
                assert_eq!(tx.free_slots(), 0);
                assert!(tx.push(1).unwrap_err().into_inner() == 1);
                assert_eq!(rx.pop(), Err(PopError::Corrupt));
            }
        }
        // Corruption that appears while running: the consumer's refresh
        // catches it, the producer's own index is local and unaffected.
        let mut b = buf(4096);
        let mem = bytes(&mut b);
        let mem_ptr = mem.as_mut_ptr();
        let r = Region::from_mut_slice(mem);
        let ring = SpscRing::<u64>::create(r, 4).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.try_push(1).unwrap();
        assert_eq!(rx.try_pop(), Ok(1));
        // SAFETY: test-only hostile write through the atomic's address.
        unsafe { &*(mem_ptr.add(TAIL) as *const AtomicU64) }.store(1000, Ordering::Relaxed);
        assert_eq!(rx.try_pop(), Err(PopError::Corrupt));
    }

    #[test]
    fn errors_format() {
        assert_eq!(
            format!("{:?}", PushError::Disconnected(1)),
            "Disconnected(..)"
        );
        assert_eq!(format!("{:?}", PushError::Corrupt(1)), "Corrupt(..)");
        assert_eq!(
            format!("{}", PushError::Corrupt(())),
            "ring indices are corrupt"
        );
        assert_eq!(
            format!("{}", PopError::Disconnected),
            "ring is disconnected"
        );
        assert_eq!(format!("{}", PopError::Empty), "ring is empty");
        let e: &dyn core::error::Error = &PushError::Full(0u8);
        assert_eq!(format!("{e}"), "ring is full");
        assert!(format!("{:?}", SpscRing::<u8>::memory_size(1)).starts_with("Some"));
    }

    #[test]
    fn two_thread_stress_with_checksum() {
        const N: u64 = 100_000;
        // `spin` NONE sends every wait through the bells and naps.
        for (cap, batch, spin) in [
            (1u64, false, Spin::DEFAULT),
            (1, false, Spin::NONE),
            (7, false, Spin::DEFAULT),
            (64, true, Spin::NONE),
            (64, true, Spin::DEFAULT),
            (1024, false, Spin::NONE),
        ] {
            with_ring::<[u64; 2], _>(cap, |ring| {
                let (mut tx, mut rx) = ring.split().unwrap();
                tx.set_spin(spin);
                rx.set_spin(spin);
                std::thread::scope(|s| {
                    s.spawn(move || {
                        if batch {
                            let mut i = 0;
                            let mut buf = Vec::new();
                            while i < N {
                                buf.clear();
                                buf.extend((i..(i + 13).min(N)).map(|k| [k, k * 3]));
                                let mut off = 0;
                                while off < buf.len() {
                                    let n = tx.push_slice(&buf[off..]);
                                    if n == 0 {
                                        tx.push(buf[off]).unwrap();
                                        off += 1;
                                    }
                                    off += n;
                                }
                                i += buf.len() as u64;
                            }
                        } else {
                            for i in 0..N {
                                if i % 3 == 0 {
                                    let mut s = loop {
                                        if let Some(s) = tx.write_slot() {
                                            break s;
                                        }
                                        std::thread::yield_now();
                                    };
                                    *s = [i, i * 3];
                                    s.commit();
                                } else {
                                    tx.push([i, i * 3]).unwrap();
                                }
                            }
                        }
                    });
                    let mut sum = 0u64;
                    let mut expect = 0u64;
                    let mut out = [[0u64; 2]; 9];
                    while expect < N {
                        let got: &[[u64; 2]] = if batch && expect % 2 == 0 {
                            let n = rx.pop_slice(&mut out);
                            if n == 0 {
                                out[0] = rx.pop().unwrap();
                                &out[..1]
                            } else {
                                &out[..n]
                            }
                        } else if expect % 5 == 0 {
                            let r = rx.read_slot().map(|s| *s);
                            match r {
                                Some(v) => {
                                    out[0] = v;
                                    &out[..1]
                                }
                                None => continue,
                            }
                        } else {
                            out[0] = rx.pop().unwrap();
                            &out[..1]
                        };
                        for v in got {
                            assert_eq!(v[0], expect);
                            assert_eq!(v[1], expect * 3);
                            sum = sum.wrapping_add(v[0] ^ v[1]);
                            expect += 1;
                        }
                    }
                    let want = (0..N).fold(0u64, |a, k| a.wrapping_add(k ^ (k * 3)));
                    assert_eq!(sum, want);
                    assert_eq!(rx.pop(), Err(PopError::Disconnected));
                });
            });
        }
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::test_mem::leak;
    use super::*;
    use loom::thread;

    fn ring(cap: u64) -> SpscRing<'static, u64> {
        let mem = leak(SpscRing::<u64>::memory_size(cap).unwrap());
        SpscRing::create(Region::from_mut_slice(mem), cap).unwrap()
    }

    /// A 2-slot ring, 3 values: they arrive in order, and loom checks that
    /// no slot is read while written (no data race).
    #[test]
    fn spsc_try_push_pop_in_order() {
        loom::model(|| {
            let r = ring(2);
            let (mut tx, mut rx) = r.split().unwrap();
            let t = thread::spawn(move || {
                for i in 1..=3u64 {
                    let mut v = i;
                    loop {
                        match tx.try_push(v) {
                            Ok(()) => break,
                            Err(PushError::Full(back)) => {
                                v = back;
                                thread::yield_now();
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
            });
            let mut next = 1;
            while next <= 3 {
                match rx.try_pop() {
                    Ok(v) => {
                        assert_eq!(v, next);
                        next += 1;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
            t.join().unwrap();
        });
    }

    /// Blocking push on a full 1-slot ring and blocking pop on an empty one
    /// wake each other through the bells: a lost wake-up would be a loom
    /// deadlock (naps end only by notifications in the model).
    #[test]
    fn spsc_blocking_no_lost_wakeup() {
        loom::model(|| {
            let r = ring(1);
            let (mut tx, mut rx) = r.split().unwrap();
            tx.set_spin(Spin::NONE);
            rx.set_spin(Spin::NONE);
            let t = thread::spawn(move || {
                for i in 1..=3u64 {
                    tx.push(i).unwrap();
                }
            });
            for i in 1..=3u64 {
                assert_eq!(rx.pop(), Ok(i));
            }
            t.join().unwrap();
        });
    }

    /// Dropping the producer wakes a consumer blocked on the empty ring,
    /// which drains and then sees Disconnected.
    #[test]
    fn spsc_drop_producer_wakes_and_disconnects() {
        loom::model(|| {
            let r = ring(2);
            // The producer is claimed by the thread that drops it: a
            // release is a CAS from the holder's own identity, which
            // differs per thread under loom.
            let mut rx = r.consumer().unwrap();
            rx.set_spin(Spin::NONE);
            let t = thread::spawn(move || {
                let mut tx = r.producer().unwrap();
                tx.try_push(7).unwrap();
                drop(tx);
            });
            assert_eq!(rx.pop(), Ok(7));
            assert_eq!(rx.pop(), Err(PopError::Disconnected));
            t.join().unwrap();
        });
    }

    /// The producer role moves between threads (loom's stand-in for
    /// processes) by hand-over while the consumer pops: every value
    /// arrives once, in order, and the taker sees the tail the first
    /// holder published (Release in `hand_over`, Acquire in `take_over`).
    #[test]
    fn spsc_hand_over_producer() {
        loom::model(|| {
            let r = ring(2);
            let (mut tx, mut rx) = r.split().unwrap();
            tx.try_push(1).unwrap();
            let holder = tx.hand_over().unwrap();
            let t = thread::spawn(move || {
                let mut tx = r.take_over_producer(holder).unwrap();
                assert!(r.take_over_producer(holder).is_none());
                let mut v = 2;
                loop {
                    match tx.try_push(v) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => {
                            v = back;
                            thread::yield_now();
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            });
            let mut next = 1;
            loop {
                match rx.try_pop() {
                    Ok(v) => {
                        assert_eq!(v, next);
                        next += 1;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(PopError::Disconnected) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
            assert_eq!(next, 3);
            t.join().unwrap();
        });
    }

    /// In-place write and read guards over a 1-slot ring.
    #[test]
    fn spsc_slots_in_place() {
        loom::model(|| {
            let r = ring(1);
            let (mut tx, mut rx) = r.split().unwrap();
            let t = thread::spawn(move || {
                for i in 1..=2u64 {
                    loop {
                        if let Some(mut s) = tx.write_slot() {
                            *s = i;
                            s.commit();
                            break;
                        }
                        thread::yield_now();
                    }
                }
            });
            let mut next = 1;
            while next <= 2 {
                match rx.read_slot() {
                    Some(s) => {
                        assert_eq!(*s, next);
                        next += 1;
                    }
                    None => thread::yield_now(),
                }
            }
            t.join().unwrap();
        });
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_dead_peer;
