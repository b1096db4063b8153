//! The consuming end of an SPSC ring.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::time::Duration;

use bytemuck::Pod;

use super::{PopError, SpscRing};
#[cfg(doc)]
use super::{Producer, PushError};
use crate::bell::{block_on, Woken};
use crate::role::{Claimed, Holder};
use crate::sync::Ordering;
use crate::time::Deadline;
use crate::wait::Spin;

/// The popping end of an [`SpscRing`]: at most one exists per ring at a time,
/// across all processes.
///
/// It can move to another thread (`Send`) but not be shared (`!Sync`); its
/// methods take `&mut self`. Dropping it releases the consumer role and
/// wakes the producer, whose pushes fail with [`PushError::Disconnected`]
/// once the ring is full.
pub struct Consumer<'a, T> {
    pub(super) ring: SpscRing<'a, T>,
    /// Values popped so far: the shared `head` this handle alone writes.
    pub(super) head: u64,
    /// `head % capacity`, kept without dividing.
    pub(super) slot: usize,
    /// Last `tail` seen; the true one is at least this.
    pub(super) cached_tail: u64,
    pub(super) spin: Spin,
    pub(super) claimed: Claimed,
    /// The claim this handle holds; only it releases the role.
    pub(super) held: Holder,
    pub(super) _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the consumer role is unique (role word), so moving the handle to
// another thread keeps exactly one popper; values of T move along (T: Send).
unsafe impl<T: Send> Send for Consumer<'_, T> {}

impl<T> fmt::Debug for Consumer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.capacity)
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("claimed", &self.claimed)
            .finish()
    }
}

impl<'a, T: Pod> Consumer<'a, T> {
    /// Pops the oldest value, without blocking.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if the ring is empty; [`PopError::Disconnected`]
    /// if it is empty and the producer released its role (a producer that
    /// died without releasing is noticed only by the blocking pops);
    /// [`PopError::Corrupt`] if the shared `tail` is impossible.
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        if self.head == self.cached_tail {
            self.refresh_tail()?;
        }
        // SAFETY: `slot` is our local cursor (< capacity), and the slot is
        // published: head < tail for the tail loaded with Acquire, whose
        // Release store in the producer followed its write of this slot.
        let v = unsafe { self.ring.slot(self.slot) }
            .0
            .with(|p| unsafe { p.read() });
        self.advance(1);
        self.publish();
        Ok(v)
    }

    /// Pops the oldest value, blocking while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`PopError::Disconnected`] once the ring is empty and the producer is
    /// gone (released its role, or died: noticed within about 20 ms of
    /// waiting); [`PopError::Corrupt`] as for [`try_pop`](Self::try_pop).
    pub fn pop(&mut self) -> Result<T, PopError> {
        self.pop_deadline(None)
    }

    /// Pops the oldest value, blocking at most `timeout` while the ring is
    /// empty.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if the ring stayed empty until the timeout; else
    /// as [`pop`](Self::pop).
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopError> {
        // The clock is read only once the ring is found empty.
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_slow(Some(Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pops the oldest value, blocking while the ring is empty until
    /// `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`pop_timeout`](Self::pop_timeout).
    pub fn pop_deadline(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_slow(deadline),
            r => r,
        }
    }

    #[cold]
    pub(super) fn pop_slow(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        let c = &self.ring.body().control;
        let spin = self.spin;
        match block_on(&c.not_empty, &c.producer, spin, deadline, || {
            match self.try_pop() {
                Err(PopError::Empty) => None,
                r => Some(r),
            }
        }) {
            Woken::Ready(r) => r,
            Woken::TimedOut => Err(PopError::Empty),
            // Drain what it published before it went.
            Woken::PeerGone => match self.try_pop() {
                Err(PopError::Empty) => Err(PopError::Disconnected),
                r => r,
            },
        }
    }

    /// Pops as many values as are available, up to `out.len()`, into the
    /// front of `out`, without blocking, and returns how many. The batch is
    /// released with one store and one check of the producer's `asleep` flag.
    ///
    /// Returns 0 when the ring is empty, disconnected or corrupt; use
    /// [`try_pop`](Self::try_pop) to learn which.
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize {
        let mut avail = self.cached_tail.wrapping_sub(self.head);
        if avail < out.len() as u64 {
            avail = self.refresh_tail().unwrap_or(avail);
        }
        let n = out.len().min(usize::try_from(avail).unwrap_or(usize::MAX));
        if n == 0 {
            return 0;
        }
        let first = n.min(self.ring.parts.count - self.slot);
        // SAFETY: slot + first <= capacity; n - first <= capacity; all n
        // slots are published (n <= avail, from an Acquire load of tail).
        unsafe {
            self.ring.copy_out(self.slot, &mut out[..first]);
            self.ring.copy_out(0, &mut out[first..n]);
        }
        self.advance(n);
        self.publish();
        n
    }

    /// Borrows the oldest value in place, or `None` when the ring is empty
    /// (or disconnected, or corrupt).
    ///
    /// The slot is freed when the guard is released or dropped. If this
    /// process dies while holding the guard, the slot stays unreleased and
    /// the next consumer reads the value again (at-least-once delivery).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::region::Region;
    /// # use multiproc_core::spsc::SpscRing;
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = SpscRing::<u64>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// tx.try_push(5).unwrap();
    /// let v = rx.read_slot().unwrap();
    /// assert_eq!(*v, 5);
    /// v.release();
    /// assert!(rx.read_slot().is_none());
    /// ```
    pub fn read_slot(&mut self) -> Option<ReadSlot<'_, 'a, T>> {
        if self.head == self.cached_tail {
            self.refresh_tail().ok()?;
        }
        Some(ReadSlot { consumer: self })
    }

    /// A copy of the oldest value, left in the ring; `None` when empty (or
    /// disconnected, or corrupt).
    pub fn peek(&mut self) -> Option<T> {
        self.read_slot().map(|s| {
            let v = *s;
            core::mem::forget(s);
            v
        })
    }

    /// The number of values ready to pop now (reloads the producer's
    /// index); 0 if the indices are corrupt. If it is not 0, it stays at
    /// least that until this handle pops.
    pub fn len(&mut self) -> u64 {
        let _ = self.refresh_tail();
        self.cached_tail.wrapping_sub(self.head)
    }

    /// Whether [`len`](Self::len) is 0; reloads the producer's index only
    /// when the cached one says empty.
    pub fn is_empty(&mut self) -> bool {
        self.head == self.cached_tail && self.len() == 0
    }

    /// Sets how long blocking pops spin before sleeping
    /// ([`Spin::DEFAULT`] unless set).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// Gives this handle up without releasing its role; see
    /// [`Producer::hand_over`] and [`SpscRing::take_over_consumer`].
    pub fn hand_over(self) -> Option<u32> {
        let pid = self.ring.body().control.consumer.hand_over();
        // Not dropped: a drop would release the role.
        core::mem::forget(self);
        pid
    }

    /// How this handle obtained the consumer role.
    pub fn claimed(&self) -> Claimed {
        self.claimed
    }

    /// The ring this handle pops from.
    pub fn ring(&self) -> SpscRing<'a, T> {
        self.ring
    }

    /// Reloads `tail`. Returns the number of values ready, at least one, or
    /// why there is none.
    #[cold]
    pub(super) fn refresh_tail(&mut self) -> Result<u64, PopError> {
        let body = self.ring.body();
        let cap = self.ring.capacity;
        // Acquire: pairs with the producer's Release store of `tail` in
        // `Producer::publish`: the slot writes before it are visible.
        let tail = body.tail.pos.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > cap {
            return Err(PopError::Corrupt);
        }
        self.cached_tail = tail;
        if avail > 0 {
            return Ok(avail);
        }
        if body.control.producer.is_closed() {
            // The producer released its role (Release, paired with the
            // Acquire in `is_closed`) after its last push: one more look.
            let tail = body.tail.pos.load(Ordering::Acquire);
            let avail = tail.wrapping_sub(self.head);
            if avail > cap {
                return Err(PopError::Corrupt);
            }
            self.cached_tail = tail;
            if avail > 0 {
                return Ok(avail);
            }
            return Err(PopError::Disconnected);
        }
        Err(PopError::Empty)
    }

    /// Moves the local cursor `n <= capacity` slots forward.
    #[inline]
    pub(super) fn advance(&mut self, n: usize) {
        self.head = self.head.wrapping_add(n as u64);
        self.slot += n;
        if self.slot >= self.ring.parts.count {
            self.slot -= self.ring.parts.count;
        }
    }

    /// Publishes the local `head` and rings the producer's bell.
    #[inline]
    pub(super) fn publish(&self) {
        let body = self.ring.body();
        // Release: pairs with the Acquire load of `head` in
        // `Producer::refresh_head`: our slot reads are done before the
        // producer overwrites them.
        body.head.pos.store(self.head, Ordering::Release);
        body.control.not_full.ring();
    }
}

impl<T> Drop for Consumer<'_, T> {
    fn drop(&mut self) {
        let c = &self.ring.parts.body.control;
        // Release inside `release`: a producer that sees the closed role also
        // sees our last `head`.
        c.consumer.release(self.held);
        // Fenced, armed or not: the producer must see the release.
        c.not_full.ring_leaving();
    }
}

/// The oldest value of a [`Consumer`], borrowed in place; see
/// [`Consumer::read_slot`]. Dropping it frees the slot, as
/// [`release`](Self::release) does.
pub struct ReadSlot<'c, 'a, T: Pod> {
    pub(super) consumer: &'c mut Consumer<'a, T>,
}

impl<T: Pod> ReadSlot<'_, '_, T> {
    /// Frees the slot (the same as dropping the guard).
    pub fn release(self) {}
}

impl<T: Pod> Deref for ReadSlot<'_, '_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the consumer's cursor is < capacity; the slot is published
        // (checked by `read_slot` against an Acquire load of tail) and the
        // producer does not touch it until this guard frees it.
        unsafe { &*self.consumer.ring.slot(self.consumer.slot).0.get() }
    }
}

impl<T: Pod> Drop for ReadSlot<'_, '_, T> {
    fn drop(&mut self) {
        self.consumer.advance(1);
        self.consumer.publish();
    }
}

impl<T: Pod> fmt::Debug for ReadSlot<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadSlot")
            .field("position", &self.consumer.head)
            .finish()
    }
}
