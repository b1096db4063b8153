//! `Pipe`: two connected ends exchanging byte messages and `Pod` values
//! through shared memory, like Python's `multiprocessing.Pipe`.
//!
//! ```text
//!  segment (anonymous, or named for spawned processes)
//!  +-------------+----------------------------+----------------------------+
//!  | peer table  | ring 0: ByteRing           | ring 1: ByteRing (duplex)  |
//!  | end 0/end 1 | end 0 writes, end 1 reads  | end 1 writes, end 0 reads  |
//!  +-------------+----------------------------+----------------------------+
//! ```
//!
//! Each message is one frame of a [`ByteRing`]: copied in once
//! ([`Connection::send_bytes`]) or written in place
//! ([`Connection::send_with`]), copied out once
//! ([`Connection::recv_bytes_into`]) or read in place
//! ([`Connection::recv_with`]). A `Pod` value travels as its bytes, with no
//! encoding; the optional `serde` feature adds
//! `Connection::send_serde`/`recv_serde` (postcard frames).
//!
//! # Example: across a fork
//!
//! ```
//! let (mut parent, mut child_end) = multiproc::pipe()?;
//! let child = multiproc::Process::new(move || {
//!     let n: u64 = child_end.recv().unwrap();
//!     child_end.send_bytes(&vec![7u8; n as usize]).unwrap();
//! })
//! .start()?;
//! parent.send(&5u64)?;
//! assert_eq!(parent.recv_bytes()?, vec![7u8; 5]);
//! child.join()?;
//! // The child is gone: its end went with it.
//! assert!(matches!(parent.recv_bytes(), Err(multiproc::pipe::PipeRecvError::Disconnected)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sizes
//!
//! A message is at most [`Pipe::max_message`] bytes (default
//! [`DEFAULT_MAX_MESSAGE`], 1 MiB); each direction's ring holds
//! [`Pipe::ring_size`] bytes, a power of two of at least
//! `2 * (max_message + 8)` (default: the smallest such, 4 MiB for 1 MiB).
//! A longer message is refused with [`PipeSendError::TooLarge`].
//!
//! # Ends, processes and disconnection
//!
//! | event | the other end's `recv` | the other end's `send` |
//! |---|---|---|
//! | end dropped or [`close`](Connection::close)d (its last copy) | drains, then `Disconnected` at once | `Disconnected` at once |
//! | every process holding the end died (even `SIGKILL`) | drains, then `Disconnected` within about 50 ms of waiting | `Disconnected` within about 50 ms of waiting |
//!
//! The ends are counted per process in the pipe's peer table (as queue
//! handles are, see [`crate::queue`]): a blocked call sleeps in slices of
//! 50 ms and, after each, reads the other end's count and, if it is not 0,
//! asks the kernel whether one of its holders still lives.
//! A [`Connection`] is `Send` but not `Clone` or `Sync`: one thread of one
//! process uses an end at a time.
//!
//! **Ring roles are claimed lazily.** A byte ring has one sender and one
//! receiver role, each held by a pid. An end claims its roles in the
//! process where it first sends (or receives), not where the pipe was
//! made: an end moved unused into a [`Process`](crate::Process) child (or
//! a spawned one) claims them in the child, so the role's pid is the
//! process that really uses it. An end used before the fork keeps the
//! roles the parent claimed; the child goes on with them, and releases them
//! by the claim its handle holds (the peer table, whose count moves to the
//! child when it first touches the end, decides liveness, never the role
//! pid alone). The roles are released when the last copy of the end is
//! dropped anywhere; that release is what wakes the other end at once.
//!
//! **Spawn and forkserver.** Make the pipe [`named`](Pipe::named) or
//! [`unique_name`](Pipe::unique_name)d, turn an *unused* end into bytes
//! with [`Connection::into_token`] and claim it in the spawned process with
//! [`Connection::from_token`]. Until claimed, the token counts as a live
//! copy of the end held by the process that made it.
//!
//! **Deaths mid-message.** A writer killed inside `send_bytes` or
//! `send_with` never published that frame: the reader gets every complete
//! message before it, then `Disconnected`. A reader killed inside
//! `recv_with` never released its frame; nobody else can read that end.

mod bytes;
mod error;

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use multiproc_core::bytering::{
    ByteRing, FrameReceiver, FrameSender, RecvError, SendError, HEADER_LEN,
};
use multiproc_core::identity::Identity;
use multiproc_core::peers::{Side, DEFAULT_SLOTS};
use multiproc_core::region::{InitError, Region};
use multiproc_core::time::Deadline;
use multiproc_core::wait::Spin;

pub use bytes::{bytes_channel, ByteReceiver, ByteSender};
pub use error::{PipeError, PipeRecvError, PipeSendError};

use crate::segment::QueueError;
use crate::segment::{type_tag, Local, Name, Segment, Token, KIND_PIPE};

/// The default maximum message: 1 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 1 << 20;

/// How long a blocked call sleeps before it checks that the other end's
/// processes still live (the count first, then the kernel about one
/// holder: see [`crate::queue::Queue::max_peers`] and the queue docs).
const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// Tags a pipe token (see `type_tag`).
struct PipeEndTag;

/// A duplex pipe, as Python's `Pipe()`: two ends, each sends to the other.
///
/// # Errors
///
/// As [`Pipe::open`].
///
/// # Examples
///
/// ```
/// let (mut a, mut b) = multiproc::pipe()?;
/// a.send_bytes(b"ping")?;
/// assert_eq!(b.recv_bytes()?, b"ping");
/// b.send(&42u32)?;
/// assert_eq!(a.recv::<u32>()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe() -> Result<(Connection, Connection), PipeError> {
    Pipe::new().open()
}

/// A one-way pipe, as Python's `Pipe(duplex=False)`: returns
/// `(reader, writer)`.
///
/// # Errors
///
/// As [`Pipe::open`].
pub fn pipe_oneway() -> Result<(Connection, Connection), PipeError> {
    let (w, r) = Pipe::new().duplex(false).open()?;
    Ok((r, w))
}

/// The builder of a pipe: sizes, direction and name.
#[derive(Debug, Clone)]
pub struct Pipe {
    ring_size: Option<u64>,
    max_message: u64,
    duplex: bool,
    name: Option<String>,
    unique: bool,
    max_peers: u64,
}

impl Default for Pipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipe {
    /// A duplex, anonymous pipe for messages of up to 1 MiB.
    pub fn new() -> Self {
        Self {
            ring_size: None,
            max_message: DEFAULT_MAX_MESSAGE,
            duplex: true,
            name: None,
            unique: false,
            max_peers: DEFAULT_SLOTS,
        }
    }

    /// How many processes may hold an end of the pipe at once: the slots
    /// of its peer table (default [`DEFAULT_SLOTS`], 512, 16 bytes each).
    /// An end that one process too many would hold is refused with
    /// [`PipeError::Setup`] (`QueueError::Peers`) where it would be
    /// counted (tokens); an end that a `Process` fork child inherited and
    /// cannot count in its own name stays counted under its parent (see
    /// [`Queue::max_peers`](crate::queue::Queue::max_peers)).
    pub fn max_peers(mut self, n: u64) -> Self {
        self.max_peers = n;
        self
    }

    /// The longest message, in bytes (default 1 MiB).
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// The bytes of each direction's ring: a power of two, at least
    /// `2 * (max_message + 8)` (default: the smallest such).
    pub fn ring_size(mut self, bytes: u64) -> Self {
        self.ring_size = Some(bytes);
        self
    }

    /// Whether both ends send (default `true`). With `false`, the first end
    /// of [`open`](Self::open) only writes and the second only reads.
    pub fn duplex(mut self, duplex: bool) -> Self {
        self.duplex = duplex;
        self
    }

    /// Makes the segment under `name` (for [`Connection::into_token`]).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Makes the segment under a fresh unique name (for
    /// [`Connection::into_token`]).
    pub fn unique_name(mut self) -> Self {
        self.unique = true;
        self
    }

    /// The ring size this builder uses.
    fn ring_bytes(&self) -> Option<u64> {
        match self.ring_size {
            Some(r) => Some(r),
            None => self
                .max_message
                .checked_add(HEADER_LEN)?
                .checked_mul(2)?
                .checked_next_power_of_two()
                .map(|r| r.max(64)),
        }
    }

    /// Makes the pipe: `(end 0, end 1)`. In a one-way pipe end 0 writes and
    /// end 1 reads.
    ///
    /// # Errors
    ///
    /// [`PipeError::InvalidSize`] for a ring size that is not a power of two
    /// of at least 64 or is too small for the maximum message;
    /// [`PipeError::Setup`] if the segment cannot be made.
    pub fn open(self) -> Result<(Connection, Connection), PipeError> {
        let invalid = PipeError::InvalidSize {
            ring_size: self.ring_size.unwrap_or(0),
            max_message: self.max_message,
        };
        let Some(ring) = self.ring_bytes() else {
            return Err(invalid);
        };
        let invalid = PipeError::InvalidSize {
            ring_size: ring,
            max_message: self.max_message,
        };
        match ByteRing::max_frame_for(ring) {
            Some(max) if max >= self.max_message => {}
            _ => return Err(invalid),
        }
        let stride = ring_stride(ring).ok_or(invalid)?;
        let nrings = if self.duplex { 2 } else { 1 };
        let name = match (&self.name, self.unique) {
            (Some(n), _) => Name::Given(n),
            (None, true) => Name::Unique,
            (None, false) => Name::Anonymous,
        };
        let seg = Segment::create(stride * nrings, name, self.max_peers)?;
        let me = Identity::current();
        seg.peers
            .add(me, Side::Sender, 1)
            .map_err(QueueError::from)?;
        seg.peers
            .add(me, Side::Receiver, 1)
            .map_err(QueueError::from)?;
        let mut rings = [None, None];
        for (i, slot) in rings.iter_mut().take(nrings).enumerate() {
            // SAFETY: the rings live in `Inner` next to the segment they
            // borrow, and never outlive it.
            let region = unsafe { fresh_sub_region(&seg, i * stride) };
            let r = ByteRing::create(region, ring, self.max_message).map_err(|e| match e {
                InitError::InvalidCapacity { .. } => PipeError::InvalidSize {
                    ring_size: ring,
                    max_message: self.max_message,
                },
                e => PipeError::Setup(QueueError::Init(e)),
            })?;
            *slot = Some(r);
        }
        let inner = Arc::new(Inner {
            rings,
            seg,
            duplex: self.duplex,
        });
        Ok((
            Connection::new(Arc::clone(&inner), Side::Sender),
            Connection::new(inner, Side::Receiver),
        ))
    }
}

/// Bytes one ring takes in the segment, rounded to 128.
pub(crate) fn ring_stride(ring: u64) -> Option<usize> {
    Some(ByteRing::memory_size(ring)?.next_multiple_of(128))
}

/// The part of a just-created segment's ring area from `off` on, marked
/// zero-filled (each ring then writes only its header and body).
///
/// # Safety
///
/// The region (and every view built on it) must not outlive `seg`; called
/// by the segment's creator before anything else is written in that part
/// of the ring area.
unsafe fn fresh_sub_region(seg: &Segment, off: usize) -> Region<'static> {
    // SAFETY: forwarded to the caller.
    let all = unsafe { seg.fresh_ring_region() };
    all.split_off(off)
        .filter(|r| r.len() > 0)
        .expect("pipe ring outside its segment")
}

struct Inner {
    /// Ring 0 carries end 0 -> end 1, ring 1 end 1 -> end 0 (duplex only).
    /// They borrow `seg`, declared after them so that it is dropped last.
    rings: [Option<ByteRing<'static>>; 2],
    seg: Segment,
    duplex: bool,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipe")
            .field("duplex", &self.duplex)
            .field("segment", &self.seg)
            .finish()
    }
}

impl Inner {
    /// The ring `end` writes to, and the one it reads from.
    fn rings_of(&self, end: Side) -> (Option<ByteRing<'static>>, Option<ByteRing<'static>>) {
        match end {
            Side::Sender => (self.rings[0], self.rings[1]),
            Side::Receiver => (self.rings[1], self.rings[0]),
        }
    }

    fn open(name: &str, duplex: bool, stride: usize) -> Result<Self, PipeError> {
        let seg = Segment::open(name)?;
        let nrings = if duplex { 2 } else { 1 };
        let mut rings = [None, None];
        for (i, slot) in rings.iter_mut().take(nrings).enumerate() {
            // SAFETY: as in `Pipe::open`.
            let all = unsafe { seg.ring_region() };
            if stride.checked_mul(i + 1).is_none_or(|end| end > all.len()) {
                return Err(bad_token("segment too small for the pipe"));
            }
            // SAFETY: as in `Pipe::open`.
            let region = unsafe { fresh_sub_region(&seg, i * stride) };
            let r = ByteRing::attach(region).map_err(QueueError::Attach)?;
            if ring_stride(r.capacity()) != Some(stride) {
                return Err(bad_token("ring size differs from the token's"));
            }
            *slot = Some(r);
        }
        Ok(Self { rings, seg, duplex })
    }

    /// Whether no live process holds `end`: its count first (shared
    /// memory), then the kernel about one holder.
    fn gone(&self, end: Side) -> bool {
        !self.seg.side_alive(end)
    }
}

fn bad_token(reason: &'static str) -> PipeError {
    PipeError::Setup(QueueError::BadToken { reason })
}

fn other(end: Side) -> Side {
    match end {
        Side::Sender => Side::Receiver,
        Side::Receiver => Side::Sender,
    }
}

/// One end of a pipe: `Send`, not `Clone`, not `Sync`.
///
/// Every blocking call has a `_timeout` twin. See the [module
/// docs](self) for disconnection and for moving ends between processes.
pub struct Connection {
    /// The sender role on the ring this end writes; `None` until claimed
    /// (or for a read-only end). Dropped only by the last copy of the end.
    tx: Option<ManuallyDrop<FrameSender<'static>>>,
    /// The receiver role on the ring this end reads, likewise.
    rx: Option<ManuallyDrop<FrameReceiver<'static>>>,
    end: Side,
    local: Local,
    /// Declared last: the roles above borrow its segment.
    inner: Arc<Inner>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("end", &self.end)
            .field("pipe", &self.inner)
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.local.release(&self.inner.seg.peers) {
            return;
        }
        // The last copy of this end anywhere: release the roles, which
        // wakes the other end at once. A role never claimed is claimed and
        // released, for the same effect.
        let (out, inn) = self.inner.rings_of(self.end);
        match self.tx.as_mut() {
            // SAFETY: dropped once, here; the segment is still mapped
            // (`inner` is dropped after this body).
            Some(tx) => unsafe { ManuallyDrop::drop(tx) },
            None => {
                if let Some(tx) = out.and_then(|r| r.sender().ok()) {
                    drop(tx);
                }
            }
        }
        match self.rx.as_mut() {
            // SAFETY: as above.
            Some(rx) => unsafe { ManuallyDrop::drop(rx) },
            None => {
                if let Some(rx) = inn.and_then(|r| r.receiver().ok()) {
                    drop(rx);
                }
            }
        }
    }
}

impl Connection {
    fn new(inner: Arc<Inner>, end: Side) -> Self {
        Self {
            tx: None,
            rx: None,
            end,
            local: Local::new(end),
            inner,
        }
    }

    /// Claims the sender role on first use in this process tree.
    #[inline]
    fn tx(&mut self) -> Result<(), PipeSendError> {
        self.local.ensure(&self.inner.seg.peers);
        if self.tx.is_none() {
            self.claim_tx()?;
        }
        Ok(())
    }

    #[cold]
    fn claim_tx(&mut self) -> Result<(), PipeSendError> {
        let ring = self
            .inner
            .rings_of(self.end)
            .0
            .ok_or(PipeSendError::NotWritable)?;
        let tx = ring
            .sender()
            .map_err(|e| PipeSendError::RoleTaken { pid: e.pid })?;
        self.tx = Some(ManuallyDrop::new(tx));
        Ok(())
    }

    /// Claims the receiver role on first use in this process tree.
    #[inline]
    fn rx(&mut self) -> Result<(), PipeRecvError> {
        self.local.ensure(&self.inner.seg.peers);
        if self.rx.is_none() {
            self.claim_rx()?;
        }
        Ok(())
    }

    #[cold]
    fn claim_rx(&mut self) -> Result<(), PipeRecvError> {
        let ring = self
            .inner
            .rings_of(self.end)
            .1
            .ok_or(PipeRecvError::NotReadable)?;
        let rx = ring
            .receiver()
            .map_err(|e| PipeRecvError::RoleTaken { pid: e.pid })?;
        self.rx = Some(ManuallyDrop::new(rx));
        Ok(())
    }

    /// The longest message this pipe carries.
    pub fn max_message(&self) -> u64 {
        let (out, inn) = self.inner.rings_of(self.end);
        out.or(inn).map_or(0, |r| r.max_frame())
    }

    /// Whether this end can send (`false` for the read end of a one-way
    /// pipe).
    pub fn writable(&self) -> bool {
        self.inner.rings_of(self.end).0.is_some()
    }

    /// Whether this end can receive (`false` for the write end of a one-way
    /// pipe).
    pub fn readable(&self) -> bool {
        self.inner.rings_of(self.end).1.is_some()
    }

    // -- sending ----------------------------------------------------------

    /// Sends `msg` as one message, waiting for room as long as it takes.
    ///
    /// # Errors
    ///
    /// [`PipeSendError::TooLarge`], [`PipeSendError::Disconnected`] (the other end
    /// is gone: dropped, or its processes died), [`PipeSendError::NotWritable`],
    /// [`PipeSendError::RoleTaken`].
    #[inline]
    pub fn send_bytes(&mut self, msg: &[u8]) -> Result<(), PipeSendError> {
        // Fast path: the core's one-call send, as the bare ring's
        // `send_timeout` starts (no clock read, no system call).
        self.local.ensure(&self.inner.seg.peers);
        if let Some(tx) = self.tx.as_deref_mut() {
            match tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(SendError::TooLarge { len, max }) => {
                    return Err(PipeSendError::TooLarge { len, max })
                }
                Err(SendError::Full | SendError::Disconnected) => {}
            }
        }
        self.send_bytes_slow(msg)
    }

    /// The rest of [`send_bytes`](Self::send_bytes): claims the role on
    /// first use, waits for room, tells a gone peer from a hint.
    #[cold]
    #[inline(never)]
    fn send_bytes_slow(&mut self, msg: &[u8]) -> Result<(), PipeSendError> {
        self.send_with(msg.len(), |b| b.copy_from_slice(msg))
    }

    /// As [`send_bytes`](Self::send_bytes), waiting at most `timeout` for
    /// room.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Self::send_bytes); [`PipeSendError::Timeout`].
    pub fn send_bytes_timeout(
        &mut self,
        msg: &[u8],
        timeout: Duration,
    ) -> Result<(), PipeSendError> {
        self.send_with_deadline(msg.len(), Some(Deadline::after(timeout)), |b| {
            b.copy_from_slice(msg)
        })
    }

    /// Sends the bytes of `v`: a message of exactly `size_of::<T>()` bytes,
    /// no encoding.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Self::send_bytes).
    pub fn send<T: Pod>(&mut self, v: &T) -> Result<(), PipeSendError> {
        self.send_bytes(bytemuck::bytes_of(v))
    }

    /// Writes a message of `len` bytes in place (zero-copy send): `f` fills
    /// the bytes, which start with whatever the ring held; the message is
    /// published when `f` returns.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Self::send_bytes).
    pub fn send_with(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut [u8]),
    ) -> Result<(), PipeSendError> {
        self.send_with_deadline(len, None, f)
    }

    fn send_with_deadline(
        &mut self,
        len: usize,
        deadline: Option<Deadline>,
        f: impl FnOnce(&mut [u8]),
    ) -> Result<(), PipeSendError> {
        self.tx()?;
        let peer = other(self.end);
        let inner = &*self.inner;
        let Some(tx) = self.tx.as_deref_mut() else {
            return Err(PipeSendError::NotWritable);
        };
        // Fast path: no clock read, no system call.
        let mut hint_gone = match tx.try_reserve(len) {
            Ok(mut w) => {
                f(&mut w);
                w.commit();
                return Ok(());
            }
            Err(SendError::Full) => false,
            Err(SendError::TooLarge { len, max }) => {
                return Err(PipeSendError::TooLarge { len, max })
            }
            Err(SendError::Disconnected) => true,
        };
        loop {
            if !hint_gone {
                let slice = Deadline::after(LIVENESS_SLICE).min(deadline);
                match tx.reserve_timeout(len, slice.remaining()) {
                    Ok(mut w) => {
                        f(&mut w);
                        w.commit();
                        return Ok(());
                    }
                    Err(SendError::Full) => {}
                    Err(SendError::TooLarge { len, max }) => {
                        return Err(PipeSendError::TooLarge { len, max })
                    }
                    Err(SendError::Disconnected) => hint_gone = true,
                }
            }
            // The ring's verdict on the role is a hint (the role's pid may
            // be a parent that handed the end on): the peer table decides.
            if inner.gone(peer) {
                return Err(PipeSendError::Disconnected);
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(PipeSendError::Timeout);
            }
            if hint_gone {
                std::thread::sleep(Duration::from_millis(1));
                hint_gone = false;
            }
        }
    }

    // -- receiving --------------------------------------------------------

    /// Receives the next message into a new `Vec`, waiting as long as it
    /// takes.
    ///
    /// # Errors
    ///
    /// [`PipeRecvError::Disconnected`] once every message sent is received and
    /// the other end is gone; [`PipeRecvError::NotReadable`];
    /// [`PipeRecvError::RoleTaken`]; [`PipeRecvError::Corrupt`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, PipeRecvError> {
        self.recv_with(<[u8]>::to_vec)
    }

    /// As [`recv_bytes`](Self::recv_bytes), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes); [`PipeRecvError::Timeout`].
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, PipeRecvError> {
        self.recv_with_deadline(Some(Deadline::after(timeout)), <[u8]>::to_vec)
    }

    /// Receives the next message into `buf` and returns its length.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes); [`PipeRecvError::BufferTooSmall`]
    /// (the message stays in the pipe).
    #[inline]
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, PipeRecvError> {
        // Fast path: the core's one-call receive (no clock read, no
        // system call).
        self.local.ensure(&self.inner.seg.peers);
        if let Some(rx) = self.rx.as_deref_mut() {
            match rx.try_recv_into(buf) {
                Ok(n) => return Ok(n),
                Err(RecvError::Corrupt(c)) => return Err(PipeRecvError::Corrupt(c)),
                Err(RecvError::BufferTooSmall { needed }) => {
                    return Err(PipeRecvError::BufferTooSmall { needed })
                }
                Err(RecvError::Empty | RecvError::Disconnected) => {}
            }
        }
        self.recv_bytes_into_slow(buf)
    }

    /// The rest of [`recv_bytes_into`](Self::recv_bytes_into): claims the
    /// role on first use, waits for a message, tells a gone peer from a
    /// hint.
    #[cold]
    #[inline(never)]
    fn recv_bytes_into_slow(&mut self, buf: &mut [u8]) -> Result<usize, PipeRecvError> {
        self.recv_loop(None, |rx, wait| match wait {
            None => rx.try_recv_into(buf),
            Some(d) => rx.recv_into_timeout(buf, d),
        })
    }

    /// Receives a value sent by [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes); [`PipeRecvError::WrongSize`] if the
    /// message is not `size_of::<T>()` bytes long (it is consumed).
    pub fn recv<T: Pod>(&mut self) -> Result<T, PipeRecvError> {
        self.recv_with(|b| {
            if b.len() == size_of::<T>() {
                Ok(bytemuck::pod_read_unaligned(b))
            } else {
                Err(PipeRecvError::WrongSize {
                    expected: size_of::<T>() as u64,
                    got: b.len() as u64,
                })
            }
        })?
    }

    /// As [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); [`PipeRecvError::Timeout`].
    pub fn recv_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T, PipeRecvError> {
        self.recv_with_deadline(Some(Deadline::after(timeout)), |b| {
            if b.len() == size_of::<T>() {
                Ok(bytemuck::pod_read_unaligned(b))
            } else {
                Err(PipeRecvError::WrongSize {
                    expected: size_of::<T>() as u64,
                    got: b.len() as u64,
                })
            }
        })?
    }

    /// Reads the next message in place (zero-copy receive): `f` sees its
    /// bytes in the ring; the message is consumed when `f` returns.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes).
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, PipeRecvError> {
        self.recv_with_deadline(None, f)
    }

    fn recv_with_deadline<R>(
        &mut self,
        deadline: Option<Deadline>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, PipeRecvError> {
        let mut f = Some(f);
        self.recv_loop(deadline, |rx, wait| {
            let frame = match wait {
                None => rx.try_read(),
                Some(d) => rx.read_timeout(d),
            }?;
            let f = f.take().expect("a frame is taken at most once");
            Ok(f(&frame))
        })
    }

    /// The blocking loop of every receive: `attempt(rx, None)` must not
    /// block, `attempt(rx, Some(d))` may wait up to `d`; it succeeds at most
    /// once.
    fn recv_loop<R>(
        &mut self,
        deadline: Option<Deadline>,
        mut attempt: impl FnMut(&mut FrameReceiver<'static>, Option<Duration>) -> Result<R, RecvError>,
    ) -> Result<R, PipeRecvError> {
        self.rx()?;
        let peer = other(self.end);
        let inner = &*self.inner;
        let Some(rx) = self.rx.as_deref_mut() else {
            return Err(PipeRecvError::NotReadable);
        };
        let fail = |e: RecvError| match e {
            RecvError::Corrupt(c) => Err(PipeRecvError::Corrupt(c)),
            RecvError::BufferTooSmall { needed } => Err(PipeRecvError::BufferTooSmall { needed }),
            RecvError::Empty | RecvError::Disconnected => Ok(e == RecvError::Disconnected),
        };
        // Fast path: no clock read, no system call.
        let mut hint_gone = match attempt(rx, None) {
            Ok(v) => return Ok(v),
            Err(e) => fail(e)?,
        };
        loop {
            if !hint_gone {
                let slice = Deadline::after(LIVENESS_SLICE).min(deadline);
                match attempt(rx, Some(slice.remaining())) {
                    Ok(v) => return Ok(v),
                    Err(e) => hint_gone = fail(e)?,
                }
            }
            // The ring's verdict on the role is a hint (the role's pid may
            // be a parent that handed the end on): the peer table decides.
            if inner.gone(peer) {
                // Gone: one last look at what it published.
                return match attempt(rx, None) {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        fail(e)?;
                        Err(PipeRecvError::Disconnected)
                    }
                };
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(PipeRecvError::Timeout);
            }
            if hint_gone {
                std::thread::sleep(Duration::from_millis(1));
                hint_gone = false;
            }
        }
    }

    /// Whether a `recv` would return at once: a message is ready, or the
    /// other end is gone (then `recv` reports `Disconnected`). Waits up to
    /// `timeout` for that, by polling (a short spin, then naps of up to
    /// 1 ms). `false` on the write end of a one-way pipe.
    pub fn poll(&mut self, timeout: Duration) -> bool {
        if self.rx().is_err() {
            return false;
        }
        let peer = other(self.end);
        let inner = &*self.inner;
        let Some(rx) = self.rx.as_deref_mut() else {
            return false;
        };
        let deadline = Deadline::after(timeout);
        let mut backoff = Spin::DEFAULT.start();
        let mut nap = Duration::from_micros(20);
        let mut check_at = Deadline::after(LIVENESS_SLICE);
        loop {
            match rx.peek_len() {
                Err(RecvError::Empty) => {}
                _ => return true,
            }
            if deadline.has_passed() {
                return false;
            }
            if backoff.spin() {
                continue;
            }
            if check_at.has_passed() {
                if inner.gone(peer) {
                    return true;
                }
                check_at = Deadline::after(LIVENESS_SLICE);
            }
            std::thread::sleep(nap.min(deadline.remaining()));
            nap = (nap * 2).min(Duration::from_millis(1));
        }
    }

    /// Closes this end (drops it): the other end drains, then gets
    /// [`PipeRecvError::Disconnected`] (and its sends
    /// [`PipeSendError::Disconnected`]).
    pub fn close(self) {}

    /// Whether the other end is gone (dropped, or its processes died; a
    /// few system calls). Messages may still wait to be received.
    pub fn is_disconnected(&self) -> bool {
        self.inner.gone(other(self.end))
    }

    // -- handing over to spawned processes ---------------------------------

    /// Turns this end into bytes for a spawned process, which claims it
    /// with [`from_token`](Self::from_token). Until then the token counts as
    /// a live copy of the end held by this process. Claim each token once.
    ///
    /// # Errors
    ///
    /// [`PipeError::NotTransferable`] if the pipe has no name, or this end
    /// was already used here (its ring roles are claimed by this process
    /// tree); [`PipeError::Setup`] if the peer table is full.
    pub fn into_token(self) -> Result<Vec<u8>, PipeError> {
        let Some(name) = self.inner.seg.name() else {
            return Err(PipeError::NotTransferable {
                reason: "the pipe has no name: make it with .named() or .unique_name()",
            });
        };
        if self.tx.is_some() || self.rx.is_some() {
            return Err(PipeError::NotTransferable {
                reason: "the end was already used in this process",
            });
        }
        let (out, inn) = self.inner.rings_of(self.end);
        // Every end has a ring (its own or the other end's), of a size
        // `ring_stride` took when the pipe was made or opened.
        let stride = out.or(inn).and_then(|r| ring_stride(r.capacity())).ok_or(
            PipeError::NotTransferable {
                reason: "the end has no ring of a valid size",
            },
        )?;
        self.local.ensure(&self.inner.seg.peers);
        let me = Identity::current();
        let peers = &self.inner.seg.peers;
        peers.add(me, self.end, 1).map_err(QueueError::from)?;
        // Its ticket makes the claim happen once.
        let Some(ticket) = self.inner.seg.tickets().issue(me.pid()) else {
            peers.remove(me, self.end, 1);
            return Err(QueueError::TooManyTokens {
                max: crate::segment::TICKETS,
            }
            .into());
        };
        Ok(PipeToken {
            end: self.end,
            from_pid: me.pid(),
            duplex: self.inner.duplex,
            stride,
            ticket,
            name: name.to_owned(),
        }
        .encode())
        // `self` drops here: its count goes, the token's stays.
    }

    /// Claims an end from a token made by [`into_token`](Self::into_token).
    ///
    /// # Errors
    ///
    /// [`PipeError::Setup`] if the token is garbage, names something else,
    /// or the segment cannot be opened.
    pub fn from_token(token: &[u8]) -> Result<Self, PipeError> {
        let t = PipeToken::decode(token)?;
        let inner = Inner::open(&t.name, t.duplex, t.stride)?;
        let me = Identity::current();
        // Count here first, then withdraw the pending count: never zero.
        inner
            .seg
            .peers
            .add(me, t.end, 1)
            .map_err(QueueError::from)?;
        if !inner.seg.tickets().redeem(t.ticket) {
            // Claimed before (or void): its pending count is gone already,
            // and must not be withdrawn twice.
            inner.seg.peers.remove(me, t.end, 1);
            return Err(QueueError::AlreadyClaimed.into());
        }
        inner.seg.peers.remove_pid(t.from_pid, t.end, 1);
        Ok(Self::new(Arc::new(inner), t.end))
    }
}

impl crate::process::Inherit for Connection {
    fn inherit(&self) {
        self.local.ensure(&self.inner.seg.peers);
    }
}

/// What a pipe end's token carries, in the fields of a queue [`Token`]:
/// `size` is 1 for a duplex pipe, 0 for a one-way one; `align` is the
/// stride of each ring in the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PipeToken {
    /// The end handed on.
    pub(crate) end: Side,
    /// The process that made the token (and counts the pending end).
    pub(crate) from_pid: u32,
    /// Whether the pipe is duplex (two rings) or one-way (one).
    pub(crate) duplex: bool,
    /// Bytes of each ring's region: the `ring_stride` of a ring size.
    pub(crate) stride: usize,
    /// The word of its entry in the segment's ticket table (claimed once).
    pub(crate) ticket: u64,
    /// The segment's name.
    pub(crate) name: String,
}

impl PipeToken {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Token {
            kind: KIND_PIPE,
            side: self.end,
            from_pid: self.from_pid,
            size: u64::from(self.duplex),
            align: self.stride as u64,
            tag: type_tag::<PipeEndTag>(),
            ticket: self.ticket,
            name: self.name.clone(),
        }
        .encode()
    }

    /// Decodes and checks a token before anything is opened.
    pub(crate) fn decode(token: &[u8]) -> Result<Self, PipeError> {
        let t = Token::decode(token)?;
        if t.kind != KIND_PIPE || t.tag != type_tag::<PipeEndTag>() {
            return Err(bad_token("not a pipe token"));
        }
        let duplex = match t.size {
            0 => false,
            1 => true,
            _ => return Err(bad_token("not a pipe token")),
        };
        // The stride of some ring size (a power of two): nothing else is
        // in range, so nothing else reaches `Inner::open`.
        let stride = (0..u64::BITS)
            .filter_map(|k| ring_stride(1 << k))
            .find(|&s| s as u64 == t.align)
            .ok_or(bad_token("ring size"))?;
        Ok(Self {
            end: t.side,
            from_pid: t.from_pid,
            duplex,
            stride,
            ticket: t.ticket,
            name: t.name,
        })
    }
}

#[cfg(feature = "serde")]
impl Connection {
    /// Sends `v` encoded with postcard (`serde` feature).
    ///
    /// # Errors
    ///
    /// [`PipeSendError::Encode`]; as [`send_bytes`](Self::send_bytes).
    pub fn send_serde<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PipeSendError> {
        let bytes = postcard::to_stdvec(v).map_err(PipeSendError::Encode)?;
        self.send_bytes(&bytes)
    }

    /// Receives a value sent by [`send_serde`](Self::send_serde), decoding
    /// it in place from the ring (`serde` feature).
    ///
    /// # Errors
    ///
    /// [`PipeRecvError::Decode`] (the message is consumed); as
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, PipeRecvError> {
        self.recv_with(|b| postcard::from_bytes(b))?
            .map_err(PipeRecvError::Decode)
    }

    /// As [`recv_serde`](Self::recv_serde), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_serde`](Self::recv_serde); [`PipeRecvError::Timeout`].
    pub fn recv_serde_timeout<T: serde::de::DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, PipeRecvError> {
        self.recv_with_deadline(Some(Deadline::after(timeout)), |b| postcard::from_bytes(b))?
            .map_err(PipeRecvError::Decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_token() -> PipeToken {
        PipeToken {
            end: Side::Receiver,
            from_pid: 77,
            duplex: true,
            stride: ring_stride(4096).unwrap(),
            ticket: 0x1234_5678,
            name: "/psm_pipe".into(),
        }
    }

    fn with(size: u64, align: u64) -> Vec<u8> {
        Token {
            kind: KIND_PIPE,
            side: Side::Sender,
            from_pid: 77,
            size,
            align,
            tag: type_tag::<PipeEndTag>(),
            ticket: 0,
            name: "/psm_pipe".into(),
        }
        .encode()
    }

    fn refused(b: &[u8]) -> bool {
        matches!(
            PipeToken::decode(b),
            Err(PipeError::Setup(QueueError::BadToken { .. }))
        )
    }

    #[test]
    fn pipe_tokens_round_trip() {
        let t = pipe_token();
        assert_eq!(PipeToken::decode(&t.encode()).unwrap(), t);
        let oneway = PipeToken {
            duplex: false,
            end: Side::Sender,
            ..pipe_token()
        };
        assert_eq!(PipeToken::decode(&oneway.encode()).unwrap(), oneway);
    }

    #[test]
    fn pipe_tokens_with_bad_fields_are_refused() {
        let good = ring_stride(64).unwrap() as u64;
        assert!(!refused(&with(0, good)));
        assert!(!refused(&with(1, ring_stride(1 << 20).unwrap() as u64)));
        // Neither one-way nor duplex.
        assert!(refused(&with(2, good)));
        // Ring strides no pipe has: they are checked before the segment is
        // opened (a stride near `usize::MAX` made `(i + 1) * stride`
        // overflow there).
        for stride in [0, 64, 128, good + 8, u64::MAX, u64::MAX - 127] {
            assert!(refused(&with(1, stride)), "{stride}");
        }
        // Another structure's token, or element type.
        let mut t = Token::decode(&with(1, good)).unwrap();
        t.kind = 1;
        assert!(refused(&t.encode()));
        t.kind = KIND_PIPE;
        t.tag ^= 2;
        assert!(refused(&t.encode()));
    }
}
