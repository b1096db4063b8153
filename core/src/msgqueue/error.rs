//! Why a send or a receive failed.

use core::fmt;

use crate::mpmc::blocking::Miss;

/// Why a message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The queue is full (for a timed send: it stayed full until the
    /// deadline).
    Full,
    /// The queue is closed.
    Disconnected,
    /// The message is longer than the queue's `max_message`. Nothing was
    /// sent.
    TooLarge {
        /// The message's length.
        len: u64,
        /// The queue's `max_message`.
        max: u64,
    },
    /// A slot's sequence number contradicts the indices: the memory was
    /// overwritten by something other than this queue's code. Nothing was
    /// written.
    Corrupt,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str("message queue full"),
            SendError::Disconnected => f.write_str("message queue closed"),
            SendError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the queue's maximum of {max}"
                )
            }
            SendError::Corrupt => f.write_str("message queue memory is corrupt"),
        }
    }
}

impl core::error::Error for SendError {}

/// Why no message was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing to receive (for a timed receive: until the deadline), or the
    /// oldest message is still being written.
    Empty,
    /// The queue is closed and drained.
    Disconnected,
    /// The buffer given to a copying receive is shorter than the queue's
    /// `max_message`: a message of any allowed length must fit before one
    /// is taken. Nothing was received.
    BufferTooSmall {
        /// The queue's `max_message`.
        needed: u64,
    },
    /// The oldest message's recorded length exceeds `max_message`: the
    /// memory was overwritten by something other than this queue's code.
    /// That slot was consumed without reading it.
    BadLength {
        /// The length found.
        len: u64,
        /// The queue's `max_message`.
        max: u64,
    },
    /// A slot's sequence number contradicts the indices (see
    /// [`SendError::Corrupt`]).
    Corrupt,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("message queue empty"),
            RecvError::Disconnected => f.write_str("message queue closed and drained"),
            RecvError::BufferTooSmall { needed } => {
                write!(f, "receive buffer shorter than the queue's maximum message of {needed} bytes")
            }
            RecvError::BadLength { len, max } => write!(
                f,
                "message queue memory is corrupt: a message of {len} bytes exceeds the maximum of {max}"
            ),
            RecvError::Corrupt => f.write_str("message queue memory is corrupt"),
        }
    }
}

impl core::error::Error for RecvError {}

impl Miss {
    pub(super) fn send_error(self) -> SendError {
        match self {
            Miss::Idle | Miss::InFlight(_) => SendError::Full,
            Miss::Closed => SendError::Disconnected,
            Miss::Corrupt => SendError::Corrupt,
        }
    }

    pub(super) fn recv_error(self) -> RecvError {
        match self {
            Miss::Idle | Miss::InFlight(_) => RecvError::Empty,
            Miss::Closed => RecvError::Disconnected,
            Miss::Corrupt => RecvError::Corrupt,
        }
    }
}
