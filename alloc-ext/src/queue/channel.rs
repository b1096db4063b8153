//! `Queue<T>`: the MPMC channel's builder and its `Sender`/`Receiver`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use multiproc_core::identity::Identity;
use multiproc_core::mpmc::{MpmcRing, PopError, PopRef, PushError, PushRef};
use multiproc_core::peers::{current_pid, Side, DEFAULT_SLOTS};
use multiproc_core::time::Deadline;
use multiproc_core::wait::Spin;

use super::error::{
    recv_gone, untimed_recv, untimed_send, QueueError, RecvError, RecvTimeoutError, SendError,
    SendSliceError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::segment::{type_tag, Local, Name, Segment, Token, KIND_MPMC};

/// How long a blocked call sleeps before it checks whether the other side's
/// processes still live (a dead process wakes nobody). Each check reads the
/// side's count (shared memory) and, if it is not 0, asks the kernel about
/// one holder (3 system calls): an idle blocked receiver makes about 20
/// futex waits and 60 other system calls a second, however many senders
/// there are (see the [module docs](super) for the figures).
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// A multi-producer multi-consumer queue of `T: Pod` in shared memory:
/// the builder of its [`Sender`]/[`Receiver`] pair.
///
/// # Examples
///
/// ```
/// use multiproc::queue::Queue;
///
/// let (tx, rx) = Queue::<u64>::new(16).channel()?;
/// tx.send(7).unwrap();
/// assert_eq!(rx.recv(), Ok(7));
/// # Ok::<(), multiproc::queue::QueueError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Queue<T> {
    capacity: u64,
    name: NameOwned,
    spin: Spin,
    max_peers: u64,
    _t: PhantomData<fn() -> T>,
}

#[derive(Debug, Clone)]
enum NameOwned {
    Anonymous,
    Unique,
    Given(String),
}

impl<T: Pod> Queue<T> {
    /// A queue of `capacity` slots, in an anonymous segment (reachable by
    /// forked children only) unless [`named`](Self::named).
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            name: NameOwned::Anonymous,
            spin: Spin::DEFAULT,
            max_peers: DEFAULT_SLOTS,
            _t: PhantomData,
        }
    }

    /// How many processes may hold handles of the queue at once: the slots
    /// of its peer table (default [`DEFAULT_SLOTS`], 512: a `Pool` on a
    /// 128-core machine with room to spare; 16 bytes a slot, 8 KiB).
    ///
    /// A handle that a process beyond that number would hold cannot be
    /// counted, and is refused with an error where it would be counted:
    /// [`QueueError::Peers`] from [`channel`](Self::channel),
    /// [`Sender::try_clone`] and the tokens. Slots of processes that died
    /// are reused.
    ///
    /// A handle moved into a `Process` fork child stays counted under the
    /// parent until the child first uses it, and is then counted under the
    /// child. If the child's table is full at that moment, the handle
    /// stays counted under the parent: exact while the parent lives; if the
    /// parent exits first, that handle is no longer counted, and the other
    /// side may see `Disconnected` while the child still holds it. Size the
    /// table for every process that will hold a handle.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = multiproc::Queue::<u64>::new(16).max_peers(1).channel()?;
    /// // One process (this one) fits; a second would not.
    /// assert!(tx.try_clone().is_ok());
    /// # Ok::<(), multiproc::queue::QueueError>(())
    /// ```
    #[must_use]
    pub fn max_peers(mut self, n: u64) -> Self {
        self.max_peers = n;
        self
    }

    /// Puts the queue in a named segment (`shm_open`), so that
    /// [`Sender::to_token`]/[`Receiver::to_token`] can hand it to spawned
    /// processes. The creating process unlinks the name when its last
    /// handle is dropped.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = NameOwned::Given(name.to_owned());
        self
    }

    /// As [`named`](Self::named), with a generated unique name.
    #[must_use]
    pub fn unique_name(mut self) -> Self {
        self.name = NameOwned::Unique;
        self
    }

    /// How long blocking calls spin before sleeping ([`Spin::DEFAULT`]).
    #[must_use]
    pub fn spin(mut self, spin: Spin) -> Self {
        self.spin = spin;
        self
    }

    /// Makes the queue and returns its two first handles.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidCapacity`] for a zero capacity;
    /// [`QueueError::InvalidMaxPeers`]; segment errors.
    pub fn channel(self) -> Result<(Sender<T>, Receiver<T>), QueueError> {
        let inner = Arc::new(Inner::<T>::create(
            self.capacity,
            match &self.name {
                NameOwned::Anonymous => Name::Anonymous,
                NameOwned::Unique => Name::Unique,
                NameOwned::Given(n) => Name::Given(n),
            },
            self.spin,
            self.max_peers,
        )?);
        let me = Identity::current();
        inner.seg.peers.add(me, Side::Sender, 1)?;
        inner.seg.peers.add(me, Side::Receiver, 1)?;
        Ok((
            Sender::with(Arc::clone(&inner), Local::new(Side::Sender)),
            Receiver::with(inner, Local::new(Side::Receiver)),
        ))
    }
}

/// Opens both ends of the queue in the named segment `name` (made by
/// [`Queue::named`] in another process), counting them for this process:
/// what `SimpleQueue::open` and `JoinableQueue::open` stand on.
pub(crate) fn open_pair<T: Pod>(name: &str) -> Result<(Sender<T>, Receiver<T>), QueueError> {
    let inner = Arc::new(Inner::<T>::open(name)?);
    let me = Identity::current();
    inner.seg.peers.add(me, Side::Sender, 1)?;
    if let Err(e) = inner.seg.peers.add(me, Side::Receiver, 1) {
        inner.seg.peers.remove(me, Side::Sender, 1);
        return Err(e.into());
    }
    Ok((
        Sender::with(Arc::clone(&inner), Local::new(Side::Sender)),
        Receiver::with(inner, Local::new(Side::Receiver)),
    ))
}

impl<T: Pod> Sender<T> {
    /// The name of the queue's segment (`None` when anonymous).
    pub(crate) fn segment_name(&self) -> Option<&str> {
        self.inner.seg.name()
    }
}

/// A bounded MPMC queue of `capacity` slots in an anonymous shared segment:
/// `Queue::new(capacity).channel()`.
///
/// # Errors
///
/// [`QueueError::InvalidCapacity`] for a zero capacity; segment errors.
pub fn channel<T: Pod>(capacity: u64) -> Result<(Sender<T>, Receiver<T>), QueueError> {
    Queue::new(capacity).channel()
}

/// What every handle of one queue shares in one process.
pub(crate) struct Inner<T: Pod> {
    /// Built on `seg`'s memory; declared first, dropped first (it is `Copy`
    /// and has no drop, but never outlives `seg`).
    pub(crate) ring: MpmcRing<'static, T>,
    pub(crate) seg: Segment,
}

impl<T: Pod> fmt::Debug for Inner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("segment", &self.seg)
            .field("capacity", &self.ring.capacity())
            .finish()
    }
}

impl<T: Pod> Inner<T> {
    fn create(
        capacity: u64,
        name: Name<'_>,
        spin: Spin,
        max_peers: u64,
    ) -> Result<Self, QueueError> {
        let size =
            MpmcRing::<T>::memory_size(capacity).ok_or(QueueError::InvalidCapacity { capacity })?;
        let seg = Segment::create(size, name, max_peers)?;
        // SAFETY: the ring view is stored next to the segment and dropped
        // with it (field order in Inner); the segment is new and its ring
        // area untouched: the ring writes only its header and body.
        let region = unsafe { seg.fresh_ring_region() };
        let ring = MpmcRing::<T>::create_tagged(region, capacity, type_tag::<T>())
            .map_err(|e| match e {
                multiproc_core::region::InitError::InvalidCapacity { capacity } => {
                    QueueError::InvalidCapacity { capacity }
                }
                e => QueueError::Init(e),
            })?
            .with_spin(spin);
        Ok(Self { ring, seg })
    }

    fn open(name: &str) -> Result<Self, QueueError> {
        let seg = Segment::open(name)?;
        // SAFETY: as in `create`.
        let region = unsafe { seg.ring_region() };
        let ring = MpmcRing::<T>::attach_tagged(region, type_tag::<T>())?;
        Ok(Self { ring, seg })
    }

    fn token(&self, side: Side) -> Result<Vec<u8>, QueueError> {
        let name = self.seg.name().ok_or(QueueError::Anonymous)?;
        // The pending transfer counts as a live handle of this process
        // until the receiving process claims it.
        let me = Identity::current();
        self.seg.peers.add(me, side, 1)?;
        // Its ticket makes the claim happen once.
        let Some(ticket) = self.seg.tickets().issue(me.pid()) else {
            self.seg.peers.remove(me, side, 1);
            return Err(QueueError::TooManyTokens {
                max: crate::segment::TICKETS,
            });
        };
        Ok(Token {
            kind: KIND_MPMC,
            side,
            from_pid: current_pid(),
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            tag: type_tag::<T>(),
            ticket,
            name: name.to_owned(),
        }
        .encode())
    }

    fn claim(token: &[u8], side: Side) -> Result<(Arc<Self>, Local), QueueError> {
        let t = Token::decode(token)?;
        t.check::<T>(KIND_MPMC, side)?;
        let inner = Self::open(&t.name)?;
        let me = Identity::current();
        // Count here first, then withdraw the pending count: never zero.
        inner.seg.peers.add(me, side, 1)?;
        if !inner.seg.tickets().redeem(t.ticket) {
            // Claimed before (or void): its pending count is gone already,
            // and must not be withdrawn twice.
            inner.seg.peers.remove(me, side, 1);
            return Err(QueueError::AlreadyClaimed);
        }
        inner.seg.peers.remove_pid(t.from_pid, side, 1);
        Ok((Arc::new(inner), Local::new(side)))
    }

    /// Whether no live process holds a handle of `side`: the side's count
    /// first (shared memory), then the kernel about one holder.
    fn side_gone(&self, side: Side) -> bool {
        !self.seg.side_alive(side)
    }
}

// ---------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------

/// The sending side of a [`Queue`]: `Clone`, `Send`, `Sync`; moves into
/// forked children (see the [module docs](super) for how handles are
/// counted across processes).
pub struct Sender<T: Pod> {
    inner: Arc<Inner<T>>,
    /// A copy of `inner.ring` (a `Copy` view into the segment that `inner`
    /// keeps mapped, and never outlives it): one load chain fewer per call
    /// than going through the `Arc`.
    ring: MpmcRing<'static, T>,
    local: Local,
}

impl<T: Pod> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("queue", &self.inner)
            .finish()
    }
}

impl<T: Pod> Clone for Sender<T> {
    /// Another sender, counted in this process.
    ///
    /// # Panics
    ///
    /// If the peer table cannot count it (65535 senders in one process, or
    /// a table full of other live processes, see [`Queue::max_peers`]);
    /// [`try_clone`](Sender::try_clone) returns that as an error.
    fn clone(&self) -> Self {
        Self::with(
            Arc::clone(&self.inner),
            self.local.clone_in(&self.inner.seg.peers),
        )
    }
}

impl<T: Pod> crate::process::Inherit for Sender<T> {
    fn inherit(&self) {
        self.local.ensure(&self.inner.seg.peers);
    }
}

impl<T: Pod> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.local.release(&self.inner.seg.peers) {
            // The last sender anywhere: receivers drain and disconnect.
            self.inner.ring.close();
        }
    }
}

impl<T: Pod> Sender<T> {
    /// Another sender, counted in this process: [`Clone`] without the
    /// panic.
    ///
    /// # Errors
    ///
    /// [`QueueError::Peers`] if the peer table cannot count it (a table
    /// full of other live processes, see [`Queue::max_peers`], or 65535
    /// senders in this process).
    pub fn try_clone(&self) -> Result<Self, QueueError> {
        let local = self.local.try_clone_in(&self.inner.seg.peers)?;
        Ok(Self::with(Arc::clone(&self.inner), local))
    }

    /// A handle of `inner`, counted (or to be counted) as `local` says.
    fn with(inner: Arc<Inner<T>>, local: Local) -> Self {
        Self {
            ring: inner.ring,
            inner,
            local,
        }
    }

    #[inline]
    fn ring(&self) -> &MpmcRing<'static, T> {
        self.local.ensure(&self.inner.seg.peers);
        &self.ring
    }

    /// Sends `v` if there is room, without blocking.
    ///
    /// It reports `Disconnected` once the queue is closed: when the last
    /// receiver was dropped, or once any blocking call noticed that every
    /// receiver died. A receiver killed without dropping is not looked for
    /// here (that costs system calls); [`send`](Self::send) and
    /// [`is_disconnected`](Self::is_disconnected) look.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`], [`TrySendError::Disconnected`] or
    /// [`TrySendError::Corrupt`], with `v`.
    #[inline]
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        self.ring().try_push(v).map_err(TrySendError::from)
    }

    /// Sends `v`, blocking while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] with `v` when every receiver is gone
    /// (dropped, or died: noticed within about 50 ms of waiting);
    /// [`SendError::Corrupt`] with `v` if the queue's memory is corrupt.
    #[inline]
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.send_deadline(v, || None).map_err(untimed_send)
    }

    /// Sends `v`, blocking at most `timeout` while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`], [`SendTimeoutError::Disconnected`] or
    /// [`SendTimeoutError::Corrupt`], with `v`.
    #[inline]
    pub fn send_timeout(&self, v: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(v, || Some(Deadline::after(timeout)))
    }

    /// Sends `v`, blocking until the deadline that `deadline` computes
    /// (only once the queue is found full: the fast path reads no clock).
    #[inline]
    fn send_deadline(
        &self,
        v: T,
        deadline: impl FnOnce() -> Option<Deadline>,
    ) -> Result<(), SendTimeoutError<T>> {
        match self.try_send(v) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(v)) => Err(SendTimeoutError::Disconnected(v)),
            Err(TrySendError::Corrupt(v)) => Err(SendTimeoutError::Corrupt(v)),
            Err(TrySendError::Full(v)) => self.send_slow(v, deadline()),
        }
    }

    #[cold]
    fn send_slow(&self, v: T, deadline: Option<Deadline>) -> Result<(), SendTimeoutError<T>> {
        match self.send_in_slices(deadline, |ring, d| ring.push_ref_deadline(d)) {
            Ok(mut slot) => {
                *slot = v;
                slot.commit();
                Ok(())
            }
            Err(e) => Err(e.map(|()| v)),
        }
    }

    /// Waits for room with `push` (a blocking call of the ring, given a
    /// deadline) in slices of [`LIVENESS_SLICE`] until `deadline`, checking
    /// between slices that a receiver lives (closing the queue if none
    /// does): the waiting loop of every blocking send.
    fn send_in_slices<R>(
        &self,
        deadline: Option<Deadline>,
        mut push: impl FnMut(MpmcRing<'static, T>, Option<Deadline>) -> Result<R, PushError<()>>,
    ) -> Result<R, SendTimeoutError<()>> {
        let mut ring = *self.ring();
        loop {
            let slice = Deadline::after(LIVENESS_SLICE).min(deadline);
            match push(ring, Some(slice)) {
                Ok(r) => return Ok(r),
                Err(PushError::Full(())) => {}
                Err(PushError::Disconnected(())) => return Err(SendTimeoutError::Disconnected(())),
                Err(PushError::Corrupt(())) => return Err(SendTimeoutError::Corrupt(())),
            }
            ring = ring.with_spin(Spin::NONE);
            if self.inner.side_gone(Side::Receiver) {
                self.inner.ring.close();
                return Err(SendTimeoutError::Disconnected(()));
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(SendTimeoutError::Timeout(()));
            }
        }
    }

    /// Writes a value in place in the next free slot (zero-copy send),
    /// blocking while the queue is full.
    ///
    /// The slot holds stale data when `f` gets it: write every field you
    /// need. Keep `f` short: receivers that reach this slot wait for it. If
    /// this process dies inside `f`, receivers step over the slot once they
    /// find it dead (see the module docs). `f` runs once a slot is taken,
    /// after any wait for room.
    ///
    /// # Errors
    ///
    /// [`SendError`] (holding nothing) when every receiver is gone or the
    /// queue is corrupt; `f` is not called then.
    pub fn send_with(&self, f: impl FnOnce(&mut T)) -> Result<(), SendError<()>> {
        let mut f = Some(f);
        let mut fill = |slot: &mut T| {
            if let Some(f) = f.take() {
                f(slot)
            }
        };
        self.send_in_slices(None, |ring, d| ring.push_with_deadline(&mut fill, d))
            .map_err(untimed_send)
    }

    /// Takes a free slot and returns a guard that writes a value in place
    /// (zero-copy send), blocking while the queue is full;
    /// [`SendRef::commit`] sends it. A guard dropped without a commit (by a
    /// panic, say) sends nothing: receivers step over its slot.
    ///
    /// The slot holds stale data: write every field you need. Receivers
    /// that reach the slot wait for the guard: keep it short-lived (a
    /// leaked guard holds its slot until this process exits). If this
    /// process dies holding it, receivers step over the slot once they find
    /// it dead (see the module docs).
    ///
    /// # Errors
    ///
    /// [`SendError`] (holding nothing) when every receiver is gone or the
    /// queue is corrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = multiproc::queue::channel::<[u64; 32]>(4)?;
    /// let mut block = tx.send_ref().unwrap();
    /// block.fill(3);
    /// block.commit();
    /// assert_eq!(rx.recv().unwrap()[31], 3);
    /// # Ok::<(), multiproc::queue::QueueError>(())
    /// ```
    pub fn send_ref(&self) -> Result<SendRef<'_, T>, SendError<()>> {
        self.send_in_slices(None, |ring, d| ring.push_ref_deadline(d))
            .map(SendRef::new)
            .map_err(untimed_send)
    }

    /// As [`send_ref`](Self::send_ref), without blocking.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send), holding nothing.
    pub fn try_send_ref(&self) -> Result<SendRef<'_, T>, TrySendError<()>> {
        self.ring()
            .try_push_ref()
            .map(SendRef::new)
            .map_err(TrySendError::from)
    }

    /// Sends every value of `vs`, in order, blocking while the queue is
    /// full; runs of free slots are claimed with one CAS each.
    ///
    /// # Errors
    ///
    /// [`SendSliceError`] saying how many values were sent, when every
    /// receiver is gone or the queue is corrupt.
    pub fn send_slice(&self, vs: &[T]) -> Result<(), SendSliceError> {
        let ring = self.ring();
        let mut sent = 0;
        while sent < vs.len() {
            let n = ring.push_slice(&vs[sent..]);
            if n == 0 {
                // Full (or closed): one blocking send sorts it out.
                self.send(vs[sent]).map_err(|e| SendSliceError {
                    sent,
                    error: e.map(|_| ()),
                })?;
                sent += 1;
            }
            sent += n;
        }
        Ok(())
    }

    /// Hands this sender to another process: a token to pass (as bytes) to
    /// a spawned process, which calls [`Sender::from_token`]. The queue
    /// must be named ([`Queue::named`]/[`Queue::unique_name`]).
    ///
    /// Until claimed, the transfer counts as a live sender of this process:
    /// receivers do not see `Disconnected` while this process lives, even if
    /// the token is never used. Each token is claimed once: it records a
    /// ticket in the queue's segment that the first claim takes, and a
    /// second claim of the same bytes fails with
    /// [`QueueError::AlreadyClaimed`] (so it cannot withdraw the count of
    /// this sender, which stays alive). Make one token per process to hand
    /// a sender to; at most 64 may wait to be claimed at once.
    ///
    /// # Errors
    ///
    /// [`QueueError::Anonymous`] for an anonymous queue;
    /// [`QueueError::Peers`] if the transfer cannot be counted;
    /// [`QueueError::TooManyTokens`] if 64 tokens of the queue, made by
    /// live processes, wait to be claimed.
    pub fn to_token(&self) -> Result<Vec<u8>, QueueError> {
        self.local.ensure(&self.inner.seg.peers);
        self.inner.token(Side::Sender)
    }

    /// Claims a token made by [`Sender::to_token`] (typically in another
    /// process), validating the queue and its element type.
    ///
    /// # Errors
    ///
    /// [`QueueError::BadToken`] if the token is garbage or names another
    /// element type or side; [`QueueError::AlreadyClaimed`] if it was
    /// claimed before (by any process), or its maker died and its ticket
    /// was reused; segment and attach errors.
    pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
        let (inner, local) = Inner::claim(token, Side::Sender)?;
        Ok(Self::with(inner, local))
    }

    pub(crate) fn peers(&self) -> &multiproc_core::peers::Peers<'static> {
        &self.inner.seg.peers
    }

    /// Closes the queue for everyone: sends fail from now on, receivers get
    /// what is queued and then `Disconnected`.
    pub fn close(&self) {
        self.inner.ring.close();
    }

    /// Whether every receiver is gone (dropped or dead: checks liveness,
    /// a few system calls) or the queue is closed.
    pub fn is_disconnected(&self) -> bool {
        self.inner.ring.is_closed() || self.inner.side_gone(Side::Receiver)
    }

    /// The number of queued values, approximately (Python's `qsize`).
    pub fn len(&self) -> u64 {
        self.inner.ring.len()
    }
    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.inner.ring.is_empty()
    }
    /// Whether [`len`](Self::len) is the capacity.
    pub fn is_full(&self) -> bool {
        self.inner.ring.is_full()
    }
    /// The number of slots.
    pub fn capacity(&self) -> u64 {
        self.inner.ring.capacity()
    }
}

// ---------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------

/// The receiving side of a [`Queue`]: `Clone`, `Send`, `Sync`.
pub struct Receiver<T: Pod> {
    inner: Arc<Inner<T>>,
    /// A copy of `inner.ring` (a `Copy` view into the segment that `inner`
    /// keeps mapped, and never outlives it): one load chain fewer per call
    /// than going through the `Arc`.
    ring: MpmcRing<'static, T>,
    local: Local,
}

impl<T: Pod> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("queue", &self.inner)
            .finish()
    }
}

impl<T: Pod> Clone for Receiver<T> {
    /// Another receiver, counted in this process.
    ///
    /// # Panics
    ///
    /// As [`Sender::clone`].
    fn clone(&self) -> Self {
        Self::with(
            Arc::clone(&self.inner),
            self.local.clone_in(&self.inner.seg.peers),
        )
    }
}

impl<T: Pod> crate::process::Inherit for Receiver<T> {
    fn inherit(&self) {
        self.local.ensure(&self.inner.seg.peers);
    }
}

impl<T: Pod> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.local.release(&self.inner.seg.peers) {
            // The last receiver anywhere: senders fail from now on.
            self.inner.ring.close();
        }
    }
}

impl<T: Pod> Receiver<T> {
    /// Another receiver, counted in this process: [`Clone`] without the
    /// panic.
    ///
    /// # Errors
    ///
    /// As [`Sender::try_clone`].
    pub fn try_clone(&self) -> Result<Self, QueueError> {
        let local = self.local.try_clone_in(&self.inner.seg.peers)?;
        Ok(Self::with(Arc::clone(&self.inner), local))
    }

    /// A handle of `inner`, counted (or to be counted) as `local` says.
    fn with(inner: Arc<Inner<T>>, local: Local) -> Self {
        Self {
            ring: inner.ring,
            inner,
            local,
        }
    }

    #[inline]
    fn ring(&self) -> &MpmcRing<'static, T> {
        self.local.ensure(&self.inner.seg.peers);
        &self.ring
    }

    /// Receives the oldest value, without blocking.
    ///
    /// Cheap: no system call. It reports `Disconnected` once the queue is
    /// closed and drained: after the last sender was dropped, or once a
    /// blocking call (or [`is_disconnected`](Self::is_disconnected))
    /// noticed that every sender died. A sender killed without dropping is
    /// not looked for here.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], [`TryRecvError::Disconnected`] or
    /// [`TryRecvError::Corrupt`].
    #[inline]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.ring().try_pop().map_err(TryRecvError::from)
    }

    /// Receives the oldest value, blocking while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the queue is empty and every sender
    /// is gone (dropped, or died: noticed within about 50 ms of waiting);
    /// [`RecvError::Corrupt`] if the queue's memory is corrupt.
    #[inline]
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_deadline(|| None).map_err(untimed_recv)
    }

    /// Receives the oldest value, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], [`RecvTimeoutError::Disconnected`] or
    /// [`RecvTimeoutError::Corrupt`].
    #[inline]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(|| Some(Deadline::after(timeout)))
    }

    /// Receives, blocking until the deadline that `deadline` computes (only
    /// once the queue is found empty: the fast path reads no clock).
    #[inline]
    fn recv_deadline(
        &self,
        deadline: impl FnOnce() -> Option<Deadline>,
    ) -> Result<T, RecvTimeoutError> {
        match self.try_recv() {
            Ok(v) => Ok(v),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Corrupt) => Err(RecvTimeoutError::Corrupt),
            Err(TryRecvError::Empty) => self.recv_slow(deadline()),
        }
    }

    #[cold]
    fn recv_slow(&self, deadline: Option<Deadline>) -> Result<T, RecvTimeoutError> {
        self.recv_in_slices(deadline, |ring, d| ring.pop_deadline(d))
    }

    /// Waits for a value with `pop` (a blocking call of the ring, given a
    /// deadline) in slices of [`LIVENESS_SLICE`] until `deadline`, checking
    /// between slices that a sender lives: the waiting loop of every
    /// blocking receive. Once every sender is gone it closes the queue and
    /// takes what they completed: `pop` then waits only for slots that dead
    /// senders left unfinished (the ring steps over them once it finds
    /// their owner dead, within about a millisecond), one slice at most.
    fn recv_in_slices<R>(
        &self,
        deadline: Option<Deadline>,
        mut pop: impl FnMut(MpmcRing<'static, T>, Option<Deadline>) -> Result<R, PopError>,
    ) -> Result<R, RecvTimeoutError> {
        let mut ring = *self.ring();
        loop {
            let slice = Deadline::after(LIVENESS_SLICE).min(deadline);
            match pop(ring, Some(slice)) {
                Ok(r) => return Ok(r),
                Err(PopError::Empty) => {}
                Err(e) => return Err(recv_gone(e)),
            }
            ring = ring.with_spin(Spin::NONE);
            if self.inner.side_gone(Side::Sender) {
                self.inner.ring.close();
                return pop(ring, Some(Deadline::after(LIVENESS_SLICE))).map_err(recv_gone);
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Reads the oldest value in place (zero-copy receive) and returns what
    /// `f` returns, blocking while the queue is empty. The slot is freed
    /// when `f` returns (or panics).
    ///
    /// If this process dies inside `f`, that value is lost; senders that
    /// reach its slot one lap later free it once they find it dead (see the
    /// module docs).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn recv_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, RecvError> {
        self.recv_with_deadline(f, None).map_err(untimed_recv)
    }

    /// As [`recv_with`](Self::recv_with), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_with_timeout<R>(
        &self,
        f: impl FnOnce(&T) -> R,
        timeout: Duration,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_with_deadline(f, Some(Deadline::after(timeout)))
    }

    fn recv_with_deadline<R>(
        &self,
        f: impl FnOnce(&T) -> R,
        deadline: Option<Deadline>,
    ) -> Result<R, RecvTimeoutError> {
        let mut f = Some(f);
        let mut read = |v: &T| f.take().map(|f| f(v));
        self.recv_in_slices(deadline, |ring, d| ring.pop_with_deadline(&mut read, d))
            .map(|r| r.expect("a value is read once"))
    }

    /// Receives the oldest value in place (zero-copy receive), blocking
    /// while the queue is empty: the guard dereferences to the value in its
    /// slot, and frees the slot when dropped.
    ///
    /// Senders that reach the slot one lap later wait for the guard: keep
    /// it short-lived (a leaked guard holds its slot until this process
    /// exits). If this process dies holding it, that value is lost, and
    /// senders free the slot once they find it dead (see the module docs).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = multiproc::queue::channel::<[u64; 32]>(4)?;
    /// tx.send_with(|block| block.fill(2)).unwrap();
    /// let block = rx.recv_ref().unwrap();
    /// assert_eq!(block.iter().sum::<u64>(), 64);
    /// # Ok::<(), multiproc::queue::QueueError>(())
    /// ```
    pub fn recv_ref(&self) -> Result<RecvRef<'_, T>, RecvError> {
        self.recv_ref_deadline(None).map_err(untimed_recv)
    }

    /// As [`recv_ref`](Self::recv_ref), blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_ref_timeout(&self, timeout: Duration) -> Result<RecvRef<'_, T>, RecvTimeoutError> {
        match self.try_recv_ref() {
            Ok(r) => Ok(r),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Corrupt) => Err(RecvTimeoutError::Corrupt),
            Err(TryRecvError::Empty) => self.recv_ref_deadline(Some(Deadline::after(timeout))),
        }
    }

    /// As [`recv_ref`](Self::recv_ref), without blocking.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv).
    pub fn try_recv_ref(&self) -> Result<RecvRef<'_, T>, TryRecvError> {
        self.ring()
            .try_pop_ref()
            .map(RecvRef::new)
            .map_err(TryRecvError::from)
    }

    fn recv_ref_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<RecvRef<'_, T>, RecvTimeoutError> {
        self.recv_in_slices(deadline, |ring, d| ring.pop_ref_deadline(d))
            .map(RecvRef::new)
    }

    /// Receives up to `out.len()` values into the front of `out`, blocking
    /// until at least one is there; returns how many.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn recv_slice(&self, out: &mut [T]) -> Result<usize, RecvError> {
        if out.is_empty() {
            return Ok(0);
        }
        let n = self.ring().pop_slice(out);
        if n > 0 {
            return Ok(n);
        }
        out[0] = self.recv()?;
        Ok(1 + self.inner.ring.pop_slice(&mut out[1..]))
    }

    /// Hands this receiver to another process; see [`Sender::to_token`].
    ///
    /// # Errors
    ///
    /// As [`Sender::to_token`].
    pub fn to_token(&self) -> Result<Vec<u8>, QueueError> {
        self.local.ensure(&self.inner.seg.peers);
        self.inner.token(Side::Receiver)
    }

    /// Claims a token made by [`Receiver::to_token`].
    ///
    /// # Errors
    ///
    /// As [`Sender::from_token`].
    pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
        let (inner, local) = Inner::claim(token, Side::Receiver)?;
        Ok(Self::with(inner, local))
    }

    /// Closes the queue for everyone; see [`Sender::close`].
    pub fn close(&self) {
        self.inner.ring.close();
    }

    /// Whether every sender is gone (dropped or dead: checks liveness, a
    /// few system calls) or the queue is closed. Values may still be
    /// queued.
    pub fn is_disconnected(&self) -> bool {
        self.inner.ring.is_closed() || self.inner.side_gone(Side::Sender)
    }

    /// The number of queued values, approximately (Python's `qsize`).
    pub fn len(&self) -> u64 {
        self.inner.ring.len()
    }
    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.inner.ring.is_empty()
    }
    /// Whether [`len`](Self::len) is the capacity.
    pub fn is_full(&self) -> bool {
        self.inner.ring.is_full()
    }
    /// The number of slots.
    pub fn capacity(&self) -> u64 {
        self.inner.ring.capacity()
    }
}

/// A value received in place from a [`Receiver`]: dereferences to the value
/// in its slot and frees the slot when dropped. Made by
/// [`Receiver::recv_ref`] and its variants.
pub struct RecvRef<'r, T: Pod> {
    slot: PopRef<'static, T>,
    /// The guard reads the receiver's segment: it must not outlive it.
    _rx: PhantomData<&'r Receiver<T>>,
}

impl<T: Pod> RecvRef<'_, T> {
    fn new(slot: PopRef<'static, T>) -> Self {
        Self {
            slot,
            _rx: PhantomData,
        }
    }
}

impl<T: Pod> std::ops::Deref for RecvRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.slot
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RecvRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RecvRef").field(&**self).finish()
    }
}

/// A slot taken in a [`Sender`]'s queue to write a value in place:
/// dereferences (mutably) to the value in its slot;
/// [`commit`](Self::commit) sends it, and a drop without a commit sends
/// nothing (receivers step over the slot). Made by [`Sender::send_ref`]
/// and [`Sender::try_send_ref`].
pub struct SendRef<'s, T: Pod> {
    slot: PushRef<'static, T>,
    /// The guard writes the sender's segment: it must not outlive it.
    _tx: PhantomData<&'s Sender<T>>,
}

impl<T: Pod> SendRef<'_, T> {
    fn new(slot: PushRef<'static, T>) -> Self {
        Self {
            slot,
            _tx: PhantomData,
        }
    }

    /// Sends the value.
    pub fn commit(self) {
        self.slot.commit();
    }
}

impl<T: Pod> std::ops::Deref for SendRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.slot
    }
}

impl<T: Pod> std::ops::DerefMut for SendRef<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.slot
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SendRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SendRef").field(&**self).finish()
    }
}
