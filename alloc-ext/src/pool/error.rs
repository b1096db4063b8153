//! What can go wrong with a pool as a whole ([`PoolError`]) and with one
//! task ([`TaskError`]).

use std::fmt;

use crate::process::ProcessError;
use crate::shm::ShmError;

/// Why one task (one item of a `map`, one `apply`) has no result.
///
/// The pool goes on after each of these: only this task failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The function panicked; the message is the panic's, with its location
    /// (`panicked at src/main.rs:4:5: ...`).
    Panicked(String),
    /// The worker running the task died (killed by a signal, or it exited)
    /// before the task's result was sent; the worker was replaced. With
    /// [`LostTasks::Retry`](super::LostTasks::Retry), only after the
    /// retries ran out.
    WorkerLost {
        /// The dead worker's process id.
        pid: u32,
        /// How it ended: the exit code, or minus the signal number
        /// (`-9` for `SIGKILL`), as Python's `exitcode`; `None` if unknown.
        exitcode: Option<i32>,
    },
    /// The item's encoding is longer than a message of the pool's rings can
    /// carry ([`Builder::max_message`](super::Builder::max_message)).
    ItemTooLarge {
        /// Encoded length of the item.
        len: usize,
        /// The largest item that fits.
        max: usize,
    },
    /// The result's encoding is longer than a message can carry.
    ResultTooLarge {
        /// Encoded length of the result.
        len: usize,
        /// The largest result that fits.
        max: usize,
    },
    /// The item or the result could not be encoded or decoded (a serde
    /// error, or a worker sent bytes that do not decode: the message says
    /// which).
    Codec(String),
    /// The pool was terminated (or dropped) before the task ended.
    Terminated,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(msg) => write!(f, "the task panicked: {msg}"),
            TaskError::WorkerLost { pid, exitcode } => match exitcode {
                Some(c) if *c < 0 => write!(
                    f,
                    "worker {pid} running the task was killed by signal {}",
                    -c
                ),
                Some(c) => write!(f, "worker {pid} running the task exited with code {c}"),
                None => write!(f, "worker {pid} running the task died"),
            },
            TaskError::ItemTooLarge { len, max } => write!(
                f,
                "the item encodes to {len} bytes, more than a pool message carries ({max})"
            ),
            TaskError::ResultTooLarge { len, max } => write!(
                f,
                "the result encodes to {len} bytes, more than a pool message carries ({max})"
            ),
            TaskError::Codec(msg) => write!(f, "encoding error: {msg}"),
            TaskError::Terminated => f.write_str("the pool was terminated"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Why a pool operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// A task failed; `index` is its position in the input (0 for `apply`).
    /// [`Pool::map`](super::Pool::map) and friends return the first failed
    /// task's error; the `*_results` variants return every item's outcome
    /// instead.
    Task {
        /// Position of the item in the input.
        index: u64,
        /// What happened to it.
        error: TaskError,
    },
    /// The wait ended before the result was ready (`*_timeout` calls). The
    /// job goes on; wait again to get it.
    Timeout,
    /// [`Pool::close`](super::Pool::close) or
    /// [`Pool::terminate`](super::Pool::terminate) was called: the pool takes
    /// no new work.
    Closed,
    /// [`Pool::join`](super::Pool::join) before
    /// [`Pool::close`](super::Pool::close) (as Python, which raises
    /// `ValueError`).
    NotClosed,
    /// No worker can be started any more (the last start failed with this
    /// message), so queued work cannot run.
    Broken(String),
    /// The number of workers is 0 or above [`MAX_WORKERS`](super::MAX_WORKERS),
    /// or another setting is out of range (the message says which).
    InvalidConfig(String),
    /// The pool's shared memory could not be made.
    Shm(ShmError),
    /// A worker (or the process that forks them) could not be started.
    Start(ProcessError),
    /// A system call of the pool's machinery failed.
    Io(std::io::Error),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Task { index, error } => write!(f, "task {index}: {error}"),
            PoolError::Timeout => f.write_str("timed out waiting for the result"),
            PoolError::Closed => f.write_str("the pool is closed"),
            PoolError::NotClosed => f.write_str("join needs close (or terminate) first"),
            PoolError::Broken(msg) => write!(f, "the pool cannot start workers: {msg}"),
            PoolError::InvalidConfig(msg) => write!(f, "invalid pool configuration: {msg}"),
            PoolError::Shm(e) => write!(f, "pool shared memory: {e}"),
            PoolError::Start(e) => write!(f, "starting a pool worker: {e}"),
            PoolError::Io(e) => write!(f, "pool: {e}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Task { error, .. } => Some(error),
            PoolError::Shm(e) => Some(e),
            PoolError::Start(e) => Some(e),
            PoolError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ShmError> for PoolError {
    fn from(e: ShmError) -> Self {
        PoolError::Shm(e)
    }
}

impl From<ProcessError> for PoolError {
    fn from(e: ProcessError) -> Self {
        PoolError::Start(e)
    }
}

impl From<std::io::Error> for PoolError {
    fn from(e: std::io::Error) -> Self {
        PoolError::Io(e)
    }
}
