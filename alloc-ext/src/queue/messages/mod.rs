//! Multi-producer multi-consumer queues of variable-size messages: byte
//! messages ([`message_channel`], [`MessageSender`]/[`MessageReceiver`])
//! and, with the `serde` feature, values of any serde type
//! ([`object_channel`], [`ObjectSender`]/[`ObjectReceiver`]), encoded with
//! postcard. This is what Python's `Queue` does for any picklable object.
//!
//! Each message is copied into one slot of a ring in a shared segment
//! ([`multiproc_core::msgqueue`]): slots are `max_message` bytes, fixed
//! when the queue is made. Objects are encoded straight into their slot
//! and decoded straight from it: no intermediate buffer.
//!
//! The handles have the guarantees of [`Queue`](super::Queue)'s (see the
//! [queue module docs](super)): clone them freely; they move into forked
//! children (`Process`) and are counted there; named queues hand them to
//! spawned processes by token; when every sender is gone (dropped, or
//! killed, even by `SIGKILL`), receivers get what was sent and then
//! `Disconnected`, and the other way round. A sender killed in the middle
//! of a send leaves a slot that receivers step over once they find it
//! dead (never a half-written message); a receiver killed in the middle of
//! a receive loses that one message, and senders free its slot.
//!
//! # Example: objects across a fork
//!
//! ```
//! # #[cfg(feature = "serde")] {
//! use multiproc::queue;
//!
//! // 64 messages of at most 1 KiB each (encoded).
//! let (tx, rx) = queue::object_channel::<(String, Vec<f64>)>(64, 1024)?;
//! let child = multiproc::Process::new(move || {
//!     for i in 0..100 {
//!         tx.send(&(format!("row {i}"), vec![i as f64; i % 8])).unwrap();
//!     }
//!     // `tx` is dropped here: the parent's `recv` then reports the end.
//! })
//! .start()?;
//! let mut rows = 0;
//! while let Ok((name, values)) = rx.recv() {
//!     assert_eq!(name, format!("row {rows}"));
//!     assert_eq!(values.len(), rows % 8);
//!     rows += 1;
//! }
//! assert_eq!(rows, 100);
//! child.join()?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Memory
//!
//! A queue of capacity `n` takes one segment of about `n × (32 +
//! max_message)` bytes plus 2 KiB of headers and tables. As for `Queue`,
//! creating it writes the headers only: a slot's pages are not touched
//! until a message reaches it.
//!
//! # Decoding untrusted bytes
//!
//! An [`ObjectReceiver`] decodes whatever a sender wrote (any process that
//! can map the segment can write it). A message that is not a valid
//! encoding of `T` is a [`MessageRecvError::Decode`], never a panic.
//! Strings and byte arrays are allocated at their encoded length, which
//! postcard checks against the bytes left in the message; a sequence is
//! preallocated only when its claimed length fits in the bytes left
//! (at most one element per byte), and a map by at most serde's cap of
//! 1 MiB. Types whose elements encode to no bytes at all (unit structs,
//! `#[serde(skip)]`-only structs) can claim any count and are decoded that
//! many times: don't put those in a `Vec` that untrusted processes write.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use multiproc_core::identity::Identity;
use multiproc_core::msgqueue::{self, MsgQueue, MsgReader, MsgWriter, MAX_MESSAGE};
use multiproc_core::peers::{current_pid, Side, DEFAULT_SLOTS};
use multiproc_core::region::InitError;
use multiproc_core::time::Deadline;
use multiproc_core::wait::Spin;

use super::channel::LIVENESS_SLICE;
use super::error::QueueError;
use crate::segment::{type_tag, Local, Name, Segment, Token, KIND_MPMC, TICKETS};

mod error;
#[cfg(feature = "serde")]
mod objects;

pub use error::{MessageRecvError, MessageSendError};
#[cfg(feature = "serde")]
pub use objects::{object_channel, ObjectReceiver, ObjectSender};

/// The tag of a queue of raw byte messages (objects' queues are tagged
/// with their type's name).
struct RawBytes;

/// A multi-producer multi-consumer queue of byte messages of at most
/// `max_message` bytes, in shared memory: the builder of its
/// [`MessageSender`]/[`MessageReceiver`] pair (and, with the `serde`
/// feature, of [`ObjectSender`]/[`ObjectReceiver`] pairs).
///
/// # Examples
///
/// ```
/// use multiproc::queue::MessageQueue;
///
/// let (tx, rx) = MessageQueue::new(16, 256).channel()?;
/// tx.send(b"hello").unwrap();
/// assert_eq!(rx.recv().unwrap(), b"hello");
/// # Ok::<(), multiproc::queue::QueueError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MessageQueue {
    capacity: u64,
    max_message: u64,
    name: Option<String>,
    unique: bool,
    spin: Spin,
    max_peers: u64,
}

impl MessageQueue {
    /// A queue of `capacity` messages of at most `max_message` bytes, in an
    /// anonymous segment (reachable by forked children only) unless
    /// [`named`](Self::named).
    pub fn new(capacity: u64, max_message: u64) -> Self {
        Self {
            capacity,
            max_message,
            name: None,
            unique: false,
            spin: Spin::DEFAULT,
            max_peers: DEFAULT_SLOTS,
        }
    }

    /// How many processes may hold handles of the queue at once; see
    /// [`Queue::max_peers`](super::Queue::max_peers).
    #[must_use]
    pub fn max_peers(mut self, n: u64) -> Self {
        self.max_peers = n;
        self
    }

    /// Puts the queue in a named segment (`shm_open`), so that the handles'
    /// `to_token` can hand it to spawned processes. The creating process
    /// unlinks the name when its last handle is dropped.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// As [`named`](Self::named), with a generated unique name.
    #[must_use]
    pub fn unique_name(mut self) -> Self {
        self.unique = true;
        self.name = None;
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
    /// [`QueueError::InvalidCapacity`] for a zero capacity (or one above
    /// 2^32); [`QueueError::InvalidMaxMessage`] for a `max_message` above
    /// [`MAX_MESSAGE`]; [`QueueError::InvalidMaxPeers`]; segment errors.
    pub fn channel(self) -> Result<(MessageSender, MessageReceiver), QueueError> {
        self.channel_tagged(type_tag::<RawBytes>())
    }

    pub(crate) fn channel_tagged(
        self,
        tag: u64,
    ) -> Result<(MessageSender, MessageReceiver), QueueError> {
        let name = match (&self.name, self.unique) {
            (Some(n), _) => Name::Given(n),
            (None, true) => Name::Unique,
            (None, false) => Name::Anonymous,
        };
        let inner = Arc::new(Inner::create(
            self.capacity,
            self.max_message,
            name,
            self.spin,
            self.max_peers,
            tag,
        )?);
        let me = Identity::current();
        inner.seg.peers.add(me, Side::Sender, 1)?;
        inner.seg.peers.add(me, Side::Receiver, 1)?;
        Ok((
            MessageSender {
                inner: Arc::clone(&inner),
                local: Local::new(Side::Sender),
            },
            MessageReceiver {
                inner,
                local: Local::new(Side::Receiver),
            },
        ))
    }
}

/// A bounded MPMC queue of `capacity` byte messages of at most
/// `max_message` bytes in an anonymous shared segment:
/// `MessageQueue::new(capacity, max_message).channel()`.
///
/// # Errors
///
/// As [`MessageQueue::channel`].
///
/// # Examples
///
/// ```
/// let (tx, rx) = multiproc::queue::message_channel(8, 100)?;
/// tx.send(&[1, 2, 3]).unwrap();
/// let mut buf = [0u8; 100];
/// let n = rx.recv_into(&mut buf).unwrap();
/// assert_eq!(&buf[..n], &[1, 2, 3]);
/// # Ok::<(), multiproc::queue::QueueError>(())
/// ```
pub fn message_channel(
    capacity: u64,
    max_message: u64,
) -> Result<(MessageSender, MessageReceiver), QueueError> {
    MessageQueue::new(capacity, max_message).channel()
}

/// What every handle of one queue shares in one process.
struct Inner {
    /// Built on `seg`'s memory; declared first, dropped first (it is `Copy`
    /// and has no drop, but never outlives `seg`).
    queue: MsgQueue<'static>,
    seg: Segment,
    /// The tag the queue was made with: [`RawBytes`]' or the object type's.
    tag: u64,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageQueue")
            .field("segment", &self.seg)
            .field("capacity", &self.queue.capacity())
            .field("max_message", &self.queue.max_message())
            .finish()
    }
}

impl Inner {
    fn create(
        capacity: u64,
        max_message: u64,
        name: Name<'_>,
        spin: Spin,
        max_peers: u64,
        tag: u64,
    ) -> Result<Self, QueueError> {
        if max_message > MAX_MESSAGE {
            return Err(QueueError::InvalidMaxMessage { max_message });
        }
        let size = MsgQueue::memory_size(capacity, max_message)
            .ok_or(QueueError::InvalidCapacity { capacity })?;
        let seg = Segment::create(size, name, max_peers)?;
        // SAFETY: the queue view is stored next to the segment and dropped
        // with it (field order in Inner); the segment is new and its ring
        // area untouched: the queue writes only its header and body.
        let region = unsafe { seg.fresh_ring_region() };
        let queue = MsgQueue::create_tagged(region, capacity, max_message, tag)
            .map_err(|e| match e {
                InitError::InvalidCapacity { capacity } => QueueError::InvalidCapacity { capacity },
                e => QueueError::Init(e),
            })?
            .with_spin(spin);
        Ok(Self { queue, seg, tag })
    }

    fn open(name: &str, tag: u64) -> Result<Self, QueueError> {
        let seg = Segment::open(name)?;
        // SAFETY: as in `create`.
        let region = unsafe { seg.ring_region() };
        let queue = MsgQueue::attach_tagged(region, tag)?;
        Ok(Self { queue, seg, tag })
    }

    /// A token for `side`: an MPMC token (claimed once, through a ticket)
    /// whose element size and alignment are 0 (no `Queue<T>` accepts it)
    /// and whose tag is the queue's.
    fn token(&self, side: Side) -> Result<Vec<u8>, QueueError> {
        let name = self.seg.name().ok_or(QueueError::Anonymous)?;
        // The pending transfer counts as a live handle of this process
        // until the receiving process claims it.
        let me = Identity::current();
        self.seg.peers.add(me, side, 1)?;
        let Some(ticket) = self.seg.tickets().issue(me.pid()) else {
            self.seg.peers.remove(me, side, 1);
            return Err(QueueError::TooManyTokens { max: TICKETS });
        };
        Ok(Token {
            kind: KIND_MPMC,
            side,
            from_pid: current_pid(),
            size: 0,
            align: 0,
            tag: self.tag,
            ticket,
            name: name.to_owned(),
        }
        .encode())
    }

    fn claim(token: &[u8], side: Side, tag: u64) -> Result<(Arc<Self>, Local), QueueError> {
        let t = Token::decode(token)?;
        if t.kind != KIND_MPMC || t.size != 0 || t.align != 0 {
            return Err(QueueError::BadToken {
                reason: "token of another kind of queue",
            });
        }
        if t.side != side {
            return Err(QueueError::BadToken {
                reason: "token of the other side",
            });
        }
        if t.tag != tag {
            return Err(QueueError::BadToken {
                reason: "token of another element type",
            });
        }
        let inner = Self::open(&t.name, tag)?;
        let me = Identity::current();
        // Count here first, then withdraw the pending count: never zero.
        inner.seg.peers.add(me, side, 1)?;
        if !inner.seg.tickets().redeem(t.ticket) {
            inner.seg.peers.remove(me, side, 1);
            return Err(QueueError::AlreadyClaimed);
        }
        inner.seg.peers.remove_pid(t.from_pid, side, 1);
        Ok((Arc::new(inner), Local::new(side)))
    }

    fn side_gone(&self, side: Side) -> bool {
        !self.seg.side_alive(side)
    }
}

fn send_error(e: msgqueue::SendError) -> MessageSendError {
    match e {
        msgqueue::SendError::Full => MessageSendError::Full,
        msgqueue::SendError::TooLarge { len, max } => MessageSendError::TooLarge { len, max },
        // Closed; or corrupt, and a corrupt queue cannot carry messages:
        // as closed.
        _ => MessageSendError::Disconnected,
    }
}

fn recv_error(e: msgqueue::RecvError) -> MessageRecvError {
    match e {
        msgqueue::RecvError::Empty => MessageRecvError::Empty,
        msgqueue::RecvError::Disconnected => MessageRecvError::Disconnected,
        msgqueue::RecvError::BufferTooSmall { needed } => {
            MessageRecvError::BufferTooSmall { needed }
        }
        e => MessageRecvError::Corrupt(e),
    }
}

// ---------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------

/// The sending side of a [`MessageQueue`]: `Clone`, `Send`, `Sync`; moves
/// into forked children (see the [queue module docs](super) for how
/// handles are counted across processes).
pub struct MessageSender {
    inner: Arc<Inner>,
    local: Local,
}

impl fmt::Debug for MessageSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSender")
            .field("queue", &self.inner)
            .finish()
    }
}

impl Clone for MessageSender {
    /// Another sender, counted in this process.
    ///
    /// # Panics
    ///
    /// If the peer table cannot count it (see
    /// [`Queue::max_peers`](super::Queue::max_peers));
    /// [`try_clone`](MessageSender::try_clone) returns that as an error.
    fn clone(&self) -> Self {
        Self {
            local: self.local.clone_in(&self.inner.seg.peers),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl crate::process::Inherit for MessageSender {
    fn inherit(&self) {
        self.local.ensure(&self.inner.seg.peers);
    }
}

impl Drop for MessageSender {
    fn drop(&mut self) {
        if self.local.release(&self.inner.seg.peers) {
            // The last sender anywhere: receivers drain and disconnect.
            self.inner.queue.close();
        }
    }
}

impl MessageSender {
    /// Another sender, counted in this process: [`Clone`] without the
    /// panic.
    ///
    /// # Errors
    ///
    /// [`QueueError::Peers`] if the peer table cannot count it.
    pub fn try_clone(&self) -> Result<Self, QueueError> {
        Ok(Self {
            local: self.local.try_clone_in(&self.inner.seg.peers)?,
            inner: Arc::clone(&self.inner),
        })
    }

    #[inline]
    fn queue(&self) -> &MsgQueue<'static> {
        self.local.ensure(&self.inner.seg.peers);
        &self.inner.queue
    }

    /// Sends a copy of `msg` if there is room, without blocking.
    ///
    /// As [`Sender::try_send`](super::Sender::try_send), it sees a dropped
    /// receiver at once but a killed one only once a blocking call noticed.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::TooLarge`], [`MessageSendError::Full`],
    /// [`MessageSendError::Disconnected`].
    #[inline]
    pub fn try_send(&self, msg: &[u8]) -> Result<(), MessageSendError> {
        self.queue().try_send(msg).map_err(send_error)
    }

    /// Sends a copy of `msg`, blocking while the queue is full.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::TooLarge`]; [`MessageSendError::Disconnected`]
    /// when every receiver is gone (dropped, or died: noticed within about
    /// 50 ms of waiting).
    pub fn send(&self, msg: &[u8]) -> Result<(), MessageSendError> {
        self.send_deadline(msg, || None)
    }

    /// Sends a copy of `msg`, blocking at most `timeout` while the queue is
    /// full.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::Timeout`]; else as [`send`](Self::send).
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), MessageSendError> {
        self.send_deadline(msg, || Some(Deadline::after(timeout)))
    }

    fn send_deadline(
        &self,
        msg: &[u8],
        deadline: impl FnOnce() -> Option<Deadline>,
    ) -> Result<(), MessageSendError> {
        match self.try_send(msg) {
            Err(MessageSendError::Full) => {
                self.send_in_slices(deadline(), |q, d| q.send_deadline(msg, d))
            }
            r => r,
        }
    }

    /// Waits for room with `push` (a blocking call of the queue, given a
    /// deadline) in slices of [`LIVENESS_SLICE`] until `deadline`, checking
    /// between slices that a receiver lives (closing the queue if none
    /// does): the waiting loop of every blocking send.
    fn send_in_slices<R>(
        &self,
        deadline: Option<Deadline>,
        mut push: impl FnMut(MsgQueue<'static>, Option<Deadline>) -> Result<R, msgqueue::SendError>,
    ) -> Result<R, MessageSendError> {
        let mut queue = *self.queue();
        loop {
            let slice = Deadline::after(LIVENESS_SLICE).min(deadline);
            match push(queue, Some(slice)) {
                Ok(r) => return Ok(r),
                Err(msgqueue::SendError::Full) => {}
                Err(e) => return Err(send_error(e)),
            }
            queue = queue.with_spin(Spin::NONE);
            if self.inner.side_gone(Side::Receiver) {
                self.inner.queue.close();
                return Err(MessageSendError::Disconnected);
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(MessageSendError::Timeout);
            }
        }
    }

    /// Takes a free slot and returns a guard that writes a message in place
    /// (zero-copy send), blocking while the queue is full;
    /// [`MessageWriter::commit`] sends its first `len` bytes. A guard
    /// dropped without a commit sends nothing: receivers step over its
    /// slot.
    ///
    /// The slot's bytes are stale: write the ones you send. Receivers that
    /// reach the slot wait for the guard: keep it short-lived. If this
    /// process dies holding it, receivers step over the slot once they find
    /// it dead.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::Disconnected`] when every receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = multiproc::queue::message_channel(4, 64)?;
    /// let mut w = tx.send_ref().unwrap();
    /// let n = {
    ///     use std::io::Write;
    ///     let mut buf = &mut w[..];
    ///     write!(buf, "{} + {} = {}", 1, 2, 3).unwrap();
    ///     64 - buf.len()
    /// };
    /// w.commit(n).unwrap();
    /// assert_eq!(rx.recv().unwrap(), b"1 + 2 = 3");
    /// # Ok::<(), multiproc::queue::QueueError>(())
    /// ```
    pub fn send_ref(&self) -> Result<MessageWriter<'_>, MessageSendError> {
        self.send_ref_deadline(None)
    }

    /// As [`send_ref`](Self::send_ref), without blocking.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::Full`] or [`MessageSendError::Disconnected`].
    pub fn try_send_ref(&self) -> Result<MessageWriter<'_>, MessageSendError> {
        self.queue()
            .try_send_ref()
            .map(MessageWriter::new)
            .map_err(send_error)
    }

    /// As [`send_ref`](Self::send_ref), blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::Timeout`] or [`MessageSendError::Disconnected`].
    pub fn send_ref_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MessageWriter<'_>, MessageSendError> {
        self.send_ref_deadline(Some(Deadline::after(timeout)))
    }

    pub(crate) fn send_ref_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<MessageWriter<'_>, MessageSendError> {
        match self.try_send_ref() {
            Err(MessageSendError::Full) => self
                .send_in_slices(deadline, |q, d| q.send_ref_deadline(d))
                .map(MessageWriter::new),
            r => r,
        }
    }

    /// Hands this sender to another process: a token to pass (as bytes) to
    /// a spawned process, which calls [`MessageSender::from_token`]. As
    /// [`Sender::to_token`](super::Sender::to_token): the queue must be
    /// named, the token counts as a live sender of this process until
    /// claimed, and each token is claimed once.
    ///
    /// # Errors
    ///
    /// [`QueueError::Anonymous`], [`QueueError::Peers`],
    /// [`QueueError::TooManyTokens`].
    pub fn to_token(&self) -> Result<Vec<u8>, QueueError> {
        self.local.ensure(&self.inner.seg.peers);
        self.inner.token(Side::Sender)
    }

    /// Claims a token made by [`MessageSender::to_token`].
    ///
    /// # Errors
    ///
    /// [`QueueError::BadToken`] if the token is garbage or names another
    /// kind of queue or side; [`QueueError::AlreadyClaimed`]; segment and
    /// attach errors.
    pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
        Self::from_token_tagged(token, type_tag::<RawBytes>())
    }

    pub(crate) fn from_token_tagged(token: &[u8], tag: u64) -> Result<Self, QueueError> {
        let (inner, local) = Inner::claim(token, Side::Sender, tag)?;
        Ok(Self { inner, local })
    }

    /// Closes the queue for everyone: sends fail from now on, receivers get
    /// what is queued and then `Disconnected`.
    pub fn close(&self) {
        self.inner.queue.close();
    }

    /// Whether every receiver is gone (dropped or dead: checks liveness,
    /// a few system calls) or the queue is closed.
    pub fn is_disconnected(&self) -> bool {
        self.inner.queue.is_closed() || self.inner.side_gone(Side::Receiver)
    }

    /// The number of queued messages, approximately (Python's `qsize`).
    pub fn len(&self) -> u64 {
        self.inner.queue.len()
    }
    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.inner.queue.is_empty()
    }
    /// Whether [`len`](Self::len) is the capacity.
    pub fn is_full(&self) -> bool {
        self.inner.queue.is_full()
    }
    /// The number of slots.
    pub fn capacity(&self) -> u64 {
        self.inner.queue.capacity()
    }
    /// The largest message, in bytes.
    pub fn max_message(&self) -> usize {
        self.inner.queue.max_message()
    }
}

// ---------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------

/// The receiving side of a [`MessageQueue`]: `Clone`, `Send`, `Sync`.
pub struct MessageReceiver {
    inner: Arc<Inner>,
    local: Local,
}

impl fmt::Debug for MessageReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageReceiver")
            .field("queue", &self.inner)
            .finish()
    }
}

impl Clone for MessageReceiver {
    /// Another receiver, counted in this process.
    ///
    /// # Panics
    ///
    /// As [`MessageSender::clone`].
    fn clone(&self) -> Self {
        Self {
            local: self.local.clone_in(&self.inner.seg.peers),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl crate::process::Inherit for MessageReceiver {
    fn inherit(&self) {
        self.local.ensure(&self.inner.seg.peers);
    }
}

impl Drop for MessageReceiver {
    fn drop(&mut self) {
        if self.local.release(&self.inner.seg.peers) {
            // The last receiver anywhere: senders fail from now on.
            self.inner.queue.close();
        }
    }
}

impl MessageReceiver {
    /// Another receiver, counted in this process: [`Clone`] without the
    /// panic.
    ///
    /// # Errors
    ///
    /// As [`MessageSender::try_clone`].
    pub fn try_clone(&self) -> Result<Self, QueueError> {
        Ok(Self {
            local: self.local.try_clone_in(&self.inner.seg.peers)?,
            inner: Arc::clone(&self.inner),
        })
    }

    #[inline]
    fn queue(&self) -> &MsgQueue<'static> {
        self.local.ensure(&self.inner.seg.peers);
        &self.inner.queue
    }

    /// Receives the oldest message into the front of `buf`, without
    /// blocking, and returns its length.
    ///
    /// # Errors
    ///
    /// [`MessageRecvError::BufferTooSmall`] if `buf` is shorter than
    /// [`max_message`](Self::max_message) (checked first: nothing is
    /// taken); [`MessageRecvError::Empty`];
    /// [`MessageRecvError::Disconnected`] once the queue is closed and
    /// drained; [`MessageRecvError::Corrupt`].
    #[inline]
    pub fn try_recv_into(&self, buf: &mut [u8]) -> Result<usize, MessageRecvError> {
        self.queue().try_recv_into(buf).map_err(recv_error)
    }

    /// Receives the oldest message into `buf`, blocking while the queue is
    /// empty.
    ///
    /// # Errors
    ///
    /// As [`try_recv_into`](Self::try_recv_into), except `Empty`:
    /// `Disconnected` once the queue is empty and every sender is gone
    /// (dropped, or died: noticed within about 50 ms of waiting).
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize, MessageRecvError> {
        self.recv_into_deadline(buf, || None)
    }

    /// Receives the oldest message into `buf`, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`MessageRecvError::Timeout`]; else as
    /// [`recv_into`](Self::recv_into).
    pub fn recv_into_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, MessageRecvError> {
        self.recv_into_deadline(buf, || Some(Deadline::after(timeout)))
    }

    fn recv_into_deadline(
        &self,
        buf: &mut [u8],
        deadline: impl FnOnce() -> Option<Deadline>,
    ) -> Result<usize, MessageRecvError> {
        match self.try_recv_into(buf) {
            Err(MessageRecvError::Empty) => {
                self.recv_in_slices(deadline(), |q, d| q.recv_into_deadline(buf, d))
            }
            r => r,
        }
    }

    /// Receives the oldest message as a new `Vec`, without blocking.
    ///
    /// # Errors
    ///
    /// As [`try_recv_into`](Self::try_recv_into), without
    /// `BufferTooSmall`.
    pub fn try_recv(&self) -> Result<Vec<u8>, MessageRecvError> {
        self.try_recv_ref().map(|m| m.to_vec())
    }

    /// Receives the oldest message as a new `Vec`, blocking while the queue
    /// is empty.
    ///
    /// # Errors
    ///
    /// As [`recv_into`](Self::recv_into), without `BufferTooSmall`.
    pub fn recv(&self) -> Result<Vec<u8>, MessageRecvError> {
        self.recv_ref().map(|m| m.to_vec())
    }

    /// Receives the oldest message as a new `Vec`, blocking at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_into_timeout`](Self::recv_into_timeout), without
    /// `BufferTooSmall`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, MessageRecvError> {
        self.recv_ref_timeout(timeout).map(|m| m.to_vec())
    }

    /// Waits for a message with `pop` (a blocking call of the queue, given
    /// a deadline) in slices of [`LIVENESS_SLICE`] until `deadline`,
    /// checking between slices that a sender lives. Once every sender is
    /// gone it closes the queue and takes what they completed (`pop` then
    /// waits only for slots that dead senders left unfinished, which the
    /// queue steps over once it finds their owner dead).
    fn recv_in_slices<R>(
        &self,
        deadline: Option<Deadline>,
        mut pop: impl FnMut(MsgQueue<'static>, Option<Deadline>) -> Result<R, msgqueue::RecvError>,
    ) -> Result<R, MessageRecvError> {
        let mut queue = *self.queue();
        loop {
            let slice = Deadline::after(LIVENESS_SLICE).min(deadline);
            match pop(queue, Some(slice)) {
                Ok(r) => return Ok(r),
                Err(msgqueue::RecvError::Empty) => {}
                Err(e) => return Err(recv_error(e)),
            }
            queue = queue.with_spin(Spin::NONE);
            if self.inner.side_gone(Side::Sender) {
                self.inner.queue.close();
                return match pop(queue, Some(Deadline::after(LIVENESS_SLICE))) {
                    Ok(r) => Ok(r),
                    Err(msgqueue::RecvError::Empty) => Err(MessageRecvError::Disconnected),
                    Err(e) => Err(recv_error(e)),
                };
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(MessageRecvError::Timeout);
            }
        }
    }

    /// Receives the oldest message in place (zero-copy receive), blocking
    /// while the queue is empty: the guard dereferences to the message's
    /// bytes in its slot, and frees the slot when dropped.
    ///
    /// Senders that reach the slot one lap later wait for the guard: keep
    /// it short-lived. If this process dies holding it, that message is
    /// lost, and senders free the slot once they find it dead.
    ///
    /// # Errors
    ///
    /// [`MessageRecvError::Disconnected`] once the queue is empty and every
    /// sender is gone; [`MessageRecvError::Corrupt`].
    pub fn recv_ref(&self) -> Result<MessageRef<'_>, MessageRecvError> {
        self.recv_ref_deadline(None)
    }

    /// As [`recv_ref`](Self::recv_ref), without blocking.
    ///
    /// # Errors
    ///
    /// [`MessageRecvError::Empty`]; else as [`recv_ref`](Self::recv_ref).
    pub fn try_recv_ref(&self) -> Result<MessageRef<'_>, MessageRecvError> {
        self.queue()
            .try_recv_ref()
            .map(MessageRef::new)
            .map_err(recv_error)
    }

    /// As [`recv_ref`](Self::recv_ref), blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`MessageRecvError::Timeout`]; else as [`recv_ref`](Self::recv_ref).
    pub fn recv_ref_timeout(&self, timeout: Duration) -> Result<MessageRef<'_>, MessageRecvError> {
        match self.try_recv_ref() {
            Err(MessageRecvError::Empty) => self.recv_ref_deadline(Some(Deadline::after(timeout))),
            r => r,
        }
    }

    pub(crate) fn recv_ref_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<MessageRef<'_>, MessageRecvError> {
        match self.try_recv_ref() {
            Err(MessageRecvError::Empty) => self
                .recv_in_slices(deadline, |q, d| q.recv_ref_deadline(d))
                .map(MessageRef::new),
            r => r,
        }
    }

    /// Hands this receiver to another process; see
    /// [`MessageSender::to_token`].
    ///
    /// # Errors
    ///
    /// As [`MessageSender::to_token`].
    pub fn to_token(&self) -> Result<Vec<u8>, QueueError> {
        self.local.ensure(&self.inner.seg.peers);
        self.inner.token(Side::Receiver)
    }

    /// Claims a token made by [`MessageReceiver::to_token`].
    ///
    /// # Errors
    ///
    /// As [`MessageSender::from_token`].
    pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
        Self::from_token_tagged(token, type_tag::<RawBytes>())
    }

    pub(crate) fn from_token_tagged(token: &[u8], tag: u64) -> Result<Self, QueueError> {
        let (inner, local) = Inner::claim(token, Side::Receiver, tag)?;
        Ok(Self { inner, local })
    }

    /// Closes the queue for everyone; see [`MessageSender::close`].
    pub fn close(&self) {
        self.inner.queue.close();
    }

    /// Whether every sender is gone (dropped or dead: checks liveness, a
    /// few system calls) or the queue is closed. Messages may still be
    /// queued.
    pub fn is_disconnected(&self) -> bool {
        self.inner.queue.is_closed() || self.inner.side_gone(Side::Sender)
    }

    /// The number of queued messages, approximately (Python's `qsize`).
    pub fn len(&self) -> u64 {
        self.inner.queue.len()
    }
    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.inner.queue.is_empty()
    }
    /// Whether [`len`](Self::len) is the capacity.
    pub fn is_full(&self) -> bool {
        self.inner.queue.is_full()
    }
    /// The number of slots.
    pub fn capacity(&self) -> u64 {
        self.inner.queue.capacity()
    }
    /// The largest message, in bytes.
    pub fn max_message(&self) -> usize {
        self.inner.queue.max_message()
    }
}

/// A message received in place from a [`MessageReceiver`]: dereferences to
/// its bytes in their slot and frees the slot when dropped. Made by
/// [`MessageReceiver::recv_ref`] and its variants.
pub struct MessageRef<'r> {
    msg: MsgReader<'static>,
    /// The guard reads the receiver's segment: it must not outlive it.
    _rx: PhantomData<&'r MessageReceiver>,
}

impl MessageRef<'_> {
    fn new(msg: MsgReader<'static>) -> Self {
        Self {
            msg,
            _rx: PhantomData,
        }
    }
}

impl std::ops::Deref for MessageRef<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.msg
    }
}

impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRef")
            .field("len", &self.msg.len())
            .finish()
    }
}

/// A slot taken in a [`MessageSender`]'s queue to write a message in
/// place: dereferences (mutably) to the slot's `max_message` bytes;
/// [`commit`](Self::commit) sends the first `len`, and a drop without a
/// commit sends nothing (receivers step over the slot). Made by
/// [`MessageSender::send_ref`] and its variants.
pub struct MessageWriter<'s> {
    slot: MsgWriter<'static>,
    /// The guard writes the sender's segment: it must not outlive it.
    _tx: PhantomData<&'s MessageSender>,
}

impl MessageWriter<'_> {
    fn new(slot: MsgWriter<'static>) -> Self {
        Self {
            slot,
            _tx: PhantomData,
        }
    }

    /// Sends the first `len` bytes of the slot.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::TooLarge`] if `len` exceeds `max_message`: then
    /// nothing is sent (receivers step over the slot).
    pub fn commit(self, len: usize) -> Result<(), MessageSendError> {
        self.slot.commit(len).map_err(send_error)
    }
}

impl std::ops::Deref for MessageWriter<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.slot
    }
}

impl std::ops::DerefMut for MessageWriter<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.slot
    }
}

impl fmt::Debug for MessageWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageWriter")
            .field("max_message", &self.slot.len())
            .finish()
    }
}
