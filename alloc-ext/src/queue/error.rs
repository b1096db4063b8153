//! The error values of the queue handles: one error per operation, in the
//! shape of crossbeam-channel's (`send` -> [`SendError`], `try_send` ->
//! [`TrySendError`], `send_timeout` -> [`SendTimeoutError`], and the same
//! three for receiving). A value that could not be sent comes back in the
//! error. Each also tells a closed queue (`Disconnected`) from a broken one
//! (`Corrupt`: the ring's shared memory was overwritten by something other
//! than this crate).

use std::fmt;

use multiproc_core::mpmc::{PopError, PushError};
use multiproc_core::peers::{TasksError, TooManyTaskDone};

pub use crate::segment::QueueError;

/// `send` failed. The value is handed back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendError<T> {
    /// Every receiver is gone (or the queue was closed).
    Disconnected(T),
    /// The queue's shared memory is corrupt (a slot's sequence number
    /// contradicts the ring's indices): nothing was written, and the queue
    /// cannot be trusted any more.
    Corrupt(T),
}

/// `try_send` failed. The value is handed back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue is full.
    Full(T),
    /// Every receiver is gone (or the queue was closed).
    Disconnected(T),
    /// The queue's shared memory is corrupt (see [`SendError::Corrupt`]).
    Corrupt(T),
}

/// `send_timeout` failed. The value is handed back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// The queue stayed full until the timeout.
    Timeout(T),
    /// Every receiver is gone (or the queue was closed).
    Disconnected(T),
    /// The queue's shared memory is corrupt (see [`SendError::Corrupt`]).
    Corrupt(T),
}

/// `send_slice` stopped before the end of the slice: how many values were
/// sent (the first `sent`, in order), and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSliceError {
    /// How many values of the slice were sent.
    pub sent: usize,
    /// Why the rest was not ([`SendError::Disconnected`] or
    /// [`SendError::Corrupt`]).
    pub error: SendError<()>,
}

/// `recv` failed: nothing to receive ever again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// The queue is empty and every sender is gone (or the queue was
    /// closed and drained).
    Disconnected,
    /// The queue's shared memory is corrupt (a slot's sequence number
    /// contradicts the ring's indices): nothing was read.
    Corrupt,
}

/// `try_recv` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing to receive now.
    Empty,
    /// Nothing to receive ever again.
    Disconnected,
    /// The queue's shared memory is corrupt (see [`RecvError::Corrupt`]).
    Corrupt,
}

/// `recv_timeout` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the timeout.
    Timeout,
    /// Nothing to receive ever again.
    Disconnected,
    /// The queue's shared memory is corrupt (see [`RecvError::Corrupt`]).
    Corrupt,
}

/// The value-carrying send errors: `Debug` without `T: Debug`, the value
/// back, the predicates, `Error`.
macro_rules! send_error {
    ($name:ident { $($var:ident),* }) => {
        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$var(_) => f.write_str(concat!(stringify!($var), "(..)")),)*
                }
            }
        }
        impl<T> $name<T> {
            /// The value that was not sent.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$var(v) => v,)*
                }
            }
            /// Whether the receivers are gone (or the queue was closed).
            pub fn is_disconnected(&self) -> bool {
                matches!(self, $name::Disconnected(_))
            }
            /// Whether the queue's shared memory is corrupt.
            pub fn is_corrupt(&self) -> bool {
                matches!(self, $name::Corrupt(_))
            }
        }
        impl<T> std::error::Error for $name<T> {}
    };
}

send_error!(SendError {
    Disconnected,
    Corrupt
});
send_error!(TrySendError {
    Full,
    Disconnected,
    Corrupt
});
send_error!(SendTimeoutError {
    Timeout,
    Disconnected,
    Corrupt
});

const SEND_DISCONNECTED: &str = "sending on a disconnected queue";
const CORRUPT: &str = "the queue's shared memory is corrupt";
const RECV_DISCONNECTED: &str = "receiving on an empty and disconnected queue";

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Disconnected(_) => SEND_DISCONNECTED,
            SendError::Corrupt(_) => CORRUPT,
        })
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => "sending on a full queue",
            TrySendError::Disconnected(_) => SEND_DISCONNECTED,
            TrySendError::Corrupt(_) => CORRUPT,
        })
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendTimeoutError::Timeout(_) => "timed out waiting on send",
            SendTimeoutError::Disconnected(_) => SEND_DISCONNECTED,
            SendTimeoutError::Corrupt(_) => CORRUPT,
        })
    }
}

impl fmt::Display for SendSliceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} value(s) of the slice",
            self.error, self.sent
        )
    }
}

impl std::error::Error for SendSliceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(v) => TrySendError::Disconnected(v),
            SendError::Corrupt(v) => TrySendError::Corrupt(v),
        }
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(v) => SendTimeoutError::Disconnected(v),
            SendError::Corrupt(v) => SendTimeoutError::Corrupt(v),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvError::Disconnected => RECV_DISCONNECTED,
            RecvError::Corrupt => CORRUPT,
        })
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "receiving on an empty queue",
            TryRecvError::Disconnected => RECV_DISCONNECTED,
            TryRecvError::Corrupt => CORRUPT,
        })
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "timed out waiting on receive",
            RecvTimeoutError::Disconnected => RECV_DISCONNECTED,
            RecvTimeoutError::Corrupt => CORRUPT,
        })
    }
}

impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => TryRecvError::Disconnected,
            RecvError::Corrupt => TryRecvError::Corrupt,
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Corrupt => RecvTimeoutError::Corrupt,
        }
    }
}

impl<T> From<PushError<T>> for TrySendError<T> {
    fn from(e: PushError<T>) -> Self {
        match e {
            PushError::Full(v) => TrySendError::Full(v),
            PushError::Disconnected(v) => TrySendError::Disconnected(v),
            PushError::Corrupt(v) => TrySendError::Corrupt(v),
        }
    }
}

impl From<PopError> for TryRecvError {
    fn from(e: PopError) -> Self {
        match e {
            PopError::Empty => TryRecvError::Empty,
            PopError::Disconnected => TryRecvError::Disconnected,
            PopError::Corrupt => TryRecvError::Corrupt,
        }
    }
}

/// The error of an untimed receive, from the one of its deadline-free
/// wait (where [`RecvTimeoutError::Timeout`] cannot happen).
pub(crate) fn untimed_recv(e: RecvTimeoutError) -> RecvError {
    match e {
        RecvTimeoutError::Corrupt => RecvError::Corrupt,
        RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected => RecvError::Disconnected,
    }
}

/// The error of an untimed send, from the one of its deadline-free wait
/// (where [`SendTimeoutError::Timeout`] cannot happen).
pub(crate) fn untimed_send<T>(e: SendTimeoutError<T>) -> SendError<T> {
    match e {
        SendTimeoutError::Corrupt(v) => SendError::Corrupt(v),
        SendTimeoutError::Timeout(v) | SendTimeoutError::Disconnected(v) => {
            SendError::Disconnected(v)
        }
    }
}

/// A ring's pop error once no sender is left: anything but corruption
/// means nothing will ever come.
pub(crate) fn recv_gone(e: PopError) -> RecvTimeoutError {
    match e {
        PopError::Corrupt => RecvTimeoutError::Corrupt,
        PopError::Empty | PopError::Disconnected => RecvTimeoutError::Disconnected,
    }
}

impl<T> SendError<T> {
    /// The same error, holding `f` of the value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> SendError<U> {
        match self {
            SendError::Disconnected(v) => SendError::Disconnected(f(v)),
            SendError::Corrupt(v) => SendError::Corrupt(f(v)),
        }
    }
}

impl<T> SendTimeoutError<T> {
    /// The same error, holding `f` of the value.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> SendTimeoutError<U> {
        match self {
            SendTimeoutError::Timeout(v) => SendTimeoutError::Timeout(f(v)),
            SendTimeoutError::Disconnected(v) => SendTimeoutError::Disconnected(f(v)),
            SendTimeoutError::Corrupt(v) => SendTimeoutError::Corrupt(f(v)),
        }
    }
}

/// `task_done` was called more times than items were put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done called more times than items were put")
    }
}

impl std::error::Error for TaskDoneError {}

impl From<TooManyTaskDone> for TaskDoneError {
    fn from(_: TooManyTaskDone) -> Self {
        TaskDoneError
    }
}

/// Why [`JoinableQueue::join`](super::JoinableQueue::join) (or
/// `join_timeout`) returned before every task was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// `join_timeout`'s time ran out.
    Timeout,
    /// A process took tasks with `get` and died before marking them done:
    /// they will never be. Each further `task_done` (in a process that has
    /// no task of its own outstanding) acknowledges one of them; `join`
    /// waits again once all are acknowledged.
    TaskLost {
        /// The pid of the (last) process found dead holding tasks.
        pid: u32,
        /// How many tasks were lost and are not yet acknowledged.
        tasks: u64,
    },
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Timeout => f.write_str("timed out waiting for every task to be done"),
            JoinError::TaskLost { pid, tasks } => write!(
                f,
                "{tasks} task(s) lost: process {pid} died after get and before task_done"
            ),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<TasksError> for JoinError {
    fn from(e: TasksError) -> Self {
        match e {
            TasksError::TimedOut => JoinError::Timeout,
            TasksError::Lost { pid, tasks } => JoinError::TaskLost { pid, tasks },
        }
    }
}
