//! The receiving side of a byte ring: frames read in place or copied out.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::time::Duration;

use super::*;
use crate::role::Holder;
use crate::sync::Ordering;
use crate::time::Deadline;
use crate::wait::Spin;

/// The receiving side of a [`ByteRing`].
///
/// `Send` but not `Sync`. Dropping it releases the role and wakes the
/// sender, which then gets [`SendError::Disconnected`].
pub struct FrameReceiver<'a> {
    pub(super) ring: ByteRing<'a>,
    /// Our copy of `head`; only the receiver writes it.
    pub(super) head: u64,
    /// The sender's `tail` as last seen.
    pub(super) cached_tail: u64,
    pub(super) spin: Spin,
    /// Set once the ring was found corrupt: reported from then on.
    pub(super) corrupt: Option<Corruption>,
    /// The claim this handle holds; only it releases the role.
    pub(super) held: Holder,
    pub(super) _not_sync: PhantomData<Cell<()>>,
}

impl fmt::Debug for FrameReceiver<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReceiver")
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("capacity", &self.ring.capacity)
            .field("max_frame", &self.ring.max_frame)
            .field("corrupt", &self.corrupt)
            .finish()
    }
}

impl<'a> FrameReceiver<'a> {
    /// Copies the next frame into `buf` if there is one now, and returns
    /// its length.
    ///
    /// # Errors
    ///
    /// - [`RecvError::Empty`]: no frame now.
    /// - [`RecvError::Disconnected`]: no frame, and the sender released its
    ///   role.
    /// - [`RecvError::BufferTooSmall`]: the frame is longer than `buf`; it
    ///   stays in the ring (see [`peek_len`](Self::peek_len)).
    /// - [`RecvError::Corrupt`]: the ring is corrupt (for good).
    #[inline]
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let frame = self.poll_frame()?;
        self.take_into(frame, buf)
    }

    /// Copies the next frame into `buf`, waiting for one as long as it
    /// takes.
    ///
    /// # Errors
    ///
    /// As [`try_recv_into`](Self::try_recv_into), except `Empty`;
    /// `Disconnected` also once the sender died.
    #[inline]
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let frame = self.frame(None)?;
        self.take_into(frame, buf)
    }

    /// Copies the next frame into `buf`, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_into`](Self::recv_into); [`RecvError::Empty`] when the
    /// timeout passes.
    #[inline]
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        let frame = self.frame(Some(timeout))?;
        self.take_into(frame, buf)
    }

    /// Borrows the next frame in place, if there is one now. Dropping (or
    /// [releasing](FrameReader::release)) the reader frees it.
    ///
    /// # Errors
    ///
    /// As [`try_recv_into`](Self::try_recv_into), without `BufferTooSmall`.
    pub fn try_read(&mut self) -> Result<FrameReader<'_, 'a>, RecvError> {
        let frame = self.poll_frame()?;
        Ok(FrameReader::new(self, frame))
    }

    /// As [`try_read`](Self::try_read), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`recv_into`](Self::recv_into), without `BufferTooSmall`.
    pub fn read(&mut self) -> Result<FrameReader<'_, 'a>, RecvError> {
        let frame = self.frame(None)?;
        Ok(FrameReader::new(self, frame))
    }

    /// As [`try_read`](Self::try_read), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_into_timeout`](Self::recv_into_timeout), without
    /// `BufferTooSmall`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<FrameReader<'_, 'a>, RecvError> {
        let frame = self.frame(Some(timeout))?;
        Ok(FrameReader::new(self, frame))
    }

    /// The length of the next frame, if there is one now; the frame stays.
    ///
    /// # Errors
    ///
    /// As [`try_read`](Self::try_read).
    pub fn peek_len(&mut self) -> Result<usize, RecvError> {
        let frame = self.poll_frame()?;
        Ok(frame.len as usize)
    }

    /// Sets how long blocking calls spin before sleeping.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The largest payload a frame may carry.
    pub fn max_frame(&self) -> u64 {
        self.ring.max_frame
    }

    #[inline]
    pub(super) fn refresh_tail(&mut self) {
        // Acquire: pairs with the Release store of `tail` in
        // `FrameSender::publish`: the frames before it are fully written.
        self.cached_tail = self.ring.body().tail.0.load(Ordering::Acquire);
    }

    /// The next frame, validated, or why there is none.
    #[inline]
    pub(super) fn poll_frame(&mut self) -> Result<Frame, RecvError> {
        if let Some(c) = self.corrupt {
            return Err(RecvError::Corrupt(c));
        }
        if self.cached_tail == self.head {
            self.refresh_tail();
            if self.cached_tail == self.head {
                if !self.ring.body().meta.0.producer.is_closed() {
                    return Err(RecvError::Empty);
                }
                // The role word was loaded with Acquire, pairing with the
                // Release in `RoleWord::release`, which the sender did after
                // its last publish: this load sees the final tail.
                self.refresh_tail();
                if self.cached_tail == self.head {
                    return Err(RecvError::Disconnected);
                }
            }
        }
        match self.ring.parse_frame(self.head, self.cached_tail) {
            Ok(f) => Ok(f),
            Err(c) => {
                self.corrupt = Some(c);
                Err(RecvError::Corrupt(c))
            }
        }
    }

    /// The next frame now, or once one arrives within `timeout` (`None`:
    /// as long as it takes). The ready case is tried before the wait
    /// machinery, as in `FrameSender::space`.
    #[inline]
    pub(super) fn frame(&mut self, timeout: Option<Duration>) -> Result<Frame, RecvError> {
        match self.poll_frame() {
            Err(RecvError::Empty) => self.wait_frame(timeout.map(Deadline::after)),
            r => r,
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn wait_frame(&mut self, deadline: Option<Deadline>) -> Result<Frame, RecvError> {
        let ring = self.ring;
        let b = ring.body();
        let spin = self.spin;
        block_on(
            &b.events.0.not_empty,
            &b.meta.0.producer,
            spin,
            deadline,
            RecvError::Empty,
            RecvError::Disconnected,
            || self.poll_frame(),
        )
    }

    #[inline]
    pub(super) fn take_into(&mut self, frame: Frame, buf: &mut [u8]) -> Result<usize, RecvError> {
        let len = frame.len as usize;
        let Some(dst) = buf.get_mut(..len) else {
            return Err(RecvError::BufferTooSmall { needed: frame.len });
        };
        self.ring.copy_out(frame.payload, dst);
        self.release_frame(frame);
        Ok(len)
    }

    /// Frees `frame`, the one at `head`.
    #[inline]
    pub(super) fn release_frame(&mut self, frame: Frame) {
        let ring = self.ring;
        self.head = self.head.wrapping_add(frame.advance);
        // Release: pairs with the Acquire load of `head` in
        // `FrameSender::poll_space`: our reads of the frame happen before the
        // sender reuses its bytes.
        ring.body().head.0.store(self.head, Ordering::Release);
        // No fence: one load of the sender's `asleep` flag (see `bell`).
        ring.body().events.0.not_full.ring();
    }
}

impl Drop for FrameReceiver<'_> {
    fn drop(&mut self) {
        let b = self.ring.body();
        // Release inside `release`: a sender that sees the released role
        // also sees our last `head`.
        b.meta.0.consumer.release(self.held);
        // Fenced, flag or not: a sender about to sleep must see the release.
        b.events.0.not_full.ring_leaving();
    }
}

/// A frame borrowed in place from the ring by [`FrameReceiver::try_read`].
///
/// Derefs to the payload. Dropping it, or [`release`](Self::release), frees
/// the frame for the sender.
///
/// If the sender is hostile and rewrites the frame while it is borrowed, the
/// bytes seen may change under the reader: they are plain bytes, so this
/// gives garbage, never undefined values.
pub struct FrameReader<'r, 'a> {
    pub(super) rx: &'r mut FrameReceiver<'a>,
    pub(super) frame: Frame,
}

impl fmt::Debug for FrameReader<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("len", &self.frame.len)
            .finish()
    }
}

impl<'r, 'a> FrameReader<'r, 'a> {
    pub(super) fn new(rx: &'r mut FrameReceiver<'a>, frame: Frame) -> Self {
        let ring = rx.ring;
        ring.check_range(frame.payload, frame.len);
        ring.track(frame.payload, frame.len, false);
        Self { rx, frame }
    }

    /// Frees the frame (the same as dropping the reader).
    pub fn release(self) {
        drop(self);
    }
}

impl Deref for FrameReader<'_, '_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let ring = self.rx.ring;
        // SAFETY: the range lies in the data (validated by `parse_frame`,
        // checked in `new`); the frame is published and not released, so a
        // well-behaved sender does not write it (a hostile one can only make
        // the bytes garbage).
        unsafe {
            core::slice::from_raw_parts(
                ring.data().add(self.frame.payload as usize),
                self.frame.len as usize,
            )
        }
    }
}

impl Drop for FrameReader<'_, '_> {
    fn drop(&mut self) {
        let ring = self.rx.ring;
        ring.track(self.frame.payload, self.frame.len, false);
        self.rx.release_frame(self.frame);
    }
}
