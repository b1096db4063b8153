//! The protocol steps of [`MpmcRing`]: claims on `tail` and `head`, takes,
//! publishes, frees and the recovery of stuck slots (the states are those of
//! [`super::slot`]).

use bytemuck::Pod;

use super::blocking::{sleepers, wake, Miss, Stuck};
use super::slot::{
    busy, clear_dead_owner, clear_owner, free_stamp, free_word, full_stamp, owner_pid,
    record_owner, stamp, stamp_diff, MpmcBody, Slot, BUSY, SKIPPED,
};
use super::{MpmcRing, NOT_POW2};
use crate::sync::{current_identity, AtomicU32, AtomicU64, Ordering};

impl<'a, T: Pod> MpmcRing<'a, T> {
    // -- the protocol --------------------------------------------------------

    /// The slot index of position `pos`: always `< capacity`, whatever `pos`.
    #[inline]
    pub(super) fn index(&self, pos: u64) -> usize {
        let i = if self.mask != NOT_POW2 {
            pos & self.mask
        } else {
            pos % self.capacity
        };
        i as usize
    }

    /// The `seq` word `F(pos)` of the slot of `pos` free for the producer
    /// of `pos`: [`free_word`].
    #[inline(always)]
    pub(super) fn free(&self, pos: u64) -> u64 {
        free_word(self.capacity, pos)
    }

    #[inline]
    pub(super) fn slot(&self, pos: u64) -> &'a Slot<T> {
        let i = self.index(pos);
        // SAFETY: `index` reduces any position below capacity == count.
        unsafe { self.parts.elem_unchecked(i) }
    }

    /// Claims the next push position by taking its slot (state `W`) and
    /// returns it.
    #[inline]
    pub(super) fn claim_push(&self) -> Result<(&'a Slot<T>, u64), Miss> {
        self.claim_push_in(false)
    }

    /// [`claim_push`](Self::claim_push); when `waiting` (a blocked push
    /// polls), a full ring is told apart as [`Miss::Idle`] or
    /// [`Miss::InFlight`] by the slot's state.
    ///
    /// The claim is the CAS that takes the slot, the push's one `lock`ed
    /// instruction; the closed flag is read again after the take (see
    /// [`closed_after_claim`](Self::closed_after_claim)), and the hint
    /// `tail` moves on when the slot is published (see `advance`).
    #[inline(always)]
    pub(super) fn claim_push_in(&self, waiting: bool) -> Result<(&'a Slot<T>, u64), Miss> {
        let (slot, pos) = self.take_push(waiting)?;
        if self.closed_after_claim() {
            self.publish_skipped(slot, pos);
            return Err(Miss::Closed);
        }
        Ok((slot, pos))
    }

    /// Takes the slot of the first position no producer has taken yet
    /// (`F` to `W`, owned by this process; its publish moves `tail` on),
    /// without reading the closed flag after the take: the caller must
    /// ([`closed_after_claim`](Self::closed_after_claim)) before it
    /// publishes a value.
    #[inline(always)]
    pub(super) fn take_push(&self, waiting: bool) -> Result<(&'a Slot<T>, u64), Miss> {
        take_push(self, waiting)
    }

    /// Whether the ring was closed, read by a producer after the CAS that
    /// claimed its slot and before it publishes a value there (a closed
    /// ring gets the slot as skipped instead): [`closed_after_claim`].
    #[inline(always)]
    pub(super) fn closed_after_claim(&self) -> bool {
        closed_after_claim(&self.parts.body.control.closed)
    }

    /// Takes up to `max` consecutive slots from the first untaken push
    /// position on (state `W`, one CAS each; their publishes move `tail`);
    /// `None` if not even one is free (or the ring is closed). The caller
    /// reads [`closed_after_claim`](Self::closed_after_claim) before it
    /// publishes values there.
    pub(super) fn claim_push_run(&self, max: usize) -> Option<(u64, usize)> {
        if max == 0 {
            return None;
        }
        let (_, first) = self.take_push(false).ok()?;
        let n = take_following(self, first, max, |pos| self.free(pos));
        Some((first, n))
    }

    /// Publishes the value of position `pos` and wakes one consumer if
    /// any sleeps.
    #[inline]
    pub(super) fn publish(&self, slot: &Slot<T>, pos: u64) {
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
    pub(super) fn publish_skipped(&self, slot: &Slot<T>, pos: u64) {
        clear_owner(&slot.owner);
        // Release: pairs with the Acquire load in `claim_pop`, which frees
        // the slot without reading it; and orders the clear above.
        slot.seq.store(full_stamp(pos) | SKIPPED, Ordering::Release);
        advance(&self.parts.body.tail.pos, pos.wrapping_add(1));
        self.wake_consumers();
    }

    /// [`publish`](Self::publish) without the wake-up.
    #[inline]
    pub(super) fn publish_quiet(&self, slot: &Slot<T>, pos: u64) {
        clear_owner(&slot.owner);
        // Release: pairs with the Acquire load of seq in `claim_pop`: our
        // write of the value is visible to its consumer; and orders the
        // clear above. A plain store: the slot is ours (`W`), and nobody
        // else changes an owned slot while its owner lives.
        slot.seq.store(full_stamp(pos), Ordering::Release);
        advance(&self.parts.body.tail.pos, pos.wrapping_add(1));
    }

    /// Takes the oldest published value's slot (state `R`, owned by this
    /// process), stepping over skipped slots, and returns it.
    #[inline]
    pub(super) fn claim_pop(&self) -> Result<(&'a Slot<T>, u64), Miss> {
        self.claim_pop_in(false)
    }

    /// [`claim_pop`](Self::claim_pop); when `waiting` (a blocked pop polls),
    /// an empty ring is told apart as [`Miss::Idle`] or [`Miss::InFlight`]
    /// by the slot's state. A pop that finds the ring empty reads the
    /// closed flag, to tell "closed and drained".
    #[inline(always)]
    pub(super) fn claim_pop_in(&self, waiting: bool) -> Result<(&'a Slot<T>, u64), Miss> {
        claim_pop(self, waiting)
    }

    /// Takes up to `max` consecutive published slots from the oldest on
    /// (state `R`, one CAS each; their frees move `head`); `None` if not
    /// even one is published.
    pub(super) fn claim_pop_run(&self, max: usize) -> Option<(u64, usize)> {
        if max == 0 {
            return None;
        }
        let (_, first) = self.claim_pop().ok()?;
        let n = take_following(self, first, max, full_stamp);
        Some((first, n))
    }

    /// Frees the slot of position `pos` for the next lap and wakes one
    /// producer if any sleeps.
    #[inline]
    pub(super) fn free_slot(&self, slot: &Slot<T>, pos: u64) {
        self.free_slot_quiet(slot, pos);
        self.wake_producers();
    }

    /// Wakes one producer if any sleeps.
    #[inline]
    pub(super) fn wake_producers(&self) {
        wake_producers(self.parts.body);
    }

    /// [`free_slot`](Self::free_slot) without the wake-up.
    #[inline]
    pub(super) fn free_slot_quiet(&self, slot: &Slot<T>, pos: u64) {
        clear_owner(&slot.owner);
        // Release: pairs with the Acquire load of seq in `claim_push`: our
        // read of the value is done before the slot is written again; and
        // orders the clear above. A plain store: the slot is ours (`R`).
        slot.seq.store(
            free_stamp(pos.wrapping_add(self.capacity)),
            Ordering::Release,
        );
        advance(&self.parts.body.head.pos, pos.wrapping_add(1));
    }

    /// [`recover`] for this ring.
    #[cold]
    pub(super) fn recover(&self, stuck: Stuck, check_owner: bool) -> bool {
        recover(self, stuck, check_owner)
    }

    /// Wakes one consumer if any sleeps.
    #[inline]
    pub(super) fn wake_consumers(&self) {
        wake_consumers(self.parts.body);
    }
}

/// What the claims' slow paths and the recovery need of a ring: both
/// rings ([`MpmcRing`], [`crate::msgqueue::MsgQueue`]) run them over
/// their own slots.
pub(crate) trait Ring<'a> {
    /// A slot: a `seq` word, an `owner` word, and the ring's data.
    type Slot: 'a;
    /// The number of slots.
    fn capacity(&self) -> u64;
    /// The indices and control line.
    fn body(&self) -> &'a MpmcBody;
    /// The slot of position `pos` (any `pos`).
    fn slot(&self, pos: u64) -> &'a Self::Slot;
    /// The `seq` and `owner` words of `slot`.
    fn words(slot: &Self::Slot) -> (&AtomicU64, &AtomicU64);
}

impl<'a, T: Pod> Ring<'a> for MpmcRing<'a, T> {
    type Slot = Slot<T>;
    #[inline(always)]
    fn capacity(&self) -> u64 {
        self.capacity
    }
    #[inline(always)]
    fn body(&self) -> &'a MpmcBody {
        self.parts.body
    }
    #[inline(always)]
    fn slot(&self, pos: u64) -> &'a Slot<T> {
        MpmcRing::slot(self, pos)
    }
    #[inline(always)]
    fn words(slot: &Slot<T>) -> (&AtomicU64, &AtomicU64) {
        (&slot.seq, &slot.owner)
    }
}

/// A push's claim, without the read of the closed flag after it (the
/// caller's, [`closed_after_claim`], before it publishes a value): takes
/// the slot of the first position no producer has taken yet (`F` to `W`,
/// owned by this process). The common case inline (the hint is exact and
/// the slot free for it), the rest in [`take_push_slow`], so that a push
/// stays small enough to inline into its caller. Both rings'
/// (`MpmcRing::take_push`, `MsgQueue::take_push`).
#[inline(always)]
pub(crate) fn take_push<'a, R: Ring<'a>>(r: &R, waiting: bool) -> Result<(&'a R::Slot, u64), Miss> {
    let body = r.body();
    // Relaxed: spares a closed ring a claim that would only be skipped;
    // the authority is read after the claim.
    if body.control.closed.load(Ordering::Relaxed) != 0 {
        return Err(Miss::Closed);
    }
    // Relaxed: a guess; the slot's seq (Acquire) carries the
    // synchronisation, and its CAS decides who pushes.
    let tail = body.tail.pos.load(Ordering::Relaxed);
    let slot = r.slot(tail);
    let (seq_word, owner) = R::words(slot);
    // Acquire: pairs with the Release store in `free_slot`: the last
    // consumer's read of this slot is done before we write it.
    let seq = seq_word.load(Ordering::Acquire);
    let want = free_word(r.capacity(), tail);
    if seq == want {
        return match take(seq_word, owner, want) {
            Ok(()) => Ok((slot, tail)),
            Err(now) => take_push_slow(r, tail, now, waiting),
        };
    }
    take_push_slow(r, tail, seq, waiting)
}

/// A pop's claim: takes the oldest published slot (`V` to `R`, owned by
/// this process). The common case inline (the hint is exact and the slot
/// holds its value), the rest (skipped slots, walks, empty, closed and
/// drained) in [`claim_pop_slow`]. Both rings' (`MpmcRing::claim_pop_in`,
/// `MsgQueue::claim_pop`).
#[inline(always)]
pub(crate) fn claim_pop<'a, R: Ring<'a>>(r: &R, waiting: bool) -> Result<(&'a R::Slot, u64), Miss> {
    // Relaxed: a guess; the slot's seq (Acquire) synchronises, and its CAS
    // decides who pops.
    let head = r.body().head.pos.load(Ordering::Relaxed);
    let slot = r.slot(head);
    let (seq_word, owner) = R::words(slot);
    // Acquire: pairs with the Release store in `publish`: the value is
    // written before we read it.
    let seq = seq_word.load(Ordering::Acquire);
    let want = full_stamp(head);
    if seq == want {
        return match take(seq_word, owner, want) {
            Ok(()) => Ok((slot, head)),
            Err(now) => claim_pop_slow(r, head, now, waiting),
        };
    }
    claim_pop_slow(r, head, seq, waiting)
}

/// Takes the slots of the positions after `first` (which this thread
/// took) while each is in the state `want(pos)` (free for a push run,
/// published for a pop run), up to `max` slots in all counting `first`
/// and at most the capacity; returns how many it holds now, `first`
/// included. The position after one we took is the first untaken one
/// until someone takes it, so a success keeps the run contiguous; a
/// failure (taken, skipped, not ready) ends it. Orderings as in [`take`],
/// with a strong CAS: a spurious failure would only end the run early.
pub(crate) fn take_following<'a, R: Ring<'a>>(
    r: &R,
    first: u64,
    max: usize,
    want: impl Fn(u64) -> u64,
) -> usize {
    let limit = (max as u64).min(r.capacity());
    let me = current_identity();
    let mut n = 1u64;
    while n < limit {
        let pos = first.wrapping_add(n);
        let want = want(pos);
        let (seq_word, owner) = R::words(r.slot(pos));
        if seq_word
            .compare_exchange(want, busy(want, me), Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            break;
        }
        record_owner(owner, me);
        n += 1;
    }
    n as usize
}

/// A push's claim (`MpmcRing::take_push`, `MsgQueue::take_push`) past
/// its first look at the slot of `tail` (which found `seq`): retries a
/// lost CAS, walks on from a stale hint, tells a full ring apart.
#[cold]
#[inline(never)]
pub(crate) fn take_push_slow<'a, R: Ring<'a>>(
    r: &R,
    mut tail: u64,
    mut seq: u64,
    waiting: bool,
) -> Result<(&'a R::Slot, u64), Miss> {
    let mut jumps = 0;
    loop {
        let slot = r.slot(tail);
        let want = free_word(r.capacity(), tail);
        if seq == want {
            let (seq_word, owner) = R::words(slot);
            match take(seq_word, owner, want) {
                Ok(()) => return Ok((slot, tail)),
                Err(now) => {
                    seq = now;
                    continue;
                }
            }
        }
        if malformed(seq) {
            return Err(Miss::Corrupt);
        }
        let d = stamp_diff(stamp(seq), want);
        if d < 0 {
            // The slot still holds the previous lap (`V`, `R` or `S` of
            // `tail - cap`): full. `tail` is exact here: every position
            // below the first untaken one is taken, and this one is
            // not (its slot has not even been freed for it).
            if !waiting {
                return Err(Miss::Idle);
            }
            let prev = full_stamp(tail.wrapping_sub(r.capacity()));
            return Err(if seq & BUSY != 0 && stamp(seq) == prev {
                // A consumer is reading the slot (`R`): it frees it
                // soon, and may have checked for sleepers before we
                // counted ourselves.
                Miss::InFlight(Stuck { pos: tail, seq })
            } else {
                Miss::Idle
            });
        }
        // Position `tail` is taken already (`W`, `V`, `R`, `S`, or the
        // slot is in a later lap): our hint is stale. Walk on.
        tail = walk(r.capacity(), tail, seq, free_stamp(tail), &mut jumps)?;
        // Acquire: as in `MpmcRing::take_push`.
        seq = R::words(r.slot(tail)).0.load(Ordering::Acquire);
    }
}

/// A pop's claim (`MpmcRing::claim_pop_in`, `MsgQueue::claim_pop`) past
/// its first look at the slot of `head` (which found `seq`): retries a
/// lost CAS, steps over skipped slots, walks on from a stale hint, tells
/// an empty ring apart (and a closed, drained one).
#[cold]
#[inline(never)]
pub(crate) fn claim_pop_slow<'a, R: Ring<'a>>(
    r: &R,
    mut head: u64,
    mut seq: u64,
    waiting: bool,
) -> Result<(&'a R::Slot, u64), Miss> {
    let body = r.body();
    let mut jumps = 0;
    loop {
        let slot = r.slot(head);
        let want = full_stamp(head);
        if seq == want {
            let (seq_word, owner) = R::words(slot);
            match take(seq_word, owner, want) {
                Ok(()) => return Ok((slot, head)),
                Err(now) => {
                    seq = now;
                    continue;
                }
            }
        } else if seq == want | SKIPPED {
            // Claim and free at once (nothing to read); orderings as for
            // a value, Release so the next producer's Acquire load pairs.
            if let Err(now) = R::words(slot).0.compare_exchange_weak(
                seq,
                free_stamp(head.wrapping_add(r.capacity())),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                seq = now;
                continue;
            }
            advance(&body.head.pos, head.wrapping_add(1));
            wake_producers(body);
        } else {
            if malformed(seq) {
                return Err(Miss::Corrupt);
            }
            if stamp_diff(stamp(seq), want) < 0 {
                // Not published for `head` yet: `W` (a push in flight)
                // or `F` (nothing pushed there). `head` is exact then:
                // every position below the first untaken one is taken,
                // and this one is not.
                if seq & BUSY != 0 {
                    return Err(if waiting {
                        Miss::InFlight(Stuck { pos: head, seq })
                    } else {
                        Miss::Idle
                    });
                }
                // `F(head)`: empty, unless closed and drained.
                match empty_or_drained(&body.control.closed, R::words(slot).0, seq) {
                    Ok(miss) => return Err(miss),
                    Err(now) => {
                        seq = now;
                        continue;
                    }
                }
            }
            // Position `head` is taken already (`R`, or the slot is in
            // a later lap): its consumer has not moved `head` on yet,
            // or our `head` is stale (a consumer that stalled before
            // its store moved it back). Help it along.
            let next = walk(r.capacity(), head, seq, full_stamp(head), &mut jumps)?;
            advance(&body.head.pos, next);
        }
        // Relaxed, Acquire: as in `MpmcRing::claim_pop_in`.
        head = body.head.pos.load(Ordering::Relaxed);
        seq = R::words(r.slot(head)).0.load(Ordering::Acquire);
    }
}

/// Unblocks a slot of `r` that a blocked call found stuck in flight, if
/// its owner process is dead (checked only when `check_owner`, since it
/// reads `/proc`; see [`clear_dead_owner`]):
/// `W` becomes `S` (the dead producer's value was never complete), `R`
/// becomes `F` of the next lap (the dead consumer's value is lost with
/// it). Returns whether the slot changed.
///
/// The change is a CAS from exactly the word that was found, so a slot
/// that moved on meanwhile is left alone.
#[cold]
pub(crate) fn recover<'a, R: Ring<'a>>(r: &R, stuck: Stuck, check_owner: bool) -> bool {
    let Stuck { pos, seq } = stuck;
    let slot = r.slot(pos);
    if seq & (BUSY | SKIPPED) != BUSY || !check_owner {
        return false;
    }
    let to = if stamp(seq) == free_word(r.capacity(), pos) {
        full_stamp(pos) | SKIPPED
    } else if stamp(seq) == full_stamp(pos.wrapping_sub(r.capacity())) {
        free_word(r.capacity(), pos)
    } else {
        return false;
    };
    let (seq_word, owner) = R::words(slot);
    if !clear_dead_owner(seq_word, owner, seq) {
        return false;
    }
    // AcqRel: Release so that whoever takes the slot next (Acquire)
    // sees it after us, and with it our clear of `owner` (for a dead
    // owner); Acquire so that we see the last owner's accesses before
    // handing it on. Relaxed on failure: left alone (the `owner` we
    // cleared held a dead identity or nothing: clearing it cost no
    // information that a live owner needs).
    let done = seq_word
        .compare_exchange(seq, to, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok();
    if done {
        if to & SKIPPED != 0 {
            wake_consumers(r.body());
        } else {
            wake_producers(r.body());
        }
    }
    done
}

/// Wakes one producer of the ring of `body` if any sleeps.
#[inline]
pub(crate) fn wake_producers(body: &MpmcBody) {
    let c = &body.control;
    if sleepers(&c.full_sleepers) != 0 {
        wake(&c.not_full, false);
    }
}

/// Wakes one consumer of the ring of `body` if any sleeps.
#[inline]
pub(crate) fn wake_consumers(body: &MpmcBody) {
    let c = &body.control;
    if sleepers(&c.empty_sleepers) != 0 {
        wake(&c.not_empty, false);
    }
}

/// Whether the ring was closed (its control line's `closed` word),
/// read by a producer after the CAS that claimed its slot and before it
/// publishes a value there (a closed ring gets the slot as skipped
/// instead). Both rings' ([`crate::msgqueue`]'s too).
///
/// `close` stores the flag (`SeqCst`); a consumer that finds the
/// ring empty reads the flag, then the slot at `head` again
/// (`SeqCst` both: [`empty_or_drained`]), and reports "closed and drained"
/// only if that slot is still free for `head`. If our claim of that slot
/// came after its second read (it read the slot's earlier value), then in
/// the single total order S: the close's store, its read of the flag, its
/// read of the slot, our CAS, this load; so this load sees the flag, and
/// the value it would have missed is never published. Any claim at a
/// later position comes after a claim at `head` (positions are taken
/// in order), so after this one. On x86 the load is a plain `mov`
/// after the `lock`ed CAS; under loom, which models `SeqCst` loads as
/// Acquire, both sides get the fence that those rules make
/// unnecessary.
#[inline(always)]
pub(crate) fn closed_after_claim(closed: &AtomicU32) -> bool {
    #[cfg(multiproc_loom)]
    crate::sync::fence(Ordering::SeqCst);
    closed.load(Ordering::SeqCst) != 0
}

/// What a pop that found the slot of `head` free for `head` (the word
/// `seq`, loaded from `seq_word`) reports: [`Miss::Idle`] if the ring is
/// open (the `closed` word is 0), [`Miss::Closed`] if it is closed and
/// drained (the slot, looked at again after the flag, is still free for
/// `head`: a producer that claims it later reads the flag after its
/// claim and skips it, see [`closed_after_claim`]); else the word the
/// second look found (a producer claimed `head` meanwhile: look again).
#[cold]
pub(crate) fn empty_or_drained(
    closed: &AtomicU32,
    seq_word: &AtomicU64,
    seq: u64,
) -> Result<Miss, u64> {
    // SeqCst: see `closed_after_claim`.
    if closed.load(Ordering::SeqCst) == 0 {
        return Ok(Miss::Idle);
    }
    #[cfg(multiproc_loom)]
    crate::sync::fence(Ordering::SeqCst);
    let now = seq_word.load(Ordering::SeqCst);
    if now == seq {
        Ok(Miss::Closed)
    } else {
        Err(now)
    }
}

/// Takes a slot (its `seq` and `owner` words) from the state `want` (`F`
/// or `V`) to busy, owned by this process, and records the owner; the
/// word found instead if it was not `want` (or the weak CAS failed
/// spuriously). The take of both rings' claims ([`crate::msgqueue`]'s
/// too).
#[inline(always)]
pub(crate) fn take(seq: &AtomicU64, owner: &AtomicU64, want: u64) -> Result<(), u64> {
    let me = current_identity();
    // SeqCst on success: pairs with the sleepers of the other side
    // (see `sleepers`) and, for a push, with `close` (see
    // `closed_after_claim`); it is the claim. Relaxed on failure: the
    // caller looks at what it found, and synchronises on a later take.
    seq.compare_exchange_weak(want, busy(want, me), Ordering::SeqCst, Ordering::Relaxed)?;
    record_owner(owner, me);
    Ok(())
}

/// The next position to try after `pos` in a ring of `capacity` slots,
/// whose slot (word `seq`) shows `pos` already taken; `base` is the stamp
/// `seq` would have if it held exactly `pos` (`2 pos` for a push,
/// `2 pos + 1` for a pop). Within a lap, the next position; a slot that
/// has reached a later lap (position `q`, stamp `2q` or `2q + 1`) says
/// that the position of its previous lap, `q - cap`, was taken (by a
/// producer, or freed by a consumer) and, positions being taken in order,
/// every position below it too: the walk jumps there. That happens only
/// after a stale hint (a thread that stalled between its load and its
/// store of `tail` or `head` moved it back, by laps); at most
/// [`LAP_JUMPS`] per call, so that garbage stamps cannot keep a call
/// jumping (the ring then looks full or empty, which is all a live ring's
/// call can conclude after that many stalls). Both rings' walk
/// ([`crate::msgqueue`]'s too).
#[inline]
pub(crate) fn walk(
    capacity: u64,
    pos: u64,
    seq: u64,
    base: u64,
    jumps: &mut u32,
) -> Result<u64, Miss> {
    let d = stamp_diff(stamp(seq), base);
    if d <= 2 * capacity as i64 + 1 {
        return Ok(pos.wrapping_add(1));
    }
    *jumps += 1;
    if *jumps > LAP_JUMPS {
        return Err(Miss::Idle);
    }
    // q = pos + d / 2 (rounded down: `2q + 1` is still position q);
    // q - cap is taken, so the walk goes on at q - cap + 1.
    let q = pos.wrapping_add(d as u64 / 2);
    Ok(q.wrapping_sub(capacity).wrapping_add(1))
}

/// How many times one call may jump a lap forward (see
/// [`walk`]): a live ring needs one per stale hint it meets,
/// which takes a thread stalled between its load and its store of the
/// hint, or a stall of our own for a lap of traffic.
pub(crate) const LAP_JUMPS: u32 = 16;

/// Moves the hint `word` (`tail` or `head`) on to `to` (every position
/// below `to` is taken) unless it is already there or further, with a
/// plain store: the hints are not claims (a push or pop claims by its CAS
/// on the slot), so they cost no `lock`ed instruction.
///
/// The invariant is that a hint never passes a position that is not taken
/// (for `tail`: its slot still `F`, no producer has taken it; for `head`:
/// its slot not yet left `V`/`S` by a consumer's CAS or a recovery):
/// threads store only positions they have seen taken, and the first
/// untaken position only grows, since positions are taken in order (a
/// claim needs the slot free for exactly its position, and the only such
/// position is the first untaken one, which the hint never passes). Two
/// stores may race, so a hint can move back, by laps if a thread stalls
/// between its load and its store; a thread that then finds taken slots
/// walks on ([`walk`]), and one that finds an untaken slot knows
/// the hint is exact there. `len` may be off meanwhile (it clamps).
///
/// A push or pop moves its hint when it hands its slot on (publish, free),
/// not when it takes it: its accesses to the slot's line (take, owner
/// record, value, owner clear, hand-on) then come in one burst that the
/// other side's polls do not split, and the hint's load and store overlap
/// with what follows instead of waiting behind the `lock`ed take. A
/// claimer that loads the hint meanwhile finds the slot taken and walks
/// one step. (Single thread, ns per push + pop at 8 B: 7.4 with the move
/// at the take, 6.3 at the hand-on; `mpmc_pairs`.)
#[inline(always)]
pub(crate) fn advance(word: &AtomicU64, to: u64) {
    // Relaxed: a hint (for `len` and the next claimer's first guess); the
    // slots' seq words synchronise the data. The load keeps the hint from
    // moving back in all but a race between load and store, and leaves the
    // line clean when others moved it further.
    let now = word.load(Ordering::Relaxed);
    if to.wrapping_sub(now) as i64 > 0 {
        word.store(to, Ordering::Relaxed);
    }
}

/// Whether `seq` is in no state a slot can be in (see "Slot states" in
/// [`super::slot`]): skipped and busy, skipped with an even stamp (a
/// value's stamp is odd), or an owner pid without the busy bit.
#[cold]
pub(crate) fn malformed(seq: u64) -> bool {
    let skipped = seq & SKIPPED != 0;
    let busy = seq & BUSY != 0;
    (skipped && (busy || stamp(seq) & 1 == 0)) || (!busy && owner_pid(seq) != 0)
}
