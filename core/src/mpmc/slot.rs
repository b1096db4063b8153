//! The shared layout of an MPMC ring and the state machine of its slots:
//! the body (indices and control line), the slot's `seq` word and its
//! `owner` record. [`crate::msgqueue`] uses the same body, slot states
//! and protocol over its own slots.
//!
//! # Layout
//!
//! ```text
//!  0         128           256           384              512
//!  +---------+-------------+-------------+----------------+---------------------------+
//!  | header  | tail: u64   | head: u64   | not_empty ec   | Slot 0     | Slot 1 | ... |
//!  | (kind   | next push   | next pop    | not_full ec    | seq: u64   |        |     |
//!  |  Mpmc)  | position    | position    | empty_sleepers | owner: u64 |        |     |
//!  |         | (a hint)    | (a hint)    | full_sleepers  | value: T   |        |     |
//!  |         |             |             | closed         |            |        |     |
//!  +---------+-------------+-------------+----------------+---------------------------+
//! ```
//!
//! A slot is `seq` (below), `owner` (the identity word of the process
//! that owns the slot now, or 0: see "Owner records" below) and the value, padded to the value's alignment: 24 bytes for
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
//! | `F(p)` | `f` | free for the producer of `p` | producer: CAS `seq` to `W` (the claim) |
//! | `W(p, pid)` | `BUSY \| pid \| f` | process `pid` writes the value of `p` (its identity in `owner`) | owner: store `V` (or `S` if its closure panics or the ring was closed), then move `tail` past `p` |
//! | `V(p)` | `2p + 1` | holds the value of `p` | consumer: CAS `seq` to `R` (the claim) |
//! | `S(p)` | `SKIPPED \| 2p + 1` | published without a value | consumer: CAS `seq` to `F(p + cap)`, move `head` |
//! | `R(p, pid)` | `BUSY \| pid \| 2p + 1` | process `pid` reads the value of `p` (its identity in `owner`) | owner: store `F(p + cap)`, then move `head` past `p` |
//!
//! Both sides claim a position by the CAS on its slot's `seq` (`F` to
//! `W` for a push, `V` to `R` for a pop), one `lock`ed instruction each,
//! as in crossbeam's `ArrayQueue`, whose claims are on the indices
//! instead. The CAS records the owner's pid, then its identity (in
//! `owner`), so a slot held by a process that died can be told apart and
//! recovered; no position is ever claimed without its slot being taken,
//! so there is no claim to steal. `tail` and `head` are hints moved on by
//! plain stores: they never pass an untaken position, and whoever finds a
//! taken slot at one walks on (racing stores can set a hint back, even by
//! laps; threads then walk forward again, jumping a lap at a time: see
//! `advance` and `walk` in `claim.rs`). A slot free for exactly
//! its position `p` exists only for the first untaken push position, so
//! pushes are claimed in position order, and likewise pops.
//!
//! Stamps are doubled positions so that "holds `p`" and
//! "free for `p + cap`" differ even for a capacity of 1, where Vyukov's
//! original `p + 1` and `p + cap` coincide; they are compared as signed
//! 40-bit distances, which the capacity limit of 2^32 keeps unambiguous.
//!
//! The data is accessed only by the owner of a `W` or `R` slot, between
//! the CAS that took it (Acquire) and the store that hands it on (Release),
//! so a slot's value is never accessed by two sides at once.
//!
//! The closed flag is the control line's `closed` word. A producer reads
//! it after its claim CAS (`SeqCst` both) and publishes the slot as
//! skipped if it is set; a consumer that finds `F(head)` reads the flag
//! and then the slot again (`SeqCst` both) before it reports "closed and
//! drained", so a push that lands after that report is impossible (the
//! argument is at `closed_after_claim` in `claim.rs`). Positions stay below
//! 2^62 for centuries of pushes at one per nanosecond.
//!
//! # Owner records
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
//! read at all is argued at [`clear_dead_owner`] below. What is left
//! of the pid's weakness is that window of a few instructions: an owner
//! killed inside it whose pid is reused before anyone looks holds its slot
//! until the new process exits. Where start times cannot be read (no
//! `/proc`), an identity is a pid. The non-blocking calls never recover
//! (`try_pop` reports [`PopError::Empty`](super::PopError::Empty) at such a slot); any blocking or
//! timed call does. A closure that *panics* is simpler still: its thread
//! lives and knows the claim is abandoned, so the slot becomes `S` (pushes)
//! or is freed (pops) at once.

use core::mem::align_of;

use bytemuck::Pod;

use crate::identity::Identity;
use crate::region::ShmSafe;
use crate::ring::IndexLine;
use crate::sync::{pid_alive, AtomicU32, AtomicU64, Ordering, UnsafeCell};
use crate::wait::EventCount;

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

/// The `seq` word `F(pos)` of the slot of `pos` free for the producer of
/// `pos`, in a ring of `capacity` slots: [`free_stamp`], except in the
/// first lap (`pos < capacity`), where it is 0, so that zeroed memory is
/// an empty ring. Both rings' ([`crate::msgqueue`]'s too).
#[inline(always)]
pub(crate) const fn free_word(capacity: u64, pos: u64) -> u64 {
    if pos < capacity {
        0
    } else {
        free_stamp(pos)
    }
}

/// The stamp "free for the producer of `pos`" after the first lap (see
/// [`free_word`]).
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

/// Records the identity word `me` of the process that has just taken a
/// slot (its `seq` CAS to `W` or `R` succeeded) in the slot's `owner`.
#[inline(always)]
pub(crate) fn record_owner(owner: &AtomicU64, me: u64) {
    // Relaxed: a recoverer reads it after an Acquire load of `seq` that
    // found our hold; until it is visible, the recoverer judges by the pid
    // in `seq` (ours, alive while we are). The clear before our hand-on is
    // sequenced after it, so the record never outlives our hold.
    owner.store(me, Ordering::Relaxed);
}

/// Clears a slot's `owner` before the owner's store that hands the slot
/// on (`W` to `V`/`S`, `R` to `F`), which must be a Release store of its
/// `seq` and follow at once.
#[inline(always)]
pub(crate) fn clear_owner(owner: &AtomicU64) {
    // Relaxed: ordered by the Release store of `seq` that follows, which
    // every later taker's CAS acquires (directly or through the release
    // sequence of the slot's RMWs), and with it every recoverer that finds
    // a later hold: no later hold can be judged by our identity.
    owner.store(0, Ordering::Relaxed);
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
    /// 1 once the ring is closed: the closed flag (read by every push
    /// after its claim, and by pops that find the ring empty; see
    /// `closed_after_claim` in `claim.rs`).
    pub(crate) closed: AtomicU32,
    _reserved: AtomicU32,
}

/// The body of an MPMC region (after the region header).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct MpmcBody {
    /// Next position to push (a hint).
    pub(crate) tail: IndexLine,
    /// Next position to pop (a hint).
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
pub(crate) struct Slot<T> {
    pub(crate) seq: AtomicU64,
    /// The identity word ([`crate::identity`]) of the process that owns the
    /// slot (`W` or `R` in `seq`), written by the owner just after its take
    /// and cleared to 0 before the store that hands the slot on; 0 while
    /// nobody owns it (so all-zero memory is a valid free slot).
    pub(crate) owner: AtomicU64,
    pub(crate) value: UnsafeCell<T>,
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
/// sequence continued by the RMWs in between: a consumer's `S` to
/// `F`), and our Acquire load of `seq` reads the value of that take (a
/// CAS, itself part of the same release sequence), so every
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
