//! A bounded multi-producer multi-consumer ring of `T: Pod` in a shared
//! region (Dmitry Vyukov's bounded queue, with per-slot sequence numbers):
//! the `Queue` that any number of processes push into and pop from.
//!
//! [`MpmcRing`] is a `Copy` view that every process and thread uses through
//! `&self`; there are no roles. Values are copied in and out, or written and
//! read in place with [`MpmcRing::try_push_with`]/[`MpmcRing::try_pop_with`].
//!
//! # Examples
//!
//! ```
//! use multiproc_core::mpmc::{MpmcRing, PopError};
//! use multiproc_core::region::Region;
//!
//! #[repr(C, align(128))]
//! struct Mem([u8; 4096]);
//! let mut mem = Box::new(Mem([0; 4096]));
//! let ring = MpmcRing::<u64>::create(Region::from_mut_slice(&mut mem.0), 10).unwrap();
//! // Another process would call `MpmcRing::<u64>::attach(region)`.
//!
//! let total = std::thread::scope(|s| {
//!     let consumers: Vec<_> = (0..2)
//!         .map(|_| {
//!             s.spawn(move || {
//!                 let mut sum = 0;
//!                 // Pops block while empty; after `close`, they drain and stop.
//!                 while let Ok(v) = ring.pop() {
//!                     sum += v;
//!                 }
//!                 sum
//!             })
//!         })
//!         .collect();
//!     let producers: Vec<_> = (0..2u64)
//!         .map(|p| s.spawn(move || (0..500).for_each(|i| ring.push(p * 500 + i).unwrap())))
//!         .collect();
//!     producers.into_iter().for_each(|h| h.join().unwrap());
//!     ring.close();
//!     consumers.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(total, 999 * 1000 / 2);
//! assert_eq!(ring.try_pop(), Err(PopError::Disconnected));
//! ```
//!
//! # Layout
//!
//! ```text
//!  0         128           256           384              512
//!  +---------+-------------+-------------+----------------+---------------------------+
//!  | header  | tail: u64   | head: u64   | not_empty ec   | Slot 0     | Slot 1 | ... |
//!  | (kind   | next push   | next pop    | not_full ec    | seq: u64   |        |     |
//!  |  Mpmc)  | + CLOSED bit| position    | empty_sleepers | owner: u64 |        |     |
//!  |         |             |             | full_sleepers  | value: T   |        |     |
//!  |         |             |             | closed (hint)  |            |        |     |
//!  +---------+-------------+-------------+----------------+---------------------------+
//! ```
//!
//! A slot is `seq` (below), `owner` (the identity word of the process
//! that owns the slot now, or 0: see "Processes killed in the middle of an
//! operation") and the value, padded to the value's alignment: 24 bytes for
//! a `u64`. Positions are free-running u64 counters; position `p` uses slot
//! `p % capacity` (a mask when the capacity is a power of two, a division
//! otherwise: the choice is made once, when the view is built).
//!
//! # Slot states
//!
//! Each slot's `seq` word tells who may use it next, for the position `p`
//! that maps to it, and who is using it now:
//!
//! ```text
//!   63        62     61 ........ 40   39 ............. 0
//!   SKIPPED | BUSY | owner pid (22) | stamp (f or 2p + 1, mod 2^40)
//! ```
//!
//! where `f`, the stamp of "free for `p`", is `2p`, except in the first
//! lap (`p < cap`), where it is 0: the all-zero slot is `F(i)` for every
//! slot `i`. A ring in freshly zeroed memory is therefore created by
//! writing its header and body only
//! ([`Region::assume_zeroed`](crate::region::Region::assume_zeroed)): its
//! slots' pages are not touched until used; a zero `owner` is "nobody",
//! as a free slot's must be. (A first-lap `F` or `W` then
//! compares below every later stamp of its slot, as `2p` did.)
//!
//! | state | `seq` | meaning | next step |
//! |---|---|---|---|
//! | `F(p)` | `f` | free for the producer of `p` | producer: CAS `tail` from `p`, then CAS `seq` to `W` |
//! | `W(p, pid)` | `BUSY \| pid \| f` | process `pid` writes the value of `p` (its identity in `owner`) | owner: store `V` (or `S` if its closure panics) |
//! | `V(p)` | `2p + 1` | holds the value of `p` | consumer: CAS `seq` to `R`, then move `head` past `p` |
//! | `S(p)` | `SKIPPED \| 2p + 1` | published without a value | consumer: CAS `seq` to `F(p + cap)`, move `head` |
//! | `R(p, pid)` | `BUSY \| pid \| 2p + 1` | process `pid` reads the value of `p` (its identity in `owner`) | owner: store `F(p + cap)` |
//!
//! A producer claims its position on `tail`, which stays the authority on
//! what was claimed (and carries the closed flag), then *takes* the slot by
//! a CAS that records its pid (then its identity, in `owner`). A consumer
//! claims by the slot CAS itself and then moves `head` on; whoever finds a
//! taken slot at `head` helps move it (so `head` lags by the runs being
//! taken, never more). Stamps are doubled positions so that "holds `p`" and
//! "free for `p + cap`" differ even for a capacity of 1, where Vyukov's
//! original `p + 1` and `p + cap` coincide; they are compared as signed
//! 40-bit distances, which the capacity limit of 2^32 keeps unambiguous.
//!
//! The data is accessed only by the owner of a `W` or `R` slot, between
//! the CAS that took it (Acquire) and the store that hands it on (Release),
//! so a slot's value is never accessed by two sides at once. Bit 63 of
//! `tail` is the closed flag, so no push can be claimed after
//! [`close`](MpmcRing::close) (the CAS fails), and a consumer that finds
//! `F(head)` with the flag and `head == tail` knows for certain that
//! nothing more will arrive. (The authoritative flag lives in `tail` rather
//! than in a separate word for that reason: with a separate flag, a push
//! that read "open" just before a close could still land after a consumer
//! concluded "closed and drained". The control line's `closed` word only
//! mirrors it, so that a pop finding the ring empty need not read the
//! producers' `tail` line.) Positions stay below 2^62 for centuries of
//! pushes at one per nanosecond.
//!
//! # Blocking
//!
//! `push`/`pop` spin ([`Spin`], chosen per view with
//! [`with_spin`](MpmcRing::with_spin)), then count themselves in
//! `empty_sleepers`/`full_sleepers` and sleep on the not-empty/not-full
//! [`EventCount`]. After each push, a producer loads `empty_sleepers` and,
//! only if it is not 0, wakes one consumer (a value satisfies one); pops do
//! the same for producers; batches and `close` wake all.
//!
//! That check costs a plain load, not a fence: its ordering comes from the
//! claim CAS that precedes it (on `tail` for a push, on the slot for a pop),
//! which is `SeqCst` (a `lock`ed instruction on x86 anyway). Against a
//! sleeper that counts itself, fences, then reads the word we CAS'd, either
//! we see the count or it sees our claim (the proof is
//! at `sleepers` in the source). So a sleeper that finds the ring idle (no
//! claim in flight) can sleep until notified. One that finds a claim not yet
//! published (or freed) polls for about a microsecond (the publish is
//! usually that close), then naps (50 µs, doubling up to 20 ms), because
//! that claimer may have checked before the sleeper counted itself: it sees
//! the value at the end of the nap at the latest. Under loom, where `SeqCst`
//! loads are modelled as acquire loads, the check gets a fence placed after
//! the publishing store, which makes even in-flight waits exact; the model
//! checks that no wake-up is lost.
//!
//! # Processes killed in the middle of an operation
//!
//! Vyukov's ring hands slots out in position order, so one slot that is
//! never published stops every consumer at it, and one never freed stops
//! every producer one lap later. Each state says who can move a slot on, so
//! a blocked call that finds its slot held for a whole nap recovers it,
//! with a CAS from exactly the word it found (a slot that moved on
//! meanwhile is left alone):
//!
//! - `F(p)` with `tail` past `p`: a producer claimed `p` and has not taken
//!   the slot (it was preempted, or killed between its two CASes). The
//!   consumer *steals* the claim (`F` to `S`). This is safe whatever the
//!   producer's state: it has written nothing, and if alive it fails to
//!   take the slot and pushes at another position.
//! - `W(p, pid)` whose owner is dead: the producer died writing. Its value was
//!   never complete; the consumer makes the slot `S` and steps over it.
//! - `R(p, pid)` whose owner is dead: the consumer died reading, and its value
//!   is lost with it. A producer one lap later frees the slot.
//!
//! A live owner's slot is never touched, however long it holds it (a long
//! closure in [`try_push_with`](MpmcRing::try_push_with) or
//! [`try_pop_with`](MpmcRing::try_pop_with) makes the others wait). Whether
//! an owner lives is asked (a read of `/proc` on Linux) only once a blocked
//! call has waited about a millisecond.
//!
//! Owners are known by their [identity](crate::identity) (pid plus start
//! time), not by their pid alone, which a new process may reuse within
//! milliseconds of a `kill -9`. `seq` has room for the pid only, so the
//! slot's `owner` word holds the identity: the owner stores it (a plain
//! store to the line its CAS just took) right after the CAS that took the
//! slot, and clears it to 0 right before the Release store that hands the
//! slot on. A recoverer that finds `W(p, pid)` or `R(p, pid)` reads `owner`
//! after an Acquire load of `seq`:
//!
//! - it names `pid`: that identity decides, and a process that merely
//!   reuses the pid fails it (its start time differs);
//! - 0 (the owner is between its take and its record, or between its clear
//!   and its hand-on, or was killed there): the pid alone decides, which
//!   can only err towards "alive".
//!
//! The recoverer clears `owner` (a CAS from exactly the record it judged
//! on) before its recovery CAS on `seq`, so a dead identity is never read
//! against a later owner that reuses the pid; why no stale identity can be
//! read at all is argued at `clear_dead_owner` in the source. What is left
//! of the pid's weakness is that window of a few instructions: an owner
//! killed inside it whose pid is reused before anyone looks holds its slot
//! until the new process exits. Where start times cannot be read (no
//! `/proc`), an identity is a pid. The non-blocking calls never recover
//! (`try_pop` reports [`PopError::Empty`] at such a slot); any blocking or
//! timed call does. A closure that *panics* is simpler still: its thread
//! lives and knows the claim is abandoned, so the slot becomes `S` (pushes)
//! or is freed (pops) at once.
//!
//! Under loom, recovery runs at the first sight of a held slot, so the
//! models check that stealing a live producer's claim at any moment is
//! harmless; three models kill a thread at each point of an operation, and
//! three more let a live thread take a dead thread's pid over (the dead
//! owner's slot is still recovered; the reuser's own slots never are).
//!
//! A process killed while blocked leaves its sleeper count (and the
//! eventcount's waiter count) raised: every later push (pop) then pays a
//! fenced notify and a wake system call. That is slower, never wrong.
//!
//! # Untrusted memory
//!
//! Slot indices are always reduced modulo the capacity taken from the
//! validated header, so garbage in `head`, `tail` or any `seq` can never
//! reach outside the region. It can make values appear lost, repeated or
//! stale, the ring look full or empty, or be reported as
//! [`PushError::Corrupt`]/[`PopError::Corrupt`] when a sequence number
//! contradicts the indices; no call loops forever on it.

use core::fmt;
use core::mem::align_of;
use core::time::Duration;

use bytemuck::Pod;

pub use crate::ring::{PopError, PushError};

use crate::identity::Identity;
use crate::region::{
    AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec, REGION_ALIGN,
};
use crate::ring::{nap, IndexLine, LIVENESS_SLICE};
use crate::sync::{
    current_identity, pid_alive, spin_loop, AtomicU32, AtomicU64, Ordering, UnsafeCell,
};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin};

/// Bit 63 of `tail`: the ring is closed.
pub(crate) const CLOSED: u64 = 1 << 63;
/// The nap length from which a blocked call, finding the slot it waits on
/// still owned, asks whether the owner process lives (a read of `/proc`).
pub(crate) const OWNER_CHECK_NAP: Duration = Duration::from_micros(800);
/// How many times a freshly blocked handle polls (with
/// spin hints, about a microsecond in all) before its first nap, whatever
/// its [`Spin`]. None under loom, whose notifiers are exact.
pub(crate) const GRACE_POLLS: u32 = if cfg!(multiproc_loom) { 0 } else { 32 };

/// The first nap of a blocked handle. Naps double up to
/// [`LIVENESS_SLICE`]; a notification ends them early.
pub(crate) const FIRST_NAP: Duration = Duration::from_micros(50);
/// `mask` value meaning "capacity is not a power of two: divide".
const NOT_POW2: u64 = u64::MAX;

// A slot's `seq` word (see "Slot states" in the module docs):
//
//   63        62     61 ........ 40   39 ............. 0
//   SKIPPED | BUSY | owner pid (22) | stamp (2p or 2p + 1, mod 2^40;
//   "free for p" is 0 in the first lap: see `MpmcRing::free`)

/// Bit 63 of a slot's `seq`: the slot was published without a value.
pub(crate) const SKIPPED: u64 = 1 << 63;
/// Bit 62 of a slot's `seq`: a process is writing (stamp `f`) or reading
/// (stamp `2p + 1`) the slot; its pid is in the owner bits.
pub(crate) const BUSY: u64 = 1 << 62;
/// Width of the stamp field.
const STAMP_BITS: u32 = 40;
/// The stamp field.
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;
/// The owner field, once shifted down: 22 bits hold every Linux pid
/// (`PID_MAX_LIMIT` is 2^22), the pid field of an identity word.
const OWNER_MASK: u64 = (1 << crate::identity::PID_BITS) - 1;
/// The largest capacity: stamps of one slot's consecutive laps, `2p` to
/// `2(p + cap) + 1`, must stay far apart in the 40-bit stamp space.
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;

/// The stamp "free for the producer of `pos`" after the first lap (see
/// [`MpmcRing::free`]).
#[inline]
pub(crate) const fn free_stamp(pos: u64) -> u64 {
    pos.wrapping_mul(2) & STAMP_MASK
}

/// The stamp of a slot holding the value of position `pos`.
#[inline]
pub(crate) const fn full_stamp(pos: u64) -> u64 {
    (pos.wrapping_mul(2) | 1) & STAMP_MASK
}

/// The stamp field of a `seq` word.
#[inline]
pub(crate) const fn stamp(seq: u64) -> u64 {
    seq & STAMP_MASK
}

/// `stamp - want` as a signed distance in the 40-bit stamp space.
#[inline]
pub(crate) const fn stamp_diff(stamp: u64, want: u64) -> i64 {
    ((stamp.wrapping_sub(want) << (64 - STAMP_BITS)) as i64) >> (64 - STAMP_BITS)
}

/// The `seq` word of a slot with stamp `stamp` that the process of
/// identity word `id` owns: its pid goes in the owner field. The word 0
/// (no identity: a pid that does not fit, which no supported system has)
/// records pid 0, "unknown": such a slot is never reclaimed.
#[inline(always)]
pub(crate) const fn busy(stamp: u64, id: u64) -> u64 {
    BUSY | (id & OWNER_MASK) << STAMP_BITS | stamp
}

/// The owner pid of a busy `seq` word (0: unknown).
#[inline]
pub(crate) const fn owner_pid(seq: u64) -> u32 {
    ((seq >> STAMP_BITS) & OWNER_MASK) as u32
}

/// Records the identity word `me` of the process that has just taken
/// `slot` (its `seq` CAS to `W` or `R` succeeded).
#[inline(always)]
fn record_owner<T>(slot: &Slot<T>, me: u64) {
    // Relaxed: a recoverer reads it after an Acquire load of `seq` that
    // found our hold; until it is visible, the recoverer judges by the pid
    // in `seq` (ours, alive while we are). The clear before our hand-on is
    // sequenced after it, so the record never outlives our hold.
    slot.owner.store(me, Ordering::Relaxed);
}

/// Clears `owner` before the owner's store that hands `slot` on (`W` to
/// `V`/`S`, `R` to `F`), which must be a Release store and follow at once.
#[inline(always)]
fn clear_owner<T>(slot: &Slot<T>) {
    // Relaxed: ordered by the Release store of `seq` that follows, which
    // every later taker's CAS acquires (directly or through the release
    // sequence of the slot's RMWs), and with it every recoverer that finds
    // a later hold: no later hold can be judged by our identity.
    slot.owner.store(0, Ordering::Relaxed);
}

/// Whether `capacity` is one an MPMC ring accepts.
#[inline]
pub(crate) fn valid_capacity(capacity: u64) -> bool {
    (1..=MAX_CAPACITY).contains(&capacity)
}

/// The line every operation reads (the sleeper counts) and only sleepers
/// write.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Control {
    /// Consumers sleep here while the ring is empty; pushes notify.
    pub(crate) not_empty: EventCount,
    /// Producers sleep here while the ring is full; pops notify.
    pub(crate) not_full: EventCount,
    /// Consumers in a blocking pop past their spin: pushes notify only
    /// while this is not 0.
    pub(crate) empty_sleepers: AtomicU32,
    /// Producers in a blocking push past their spin: pops notify only while
    /// this is not 0.
    pub(crate) full_sleepers: AtomicU32,
    /// 1 once the ring is closed: a read-mostly mirror of `tail`'s
    /// [`CLOSED`] bit (which stays the authority), so that a pop finding the
    /// ring empty need not pull the producers' `tail` line to rule out
    /// "closed and drained".
    pub(crate) closed: AtomicU32,
    _reserved: AtomicU32,
}

/// What a claim found instead of a position to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Full (push) or empty (pop), with nothing of the other kind in flight:
    /// whoever changes that will see a sleeper and notify.
    Idle,
    /// Full or empty only because another thread has claimed a position and
    /// not yet published (push) or freed (pop) its slot. It may not notify
    /// (it may have checked for sleepers before we counted ourselves): poll,
    /// and [`recover`](MpmcRing::recover) the slot if it stays stuck.
    InFlight(Stuck),
    /// The ring is closed (and, for a pop, drained).
    Closed,
    /// A sequence number contradicts the indices.
    Corrupt,
}

impl Miss {
    pub(crate) fn push_error<T>(self, v: T) -> PushError<T> {
        match self {
            Miss::Idle | Miss::InFlight(_) => PushError::Full(v),
            Miss::Closed => PushError::Disconnected(v),
            Miss::Corrupt => PushError::Corrupt(v),
        }
    }

    pub(crate) fn pop_error(self) -> PopError {
        match self {
            Miss::Idle | Miss::InFlight(_) => PopError::Empty,
            Miss::Closed => PopError::Disconnected,
            Miss::Corrupt => PopError::Corrupt,
        }
    }
}

/// A slot that a blocked call waits on while another process holds it:
/// the position the call wants and the `seq` word it found there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stuck {
    pub(crate) pos: u64,
    pub(crate) seq: u64,
}

/// Why a producer could not take the slot of a position it claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// A consumer stole the claim (the slot is `S`, or already in a later
    /// state): claim another position.
    Stolen,
    /// The slot is in no state a claimed position's slot can be in.
    Corrupt,
}

/// What one poll of a blocking operation found.
pub(crate) enum Poll<R> {
    Ready(R),
    Idle,
    InFlight(Stuck),
}

/// Reads a sleeper count after this thread's claim CAS on `tail` or
/// `head`, to decide whether to notify.
///
/// The CAS and this load are `SeqCst`; the sleeper increments the count
/// (`SeqCst`), runs the `SeqCst` fence of `prepare_wait`, then reads the
/// index we CAS'd. By C++20 [atomics.order] p4, "we read the count before
/// its increment" and "it read the index before our CAS" would form a cycle
/// in the single total order S, so one of the two sees the other: either we
/// notify, or it sees our claim (and then waits for our publish by polling,
/// see [`Miss::InFlight`]). On x86 neither access needs a fence instruction:
/// this costs one plain load, where a notify check after every publish
/// would cost a `lock`ed instruction.
#[inline]
pub(crate) fn sleepers(word: &AtomicU32) -> u32 {
    // Loom models SeqCst loads and RMWs as AcqRel (see its README), weaker
    // than the C++ rules used above; the model gets the fence that those
    // rules make unnecessary in a real build.
    #[cfg(multiproc_loom)]
    crate::sync::fence(Ordering::SeqCst);
    word.load(Ordering::SeqCst)
}

/// Wakes one (or every) sleeper of `ec`, once a sleeper count said so.
#[cold]
#[inline(never)]
pub(crate) fn wake(ec: &EventCount, all: bool) {
    if all {
        ec.notify_all();
    } else {
        ec.notify_one();
    }
}

/// The body of an MPMC region (after the region header).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct MpmcBody {
    /// Next position to push, with the [`CLOSED`] bit.
    pub(crate) tail: IndexLine,
    /// Next position to pop.
    pub(crate) head: IndexLine,
    pub(crate) control: Control,
}

impl MpmcBody {
    /// An empty, open ring's indices and control line.
    pub(crate) fn new() -> Self {
        MpmcBody {
            tail: IndexLine::new(0),
            head: IndexLine::new(0),
            control: Control {
                not_empty: EventCount::new(),
                not_full: EventCount::new(),
                empty_sleepers: AtomicU32::new(0),
                full_sleepers: AtomicU32::new(0),
                closed: AtomicU32::new(0),
                _reserved: AtomicU32::new(0),
            },
        }
    }
}

/// One element: its sequence number, its owner's identity and its value.
#[repr(C)]
struct Slot<T> {
    seq: AtomicU64,
    /// The identity word ([`crate::identity`]) of the process that owns the
    /// slot (`W` or `R` in `seq`), written by the owner just after its take
    /// and cleared to 0 before the store that hands the slot on; 0 while
    /// nobody owns it (so all-zero memory is a valid free slot).
    owner: AtomicU64,
    value: UnsafeCell<T>,
}

#[cfg(not(multiproc_loom))]
mod layout_pins {
    use super::*;
    use core::mem::offset_of;
    static_assertions::assert_eq_size!(Control, [u8; 128]);
    static_assertions::const_assert_eq!(offset_of!(Control, closed), 24);
    static_assertions::assert_eq_size!(MpmcBody, [u8; 384]);
    static_assertions::const_assert_eq!(offset_of!(MpmcBody, head), 128);
    static_assertions::const_assert_eq!(offset_of!(MpmcBody, control), 256);
    static_assertions::assert_eq_size!(Slot<u64>, [u64; 3]);
    static_assertions::assert_eq_size!(Slot<u8>, [u64; 3]);
    static_assertions::assert_eq_size!(Slot<[u8; 64]>, [u64; 10]);
    static_assertions::const_assert_eq!(offset_of!(Slot<u8>, owner), 8);
    static_assertions::const_assert_eq!(offset_of!(Slot<u8>, value), 16);
    static_assertions::const_assert_eq!(align_of::<Slot<u8>>(), 8);
}
static_assertions::const_assert_eq!(align_of::<MpmcBody>(), 128);

// SAFETY: repr(C) of EventCounts (atomics only, valid for every bit
// pattern, no pointers); size pinned above.
unsafe impl ShmSafe for Control {}
// SAFETY: repr(C) of IndexLines and Control, all ShmSafe; size and offsets
// pinned above.
unsafe impl ShmSafe for MpmcBody {}
// SAFETY: repr(C) of two atomic u64s and an UnsafeCell<T> of T: Pod (valid
// for every bit pattern, no references; a garbage `owner` at worst names a
// wrong process, which only the liveness check reads); alignment is max(8,
// align of T), which `create`/`attach` check against REGION_ALIGN.
unsafe impl<T: Pod> ShmSafe for Slot<T> {}

/// A view of an MPMC ring in a region: `Copy`, `Send` and `Sync`; any number
/// of threads and processes push and pop through `&self`.
///
/// Blocking calls spin per the view's [`Spin`] ([`Spin::DEFAULT`] unless set
/// with [`with_spin`](Self::with_spin)). See the [module docs](self) for an
/// example, the layout and the fault model.
pub struct MpmcRing<'a, T> {
    parts: Parts<'a, MpmcBody, Slot<T>>,
    capacity: u64,
    /// `capacity - 1` when the capacity is a power of two, else [`NOT_POW2`].
    mask: u64,
    spin: Spin,
}

impl<T> Clone for MpmcRing<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MpmcRing<'_, T> {}

// SAFETY: all shared state is reached through atomics; a slot's value is
// accessed only by the one thread that claimed its position (CAS on
// head/tail) and only while `seq` says so. Values of T cross threads, hence
// T: Send.
unsafe impl<T: Send> Send for MpmcRing<'_, T> {}
// SAFETY: as for Send.
unsafe impl<T: Send> Sync for MpmcRing<'_, T> {}

// A panic inside `try_push_with`/`try_pop_with` publishes the slot as
// skipped or frees it, so the ring stays consistent across an unwind.
impl<T> core::panic::UnwindSafe for MpmcRing<'_, T> {}
impl<T> core::panic::RefUnwindSafe for MpmcRing<'_, T> {}

impl<T> fmt::Debug for MpmcRing<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.parts.body;
        let tail = b.tail.pos.load(Ordering::Relaxed);
        f.debug_struct("MpmcRing")
            .field("capacity", &self.capacity)
            .field("tail", &(tail & !CLOSED))
            .field("head", &b.head.pos.load(Ordering::Relaxed))
            .field("closed", &(tail & CLOSED != 0))
            .finish()
    }
}

impl<'a, T: Pod> MpmcRing<'a, T> {
    /// Bytes a ring of `capacity` values of `T` occupies, header included;
    /// `None` if the capacity is invalid (0 or above 2^32), overflows the
    /// address space, or `T` is aligned to more than 128 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_core::mpmc::MpmcRing;
    /// // 512 bytes of header and body, then 24 bytes per slot (seq, owner,
    /// // u64).
    /// assert_eq!(MpmcRing::<u64>::memory_size(4), Some(512 + 4 * 24));
    /// assert_eq!(MpmcRing::<u64>::memory_size(0), None);
    /// ```
    pub fn memory_size(capacity: u64) -> Option<usize> {
        if !valid_capacity(capacity) || align_of::<T>() > REGION_ALIGN {
            return None;
        }
        Layout::of::<MpmcBody, Slot<T>>(capacity).map(|l| l.total)
    }

    /// Builds an empty, open ring of `capacity` values in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] for 0 or more than 2^32,
    /// [`InitError::UnsupportedType`] if `T` is aligned to more than 128
    /// bytes, and the region errors of [`InitError`].
    pub fn create(region: Region<'a>, capacity: u64) -> Result<Self, InitError> {
        Self::create_tagged(region, capacity, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` for the element
    /// type that [`attach_tagged`](Self::attach_tagged) must match.
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
            kind: Kind::Mpmc,
            elem: ElemType::of::<T>().tagged(tag),
            capacity,
            count: capacity,
        };
        let body = MpmcBody::new;
        // Every slot starts as `F(i)`, which is 0 in the first lap, owned by
        // nobody (0): an all-zero slot, not written at all in a region
        // known to be zeroed.
        let parts = Parts::create_zeroed_elems(region, spec, body, |_| Slot {
            seq: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            value: UnsafeCell::new(T::zeroed()),
        })?;
        Ok(Self::from_parts(parts))
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
            Kind::Mpmc,
            expected,
            |c| valid_capacity(c).then_some(c),
            deadline,
        )?;
        Ok(Self::from_parts(parts))
    }

    fn from_parts(parts: Parts<'a, MpmcBody, Slot<T>>) -> Self {
        let capacity = parts.count as u64;
        Self {
            parts,
            capacity,
            mask: if capacity.is_power_of_two() {
                capacity - 1
            } else {
                NOT_POW2
            },
            spin: Spin::DEFAULT,
        }
    }

    /// A copy of this view whose blocking calls spin per `spin` before
    /// sleeping. (The view is shared, so the setting travels with the copy
    /// rather than being set on it.)
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::MpmcRing, region::Region, wait::Spin};
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = MpmcRing::<u32>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let sleepy = ring.with_spin(Spin::NONE);
    /// assert_eq!(sleepy.spin(), Spin::NONE);
    /// ```
    #[must_use]
    pub fn with_spin(self, spin: Spin) -> Self {
        Self { spin, ..self }
    }

    /// The spin setting of this view.
    pub fn spin(&self) -> Spin {
        self.spin
    }

    /// The number of slots.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The number of values in the ring, approximately: positions claimed by
    /// producers minus positions claimed by consumers, read one after the
    /// other while others may move both, clamped to `0..=capacity`. It
    /// counts pushes and pops in progress as done.
    pub fn len(&self) -> u64 {
        let b = self.parts.body;
        // Relaxed: an advisory snapshot, no data is read on its strength.
        let head = b.head.pos.load(Ordering::Relaxed);
        let tail = b.tail.pos.load(Ordering::Relaxed) & !CLOSED;
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

    /// Closes the ring: pushes fail with `Disconnected` from now on, pops
    /// return what is left and then `Disconnected`. Wakes every sleeper.
    /// Closing twice is harmless; a ring cannot be reopened.
    pub fn close(&self) {
        let b = self.parts.body;
        // AcqRel: Release so that a thread that sees the flag (Acquire in
        // `is_closed`) also sees what the closer did before; the flag itself
        // is an RMW in `tail`'s modification order, which orders it against
        // every push CAS (before it: landed; after it: failed).
        b.tail.pos.fetch_or(CLOSED, Ordering::AcqRel);
        // Relaxed: a hint for pops (see `Control::closed`); the bit in
        // `tail` is the authority and the notifies below are fenced.
        b.control.closed.store(1, Ordering::Relaxed);
        b.control.not_empty.notify_all();
        b.control.not_full.notify_all();
    }

    /// Whether [`close`](Self::close) was called (by any process).
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.parts.body.tail.pos.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Pushes `v` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if the ring is full, [`PushError::Disconnected`]
    /// if it is closed, [`PushError::Corrupt`] if a slot's sequence number
    /// contradicts `tail`. The value is handed back.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::{MpmcRing, PushError}, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = MpmcRing::<u32>::create(Region::from_mut_slice(&mut mem.0), 1).unwrap();
    /// ring.try_push(1).unwrap();
    /// assert!(matches!(ring.try_push(2), Err(PushError::Full(2))));
    /// ring.close();
    /// assert!(matches!(ring.try_push(2), Err(PushError::Disconnected(2))));
    /// assert_eq!(ring.try_pop(), Ok(1));
    /// ```
    #[inline]
    pub fn try_push(&self, v: T) -> Result<(), PushError<T>> {
        match self.claim_push() {
            Ok((slot, pos)) => {
                // SAFETY: we claimed `pos` (CAS on tail) and took its slot
                // (`F` to `W`, Acquire, paired with the Release in
                // `free_slot` after the previous consumer's read): nobody
                // else touches the value until we publish it.
                slot.value.with_mut(|p| unsafe { p.write(v) });
                self.publish(slot, pos);
                Ok(())
            }
            Err(miss) => Err(miss.push_error(v)),
        }
    }

    /// Pushes `v`, blocking while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Disconnected`] once the ring is closed;
    /// [`PushError::Corrupt`] as for [`try_push`](Self::try_push).
    pub fn push(&self, v: T) -> Result<(), PushError<T>> {
        self.push_deadline(v, None)
    }

    /// Pushes `v`, blocking at most `timeout` while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if it stayed full until the timeout; else as
    /// [`push`](Self::push).
    pub fn push_timeout(&self, v: T, timeout: Duration) -> Result<(), PushError<T>> {
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
    pub fn push_deadline(&self, v: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        match self.try_push(v) {
            Err(PushError::Full(v)) => self.push_slow(v, deadline),
            r => r,
        }
    }

    #[cold]
    fn push_slow(&self, v: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        match self.claim_push_blocking(deadline) {
            Ok((slot, pos)) => {
                // SAFETY: as in `try_push`.
                slot.value.with_mut(|p| unsafe { p.write(v) });
                self.publish(slot, pos);
                Ok(())
            }
            Err(PushError::Full(())) => Err(PushError::Full(v)),
            Err(PushError::Disconnected(())) => Err(PushError::Disconnected(v)),
            Err(PushError::Corrupt(())) => Err(PushError::Corrupt(v)),
        }
    }

    /// Takes a slot to push into: at once if one is free, else blocking
    /// while the ring is full until `deadline`.
    fn claim_push_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot<T>, u64), PushError<()>> {
        match self.claim_push() {
            Ok(claim) => Ok(claim),
            Err(Miss::Idle | Miss::InFlight(_)) => self.claim_push_blocking(deadline),
            Err(miss) => Err(miss.push_error(())),
        }
    }

    /// The blocking half of [`claim_push_deadline`](Self::claim_push_deadline).
    #[cold]
    fn claim_push_blocking(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot<T>, u64), PushError<()>> {
        let c = &self.parts.body.control;
        self.block(&c.not_full, &c.full_sleepers, deadline, || {
            match self.claim_push_in(true) {
                Ok(claim) => Poll::Ready(Ok(claim)),
                Err(Miss::Idle) => Poll::Idle,
                Err(Miss::InFlight(s)) => Poll::InFlight(s),
                Err(miss) => Poll::Ready(Err(miss.push_error(()))),
            }
        })
        .unwrap_or(Err(PushError::Full(())))
    }

    /// Runs `poll` until it is ready (see [`block_on`]), recovering stuck
    /// slots with [`recover`](Self::recover).
    fn block<R>(
        &self,
        ec: &EventCount,
        sleepers: &AtomicU32,
        deadline: Option<Deadline>,
        poll: impl FnMut() -> Poll<R>,
    ) -> Option<R> {
        block_on(self.spin, ec, sleepers, deadline, poll, |s, check| {
            self.recover(s, check)
        })
    }

    /// Claims a slot, lets `f` write the value in place, then publishes it
    /// (zero-copy push), without blocking.
    ///
    /// The slot holds stale data when `f` gets it: overwrite what you need.
    /// Keep `f` short: consumers that reach this slot wait for it. If `f`
    /// panics, the slot is published as skipped (consumers step over it)
    /// and the panic continues; if the process is killed inside `f`,
    /// consumers step over the slot once they find it dead (see the
    /// [module docs](self#processes-killed-in-the-middle-of-an-operation)).
    ///
    /// # Errors
    ///
    /// As [`try_push`](Self::try_push) (then `f` is not called).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::MpmcRing, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 4096]);
    /// # let mut mem = Box::new(Mem([0; 4096]));
    /// let ring = MpmcRing::<[u8; 256]>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// ring.try_push_with(|buf| buf.fill(7)).unwrap();
    /// assert_eq!(ring.try_pop_with(|buf| buf.iter().map(|&b| u32::from(b)).sum::<u32>()), Ok(7 * 256));
    /// ```
    pub fn try_push_with(&self, f: impl FnOnce(&mut T)) -> Result<(), PushError<()>> {
        let (slot, pos) = self.claim_push().map_err(|m| m.push_error(()))?;
        self.fill(slot, pos, f);
        Ok(())
    }

    /// As [`try_push_with`](Self::try_push_with), blocking while the ring is
    /// full until `deadline` (`None`: no deadline); `f` runs once a slot is
    /// taken, after the wait.
    ///
    /// # Errors
    ///
    /// As [`push_timeout`](Self::push_timeout) (then `f` is not called).
    pub fn push_with_deadline(
        &self,
        f: impl FnOnce(&mut T),
        deadline: Option<Deadline>,
    ) -> Result<(), PushError<()>> {
        let (slot, pos) = self.claim_push_deadline(deadline)?;
        self.fill(slot, pos, f);
        Ok(())
    }

    /// Lets `f` write the value of `pos` in its slot, which this thread
    /// took, then publishes it (as skipped if `f` panics).
    fn fill(&self, slot: &'a Slot<T>, pos: u64, f: impl FnOnce(&mut T)) {
        let guard = SkipOnUnwind {
            ring: self,
            slot,
            pos,
        };
        // SAFETY: the slot is ours (`W`), as in `try_push`; the reference
        // ends with the closure, before the slot is published.
        slot.value.with_mut(|p| f(unsafe { &mut *p }));
        core::mem::forget(guard);
        self.publish(slot, pos);
    }

    /// Takes a free slot and returns a guard that writes the value in place
    /// (zero-copy push), without blocking. [`PushRef::commit`] publishes
    /// it; a guard dropped without a commit (by a panic, say) publishes the
    /// slot as skipped, and consumers step over it.
    ///
    /// The slot holds stale data: overwrite what you need. Consumers that
    /// reach the slot wait for the guard, as for the closure of
    /// [`try_push_with`](Self::try_push_with): keep it short-lived. A
    /// leaked guard (`mem::forget`) holds its slot until this process
    /// exits; if the process is killed holding it, consumers step over the
    /// slot once they find it dead.
    ///
    /// # Errors
    ///
    /// As [`try_push`](Self::try_push).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::MpmcRing, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 4096]);
    /// # let mut mem = Box::new(Mem([0; 4096]));
    /// let ring = MpmcRing::<[u32; 64]>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let mut block = ring.try_push_ref().unwrap();
    /// block.fill(5);
    /// block.commit();
    /// drop(ring.try_push_ref().unwrap()); // not committed: skipped
    /// assert_eq!(ring.try_pop().unwrap()[63], 5);
    /// assert!(ring.try_pop().is_err()); // the skipped slot is stepped over
    /// ```
    pub fn try_push_ref(&self) -> Result<PushRef<'a, T>, PushError<()>> {
        let (slot, pos) = self.claim_push().map_err(|m| m.push_error(()))?;
        Ok(PushRef {
            ring: *self,
            slot,
            pos,
        })
    }

    /// As [`try_push_ref`](Self::try_push_ref), blocking while the ring is
    /// full until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`push_timeout`](Self::push_timeout).
    pub fn push_ref_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<PushRef<'a, T>, PushError<()>> {
        let (slot, pos) = self.claim_push_deadline(deadline)?;
        Ok(PushRef {
            ring: *self,
            slot,
            pos,
        })
    }

    /// Pushes as many values from the front of `vs` as there is room for,
    /// without blocking, and returns how many. Each run of free slots is
    /// claimed with one CAS on `tail` (then each slot is taken with its
    /// own); sleeping consumers, if any, are all woken once.
    ///
    /// Returns 0 when the ring is full, closed or corrupt; use
    /// [`try_push`](Self::try_push) to learn which.
    pub fn push_slice(&self, vs: &[T]) -> usize {
        let mut done = 0;
        let mut published = false;
        'runs: while done < vs.len() {
            let Some((pos, n)) = self.claim_push_run(vs.len() - done) else {
                break;
            };
            for k in 0..n {
                let p = pos.wrapping_add(k as u64);
                let slot = self.slot(p);
                if self.take_free(slot, p).is_err() {
                    // Stolen (or corrupt): give up the rest of the run, so
                    // that our values stay in order, and claim anew.
                    for q in k + 1..n {
                        let q = pos.wrapping_add(q as u64);
                        // Release: as a skip in `SkipOnUnwind`; a failure
                        // means a consumer stole it first.
                        let _ = self.slot(q).seq.compare_exchange(
                            self.free(q),
                            full_stamp(q) | SKIPPED,
                            Ordering::Release,
                            Ordering::Relaxed,
                        );
                    }
                    published |= k + 1 < n;
                    continue 'runs;
                }
                // SAFETY: position p is ours (the run's CAS) and so is its
                // slot (`take_free`, Acquire), as in `try_push`.
                slot.value.with_mut(|ptr| unsafe { ptr.write(vs[done]) });
                self.publish_quiet(slot, p);
                published = true;
                done += 1;
            }
        }
        if published {
            let c = &self.parts.body.control;
            if sleepers(&c.empty_sleepers) != 0 {
                wake(&c.not_empty, true);
            }
        }
        done
    }

    /// Pops the oldest value, without blocking.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if there is nothing to pop (or the oldest value is
    /// still being written), [`PopError::Disconnected`] if the ring is closed
    /// and drained, [`PopError::Corrupt`] if a slot's sequence number
    /// contradicts `head`.
    #[inline]
    pub fn try_pop(&self) -> Result<T, PopError> {
        let (slot, pos) = self.claim_pop().map_err(Miss::pop_error)?;
        // SAFETY: we took the slot of `pos` (`V` to `R` by a CAS whose
        // Acquire pairs with the Release in `publish` after the producer's
        // write): nobody else touches the value until we free it.
        let v = slot.value.with(|p| unsafe { p.read() });
        self.free_slot(slot, pos);
        Ok(v)
    }

    /// Pops the oldest value, blocking while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`PopError::Disconnected`] once the ring is closed and drained;
    /// [`PopError::Corrupt`] as for [`try_pop`](Self::try_pop).
    pub fn pop(&self) -> Result<T, PopError> {
        self.pop_deadline(None)
    }

    /// Pops the oldest value, blocking at most `timeout` while the ring is
    /// empty.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if it stayed empty until the timeout; else as
    /// [`pop`](Self::pop).
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
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
    pub fn pop_deadline(&self, deadline: Option<Deadline>) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_slow(deadline),
            r => r,
        }
    }

    #[cold]
    fn pop_slow(&self, deadline: Option<Deadline>) -> Result<T, PopError> {
        let (slot, pos) = self.claim_pop_blocking(deadline)?;
        // SAFETY: as in `try_pop`.
        let v = slot.value.with(|p| unsafe { p.read() });
        self.free_slot(slot, pos);
        Ok(v)
    }

    /// Takes the oldest value's slot: at once if there is one, else blocking
    /// while the ring is empty until `deadline`.
    fn claim_pop_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot<T>, u64), PopError> {
        match self.claim_pop() {
            Ok(claim) => Ok(claim),
            Err(Miss::Idle | Miss::InFlight(_)) => self.claim_pop_blocking(deadline),
            Err(miss) => Err(miss.pop_error()),
        }
    }

    /// The blocking half of [`claim_pop_deadline`](Self::claim_pop_deadline).
    #[cold]
    fn claim_pop_blocking(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot<T>, u64), PopError> {
        let c = &self.parts.body.control;
        self.block(&c.not_empty, &c.empty_sleepers, deadline, || {
            match self.claim_pop_in(true) {
                Ok(claim) => Poll::Ready(Ok(claim)),
                Err(Miss::Idle) => Poll::Idle,
                Err(Miss::InFlight(s)) => Poll::InFlight(s),
                Err(miss) => Poll::Ready(Err(miss.pop_error())),
            }
        })
        .unwrap_or(Err(PopError::Empty))
    }

    /// Claims the oldest value, lets `f` read it in place, then frees the
    /// slot (zero-copy pop), without blocking. Returns what `f` returns.
    ///
    /// Keep `f` short: producers that reach this slot wait for it. If `f`
    /// panics, the slot is freed (the value is consumed) and the panic
    /// continues; if the process is killed inside `f`, the value is lost
    /// and producers free the slot once they find it dead.
    ///
    /// # Errors
    ///
    /// As [`try_pop`](Self::try_pop) (then `f` is not called).
    pub fn try_pop_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, PopError> {
        let (slot, pos) = self.claim_pop().map_err(Miss::pop_error)?;
        Ok(self.drain(slot, pos, f))
    }

    /// As [`try_pop_with`](Self::try_pop_with), blocking while the ring is
    /// empty until `deadline` (`None`: no deadline); `f` runs once a value
    /// is taken, after the wait.
    ///
    /// # Errors
    ///
    /// As [`pop_timeout`](Self::pop_timeout) (then `f` is not called).
    pub fn pop_with_deadline<R>(
        &self,
        f: impl FnOnce(&T) -> R,
        deadline: Option<Deadline>,
    ) -> Result<R, PopError> {
        let (slot, pos) = self.claim_pop_deadline(deadline)?;
        Ok(self.drain(slot, pos, f))
    }

    /// Lets `f` read the value of `pos` in its slot, which this thread
    /// took, then frees the slot (even if `f` panics).
    fn drain<R>(&self, slot: &'a Slot<T>, pos: u64, f: impl FnOnce(&T) -> R) -> R {
        let guard = FreeOnDrop {
            ring: self,
            slot,
            pos,
        };
        // SAFETY: the slot is ours (`R`), as in `try_pop`; the reference
        // ends with the closure, before the slot is freed.
        let r = slot.value.with(|p| f(unsafe { &*p }));
        drop(guard);
        r
    }

    /// Takes the oldest value and returns a guard that reads it in place
    /// (zero-copy pop), without blocking; the slot is freed when the guard
    /// drops.
    ///
    /// Producers that reach the slot one lap later wait for the guard, as
    /// for the closure of [`try_pop_with`](Self::try_pop_with): keep it
    /// short-lived. A guard that is leaked (`mem::forget`) holds its slot
    /// until this process exits; one whose process is killed loses its
    /// value, and producers free the slot once they find the owner dead.
    ///
    /// # Errors
    ///
    /// As [`try_pop`](Self::try_pop).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::MpmcRing, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 4096]);
    /// # let mut mem = Box::new(Mem([0; 4096]));
    /// let ring = MpmcRing::<[u32; 64]>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// ring.try_push_with(|block| block.fill(3)).unwrap();
    /// let block = ring.try_pop_ref().unwrap();
    /// assert_eq!(block.iter().sum::<u32>(), 3 * 64);
    /// drop(block); // frees the slot
    /// ```
    pub fn try_pop_ref(&self) -> Result<PopRef<'a, T>, PopError> {
        let (slot, pos) = self.claim_pop().map_err(Miss::pop_error)?;
        Ok(PopRef {
            ring: *self,
            slot,
            pos,
        })
    }

    /// As [`try_pop_ref`](Self::try_pop_ref), blocking while the ring is
    /// empty until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`pop_timeout`](Self::pop_timeout).
    pub fn pop_ref_deadline(&self, deadline: Option<Deadline>) -> Result<PopRef<'a, T>, PopError> {
        let (slot, pos) = self.claim_pop_deadline(deadline)?;
        Ok(PopRef {
            ring: *self,
            slot,
            pos,
        })
    }

    /// Pops as many values as are available, up to `out.len()`, into the
    /// front of `out`, without blocking, and returns how many. Each slot is
    /// taken with a CAS and `head` moves past a run at once; sleeping
    /// producers, if any, are all woken once.
    ///
    /// Returns 0 when the ring is empty, closed and drained, or corrupt; use
    /// [`try_pop`](Self::try_pop) to learn which.
    pub fn pop_slice(&self, out: &mut [T]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let Some((pos, n)) = self.claim_pop_run(out.len() - done) else {
                // The run is empty: a skipped slot, an empty ring or a push
                // in flight. One ordinary pop sorts these out.
                match self.claim_pop() {
                    Ok((slot, pos)) => {
                        // SAFETY: as in `try_pop`.
                        out[done] = slot.value.with(|p| unsafe { p.read() });
                        self.free_slot_quiet(slot, pos);
                        done += 1;
                        continue;
                    }
                    Err(_) => break,
                }
            };
            let mut i = self.index(pos);
            for (k, v) in out[done..done + n].iter_mut().enumerate() {
                // SAFETY: i < capacity (kept in range below).
                let slot = unsafe { self.parts.elem_unchecked(i) };
                // SAFETY: the slots of positions pos..pos + n are ours (`V`
                // to `R` by a CAS each in `claim_pop_run`, whose Acquire
                // pairs with the producers' publishing Release).
                *v = slot.value.with(|p| unsafe { p.read() });
                self.free_slot_quiet(slot, pos.wrapping_add(k as u64));
                i += 1;
                if i == self.parts.count {
                    i = 0;
                }
            }
            done += n;
        }
        let c = &self.parts.body.control;
        if done > 0 && sleepers(&c.full_sleepers) != 0 {
            wake(&c.not_full, true);
        }
        done
    }

    // -- the protocol --------------------------------------------------------

    /// The slot index of position `pos`: always `< capacity`, whatever `pos`.
    #[inline]
    fn index(&self, pos: u64) -> usize {
        let i = if self.mask != NOT_POW2 {
            pos & self.mask
        } else {
            pos % self.capacity
        };
        i as usize
    }

    /// The `seq` word `F(pos)` of the slot of `pos` free for the producer
    /// of `pos`: [`free_stamp`], except in the first lap (`pos <
    /// capacity`), where it is 0, so that zeroed memory is an empty ring.
    #[inline(always)]
    fn free(&self, pos: u64) -> u64 {
        if pos < self.capacity {
            0
        } else {
            free_stamp(pos)
        }
    }

    #[inline]
    fn slot(&self, pos: u64) -> &'a Slot<T> {
        let i = self.index(pos);
        // SAFETY: `index` reduces any position below capacity == count.
        unsafe { self.parts.elem_unchecked(i) }
    }

    /// Claims the next push position, takes its slot (state `W`) and returns
    /// it.
    #[inline]
    fn claim_push(&self) -> Result<(&'a Slot<T>, u64), Miss> {
        self.claim_push_in(false)
    }

    /// [`claim_push`](Self::claim_push); when `waiting` (a blocked push
    /// polls), a full ring is told apart as [`Miss::Idle`] or
    /// [`Miss::InFlight`] by the slot's state.
    #[inline(always)]
    fn claim_push_in(&self, waiting: bool) -> Result<(&'a Slot<T>, u64), Miss> {
        let tail_word = &self.parts.body.tail.pos;
        // Relaxed: a guess that the CAS confirms; the slot's seq (Acquire)
        // carries the synchronisation.
        let mut tail = tail_word.load(Ordering::Relaxed);
        loop {
            if tail & CLOSED != 0 {
                return Err(Miss::Closed);
            }
            let slot = self.slot(tail);
            // Acquire: pairs with the Release store in `free_slot`: the last
            // consumer's read of this slot is done before we write it.
            let seq = slot.seq.load(Ordering::Acquire);
            let want = self.free(tail);
            if seq == want {
                // SeqCst on success: pairs with sleeping consumers (see
                // `sleepers`). Relaxed on failure: we just retry.
                match tail_word.compare_exchange_weak(
                    tail,
                    tail.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => match self.take_free(slot, tail) {
                        Ok(()) => return Ok((slot, tail)),
                        // Stolen while we were between the two CASes: the
                        // position is gone, claim another.
                        Err(Taken::Stolen) => tail = tail_word.load(Ordering::Relaxed),
                        Err(Taken::Corrupt) => return Err(Miss::Corrupt),
                    },
                    Err(now) => tail = now,
                }
            } else if stamp_diff(stamp(seq), want) < 0 {
                // The slot is still in the previous lap: full, unless tail
                // moved on.
                let now = tail_word.load(Ordering::Relaxed);
                if now == tail {
                    if !waiting {
                        return Err(Miss::Idle);
                    }
                    let prev = full_stamp(tail.wrapping_sub(self.capacity));
                    return Err(if seq & BUSY != 0 && stamp(seq) == prev {
                        // A consumer is reading the slot (`R`): it frees it
                        // soon, and may have checked for sleepers before we
                        // counted ourselves.
                        Miss::InFlight(Stuck { pos: tail, seq })
                    } else {
                        Miss::Idle
                    });
                }
                tail = now;
            } else {
                // Someone already pushed at `tail`: then `tail` has moved on
                // (their CAS happened before the seq store we acquired). If
                // it has not, the memory is corrupt.
                let now = tail_word.load(Ordering::Relaxed);
                if now == tail {
                    return Err(Miss::Corrupt);
                }
                tail = now;
            }
        }
    }

    /// Takes the slot of `pos`, a position this thread has just claimed on
    /// `tail`, from `F` to `W` (owned by this process). Fails only if a
    /// consumer stole the claim meanwhile (see [`steal`](Self::recover)).
    #[inline(always)]
    fn take_free(&self, slot: &Slot<T>, pos: u64) -> Result<(), Taken> {
        let want = self.free(pos);
        let me = current_identity();
        // AcqRel on success: Acquire as the load before the claim (the slot
        // still holds what we loaded); Release so that whoever sees `W`
        // (Acquire) also sees our claim on `tail` and does not take `W` at
        // an unmoved `tail` for corruption. Relaxed on failure: we only
        // classify.
        match slot
            .seq
            .compare_exchange(want, busy(want, me), Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => {
                record_owner(slot, me);
                Ok(())
            }
            // Stolen: `S`, or already further on (its consumer stepped over
            // it and the slot was reused).
            Err(now) if stamp_diff(stamp(now), want) > 0 => Err(Taken::Stolen),
            Err(_) => Err(Taken::Corrupt),
        }
    }

    /// Claims up to `max` consecutive push positions whose slots are free,
    /// with one CAS; `None` if not even one is. The caller takes each slot
    /// with [`take_free`](Self::take_free) before writing it.
    fn claim_push_run(&self, max: usize) -> Option<(u64, usize)> {
        let tail_word = &self.parts.body.tail.pos;
        let limit = (max as u64).min(self.capacity);
        // Relaxed: as in `claim_push`.
        let mut tail = tail_word.load(Ordering::Relaxed);
        loop {
            if tail & CLOSED != 0 {
                return None;
            }
            let mut n = 0u64;
            // Acquire: as in `claim_push`, for every slot of the run.
            while n < limit && {
                let pos = tail.wrapping_add(n);
                self.slot(pos).seq.load(Ordering::Acquire) == self.free(pos)
            } {
                n += 1;
            }
            if n == 0 {
                let now = tail_word.load(Ordering::Relaxed);
                if now == tail {
                    return None;
                }
                tail = now;
                continue;
            }
            // Orderings as in `claim_push`. Winning the CAS makes positions
            // tail..tail + n ours; their slots stay free until we take them
            // (or a consumer steals them), since nobody else can claim them.
            match tail_word.compare_exchange_weak(
                tail,
                tail.wrapping_add(n),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((tail, n as usize)),
                Err(now) => tail = now,
            }
        }
    }

    /// Publishes the value of position `pos` and wakes one consumer if
    /// any sleeps.
    #[inline]
    fn publish(&self, slot: &Slot<T>, pos: u64) {
        self.publish_quiet(slot, pos);
        let c = &self.parts.body.control;
        if sleepers(&c.empty_sleepers) != 0 {
            wake(&c.not_empty, false);
        }
    }

    /// Publishes the slot of `pos`, which this thread took, without a
    /// value (`S`: consumers step over it), and wakes one consumer if any
    /// sleeps.
    #[cold]
    fn publish_skipped(&self, slot: &Slot<T>, pos: u64) {
        clear_owner(slot);
        // Release: pairs with the Acquire load in `claim_pop`, which frees
        // the slot without reading it; and orders the clear above.
        slot.seq.store(full_stamp(pos) | SKIPPED, Ordering::Release);
        self.wake_consumers();
    }

    /// [`publish`](Self::publish) without the wake-up.
    #[inline]
    fn publish_quiet(&self, slot: &Slot<T>, pos: u64) {
        clear_owner(slot);
        // Release: pairs with the Acquire load of seq in `claim_pop`: our
        // write of the value is visible to its consumer; and orders the
        // clear above. A plain store: the slot is ours (`W`), and nobody
        // else changes an owned slot while its owner lives.
        slot.seq.store(full_stamp(pos), Ordering::Release);
    }

    /// Takes the oldest published value's slot (state `R`, owned by this
    /// process), stepping over skipped slots, and returns it.
    #[inline]
    fn claim_pop(&self) -> Result<(&'a Slot<T>, u64), Miss> {
        self.claim_pop_in(false)
    }

    /// [`claim_pop`](Self::claim_pop); when `waiting` (a blocked pop polls),
    /// an empty ring is told apart as [`Miss::Idle`] or [`Miss::InFlight`],
    /// which costs a load of `tail`. Non-blocking pops load `tail` only once
    /// the ring is marked closed, to tell "closed and drained".
    #[inline(always)]
    fn claim_pop_in(&self, waiting: bool) -> Result<(&'a Slot<T>, u64), Miss> {
        let body = self.parts.body;
        // Relaxed: a guess; the slot's seq (Acquire) synchronises, and its
        // CAS decides who pops.
        let mut head = body.head.pos.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // Acquire: pairs with the Release store in `publish`: the value
            // is written before we read it.
            let seq = slot.seq.load(Ordering::Acquire);
            let want = full_stamp(head);
            if seq == want {
                let me = current_identity();
                // SeqCst on success: pairs with sleeping producers (see
                // `sleepers`); it is the claim. Relaxed on failure: we look
                // at the slot again.
                if slot
                    .seq
                    .compare_exchange_weak(
                        want,
                        busy(want, me),
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    record_owner(slot, me);
                    self.advance_head(head, head.wrapping_add(1));
                    return Ok((slot, head));
                }
            } else if seq == want | SKIPPED {
                // Claim and free at once (nothing to read); orderings as for
                // a value, Release so the next producer's Acquire load pairs.
                if slot
                    .seq
                    .compare_exchange_weak(
                        seq,
                        free_stamp(head.wrapping_add(self.capacity)),
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.advance_head(head, head.wrapping_add(1));
                    self.wake_producers();
                }
            } else {
                let d = stamp_diff(stamp(seq), want);
                if d < 0 {
                    // Not published for `head` yet (`F` or `W`): empty, or
                    // a push in flight.
                    // Relaxed: a hint; a pop that misses a concurrent close
                    // reports Empty, and blocking pops are woken by `close`.
                    if !waiting && body.control.closed.load(Ordering::Relaxed) == 0 {
                        return Err(Miss::Idle);
                    }
                    // Acquire: pairs with the producers' claim CAS, so that a
                    // slot we steal on its strength (`recover`, Release)
                    // carries the claim to the producer that next finds the
                    // slot (else it could see `S` at a stale `tail` and call
                    // it corruption). After a sleeper's fence, this load
                    // also pairs with the producers' SeqCst CAS (see
                    // `sleepers`).
                    let tail = body.tail.pos.load(Ordering::Acquire);
                    let claimed = tail & !CLOSED;
                    return Err(if claimed == head && tail & CLOSED != 0 {
                        Miss::Closed
                    } else if seq & BUSY != 0 || claimed.wrapping_sub(head) as i64 > 0 {
                        // A producer has claimed `head`, not published it.
                        Miss::InFlight(Stuck { pos: head, seq })
                    } else {
                        Miss::Idle
                    });
                }
                // Position `head` is taken already (`R`, or the slot is in
                // the next lap): its consumer has not moved `head` on yet,
                // or our `head` is stale. Help it along, unless the stamp is
                // further than any consumer could have taken it.
                if d <= 2 * self.capacity as i64 + 1 {
                    self.advance_head(head, head.wrapping_add(1));
                } else if body.head.pos.load(Ordering::Relaxed) == head {
                    return Err(Miss::Corrupt);
                }
            }
            // Relaxed: as above.
            head = body.head.pos.load(Ordering::Relaxed);
        }
    }

    /// Moves `head` from `from` up to `to` unless others already moved it
    /// that far. Every position below `head` has been taken by a consumer
    /// (its slot left `V`/`S` by a CAS): whoever sees a taken slot at
    /// `head` may move `head` past it.
    #[inline]
    fn advance_head(&self, from: u64, to: u64) {
        let head = &self.parts.body.head.pos;
        let mut cur = from;
        // Relaxed: `head` is bookkeeping (for `len` and a consumer's first
        // guess); the slots' seq words synchronise the data.
        while let Err(now) = head.compare_exchange(cur, to, Ordering::Relaxed, Ordering::Relaxed) {
            if to.wrapping_sub(now) as i64 <= 0 {
                break;
            }
            cur = now;
        }
    }

    /// Takes up to `max` consecutive published slots from `head` on (state
    /// `R`, one CAS each) and moves `head` past them; `None` if not even
    /// one is published.
    fn claim_pop_run(&self, max: usize) -> Option<(u64, usize)> {
        let limit = (max as u64).min(self.capacity);
        let me = current_identity();
        // Relaxed: as in `claim_pop`.
        let head = self.parts.body.head.pos.load(Ordering::Relaxed);
        let mut n = 0u64;
        while n < limit {
            let pos = head.wrapping_add(n);
            let want = full_stamp(pos);
            // Orderings as in `claim_pop`. A slot holding `pos`'s value has
            // not been taken, so `head` was not moved past it: the run
            // starts at `head` and stays contiguous.
            let slot = self.slot(pos);
            if slot
                .seq
                .compare_exchange(want, busy(want, me), Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                break;
            }
            record_owner(slot, me);
            n += 1;
        }
        if n == 0 {
            return None;
        }
        self.advance_head(head, head.wrapping_add(n));
        Some((head, n as usize))
    }

    /// Frees the slot of position `pos` for the next lap and wakes one
    /// producer if any sleeps.
    #[inline]
    fn free_slot(&self, slot: &Slot<T>, pos: u64) {
        self.free_slot_quiet(slot, pos);
        self.wake_producers();
    }

    /// Wakes one producer if any sleeps.
    #[inline]
    fn wake_producers(&self) {
        let c = &self.parts.body.control;
        if sleepers(&c.full_sleepers) != 0 {
            wake(&c.not_full, false);
        }
    }

    /// [`free_slot`](Self::free_slot) without the wake-up.
    #[inline]
    fn free_slot_quiet(&self, slot: &Slot<T>, pos: u64) {
        clear_owner(slot);
        // Release: pairs with the Acquire load of seq in `claim_push`: our
        // read of the value is done before the slot is written again; and
        // orders the clear above. A plain store: the slot is ours (`R`).
        slot.seq.store(
            free_stamp(pos.wrapping_add(self.capacity)),
            Ordering::Release,
        );
    }

    /// Unblocks a slot that a blocked call found stuck in flight, if it can
    /// be done safely; returns whether the slot changed.
    ///
    /// - `F` at a consumer's position that a producer has claimed on `tail`
    ///   but not taken: *steal* it (`F` to `S`). Always safe: the producer,
    ///   if alive, fails to take the slot and claims another position; it
    ///   has written nothing yet.
    /// - `W` or `R` whose owner process is dead (checked only when
    ///   `check_owner`, since it reads `/proc`; see
    ///   [`clear_dead_owner`](Self::clear_dead_owner)): `W` becomes `S` (the
    ///   dead producer's value was never complete), `R` becomes `F` of the
    ///   next lap (the dead consumer's value is lost with it).
    ///
    /// Each change is a CAS from exactly the word that was found, so a slot
    /// that moved on meanwhile is left alone.
    #[cold]
    fn recover(&self, stuck: Stuck, check_owner: bool) -> bool {
        let Stuck { pos, seq } = stuck;
        let slot = self.slot(pos);
        let to = if seq == self.free(pos) {
            full_stamp(pos) | SKIPPED
        } else if seq & (BUSY | SKIPPED) == BUSY && check_owner {
            let to = if stamp(seq) == self.free(pos) {
                full_stamp(pos) | SKIPPED
            } else if stamp(seq) == full_stamp(pos.wrapping_sub(self.capacity)) {
                self.free(pos)
            } else {
                return false;
            };
            if !self.clear_dead_owner(slot, seq) {
                return false;
            }
            to
        } else {
            return false;
        };
        // AcqRel: Release so that whoever takes the slot next (Acquire)
        // sees it after us, and with it our clear of `owner` (for a dead
        // owner); Acquire so that we see the last owner's accesses before
        // handing it on. Relaxed on failure: left alone (the `owner` we
        // cleared held a dead identity or nothing: clearing it cost no
        // information that a live owner needs).
        let done = slot
            .seq
            .compare_exchange(seq, to, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if done {
            if to & SKIPPED != 0 {
                self.wake_consumers();
            } else {
                self.wake_producers();
            }
        }
        done
    }

    /// [`clear_dead_owner`] for `slot`.
    #[cold]
    fn clear_dead_owner(&self, slot: &Slot<T>, seq: u64) -> bool {
        clear_dead_owner(&slot.seq, &slot.owner, seq)
    }

    /// Wakes one consumer if any sleeps.
    #[inline]
    fn wake_consumers(&self) {
        let c = &self.parts.body.control;
        if sleepers(&c.empty_sleepers) != 0 {
            wake(&c.not_empty, false);
        }
    }
}

/// Runs `poll` until it is ready: spins per `spin`, then
/// counts itself in `sleepers` and sleeps on `ec` (while the other side
/// is idle) or naps (while one of its operations is in flight). `None`
/// if `deadline` passes first. A slot found stuck for a whole nap is
/// handed to `recover` (with whether to check its owner's liveness), which
/// returns whether it changed: the blocking loop of every MPMC ring
/// ([`MpmcRing`], [`crate::msgqueue::MsgQueue`]).
pub(crate) fn block_on<R>(
    spin: Spin,
    ec: &EventCount,
    sleepers: &AtomicU32,
    deadline: Option<Deadline>,
    mut poll: impl FnMut() -> Poll<R>,
    mut recover: impl FnMut(Stuck, bool) -> bool,
) -> Option<R> {
    let mut backoff = spin.start();
    loop {
        if let Poll::Ready(r) = poll() {
            return Some(r);
        }
        if !backoff.spin() {
            break;
        }
    }
    // SeqCst, followed by the SeqCst fence in `prepare_wait`: pairs with
    // the SeqCst claim CAS and `sleepers` load of the other side.
    sleepers.fetch_add(1, Ordering::SeqCst);
    let mut nap_len = FIRST_NAP;
    let mut grace = GRACE_POLLS;
    // What the poll before the last nap found stuck: a slot is only
    // recovered once it has stayed so for a whole nap, so that a claim
    // that a live producer is about to take is not stolen from it.
    let mut last_stuck = None;
    let out = 'wait: loop {
        let key = ec.prepare_wait();
        let mut stuck = match poll() {
            Poll::Ready(r) => {
                ec.cancel_wait(key);
                break Some(r);
            }
            Poll::Idle => None,
            Poll::InFlight(s) => Some(s),
        };
        // Grace: the in-flight operation completes within moments
        // (unless its thread was preempted or killed); poll for about a
        // microsecond before the first nap.
        while stuck.is_some() && grace > 0 {
            grace -= 1;
            spin_loop();
            match poll() {
                Poll::Ready(r) => {
                    ec.cancel_wait(key);
                    break 'wait Some(r);
                }
                Poll::Idle => stuck = None,
                Poll::InFlight(s) => stuck = Some(s),
            }
        }
        if deadline.is_some_and(Deadline::has_passed) {
            ec.cancel_wait(key);
            break None;
        }
        match stuck {
            None => {
                let _ = ec.wait(key, deadline);
                nap_len = FIRST_NAP;
                last_stuck = None;
            }
            Some(s) => {
                // Unchanged over a whole nap: its holder was preempted,
                // or died. Steal an untaken claim then; ask whether an
                // owner lives only once the wait has grown long. (Under
                // loom, at once and always: the model explores both,
                // and its naps end only by a notification.)
                let unchanged = cfg!(multiproc_loom) || last_stuck == Some(s);
                let check_owner = cfg!(multiproc_loom) || nap_len >= OWNER_CHECK_NAP;
                if unchanged && recover(s, check_owner) {
                    ec.cancel_wait(key);
                    last_stuck = None;
                    continue;
                }
                last_stuck = Some(s);
                // Under loom this nap ends only by a notification. That
                // is sound in the model, whose `sleepers` fences *after*
                // the publishing store: a publisher that did not count
                // us has its publish seen by our poll (the two fences
                // are ordered in S). The real build's cheaper ordering
                // only makes us see its claim, hence a nap that ends on
                // its own.
                nap(ec, key, Deadline::after(nap_len).min(deadline));
                nap_len = (nap_len * 2).min(LIVENESS_SLICE);
            }
        }
    };
    // Relaxed: a count that stays high a little longer only costs the
    // other side a notify.
    sleepers.fetch_sub(1, Ordering::Relaxed);
    out
}

/// Decides whether the owner of the hold `seq` (a busy word, found in
/// a slot's `seq_word` by an Acquire load; `owner_word` is the slot's
/// `owner`) is dead and, if so, clears `owner` for the
/// recovery CAS that the caller makes next; `false` if the owner lives,
/// is unknown (pid 0), or the slot moved on.
///
/// Why the record read here is this hold's (or 0), never a dead
/// identity left by an earlier hold under the same pid: each hold ends
/// with a Release store or CAS of `seq`, by its owner or by a
/// recoverer, preceded by a clear of `owner` (the owner's
/// `clear_owner`, or the recoverer's CAS below). The take that started
/// this hold acquired that store (directly, or through the release
/// sequence continued by the RMWs in between: a consumer's `S` to `F`,
/// a steal), and our Acquire load of `seq` reads the value of that
/// take (a CAS, itself part of the same release sequence), so every
/// earlier clear happens before our read of `owner`, which by coherence
/// returns that clear or something later: this owner's record, its own
/// clear, or (the slot has moved on, and the CAS on `seq` will fail)
/// a later hold's. So a dead identity under this hold's pid is this
/// owner's, and a live one is never judged by a dead record.
///
/// The record decides when it names the pid in `seq`; anything else (0,
/// or another pid: the owner is between its take and its record, or
/// between its clear and its hand-on, or died there; or the slot moved
/// on) leaves the pid alone to decide, which can only err towards
/// "alive". The clear is a CAS from exactly the record judged on: a
/// record that changed meanwhile (the owner stored its identity after
/// our read, a later owner stored its own, another recoverer cleared
/// it) is judged again. The clear is what keeps a dead identity from being read
/// against a later owner that reuses the dead owner's pid (between its
/// take and its record); the loom model
/// `mpmc_reused_pid_of_a_dead_writer_does_not_stall_it` checks it.
#[cold]
pub(crate) fn clear_dead_owner(seq_word: &AtomicU64, owner_word: &AtomicU64, seq: u64) -> bool {
    let pid = owner_pid(seq);
    // Acquire: synchronises with the take that wrote `seq` and with the
    // hand-on before it (see above). The poll that found the slot
    // loaded it with Acquire too; loading again here keeps the argument
    // local and skips the `/proc` read for a slot that moved on.
    if pid == 0 || seq_word.load(Ordering::Acquire) != seq {
        return false;
    }
    // Relaxed: ordered by the load above.
    let mut record = owner_word.load(Ordering::Relaxed);
    loop {
        let alive = match Identity::from_word(record) {
            // The owner's own record: its identity decides.
            Some(id) if id.pid() == pid => id.is_alive(),
            // None yet (or another pid's: the slot moved on): the pid
            // decides, but only once `owner` has been read again after
            // the probe. An owner that recorded its identity and then
            // died did so before a probe that sees it dead (in the
            // model: the death's SeqCst store, which the probe loads),
            // so that load returns its record, and a reused pid that
            // the probe finds running cannot pass for it. Without it
            // the first load may return 0 from before the record, and
            // the pid's new process keeps the slot stalled.
            _ => {
                let runs = pid_alive(pid);
                let again = owner_word.load(Ordering::Relaxed);
                if again != record {
                    record = again;
                    continue;
                }
                runs
            }
        };
        if alive {
            return false;
        }
        // Relaxed: an RMW reads the latest value; the caller's Release
        // CAS of `seq` publishes the clear to the next taker.
        match owner_word.compare_exchange(record, 0, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => record = now,
        }
    }
}

/// Publishes a claimed slot as skipped if the closure writing it panics.
struct SkipOnUnwind<'r, 'a, T: Pod> {
    ring: &'r MpmcRing<'a, T>,
    slot: &'a Slot<T>,
    pos: u64,
}

impl<T: Pod> Drop for SkipOnUnwind<'_, '_, T> {
    fn drop(&mut self) {
        self.ring.publish_skipped(self.slot, self.pos);
    }
}

/// Frees a claimed slot when a zero-copy pop ends, even by a panic.
struct FreeOnDrop<'r, 'a, T: Pod> {
    ring: &'r MpmcRing<'a, T>,
    slot: &'a Slot<T>,
    pos: u64,
}

impl<T: Pod> Drop for FreeOnDrop<'_, '_, T> {
    fn drop(&mut self) {
        self.ring.free_slot(self.slot, self.pos);
    }
}

/// A slot taken in an [`MpmcRing`] to write a value in place: dereferences
/// (mutably) to the value in the slot; [`commit`](Self::commit) publishes
/// it, and a drop without a commit publishes the slot as skipped. Made by
/// [`MpmcRing::try_push_ref`] and [`MpmcRing::push_ref_deadline`].
pub struct PushRef<'a, T: Pod> {
    ring: MpmcRing<'a, T>,
    slot: &'a Slot<T>,
    pos: u64,
}

impl<T: Pod> PushRef<'_, T> {
    /// Publishes the value to the consumers.
    pub fn commit(self) {
        let this = core::mem::ManuallyDrop::new(self);
        this.ring.publish(this.slot, this.pos);
    }

    /// The position the value is pushed at (positions count every push
    /// since the ring was made).
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl<T: Pod> core::ops::Deref for PushRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the slot is ours (`W`, taken by the CAS in `take_free`,
        // whose Acquire pairs with the last consumer's freeing Release)
        // until `commit` or `drop` publishes it: nobody else accesses the
        // value meanwhile, and the borrow cannot outlive the guard. Any bit
        // pattern is a valid `T` (`Pod`).
        unsafe { &*self.slot.value.get() }
    }
}

impl<T: Pod> core::ops::DerefMut for PushRef<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow the only one.
        unsafe { &mut *self.slot.value.get() }
    }
}

impl<T: Pod> Drop for PushRef<'_, T> {
    fn drop(&mut self) {
        self.ring.publish_skipped(self.slot, self.pos);
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for PushRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PushRef").field(&**self).finish()
    }
}

/// A value taken from an [`MpmcRing`] and read in place: dereferences to
/// the value in its slot, and frees the slot when dropped. Made by
/// [`MpmcRing::try_pop_ref`] and [`MpmcRing::pop_ref_deadline`].
pub struct PopRef<'a, T: Pod> {
    ring: MpmcRing<'a, T>,
    slot: &'a Slot<T>,
    pos: u64,
}

impl<T: Pod> PopRef<'_, T> {
    /// The position the value was pushed at (positions count every push
    /// since the ring was made).
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl<T: Pod> core::ops::Deref for PopRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the slot is ours (`R`, taken by the CAS in `claim_pop`,
        // whose Acquire pairs with the producer's publishing Release) until
        // `drop` frees it: nobody writes the value meanwhile, and the
        // borrow cannot outlive the guard. Any bit pattern is a valid `T`
        // (`Pod`).
        unsafe { &*self.slot.value.get() }
    }
}

impl<T: Pod> Drop for PopRef<'_, T> {
    fn drop(&mut self) {
        self.ring.free_slot(self.slot, self.pos);
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for PopRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PopRef").field(&**self).finish()
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;
