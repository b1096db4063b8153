//! A bounded multi-producer multi-consumer ring of `T: Pod` in a shared
//! region (Dmitry Vyukov's bounded queue, with per-slot sequence numbers):
//! the `Queue` that any number of processes push into and pop from.
//!
//! [`MpmcRing`] is a `Copy` view that every process and thread uses through
//! `&self`; there are no roles. Values are copied in and out, or written and
//! read in place with [`MpmcRing::try_push_with`]/[`MpmcRing::try_pop_with`].
//!
//! # Examples
//!
//! ```
//! use multiproc_core::mpmc::{MpmcRing, PopError};
//! use multiproc_core::region::Region;
//!
//! #[repr(C, align(128))]
//! struct Mem([u8; 4096]);
//! let mut mem = Box::new(Mem([0; 4096]));
//! let ring = MpmcRing::<u64>::create(Region::from_mut_slice(&mut mem.0), 10).unwrap();
//! // Another process would call `MpmcRing::<u64>::attach(region)`.
//!
//! let total = std::thread::scope(|s| {
//!     let consumers: Vec<_> = (0..2)
//!         .map(|_| {
//!             s.spawn(move || {
//!                 let mut sum = 0;
//!                 // Pops block while empty; after `close`, they drain and stop.
//!                 while let Ok(v) = ring.pop() {
//!                     sum += v;
//!                 }
//!                 sum
//!             })
//!         })
//!         .collect();
//!     let producers: Vec<_> = (0..2u64)
//!         .map(|p| s.spawn(move || (0..500).for_each(|i| ring.push(p * 500 + i).unwrap())))
//!         .collect();
//!     producers.into_iter().for_each(|h| h.join().unwrap());
//!     ring.close();
//!     consumers.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(total, 999 * 1000 / 2);
//! assert_eq!(ring.try_pop(), Err(PopError::Disconnected));
//! ```
//!
//! # Blocking
//!
//! `push`/`pop` spin ([`Spin`], chosen per view with
//! [`with_spin`](MpmcRing::with_spin)), then sleep on a shared futex until
//! the other side publishes. A push wakes a consumer only when one sleeps
//! (a pop likewise a producer), so an uncontended push or pop makes no
//! system call; batches and [`close`](MpmcRing::close) wake all. After
//! `close`, pushes fail with [`PushError::Disconnected`]; pops drain what
//! was pushed, then fail with [`PopError::Disconnected`].
//!
//! # Processes killed in the middle of an operation
//!
//! A process killed while it pushes or pops leaves its slot held, and the
//! ring hands slots out in order, so a held slot stops the others at it. A
//! blocking or timed call that waits on such a slot recovers it:
//!
//! - a producer killed while writing: its value was never complete, and
//!   waiting consumers step over the slot;
//! - a consumer killed while reading: its value is lost with it, and
//!   producers reuse the slot one lap later.
//!
//! Whether an owner lives is asked (a read of `/proc` on Linux) only once a
//! blocked call has waited about a millisecond; a live owner's slot is never
//! touched, however long it holds it (a long closure in
//! [`try_push_with`](MpmcRing::try_push_with) or
//! [`try_pop_with`](MpmcRing::try_pop_with) makes the others wait). Owners
//! are known by their [identity](crate::identity) (pid plus start time), so
//! a new process that reuses a dead owner's pid does not keep its slot held,
//! except when the owner was killed within a few instructions of taking or
//! handing on the slot and its pid is reused before anyone looks (where
//! start times cannot be read, an identity is a pid). The non-blocking calls
//! never recover (`try_pop` reports [`PopError::Empty`] at such a slot). A
//! closure that *panics* is simpler still: the slot is stepped over
//! (pushes) or freed (pops) at once.
//!
//! A process killed while blocked leaves its sleeper count raised: every
//! later push (pop) then pays a wake system call. That is slower, never
//! wrong.
//!
//! The slot state machine, the layout and the ordering arguments are in the
//! source, next to the code they describe: `mpmc/slot.rs` (layout, slot
//! states, owner records), `mpmc/blocking.rs` (sleeping, waking and
//! recovery), `mpmc/claim.rs` (claims, publishes and frees).
//!
//! # Untrusted memory
//!
//! Slot indices are always reduced modulo the capacity taken from the
//! validated header, so garbage in `head`, `tail` or any `seq` can never
//! reach outside the region. It can make values appear lost, repeated or
//! stale, the ring look full or empty, or be reported as
//! [`PushError::Corrupt`]/[`PopError::Corrupt`] when a sequence number
//! contradicts the indices; no call loops forever on it.

use core::fmt;
use core::time::Duration;

use bytemuck::Pod;

pub use crate::ring::{PopError, PushError};

use crate::region::{
    AttachError, ElemType, InitError, Kind, Layout, Parts, Region, Spec, REGION_ALIGN,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering, UnsafeCell};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin};

use blocking::{block_on, sleepers, wake, Miss, Poll};
use slot::{valid_capacity, MpmcBody, Slot};

pub(crate) mod blocking;
pub(crate) mod claim;
pub(crate) mod slot;

/// `mask` value meaning "capacity is not a power of two: divide".
const NOT_POW2: u64 = u64::MAX;

/// A view of an MPMC ring in a region: `Copy`, `Send` and `Sync`; any number
/// of threads and processes push and pop through `&self`.
///
/// Blocking calls spin per the view's [`Spin`] ([`Spin::DEFAULT`] unless set
/// with [`with_spin`](Self::with_spin)). See the [module docs](self) for an
/// example, the layout and the fault model.
pub struct MpmcRing<'a, T> {
    parts: Parts<'a, MpmcBody, Slot<T>>,
    capacity: u64,
    /// `capacity - 1` when the capacity is a power of two, else [`NOT_POW2`].
    mask: u64,
    spin: Spin,
}

impl<T> Clone for MpmcRing<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MpmcRing<'_, T> {}

// SAFETY: all shared state is reached through atomics; a slot's value is
// accessed only by the one thread that took its slot (the CAS on `seq`
// that claims a push or a pop) and only while `seq` says so. Values of T cross threads, hence
// T: Send.
unsafe impl<T: Send> Send for MpmcRing<'_, T> {}
// SAFETY: as for Send.
unsafe impl<T: Send> Sync for MpmcRing<'_, T> {}

// A panic inside `try_push_with`/`try_pop_with` publishes the slot as
// skipped or frees it, so the ring stays consistent across an unwind.
impl<T> core::panic::UnwindSafe for MpmcRing<'_, T> {}
impl<T> core::panic::RefUnwindSafe for MpmcRing<'_, T> {}

impl<T> fmt::Debug for MpmcRing<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.parts.body;
        f.debug_struct("MpmcRing")
            .field("capacity", &self.capacity)
            .field("tail", &b.tail.pos.load(Ordering::Relaxed))
            .field("head", &b.head.pos.load(Ordering::Relaxed))
            .field("closed", &(b.control.closed.load(Ordering::Relaxed) != 0))
            .finish()
    }
}

impl<'a, T: Pod> MpmcRing<'a, T> {
    /// Bytes a ring of `capacity` values of `T` occupies, header included;
    /// `None` if the capacity is invalid (0 or above 2^32), overflows the
    /// address space, or `T` is aligned to more than 128 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_core::mpmc::MpmcRing;
    /// // 512 bytes of header and body, then 24 bytes per slot (seq, owner,
    /// // u64).
    /// assert_eq!(MpmcRing::<u64>::memory_size(4), Some(512 + 4 * 24));
    /// assert_eq!(MpmcRing::<u64>::memory_size(0), None);
    /// ```
    pub fn memory_size(capacity: u64) -> Option<usize> {
        if !valid_capacity(capacity) || align_of::<T>() > REGION_ALIGN {
            return None;
        }
        Layout::of::<MpmcBody, Slot<T>>(capacity).map(|l| l.total)
    }

    /// Builds an empty, open ring of `capacity` values in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] for 0 or more than 2^32,
    /// [`InitError::UnsupportedType`] if `T` is aligned to more than 128
    /// bytes, and the region errors of [`InitError`].
    pub fn create(region: Region<'a>, capacity: u64) -> Result<Self, InitError> {
        Self::create_tagged(region, capacity, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` for the element
    /// type that [`attach_tagged`](Self::attach_tagged) must match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, capacity: u64, tag: u64) -> Result<Self, InitError> {
        if !valid_capacity(capacity) {
            return Err(InitError::InvalidCapacity { capacity });
        }
        if align_of::<T>() > REGION_ALIGN {
            return Err(InitError::UnsupportedType);
        }
        let spec = Spec {
            kind: Kind::Mpmc,
            elem: ElemType::of::<T>().tagged(tag),
            capacity,
            count: capacity,
        };
        let body = MpmcBody::new;
        // Every slot starts as `F(i)`, which is 0 in the first lap, owned by
        // nobody (0): an all-zero slot, not written at all in a region
        // known to be zeroed.
        let parts = Parts::create_zeroed_elems(region, spec, body, |_| Slot {
            seq: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            value: UnsafeCell::new(T::zeroed()),
        })?;
        Ok(Self::from_parts(parts))
    }

    crate::region::attach_fns!('a, "a ring");

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let expected = ElemType::of::<T>().tagged(tag);
        if align_of::<T>() > REGION_ALIGN {
            // No ring of this type can exist: `create` refuses it.
            return Err(AttachError::TypeMismatch {
                found: region.header()?.elem_type(),
                expected,
            });
        }
        let parts = Parts::open(
            region,
            Kind::Mpmc,
            expected,
            |c| valid_capacity(c).then_some(c),
            deadline,
        )?;
        Ok(Self::from_parts(parts))
    }

    fn from_parts(parts: Parts<'a, MpmcBody, Slot<T>>) -> Self {
        let capacity = parts.count as u64;
        Self {
            parts,
            capacity,
            mask: if capacity.is_power_of_two() {
                capacity - 1
            } else {
                NOT_POW2
            },
            spin: Spin::DEFAULT,
        }
    }

    /// A copy of this view whose blocking calls spin per `spin` before
    /// sleeping. (The view is shared, so the setting travels with the copy
    /// rather than being set on it.)
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::MpmcRing, region::Region, wait::Spin};
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = MpmcRing::<u32>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let sleepy = ring.with_spin(Spin::NONE);
    /// assert_eq!(sleepy.spin(), Spin::NONE);
    /// ```
    #[must_use]
    pub fn with_spin(self, spin: Spin) -> Self {
        Self { spin, ..self }
    }

    /// The spin setting of this view.
    pub fn spin(&self) -> Spin {
        self.spin
    }

    /// The number of slots.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The number of values in the ring, approximately: the hints of the
    /// next push and pop positions (`tail` and `head`), read one after the
    /// other while others may move both, clamped to `0..=capacity`. It
    /// counts pushes and pops in progress as done; a hint moved back by a
    /// stalled thread can make it off until the next push or pop moves
    /// that hint on.
    pub fn len(&self) -> u64 {
        let b = self.parts.body;
        // Relaxed: an advisory snapshot, no data is read on its strength.
        let head = b.head.pos.load(Ordering::Relaxed);
        let tail = b.tail.pos.load(Ordering::Relaxed);
        if tail <= head {
            0
        } else {
            (tail - head).min(self.capacity)
        }
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`len`](Self::len) is the capacity.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity
    }

    /// Closes the ring: pushes fail with `Disconnected` from now on, pops
    /// return what is left and then `Disconnected`. Wakes every sleeper.
    /// Closing twice is harmless; a ring cannot be reopened.
    pub fn close(&self) {
        let c = &self.parts.body.control;
        // SeqCst: ordered against every push's claim and the drained test
        // of pops (see `closed_after_claim`): a push whose claim comes
        // after a pop's "closed and drained" sees the flag and fails.
        c.closed.store(1, Ordering::SeqCst);
        c.not_empty.notify_all();
        c.not_full.notify_all();
    }

    /// Whether [`close`](Self::close) was called (by any process).
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the store in `close` (SeqCst, so Release).
        self.parts.body.control.closed.load(Ordering::Acquire) != 0
    }

    /// Pushes `v` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if the ring is full, [`PushError::Disconnected`]
    /// if it is closed, [`PushError::Corrupt`] if a slot's sequence number
    /// contradicts `tail`. The value is handed back.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::{MpmcRing, PushError}, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = MpmcRing::<u32>::create(Region::from_mut_slice(&mut mem.0), 1).unwrap();
    /// ring.try_push(1).unwrap();
    /// assert!(matches!(ring.try_push(2), Err(PushError::Full(2))));
    /// ring.close();
    /// assert!(matches!(ring.try_push(2), Err(PushError::Disconnected(2))));
    /// assert_eq!(ring.try_pop(), Ok(1));
    /// ```
    #[inline]
    pub fn try_push(&self, v: T) -> Result<(), PushError<T>> {
        match self.claim_push() {
            Ok((slot, pos)) => {
                // SAFETY: we claimed `pos` by taking its slot (CAS `F` to
                // `W`, Acquire, paired with the Release in
                // `free_slot` after the previous consumer's read): nobody
                // else touches the value until we publish it.
                slot.value.with_mut(|p| unsafe { p.write(v) });
                self.publish(slot, pos);
                Ok(())
            }
            Err(miss) => Err(miss.push_error(v)),
        }
    }

    /// Pushes `v`, blocking while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Disconnected`] once the ring is closed;
    /// [`PushError::Corrupt`] as for [`try_push`](Self::try_push).
    pub fn push(&self, v: T) -> Result<(), PushError<T>> {
        self.push_deadline(v, None)
    }

    /// Pushes `v`, blocking at most `timeout` while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if it stayed full until the timeout; else as
    /// [`push`](Self::push).
    pub fn push_timeout(&self, v: T, timeout: Duration) -> Result<(), PushError<T>> {
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
    pub fn push_deadline(&self, v: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        match self.try_push(v) {
            Err(PushError::Full(v)) => self.push_slow(v, deadline),
            r => r,
        }
    }

    #[cold]
    fn push_slow(&self, v: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        match self.claim_push_blocking(deadline) {
            Ok((slot, pos)) => {
                // SAFETY: as in `try_push`.
                slot.value.with_mut(|p| unsafe { p.write(v) });
                self.publish(slot, pos);
                Ok(())
            }
            Err(PushError::Full(())) => Err(PushError::Full(v)),
            Err(PushError::Disconnected(())) => Err(PushError::Disconnected(v)),
            Err(PushError::Corrupt(())) => Err(PushError::Corrupt(v)),
        }
    }

    /// Takes a slot to push into: at once if one is free, else blocking
    /// while the ring is full until `deadline`.
    fn claim_push_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot<T>, u64), PushError<()>> {
        match self.claim_push() {
            Ok(claim) => Ok(claim),
            Err(Miss::Idle | Miss::InFlight(_)) => self.claim_push_blocking(deadline),
            Err(miss) => Err(miss.push_error(())),
        }
    }

    /// The blocking half of [`claim_push_deadline`](Self::claim_push_deadline).
    #[cold]
    fn claim_push_blocking(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot<T>, u64), PushError<()>> {
        let c = &self.parts.body.control;
        self.block(&c.not_full, &c.full_sleepers, deadline, || {
            match self.claim_push_in(true) {
                Ok(claim) => Poll::Ready(Ok(claim)),
                Err(Miss::Idle) => Poll::Idle,
                Err(Miss::InFlight(s)) => Poll::InFlight(s),
                Err(miss) => Poll::Ready(Err(miss.push_error(()))),
            }
        })
        .unwrap_or(Err(PushError::Full(())))
    }

    /// Runs `poll` until it is ready (see [`block_on`]), recovering stuck
    /// slots with [`recover`](Self::recover).
    fn block<R>(
        &self,
        ec: &EventCount,
        sleepers: &AtomicU32,
        deadline: Option<Deadline>,
        poll: impl FnMut() -> Poll<R>,
    ) -> Option<R> {
        block_on(self.spin, ec, sleepers, deadline, poll, |s, check| {
            self.recover(s, check)
        })
    }

    /// Claims a slot, lets `f` write the value in place, then publishes it
    /// (zero-copy push), without blocking.
    ///
    /// The slot holds stale data when `f` gets it: overwrite what you need.
    /// Keep `f` short: consumers that reach this slot wait for it. If `f`
    /// panics, the slot is published as skipped (consumers step over it)
    /// and the panic continues; if the process is killed inside `f`,
    /// consumers step over the slot once they find it dead (see the
    /// [module docs](self#processes-killed-in-the-middle-of-an-operation)).
    ///
    /// # Errors
    ///
    /// As [`try_push`](Self::try_push) (then `f` is not called).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::MpmcRing, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 4096]);
    /// # let mut mem = Box::new(Mem([0; 4096]));
    /// let ring = MpmcRing::<[u8; 256]>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// ring.try_push_with(|buf| buf.fill(7)).unwrap();
    /// assert_eq!(ring.try_pop_with(|buf| buf.iter().map(|&b| u32::from(b)).sum::<u32>()), Ok(7 * 256));
    /// ```
    pub fn try_push_with(&self, f: impl FnOnce(&mut T)) -> Result<(), PushError<()>> {
        let (slot, pos) = self.claim_push().map_err(|m| m.push_error(()))?;
        self.fill(slot, pos, f);
        Ok(())
    }

    /// As [`try_push_with`](Self::try_push_with), blocking while the ring is
    /// full until `deadline` (`None`: no deadline); `f` runs once a slot is
    /// taken, after the wait.
    ///
    /// # Errors
    ///
    /// As [`push_timeout`](Self::push_timeout) (then `f` is not called).
    pub fn push_with_deadline(
        &self,
        f: impl FnOnce(&mut T),
        deadline: Option<Deadline>,
    ) -> Result<(), PushError<()>> {
        let (slot, pos) = self.claim_push_deadline(deadline)?;
        self.fill(slot, pos, f);
        Ok(())
    }

    /// Lets `f` write the value of `pos` in its slot, which this thread
    /// took, then publishes it (as skipped if `f` panics).
    fn fill(&self, slot: &'a Slot<T>, pos: u64, f: impl FnOnce(&mut T)) {
        let guard = SkipOnUnwind {
            ring: self,
            slot,
            pos,
        };
        // SAFETY: the slot is ours (`W`), as in `try_push`; the reference
        // ends with the closure, before the slot is published.
        slot.value.with_mut(|p| f(unsafe { &mut *p }));
        core::mem::forget(guard);
        self.publish(slot, pos);
    }

    /// Takes a free slot and returns a guard that writes the value in place
    /// (zero-copy push), without blocking. [`PushRef::commit`] publishes
    /// it; a guard dropped without a commit (by a panic, say) publishes the
    /// slot as skipped, and consumers step over it.
    ///
    /// The slot holds stale data: overwrite what you need. Consumers that
    /// reach the slot wait for the guard, as for the closure of
    /// [`try_push_with`](Self::try_push_with): keep it short-lived. A
    /// leaked guard (`mem::forget`) holds its slot until this process
    /// exits; if the process is killed holding it, consumers step over the
    /// slot once they find it dead.
    ///
    /// # Errors
    ///
    /// As [`try_push`](Self::try_push).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::MpmcRing, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 4096]);
    /// # let mut mem = Box::new(Mem([0; 4096]));
    /// let ring = MpmcRing::<[u32; 64]>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// let mut block = ring.try_push_ref().unwrap();
    /// block.fill(5);
    /// block.commit();
    /// drop(ring.try_push_ref().unwrap()); // not committed: skipped
    /// assert_eq!(ring.try_pop().unwrap()[63], 5);
    /// assert!(ring.try_pop().is_err()); // the skipped slot is stepped over
    /// ```
    pub fn try_push_ref(&self) -> Result<PushRef<'a, T>, PushError<()>> {
        let (slot, pos) = self.claim_push().map_err(|m| m.push_error(()))?;
        Ok(PushRef {
            ring: *self,
            slot,
            pos,
        })
    }

    /// As [`try_push_ref`](Self::try_push_ref), blocking while the ring is
    /// full until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`push_timeout`](Self::push_timeout).
    pub fn push_ref_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<PushRef<'a, T>, PushError<()>> {
        let (slot, pos) = self.claim_push_deadline(deadline)?;
        Ok(PushRef {
            ring: *self,
            slot,
            pos,
        })
    }

    /// Pushes as many values from the front of `vs` as there is room for,
    /// without blocking, and returns how many. Each run of free slots is
    /// taken with one CAS per slot and published in order; sleeping
    /// consumers, if any, are all woken once.
    ///
    /// Returns 0 when the ring is full, closed or corrupt; use
    /// [`try_push`](Self::try_push) to learn which.
    pub fn push_slice(&self, vs: &[T]) -> usize {
        let mut done = 0;
        while done < vs.len() {
            let Some((pos, n)) = self.claim_push_run(vs.len() - done) else {
                break;
            };
            if self.closed_after_claim() {
                for k in 0..n as u64 {
                    let p = pos.wrapping_add(k);
                    self.publish_skipped(self.slot(p), p);
                }
                break;
            }
            for k in 0..n {
                let p = pos.wrapping_add(k as u64);
                let slot = self.slot(p);
                // SAFETY: the run's slots are ours (`W`, each taken by its
                // CAS in `claim_push_run`, Acquire), as in `try_push`.
                slot.value.with_mut(|ptr| unsafe { ptr.write(vs[done]) });
                self.publish_quiet(slot, p);
                done += 1;
            }
        }
        if done > 0 {
            let c = &self.parts.body.control;
            if sleepers(&c.empty_sleepers) != 0 {
                wake(&c.not_empty, true);
            }
        }
        done
    }

    /// Pops the oldest value, without blocking.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if there is nothing to pop (or the oldest value is
    /// still being written), [`PopError::Disconnected`] if the ring is closed
    /// and drained, [`PopError::Corrupt`] if a slot's sequence number
    /// contradicts `head`.
    #[inline]
    pub fn try_pop(&self) -> Result<T, PopError> {
        let (slot, pos) = self.claim_pop().map_err(Miss::pop_error)?;
        // SAFETY: we took the slot of `pos` (`V` to `R` by a CAS whose
        // Acquire pairs with the Release in `publish` after the producer's
        // write): nobody else touches the value until we free it.
        let v = slot.value.with(|p| unsafe { p.read() });
        self.free_slot(slot, pos);
        Ok(v)
    }

    /// Pops the oldest value, blocking while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`PopError::Disconnected`] once the ring is closed and drained;
    /// [`PopError::Corrupt`] as for [`try_pop`](Self::try_pop).
    pub fn pop(&self) -> Result<T, PopError> {
        self.pop_deadline(None)
    }

    /// Pops the oldest value, blocking at most `timeout` while the ring is
    /// empty.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if it stayed empty until the timeout; else as
    /// [`pop`](Self::pop).
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
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
    pub fn pop_deadline(&self, deadline: Option<Deadline>) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_slow(deadline),
            r => r,
        }
    }

    #[cold]
    fn pop_slow(&self, deadline: Option<Deadline>) -> Result<T, PopError> {
        let (slot, pos) = self.claim_pop_blocking(deadline)?;
        // SAFETY: as in `try_pop`.
        let v = slot.value.with(|p| unsafe { p.read() });
        self.free_slot(slot, pos);
        Ok(v)
    }

    /// Takes the oldest value's slot: at once if there is one, else blocking
    /// while the ring is empty until `deadline`.
    fn claim_pop_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot<T>, u64), PopError> {
        match self.claim_pop() {
            Ok(claim) => Ok(claim),
            Err(Miss::Idle | Miss::InFlight(_)) => self.claim_pop_blocking(deadline),
            Err(miss) => Err(miss.pop_error()),
        }
    }

    /// The blocking half of [`claim_pop_deadline`](Self::claim_pop_deadline).
    #[cold]
    fn claim_pop_blocking(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(&'a Slot<T>, u64), PopError> {
        let c = &self.parts.body.control;
        self.block(&c.not_empty, &c.empty_sleepers, deadline, || {
            match self.claim_pop_in(true) {
                Ok(claim) => Poll::Ready(Ok(claim)),
                Err(Miss::Idle) => Poll::Idle,
                Err(Miss::InFlight(s)) => Poll::InFlight(s),
                Err(miss) => Poll::Ready(Err(miss.pop_error())),
            }
        })
        .unwrap_or(Err(PopError::Empty))
    }

    /// Claims the oldest value, lets `f` read it in place, then frees the
    /// slot (zero-copy pop), without blocking. Returns what `f` returns.
    ///
    /// Keep `f` short: producers that reach this slot wait for it. If `f`
    /// panics, the slot is freed (the value is consumed) and the panic
    /// continues; if the process is killed inside `f`, the value is lost
    /// and producers free the slot once they find it dead.
    ///
    /// # Errors
    ///
    /// As [`try_pop`](Self::try_pop) (then `f` is not called).
    pub fn try_pop_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, PopError> {
        let (slot, pos) = self.claim_pop().map_err(Miss::pop_error)?;
        Ok(self.drain(slot, pos, f))
    }

    /// As [`try_pop_with`](Self::try_pop_with), blocking while the ring is
    /// empty until `deadline` (`None`: no deadline); `f` runs once a value
    /// is taken, after the wait.
    ///
    /// # Errors
    ///
    /// As [`pop_timeout`](Self::pop_timeout) (then `f` is not called).
    pub fn pop_with_deadline<R>(
        &self,
        f: impl FnOnce(&T) -> R,
        deadline: Option<Deadline>,
    ) -> Result<R, PopError> {
        let (slot, pos) = self.claim_pop_deadline(deadline)?;
        Ok(self.drain(slot, pos, f))
    }

    /// Lets `f` read the value of `pos` in its slot, which this thread
    /// took, then frees the slot (even if `f` panics).
    fn drain<R>(&self, slot: &'a Slot<T>, pos: u64, f: impl FnOnce(&T) -> R) -> R {
        let guard = FreeOnDrop {
            ring: self,
            slot,
            pos,
        };
        // SAFETY: the slot is ours (`R`), as in `try_pop`; the reference
        // ends with the closure, before the slot is freed.
        let r = slot.value.with(|p| f(unsafe { &*p }));
        drop(guard);
        r
    }

    /// Takes the oldest value and returns a guard that reads it in place
    /// (zero-copy pop), without blocking; the slot is freed when the guard
    /// drops.
    ///
    /// Producers that reach the slot one lap later wait for the guard, as
    /// for the closure of [`try_pop_with`](Self::try_pop_with): keep it
    /// short-lived. A guard that is leaked (`mem::forget`) holds its slot
    /// until this process exits; one whose process is killed loses its
    /// value, and producers free the slot once they find the owner dead.
    ///
    /// # Errors
    ///
    /// As [`try_pop`](Self::try_pop).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{mpmc::MpmcRing, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 4096]);
    /// # let mut mem = Box::new(Mem([0; 4096]));
    /// let ring = MpmcRing::<[u32; 64]>::create(Region::from_mut_slice(&mut mem.0), 4).unwrap();
    /// ring.try_push_with(|block| block.fill(3)).unwrap();
    /// let block = ring.try_pop_ref().unwrap();
    /// assert_eq!(block.iter().sum::<u32>(), 3 * 64);
    /// drop(block); // frees the slot
    /// ```
    pub fn try_pop_ref(&self) -> Result<PopRef<'a, T>, PopError> {
        let (slot, pos) = self.claim_pop().map_err(Miss::pop_error)?;
        Ok(PopRef {
            ring: *self,
            slot,
            pos,
        })
    }

    /// As [`try_pop_ref`](Self::try_pop_ref), blocking while the ring is
    /// empty until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`pop_timeout`](Self::pop_timeout).
    pub fn pop_ref_deadline(&self, deadline: Option<Deadline>) -> Result<PopRef<'a, T>, PopError> {
        let (slot, pos) = self.claim_pop_deadline(deadline)?;
        Ok(PopRef {
            ring: *self,
            slot,
            pos,
        })
    }

    /// Pops as many values as are available, up to `out.len()`, into the
    /// front of `out`, without blocking, and returns how many. Each slot is
    /// taken with a CAS and `head` moves past a run at once; sleeping
    /// producers, if any, are all woken once.
    ///
    /// Returns 0 when the ring is empty, closed and drained, or corrupt; use
    /// [`try_pop`](Self::try_pop) to learn which.
    pub fn pop_slice(&self, out: &mut [T]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let Some((pos, n)) = self.claim_pop_run(out.len() - done) else {
                // The run is empty: a skipped slot, an empty ring or a push
                // in flight. One ordinary pop sorts these out.
                match self.claim_pop() {
                    Ok((slot, pos)) => {
                        // SAFETY: as in `try_pop`.
                        out[done] = slot.value.with(|p| unsafe { p.read() });
                        self.free_slot_quiet(slot, pos);
                        done += 1;
                        continue;
                    }
                    Err(_) => break,
                }
            };
            let mut i = self.index(pos);
            for (k, v) in out[done..done + n].iter_mut().enumerate() {
                // SAFETY: i < capacity (kept in range below).
                let slot = unsafe { self.parts.elem_unchecked(i) };
                // SAFETY: the slots of positions pos..pos + n are ours (`V`
                // to `R` by a CAS each in `claim_pop_run`, whose Acquire
                // pairs with the producers' publishing Release).
                *v = slot.value.with(|p| unsafe { p.read() });
                self.free_slot_quiet(slot, pos.wrapping_add(k as u64));
                i += 1;
                if i == self.parts.count {
                    i = 0;
                }
            }
            done += n;
        }
        let c = &self.parts.body.control;
        if done > 0 && sleepers(&c.full_sleepers) != 0 {
            wake(&c.not_full, true);
        }
        done
    }
}

/// Publishes a claimed slot as skipped if the closure writing it panics.
struct SkipOnUnwind<'r, 'a, T: Pod> {
    ring: &'r MpmcRing<'a, T>,
    slot: &'a Slot<T>,
    pos: u64,
}

impl<T: Pod> Drop for SkipOnUnwind<'_, '_, T> {
    fn drop(&mut self) {
        self.ring.publish_skipped(self.slot, self.pos);
    }
}

/// Frees a claimed slot when a zero-copy pop ends, even by a panic.
struct FreeOnDrop<'r, 'a, T: Pod> {
    ring: &'r MpmcRing<'a, T>,
    slot: &'a Slot<T>,
    pos: u64,
}

impl<T: Pod> Drop for FreeOnDrop<'_, '_, T> {
    fn drop(&mut self) {
        self.ring.free_slot(self.slot, self.pos);
    }
}

/// A slot taken in an [`MpmcRing`] to write a value in place: dereferences
/// (mutably) to the value in the slot; [`commit`](Self::commit) publishes
/// it, and a drop without a commit publishes the slot as skipped. Made by
/// [`MpmcRing::try_push_ref`] and [`MpmcRing::push_ref_deadline`].
pub struct PushRef<'a, T: Pod> {
    ring: MpmcRing<'a, T>,
    slot: &'a Slot<T>,
    pos: u64,
}

impl<T: Pod> PushRef<'_, T> {
    /// Publishes the value to the consumers.
    pub fn commit(self) {
        let this = core::mem::ManuallyDrop::new(self);
        this.ring.publish(this.slot, this.pos);
    }

    /// The position the value is pushed at (positions count every push
    /// since the ring was made).
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl<T: Pod> core::ops::Deref for PushRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the slot is ours (`W`, taken by the CAS in `take_push`,
        // whose Acquire pairs with the last consumer's freeing Release)
        // until `commit` or `drop` publishes it: nobody else accesses the
        // value meanwhile, and the borrow cannot outlive the guard. Any bit
        // pattern is a valid `T` (`Pod`).
        unsafe { &*self.slot.value.get() }
    }
}

impl<T: Pod> core::ops::DerefMut for PushRef<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow the only one.
        unsafe { &mut *self.slot.value.get() }
    }
}

impl<T: Pod> Drop for PushRef<'_, T> {
    fn drop(&mut self) {
        self.ring.publish_skipped(self.slot, self.pos);
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for PushRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PushRef").field(&**self).finish()
    }
}

/// A value taken from an [`MpmcRing`] and read in place: dereferences to
/// the value in its slot, and frees the slot when dropped. Made by
/// [`MpmcRing::try_pop_ref`] and [`MpmcRing::pop_ref_deadline`].
pub struct PopRef<'a, T: Pod> {
    ring: MpmcRing<'a, T>,
    slot: &'a Slot<T>,
    pos: u64,
}

impl<T: Pod> PopRef<'_, T> {
    /// The position the value was pushed at (positions count every push
    /// since the ring was made).
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl<T: Pod> core::ops::Deref for PopRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the slot is ours (`R`, taken by the CAS in `claim_pop`,
        // whose Acquire pairs with the producer's publishing Release) until
        // `drop` frees it: nobody writes the value meanwhile, and the
        // borrow cannot outlive the guard. Any bit pattern is a valid `T`
        // (`Pod`).
        unsafe { &*self.slot.value.get() }
    }
}

impl<T: Pod> Drop for PopRef<'_, T> {
    fn drop(&mut self) {
        self.ring.free_slot(self.slot, self.pos);
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for PopRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PopRef").field(&**self).finish()
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;
