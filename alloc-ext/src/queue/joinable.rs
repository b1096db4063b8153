//! Python's `SimpleQueue` and `JoinableQueue`: one clonable object with
//! both ends, over the MPMC [`Queue`](super::Queue).

use std::time::Duration;

use bytemuck::Pod;
use multiproc_core::identity::Identity;
use multiproc_core::time::Deadline;

use super::channel::{open_pair, Queue, Receiver, Sender};
use super::error::{
    JoinError, QueueError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TaskDoneError,
    TryRecvError, TrySendError,
};

/// The capacity of [`SimpleQueue::new`] and [`JoinableQueue::new`].
///
/// Python's `SimpleQueue` and `JoinableQueue` are unbounded (a pipe plus
/// a feeder thread buffering in memory); these live in a fixed shared
/// segment, so they are bounded: `put` blocks while the queue is full.
pub const DEFAULT_CAPACITY: u64 = 1024;

/// Generates the named and token constructors both queues share: a queue
/// reaches spawn and forkserver children (which inherit no mapping) by its
/// segment's name or by a token, as [`Queue`] does. `$magic` tells the two
/// kinds of token apart.
macro_rules! named_and_token {
    ($ty:ident, $magic:literal, $what:literal) => {
        impl<T: Pod> $ty<T> {
            #[doc = concat!("A ", $what, " of `capacity` slots in a new segment named `name`")]
            /// (`shm_open`), which other processes, spawned ones included,
            /// reach with [`open`](Self::open). This process unlinks the
            /// name when its last handle is dropped.
            ///
            /// # Errors
            ///
            /// [`QueueError::InvalidCapacity`] for zero; segment errors
            /// (invalid name, name taken).
            pub fn named(name: &str, capacity: u64) -> Result<Self, QueueError> {
                let (tx, rx) = Queue::new(capacity).named(name).channel()?;
                Ok(Self { tx, rx })
            }

            /// As [`named`](Self::named), with a generated unique name
            /// ([`name`](Self::name) tells it).
            ///
            /// # Errors
            ///
            /// As [`named`](Self::named).
            pub fn with_unique_name(capacity: u64) -> Result<Self, QueueError> {
                let (tx, rx) = Queue::new(capacity).unique_name().channel()?;
                Ok(Self { tx, rx })
            }

            #[doc = concat!("Opens the ", $what, " made with [`named`](Self::named) in another process.")]
            ///
            /// # Errors
            ///
            /// Segment errors (no such name); attach errors, among them
            /// another element type.
            pub fn open(name: &str) -> Result<Self, QueueError> {
                let (tx, rx) = open_pair(name)?;
                Ok(Self { tx, rx })
            }

            /// The name of the queue's segment (`None` when anonymous).
            pub fn name(&self) -> Option<&str> {
                self.tx.segment_name()
            }

            /// Hands a handle to another process (typically a spawned
            /// one): the token carries the segment name, the element type
            /// and a pending handle of this process for each end, claimed by
            /// [`from_token`](Self::from_token). Claim each token once.
            ///
            /// # Errors
            ///
            /// [`QueueError::Anonymous`] for a queue in an anonymous segment;
            /// as [`Sender::to_token`].
            pub fn to_token(&self) -> Result<Vec<u8>, QueueError> {
                let tx = self.tx.to_token()?;
                let rx = self.rx.to_token()?;
                let mut v = Vec::with_capacity(8 + tx.len() + rx.len());
                v.extend_from_slice($magic);
                v.extend_from_slice(&(tx.len() as u32).to_le_bytes());
                v.extend_from_slice(&tx);
                v.extend_from_slice(&rx);
                Ok(v)
            }

            /// Claims a token made by [`to_token`](Self::to_token).
            ///
            /// # Errors
            ///
            #[doc = concat!("[`QueueError::BadToken`] if it is no ", $what, " token, or names")]
            /// another element type; segment and attach errors.
            pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
                let bad = || QueueError::BadToken {
                    reason: concat!("not a ", $what, " token"),
                };
                let (magic, rest) = token.split_first_chunk::<4>().ok_or_else(bad)?;
                if magic != $magic {
                    return Err(bad());
                }
                let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
                let len = u32::from_le_bytes(*len) as usize;
                if len > rest.len() {
                    return Err(bad());
                }
                let (tx, rx) = rest.split_at(len);
                let tx = Sender::from_token(tx)?;
                let rx = Receiver::from_token(rx)?;
                Ok(Self { tx, rx })
            }
        }
    };
}

named_and_token!(SimpleQueue, b"MPSQ", "simple queue");
named_and_token!(JoinableQueue, b"MPJQ", "joinable queue");

/// Python's `multiprocessing.SimpleQueue`: `put`, `get`, `empty`, `close`,
/// as one clonable handle holding both ends. Bounded (see
/// [`DEFAULT_CAPACITY`]), unlike Python's.
///
/// Since every clone holds a sender and a receiver, `get` reports
/// disconnection only when every process holding a clone is gone (or
/// after [`close`](Self::close)).
///
/// # Examples
///
/// ```
/// let q = multiproc::queue::SimpleQueue::<u32>::new()?;
/// q.put(3).unwrap();
/// assert!(!q.empty());
/// assert_eq!(q.get(), Ok(3));
/// # Ok::<(), multiproc::queue::QueueError>(())
/// ```
#[derive(Debug)]
pub struct SimpleQueue<T: Pod> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T: Pod> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

impl<T: Pod> SimpleQueue<T> {
    /// A queue of [`DEFAULT_CAPACITY`] slots in an anonymous segment.
    ///
    /// # Errors
    ///
    /// Segment errors.
    pub fn new() -> Result<Self, QueueError> {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A queue of `capacity` slots.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidCapacity`] for zero; segment errors.
    pub fn with_capacity(capacity: u64) -> Result<Self, QueueError> {
        let (tx, rx) = Queue::new(capacity).channel()?;
        Ok(Self { tx, rx })
    }

    /// Puts `v`, blocking while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] once the queue is closed.
    pub fn put(&self, v: T) -> Result<(), SendError<T>> {
        self.tx.send(v)
    }

    /// Takes the oldest value, blocking while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the queue is closed and drained.
    pub fn get(&self) -> Result<T, RecvError> {
        self.rx.recv()
    }

    /// Whether the queue is empty (a snapshot).
    pub fn empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Closes the queue for every process.
    pub fn close(&self) {
        self.tx.close();
    }
}

/// Python's `multiprocessing.JoinableQueue`: a queue whose consumers mark
/// each item done with [`task_done`](Self::task_done), so that a producer
/// can [`join`](Self::join) until every item put was processed.
///
/// # Tasks lost with their process
///
/// Each process's peer slot counts the tasks it took with `get` and has
/// not marked done. A worker killed between `get` and `task_done` leaves
/// its tasks unfinished for good: [`join`](Self::join) finds it dead (it
/// looks every 50 ms while it waits) and returns
/// [`JoinError::TaskLost`] instead of waiting forever. A `task_done` in a
/// process with no task of its own outstanding then acknowledges one lost
/// task; once all are, `join` waits for the others again.
///
/// `task_done` may be called in another process than the `get` (as in
/// Python): it lowers the caller's own outstanding count if it has one,
/// else acknowledges a lost task if there is one, else lowers another
/// process's count. Loss reports are exact when each process marks done
/// the tasks it took. Not covered: a producer killed inside `put` (the
/// task is counted before the item is sent, and the receivers step over
/// the unfinished item) and a consumer killed in the few instructions
/// between taking an item from the ring and counting it: `join` then
/// waits for that task; use [`join_timeout`](Self::join_timeout) where
/// that matters, and [`task_done`](Self::task_done) for a task known lost.
///
/// # Examples
///
/// ```
/// let q = multiproc::queue::JoinableQueue::<u32>::new()?;
/// q.put(1).unwrap();
/// let worker = q.clone();
/// let v = worker.get().unwrap();
/// worker.task_done().unwrap();
/// q.join()?;
/// assert_eq!(v, 1);
/// assert!(q.task_done().is_err()); // more than items put
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct JoinableQueue<T: Pod> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T: Pod> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

impl<T: Pod> JoinableQueue<T> {
    /// A queue of [`DEFAULT_CAPACITY`] slots in an anonymous segment.
    ///
    /// # Errors
    ///
    /// Segment errors.
    pub fn new() -> Result<Self, QueueError> {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A queue of `capacity` slots.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidCapacity`] for zero; segment errors.
    pub fn with_capacity(capacity: u64) -> Result<Self, QueueError> {
        let (tx, rx) = Queue::new(capacity).channel()?;
        Ok(Self { tx, rx })
    }

    fn peers(&self) -> &multiproc_core::peers::Peers<'static> {
        self.tx.peers()
    }

    /// Puts `v` (one more unfinished task), blocking while full.
    ///
    /// # Errors
    ///
    /// [`SendError`] once the queue is closed (the task is not counted).
    pub fn put(&self, v: T) -> Result<(), SendError<T>> {
        self.peers().task_add();
        self.tx.send(v).inspect_err(|_| self.peers().task_cancel())
    }

    /// Puts `v` without blocking.
    ///
    /// # Errors
    ///
    /// As [`Sender::try_send`] (the task is not counted then).
    pub fn try_put(&self, v: T) -> Result<(), TrySendError<T>> {
        self.peers().task_add();
        self.tx
            .try_send(v)
            .inspect_err(|_| self.peers().task_cancel())
    }

    /// Puts `v`, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_timeout`] (the task is not counted then).
    pub fn put_timeout(&self, v: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.peers().task_add();
        self.tx
            .send_timeout(v, timeout)
            .inspect_err(|_| self.peers().task_cancel())
    }

    /// Takes the oldest value, blocking while empty.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the queue is closed and drained.
    pub fn get(&self) -> Result<T, RecvError> {
        self.rx.recv().inspect(|_| self.taken())
    }

    /// Takes the oldest value without blocking.
    ///
    /// # Errors
    ///
    /// As [`Receiver::try_recv`].
    pub fn try_get(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv().inspect(|_| self.taken())
    }

    /// Takes the oldest value, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).inspect(|_| self.taken())
    }

    /// Counts a task this process took, in its peer slot, so that `join`
    /// reports it lost if the process dies before `task_done`.
    fn taken(&self) {
        // If it cannot be counted (65535 tasks outstanding here), that task
        // is not reported lost if this process dies: documented.
        let _ = self.peers().task_taken(Identity::current());
    }

    /// Marks one task taken with `get` as done (see the [type
    /// docs](Self#tasks-lost-with-their-process) for which process's count
    /// it lowers).
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] if called more times than items were put.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        Ok(self.peers().task_done(Identity::current())?)
    }

    /// The number of tasks put and not yet marked done.
    pub fn unfinished(&self) -> u64 {
        self.peers().unfinished()
    }

    /// Blocks until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// [`JoinError::TaskLost`] once a process that took tasks is found
    /// dead before marking them done (within about 50 ms of its death),
    /// instead of waiting forever.
    pub fn join(&self) -> Result<(), JoinError> {
        Ok(self.peers().wait_tasks(None)?)
    }

    /// As [`join`](Self::join), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinError::Timeout`], or as [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        Ok(self.peers().wait_tasks(Some(Deadline::after(timeout)))?)
    }

    /// Whether the queue is empty (a snapshot).
    pub fn empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The number of queued values, approximately.
    pub fn qsize(&self) -> u64 {
        self.rx.len()
    }

    /// Closes the queue for every process.
    pub fn close(&self) {
        self.tx.close();
    }
}

impl<T: Pod> crate::process::Inherit for SimpleQueue<T> {
    fn inherit(&self) {
        self.tx.inherit();
        self.rx.inherit();
    }
}

impl<T: Pod> crate::process::Inherit for JoinableQueue<T> {
    fn inherit(&self) {
        self.tx.inherit();
        self.rx.inherit();
    }
}
