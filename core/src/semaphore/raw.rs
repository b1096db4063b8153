//! The semaphore's shared state: the count word with its marker, the holder
//! slots, and the acquire/release protocol over them (see the module docs
//! of [`super`] for the algorithm).

use core::fmt;
use core::time::Duration;

#[cfg(doc)]
use super::Semaphore;
use super::SemaphoreError;
use crate::region::ShmSafe;
use crate::sync::{self, spin_loop, yield_now, AtomicU32, AtomicU64, Ordering};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin};

/// The largest count a semaphore may hold (`u32::MAX / 2`): a release that
/// would go past it fails with [`SemaphoreError::Overflow`].
pub const MAX_VALUE: u32 = u32::MAX / 2;

/// Holder slots of a [`Semaphore`] made without saying how many: the
/// number of processes that may hold units at once and still get them
/// back if they die.
pub const DEFAULT_HOLDERS: u32 = 64;

/// The most holder slots a [`Semaphore`] may have.
pub const MAX_HOLDERS: u32 = 4096;

/// `max` of a semaphore without an upper bound.
pub(super) const UNBOUNDED: u32 = u32::MAX;

pub(super) const COUNT_MASK: u64 = 0xFFFF_FFFF;
/// Marker: slot index plus one, bits 32..45.
pub(super) const M_SLOT_SHIFT: u32 = 32;
pub(super) const M_SLOT_MASK: u64 = 0x1FFF;
/// Marker: the low bits of the slot's sequence number, bits 45..62.
pub(super) const M_SEQ_SHIFT: u32 = 45;
pub(super) const M_SEQ_MASK: u64 = (1 << 17) - 1;
/// Marker: the word is locked by the slot's owner, no unit moved yet,
/// bit 62.
pub(super) const M_LOCK_BIT: u64 = 1 << 62;
/// Marker: the move gives a unit back (else it takes one), bit 63.
pub(super) const M_REL_BIT: u64 = 1 << 63;

static_assertions::const_assert!((MAX_HOLDERS as u64) < M_SLOT_MASK);
static_assertions::const_assert_eq!(M_SEQ_SHIFT + 17, 62);

/// Slot state word: units held, low 32 bits; sequence number, high 32.
pub(super) const HELD_MASK: u64 = 0xFFFF_FFFF;
pub(super) const SEQ_ONE: u64 = 1 << 32;

#[inline]
pub(super) fn count_of(w: u64) -> u32 {
    (w & COUNT_MASK) as u32
}

#[inline]
pub(super) fn marker_of(w: u64) -> u64 {
    w & !COUNT_MASK
}

#[inline]
pub(super) fn marker(slot: usize, state: u64, release: bool) -> u64 {
    let seq = (state >> 32) & M_SEQ_MASK;
    (slot as u64 + 1) << M_SLOT_SHIFT | seq << M_SEQ_SHIFT | if release { M_REL_BIT } else { 0 }
}

#[inline]
pub(super) fn held_of(state: u64) -> u32 {
    (state & HELD_MASK) as u32
}

/// A counting semaphore that may live in shared memory, without a holder
/// table: its units have no owner (see [`Semaphore`] for one whose units
/// come back from dead holders).
///
/// # Examples
///
/// ```
/// use multiproc_core::semaphore::RawSemaphore;
///
/// let sem = RawSemaphore::new(2);
/// assert!(sem.try_acquire());
/// assert!(sem.try_acquire());
/// assert!(!sem.try_acquire());
/// sem.release().unwrap();
/// assert_eq!(sem.value(), 1);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawSemaphore {
    /// Units available (low 32 bits) and the marker of a move in progress
    /// (high 32 bits; see the module docs).
    pub(super) word: AtomicU64,
    /// Where acquirers that found no unit sleep; every release notifies.
    pub(super) ec: EventCount,
    /// The bound of a bounded semaphore (its initial value), or
    /// [`UNBOUNDED`]. Written once, before the semaphore is shared.
    pub(super) max: AtomicU32,
    /// Zero; keeps the size a multiple of 8.
    pub(super) _reserved: AtomicU32,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RawSemaphore, [u64; 3]);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(RawSemaphore, u64);

// SAFETY: repr(C) of atomics and an EventCount (itself ShmSafe): valid for
// every bit pattern, no pointers, alignment 8; size and alignment pinned
// above.
unsafe impl ShmSafe for RawSemaphore {}

/// One process's holdings in a [`Semaphore`] (see the module docs).
#[repr(C)]
#[derive(Debug)]
pub struct HolderSlot {
    /// The owner's identity word ([`crate::identity`]); 0: never used.
    pub(super) owner: AtomicU64,
    /// Units held (low 32 bits) and a sequence number bumped by every move
    /// and every adoption (high 32 bits).
    pub(super) state: AtomicU64,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(HolderSlot, [u64; 2]);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(HolderSlot, u64);

// SAFETY: repr(C) of two 64-bit atomics: valid for every bit pattern, no
// pointers, alignment 8; size and alignment pinned above.
unsafe impl ShmSafe for HolderSlot {}

impl HolderSlot {
    pub(super) fn new() -> Self {
        Self {
            owner: AtomicU64::new(0),
            state: AtomicU64::new(0),
        }
    }
}

/// Why a move between the count and a slot did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MoveFail {
    /// Take: no unit available.
    Empty,
    /// Give: the slot holds no unit (another thread gave it back).
    NotHeld,
    /// Give: the count would pass the limit.
    Overflow,
}

/// The acquired unit was held by a process that died holding it: it came
/// back to the semaphore and this caller has it now, the way a mutex's
/// next locker gets [`PoisonCause::OwnerDied`](crate::mutex::PoisonCause).
///
/// Whatever the dead process guarded with the unit may be half done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerDied {
    /// The dead holder's process id.
    pub pid: u32,
}

impl fmt::Display for OwnerDied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acquired a semaphore unit that process {} held when it died",
            self.pid
        )
    }
}

impl core::error::Error for OwnerDied {}

impl RawSemaphore {
    /// A semaphore holding `initial` units, without an upper bound
    /// (Python's `Semaphore(initial)`).
    ///
    /// # Panics
    ///
    /// If `initial` exceeds [`MAX_VALUE`].
    pub fn new(initial: u32) -> Self {
        assert!(initial <= MAX_VALUE, "semaphore value above MAX_VALUE");
        Self::with_max(initial, UNBOUNDED)
    }

    /// A semaphore holding `initial` units that may never hold more
    /// (Python's `BoundedSemaphore(initial)`): a release past `initial`
    /// fails with [`SemaphoreError::Overflow`].
    ///
    /// # Panics
    ///
    /// If `initial` exceeds [`MAX_VALUE`].
    pub fn new_bounded(initial: u32) -> Self {
        assert!(initial <= MAX_VALUE, "semaphore value above MAX_VALUE");
        Self::with_max(initial, initial)
    }

    pub(super) fn with_max(initial: u32, max: u32) -> Self {
        Self {
            word: AtomicU64::new(u64::from(initial)),
            ec: EventCount::new(),
            max: AtomicU32::new(max),
            _reserved: AtomicU32::new(0),
        }
    }

    /// Takes a unit if one is available, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.take_anon(&[])
    }

    /// Takes a unit, waiting as long as it takes.
    ///
    /// A unit held by a process that died is never given back (these units
    /// have no owner): where that can happen, use a [`Semaphore`], or
    /// [`acquire_timeout`](Self::acquire_timeout).
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            let taken = self.wait_for(None, || self.try_acquire());
            debug_assert!(taken);
        }
    }

    /// Takes a unit, waiting at most `timeout`. Returns whether it got one
    /// (Python's `acquire(timeout=...)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use multiproc_core::semaphore::RawSemaphore;
    ///
    /// let sem = RawSemaphore::new(0);
    /// assert!(!sem.acquire_timeout(Duration::from_millis(1)));
    /// sem.release().unwrap();
    /// assert!(sem.acquire_timeout(Duration::from_millis(1)));
    /// ```
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_deadline(Deadline::after(timeout))
    }

    /// Takes a unit, waiting until `deadline` at most. Returns whether it got
    /// one.
    #[inline]
    pub fn acquire_deadline(&self, deadline: Deadline) -> bool {
        self.try_acquire() || self.wait_for(Some(deadline), || self.try_acquire())
    }

    /// Spins, then sleeps on the eventcount until `take` succeeds or
    /// `deadline` passes (then one last `take`).
    #[cold]
    pub(super) fn wait_for(
        &self,
        deadline: Option<Deadline>,
        mut take: impl FnMut() -> bool,
    ) -> bool {
        self.ec
            .wait_for(Spin::DEFAULT, deadline, || take().then_some(()))
            .is_some()
    }

    /// Gives one unit back, waking one sleeping acquirer if there is one.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if a bounded semaphore already holds its
    /// initial value, or the count would pass [`MAX_VALUE`]. The count is
    /// then unchanged.
    #[inline]
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.release_n(1)
    }

    /// Gives `n` units back at once, waking sleeping acquirers if there are
    /// any. Releasing zero units does nothing.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if the count would pass the bound of a
    /// bounded semaphore, or [`MAX_VALUE`]. No unit is released then.
    pub fn release_n(&self, n: u32) -> Result<(), SemaphoreError> {
        self.give_anon(&[], n)
    }

    /// The number of units available now (Python's `get_value()`). Other
    /// processes may change it at any moment: a diagnostic, not a promise.
    #[inline]
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot, nothing is read on the strength of it.
        count_of(self.word.load(Ordering::Relaxed))
    }

    /// The bound of a bounded semaphore (its initial value), `None` for an
    /// unbounded one.
    #[inline]
    pub fn max_value(&self) -> Option<u32> {
        // Relaxed: written once before the semaphore was shared (published
        // by the region's ready state, or by whatever handed it over).
        match self.max.load(Ordering::Relaxed) {
            UNBOUNDED => None,
            m => Some(m),
        }
    }

    /// Whether releases are bounded by the initial value
    /// (a `BoundedSemaphore`).
    #[inline]
    pub fn is_bounded(&self) -> bool {
        self.max_value().is_some()
    }

    /// The count a release may not pass. `max` comes from shared memory and
    /// may be anything: every value gives a valid (if odd) limit.
    #[inline]
    pub(super) fn limit(&self) -> u32 {
        self.max_value().map_or(MAX_VALUE, |m| m.min(MAX_VALUE))
    }

    // --- the word and its marker --------------------------------------

    /// Loads the word, waiting out (or resolving) a marker: returns a word
    /// without one.
    #[inline]
    pub(super) fn load_unmarked(&self, slots: &[HolderSlot]) -> u64 {
        // Acquire: pairs with the Release that cleared a marker or moved a
        // unit, so the caller's CAS builds on the latest count.
        let w = self.word.load(Ordering::Acquire);
        if marker_of(w) == 0 {
            w
        } else {
            self.wait_marker(slots)
        }
    }

    #[cold]
    pub(super) fn wait_marker(&self, slots: &[HolderSlot]) -> u64 {
        // Spins before checking liveness: a marker lasts a few instructions
        // of a live mover. Under loom, check at once (a dead thread's marker
        // would otherwise make the model spin).
        let patience: u32 = if cfg!(multiproc_loom) { 1 } else { 200 };
        let mut spins = 0u32;
        loop {
            // Acquire: as in `load_unmarked`.
            let w = self.word.load(Ordering::Acquire);
            if marker_of(w) == 0 {
                return w;
            }
            spins += 1;
            if spins < patience {
                spin_loop();
            } else {
                if spins % patience == 0 {
                    self.resolve(slots, w);
                }
                yield_now();
            }
        }
    }

    /// The word `w` holds a marker: if its mover is dead, finish or roll
    /// back its move (see the module docs). Returns whether the marker was
    /// cleared by this call.
    #[cold]
    pub(super) fn resolve(&self, slots: &[HolderSlot], w: u64) -> bool {
        let m = marker_of(w);
        let idx = ((m >> M_SLOT_SHIFT) & M_SLOT_MASK) as usize;
        let c = count_of(w);
        let new = match idx.checked_sub(1).and_then(|i| slots.get(i)) {
            // A marker naming no slot: corrupt memory. Drop it, keep the
            // count.
            None => u64::from(c),
            Some(slot) => {
                // Acquire: pairs with the owner CAS of an adoption, so the
                // liveness check is of the owner that set the marker.
                let owner = slot.owner.load(Ordering::Acquire);
                if sync::identity_alive(owner) {
                    return false;
                }
                // Acquire: pairs with the Release CAS of step 2: if it shows
                // the move's sequence bump, the slot change happened.
                let state = slot.state.load(Ordering::Acquire);
                let seq = (state >> 32) & M_SEQ_MASK;
                let done = m & M_LOCK_BIT != 0 || seq != (m >> M_SEQ_SHIFT) & M_SEQ_MASK;
                let c = match (done, m & M_REL_BIT != 0) {
                    (true, _) => c,
                    // Roll back a take: the unit returns to the count.
                    (false, false) => c.saturating_add(1),
                    // Roll back a give: nobody changed the count since.
                    (false, true) => c.saturating_sub(1),
                };
                u64::from(c)
            }
        };
        // AcqRel: Release publishes the outcome to whoever loads the word
        // next (as a mover's clearing store); Acquire keeps the chain.
        let ok = self
            .word
            .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ok && count_of(new) > 0 {
            self.ec.notify_all();
        }
        ok
    }

    /// Takes a unit with no slot (untracked).
    pub(super) fn take_anon(&self, slots: &[HolderSlot]) -> bool {
        let mut w = self.load_unmarked(slots);
        loop {
            let c = count_of(w);
            if c == 0 {
                return false;
            }
            // Acquire: pairs with the Release of whatever gave the unit
            // back, so what the releaser did before happens before what the
            // taker does with it (a semaphore of 1 used as a lock).
            match self
                .word
                .compare_exchange_weak(w, w - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(_) => w = self.load_unmarked(slots),
            }
        }
    }

    /// Gives `n` units back with no slot (anonymous): all or none.
    pub(super) fn give_anon(&self, slots: &[HolderSlot], n: u32) -> Result<(), SemaphoreError> {
        if n == 0 {
            return Ok(());
        }
        let limit = self.limit();
        let mut w = self.load_unmarked(slots);
        loop {
            let new = match count_of(w).checked_add(n) {
                Some(v) if v <= limit => u64::from(v),
                _ => return Err(SemaphoreError::Overflow),
            };
            // Release: pairs with the Acquire CAS of a taker.
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(_) => w = self.load_unmarked(slots),
            }
        }
        if n == 1 {
            self.ec.notify_one();
        } else {
            self.ec.notify_all();
        }
        Ok(())
    }

    /// Moves one unit between the count and `slots[i]`, which this process
    /// owns (see the module docs): takes one if `give` is false.
    #[inline]
    pub(super) fn move_unit(
        &self,
        slots: &[HolderSlot],
        i: usize,
        give: bool,
    ) -> Result<(), MoveFail> {
        self.move_steps(slots, i, give, u8::MAX)
    }

    /// [`move_unit`](Self::move_unit), stopping after step `stop` (1: 1a,
    /// 2: 1b, 3: 2) as if killed there: loom models kill a mover at each.
    pub(super) fn move_steps(
        &self,
        slots: &[HolderSlot],
        i: usize,
        give: bool,
        stop: u8,
    ) -> Result<(), MoveFail> {
        let slot = &slots[i];
        let limit = self.limit();
        let lock = (i as u64 + 1) << M_SLOT_SHIFT | M_LOCK_BIT;
        // Step 1a: lock the word (no count change yet).
        let c = loop {
            let w = self.load_unmarked(slots);
            let c = count_of(w);
            if give && c >= limit {
                return Err(MoveFail::Overflow);
            }
            if !give && c == 0 {
                return Err(MoveFail::Empty);
            }
            // AcqRel. Acquire: pairs with the Release of whatever gave the
            // unit (or cleared the last marker). Release: a resolver that
            // loads this marker (Acquire) sees our claim of the slot, so
            // its liveness check reads our identity, not a stale 0 that
            // would pass us for dead (loom finds that with Acquire alone).
            if self
                .word
                .compare_exchange(w, u64::from(c) | lock, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break c;
            }
        };
        // Under the lock nobody else moves a unit of this slot (they all
        // need the word), and nobody adopts it (its owner lives): `state` is
        // stable. Relaxed: our Acquire CAS above ordered it.
        let state = slot.state.load(Ordering::Relaxed);
        if stop == 1 {
            return Ok(());
        }
        if give && held_of(state) == 0 {
            // Release: as the clearing store of step 3.
            self.word.store(u64::from(c), Ordering::Release);
            return Err(MoveFail::NotHeld);
        }
        let c2 = if give { c + 1 } else { c - 1 };
        // Step 1b: move the unit in the count, recording the slot's
        // sequence. Release: publishes to a resolver what this process did
        // before giving a unit back.
        self.word
            .store(u64::from(c2) | marker(i, state, give), Ordering::Release);
        if stop == 2 {
            return Ok(());
        }
        // Step 2: the slot, with its sequence bumped. Release: pairs with
        // the Acquire load of `state` in `resolve`.
        let next = if give { state - 1 } else { state + 1 }.wrapping_add(SEQ_ONE);
        slot.state.store(next, Ordering::Release);
        if stop == 3 {
            return Ok(());
        }
        // Step 3: clear the marker. Release: pairs with the Acquire load of
        // the next operation on the word.
        self.word.store(u64::from(c2), Ordering::Release);
        if give {
            self.ec.notify_one();
        }
        Ok(())
    }
}
