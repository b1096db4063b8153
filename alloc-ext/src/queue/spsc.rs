//! The fastest path: a single-producer single-consumer channel over
//! [`multiproc_core::spsc::SpscRing`], with the MPMC queue's method names
//! and error types. The handles are not `Clone`; they move into forked
//! children like the queue's (see [`crate::queue`] for the counting rules).
//!
//! ```
//! let (mut tx, mut rx) = multiproc::spsc::channel::<u64>(64)?;
//! tx.send(1).unwrap();
//! assert_eq!(rx.recv(), Ok(1));
//! drop(tx);
//! assert!(rx.recv().is_err()); // disconnected
//! # Ok::<(), multiproc::queue::QueueError>(())
//! ```
//!
//! # Roles and liveness
//!
//! The core ring's two roles are claimed by the creating process, and
//! released only when the last handle of a side is dropped (so a consumer
//! blocked in the ring wakes at once). Whether the other side still lives
//! is decided by the channel's peer table, as for [`crate::queue::Queue`]:
//! a blocked call notices within about 50 ms that every process holding
//! the other end died, even by `SIGKILL`.
//!
//! # Spawn and forkserver
//!
//! A process started with the spawn or forkserver start method inherits
//! nothing: make the channel [`named`](Spsc::named) (or
//! [`unique_name`](Spsc::unique_name)d), turn an end into bytes with
//! [`Producer::into_token`]/[`Consumer::into_token`], pass them as the
//! entry point's arguments, and claim them there with
//! [`Producer::from_token`]/[`Consumer::from_token`], which check the
//! element type (size, alignment and a tag of its name).
//!
//! | step | role word of the end | peer table |
//! |---|---|---|
//! | `into_token` in process M | held by M, marked "handed on" | M counts the end (the pending token) |
//! | token unclaimed, M alive | held: the other side waits | counted: no `Disconnected` |
//! | M dies before the claim | dead | not counted: `Disconnected`; the token is void |
//! | `from_token` in process C | taken over by C (once: a second claim fails) | C counts it, M's count is withdrawn |
//! | C drops the end, or dies | released, or dead | not counted: `Disconnected` |
//!
//! The role never becomes free in between, so the other side sees no false
//! `Disconnected`, and a token cannot be claimed twice
//! ([`QueueError::AlreadyClaimed`]).
//!
//! The name: the process that made the channel unlinks it when its last
//! handle is dropped. If that last handle is turned into a token instead
//! (both ends handed on), the name is left to the claimers: the claim that
//! finds no other token pending unlinks it (a later claim of a used token
//! then fails to find the segment: [`QueueError::Shm`]). A maker that drops
//! its last handle while a token of the other end is unclaimed takes the
//! name with it: that claim fails.
//!
//! Within one process (a doctest cannot spawn), the round trip looks so; a
//! spawned child would run the `from_token` line on the bytes it got:
//!
//! ```
//! use multiproc::spsc::{Producer, Spsc};
//!
//! let (tx, mut rx) = Spsc::<u64>::new(16).unique_name().channel()?;
//! let token: Vec<u8> = tx.into_token()?; // `tx` is given up
//! // ... in the spawned process:
//! let mut tx = Producer::<u64>::from_token(&token)?;
//! assert!(Producer::<u64>::from_token(&token).is_err()); // claimed once
//! assert!(Producer::<u32>::from_token(&token).is_err()); // wrong type
//! tx.send(7).unwrap();
//! drop(tx);
//! // ... back in the parent:
//! assert_eq!(rx.recv(), Ok(7));
//! assert!(rx.recv().is_err()); // the claimed producer is gone
//! # Ok::<(), multiproc::queue::QueueError>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use multiproc_core::identity::Identity;
use multiproc_core::peers::{Side, DEFAULT_SLOTS};
use multiproc_core::role::Peer;
use multiproc_core::spsc::SpscRing;
use multiproc_core::spsc::{
    Consumer as CoreConsumer, PopError, Producer as CoreProducer, PushError,
};
use multiproc_core::time::Deadline;
use multiproc_core::wait::Spin;

use super::channel::LIVENESS_SLICE;
use super::error::{recv_gone, untimed_recv, untimed_send};
pub use super::error::{
    QueueError, RecvError, RecvTimeoutError, SendError, SendSliceError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use crate::segment::{type_tag, Local, Name, Segment, Token};
use crate::shm::SharedMemory;

/// The token kind of an SPSC channel end.
const KIND_SPSC: u8 = 2;
/// Or'ed into the kind when the maker gave its last handle up and left the
/// segment's name to the claimers: the one that finds no pending token of
/// the maker left unlinks it.
const LAST_HANDLE: u8 = 0x80;

struct Inner {
    seg: Segment,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spsc").field("segment", &self.seg).finish()
    }
}

impl Inner {
    /// The ring of this segment, attached (the element type checked).
    fn attach<T: Pod>(&self) -> Result<SpscRing<'static, T>, QueueError> {
        // SAFETY: the ring and its role handles are kept next to the Arc
        // that owns the segment, in the handles, and never outlive it.
        let region = unsafe { self.seg.ring_region() };
        Ok(SpscRing::<T>::attach_tagged(region, type_tag::<T>())?)
    }

    /// Turns an end given up by this process into a token: counts the
    /// pending transfer here, then hands the role on (`hand_over`, which
    /// consumes the core handle without releasing the role), then drops
    /// the end's own count. The count of the side never drops to zero.
    ///
    /// `last` is whether the maker gave the name up with the end (see
    /// [`LAST_HANDLE`]).
    fn token<T>(
        &self,
        local: &Local,
        side: Side,
        last: bool,
        hand_over: impl FnOnce() -> Option<u32>,
    ) -> Result<Vec<u8>, QueueError> {
        let peers = &self.seg.peers;
        let name = self.seg.name().ok_or(QueueError::Anonymous)?;
        local.ensure(peers);
        let me = Identity::current();
        peers.add(me, side, 1)?;
        let Some(holder) = hand_over() else {
            // The role was taken from under the end (a claim that found the
            // pid it named dead): there is nothing to hand on.
            peers.remove(me, side, 1);
            local.release(peers);
            return Err(QueueError::BadToken {
                reason: "the end's role was taken by another process",
            });
        };
        debug_assert_eq!(holder, me.pid());
        // The end's own count goes; the pending token's stays.
        local.release(peers);
        Ok(make_token::<T>(side, holder, last, name).encode())
    }

    /// Opens the segment a token names and takes the end's role over with
    /// `take_over(ring, holder)`: counts this process first, then withdraws
    /// the maker's pending count.
    fn claim<T: Pod, H>(
        token: &[u8],
        side: Side,
        take_over: impl FnOnce(&SpscRing<'static, T>, u32) -> Option<H>,
    ) -> Result<(Arc<Self>, H), QueueError> {
        let (t, last) = parse_token::<T>(token, side)?;
        let inner = Arc::new(Self {
            seg: Segment::open(&t.name)?,
        });
        let ring = inner.attach::<T>()?;
        let peers = &inner.seg.peers;
        if !maker_alive(&ring, side, t.from_pid) {
            // Its pending count died with it: the other side may already
            // have seen the end gone for good. Its other tokens are void
            // too: nobody else would unlink a name it left behind.
            if last {
                let _ = SharedMemory::unlink_name(&t.name);
            }
            return Err(QueueError::BadToken {
                reason: "the process that made the token has exited",
            });
        }
        let me = Identity::current();
        peers.add(me, side, 1)?;
        let Some(handle) = take_over(&ring, t.from_pid) else {
            peers.remove(me, side, 1);
            return Err(QueueError::AlreadyClaimed);
        };
        // Counted here first, then the pending count goes: never zero.
        peers.remove_pid(t.from_pid, side, 1);
        if last && !ring.in_hand_over() {
            // The maker left the name with its last handle, and no other
            // token of this channel waits to be claimed: nobody needs the
            // name any more. (Two claimers racing here cannot both see the
            // other pending; they may both unlink: the second finds it
            // gone.)
            let _ = SharedMemory::unlink_name(&t.name);
        }
        Ok((inner, handle))
    }
}

/// Whether process `from_pid`, which made a token of `ring`'s `side` end,
/// still runs. While the role word still records the hand-over, it holds
/// the maker's identity (pid plus start time), which a process reusing the
/// pid does not pass. Otherwise (the role was taken over or released since,
/// so the claim fails anyway) the pid alone is asked, which only picks the
/// error the claim reports.
fn maker_alive<T: Pod>(ring: &SpscRing<'_, T>, side: Side, from_pid: u32) -> bool {
    let state = match side {
        Side::Sender => ring.producer_peer(),
        Side::Receiver => ring.consumer_peer(),
    };
    match state {
        Peer::Alive(pid) if pid == from_pid => true,
        Peer::Dead(pid) if pid == from_pid => false,
        _ => multiproc_core::identity::of_pid(from_pid).is_some(),
    }
}

/// The token of a `T` channel's `side` end that process `from_pid` hands
/// on; `last`: the claimer is left the segment's name (see [`LAST_HANDLE`]).
pub(crate) fn make_token<T>(side: Side, from_pid: u32, last: bool, name: &str) -> Token {
    Token {
        kind: if last {
            KIND_SPSC | LAST_HANDLE
        } else {
            KIND_SPSC
        },
        side,
        from_pid,
        size: std::mem::size_of::<T>() as u64,
        align: std::mem::align_of::<T>() as u64,
        tag: type_tag::<T>(),
        ticket: 0,
        name: name.to_owned(),
    }
}

/// Decodes and checks the token of a `T` channel's `side` end, before
/// anything is opened: the token (its kind without the [`LAST_HANDLE`]
/// bit), and whether that bit was set.
pub(crate) fn parse_token<T>(token: &[u8], side: Side) -> Result<(Token, bool), QueueError> {
    let mut t = Token::decode(token)?;
    let last = t.kind & LAST_HANDLE != 0;
    t.kind &= !LAST_HANDLE;
    t.check::<T>(KIND_SPSC, side)?;
    Ok((t, last))
}

/// `into_token` of either end, whose parts are moved out: `core` (the role
/// handle) and `inner`. On success the role is handed on; on failure the
/// end is dropped as `Drop` would.
fn give_up<T, C>(
    local: &Local,
    mut inner: Arc<Inner>,
    side: Side,
    core: C,
    hand_over: fn(C) -> Option<u32>,
) -> Result<Vec<u8>, QueueError> {
    // The last handle in this process: the name is left to the claimer
    // (else it would go with the segment, before anyone claims).
    let last = Arc::get_mut(&mut inner).is_some_and(|i| i.seg.leave_name());
    let mut core = Some(core);
    let r = inner.token::<T>(local, side, last, || core.take().and_then(hand_over));
    if let Some(core) = core {
        // Not handed on (an error before that): release the role if this
        // was the side's last handle.
        if local.release(&inner.seg.peers) {
            drop(core);
        } else {
            std::mem::forget(core);
        }
    }
    if r.is_err() && last {
        // No token to unlink the name: do it as the drop would have.
        if let Some(name) = inner.seg.name() {
            let _ = SharedMemory::unlink_name(name);
        }
    }
    // The role handle (if any) is gone before the segment's mapping.
    drop(inner);
    r
}

/// The builder of an SPSC channel: capacity, and a name for handing its
/// ends to spawned processes.
///
/// # Examples
///
/// ```
/// use multiproc::spsc::Spsc;
///
/// let (mut tx, mut rx) = Spsc::<u32>::new(8).unique_name().channel()?;
/// tx.send(3).unwrap();
/// assert_eq!(rx.recv(), Ok(3));
/// # Ok::<(), multiproc::queue::QueueError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Spsc<T> {
    capacity: u64,
    name: NameOwned,
    _t: PhantomData<fn() -> T>,
}

#[derive(Debug, Clone)]
enum NameOwned {
    Anonymous,
    Unique,
    Given(String),
}

impl<T: Pod> Spsc<T> {
    /// A channel of `capacity` slots, in an anonymous segment (reachable by
    /// forked children only) unless [`named`](Self::named).
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            name: NameOwned::Anonymous,
            _t: PhantomData,
        }
    }

    /// Puts the channel in a named segment (`shm_open`), so that
    /// [`Producer::into_token`]/[`Consumer::into_token`] can hand its ends
    /// to spawned processes. The creating process unlinks the name when its
    /// last handle is dropped.
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

    /// Makes the channel and returns its two ends.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidCapacity`] for a zero capacity; segment errors
    /// (for a name: [`QueueError::Shm`] if it exists already).
    pub fn channel(self) -> Result<(Producer<T>, Consumer<T>), QueueError> {
        let capacity = self.capacity;
        let size =
            SpscRing::<T>::memory_size(capacity).ok_or(QueueError::InvalidCapacity { capacity })?;
        let seg = Segment::create(
            size,
            match &self.name {
                NameOwned::Anonymous => Name::Anonymous,
                NameOwned::Unique => Name::Unique,
                NameOwned::Given(n) => Name::Given(n),
            },
            DEFAULT_SLOTS,
        )?;
        let me = Identity::current();
        seg.peers.add(me, Side::Sender, 1)?;
        seg.peers.add(me, Side::Receiver, 1)?;
        let inner = Arc::new(Inner { seg });
        // SAFETY: the ring and its role handles are kept next to the Arc
        // that owns the segment, in the handles below, and never outlive it;
        // the segment is new and its ring area untouched.
        let region = unsafe { inner.seg.fresh_ring_region() };
        let ring = SpscRing::<T>::create_tagged(region, capacity, type_tag::<T>()).map_err(
            |e| match e {
                multiproc_core::region::InitError::InvalidCapacity { capacity } => {
                    QueueError::InvalidCapacity { capacity }
                }
                e => QueueError::Init(e),
            },
        )?;
        let (p, c) = ring.split().map_err(|_| QueueError::BadToken {
            reason: "fresh ring with taken roles",
        })?;
        Ok((
            Producer {
                core: ManuallyDrop::new(p),
                spin: Spin::DEFAULT,
                local: Local::new(Side::Sender),
                inner: Arc::clone(&inner),
            },
            Consumer {
                core: ManuallyDrop::new(c),
                spin: Spin::DEFAULT,
                local: Local::new(Side::Receiver),
                inner,
            },
        ))
    }
}

/// A bounded single-producer single-consumer channel of `capacity` slots in
/// an anonymous shared segment: `Spsc::new(capacity).channel()`.
///
/// # Errors
///
/// [`QueueError::InvalidCapacity`] for a zero capacity; segment errors.
pub fn channel<T: Pod>(capacity: u64) -> Result<(Producer<T>, Consumer<T>), QueueError> {
    Spsc::new(capacity).channel()
}

/// The sending end of [`channel`]: `Send`, not `Clone`.
pub struct Producer<T: Pod> {
    /// Borrows `inner`'s segment; never dropped after it (see `Drop`).
    core: ManuallyDrop<CoreProducer<'static, T>>,
    /// The spin setting of [`set_spin`](Self::set_spin), which a blocking
    /// send restores in `core` when it returns (its later slices sleep at
    /// once).
    spin: Spin,
    local: Local,
    inner: Arc<Inner>,
}

impl<T: Pod> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("queue", &self.inner)
            .finish()
    }
}

impl<T: Pod> Drop for Producer<T> {
    fn drop(&mut self) {
        if self.local.release(&self.inner.seg.peers) {
            // The last producer: release the role (wakes the consumer,
            // which drains and then sees Disconnected).
            // SAFETY: dropped once, here; the segment is still mapped
            // (`inner` is dropped after this body).
            unsafe { ManuallyDrop::drop(&mut self.core) };
        }
    }
}

impl<T: Pod> Producer<T> {
    #[inline]
    fn core(&mut self) -> &mut CoreProducer<'static, T> {
        self.local.ensure(&self.inner.seg.peers);
        &mut self.core
    }

    /// How long a blocking send spins before it sleeps ([`Spin::DEFAULT`]
    /// unless set). [`Spin::NONE`] sleeps at once: no CPU is burnt while the
    /// ring stays full, at the price of a wake-up (tens of µs) per sleep.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
        self.core.set_spin(spin);
    }

    /// Sends `v` if there is room, without blocking (no system call).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`]; [`TrySendError::Disconnected`] when the ring
    /// is full and the consumer was dropped (while there is room, a value
    /// sent after the consumer's drop is accepted and never read);
    /// [`TrySendError::Corrupt`] if the ring's indices are impossible.
    #[inline]
    pub fn try_send(&mut self, v: T) -> Result<(), TrySendError<T>> {
        self.core().try_push(v).map_err(TrySendError::from)
    }

    /// Sends `v`, blocking while the ring is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] once the consumer is gone (dropped, or
    /// died: noticed within about 50 ms of waiting); [`SendError::Corrupt`]
    /// if the ring's indices are impossible.
    #[inline]
    pub fn send(&mut self, v: T) -> Result<(), SendError<T>> {
        self.send_deadline(v, || None).map_err(untimed_send)
    }

    /// Sends `v`, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`], [`SendTimeoutError::Disconnected`] or
    /// [`SendTimeoutError::Corrupt`], with `v`.
    #[inline]
    pub fn send_timeout(&mut self, v: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(v, || Some(Deadline::after(timeout)))
    }

    /// Sends `v`, blocking until the deadline that `deadline` computes
    /// (only once the ring is found full: the fast path reads no clock).
    /// Inlined, with the waiting loop out of line, as the core ring's
    /// `push_timeout`: the fast path is the core's plus the handle check.
    #[inline]
    fn send_deadline(
        &mut self,
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

    /// The waiting loop of a blocking send, in slices of
    /// [`LIVENESS_SLICE`], checking between slices that a consumer lives.
    /// Slices after the first sleep at once; the handle's own spin setting
    /// is back in place when it returns, whatever the outcome.
    #[cold]
    fn send_slow(
        &mut self,
        mut v: T,
        deadline: Option<Deadline>,
    ) -> Result<(), SendTimeoutError<T>> {
        let out = loop {
            let slice = Deadline::after(LIVENESS_SLICE).min(deadline);
            // The core's own "consumer gone" verdict looks at the role,
            // held by the creating process: only the peer table decides.
            match self.core.push_deadline(v, Some(slice)) {
                Ok(()) => break Ok(()),
                Err(PushError::Full(back) | PushError::Disconnected(back)) => v = back,
                Err(PushError::Corrupt(back)) => break Err(SendTimeoutError::Corrupt(back)),
            }
            self.core.set_spin(Spin::NONE);
            if !self.inner.seg.side_alive(Side::Receiver) {
                break Err(SendTimeoutError::Disconnected(v));
            }
            if deadline.is_some_and(Deadline::has_passed) {
                break Err(SendTimeoutError::Timeout(v));
            }
        };
        self.core.set_spin(self.spin);
        out
    }
}

impl<T: Pod> Producer<T> {
    /// Writes the next value in place (zero-copy send), blocking while the
    /// ring is full (by polling: spinning, then naps of up to 1 ms).
    ///
    /// The slot holds stale data: write every field you need. If this
    /// process dies inside `f`, nothing is published.
    ///
    /// # Errors
    ///
    /// [`SendError`] (holding nothing) once the consumer is gone; `f` is not
    /// called then.
    pub fn send_with(&mut self, f: impl FnOnce(&mut T)) -> Result<(), SendError<()>> {
        let mut poll = SidePoller::new(None);
        loop {
            if let Some(mut slot) = self.core().write_slot() {
                f(&mut slot);
                slot.commit();
                return Ok(());
            }
            if !poll.pause(&self.inner, Side::Receiver) {
                return Err(SendError::Disconnected(()));
            }
        }
    }

    /// Sends every value of `vs`, in order, blocking while the ring is full;
    /// each run is published with one store.
    ///
    /// # Errors
    ///
    /// [`SendSliceError`] saying how many values were sent, once the
    /// consumer is gone or the ring is found corrupt.
    pub fn send_slice(&mut self, vs: &[T]) -> Result<(), SendSliceError> {
        let mut sent = 0;
        while sent < vs.len() {
            let n = self.core().push_slice(&vs[sent..]);
            if n == 0 {
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

    /// Hands this producer to another process: a token to pass (as bytes)
    /// to a spawned process, which claims it with
    /// [`Producer::from_token`]. The channel must be named
    /// ([`Spsc::named`]/[`Spsc::unique_name`]).
    ///
    /// The producer is given up, but its role stays held: until the token
    /// is claimed, it counts as a live producer of this process, so the
    /// consumer does not see `Disconnected` while this process lives (even
    /// if the token is never used). See the [module docs](self).
    ///
    /// # Errors
    ///
    /// [`QueueError::Anonymous`] for an anonymous channel;
    /// [`QueueError::Peers`] if the transfer cannot be counted. The
    /// producer is dropped then (the consumer sees it gone).
    pub fn into_token(self) -> Result<Vec<u8>, QueueError> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped; `core` is moved out here once and
        // `inner` once, and neither is used through `this` after (`local`,
        // which has no drop, is only borrowed).
        let (core, inner) = unsafe {
            (
                ManuallyDrop::take(&mut this.core),
                std::ptr::read(&this.inner),
            )
        };
        give_up::<T, _>(
            &this.local,
            inner,
            Side::Sender,
            core,
            CoreProducer::hand_over,
        )
    }

    /// Claims a producer from a token made by [`Producer::into_token`]
    /// (typically in another process). It takes over the producer role
    /// from the process that made the token.
    ///
    /// # Errors
    ///
    /// [`QueueError::BadToken`] if the token is truncated or garbage, names
    /// another element type (size, alignment or type name) or the consumer,
    /// or its maker has exited; [`QueueError::AlreadyClaimed`] if it was
    /// claimed before; [`QueueError::Shm`] if the name is gone (the maker
    /// dropped its last handle without a token, or every token, this one
    /// included, was claimed: then the last claim unlinked it); attach and
    /// peer-table errors.
    pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
        let (inner, core) = Inner::claim::<T, _>(token, Side::Sender, |ring, holder| {
            ring.take_over_producer(holder)
        })?;
        Ok(Self {
            core: ManuallyDrop::new(core),
            spin: Spin::DEFAULT,
            local: Local::new(Side::Sender),
            inner,
        })
    }

    /// Whether the consumer is gone (dropped or dead: a few system calls).
    pub fn is_disconnected(&self) -> bool {
        !self.inner.seg.side_alive(Side::Receiver)
    }

    /// The number of queued values, approximately.
    pub fn len(&self) -> u64 {
        self.core.ring().len()
    }
    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.core.ring().is_empty()
    }
    /// Whether the ring is full (if not, it stays so until this handle
    /// sends).
    pub fn is_full(&mut self) -> bool {
        self.core.is_full()
    }
    /// The number of slots.
    pub fn capacity(&self) -> u64 {
        self.core.ring().capacity()
    }
}

/// The receiving end of [`channel`]: `Send`, not `Clone`.
pub struct Consumer<T: Pod> {
    /// Borrows `inner`'s segment; never dropped after it (see `Drop`).
    core: ManuallyDrop<CoreConsumer<'static, T>>,
    /// As [`Producer`]'s.
    spin: Spin,
    local: Local,
    inner: Arc<Inner>,
}

impl<T: Pod> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.inner)
            .finish()
    }
}

impl<T: Pod> Drop for Consumer<T> {
    fn drop(&mut self) {
        if self.local.release(&self.inner.seg.peers) {
            // SAFETY: dropped once, here; the segment is still mapped.
            unsafe { ManuallyDrop::drop(&mut self.core) };
        }
    }
}

impl<T: Pod> Consumer<T> {
    #[inline]
    fn core(&mut self) -> &mut CoreConsumer<'static, T> {
        self.local.ensure(&self.inner.seg.peers);
        &mut self.core
    }

    /// How long a blocking receive spins before it sleeps ([`Spin::DEFAULT`]
    /// unless set); see [`Producer::set_spin`].
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
        self.core.set_spin(spin);
    }

    /// Receives the oldest value, without blocking (no system call).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`]; [`TryRecvError::Disconnected`] once the ring
    /// is drained and the producer was dropped (a producer that died is
    /// noticed by the blocking calls and [`is_disconnected`](Self::is_disconnected));
    /// [`TryRecvError::Corrupt`] if the ring's indices are impossible.
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.core().try_pop().map_err(TryRecvError::from)
    }

    /// Receives the oldest value, blocking while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the ring is drained and the
    /// producer is gone (dropped, or died: noticed within about 50 ms of
    /// waiting); [`RecvError::Corrupt`] if the ring's indices are
    /// impossible.
    #[inline]
    pub fn recv(&mut self) -> Result<T, RecvError> {
        self.recv_deadline(|| None).map_err(untimed_recv)
    }

    /// Receives the oldest value, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], [`RecvTimeoutError::Disconnected`] or
    /// [`RecvTimeoutError::Corrupt`].
    #[inline]
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(|| Some(Deadline::after(timeout)))
    }

    /// Receives, blocking until the deadline that `deadline` computes (only
    /// once the ring is found empty: the fast path reads no clock). Inlined,
    /// with the waiting loop out of line, as [`Producer::send_timeout`].
    #[inline]
    fn recv_deadline(
        &mut self,
        deadline: impl FnOnce() -> Option<Deadline>,
    ) -> Result<T, RecvTimeoutError> {
        match self.try_recv() {
            Ok(v) => Ok(v),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Corrupt) => Err(RecvTimeoutError::Corrupt),
            Err(TryRecvError::Empty) => self.recv_slow(deadline()),
        }
    }

    /// The waiting loop of a blocking receive, as [`Producer`]'s
    /// `send_slow`: slices, a liveness check between them, the handle's
    /// spin setting restored on return.
    #[cold]
    fn recv_slow(&mut self, deadline: Option<Deadline>) -> Result<T, RecvTimeoutError> {
        let out = loop {
            let slice = Deadline::after(LIVENESS_SLICE).min(deadline);
            // As in `Producer::send`: the core's verdict on the role is a
            // hint; the peer table decides.
            match self.core.pop_deadline(Some(slice)) {
                Ok(v) => break Ok(v),
                Err(PopError::Empty | PopError::Disconnected) => {}
                Err(PopError::Corrupt) => break Err(RecvTimeoutError::Corrupt),
            }
            self.core.set_spin(Spin::NONE);
            if !self.inner.seg.side_alive(Side::Sender) {
                break self.core.try_pop().map_err(recv_gone);
            }
            if deadline.is_some_and(Deadline::has_passed) {
                break Err(RecvTimeoutError::Timeout);
            }
        };
        self.core.set_spin(self.spin);
        out
    }

    /// Reads the oldest value in place (zero-copy receive), blocking while
    /// the ring is empty (by polling). The slot is freed when `f` returns.
    /// If this process dies inside `f`, the slot is not freed: a consumer
    /// that takes over would read the value again (at-least-once).
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the ring is drained and the producer is gone.
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&T) -> R) -> Result<R, RecvError> {
        let mut poll = SidePoller::new(None);
        loop {
            if let Some(slot) = self.core().read_slot() {
                return Ok(f(&slot));
            }
            if !poll.pause(&self.inner, Side::Sender) {
                // Gone: one last look at what it published.
                return match self.core().read_slot() {
                    Some(slot) => Ok(f(&slot)),
                    None => Err(RecvError::Disconnected),
                };
            }
        }
    }

    /// Receives up to `out.len()` values, blocking until at least one is
    /// there; returns how many.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the ring is drained and the producer is gone.
    pub fn recv_slice(&mut self, out: &mut [T]) -> Result<usize, RecvError> {
        if out.is_empty() {
            return Ok(0);
        }
        let n = self.core().pop_slice(out);
        if n > 0 {
            return Ok(n);
        }
        out[0] = self.recv()?;
        Ok(1 + self.core.pop_slice(&mut out[1..]))
    }

    /// Hands this consumer to another process; see
    /// [`Producer::into_token`]. The values still queued stay in the ring
    /// for the claiming process.
    ///
    /// # Errors
    ///
    /// As [`Producer::into_token`].
    pub fn into_token(self) -> Result<Vec<u8>, QueueError> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: as in `Producer::into_token`.
        let (core, inner) = unsafe {
            (
                ManuallyDrop::take(&mut this.core),
                std::ptr::read(&this.inner),
            )
        };
        give_up::<T, _>(
            &this.local,
            inner,
            Side::Receiver,
            core,
            CoreConsumer::hand_over,
        )
    }

    /// Claims a consumer from a token made by [`Consumer::into_token`].
    ///
    /// # Errors
    ///
    /// As [`Producer::from_token`].
    pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
        let (inner, core) = Inner::claim::<T, _>(token, Side::Receiver, |ring, holder| {
            ring.take_over_consumer(holder)
        })?;
        Ok(Self {
            core: ManuallyDrop::new(core),
            spin: Spin::DEFAULT,
            local: Local::new(Side::Receiver),
            inner,
        })
    }

    /// Whether the producer is gone (dropped or dead: a few system calls).
    /// Values may still be queued.
    pub fn is_disconnected(&self) -> bool {
        !self.inner.seg.side_alive(Side::Sender)
    }

    /// The number of values ready to receive.
    pub fn len(&mut self) -> u64 {
        self.core.len()
    }
    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&mut self) -> bool {
        self.core.is_empty()
    }
    /// Whether the ring is full.
    pub fn is_full(&self) -> bool {
        self.core.ring().is_full()
    }
    /// The number of slots.
    pub fn capacity(&self) -> u64 {
        self.core.ring().capacity()
    }
}

/// Polling wait for the in-place calls: spin, naps up to 1 ms, liveness
/// check each slice. `pause` returns `false` once the other side is gone.
struct SidePoller {
    backoff: multiproc_core::wait::Backoff,
    nap: Duration,
    check_at: Deadline,
}

impl SidePoller {
    fn new(_deadline: Option<Deadline>) -> Self {
        Self {
            backoff: Spin::DEFAULT.start(),
            nap: Duration::from_micros(20),
            check_at: Deadline::after(LIVENESS_SLICE),
        }
    }

    fn pause(&mut self, inner: &Inner, other: Side) -> bool {
        if self.backoff.spin() {
            return true;
        }
        if self.check_at.has_passed() {
            if !inner.seg.side_alive(other) {
                return false;
            }
            self.check_at = Deadline::after(LIVENESS_SLICE);
        }
        std::thread::sleep(self.nap);
        self.nap = (self.nap * 2).min(Duration::from_millis(1));
        true
    }
}

impl<T: Pod> crate::process::Inherit for Producer<T> {
    fn inherit(&self) {
        self.local.ensure(&self.inner.seg.peers);
    }
}

impl<T: Pod> crate::process::Inherit for Consumer<T> {
    fn inherit(&self) {
        self.local.ensure(&self.inner.seg.peers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<T: Pod>(cap: u64) -> (Producer<T>, Consumer<T>) {
        Spsc::<T>::new(cap).unique_name().channel().unwrap()
    }

    #[test]
    fn producer_token_round_trip_keeps_the_stream() {
        let (mut tx, mut rx) = named::<u64>(4);
        tx.send(1).unwrap();
        let tok = tx.into_token().unwrap();
        // Pending: not disconnected, the value sent before is there.
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(!rx.is_disconnected());
        let mut tx = Producer::<u64>::from_token(&tok).unwrap();
        for i in 2..=9 {
            tx.send(i).unwrap();
            assert_eq!(rx.recv(), Ok(i));
        }
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        assert!(rx.is_disconnected());
    }

    #[test]
    fn consumer_token_round_trip_keeps_queued_values() {
        let (mut tx, rx) = named::<u32>(2);
        tx.send(5).unwrap();
        tx.send(6).unwrap();
        let tok = rx.into_token().unwrap();
        assert!(!tx.is_disconnected());
        assert!(matches!(
            tx.send_timeout(7, Duration::from_millis(30)),
            Err(SendTimeoutError::Timeout(7))
        ));
        let mut rx = Consumer::<u32>::from_token(&tok).unwrap();
        assert_eq!(rx.recv(), Ok(5));
        assert_eq!(rx.recv(), Ok(6));
        tx.send(7).unwrap();
        assert_eq!(rx.recv(), Ok(7));
        drop(rx);
        tx.send(8).unwrap(); // room: accepted, never read
        tx.send(9).unwrap();
        assert!(matches!(tx.send(10), Err(SendError::Disconnected(10))));
    }

    #[test]
    fn bad_tokens_are_typed_errors() {
        let bad = |r: Result<Producer<u64>, QueueError>| match r {
            Err(QueueError::BadToken { .. }) => {}
            other => panic!("{other:?}"),
        };
        let (tx, _rx) = named::<u64>(4);
        let tok = tx.into_token().unwrap();
        for n in 0..tok.len() {
            bad(Producer::<u64>::from_token(&tok[..n]));
        }
        let mut longer = tok.clone();
        longer.push(0);
        bad(Producer::<u64>::from_token(&longer));
        bad(Producer::<u64>::from_token(
            b"garbage that is not a token at all, no",
        ));
        bad(Producer::<u64>::from_token(&[0xff; 64]));
        // Wrong element type: size, then same size and alignment.
        assert!(matches!(
            Producer::<u32>::from_token(&tok),
            Err(QueueError::BadToken { .. })
        ));
        assert!(matches!(
            Producer::<i64>::from_token(&tok),
            Err(QueueError::BadToken { .. })
        ));
        // The other side's handle, or a queue handle, from this token.
        assert!(matches!(
            Consumer::<u64>::from_token(&tok),
            Err(QueueError::BadToken { .. })
        ));
        assert!(matches!(
            crate::queue::Sender::<u64>::from_token(&tok),
            Err(QueueError::BadToken { .. })
        ));
        // A queue's token is no SPSC token.
        let (qtx, _qrx) = crate::Queue::<u64>::new(4).unique_name().channel().unwrap();
        bad(Producer::<u64>::from_token(&qtx.to_token().unwrap()));
        // Every failed claim left the token intact.
        let tx = Producer::<u64>::from_token(&tok).unwrap();
        drop(tx);
    }

    #[test]
    fn tokens_parse_back_with_their_last_handle_bit() {
        for last in [false, true] {
            for side in [Side::Sender, Side::Receiver] {
                let b = make_token::<u64>(side, 9, last, "/psm_x").encode();
                let (t, l) = parse_token::<u64>(&b, side).unwrap();
                assert_eq!(l, last);
                assert_eq!((t.kind, t.side, t.from_pid), (KIND_SPSC, side, 9));
                assert_eq!(t.name, "/psm_x");
                assert!(parse_token::<u32>(&b, side).is_err());
            }
        }
    }

    #[test]
    fn a_token_is_claimed_once() {
        let (tx, rx) = named::<u64>(4);
        let ptok = tx.into_token().unwrap();
        let ctok = rx.into_token().unwrap();
        let mut tx = Producer::<u64>::from_token(&ptok).unwrap();
        assert!(matches!(
            Producer::<u64>::from_token(&ptok),
            Err(QueueError::AlreadyClaimed)
        ));
        let mut rx = Consumer::<u64>::from_token(&ctok).unwrap();
        // The last token claimed: the name is gone with it, so a second
        // claim does not even find the segment.
        assert!(matches!(
            Consumer::<u64>::from_token(&ctok),
            Err(QueueError::Shm(crate::shm::ShmError::NotFound { .. }))
        ));
        tx.send(3).unwrap();
        assert_eq!(rx.recv(), Ok(3));
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        // The maker keeps the consumer: a claimed, then dropped, producer
        // cannot be claimed again either.
        let (tx, _rx) = named::<u64>(4);
        let ptok = tx.into_token().unwrap();
        drop(Producer::<u64>::from_token(&ptok).unwrap());
        assert!(matches!(
            Producer::<u64>::from_token(&ptok),
            Err(QueueError::AlreadyClaimed)
        ));
        assert_eq!(
            QueueError::AlreadyClaimed.to_string(),
            "queue token already claimed"
        );
    }

    #[test]
    fn name_lives_until_the_last_token_is_claimed() {
        let name = format!("/spsctok-{}", std::process::id());
        let exists = || SharedMemory::open(&name).is_ok();
        let (tx, rx) = Spsc::<u64>::new(4).named(&name).channel().unwrap();
        let ptok = tx.into_token().unwrap();
        let ctok = rx.into_token().unwrap(); // the maker's last handle
        assert!(exists());
        let tx = Producer::<u64>::from_token(&ptok).unwrap();
        assert!(exists(), "the consumer token still needs the name");
        let rx = Consumer::<u64>::from_token(&ctok).unwrap();
        assert!(!exists(), "the last claim unlinks the name");
        drop((tx, rx));
        // A maker that keeps a handle keeps (and later unlinks) the name.
        let (tx, rx) = Spsc::<u64>::new(4).named(&name).channel().unwrap();
        let ptok = tx.into_token().unwrap();
        let tx = Producer::<u64>::from_token(&ptok).unwrap();
        assert!(exists());
        drop(rx);
        assert!(!exists());
        drop(tx);
    }

    #[test]
    fn anonymous_channel_has_no_token() {
        let (tx, mut rx) = channel::<u64>(4).unwrap();
        assert!(matches!(tx.into_token(), Err(QueueError::Anonymous)));
        // The producer was dropped by the failed hand-over.
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    }
}
