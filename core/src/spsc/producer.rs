//! The producing end of an SPSC ring.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::time::Duration;

use bytemuck::Pod;

#[cfg(doc)]
use super::PopError;
use super::{PushError, SpscRing, Stop};
use crate::bell::{block_on, Woken};
use crate::role::{Claimed, Holder};
use crate::sync::{Ordering, UnsafeCell};
use crate::time::Deadline;
use crate::wait::Spin;

/// The pushing end of an [`SpscRing`]: at most one exists per ring at a time,
/// across all processes.
///
/// It can move to another thread (`Send`) but not be shared (`!Sync`); its
/// methods take `&mut self`. Dropping it releases the producer role and
/// wakes the consumer, which then drains the ring and sees
/// [`PopError::Disconnected`].
pub struct Producer<'a, T> {
    pub(super) ring: SpscRing<'a, T>,
    /// Values pushed so far: the shared `tail` this handle alone writes.
    pub(super) tail: u64,
    /// `tail % capacity`, kept without dividing.
    pub(super) slot: usize,
    /// Last `head` seen; the true one is at least this.
    pub(super) cached_head: u64,
    pub(super) spin: Spin,
    pub(super) claimed: Claimed,
    /// The claim this handle holds; only it releases the role.
    pub(super) held: Holder,
    pub(super) _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the producer role is unique (role word), so moving the handle to
// another thread keeps exactly one pusher; values of T move along (T: Send).
unsafe impl<T: Send> Send for Producer<'_, T> {}

impl<T> fmt::Debug for Producer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.capacity)
            .field("tail", &self.tail)
            .field("cached_head", &self.cached_head)
            .field("claimed", &self.claimed)
            .finish()
    }
}

impl<'a, T: Pod> Producer<'a, T> {
    /// Pushes `v` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if the ring is full;
    /// [`PushError::Disconnected`] if it is full and the consumer released
    /// its role; [`PushError::Corrupt`] if the shared `head` is impossible.
    /// The value is handed back in each case.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::region::Region;
    /// # use multiproc_core::spsc::{PushError, SpscRing};
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = SpscRing::<u32>::create(Region::from_mut_slice(&mut mem.0), 1).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// tx.try_push(1).unwrap();
    /// assert!(matches!(tx.try_push(2), Err(PushError::Full(2))));
    /// assert_eq!(rx.try_pop(), Ok(1));
    /// ```
    #[inline]
    pub fn try_push(&mut self, v: T) -> Result<(), PushError<T>> {
        if self.tail.wrapping_sub(self.cached_head) >= self.ring.capacity {
            if let Err(stop) = self.refresh_head() {
                return Err(stop.with(v));
            }
        }
        // SAFETY: `slot` is our local cursor (< capacity), and the slot is
        // free: `tail - head < capacity` for the head loaded with Acquire,
        // whose Release store in the consumer followed its read of this slot.
        unsafe { self.ring.slot(self.slot) }
            .0
            .with_mut(|p| unsafe { p.write(v) });
        self.advance(1);
        self.publish();
        Ok(())
    }

    /// Pushes `v`, blocking while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Disconnected`] if the consumer is gone (released its
    /// role, or died: noticed within about 20 ms of waiting) while the ring
    /// is full; [`PushError::Corrupt`] as for [`try_push`](Self::try_push).
    pub fn push(&mut self, v: T) -> Result<(), PushError<T>> {
        self.push_deadline(v, None)
    }

    /// Pushes `v`, blocking at most `timeout` while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if the ring stayed full until the timeout; else as
    /// [`push`](Self::push).
    pub fn push_timeout(&mut self, v: T, timeout: Duration) -> Result<(), PushError<T>> {
        // The clock is read only once the ring is found full.
        match self.try_push(v) {
            Err(PushError::Full(v)) => self.push_slow(v, Some(Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pushes `v`, blocking while the ring is full until `deadline` (`None`:
    /// no deadline).
    ///
    /// # Errors
    ///
    /// As [`push_timeout`](Self::push_timeout).
    pub fn push_deadline(&mut self, v: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        match self.try_push(v) {
            Err(PushError::Full(v)) => self.push_slow(v, deadline),
            r => r,
        }
    }

    #[cold]
    pub(super) fn push_slow(
        &mut self,
        v: T,
        deadline: Option<Deadline>,
    ) -> Result<(), PushError<T>> {
        let c = &self.ring.body().control;
        let spin = self.spin;
        match block_on(&c.not_full, &c.consumer, spin, deadline, || {
            match self.try_push(v) {
                Err(PushError::Full(_)) => None,
                r => Some(r),
            }
        }) {
            Woken::Ready(r) => r,
            Woken::TimedOut => Err(PushError::Full(v)),
            // Last look: it may have freed slots before it went.
            Woken::PeerGone => match self.try_push(v) {
                Err(PushError::Full(v)) => Err(PushError::Disconnected(v)),
                r => r,
            },
        }
    }

    /// Pushes as many values from the front of `vs` as there is room for,
    /// without blocking, and returns how many. The batch is published with
    /// one store and one check of the consumer's `asleep` flag.
    ///
    /// Returns 0 when the ring is full, disconnected or corrupt; use
    /// [`try_push`](Self::try_push) to learn which.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::region::Region;
    /// # use multiproc_core::spsc::SpscRing;
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = SpscRing::<u8>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// assert_eq!(tx.push_slice(b"hello"), 4);
    /// let mut out = [0u8; 8];
    /// assert_eq!(rx.pop_slice(&mut out), 4);
    /// assert_eq!(&out[..4], b"hell");
    /// ```
    pub fn push_slice(&mut self, vs: &[T]) -> usize {
        let cap = self.ring.capacity;
        let mut free = cap - self.tail.wrapping_sub(self.cached_head);
        if free < vs.len() as u64 {
            free = self.refresh_head().unwrap_or(free);
        }
        let n = vs.len().min(usize::try_from(free).unwrap_or(usize::MAX));
        if n == 0 {
            return 0;
        }
        let first = n.min(self.ring.parts.count - self.slot);
        // SAFETY: slot + first <= capacity; 0 + (n - first) <= capacity; all
        // n slots are free (n <= free, computed from an Acquire load of head).
        unsafe {
            self.ring.copy_in(self.slot, &vs[..first]);
            self.ring.copy_in(0, &vs[first..n]);
        }
        self.advance(n);
        self.publish();
        n
    }

    /// Reserves the next slot for writing in place, or `None` when the ring
    /// is full (or disconnected, or corrupt).
    ///
    /// The guard dereferences to the slot, which holds stale data (an old
    /// value, or zeros): overwrite what you need, then
    /// [`commit`](WriteSlot::commit). Dropping the guard without committing
    /// publishes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::region::Region;
    /// # use multiproc_core::spsc::SpscRing;
    /// # #[repr(C, align(128))] struct Mem([u8; 4096]);
    /// # let mut mem = Box::new(Mem([0; 4096]));
    /// let ring = SpscRing::<[u64; 8]>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// let mut slot = tx.write_slot().unwrap();
    /// slot[0] = 42;
    /// slot[1..].fill(0);
    /// slot.commit();
    /// assert_eq!(rx.read_slot().unwrap()[0], 42);
    /// ```
    pub fn write_slot(&mut self) -> Option<WriteSlot<'_, 'a, T>> {
        if self.tail.wrapping_sub(self.cached_head) >= self.ring.capacity {
            self.refresh_head().ok()?;
        }
        Some(WriteSlot { producer: self })
    }

    /// Sets how long blocking pushes spin before sleeping
    /// ([`Spin::DEFAULT`] unless set).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The number of free slots now (reloads the consumer's index); 0 if the
    /// indices are corrupt.
    pub fn free_slots(&mut self) -> u64 {
        let _ = self.refresh_head();
        self.ring.capacity - self.tail.wrapping_sub(self.cached_head)
    }

    /// Whether the ring is full. If it is not, it stays so until this
    /// handle pushes (only the consumer can change it, towards emptier).
    /// Reloads the consumer's index only when the cached one says full.
    pub fn is_full(&mut self) -> bool {
        self.tail.wrapping_sub(self.cached_head) >= self.ring.capacity && self.free_slots() == 0
    }

    /// Gives this handle up without releasing its role, which is recorded
    /// from now on under this process: the first half of handing the
    /// producer to another process, which calls
    /// [`SpscRing::take_over_producer`] with the pid returned. Until then
    /// the role stays held, for as long as this process lives.
    ///
    /// Returns `None` (and the handle is gone) if the role was taken from
    /// under this handle by a claim that saw the pid it named dead.
    pub fn hand_over(self) -> Option<u32> {
        let pid = self.ring.body().control.producer.hand_over();
        // Not dropped: a drop would release the role.
        core::mem::forget(self);
        pid
    }

    /// How this handle obtained the producer role.
    pub fn claimed(&self) -> Claimed {
        self.claimed
    }

    /// The ring this handle pushes into.
    pub fn ring(&self) -> SpscRing<'a, T> {
        self.ring
    }

    /// Reloads `head`. Returns the number of free slots, at least one, or
    /// why there is none.
    #[cold]
    pub(super) fn refresh_head(&mut self) -> Result<u64, Stop> {
        let body = self.ring.body();
        let cap = self.ring.capacity;
        // Acquire: pairs with the consumer's Release store of `head` in
        // `Consumer::publish`: its reads of the slots we reuse are done.
        let head = body.head.pos.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > cap {
            return Err(Stop::Corrupt);
        }
        self.cached_head = head;
        if used < cap {
            return Ok(cap - used);
        }
        if body.control.consumer.is_closed() {
            // The consumer released its role (Release, paired with the
            // Acquire in `is_closed`) after its last pop: one more look.
            let head = body.head.pos.load(Ordering::Acquire);
            let used = self.tail.wrapping_sub(head);
            if used > cap {
                return Err(Stop::Corrupt);
            }
            self.cached_head = head;
            if used < cap {
                return Ok(cap - used);
            }
            return Err(Stop::Disconnected);
        }
        Err(Stop::Full)
    }

    /// Moves the local cursor `n <= capacity` slots forward.
    #[inline]
    pub(super) fn advance(&mut self, n: usize) {
        self.tail = self.tail.wrapping_add(n as u64);
        self.slot += n;
        if self.slot >= self.ring.parts.count {
            self.slot -= self.ring.parts.count;
        }
    }

    /// Publishes the local `tail` and rings the consumer's bell.
    #[inline]
    pub(super) fn publish(&self) {
        let body = self.ring.body();
        // Release: pairs with the Acquire load of `tail` in
        // `Consumer::refresh_tail`: the slot writes before it are visible.
        body.tail.pos.store(self.tail, Ordering::Release);
        body.control.not_empty.ring();
    }
}

impl<T> Drop for Producer<'_, T> {
    fn drop(&mut self) {
        let c = &self.ring.parts.body.control;
        // Release inside `release`: everything published before is seen by a
        // consumer that observes the closed role (Acquire in `is_closed`).
        c.producer.release(self.held);
        // Fenced, armed or not: the consumer must see the release.
        c.not_empty.ring_leaving();
    }
}

/// A reserved slot of a [`Producer`], written in place; see
/// [`Producer::write_slot`].
pub struct WriteSlot<'p, 'a, T: Pod> {
    pub(super) producer: &'p mut Producer<'a, T>,
}

impl<T: Pod> WriteSlot<'_, '_, T> {
    /// Publishes the slot to the consumer.
    pub fn commit(self) {
        self.producer.advance(1);
        self.producer.publish();
    }

    #[inline]
    pub(super) fn cell(&self) -> &UnsafeCell<T> {
        // SAFETY: the producer's cursor is < capacity.
        &unsafe { self.producer.ring.slot(self.producer.slot) }.0
    }
}

impl<T: Pod> Deref for WriteSlot<'_, '_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot is free (checked by `write_slot` against an Acquire
        // load of head) and only this guard, which borrows the unique
        // producer mutably, touches it until it is committed.
        unsafe { &*self.cell().get() }
    }
}

impl<T: Pod> DerefMut for WriteSlot<'_, '_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the reference unique.
        unsafe { &mut *self.cell().get() }
    }
}

impl<T: Pod> fmt::Debug for WriteSlot<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteSlot")
            .field("position", &self.producer.tail)
            .finish()
    }
}
