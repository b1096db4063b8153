//! The sending side of a byte ring: frames written in place or copied in.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::time::Duration;

use super::*;
use crate::role::Holder;
use crate::sync::Ordering;
use crate::time::Deadline;
use crate::wait::Spin;

/// The sending side of a [`ByteRing`].
///
/// `Send` but not `Sync`: one thread sends at a time. Dropping it releases
/// the role and wakes the receiver, which then drains the ring and gets
/// [`RecvError::Disconnected`].
pub struct FrameSender<'a> {
    pub(super) ring: ByteRing<'a>,
    /// Our copy of `tail`; only the sender writes it.
    pub(super) tail: u64,
    /// The receiver's `head` as last seen.
    pub(super) cached_head: u64,
    pub(super) spin: Spin,
    /// The claim this handle holds; only it releases the role.
    pub(super) held: Holder,
    pub(super) _not_sync: PhantomData<Cell<()>>,
}

impl fmt::Debug for FrameSender<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSender")
            .field("tail", &self.tail)
            .field("cached_head", &self.cached_head)
            .field("capacity", &self.ring.capacity)
            .field("max_frame", &self.ring.max_frame)
            .finish()
    }
}

impl<'a> FrameSender<'a> {
    /// Sends `msg` as one frame if there is room now.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `msg` is longer than `max_frame`;
    /// [`SendError::Disconnected`] if the receiver released its role;
    /// [`SendError::Full`] if the frame does not fit now (or `head` is
    /// corrupt).
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let slot = self.poll_space(msg.len())?;
        self.write(slot, msg);
        Ok(())
    }

    /// Sends `msg`, waiting for room as long as it takes.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`]; [`SendError::Disconnected`] if the receiver
    /// released its role or died.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let slot = self.space(msg.len(), None)?;
        self.write(slot, msg);
        Ok(())
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); [`SendError::Full`] when the timeout passes.
    #[inline]
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let slot = self.space(msg.len(), Some(timeout))?;
        self.write(slot, msg);
        Ok(())
    }

    /// Reserves a frame of exactly `len` bytes to be written in place, if
    /// there is room now. [`FrameWriter::commit`] publishes it; dropping the
    /// writer publishes nothing.
    ///
    /// The bytes start with whatever the ring held there before.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_core::{bytering::ByteRing, region::Region};
    /// # #[repr(C, align(128))] struct Mem([u8; 1024]);
    /// # let mut mem = Box::new(Mem([0; 1024]));
    /// let ring = ByteRing::create(Region::from_mut_slice(&mut mem.0), 256, 64).unwrap();
    /// let (mut tx, mut rx) = ring.split().unwrap();
    /// let mut w = tx.try_reserve(5).unwrap();
    /// w.copy_from_slice(b"hello");
    /// w.commit();
    /// assert_eq!(&*rx.try_read().unwrap(), b"hello");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send).
    pub fn try_reserve(&mut self, len: usize) -> Result<FrameWriter<'_, 'a>, SendError> {
        let slot = self.poll_space(len)?;
        Ok(FrameWriter::new(self, slot))
    }

    /// As [`try_reserve`](Self::try_reserve), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn reserve(&mut self, len: usize) -> Result<FrameWriter<'_, 'a>, SendError> {
        let slot = self.space(len, None)?;
        Ok(FrameWriter::new(self, slot))
    }

    /// As [`try_reserve`](Self::try_reserve), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<FrameWriter<'_, 'a>, SendError> {
        let slot = self.space(len, Some(timeout))?;
        Ok(FrameWriter::new(self, slot))
    }

    /// Sets how long blocking calls spin before sleeping.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The largest payload a frame may carry.
    pub fn max_frame(&self) -> u64 {
        self.ring.max_frame
    }

    /// Finds room for a frame of `len` payload bytes, or says why not.
    #[inline]
    pub(super) fn poll_space(&mut self, len: usize) -> Result<Slot, SendError> {
        let ring = self.ring;
        let len = len as u64;
        if len > ring.max_frame {
            return Err(SendError::TooLarge {
                len,
                max: ring.max_frame,
            });
        }
        if ring.body().meta.0.consumer.is_closed() {
            return Err(SendError::Disconnected);
        }
        let cap = ring.capacity;
        let size = frame_size(len);
        let off = self.tail & (cap - 1);
        let room = cap - off;
        let slot = if size <= room {
            Slot {
                frame: off,
                wrap: None,
                len,
                advance: size,
            }
        } else {
            Slot {
                frame: 0,
                wrap: Some(off),
                len,
                advance: room + size,
            }
        };
        if !self.has_room(slot.advance) {
            // Acquire: pairs with the Release store of `head` in
            // `FrameReceiver::release_frame`: the receiver's reads of the
            // bytes we are about to reuse happen before our writes.
            self.cached_head = ring.body().head.0.load(Ordering::Acquire);
            if !self.has_room(slot.advance) {
                return Err(SendError::Full);
            }
        }
        Ok(slot)
    }

    /// Whether `need` bytes are free after `tail` as far as the cached head
    /// tells. An impossible head (misaligned, or more than a ring behind)
    /// leaves no room.
    #[inline]
    pub(super) fn has_room(&self, need: u64) -> bool {
        let cap = self.ring.capacity;
        let used = self.tail.wrapping_sub(self.cached_head);
        used <= cap && (self.tail | self.cached_head) & 7 == 0 && need <= cap - used
    }

    /// Room for a frame of `len` payload bytes now, or once it frees up
    /// within `timeout` (`None`: as long as it takes).
    ///
    /// The ready case is tried here, before the wait machinery. Through
    /// the generic wait, a thread-to-thread stream of 8-byte frames ran at
    /// about 60% of this (the profile put the time on the first load of the
    /// value the wait returned: most likely a store-to-load forwarding that
    /// fails and so waits for the store buffer, still fetching the frame's
    /// and `tail`'s lines from the receiver's cache, to drain).
    #[inline]
    pub(super) fn space(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<Slot, SendError> {
        match self.poll_space(len) {
            Err(SendError::Full) => self.wait_space(len, timeout.map(Deadline::after)),
            r => r,
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn wait_space(
        &mut self,
        len: usize,
        deadline: Option<Deadline>,
    ) -> Result<Slot, SendError> {
        let ring = self.ring;
        let b = ring.body();
        let spin = self.spin;
        block_on(
            &b.events.0.not_full,
            &b.meta.0.consumer,
            spin,
            deadline,
            SendError::Full,
            SendError::Disconnected,
            || self.poll_space(len),
        )
    }

    #[inline]
    pub(super) fn write(&mut self, slot: Slot, msg: &[u8]) {
        self.ring.copy_in(slot.frame + HEADER_LEN, msg);
        self.publish(slot);
    }

    /// Writes the headers of `slot` and publishes it.
    #[inline]
    pub(super) fn publish(&mut self, slot: Slot) {
        let ring = self.ring;
        if let Some(w) = slot.wrap {
            ring.write_word(w, WRAP);
        }
        ring.write_word(slot.frame, slot.len);
        self.tail = self.tail.wrapping_add(slot.advance);
        // Release: pairs with the Acquire load of `tail` in
        // `FrameReceiver::refresh_tail`: the frame's bytes are visible to a
        // receiver that sees the new tail.
        ring.body().tail.0.store(self.tail, Ordering::Release);
        // No fence: one load of the receiver's `asleep` flag (see `bell`).
        ring.body().events.0.not_empty.ring();
    }
}

impl Drop for FrameSender<'_> {
    fn drop(&mut self) {
        let b = self.ring.body();
        // Release inside `release`: a receiver that sees the released role
        // also sees our last `tail`.
        b.meta.0.producer.release(self.held);
        // Fenced, flag or not: a receiver about to sleep must see the release.
        b.events.0.not_empty.ring_leaving();
    }
}

/// A frame reserved by [`FrameSender::try_reserve`], written in place.
///
/// Derefs to exactly the reserved number of bytes. [`commit`](Self::commit)
/// publishes the frame; dropping the writer abandons it (nothing is
/// published).
#[must_use = "dropping a FrameWriter publishes nothing; call `commit`"]
pub struct FrameWriter<'s, 'a> {
    pub(super) tx: &'s mut FrameSender<'a>,
    pub(super) slot: Slot,
}

impl fmt::Debug for FrameWriter<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameWriter")
            .field("len", &self.slot.len)
            .finish()
    }
}

impl<'s, 'a> FrameWriter<'s, 'a> {
    pub(super) fn new(tx: &'s mut FrameSender<'a>, slot: Slot) -> Self {
        let ring = tx.ring;
        ring.check_range(slot.frame + HEADER_LEN, slot.len);
        ring.track(slot.frame + HEADER_LEN, slot.len, true);
        Self { tx, slot }
    }

    /// Publishes the frame.
    pub fn commit(self) {
        let ring = self.tx.ring;
        ring.track(self.slot.frame + HEADER_LEN, self.slot.len, true);
        self.tx.publish(self.slot);
    }
}

impl Deref for FrameWriter<'_, '_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let ring = self.tx.ring;
        // SAFETY: the range lies in the data (checked in `new`); the bytes
        // are initialised (zeroed at create) and lie after `tail`, which only
        // this writer's sender can move, so the receiver does not touch them.
        unsafe {
            core::slice::from_raw_parts(
                ring.data().add((self.slot.frame + HEADER_LEN) as usize),
                self.slot.len as usize,
            )
        }
    }
}

impl DerefMut for FrameWriter<'_, '_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let ring = self.tx.ring;
        // SAFETY: as in `deref`; `&mut self` borrows the writer (and through
        // it the sender) exclusively.
        unsafe {
            core::slice::from_raw_parts_mut(
                ring.data().add((self.slot.frame + HEADER_LEN) as usize),
                self.slot.len as usize,
            )
        }
    }
}
