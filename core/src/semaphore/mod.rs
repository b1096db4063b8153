//! Process-shared counting semaphore: Python's `multiprocessing.Semaphore`
//! and `BoundedSemaphore`, whose units come back when their holder dies.
//!
//! A [`RawSemaphore`] is the counter alone, embeddable in any shared
//! structure; its units have no owner, as in Python. A [`Semaphore`] is one
//! built in a region of its own ([`Kind::Semaphore`]) together with a table
//! of **holders**: which process holds how many units. A unit held by a
//! process that dies (killed with `SIGKILL` included) is handed to the next
//! acquirer that finds the semaphore empty, which learns of it as a mutex's
//! next locker does ([`OwnerDied`]).
//!
//! ```text
//!  Semaphore region
//!  +--------+------------------------------+-----------------------------+
//!  | header | RawSemaphore (24 bytes)      | holders: [HolderSlot; N]    |
//!  |        | word | eventcount | max | 0  | owner: u64 | held|seq: u64 |
//!  +--------+------------------------------+-----------------------------+
//!
//!  word:  63   62   61        45 44          32 31                    0
//!        +----+----+------------+--------------+----------------------+
//!        |REL |LOCK| seq (17)   | slot+1 (13)  | count (32)           |
//!        +----+----+------------+--------------+----------------------+
//!         \______________ marker (32), 0 = none ___/
//! ```
//!
//! # Holders
//!
//! Each process that acquires through a [`Semaphore`] owns one
//! [`HolderSlot`]: its [identity](crate::identity) (pid plus start time,
//! so a reused pid is not taken for the dead holder) and the units it
//! holds. N is fixed at creation: [`DEFAULT_HOLDERS`] (64), at most
//! [`MAX_HOLDERS`]. A slot is taken the first time a process acquires: one
//! never used, else one whose owner is dead and holds nothing. A slot is
//! never given back by a live process; a process that exits, cleanly or
//! not, leaves its slot to be reused. When N live processes already own
//! slots, a further process acquires **untracked**: its units are counted
//! but not recorded, and are lost if it dies (as with every unit of a
//! Python semaphore); each of its acquires first looks for a slot to
//! take, reading the liveness of the owners holding nothing (one read of
//! `/proc` each): size the table for the processes that acquire.
//! [`Semaphore::holder_slots_free`] tells how many slots are left.
//!
//! `release` gives back a unit the calling process holds, if it holds one;
//! otherwise the unit is **anonymous** (a plain semaphore used as a signal:
//! a producer releases, a consumer acquires, as Python allows). A bounded
//! semaphore refuses any release that would take the count past its bound.
//!
//! # One unit moving: the marker
//!
//! Taking a unit changes two words (the count, and the taker's slot); a
//! process killed between the two would leave the unit neither counted nor
//! held (lost) or both (doubled). So every move of a unit between the count
//! and a slot goes through the **marker** in the count's word:
//!
//! ```text
//!  mover (owner of slot i)                        anyone who finds a marker
//!  -----------------------                        -------------------------
//!  1a. CAS word (c, 0) -> (c, LOCK(i))             spins; then, if the owner
//!      read slot (h, s): stable under the lock     of slot i is dead:
//!  1b. store word (c -/+ 1, M(i, s, dir))            LOCK: nothing moved yet
//!  2.  store slot (h +/- 1, s + 1)                   M, slot seq == s: undo 1b
//!  3.  store word (c -/+ 1, 0)                       M, seq != s: 2 was done
//!                                                   CAS word (w) -> (c', 0)
//! ```
//!
//! Step 1a locks the word: while a marker is set nobody else changes the
//! count or moves a unit (every other operation waits for the marker), so
//! the mover reads its slot's state knowing it cannot change, and steps
//! 1b to 3 are plain stores. Step 1b moves the unit in or out of the count
//! *and* records which slot is about to change and from which sequence
//! number, in one store. Whoever finds the mover dead can tell from the
//! slot's sequence number whether step 2 happened, and finishes (clears
//! the marker) or rolls back (undoes 1b and clears) with one CAS: exactly
//! once, whoever does it. A process killed at any instant thus leaves
//! every unit either counted or held, never both, never neither. The
//! mover is a live process except when killed, so a marker lasts a few
//! instructions; waiting for it spins, yields, and checks the owner's
//! liveness only then.
//!
//! | slot state | who changes it | how |
//! |---|---|---|
//! | `owner = 0` (never used) | a process taking its first unit | CAS `0 -> me` |
//! | `owner = me`, alive | threads of `me`, each move under the marker | step 2 |
//! | `owner` dead, no marker for it | any process: **adopt** | seq += 1, then CAS `owner -> me` |
//!
//! Adopting a slot first resolves a pending marker of that slot, then bumps
//! its sequence number (so a resolver that read the old marker cannot
//! mistake the new owner's moves for the dead one's), then takes it with a
//! CAS on `owner`: one adopter wins. A slot adopted while it holds units is
//! the dead process's units changing hands: the adopter keeps one for its
//! `acquire` (which returns [`OwnerDied`]) and gives the rest back one
//! move at a time; a unit a bounded semaphore has no room for (anonymous
//! releases filled it meanwhile) is dropped, so the bound holds.
//!
//! # Waiting
//!
//! Acquirers that find no unit sleep on an [`EventCount`](crate::wait::EventCount), woken by any
//! release; no sleep lasts longer than [`RECHECK`](crate::wait::RECHECK)
//! (50 ms). After each
//! sleep without a unit, a waiter checks the holders of units for
//! liveness (one read of `/proc/<pid>/stat` per holding process) and adopts
//! a dead one's slot. So an `acquire` waiting for a unit a killed process
//! held returns within about 50 ms of the death. [`Semaphore::try_acquire`]
//! never sleeps and never checks; [`Semaphore::recover`] runs the check on
//! demand.
//!
//! A process killed while asleep in `acquire` leaves the eventcount's
//! waiter count too high: later releases make a wake-up system call they
//! did not need, nothing worse.

use core::fmt;
use core::time::Duration;

use crate::region::{AttachError, ElemType, InitError, Kind, Parts, Region, Spec};
use crate::sync::{self, Ordering};
use crate::time::Deadline;
use crate::wait::Spin;

use raw::*;
pub use raw::{HolderSlot, OwnerDied, RawSemaphore, DEFAULT_HOLDERS, MAX_HOLDERS, MAX_VALUE};

mod raw;

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;

/// Why a release failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// Released more often than acquired: a bounded semaphore would pass its
    /// initial value, or any semaphore [`MAX_VALUE`] (Python's
    /// `ValueError`).
    Overflow,
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemaphoreError::Overflow => f.write_str("semaphore released too many times"),
        }
    }
}

impl core::error::Error for SemaphoreError {}

/// A semaphore in a region of its own, shared between processes, whose
/// units come back when their holder dies (see the module docs).
///
/// It is a handle (a reference into the region): `Copy`, `Send` and
/// `Sync`.
///
/// # Examples
///
/// ```
/// use multiproc_core::region::Region;
/// use multiproc_core::semaphore::Semaphore;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 2048]);
/// let mut mem = Box::new(Mem([0; 2048]));
/// assert!(Semaphore::memory_size() <= 2048);
/// let region = Region::from_mut_slice(&mut mem.0);
///
/// let sem = Semaphore::create_bounded(region, 1).unwrap();
/// // In another process: the same mapping, attached.
/// let other = Semaphore::attach(region).unwrap();
/// sem.acquire().unwrap();
/// assert!(!other.try_acquire());
/// other.release().unwrap();
/// assert!(other.release().is_err()); // bounded at 1
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Semaphore<'a> {
    raw: &'a RawSemaphore,
    slots: &'a [HolderSlot],
}

type SemParts<'a> = Parts<'a, RawSemaphore, HolderSlot>;

/// The header's capacity is the number of holder slots.
fn elems_for(capacity: u64) -> Option<u64> {
    (1..=u64::from(MAX_HOLDERS))
        .contains(&capacity)
        .then_some(capacity)
}

impl<'a> Semaphore<'a> {
    /// Bytes a semaphore region with [`DEFAULT_HOLDERS`] slots needs
    /// (header included).
    pub fn memory_size() -> usize {
        Self::memory_size_for(DEFAULT_HOLDERS)
    }

    /// Bytes a semaphore region with `holders` slots needs (header
    /// included); `holders` is clamped to `1..=MAX_HOLDERS`.
    pub fn memory_size_for(holders: u32) -> usize {
        let n = holders.clamp(1, MAX_HOLDERS);
        crate::region::Layout::of::<RawSemaphore, HolderSlot>(u64::from(n))
            .expect("a bounded layout fits")
            .total
    }

    /// Builds a semaphore holding `initial` units, unbounded, with
    /// [`DEFAULT_HOLDERS`] holder slots, in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] if `initial` exceeds [`MAX_VALUE`];
    /// otherwise as [`region`](crate::region) creation: too small,
    /// misaligned, already initialised.
    pub fn create(region: Region<'a>, initial: u32) -> Result<Self, InitError> {
        Self::create_with(region, initial, false, DEFAULT_HOLDERS, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` that
    /// [`attach_tagged_timeout`](Self::attach_tagged_timeout) must match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, initial: u32, tag: u64) -> Result<Self, InitError> {
        Self::create_with(region, initial, false, DEFAULT_HOLDERS, tag)
    }

    /// Builds a bounded semaphore (Python's `BoundedSemaphore(initial)`) in
    /// `region`.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_bounded(region: Region<'a>, initial: u32) -> Result<Self, InitError> {
        Self::create_with(region, initial, true, DEFAULT_HOLDERS, 0)
    }

    /// As [`create_bounded`](Self::create_bounded), recording a user `tag`
    /// that [`attach_tagged_timeout`](Self::attach_tagged_timeout) must
    /// match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_bounded_tagged(
        region: Region<'a>,
        initial: u32,
        tag: u64,
    ) -> Result<Self, InitError> {
        Self::create_with(region, initial, true, DEFAULT_HOLDERS, tag)
    }

    /// Builds a semaphore with `holders` holder slots (the number of
    /// processes whose units come back if they die, see the module docs),
    /// bounded or not, tagged with `tag`; the region needs
    /// [`memory_size_for(holders)`](Self::memory_size_for) bytes.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] if `holders` is 0 or above
    /// [`MAX_HOLDERS`], or `initial` above [`MAX_VALUE`]; otherwise as
    /// [`create`](Self::create).
    pub fn create_with(
        region: Region<'a>,
        initial: u32,
        bounded: bool,
        holders: u32,
        tag: u64,
    ) -> Result<Self, InitError> {
        if initial > MAX_VALUE {
            return Err(InitError::InvalidCapacity {
                capacity: u64::from(initial),
            });
        }
        if !(1..=MAX_HOLDERS).contains(&holders) {
            return Err(InitError::InvalidCapacity {
                capacity: u64::from(holders),
            });
        }
        let max = if bounded { initial } else { UNBOUNDED };
        let spec = Spec {
            kind: Kind::Semaphore,
            elem: ElemType::of::<()>().tagged(tag),
            capacity: u64::from(holders),
            count: u64::from(holders),
        };
        let parts = SemParts::create(
            region,
            spec,
            || RawSemaphore::with_max(initial, max),
            |_| HolderSlot::new(),
        )?;
        Ok(Self::from_parts(parts))
    }

    crate::region::attach_fns!('a, "a semaphore");

    /// As [`attach_timeout`](Self::attach_timeout), with a deadline.
    ///
    /// # Errors
    ///
    /// As [`attach_timeout`](Self::attach_timeout).
    pub fn attach_deadline(region: Region<'a>, deadline: Deadline) -> Result<Self, AttachError> {
        Self::open(region, 0, Some(deadline))
    }

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let parts = SemParts::open(
            region,
            Kind::Semaphore,
            ElemType::of::<()>().tagged(tag),
            elems_for,
            deadline,
        )?;
        Ok(Self::from_parts(parts))
    }

    fn from_parts(parts: SemParts<'a>) -> Self {
        // SAFETY: `parts.array` points to `parts.count` initialised slots in
        // the region (checked by create/open), which lives for 'a; a slot is
        // valid for every bit pattern and only touched through atomics.
        let slots = unsafe { core::slice::from_raw_parts(parts.array.as_ptr(), parts.count) };
        Self {
            raw: parts.body,
            slots,
        }
    }

    /// The counter without its holder table: operations on it are
    /// untracked (their units do not come back if the process dies).
    pub fn as_raw(&self) -> &'a RawSemaphore {
        self.raw
    }

    /// The number of holder slots.
    pub fn holders(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Holder slots a process acquiring for the first time could take now:
    /// never used, or left by a dead process holding nothing. A snapshot
    /// (reads the liveness of each slot's owner).
    pub fn holder_slots_free(&self) -> u32 {
        self.slots
            .iter()
            .filter(|s| {
                // Relaxed: a snapshot.
                let o = s.owner.load(Ordering::Relaxed);
                o == 0
                    || (held_of(s.state.load(Ordering::Relaxed)) == 0 && !sync::identity_alive(o))
            })
            .count() as u32
    }

    /// Units the calling process holds (in all the slots it owns).
    pub fn held_by_me(&self) -> u32 {
        let me = sync::current_identity();
        self.slots
            .iter()
            // Relaxed: only this process changes its own slots.
            .filter(|s| s.owner.load(Ordering::Relaxed) == me)
            .map(|s| held_of(s.state.load(Ordering::Relaxed)))
            .fold(0u32, u32::saturating_add)
    }

    /// Where the search for `me`'s slot starts.
    #[inline]
    fn start(&self, me: u64) -> usize {
        // Under loom, thread ids differ from one run of a model to the next:
        // a fixed start keeps the model deterministic.
        if cfg!(multiproc_loom) {
            return 0;
        }
        (me.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % self.slots.len()
    }

    /// Indices of all slots, from `me`'s start.
    #[inline]
    fn probe(&self, me: u64) -> impl Iterator<Item = usize> {
        let (n, s) = (self.slots.len(), self.start(me));
        (0..n).map(move |k| (s + k) % n)
    }

    /// `me`'s slot: one it owns, else one it takes (never used, else
    /// adopted from a dead owner holding nothing); `None` if all are owned
    /// by live processes or hold a dead one's units.
    fn my_slot(&self, me: u64) -> Option<usize> {
        let mut free = None;
        for i in self.probe(me) {
            // Relaxed: comparing with our own identity; a slot becomes ours
            // only by our own CAS.
            match self.slots[i].owner.load(Ordering::Relaxed) {
                o if o == me => return Some(i),
                0 if free.is_none() => free = Some(i),
                _ => {}
            }
        }
        if let Some(i) = free {
            // Acquire: pairs with nothing in particular (a never-used slot
            // holds zeros); AcqRel keeps it uniform with adoption.
            if self.slots[i]
                .owner
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(i);
            }
            // Taken by another: look again.
            return self.my_slot_again(me);
        }
        for i in self.probe(me) {
            let o = self.slots[i].owner.load(Ordering::Acquire);
            if o != me
                && held_of(self.slots[i].state.load(Ordering::Acquire)) == 0
                && !sync::identity_alive(o)
                && self.adopt(i, o)
            {
                if held_of(self.slots[i].state.load(Ordering::Acquire)) != 0 {
                    // A dead mover's take was finished meanwhile: the unit
                    // is ours; give it back (not ours to report here).
                    let _ = self.raw.move_unit(self.slots, i, true);
                }
                return Some(i);
            }
        }
        None
    }

    #[cold]
    fn my_slot_again(&self, me: u64) -> Option<usize> {
        self.my_slot(me)
    }

    /// Takes slot `i` from its dead owner `dead` (see the module docs).
    /// Returns whether this call took it.
    fn adopt(&self, i: usize, dead: u64) -> bool {
        let slot = &self.slots[i];
        // 1. Resolve a marker of this slot (its mover is the dead owner).
        loop {
            // Acquire: as in `load_unmarked`.
            let w = self.raw.word.load(Ordering::Acquire);
            let m = marker_of(w);
            if m == 0 || ((m >> M_SLOT_SHIFT) & M_SLOT_MASK) as usize != i + 1 {
                break;
            }
            if !self.raw.resolve(self.slots, w) {
                // Someone else resolved it, or the owner lives after all.
                if sync::identity_alive(slot.owner.load(Ordering::Acquire)) {
                    return false;
                }
            }
        }
        // 2. Bump the sequence: a resolver holding a stale marker of this
        // slot cannot take our future moves for the dead owner's.
        // AcqRel: keeps the RMW chain of `state`.
        slot.state.fetch_add(SEQ_ONE, Ordering::AcqRel);
        // 3. Take it. AcqRel: Acquire pairs with the dead owner's last
        // Release on the slot; Release publishes the bump with ownership.
        let me = sync::current_identity();
        slot.owner
            .compare_exchange(dead, me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes a unit if one is available now, without waiting and without
    /// checking for dead holders.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let me = sync::current_identity();
        match self.my_slot(me) {
            Some(i) => self.raw.move_unit(self.slots, i, false).is_ok(),
            None => self.raw.take_anon(self.slots),
        }
    }

    /// Takes a unit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if the unit taken is one a process held when it died
    /// (noticed within about 50 ms of waiting). The unit **is** acquired
    /// then, as a poisoned lock is locked: release it as any other.
    pub fn acquire(&self) -> Result<(), OwnerDied> {
        self.acquire_inner(None).map(|taken| debug_assert!(taken))
    }

    /// Takes a unit, waiting at most `timeout`. Returns whether it got one
    /// (Python's `acquire(timeout=...)`).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire): the unit is acquired.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, OwnerDied> {
        self.acquire_inner(Some(Deadline::after(timeout)))
    }

    /// Takes a unit, waiting until `deadline` at most. Returns whether it got
    /// one.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire): the unit is acquired.
    pub fn acquire_deadline(&self, deadline: Deadline) -> Result<bool, OwnerDied> {
        self.acquire_inner(Some(deadline))
    }

    fn acquire_inner(&self, deadline: Option<Deadline>) -> Result<bool, OwnerDied> {
        if self.try_acquire() {
            return Ok(true);
        }
        let mut backoff = Spin::DEFAULT.start();
        while backoff.spin() {
            if self.try_acquire() {
                return Ok(true);
            }
        }
        loop {
            let key = self.raw.ec.prepare_wait();
            if self.try_acquire() {
                self.raw.ec.cancel_wait(key);
                return Ok(true);
            }
            // Under loom no nap ends by itself (its clock is frozen): a
            // model's dying thread notifies once, which may come before
            // this sleep, so check the holders before it as well.
            if cfg!(multiproc_loom) {
                if let Some(pid) = self.recover_one() {
                    self.raw.ec.cancel_wait(key);
                    return Err(OwnerDied { pid });
                }
            }
            let _ = self.raw.ec.wait(key, deadline);
            if self.try_acquire() {
                return Ok(true);
            }
            if let Some(pid) = self.recover_one() {
                return Err(OwnerDied { pid });
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Ok(false);
            }
        }
    }

    /// Returns the units of dead holders to the semaphore, waking
    /// acquirers; returns how many came back. Acquirers do this on their
    /// own after each sleep; this is for callers that only poll with
    /// [`try_acquire`](Self::try_acquire).
    pub fn recover(&self) -> u32 {
        let mut n = 0;
        while let Some(k) = self.adopt_dead_holder() {
            n += k.1;
            // Give back the unit `adopt_dead_holder` kept; with no room
            // under the bound, drop it.
            if self.give_from(k.0) == Err(MoveFail::Overflow) {
                // AcqRel: keeps the RMW chain of `state`.
                self.slots[k.0].state.fetch_sub(1, Ordering::AcqRel);
            }
        }
        n
    }

    /// Adopts one dead holder's slot, keeps one of its units (for the
    /// caller's acquire) and gives the rest back. Returns the dead pid.
    fn recover_one(&self) -> Option<u32> {
        self.adopt_dead_holder().map(|(_, _, pid)| pid)
    }

    /// Finds a slot whose owner is dead and holds units, adopts it, gives
    /// back all its units but one. Returns (slot, units it held, pid).
    #[cold]
    fn adopt_dead_holder(&self) -> Option<(usize, u32, u32)> {
        let me = sync::current_identity();
        for i in self.probe(me) {
            let slot = &self.slots[i];
            // Acquire: pairs with the Release of the owner's moves.
            let o = slot.owner.load(Ordering::Acquire);
            if o == 0 || o == me || held_of(slot.state.load(Ordering::Acquire)) == 0 {
                continue;
            }
            if sync::identity_alive(o) || !self.adopt(i, o) {
                continue;
            }
            // Ours now; a marker of the dead owner was resolved by `adopt`.
            let held = held_of(slot.state.load(Ordering::Acquire));
            if held == 0 {
                continue;
            }
            for _ in 1..held {
                if self.raw.move_unit(self.slots, i, true) == Err(MoveFail::Overflow) {
                    // No room under the bound: drop the unit.
                    // AcqRel: keeps the RMW chain of `state`.
                    slot.state.fetch_sub(1, Ordering::AcqRel);
                }
            }
            let pid = crate::identity::Identity::from_word(o).map_or(0, |id| id.pid());
            return Some((i, held, pid));
        }
        None
    }

    /// Gives back one unit held in slot `i` (ours).
    fn give_from(&self, i: usize) -> Result<(), MoveFail> {
        self.raw.move_unit(self.slots, i, true)
    }

    /// Gives one unit back: one the calling process holds if it holds one,
    /// else an anonymous one (see the module docs). Wakes a sleeping
    /// acquirer if there is one.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if a bounded semaphore already holds its
    /// initial value, or the count would pass [`MAX_VALUE`]. The count is
    /// then unchanged.
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.release_n(1)
    }

    /// Gives `n` units back: first as many as the calling process holds,
    /// then anonymous ones.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if the count would pass the bound or
    /// [`MAX_VALUE`]. The anonymous part is released all or nothing, before
    /// the held units; a held unit that finds no room (only if anonymous
    /// releases filled the semaphore meanwhile) stays held, and the units
    /// given back before it stay given.
    pub fn release_n(&self, n: u32) -> Result<(), SemaphoreError> {
        if n == 0 {
            return Ok(());
        }
        let me = sync::current_identity();
        if n == 1 {
            for i in self.probe(me) {
                let slot = &self.slots[i];
                // Relaxed: only this process changes its own slots.
                if slot.owner.load(Ordering::Relaxed) == me
                    && held_of(slot.state.load(Ordering::Relaxed)) != 0
                {
                    match self.give_from(i) {
                        Ok(()) => return Ok(()),
                        Err(MoveFail::Overflow) => return Err(SemaphoreError::Overflow),
                        Err(MoveFail::NotHeld | MoveFail::Empty) => {}
                    }
                }
            }
            return self.raw.give_anon(self.slots, 1);
        }
        let held = self.held_by_me().min(n);
        self.raw.give_anon(self.slots, n - held)?;
        let mut left = held;
        'units: while left > 0 {
            for i in self.probe(me) {
                let slot = &self.slots[i];
                // Relaxed: only this process changes its own slots.
                if slot.owner.load(Ordering::Relaxed) != me
                    || held_of(slot.state.load(Ordering::Relaxed)) == 0
                {
                    continue;
                }
                match self.give_from(i) {
                    Ok(()) => {
                        left -= 1;
                        continue 'units;
                    }
                    Err(MoveFail::Overflow) => return Err(SemaphoreError::Overflow),
                    Err(MoveFail::NotHeld | MoveFail::Empty) => {}
                }
            }
            // Another thread of ours gave them back first: anonymous.
            return self.raw.give_anon(self.slots, left);
        }
        Ok(())
    }

    /// The number of units available now (Python's `get_value()`): a
    /// diagnostic, not a promise.
    pub fn value(&self) -> u32 {
        self.raw.value()
    }

    /// The bound of a bounded semaphore (its initial value), `None` for an
    /// unbounded one.
    pub fn max_value(&self) -> Option<u32> {
        self.raw.max_value()
    }

    /// Whether releases are bounded by the initial value.
    pub fn is_bounded(&self) -> bool {
        self.raw.is_bounded()
    }
}
