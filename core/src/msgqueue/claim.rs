//! The protocol steps of [`MsgQueue`]: [`crate::mpmc`]'s claims, takes,
//! publishes, frees and recovery, slot for slot, over the queue's own slots.

use super::*;

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

    /// The `seq` word `F(pos)`: as [`crate::mpmc`]'s (0 in the first lap).
    #[inline(always)]
    pub(super) fn free(&self, pos: u64) -> u64 {
        if pos < self.capacity {
            0
        } else {
            free_stamp(pos)
        }
    }

    /// Claims the next push position and takes its slot (`W`); when
    /// `waiting`, a full queue is told apart as [`Miss::Idle`] or
    /// [`Miss::InFlight`]. As `MpmcRing::claim_push_in`.
    #[inline(always)]
    pub(super) fn claim_push(&self, waiting: bool) -> Result<(&'a Slot, u64), Miss> {
        let tail_word = &self.parts.body.ring.tail.pos;
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
                // `mpmc::sleepers`). Relaxed on failure: we just retry.
                match tail_word.compare_exchange_weak(
                    tail,
                    tail.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => match self.take_free(slot, tail) {
                        Ok(()) => return Ok((slot, tail)),
                        // Stolen between the two CASes: claim another.
                        Err(Taken::Stolen) => tail = tail_word.load(Ordering::Relaxed),
                        Err(Taken::Corrupt) => return Err(Miss::Corrupt),
                    },
                    Err(now) => tail = now,
                }
            } else if stamp_diff(stamp(seq), want) < 0 {
                // Still in the previous lap: full, unless tail moved on.
                let now = tail_word.load(Ordering::Relaxed);
                if now == tail {
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
                tail = now;
            } else {
                // Someone already pushed at `tail`: then `tail` has moved on.
                // If it has not, the memory is corrupt.
                let now = tail_word.load(Ordering::Relaxed);
                if now == tail {
                    return Err(Miss::Corrupt);
                }
                tail = now;
            }
        }
    }

    /// Takes the slot of `pos`, just claimed on `tail`, from `F` to `W`.
    #[inline(always)]
    pub(super) fn take_free(&self, slot: &Slot, pos: u64) -> Result<(), Taken> {
        let want = self.free(pos);
        let me = current_identity();
        // AcqRel on success: Acquire as the load before the claim; Release
        // so that whoever sees `W` also sees our claim on `tail`. Relaxed on
        // failure: we only classify.
        match slot
            .seq
            .compare_exchange(want, busy(want, me), Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => {
                // Relaxed: as `mpmc::record_owner`.
                slot.owner.store(me, Ordering::Relaxed);
                Ok(())
            }
            Err(now) if stamp_diff(stamp(now), want) > 0 => Err(Taken::Stolen),
            Err(_) => Err(Taken::Corrupt),
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
        // Relaxed: as `mpmc::clear_owner`, ordered by the Release below.
        slot.owner.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire load of seq in `claim_pop`: our
        // writes of the bytes and the length are visible to its consumer.
        slot.seq.store(full_stamp(pos), Ordering::Release);
        self.wake_consumers();
    }

    /// Publishes the slot of `pos`, which this thread took, without a
    /// message (`S`), and wakes one consumer if any sleeps.
    #[cold]
    pub(super) fn publish_skipped(&self, slot: &Slot, pos: u64) {
        slot.owner.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire load in `claim_pop`.
        slot.seq.store(full_stamp(pos) | SKIPPED, Ordering::Release);
        self.wake_consumers();
    }

    /// Takes the oldest published message's slot (`R`), stepping over
    /// skipped slots; when `waiting`, an empty queue is told apart as
    /// [`Miss::Idle`] or [`Miss::InFlight`]. As `MpmcRing::claim_pop_in`.
    #[inline(always)]
    pub(super) fn claim_pop(&self, waiting: bool) -> Result<(&'a Slot, u64), Miss> {
        let body = &self.parts.body.ring;
        // Relaxed: a guess; the slot's seq (Acquire) synchronises, and its
        // CAS decides who receives.
        let mut head = body.head.pos.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // Acquire: pairs with the Release store in `publish`.
            let seq = slot.seq.load(Ordering::Acquire);
            let want = full_stamp(head);
            if seq == want {
                let me = current_identity();
                // SeqCst on success: pairs with sleeping producers (see
                // `mpmc::sleepers`). Relaxed on failure: we look again.
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
                    // Relaxed: as `mpmc::record_owner`.
                    slot.owner.store(me, Ordering::Relaxed);
                    self.advance_head(head, head.wrapping_add(1));
                    return Ok((slot, head));
                }
            } else if seq == want | SKIPPED {
                // Claim and free at once (nothing to read).
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
                    // Not published for `head` yet: empty, or a push in
                    // flight. Relaxed: a hint, as in `MpmcRing::claim_pop_in`.
                    if !waiting && body.control.closed.load(Ordering::Relaxed) == 0 {
                        return Err(Miss::Idle);
                    }
                    // Acquire: pairs with the producers' claim CAS (see
                    // `MpmcRing::claim_pop_in`).
                    let tail = body.tail.pos.load(Ordering::Acquire);
                    let claimed = tail & !CLOSED;
                    return Err(if claimed == head && tail & CLOSED != 0 {
                        Miss::Closed
                    } else if seq & BUSY != 0 || claimed.wrapping_sub(head) as i64 > 0 {
                        Miss::InFlight(Stuck { pos: head, seq })
                    } else {
                        Miss::Idle
                    });
                }
                // Taken already: help `head` along, unless the stamp is
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
    /// that far.
    #[inline]
    pub(super) fn advance_head(&self, from: u64, to: u64) {
        let head = &self.parts.body.ring.head.pos;
        let mut cur = from;
        // Relaxed: bookkeeping; the slots' seq words synchronise the data.
        while let Err(now) = head.compare_exchange(cur, to, Ordering::Relaxed, Ordering::Relaxed) {
            if to.wrapping_sub(now) as i64 <= 0 {
                break;
            }
            cur = now;
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
        slot.owner.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire load of seq in `claim_push`: our
        // read of the bytes is done before the slot is written again.
        slot.seq.store(
            free_stamp(pos.wrapping_add(self.capacity)),
            Ordering::Release,
        );
        self.wake_producers();
    }

    /// Unblocks a slot that a blocked call found stuck in flight, if it can
    /// be done safely; returns whether the slot changed. As
    /// `MpmcRing::recover`: an untaken claim is stolen (`F` to `S`), a dead
    /// producer's `W` becomes `S`, a dead consumer's `R` is freed.
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
            if !clear_dead_owner(&slot.seq, &slot.owner, seq) {
                return false;
            }
            to
        } else {
            return false;
        };
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
