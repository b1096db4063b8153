//! Why a shared segment (of a queue, a pipe, a sync handle) could not be
//! made, attached or handed over. It is the queues' setup error by name
//! (`multiproc::queue::QueueError`, re-exported there), and the pipes'
//! (`PipeError::Setup`).

use std::fmt;

use multiproc_core::peers::PeersError;
use multiproc_core::region::{AttachError, InitError};

use crate::shm::ShmError;

/// Why a queue could not be made, attached or handed over.
#[derive(Debug)]
#[non_exhaustive]
pub enum QueueError {
    /// A capacity of zero was asked for (or one above the ring's maximum).
    InvalidCapacity {
        /// The capacity asked for.
        capacity: u64,
    },
    /// A peer table size (`max_peers`) of zero, or above
    /// [`MAX_SLOTS`](multiproc_core::peers::MAX_SLOTS), was asked for.
    InvalidMaxPeers {
        /// The size asked for.
        max_peers: u64,
    },
    /// The shared memory segment could not be made or opened.
    Shm(ShmError),
    /// The structures could not be built in the segment.
    Init(InitError),
    /// The segment does not hold a queue of this kind and element type, or
    /// it was made in another pid namespace
    /// ([`AttachError::ForeignPidNamespace`]).
    Attach(AttachError),
    /// The peer table has no room for this process (or this process holds
    /// too many handles).
    Peers(PeersError),
    /// `to_token` on a queue made without a name (`Queue::named` or
    /// `Queue::unique_name` are needed to reach it from a spawned process).
    Anonymous,
    /// The token is not a queue token of this crate, or names another
    /// element type, side or kind of queue.
    BadToken {
        /// What is wrong.
        reason: &'static str,
    },
    /// The token was claimed already: each token (of a queue handle or an
    /// SPSC end) is claimed once.
    AlreadyClaimed,
    /// `to_token`: this many tokens of the queue are made and not claimed
    /// yet (by live processes); claim some first.
    TooManyTokens {
        /// The most tokens pending at once.
        max: usize,
    },
    /// A message queue's `max_message` above
    /// [`MAX_MESSAGE`](multiproc_core::msgqueue::MAX_MESSAGE) was asked for.
    InvalidMaxMessage {
        /// The size asked for.
        max_message: u64,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::InvalidCapacity { capacity } => {
                write!(f, "invalid queue capacity {capacity}")
            }
            QueueError::InvalidMaxPeers { max_peers } => {
                write!(f, "invalid peer table size {max_peers}")
            }
            QueueError::Shm(e) => write!(f, "queue segment: {e}"),
            QueueError::Init(e) => write!(f, "queue init: {e}"),
            QueueError::Attach(e) => write!(f, "queue attach: {e}"),
            QueueError::Peers(e) => write!(f, "queue peers: {e}"),
            QueueError::Anonymous => {
                f.write_str("queue has no name: create it with .named() or .unique_name()")
            }
            QueueError::BadToken { reason } => write!(f, "bad queue token: {reason}"),
            QueueError::AlreadyClaimed => f.write_str("queue token already claimed"),
            QueueError::TooManyTokens { max } => {
                write!(f, "{max} queue tokens already wait to be claimed")
            }
            QueueError::InvalidMaxMessage { max_message } => {
                write!(f, "invalid maximum message size {max_message}")
            }
        }
    }
}

impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueueError::Shm(e) => Some(e),
            QueueError::Init(e) => Some(e),
            QueueError::Attach(e) => Some(e),
            QueueError::Peers(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ShmError> for QueueError {
    fn from(e: ShmError) -> Self {
        QueueError::Shm(e)
    }
}
impl From<InitError> for QueueError {
    fn from(e: InitError) -> Self {
        QueueError::Init(e)
    }
}
impl From<AttachError> for QueueError {
    fn from(e: AttachError) -> Self {
        QueueError::Attach(e)
    }
}
impl From<PeersError> for QueueError {
    fn from(e: PeersError) -> Self {
        QueueError::Peers(e)
    }
}
