//! The protocol steps of [`MsgQueue`]: [`crate::mpmc`]'s claims, takes,
//! publishes, frees and recovery, slot for slot, over the queue's own
//! slots. The claims' inline first looks and the hand-ons are the queue's
//! own (they touch its slot type); everything past them (the slow paths,
//! the recovery, the take, the walk, the hint moves and the closed flag's
//! reads) is [`crate::mpmc::claim`]'s, through its `Ring` trait.

use super::*;
use crate::mpmc::claim::{
    advance, claim_pop, closed_after_claim, recover, take_push, wake_consumers, wake_producers,
    Ring,
};

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
    /// the rest in [`take_push_slow`].
    #[inline(always)]
    fn take_push(&self, waiting: bool) -> Result<(&'a Slot, u64), Miss> {
        take_push(self, waiting)
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
    /// [`claim_pop_slow`].
    #[inline(always)]
    pub(super) fn claim_pop(&self, waiting: bool) -> Result<(&'a Slot, u64), Miss> {
        claim_pop(self, waiting)
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
        wake_producers(&self.parts.body.ring);
    }

    /// [`recover`] for this queue.
    #[cold]
    pub(super) fn recover(&self, stuck: Stuck, check_owner: bool) -> bool {
        recover(self, stuck, check_owner)
    }

    /// Wakes one consumer if any sleeps.
    #[inline]
    pub(super) fn wake_consumers(&self) {
        wake_consumers(&self.parts.body.ring);
    }
}

impl<'a> Ring<'a> for MsgQueue<'a> {
    type Slot = Slot;
    #[inline(always)]
    fn capacity(&self) -> u64 {
        self.capacity
    }
    #[inline(always)]
    fn body(&self) -> &'a MpmcBody {
        let body: &'a MsgBody = self.parts.body;
        &body.ring
    }
    #[inline(always)]
    fn slot(&self, pos: u64) -> &'a Slot {
        MsgQueue::slot(self, pos)
    }
    #[inline(always)]
    fn words(slot: &Slot) -> (&AtomicU64, &AtomicU64) {
        (&slot.seq, &slot.owner)
    }
}
