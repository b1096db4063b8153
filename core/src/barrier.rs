//! Process-shared barrier: Python's `multiprocessing.Barrier(parties)`.
//!
//! A [`RawBarrier`] is three 32-bit words, embeddable in any shared
//! structure; a [`Barrier`] is one built in a region of its own
//! ([`Kind::Barrier`]; the header's capacity records the parties).
//!
//! ```text
//!  RawBarrier (12 bytes, align 4)
//!  +-----------------------------+----------------+----------------+
//!  | state: Futex                | waiters: u32   | parties: u32   |
//!  +-----------------------------+----------------+----------------+
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
//! A process killed while waiting stays counted in its generation, which
//! therefore never completes: the others wait until their timeouts. The
//! first to time out breaks the barrier ([`BarrierError::TimedOut`] for
//! it), and every other waiter, and every later arrival, then fails with
//! [`BarrierError::Broken`]. A barrier shared with processes that may die
//! should be waited on with [`RawBarrier::wait_timeout`]; after a break,
//! [`RawBarrier::reset`] makes it usable again.

use core::fmt;
use core::ops::Deref;
use core::time::Duration;

use crate::region::{AttachError, ElemType, InitError, Kind, Parts, Region, ShmSafe, Spec};
use crate::sync::{fence, AtomicU32, Futex, Ordering, WaitOutcome};
use crate::time::Deadline;
use crate::wait::Spin;

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
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RawBarrier, [u32; 3]);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(RawBarrier, u32);

// SAFETY: repr(C) of three 32-bit atomics: valid for every bit pattern, no
// pointers, alignment 4; size and alignment pinned above.
unsafe impl ShmSafe for RawBarrier {}

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
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("barrier is broken"),
            BarrierError::TimedOut => f.write_str("barrier wait timed out and broke the barrier"),
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
        self.wait_inner(None)
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
        self.wait_inner(Some(Deadline::after(timeout)))
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Deadline) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_inner(Some(deadline))
    }

    fn wait_inner(&self, deadline: Option<Deadline>) -> Result<BarrierWaitResult, BarrierError> {
        let parties = self.valid_parties().ok_or(BarrierError::Broken)?;
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
            if self.sleep(now, deadline) == WaitOutcome::TimedOut {
                return self.time_out(mine).map(|()| passed);
            }
        }
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
}

type BarrierParts<'a> = Parts<'a, RawBarrier, u8>;

/// The header's capacity is the number of parties; there are no elements.
fn elems_for(capacity: u64) -> Option<u64> {
    (1..=u64::from(MAX_PARTIES))
        .contains(&capacity)
        .then_some(0)
}

impl<'a> Barrier<'a> {
    /// Bytes a barrier region needs (header included).
    pub fn memory_size() -> usize {
        crate::region::Layout::of::<RawBarrier, u8>(0)
            .expect("a fixed layout fits")
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
            count: 0,
        };
        let parts = BarrierParts::create(region, spec, || RawBarrier::new(parties), |_| 0)?;
        Ok(Self { raw: parts.body })
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
        Ok(Self { raw: parts.body })
    }

    /// The barrier itself, for as long as the region lives.
    pub fn as_raw(&self) -> &'a RawBarrier {
        self.raw
    }
}

impl Deref for Barrier<'_> {
    type Target = RawBarrier;
    fn deref(&self) -> &RawBarrier {
        self.raw
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::vec::Vec;

    use crate::test_util::{buf, bytes};

    /// Waits until `n` parties are counted as arrived (they are about to
    /// block), without asserting any time.
    fn until_waiting(b: &RawBarrier, n: u32) {
        while b.n_waiting() < n {
            thread::yield_now();
        }
    }

    #[test]
    fn one_party_always_leads() {
        let b = RawBarrier::new(1);
        for _ in 0..5 {
            let r = b.wait().unwrap();
            assert!(r.is_leader());
            assert_eq!(r.index(), 0);
        }
        assert_eq!(b.parties(), 1);
        assert_eq!(b.n_waiting(), 0);
    }

    #[test]
    #[should_panic(expected = "parties")]
    fn zero_parties_panics() {
        let _ = RawBarrier::new(0);
    }

    /// Three threads through 100 generations in a row: nobody leaves a
    /// generation before all arrived, one leader per generation, indices
    /// 0, 1, 2 each once.
    #[test]
    fn reused_generations() {
        const PARTIES: usize = 3;
        const GENS: usize = 100;
        let b = Arc::new(RawBarrier::new(PARTIES as u32));
        let arrived: Arc<Vec<AtomicU32>> = Arc::new((0..GENS).map(|_| AtomicU32::new(0)).collect());
        let leaders: Arc<Vec<AtomicU32>> = Arc::new((0..GENS).map(|_| AtomicU32::new(0)).collect());
        let indices: Arc<Vec<AtomicU32>> = Arc::new((0..GENS).map(|_| AtomicU32::new(0)).collect());
        let hs: Vec<_> = (0..PARTIES)
            .map(|t| {
                let (b, arrived, leaders, indices) =
                    (b.clone(), arrived.clone(), leaders.clone(), indices.clone());
                thread::spawn(move || {
                    for g in 0..GENS {
                        arrived[g].fetch_add(1, Ordering::Relaxed);
                        let r = if (g + t) % 2 == 0 {
                            b.wait().unwrap()
                        } else {
                            b.wait_timeout(Duration::from_secs(60)).unwrap()
                        };
                        // Relaxed suffices: the barrier orders it.
                        assert_eq!(
                            arrived[g].load(Ordering::Relaxed),
                            PARTIES as u32,
                            "left gen {g} early"
                        );
                        assert!(r.index() < PARTIES as u32);
                        assert_eq!(r.is_leader(), r.index() == PARTIES as u32 - 1);
                        if r.is_leader() {
                            leaders[g].fetch_add(1, Ordering::Relaxed);
                        }
                        indices[g].fetch_or(1 << r.index(), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        for g in 0..GENS {
            assert_eq!(leaders[g].load(Ordering::Relaxed), 1, "gen {g}");
            assert_eq!(indices[g].load(Ordering::Relaxed), 0b111, "gen {g}");
        }
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    }

    #[test]
    fn timeout_breaks_for_everyone() {
        let b = Arc::new(RawBarrier::new(3));
        let b2 = b.clone();
        let other = thread::spawn(move || b2.wait());
        until_waiting(&b, 1);
        assert_eq!(
            b.wait_timeout(Duration::from_millis(5)),
            Err(BarrierError::TimedOut)
        );
        assert_eq!(other.join().unwrap(), Err(BarrierError::Broken));
        assert!(b.is_broken());
        assert_eq!(b.n_waiting(), 0);
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        assert_eq!(
            b.wait_timeout(Duration::from_millis(1)),
            Err(BarrierError::Broken)
        );
        assert_eq!(b.waiters.load(Ordering::Relaxed), 0);

        b.reset();
        assert!(!b.is_broken());
        assert_eq!(
            b.wait_deadline(Deadline::after(Duration::ZERO)),
            Err(BarrierError::TimedOut)
        );
    }

    #[test]
    fn abort_breaks_waiters_and_later_calls() {
        let b = Arc::new(RawBarrier::new(2));
        let b2 = b.clone();
        let h = thread::spawn(move || b2.wait());
        until_waiting(&b, 1);
        b.abort();
        assert_eq!(h.join().unwrap(), Err(BarrierError::Broken));
        assert!(b.is_broken());
        b.abort(); // twice: still broken, no harm
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        b.reset();
        assert!(!b.is_broken());
        let b2 = b.clone();
        let h = thread::spawn(move || b2.wait().unwrap());
        let mine = b.wait().unwrap();
        assert_ne!(mine.is_leader(), h.join().unwrap().is_leader());
    }

    #[test]
    fn reset_throws_out_waiters() {
        let b = Arc::new(RawBarrier::new(3));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || b.wait())
            })
            .collect();
        until_waiting(&b, 2);
        b.reset();
        for h in hs {
            assert_eq!(h.join().unwrap(), Err(BarrierError::Broken));
        }
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
        // Usable again, and a reset with nobody waiting changes nothing
        // visible.
        b.reset();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || b.wait().unwrap())
            })
            .collect();
        let r = b.wait().unwrap();
        let leaders = hs
            .into_iter()
            .map(|h| h.join().unwrap().is_leader() as u32)
            .sum::<u32>()
            + r.is_leader() as u32;
        assert_eq!(leaders, 1);
    }

    #[test]
    fn outcome_reads_the_word() {
        let mine = 5 * GEN_ONE + 3 * EPOCH_ONE + 1;
        assert_eq!(outcome(mine, mine + 1), None, "more arrivals");
        assert_eq!(
            outcome(mine, mine | BROKEN_BIT),
            Some(Err(BarrierError::Broken))
        );
        assert_eq!(outcome(mine, 6 * GEN_ONE + 3 * EPOCH_ONE), Some(Ok(())));
        assert_eq!(
            outcome(mine, 5 * GEN_ONE + 4 * EPOCH_ONE),
            Some(Err(BarrierError::Broken))
        );
        // Completed, then reset: passed.
        assert_eq!(outcome(mine, 6 * GEN_ONE + 4 * EPOCH_ONE), Some(Ok(())));
        // The generation wraps.
        let last = GEN_MASK | 1;
        assert_eq!(
            outcome(last, last.wrapping_add(GEN_ONE) & GEN_MASK),
            Some(Ok(()))
        );
    }

    #[test]
    fn corrupt_state_is_broken_not_ub() {
        let b = RawBarrier::new(2);
        b.state.store(COUNT_MASK, Ordering::Relaxed); // count >= parties
        assert!(b.is_broken());
        assert_eq!(b.n_waiting(), 0);
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        b.reset();
        assert!(!b.is_broken());
        b.parties.store(0, Ordering::Relaxed);
        assert!(b.is_broken());
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        b.parties.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(b.wait(), Err(BarrierError::Broken));
    }

    #[test]
    fn region_create_attach_and_errors() {
        let mut b = buf(2);
        let r = Region::from_mut_slice(bytes(&mut b));
        assert!(Barrier::memory_size() <= 256);
        assert_eq!(Barrier::attach(r).unwrap_err(), AttachError::NotReady);
        assert_eq!(
            Barrier::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
            AttachError::NotReady
        );
        for bad in [0, MAX_PARTIES + 1] {
            assert_eq!(
                Barrier::create(r, bad).unwrap_err(),
                InitError::InvalidCapacity {
                    capacity: u64::from(bad)
                }
            );
        }
        let a = Barrier::create(r, 2).unwrap();
        assert_eq!(
            Barrier::create(r, 2).unwrap_err(),
            InitError::AlreadyInitialized
        );
        let c = Barrier::attach_timeout(r, Duration::from_millis(2)).unwrap();
        let d = Barrier::attach_deadline(r, Deadline::after(Duration::ZERO)).unwrap();
        assert_eq!(c.parties(), 2);
        assert_eq!(r.header().unwrap().capacity(), 2);
        thread::scope(|s| {
            let h = s.spawn(|| c.wait().unwrap());
            let mine = a.as_raw().wait().unwrap();
            assert_ne!(mine.is_leader(), h.join().unwrap().is_leader());
        });
        assert_eq!(d.n_waiting(), 0);
        assert!(matches!(
            crate::semaphore::Semaphore::attach(r),
            Err(AttachError::KindMismatch {
                found: 8,
                expected: Kind::Semaphore
            })
        ));

        // A header whose parties are out of range is refused.
        let mut copy = buf(2);
        let c2 = bytes(&mut copy);
        c2.copy_from_slice(bytes(&mut b));
        c2[40..48].copy_from_slice(&0u64.to_le_bytes());
        assert!(matches!(
            Barrier::attach(Region::from_mut_slice(c2)),
            Err(AttachError::CorruptCapacity { capacity: 0 })
        ));

        let mut small = buf(1);
        assert!(matches!(
            Barrier::create(Region::from_mut_slice(bytes(&mut small)), 2),
            Err(InitError::TooSmall { .. })
        ));
    }

    #[test]
    fn tagged_attach_needs_the_same_tag() {
        let mut b = buf(Barrier::memory_size().div_ceil(128));
        let r = Region::from_mut_slice(bytes(&mut b));
        Barrier::create_tagged(r, 2, 3).unwrap();
        let t = Barrier::attach_tagged_timeout(r, 3, Duration::ZERO).unwrap();
        assert_eq!(t.parties(), 2);
        assert!(matches!(
            Barrier::attach_tagged_timeout(r, 4, Duration::ZERO),
            Err(AttachError::TypeMismatch { .. })
        ));
        assert!(matches!(
            Barrier::attach(r),
            Err(AttachError::TypeMismatch { .. })
        ));
        let mut b = buf(Barrier::memory_size().div_ceil(128));
        let r = Region::from_mut_slice(bytes(&mut b));
        assert!(matches!(
            Barrier::create_tagged(r, 0, 3),
            Err(InitError::InvalidCapacity { capacity: 0 })
        ));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            std::format!("{}", BarrierError::Broken),
            "barrier is broken"
        );
        assert!(std::format!("{}", BarrierError::TimedOut).starts_with("barrier wait timed out"));
        assert_eq!(std::format!("{:?}", BarrierError::TimedOut), "TimedOut");
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// Two parties, two generations: both pass each, one leader per
    /// generation, and what each wrote before a generation's wait is seen by
    /// the other after it.
    #[test]
    fn two_parties_two_generations() {
        loom::model(|| {
            let b = Arc::new(RawBarrier::new(2));
            // cells[g][party]: written by `party` before generation g's
            // wait, read by the other party after it.
            let cells = Arc::new([
                [UnsafeCell::new(0u32), UnsafeCell::new(0u32)],
                [UnsafeCell::new(0u32), UnsafeCell::new(0u32)],
            ]);
            let run = |me: usize, b: &RawBarrier, cells: &[[UnsafeCell<u32>; 2]; 2]| {
                let mut leads = [false; 2];
                for (g, lead) in leads.iter_mut().enumerate() {
                    // SAFETY: only this party writes this cell, and the other
                    // reads it only after the barrier below.
                    cells[g][me].with_mut(|p| unsafe { *p = g as u32 + 1 });
                    let r = b.wait().unwrap();
                    *lead = r.is_leader();
                    // SAFETY: the other party wrote this cell before the
                    // barrier we just passed and never writes it again.
                    let seen = cells[g][1 - me].with(|p| unsafe { *p });
                    assert_eq!(seen, g as u32 + 1);
                }
                leads
            };
            let (b2, c2) = (b.clone(), cells.clone());
            let t = thread::spawn(move || run(1, &b2, &c2));
            let mine = run(0, &b, &cells);
            let theirs = t.join().unwrap();
            for g in 0..2 {
                assert!(mine[g] != theirs[g], "one leader in generation {g}");
            }
        });
    }

    /// Three parties, one generation: all pass, exactly one leader.
    #[test]
    fn three_parties_one_leader() {
        loom::model(|| {
            let b = Arc::new(RawBarrier::new(3));
            let spawn = |b: &Arc<RawBarrier>| {
                let b = b.clone();
                thread::spawn(move || b.wait().unwrap())
            };
            let t1 = spawn(&b);
            let t2 = spawn(&b);
            let r0 = b.wait().unwrap();
            let r1 = t1.join().unwrap();
            let r2 = t2.join().unwrap();
            let leaders = [r0, r1, r2].iter().filter(|r| r.is_leader()).count();
            assert_eq!(leaders, 1);
            assert_eq!(r0.index() + r1.index() + r2.index(), 3);
        });
    }

    /// A waiter whose deadline has passed (loom's frozen clock can only
    /// fire those) races its peer: either both pass, or it breaks the
    /// barrier and the peer, asleep or arriving, gets `Broken`.
    #[test]
    fn timeout_break_reaches_peer() {
        loom::model(|| {
            let b = Arc::new(RawBarrier::new(2));
            let b2 = b.clone();
            let t = thread::spawn(move || b2.wait());
            let mine = b.wait_deadline(Deadline::from_monotonic_nanos(0));
            let theirs = t.join().unwrap();
            match mine {
                Ok(r) => assert_ne!(r.is_leader(), theirs.unwrap().is_leader()),
                Err(e) => {
                    assert_eq!(e, BarrierError::TimedOut);
                    assert_eq!(theirs, Err(BarrierError::Broken));
                }
            }
        });
    }

    /// A waiter thrown out by `abort` is woken (no lost wake-up).
    #[test]
    fn abort_wakes_waiter() {
        loom::model(|| {
            let b = Arc::new(RawBarrier::new(2));
            let b2 = b.clone();
            let t = thread::spawn(move || b2.abort());
            assert_eq!(b.wait(), Err(BarrierError::Broken));
            t.join().unwrap();
        });
    }
}
