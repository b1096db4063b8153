//! The protocol steps of [`MpmcRing`]: claims on `tail` and `head`, takes,
//! publishes, frees and the recovery of stuck slots (the states are those of
//! [`super::slot`]).

use bytemuck::Pod;

use super::blocking::{sleepers, wake, Miss, Stuck, Taken};
use super::slot::{
    busy, clear_dead_owner, clear_owner, free_stamp, full_stamp, record_owner, stamp, stamp_diff,
    Slot, BUSY, CLOSED, SKIPPED,
};
use super::{MpmcRing, NOT_POW2};
use crate::sync::{current_identity, Ordering};

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
    /// of `pos`: [`free_stamp`], except in the first lap (`pos <
    /// capacity`), where it is 0, so that zeroed memory is an empty ring.
    #[inline(always)]
    pub(super) fn free(&self, pos: u64) -> u64 {
        if pos < self.capacity {
            0
        } else {
            free_stamp(pos)
        }
    }

    #[inline]
    pub(super) fn slot(&self, pos: u64) -> &'a Slot<T> {
        let i = self.index(pos);
        // SAFETY: `index` reduces any position below capacity == count.
        unsafe { self.parts.elem_unchecked(i) }
    }

    /// Claims the next push position, takes its slot (state `W`) and returns
    /// it.
    #[inline]
    pub(super) fn claim_push(&self) -> Result<(&'a Slot<T>, u64), Miss> {
        self.claim_push_in(false)
    }

    /// [`claim_push`](Self::claim_push); when `waiting` (a blocked push
    /// polls), a full ring is told apart as [`Miss::Idle`] or
    /// [`Miss::InFlight`] by the slot's state.
    #[inline(always)]
    pub(super) fn claim_push_in(&self, waiting: bool) -> Result<(&'a Slot<T>, u64), Miss> {
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
    pub(super) fn take_free(&self, slot: &Slot<T>, pos: u64) -> Result<(), Taken> {
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
    pub(super) fn claim_push_run(&self, max: usize) -> Option<(u64, usize)> {
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
        clear_owner(slot);
        // Release: pairs with the Acquire load in `claim_pop`, which frees
        // the slot without reading it; and orders the clear above.
        slot.seq.store(full_stamp(pos) | SKIPPED, Ordering::Release);
        self.wake_consumers();
    }

    /// [`publish`](Self::publish) without the wake-up.
    #[inline]
    pub(super) fn publish_quiet(&self, slot: &Slot<T>, pos: u64) {
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
    pub(super) fn claim_pop(&self) -> Result<(&'a Slot<T>, u64), Miss> {
        self.claim_pop_in(false)
    }

    /// [`claim_pop`](Self::claim_pop); when `waiting` (a blocked pop polls),
    /// an empty ring is told apart as [`Miss::Idle`] or [`Miss::InFlight`],
    /// which costs a load of `tail`. Non-blocking pops load `tail` only once
    /// the ring is marked closed, to tell "closed and drained".
    #[inline(always)]
    pub(super) fn claim_pop_in(&self, waiting: bool) -> Result<(&'a Slot<T>, u64), Miss> {
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
                    self.advance_head(head.wrapping_add(1));
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
                    self.advance_head(head.wrapping_add(1));
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
                // a later lap): its consumer has not moved `head` on yet,
                // or our `head` is stale (see `advance_head`). Help it
                // along.
                if d <= 2 * self.capacity as i64 + 1 {
                    self.advance_head(head.wrapping_add(1));
                } else {
                    // The slot has reached position `q` (stamp `2q` or
                    // `2q + 1`), so the consumer of `q - cap` took it, and
                    // consumers take positions in order: every position up
                    // to `q - cap` is taken, and `head` may jump past it
                    // (a `head` stale by laps, left by a consumer that
                    // stalled before its store). A `q - cap` past `tail`
                    // was never pushed: the memory is corrupt.
                    let q = head.wrapping_add((d as u64).div_ceil(2));
                    let taken = q.wrapping_sub(self.capacity);
                    // Relaxed: a bound; `tail` only grows, so a legal
                    // `taken` is never beyond a later load of it.
                    let claimed = body.tail.pos.load(Ordering::Relaxed) & !CLOSED;
                    if taken.wrapping_sub(claimed) as i64 > 0 {
                        return Err(Miss::Corrupt);
                    }
                    self.advance_head(taken.wrapping_add(1));
                }
            }
            // Relaxed: as above.
            head = body.head.pos.load(Ordering::Relaxed);
        }
    }

    /// Moves `head` on to `to` (every position below `to` is taken) unless
    /// it is already there or further, with a plain store: `head` is a
    /// hint, not a claim (a consumer claims by its CAS on the slot), so it
    /// costs no `lock`ed instruction.
    ///
    /// The invariant is that `head` never passes a position that is not
    /// taken (its slot left `V`/`S` by a consumer's CAS, or a recovery):
    /// consumers store only positions they have seen taken, and the first
    /// untaken position only grows. Two stores may race, so `head` can
    /// move back, by laps if a consumer stalls between its load and its
    /// store; a consumer that then finds taken slots at `head` walks on
    /// (one lap's worth at once: see `claim_pop_in`), and the one that
    /// finds an untaken slot at `head` knows `head` is exact there. `len`
    /// may overcount meanwhile (it clamps).
    #[inline]
    pub(super) fn advance_head(&self, to: u64) {
        let head = &self.parts.body.head.pos;
        // Relaxed: `head` is bookkeeping (for `len` and a consumer's first
        // guess); the slots' seq words synchronise the data. The load
        // keeps `head` from moving back in all but a race between load and
        // store, and leaves the line clean when others moved it further.
        let now = head.load(Ordering::Relaxed);
        if to.wrapping_sub(now) as i64 > 0 {
            head.store(to, Ordering::Relaxed);
        }
    }

    /// Takes up to `max` consecutive published slots from `head` on (state
    /// `R`, one CAS each) and moves `head` past them; `None` if not even
    /// one is published.
    pub(super) fn claim_pop_run(&self, max: usize) -> Option<(u64, usize)> {
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
        self.advance_head(head.wrapping_add(n));
        Some((head, n as usize))
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
        let c = &self.parts.body.control;
        if sleepers(&c.full_sleepers) != 0 {
            wake(&c.not_full, false);
        }
    }

    /// [`free_slot`](Self::free_slot) without the wake-up.
    #[inline]
    pub(super) fn free_slot_quiet(&self, slot: &Slot<T>, pos: u64) {
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
    pub(super) fn recover(&self, stuck: Stuck, check_owner: bool) -> bool {
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
    pub(super) fn clear_dead_owner(&self, slot: &Slot<T>, seq: u64) -> bool {
        clear_dead_owner(&slot.seq, &slot.owner, seq)
    }

    /// Wakes one consumer if any sleeps.
    #[inline]
    pub(super) fn wake_consumers(&self) {
        let c = &self.parts.body.control;
        if sleepers(&c.empty_sleepers) != 0 {
            wake(&c.not_empty, false);
        }
    }
}
