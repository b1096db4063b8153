//! Queues of `T: Pod` in shared memory, across processes: the MPMC
//! [`Queue`] with [`Sender`]/[`Receiver`] handles, [`SimpleQueue`],
//! [`JoinableQueue`], and the single-producer [`spsc`] channel; and MPMC
//! queues of variable-size messages: bytes ([`message_channel`]) and, with
//! the `serde` feature, values of any serde type (`object_channel`: a
//! `String`, a `Vec<f64>`, a struct with a `Vec`), with the same
//! guarantees (see [`MessageQueue`]).
//!
//! A message is copied into a slot of a ring in a shared segment (or
//! written in place with [`Sender::send_with`] or the [`Sender::send_ref`]
//! guard, and read in place with [`Receiver::recv_with`] or the
//! [`Receiver::recv_ref`] guard): no encoding, no system call while the
//! other side is awake.
//!
//! # Example: across a fork
//!
//! ```
//! use multiproc::queue;
//!
//! let (tx, rx) = queue::channel::<u64>(64)?;
//! let child = multiproc::Process::new(move || {
//!     for i in 0..1000u64 {
//!         tx.send(i).unwrap();
//!     }
//!     // `tx` is dropped here: the parent's `recv` then reports the end.
//! })
//! .start()?;
//! let mut sum = 0;
//! while let Ok(v) = rx.recv() {
//!     sum += v;
//! }
//! assert_eq!(sum, 999 * 1000 / 2);
//! child.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Memory
//!
//! A queue of capacity `n` takes one segment of about `n × (8 + size_of::<T>())`
//! bytes (a sequence word per slot; 16 bytes for `u64`) plus 2 KiB of
//! headers and tables. Creating it writes the headers only: a slot's
//! all-zero bytes are its initial state, so its page is not touched until a
//! message reaches it.
//!
//! - **Anonymous** (the default): memory is taken page by page as the ring
//!   fills, and counts in the resident size (RSS) of the processes that
//!   touch it. Measured on a 2-vCPU VM (debug build): a 256 MiB queue
//!   (`Queue::<u64>::new(1 << 24)`) is created in about 50 µs and adds
//!   24 KiB to VmRSS, a 1 GiB one (`1 << 26`) about 40 µs and 4 KiB;
//!   before slots were left unwritten, the same queues took 0.5 s and
//!   4.2 s and added 256 MiB and 1 GiB of RSS at creation. Anonymous memory
//!   is not bounded by `/dev/shm`'s size; a size beyond the machine's memory
//!   plus swap is refused ([`ShmError::NoSpace`](crate::shm::ShmError::NoSpace)).
//! - **Named** ([`Queue::named`], [`Queue::unique_name`]): the whole segment
//!   is reserved in `/dev/shm` at creation (`fallocate`), so that no send
//!   can later find the file system full and die of `SIGBUS`; a queue that
//!   does not fit is refused with
//!   [`ShmError::NoSpace`](crate::shm::ShmError::NoSpace) and leaves
//!   nothing behind. Reserving takes the memory at once (it shows in
//!   `df /dev/shm` and the system's `Shmem`, about 0.25 s per GiB here),
//!   but not in any process's RSS until the slots are touched.
//!
//! # Disconnection
//!
//! When every sender is gone, receivers get every value already sent and
//! then `Disconnected`; when every receiver is gone, senders get
//! `Disconnected` (with their value back). "Gone" means dropped, or held by
//! a process that died, even by `SIGKILL`:
//!
//! - Each queue has a peer table (see [`multiproc_core::peers`]) counting,
//!   per process, the live handles of each side. A clone adds one, a drop
//!   removes one.
//! - The last handle of a side dropped anywhere closes the ring: the other
//!   side wakes at once.
//! - A blocked `recv`/`send` (and the `_timeout` ones) sleeps in slices of
//!   50 ms, and after each slice asks whether a live process holds a
//!   handle of the other side: it reads that side's count in the peer
//!   table first (shared memory: a count of 0 means gone, with no system
//!   call), and only then asks the kernel about one holder, the one found
//!   alive last time (one read of `/proc/<pid>/stat`); only when that one
//!   died are the others looked at. A side whose processes all died
//!   (even by `SIGKILL`, even if their pids were reused at once) is
//!   therefore noticed within about 50 ms; the ring is then closed.
//! - Idle cost, measured with `strace -c -f -p` over 10 s on a receiver
//!   blocked in `recv` while forked children hold idle senders (test
//!   `idle_receiver_syscalls` in `tests/tests/peers.rs`, run with
//!   `MULTIPROC_STRACE=1`): before this design (25 ms slices, every
//!   occupied slot's `/proc` file read after each), 5529 system calls a
//!   second with 63 senders; now 74 a second with 64 senders (about 19
//!   futex waits and 19 `/proc` reads of 3 calls each), independent of
//!   the number of senders.
//! - `try_recv`/`try_send` never make a system call: they see a drop at
//!   once, but a death only once some blocking call (or
//!   [`Receiver::is_disconnected`]/[`Sender::is_disconnected`]) noticed it.
//! - [`close`](Sender::close) closes the queue for everyone.
//!
//! ## Handing handles to children
//!
//! - **Fork ([`Process`](crate::Process)).** Move handles into the
//!   closure. The parent forgets its copy of the closure (no destructor of
//!   it runs there); each handle's count stays the parent's until the child
//!   first uses, clones or drops the handle, which counts it in the child
//!   first and then withdraws the parent's, so a count never drops to zero
//!   in between. A handle passed on, untouched, to a grandchild is taken
//!   over from the grandparent the same way. A child killed before it
//!   touched a handle leaves that count with the parent until the parent
//!   exits (the other side sees the handle connected until then). Handles
//!   left in the parent are not counted in the child (it cannot reach
//!   them); a handle in a `static`, reachable from both, is taken over by
//!   the child at its first use there.
//! - **Plain `libc::fork`.** A handle used in a process other than the one
//!   it is counted in counts itself there on first use. Until then it is
//!   not counted: if the parent drops its copy first, the other side may
//!   see `Disconnected` too early. Prefer `Process`, or use the handle in
//!   the child before the parent drops it.
//! - **Spawn and forkserver.** Handles cannot be inherited: make the
//!   queue [`named`](Queue::named) (or [`unique_name`](Queue::unique_name)),
//!   pass the bytes of [`Sender::to_token`]/[`Receiver::to_token`] as the
//!   entry point's arguments, and claim them with
//!   [`Sender::from_token`]/[`Receiver::from_token`], which check the
//!   element type (size, alignment and a tag of its name). An unclaimed
//!   token counts as a live handle of the process that made it, for as long
//!   as that process lives. Each token is claimed once (a second claim is
//!   [`QueueError::AlreadyClaimed`]). The [`spsc`] channel's ends move the
//!   same way ([`spsc::Spsc::named`], [`spsc::Producer::into_token`],
//!   [`spsc::Consumer::into_token`]), except that `into_token` gives the
//!   end up.
//!
//! A process that holds handles counts as one of the other side's peers
//! until it drops them or exits, whether or not it still uses them.
//!
//! ## Deaths in the middle of an operation
//!
//! The ring is Vyukov's bounded MPMC queue ([`multiproc_core::mpmc`]),
//! whose slots record the pid of the process writing or reading them. A
//! sender killed inside `send` or `send_with`, or holding a `send_ref`
//! guard, leaves a slot that is never published; a receiver killed inside
//! `recv_with`, or holding a `recv_ref` guard, leaves one that is never
//! freed (its value is lost).
//! Neither stops the others: a blocked receiver (sender) that finds such a
//! slot asks whether its owner lives once it has waited about a
//! millisecond, and steps over (frees) the slot of a dead one. Every
//! message that a live or dead sender completed is received, once.
//! `try_recv` and `try_send` do not recover slots; any blocking or timed
//! call does. A live process's slot is never taken from it, however long
//! its closure runs or its guard lives.
//!
//! ## Peers: identity and table size
//!
//! A peer is named by its pid plus its start time
//! ([`multiproc_core::identity`]): a dead peer whose pid was reused by
//! another process counts as dead. (Processes are told apart by the clock
//! tick they started in, 10 ms at 100 Hz: a peer killed, reaped and its pid
//! reused within the same tick would count as alive until that process
//! exits.)
//!
//! The peer table has [`Queue::max_peers`] slots (default 512: a `Pool` on
//! a 128-core machine with room to spare; 16 bytes a slot, 8 KiB): at most
//! that many processes hold handles of one queue at once. A handle that
//! cannot be counted is refused with a typed error where it would be
//! counted: [`QueueError::Peers`] from [`Queue::channel`],
//! [`Sender::try_clone`]/[`Receiver::try_clone`] (`clone` panics) and the
//! tokens. A handle a `Process` fork child inherited stays counted under
//! its parent when the child cannot count it (exact while the parent
//! lives; see [`Queue::max_peers`]). A copy inherited through a plain
//! `libc::fork` that cannot be counted stays uncounted (see above: prefer
//! `Process`).

mod channel;
mod error;
mod iter;
mod joinable;
mod messages;
pub mod spsc;

pub use channel::{channel, Queue, Receiver, RecvRef, SendRef, Sender};
pub use error::{
    JoinError, QueueError, RecvError, RecvTimeoutError, SendError, SendSliceError,
    SendTimeoutError, TaskDoneError, TryRecvError, TrySendError,
};
pub use iter::{IntoIter, Iter, TryIter};
pub use joinable::{JoinableQueue, SimpleQueue, DEFAULT_CAPACITY};
pub use messages::{
    message_channel, MessageQueue, MessageReceiver, MessageRecvError, MessageRef, MessageSendError,
    MessageSender, MessageWriter,
};
#[cfg(feature = "serde")]
pub use messages::{object_channel, ObjectReceiver, ObjectSender};

pub use crate::pipe::{bytes_channel, ByteReceiver, ByteSender};
