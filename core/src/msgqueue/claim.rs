//! The protocol steps of [`MsgQueue`]: [`crate::mpmc`]'s claims, takes,
//! publishes, frees and recovery, slot for slot, over the queue's own slots
//! (the steps that touch one word, the take, the walk, the hint moves and
//! the closed flag's reads, are [`crate::mpmc`]'s own functions).

use super::*;
use crate::mpmc::claim::{advance, closed_after_claim, empty_or_drained, malformed, take, walk};

impl<'a> MsgQueue<'a> {
    /// The slot index of position `pos`: always `< capacity`, whatever `pos`.
    #[inline]
    pub(super) fn index(&self, pos: u64) -> usize {
        let i = if self.mask != u64::MAX {
            pos & self.mask
        } else {
            pos % self.capacity
        };
        i as usize
    }

    #[inline]
    pub(super) fn slot(&self, pos: u64) -> &'a Slot {
        let i = self.index(pos);
        // SAFETY: `index` reduces any position below capacity == count.
        unsafe { self.parts.elem_unchecked(i) }
    }

    /// The first byte of the data of `pos`'s slot: `stride` bytes from there
    /// lie inside the region.
    #[inline]
    pub(super) fn data_ptr(&self, pos: u64) -> *mut u8 {
        let i = self.index(pos);
        // SAFETY: i < capacity, and `capacity * stride` bytes from `data`
        // lie inside the region (`Geometry::of`, checked against the
        // region's length by `create`/`open`), without overflow.
        unsafe { self.data.as_ptr().add(i * self.stride) }
    }

    /// The `seq` word `F(pos)`: [`free_word`] (0 in the first lap).
    #[inline(always)]
    pub(super) fn free(&self, pos: u64) -> u64 {
        free_word(self.capacity, pos)
    }

    /// Claims the next push position by taking its slot (`W`) and returns
    /// it; when `waiting` (a blocked send polls), a full queue is told
    /// apart as [`Miss::Idle`] or [`Miss::InFlight`]. As
    /// `MpmcRing::claim_push_in`: the take is the claim (one `lock`ed
    /// instruction), the closed flag is read again after it
    /// ([`closed_after_claim`]), and `tail` moves on at the publish.
    #[inline(always)]
    pub(super) fn claim_push(&self, waiting: bool) -> Result<(&'a Slot, u64), Miss> {
        let (slot, pos) = self.take_push(waiting)?;
        if closed_after_claim(&self.parts.body.ring.control.closed) {
            self.publish_skipped(slot, pos);
            return Err(Miss::Closed);
        }
        Ok((slot, pos))
    }

    /// Takes the slot of the first position no producer has taken yet (`F`
    /// to `W`, owned by this process), without reading the closed flag
    /// after the take. As `MpmcRing::take_push`: the common case inline,
    /// the rest in [`take_push_slow`](Self::take_push_slow).
    #[inline(always)]
    fn take_push(&self, waiting: bool) -> Result<(&'a Slot, u64), Miss> {
        let body = &self.parts.body.ring;
        // Relaxed: spares a closed queue a claim that would only be
        // skipped; the authority is read after the claim.
        if body.control.closed.load(Ordering::Relaxed) != 0 {
            return Err(Miss::Closed);
        }
        // Relaxed: a guess; the slot's seq (Acquire) carries the
        // synchronisation, and its CAS decides who sends.
        let tail = body.tail.pos.load(Ordering::Relaxed);
        let slot = self.slot(tail);
        // Acquire: pairs with the Release store in `free_slot`: the last
        // consumer's read of this slot is done before we write it.
        let seq = slot.seq.load(Ordering::Acquire);
        let want = self.free(tail);
        if seq == want {
            return match take(&slot.seq, &slot.owner, want) {
                Ok(()) => Ok((slot, tail)),
                Err(now) => self.take_push_slow(tail, now, waiting),
            };
        }
        self.take_push_slow(tail, seq, waiting)
    }

    /// [`take_push`](Self::take_push) past its first look at the slot of
    /// `tail` (which found `seq`): retries a lost CAS, walks on from a
    /// stale hint, tells a full queue apart. As `MpmcRing::take_push_slow`.
    #[cold]
    #[inline(never)]
    fn take_push_slow(
        &self,
        mut tail: u64,
        mut seq: u64,
        waiting: bool,
    ) -> Result<(&'a Slot, u64), Miss> {
        let mut jumps = 0;
        loop {
            let slot = self.slot(tail);
            let want = self.free(tail);
            if seq == want {
                match take(&slot.seq, &slot.owner, want) {
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
            if stamp_diff(stamp(seq), want) < 0 {
                // Still in the previous lap: full (`tail` is exact here,
                // see `MpmcRing::take_push_slow`).
                if !waiting {
                    return Err(Miss::Idle);
                }
                let prev = full_stamp(tail.wrapping_sub(self.capacity));
                return Err(if seq & BUSY != 0 && stamp(seq) == prev {
                    // A consumer reads the slot (`R`).
                    Miss::InFlight(Stuck { pos: tail, seq })
                } else {
                    Miss::Idle
                });
            }
            // Position `tail` is taken already: a stale hint. Walk on.
            tail = walk(self.capacity, tail, seq, free_stamp(tail), &mut jumps)?;
            // Acquire: as in `take_push`.
            seq = self.slot(tail).seq.load(Ordering::Acquire);
        }
    }

    #[cold]
    pub(super) fn claim_push_blocking(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot, u64), SendError> {
        let c = &self.parts.body.ring.control;
        block_on(
            self.spin,
            &c.not_full,
            &c.full_sleepers,
            deadline,
            || match self.claim_push(true) {
                Ok(claim) => Poll::Ready(Ok(claim)),
                Err(Miss::Idle) => Poll::Idle,
                Err(Miss::InFlight(s)) => Poll::InFlight(s),
                Err(miss) => Poll::Ready(Err(miss.send_error())),
            },
            |s, check| self.recover(s, check),
        )
        .unwrap_or(Err(SendError::Full))
    }

    /// Publishes the message of `pos` and wakes one consumer if any sleeps.
    #[inline]
    pub(super) fn publish(&self, slot: &Slot, pos: u64) {
        clear_owner(&slot.owner);
        // Release: pairs with the Acquire load of seq in `claim_pop`: our
        // writes of the bytes and the length are visible to its consumer;
        // and orders the clear above. A plain store: the slot is ours.
        slot.seq.store(full_stamp(pos), Ordering::Release);
        advance(&self.parts.body.ring.tail.pos, pos.wrapping_add(1));
        self.wake_consumers();
    }

    /// Publishes the slot of `pos`, which this thread took, without a
    /// message (`S`), and wakes one consumer if any sleeps.
    #[cold]
    pub(super) fn publish_skipped(&self, slot: &Slot, pos: u64) {
        clear_owner(&slot.owner);
        // Release: pairs with the Acquire load in `claim_pop`, which frees
        // the slot without reading it; and orders the clear above.
        slot.seq.store(full_stamp(pos) | SKIPPED, Ordering::Release);
        advance(&self.parts.body.ring.tail.pos, pos.wrapping_add(1));
        self.wake_consumers();
    }

    /// Takes the oldest published message's slot (`R`, owned by this
    /// process), stepping over skipped slots; when `waiting`, an empty
    /// queue is told apart as [`Miss::Idle`] or [`Miss::InFlight`]. As
    /// `MpmcRing::claim_pop_in`: the common case inline, the rest in
    /// [`claim_pop_slow`](Self::claim_pop_slow).
    #[inline(always)]
    pub(super) fn claim_pop(&self, waiting: bool) -> Result<(&'a Slot, u64), Miss> {
        let body = &self.parts.body.ring;
        // Relaxed: a guess; the slot's seq (Acquire) synchronises, and its
        // CAS decides who receives.
        let head = body.head.pos.load(Ordering::Relaxed);
        let slot = self.slot(head);
        // Acquire: pairs with the Release store in `publish`: the bytes
        // and the length are written before we read them.
        let seq = slot.seq.load(Ordering::Acquire);
        let want = full_stamp(head);
        if seq == want {
            return match take(&slot.seq, &slot.owner, want) {
                Ok(()) => Ok((slot, head)),
                Err(now) => self.claim_pop_slow(head, now, waiting),
            };
        }
        self.claim_pop_slow(head, seq, waiting)
    }

    /// [`claim_pop`](Self::claim_pop) past its first look at the slot of
    /// `head` (which found `seq`): retries a lost CAS, steps over skipped
    /// slots, walks on from a stale hint, tells an empty queue apart (and a
    /// closed, drained one). As `MpmcRing::claim_pop_slow`.
    #[cold]
    #[inline(never)]
    fn claim_pop_slow(
        &self,
        mut head: u64,
        mut seq: u64,
        waiting: bool,
    ) -> Result<(&'a Slot, u64), Miss> {
        let body = &self.parts.body.ring;
        let mut jumps = 0;
        loop {
            let slot = self.slot(head);
            let want = full_stamp(head);
            if seq == want {
                match take(&slot.seq, &slot.owner, want) {
                    Ok(()) => return Ok((slot, head)),
                    Err(now) => {
                        seq = now;
                        continue;
                    }
                }
            } else if seq == want | SKIPPED {
                // Claim and free at once (nothing to read); orderings as for
                // a message, Release so the next producer's Acquire pairs.
                if let Err(now) = slot.seq.compare_exchange_weak(
                    seq,
                    free_stamp(head.wrapping_add(self.capacity)),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    seq = now;
                    continue;
                }
                advance(&body.head.pos, head.wrapping_add(1));
                self.wake_producers();
            } else {
                if malformed(seq) {
                    return Err(Miss::Corrupt);
                }
                if stamp_diff(stamp(seq), want) < 0 {
                    // Not published for `head` yet (`head` is exact here,
                    // see `MpmcRing::claim_pop_slow`): `W`, a send in
                    // flight, or `F`, nothing sent there.
                    if seq & BUSY != 0 {
                        return Err(if waiting {
                            Miss::InFlight(Stuck { pos: head, seq })
                        } else {
                            Miss::Idle
                        });
                    }
                    // `F(head)`: empty, unless closed and drained.
                    match empty_or_drained(&body.control.closed, &slot.seq, seq) {
                        Ok(miss) => return Err(miss),
                        Err(now) => {
                            seq = now;
                            continue;
                        }
                    }
                }
                // Position `head` is taken already: its consumer has not
                // moved `head` on yet, or our `head` is stale. Help it.
                let next = walk(self.capacity, head, seq, full_stamp(head), &mut jumps)?;
                advance(&body.head.pos, next);
            }
            // Relaxed, Acquire: as in `claim_pop`.
            head = body.head.pos.load(Ordering::Relaxed);
            seq = self.slot(head).seq.load(Ordering::Acquire);
        }
    }

    #[cold]
    pub(super) fn claim_pop_blocking(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot, u64), RecvError> {
        let c = &self.parts.body.ring.control;
        block_on(
            self.spin,
            &c.not_empty,
            &c.empty_sleepers,
            deadline,
            || match self.claim_pop(true) {
                Ok(claim) => Poll::Ready(Ok(claim)),
                Err(Miss::Idle) => Poll::Idle,
                Err(Miss::InFlight(s)) => Poll::InFlight(s),
                Err(miss) => Poll::Ready(Err(miss.recv_error())),
            },
            |s, check| self.recover(s, check),
        )
        .unwrap_or(Err(RecvError::Empty))
    }

    /// Frees the slot of `pos` for the next lap and wakes one producer if
    /// any sleeps.
    #[inline]
    pub(super) fn free_slot(&self, slot: &Slot, pos: u64) {
        clear_owner(&slot.owner);
        // Release: pairs with the Acquire load of seq in `take_push`: our
        // read of the bytes is done before the slot is written again; and
        // orders the clear above. A plain store: the slot is ours (`R`).
        slot.seq.store(
            free_stamp(pos.wrapping_add(self.capacity)),
            Ordering::Release,
        );
        advance(&self.parts.body.ring.head.pos, pos.wrapping_add(1));
        self.wake_producers();
    }

    /// Unblocks a slot that a blocked call found stuck in flight, if its
    /// owner process is dead (checked only when `check_owner`); returns
    /// whether the slot changed. As `MpmcRing::recover`: a dead
    /// producer's `W` becomes `S`, a dead consumer's `R` is freed.
    #[cold]
    pub(super) fn recover(&self, stuck: Stuck, check_owner: bool) -> bool {
        let Stuck { pos, seq } = stuck;
        let slot = self.slot(pos);
        if seq & (BUSY | SKIPPED) != BUSY || !check_owner {
            return false;
        }
        let to = if stamp(seq) == self.free(pos) {
            full_stamp(pos) | SKIPPED
        } else if stamp(seq) == full_stamp(pos.wrapping_sub(self.capacity)) {
            self.free(pos)
        } else {
            return false;
        };
        if !clear_dead_owner(&slot.seq, &slot.owner, seq) {
            return false;
        }
        // AcqRel: Release so that whoever takes the slot next sees it after
        // us (and our clear of `owner`); Acquire so that we see the last
        // owner's accesses before handing it on. Relaxed on failure: left
        // alone.
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

    #[inline]
    pub(super) fn wake_consumers(&self) {
        let c = &self.parts.body.ring.control;
        if sleepers(&c.empty_sleepers) != 0 {
            wake(&c.not_empty, false);
        }
    }

    #[inline]
    pub(super) fn wake_producers(&self) {
        let c = &self.parts.body.ring.control;
        if sleepers(&c.full_sleepers) != 0 {
            wake(&c.not_full, false);
        }
    }
}
