//! Process-shared barrier: Python's `multiprocessing.Barrier(parties)`.
//!
//! A [`RawBarrier`] is four 32-bit words, embeddable in any shared
//! structure; a [`Barrier`] is one built in a region of its own
//! ([`Kind::Barrier`]; the header's capacity records the parties), with a
//! table of the parties' identities (see
//! [Processes that die](#processes-that-die)).
//!
//! ```text
//!  RawBarrier (16 bytes, align 4)
//!  +----------------+----------------+----------------+----------------+
//!  | state: Futex   | waiters: u32   | parties: u32   | dead_pid: u32  |
//!  +----------------+----------------+----------------+----------------+
//!  Barrier region: header | RawBarrier | [PartySlot; parties]
//!  PartySlot (16 bytes): owner identity: u64 | arrived: u32 | 0: u32
//!
//!  state:  31        23 22       15  14   13            0
//!         +-----------+-----------+----+----------------+
//!         | gen (9)   | epoch (8) | BR | count (14)     |
//!         +-----------+-----------+----+----------------+
//! ```
//!
//! - `count`: parties arrived in this generation (`0..parties`);
//! - `BR`: the generation was broken by [`RawBarrier::abort`]
//!   or a time-out: every waiter of it, and every later arrival, fails;
//! - `gen`: bumped (wrapping) each time the last party arrives;
//! - `epoch`: bumped (wrapping) by each [`RawBarrier::reset`].
//!
//! Everything an arrival must check and change is in one word, so arriving
//! is one CAS: there is no window in which a fast party that re-enters the
//! barrier for the next generation could be counted in the previous one.
//!
//! | transition | from | to | wakes |
//! |---|---|---|---|
//! | arrival (not last) | `g e 0 c` | `g e 0 c+1` | nobody |
//! | last arrival (leader) | `g e 0 parties-1` | `g+1 e 0 0` | all |
//! | time-out, `abort` | `g e 0 c` | `g e BR c` | all |
//! | `reset` | `g e * c` | `g e+1 0 0` | all |
//!
//! A waiter that arrived at `(g, e)` leaves when the word shows
//! another generation (it passed; if the epoch moved too, a reset came after
//! its generation had ended), or the same generation in another epoch (a
//! reset threw it out: [`BarrierError::Broken`]), or `(g, e)` broken.
//!
//! With at most `parties` processes using the barrier, a generation cannot
//! end without each of its waiters, so that reading is exact. If more
//! processes use it at once (allowed, as in Python: the extra ones simply
//! make up the next generation), a waiter that sleeps through a reset
//! *and* the completion of a later generation before it looks reports
//! having passed. The fields wrap: a waiter that does not get to run
//! while exactly 512 generations, or exactly 256 resets, go by keeps
//! waiting (up to its timeout).
//!
//! # Waking only sleepers
//!
//! ```text
//!  waiter                              leader / abort / reset / time-out
//!  ------                              ---------------------------------
//!  waiters += 1                        CAS state            (AcqRel)
//!  fence(SeqCst)  -------- pairs ----- fence(SeqCst)
//!  futex_wait(state, word it saw)      if waiters != 0: wake all
//!  waiters -= 1; re-check
//! ```
//!
//! # Processes that die
//!
//! A [`Barrier`] (one in a region of its own) keeps a table of parties,
//! one [`PartySlot`] per party: the process's
//! [identity](crate::identity) (pid plus start time, so a reused pid does
//! not pass for the dead one) and the generation it last arrived in. A
//! process registers on its first [`Barrier::wait`], or up front with
//! [`Barrier::register`]; [`Barrier::leave`] withdraws it. Waiters nap at
//! most [`RECHECK`](crate::wait::RECHECK) (50 ms) at a time, and after
//! each nap check the registered parties:
//!
//! - a party that **arrived** in the waiter's generation and then died
//!   is harmless: it is counted, the generation completes when the others
//!   arrive;
//! - a party that is **dead and has not arrived** in it never will: the
//!   waiter breaks the generation in its name, and every waiter of it and
//!   every later arrival fails with [`BarrierError::PartyDied`] naming its
//!   pid, until [`RawBarrier::reset`] (which frees the dead party's slot
//!   for a replacement, as the break already did).
//!
//! What the barrier cannot know, and the limits of the table:
//!
//! - a process that dies before it ever registered is no party the
//!   barrier knows of: the others wait as for a slow party (up to their
//!   timeouts). Call [`Barrier::register`] at the start of each party
//!   process (before anything that may fail) to close that window;
//! - a registered process that **exits** (cleanly or not) while the
//!   others go on to a generation it is not part of counts as dead: call
//!   [`Barrier::leave`] before exiting in that case;
//! - a party killed between its arrival and recording it (two stores
//!   apart) is taken for one that did not arrive: the generation breaks
//!   although it could have completed. A party died; no waiter hangs;
//! - more processes than parties (allowed, as in Python): the extra ones
//!   find the table full and take part untracked.
//!
//! A [`RawBarrier`] alone (no table) knows no parties: a process killed
//! before arriving leaves the others waiting until their timeouts. The
//! first to time out breaks the barrier ([`BarrierError::TimedOut`] for
//! it), and every other waiter, and every later arrival, then fails with
//! [`BarrierError::Broken`]. After a break, [`RawBarrier::reset`] makes it
//! usable again.

use core::fmt;
use core::ops::Deref;
use core::time::Duration;

use crate::identity::Identity;
use crate::region::{AttachError, ElemType, InitError, Kind, Parts, Region, ShmSafe, Spec};
use crate::sync::{self, fence, AtomicU32, AtomicU64, Futex, Ordering, WaitOutcome};
use crate::time::Deadline;
use crate::wait::{futex_wait_rechecked, Spin};

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;

/// The largest number of parties a barrier may have (2^14).
pub const MAX_PARTIES: u32 = 1 << 14;

const COUNT_MASK: u32 = MAX_PARTIES - 1;
/// Bit 14 of `state` (`BR`): the current generation is broken.
const BROKEN_BIT: u32 = 1 << 14;
const EPOCH_ONE: u32 = 1 << 15;
const EPOCH_MASK: u32 = 0xFF << 15;
const GEN_ONE: u32 = 1 << 23;
const GEN_MASK: u32 = 0x1FF << 23;

static_assertions::const_assert_eq!(COUNT_MASK & BROKEN_BIT, 0);
static_assertions::const_assert_eq!((COUNT_MASK | BROKEN_BIT) & EPOCH_MASK, 0);
static_assertions::const_assert_eq!(GEN_MASK | EPOCH_MASK | BROKEN_BIT | COUNT_MASK, u32::MAX);
static_assertions::const_assert_eq!(GEN_MASK & EPOCH_MASK, 0);

/// A barrier that may live in shared memory.
///
/// # Examples
///
/// ```
/// use multiproc_core::barrier::RawBarrier;
///
/// let b = RawBarrier::new(2);
/// std::thread::scope(|s| {
///     let h = s.spawn(|| b.wait().unwrap());
///     let mine = b.wait().unwrap();
///     let theirs = h.join().unwrap();
///     // Exactly one of the two is the leader (the last to arrive).
///     assert!(mine.is_leader() != theirs.is_leader());
///     assert_eq!(mine.index() + theirs.index(), 1);
/// });
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawBarrier {
    /// Generation, epoch, broken bit and arrival count (see the module
    /// docs); the futex word waiters sleep on.
    state: Futex,
    /// Waiters between announcing themselves and waking up. A hint: only
    /// "zero" matters (no wake system call needed).
    waiters: AtomicU32,
    /// Parties per generation, `1..=MAX_PARTIES`. Written once, before the
    /// barrier is shared; any other value read back means corruption and
    /// makes the barrier broken.
    parties: AtomicU32,
    /// The pid of the dead party that broke the barrier, or 0. Written
    /// before the broken bit is set (published by that CAS), cleared by
    /// `reset`.
    dead_pid: AtomicU32,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RawBarrier, [u32; 4]);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(RawBarrier, u32);

// SAFETY: repr(C) of four 32-bit atomics: valid for every bit pattern, no
// pointers, alignment 4; size and alignment pinned above.
unsafe impl ShmSafe for RawBarrier {}

/// One registered party of a [`Barrier`]: a process's identity and the
/// generation it last arrived in (see [Processes that die](self#processes-that-die)).
#[repr(C)]
#[derive(Debug)]
pub struct PartySlot {
    /// The party's identity word ([`crate::identity`]); 0: free.
    owner: AtomicU64,
    /// The generation and epoch bits of the `state` word the party last
    /// arrived at, with bit 0 set; 0: never arrived.
    arrived: AtomicU32,
    /// Zero; keeps the size a multiple of 8.
    _reserved: AtomicU32,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(PartySlot, [u64; 2]);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(PartySlot, u64);

// SAFETY: repr(C) of atomics: valid for every bit pattern, no pointers,
// alignment 8; size and alignment pinned above.
unsafe impl ShmSafe for PartySlot {}

impl PartySlot {
    fn new() -> Self {
        Self {
            owner: AtomicU64::new(0),
            arrived: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }
}

/// The `arrived` mark of a party that arrived at word `mine`.
#[inline]
fn arrival_mark(mine: u32) -> u32 {
    (mine & (GEN_MASK | EPOCH_MASK)) | 1
}

/// What a successful [`RawBarrier::wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    index: u32,
    leader: bool,
}

impl BarrierWaitResult {
    /// The order of arrival in the generation, `0..parties` (Python's
    /// return value of `Barrier.wait`): 0 for the first to arrive.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether this caller was the last to arrive, the one that released
    /// the others. Exactly one caller per generation is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

/// Why a barrier wait failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken (aborted, a waiter timed out, or its memory is
    /// corrupt), or it was reset while this caller waited (Python's
    /// `BrokenBarrierError`).
    Broken,
    /// This caller's timeout passed first; it broke the barrier, so every
    /// other waiter of the generation gets [`Broken`](Self::Broken).
    TimedOut,
    /// A registered party died without arriving in this generation (see
    /// [Processes that die](self#processes-that-die)): the barrier is
    /// broken, for every waiter and every later arrival, until
    /// [`reset`](RawBarrier::reset). A kind of [`Broken`](Self::Broken).
    PartyDied {
        /// The dead party's process id.
        pid: u32,
    },
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("barrier is broken"),
            BarrierError::TimedOut => f.write_str("barrier wait timed out and broke the barrier"),
            BarrierError::PartyDied { pid } => {
                write!(
                    f,
                    "barrier is broken: party process {pid} died before arriving"
                )
            }
        }
    }
}

impl core::error::Error for BarrierError {}

/// How a waiter that arrived at word `mine` stands, given the word `now`:
/// `None` while it must keep waiting.
#[inline]
fn outcome(mine: u32, now: u32) -> Option<Result<(), BarrierError>> {
    let diff = mine ^ now;
    if diff & GEN_MASK != 0 {
        // Our generation completed (a reset may have come after).
        Some(Ok(()))
    } else if diff & EPOCH_MASK != 0 {
        // Reset while we waited.
        Some(Err(BarrierError::Broken))
    } else if now & BROKEN_BIT != 0 {
        Some(Err(BarrierError::Broken))
    } else {
        None
    }
}

/// This process's slot in `slots`: the one it owns, else a free one it
/// takes; `None` if all are taken (the process is then not tracked).
fn register(slots: &[PartySlot]) -> Option<&PartySlot> {
    if slots.is_empty() {
        return None;
    }
    let me = sync::current_identity();
    // Relaxed: comparing with our own identity, which only we write.
    if let Some(slot) = slots.iter().find(|s| s.owner.load(Ordering::Relaxed) == me) {
        return Some(slot);
    }
    // AcqRel: Release publishes our identity to `check_parties` (Acquire).
    slots.iter().find(|s| {
        s.owner
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

impl RawBarrier {
    /// A barrier for `parties` parties (Python's `Barrier(parties)`).
    ///
    /// # Panics
    ///
    /// If `parties` is 0 or above [`MAX_PARTIES`].
    pub fn new(parties: u32) -> Self {
        assert!(
            (1..=MAX_PARTIES).contains(&parties),
            "barrier parties must be in 1..=MAX_PARTIES"
        );
        Self {
            state: Futex::new(0),
            waiters: AtomicU32::new(0),
            parties: AtomicU32::new(parties),
            dead_pid: AtomicU32::new(0),
        }
    }

    /// Waits until `parties` callers have arrived (this one included).
    ///
    /// # Errors
    ///
    /// [`BarrierError::Broken`] if the barrier is or becomes broken, or is
    /// reset while this caller waits. A party that died while waiting
    /// makes this wait forever (see the module docs): where that can
    /// happen, use [`wait_timeout`](Self::wait_timeout).
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_inner(&[], None)
    }

    /// As [`wait`](Self::wait), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); and [`BarrierError::TimedOut`] if the
    /// timeout passed first, which leaves the barrier broken (as in Python):
    /// the other waiters get [`BarrierError::Broken`].
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use multiproc_core::barrier::{BarrierError, RawBarrier};
    ///
    /// let b = RawBarrier::new(2);
    /// // Nobody else comes: the wait times out and breaks the barrier.
    /// assert_eq!(b.wait_timeout(Duration::from_millis(1)), Err(BarrierError::TimedOut));
    /// assert!(b.is_broken());
    /// b.reset();
    /// assert!(!b.is_broken());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_inner(&[], Some(Deadline::after(timeout)))
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Deadline) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_inner(&[], Some(deadline))
    }

    fn wait_inner(
        &self,
        slots: &[PartySlot],
        deadline: Option<Deadline>,
    ) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_slots(slots, deadline)
            .map_err(|e| self.name_the_dead(e))
    }

    /// `Broken` becomes `PartyDied` when a dead party broke the barrier.
    fn name_the_dead(&self, e: BarrierError) -> BarrierError {
        match e {
            // Relaxed: written before the broken bit, whose Acquire load
            // made us return `Broken`.
            BarrierError::Broken => match self.dead_pid.load(Ordering::Relaxed) {
                0 => BarrierError::Broken,
                pid => BarrierError::PartyDied { pid },
            },
            e => e,
        }
    }

    fn wait_slots(
        &self,
        slots: &[PartySlot],
        deadline: Option<Deadline>,
    ) -> Result<BarrierWaitResult, BarrierError> {
        let parties = self.valid_parties().ok_or(BarrierError::Broken)?;
        let me_slot = register(slots);
        // Relaxed: only a guess for the CAS below, which re-checks it.
        let mut s = self.state.load(Ordering::Relaxed);
        let (mine, index) = loop {
            let index = s & COUNT_MASK;
            if s & BROKEN_BIT != 0 || index >= parties {
                return Err(BarrierError::Broken);
            }
            let new = if index + 1 == parties {
                // Last arrival: next generation, nobody arrived yet.
                (s & (GEN_MASK | EPOCH_MASK)).wrapping_add(GEN_ONE)
            } else {
                s + 1
            };
            // AcqRel. Release: what this party did before the barrier is
            // published to every party whose Acquire load of `state` (below,
            // or in `time_out`) reads this word or a later one: all changes
            // of `state` are RMWs, so they all extend this release sequence.
            // Acquire: the leader's CAS reads the word the earlier arrivals
            // left, so the leader, too, sees what they did.
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break (s, index),
                Err(now) => s = now,
            }
        };
        if let Some(slot) = me_slot {
            // Release: pairs with the Acquire load in `check_parties`.
            slot.arrived.store(arrival_mark(mine), Ordering::Release);
        }
        if index + 1 == parties {
            self.wake_all();
            return Ok(BarrierWaitResult {
                index,
                leader: true,
            });
        }
        let passed = BarrierWaitResult {
            index,
            leader: false,
        };
        let mut backoff = Spin::DEFAULT.start();
        loop {
            // Acquire: pairs with the Release of whichever RMW ended our
            // wait: the leader's CAS, `abort`, `reset`, a time-out's CAS.
            let now = self.state.load(Ordering::Acquire);
            if let Some(r) = outcome(mine, now) {
                return r.map(|()| passed);
            }
            if backoff.spin() {
                continue;
            }
            if slots.is_empty() {
                if self.sleep(now, deadline) == WaitOutcome::TimedOut {
                    return self.time_out(mine).map(|()| passed);
                }
                continue;
            }
            // Under loom no nap ends by itself (frozen clock): check the
            // parties before sleeping too.
            if cfg!(multiproc_loom) {
                if let Some(r) = self.check_parties(slots, mine) {
                    return r.map(|()| passed);
                }
            }
            // With a party table, naps are bounded so that dead parties are
            // noticed (see the module docs).
            if self.nap(now, deadline) == WaitOutcome::TimedOut {
                return self.time_out(mine).map(|()| passed);
            }
            if let Some(r) = self.check_parties(slots, mine) {
                return r.map(|()| passed);
            }
        }
    }

    /// Looks for a registered party that is dead and has not arrived in the
    /// generation of `mine`; if there is one, breaks that generation in its
    /// name. Returns the caller's outcome if its generation ended.
    #[cold]
    fn check_parties(&self, slots: &[PartySlot], mine: u32) -> Option<Result<(), BarrierError>> {
        let me = sync::current_identity();
        let mark = arrival_mark(mine);
        for slot in slots {
            // Acquire: pairs with the registration CAS, so the liveness
            // check reads the party's identity.
            let o = slot.owner.load(Ordering::Acquire);
            // Acquire: pairs with the Release store of the arrival.
            if o == 0 || o == me || slot.arrived.load(Ordering::Acquire) == mark {
                continue;
            }
            if sync::identity_alive(o) {
                continue;
            }
            let pid = Identity::from_word(o).map_or(0, Identity::pid);
            return Some(self.break_for(slot, o, pid, mine));
        }
        None
    }

    /// Breaks the generation of `mine` because party `pid` (in `slot`, as
    /// identity `o`) died, unless the generation ended meanwhile.
    #[cold]
    fn break_for(&self, slot: &PartySlot, o: u64, pid: u32, mine: u32) -> Result<(), BarrierError> {
        // Relaxed: published by the AcqRel CAS that sets the broken bit.
        self.dead_pid.store(pid, Ordering::Relaxed);
        // Acquire: as the load in `wait_inner`.
        let mut now = self.state.load(Ordering::Acquire);
        loop {
            if let Some(r) = outcome(mine, now) {
                if r.is_ok() {
                    // Our generation ended after all: take the name back
                    // unless another breaker wrote its own.
                    let _ = self.dead_pid.compare_exchange(
                        pid,
                        0,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                return r;
            }
            // AcqRel: as in `time_out`.
            match self.state.compare_exchange(
                now,
                now | BROKEN_BIT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // The dead party's slot is free for a replacement.
                    // Relaxed: nothing is published with it.
                    let _ = slot
                        .owner
                        .compare_exchange(o, 0, Ordering::Relaxed, Ordering::Relaxed);
                    self.wake_all();
                    return Err(BarrierError::PartyDied { pid });
                }
                Err(changed) => now = changed,
            }
        }
    }

    /// As `sleep`, for [`RECHECK`](crate::wait::RECHECK) at most (then it
    /// returns `Woken`).
    fn nap(&self, seen: u32, deadline: Option<Deadline>) -> WaitOutcome {
        // Relaxed: ordered before the futex check by the fence below.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: as in `sleep`.
        fence(Ordering::SeqCst);
        let r = futex_wait_rechecked(&self.state, seen, deadline);
        // Relaxed: a hint for wakers; the caller re-reads `state`.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// Our deadline passed while the word was still `mine`'s generation:
    /// break it, unless it ended meanwhile.
    #[cold]
    fn time_out(&self, mine: u32) -> Result<(), BarrierError> {
        // Acquire: as the load in `wait_inner`.
        let mut now = self.state.load(Ordering::Acquire);
        loop {
            if let Some(r) = outcome(mine, now) {
                return r;
            }
            // AcqRel. Release: pairs with the other waiters' Acquire loads
            // (they learn the barrier broke). Acquire: the failure load
            // feeds `outcome`, as the load in `wait_inner`.
            match self.state.compare_exchange(
                now,
                now | BROKEN_BIT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.wake_all();
                    return Err(BarrierError::TimedOut);
                }
                Err(changed) => now = changed,
            }
        }
    }

    /// Announces a sleeper and sleeps while `state` still holds `seen`.
    fn sleep(&self, seen: u32, deadline: Option<Deadline>) -> WaitOutcome {
        // Relaxed: ordered before the futex check by the fence below.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the fence in `wake_all`. Either the waker
        // sees our increment, or the kernel's check of `state` (atomic with
        // going to sleep) sees the waker's change and we do not sleep.
        fence(Ordering::SeqCst);
        let r = self.state.wait(seen, deadline);
        // Relaxed: a hint for wakers; the caller re-reads `state`.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// Wakes every sleeper, if there is one. Call after changing `state`.
    fn wake_all(&self) {
        // SeqCst fence: pairs with the fence in `sleep`.
        fence(Ordering::SeqCst);
        // Relaxed: ordered after the state change by the fence above.
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.state.wake_all();
        }
    }

    /// Breaks the barrier (Python's `abort()`): every party waiting now and
    /// every later [`wait`](Self::wait) fails with
    /// [`BarrierError::Broken`], until [`reset`](Self::reset).
    pub fn abort(&self) {
        // AcqRel: Release pairs with the waiters' Acquire loads; Acquire
        // keeps the RMW chain (see `wait_inner`) whole.
        let old = self.state.fetch_or(BROKEN_BIT, Ordering::AcqRel);
        if old & BROKEN_BIT == 0 {
            self.wake_all();
        }
        // Already broken: whoever broke it woke the waiters, and nobody
        // sleeps on a broken word.
    }

    /// Returns the barrier to its initial state (Python's `reset()`): no
    /// party arrived, not broken. Parties waiting now fail with
    /// [`BarrierError::Broken`].
    pub fn reset(&self) {
        // Relaxed: only a guess for the CAS below, which re-checks it.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let epoch = (s & EPOCH_MASK).wrapping_add(EPOCH_ONE) & EPOCH_MASK;
            let new = (s & GEN_MASK) | epoch;
            // AcqRel: as in `abort`.
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        // Relaxed: the name of a dead party belongs to the broken
        // generation the reset ended; a waiter that saw it broken read it
        // already.
        self.dead_pid.store(0, Ordering::Relaxed);
        self.wake_all();
    }

    /// The number of parties per generation.
    #[inline]
    pub fn parties(&self) -> u32 {
        // Relaxed: written once before the barrier was shared (published by
        // the region's ready state, or by whatever handed it over).
        self.parties.load(Ordering::Relaxed)
    }

    fn valid_parties(&self) -> Option<u32> {
        let p = self.parties();
        (1..=MAX_PARTIES).contains(&p).then_some(p)
    }

    /// The number of parties waiting in the current generation (0 when
    /// broken). A snapshot: other processes change it at any moment.
    pub fn n_waiting(&self) -> u32 {
        if self.is_broken() {
            return 0;
        }
        // Relaxed: a snapshot, nothing is read on the strength of it.
        self.state.load(Ordering::Relaxed) & COUNT_MASK
    }

    /// Whether the barrier is broken (aborted, a waiter timed out, or its
    /// shared memory holds an impossible state).
    pub fn is_broken(&self) -> bool {
        // Acquire: pairs with the Release RMW that broke it, so a caller
        // that sees it broken sees what the breaker did before.
        let s = self.state.load(Ordering::Acquire);
        match self.valid_parties() {
            Some(p) => s & BROKEN_BIT != 0 || s & COUNT_MASK >= p,
            None => true,
        }
    }
}

/// A barrier in a region of its own, shared between processes.
///
/// It dereferences to [`RawBarrier`] for `wait`, `abort` and the rest. It is
/// a handle (a reference into the region): `Copy`, `Send` and `Sync`.
///
/// # Examples
///
/// ```
/// use multiproc_core::barrier::Barrier;
/// use multiproc_core::region::Region;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 256]);
/// let mut mem = Box::new(Mem([0; 256]));
/// let region = Region::from_mut_slice(&mut mem.0);
///
/// let b = Barrier::create(region, 3).unwrap();
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         // In another process: the same mapping, attached.
///         s.spawn(move || Barrier::attach(region).unwrap().wait().unwrap());
///     }
///     b.wait().unwrap();
/// });
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Barrier<'a> {
    raw: &'a RawBarrier,
    slots: &'a [PartySlot],
}

type BarrierParts<'a> = Parts<'a, RawBarrier, PartySlot>;

/// The header's capacity is the number of parties, one slot each.
fn elems_for(capacity: u64) -> Option<u64> {
    (1..=u64::from(MAX_PARTIES))
        .contains(&capacity)
        .then_some(capacity)
}

impl<'a> Barrier<'a> {
    /// Bytes a barrier region needs (header included).
    pub fn memory_size(parties: u32) -> usize {
        let n = parties.clamp(1, MAX_PARTIES);
        crate::region::Layout::of::<RawBarrier, PartySlot>(u64::from(n))
            .expect("a bounded layout fits")
            .total
    }

    /// Builds a barrier for `parties` parties in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] if `parties` is 0 or above
    /// [`MAX_PARTIES`]; otherwise as [`region`](crate::region) creation: too
    /// small, misaligned, already initialised.
    pub fn create(region: Region<'a>, parties: u32) -> Result<Self, InitError> {
        Self::create_tagged(region, parties, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` that
    /// [`attach_tagged_timeout`](Self::attach_tagged_timeout) must match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, parties: u32, tag: u64) -> Result<Self, InitError> {
        if !(1..=MAX_PARTIES).contains(&parties) {
            return Err(InitError::InvalidCapacity {
                capacity: u64::from(parties),
            });
        }
        let spec = Spec {
            kind: Kind::Barrier,
            elem: ElemType::of::<()>().tagged(tag),
            capacity: u64::from(parties),
            count: u64::from(parties),
        };
        let parts = BarrierParts::create(
            region,
            spec,
            || RawBarrier::new(parties),
            |_| PartySlot::new(),
        )?;
        Ok(Self::from_parts(parts))
    }

    crate::region::attach_fns!('a, "a barrier");

    /// As [`attach_timeout`](Self::attach_timeout), with a deadline.
    ///
    /// # Errors
    ///
    /// As [`attach_timeout`](Self::attach_timeout).
    pub fn attach_deadline(region: Region<'a>, deadline: Deadline) -> Result<Self, AttachError> {
        Self::open(region, 0, Some(deadline))
    }

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let parts = BarrierParts::open(
            region,
            Kind::Barrier,
            ElemType::of::<()>().tagged(tag),
            elems_for,
            deadline,
        )?;
        Ok(Self::from_parts(parts))
    }

    fn from_parts(parts: BarrierParts<'a>) -> Self {
        // SAFETY: `parts.array` points to `parts.count` initialised slots in
        // the region (checked by create/open), which lives for 'a; a slot is
        // valid for every bit pattern and only touched through atomics.
        let slots = unsafe { core::slice::from_raw_parts(parts.array.as_ptr(), parts.count) };
        Self {
            raw: parts.body,
            slots,
        }
    }

    /// The barrier itself, for as long as the region lives. Waits on it
    /// directly do not register and do not watch for dead parties.
    pub fn as_raw(&self) -> &'a RawBarrier {
        self.raw
    }

    /// Registers the calling process as a party (see
    /// [Processes that die](self#processes-that-die)): from now on, if it
    /// dies without arriving in a generation, that generation breaks with
    /// [`BarrierError::PartyDied`]. [`wait`](Self::wait) registers on its
    /// own; a process calls this first so that a death before its first
    /// `wait` is noticed too. Returns `false` if every slot is taken
    /// (the process then takes part untracked).
    pub fn register(&self) -> bool {
        register(self.slots).is_some()
    }

    /// Withdraws the calling process from the parties, for a process that
    /// stops taking part while the others go on (its exit would otherwise
    /// count as a death). Returns whether it was registered.
    pub fn leave(&self) -> bool {
        let me = sync::current_identity();
        // Relaxed: nothing is published with it; `check_parties` skips a
        // free slot whatever it reads after.
        self.slots.iter().any(|s| {
            s.owner
                .compare_exchange(me, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Registered parties (live or not yet noticed dead). A snapshot.
    pub fn registered(&self) -> u32 {
        self.slots
            .iter()
            // Relaxed: a snapshot.
            .filter(|s| s.owner.load(Ordering::Relaxed) != 0)
            .count() as u32
    }

    /// Waits until `parties` callers have arrived (this one included),
    /// registering this process as a party first.
    ///
    /// # Errors
    ///
    /// [`BarrierError::PartyDied`] if a registered party is dead and has
    /// not arrived (noticed within about 50 ms of waiting);
    /// [`BarrierError::Broken`] if the barrier is or becomes broken
    /// otherwise, or is reset while this caller waits.
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.raw.wait_inner(self.slots, None)
    }

    /// As [`wait`](Self::wait), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), and [`BarrierError::TimedOut`] as
    /// [`RawBarrier::wait_timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.raw
            .wait_inner(self.slots, Some(Deadline::after(timeout)))
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Deadline) -> Result<BarrierWaitResult, BarrierError> {
        self.raw.wait_inner(self.slots, Some(deadline))
    }
}

impl Deref for Barrier<'_> {
    type Target = RawBarrier;
    fn deref(&self) -> &RawBarrier {
        self.raw
    }
}
