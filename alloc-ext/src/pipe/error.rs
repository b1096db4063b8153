//! The errors of a [`Connection`](super::Connection), one per kind of
//! operation: making, opening or handing over a pipe ([`PipeError`]),
//! sending ([`PipeSendError`]) and receiving ([`PipeRecvError`]), as the
//! message queues have [`MessageSendError`](crate::queue::MessageSendError)
//! and [`MessageRecvError`](crate::queue::MessageRecvError). The `_timeout`
//! calls share their direction's error, with its `Timeout` variant.

use std::fmt;

use multiproc_core::bytering::Corruption;

use crate::segment::QueueError;

/// Why a pipe could not be made, opened from a token, or handed over.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipeError {
    /// The shared segment or the rings could not be made or attached, or a
    /// token is bad (see [`QueueError`]).
    Setup(QueueError),
    /// A ring size that is not a power of two of at least 64 bytes, or too
    /// small for the maximum message (`max_message <= ring_size / 2 - 8`).
    InvalidSize {
        /// The ring size asked for.
        ring_size: u64,
        /// The maximum message asked for.
        max_message: u64,
    },
    /// `into_token` on an end already used in this process (its ring roles
    /// are claimed here), or on a pipe made without a name.
    NotTransferable {
        /// Why.
        reason: &'static str,
    },
}

/// Why a message was not sent. Nothing was sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipeSendError {
    /// Nobody will ever read: the other end is gone (dropped, closed, or
    /// its processes died).
    Disconnected,
    /// The `_timeout` call found no room in time.
    Timeout,
    /// The message is longer than the pipe's maximum message.
    TooLarge {
        /// The message length.
        len: u64,
        /// The maximum message of the pipe.
        max: u64,
    },
    /// Sending on the read end of a one-way pipe.
    NotWritable,
    /// The end's sender role is held by another live process (the end was
    /// used there before it was copied here by a plain `fork`, or a token
    /// was claimed twice).
    RoleTaken {
        /// The holder.
        pid: u32,
    },
    /// The message could not be encoded (`serde` feature).
    #[cfg(feature = "serde")]
    Encode(postcard::Error),
}

/// Why no message was received.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipeRecvError {
    /// The other end is gone (dropped, closed, or its processes died) and
    /// every message it sent was received.
    Disconnected,
    /// The `_timeout` call saw no message in time.
    Timeout,
    /// [`recv`](super::Connection::recv) got a message whose length is not
    /// `size_of::<T>()` (the message is consumed).
    WrongSize {
        /// `size_of::<T>()`.
        expected: u64,
        /// The message length.
        got: u64,
    },
    /// [`recv_bytes_into`](super::Connection::recv_bytes_into): the buffer
    /// is shorter than the message, which stays in the pipe.
    BufferTooSmall {
        /// The message length.
        needed: u64,
    },
    /// Receiving on the write end of a one-way pipe.
    NotReadable,
    /// The end's receiver role is held by another live process (see
    /// [`PipeSendError::RoleTaken`]).
    RoleTaken {
        /// The holder.
        pid: u32,
    },
    /// The ring's shared state is impossible (a hostile or broken peer); it
    /// stays so.
    Corrupt(Corruption),
    /// The message could not be decoded (`serde` feature); it is consumed.
    #[cfg(feature = "serde")]
    Decode(postcard::Error),
}

impl PipeSendError {
    /// Whether this is [`PipeSendError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, PipeSendError::Disconnected)
    }
}

impl PipeRecvError {
    /// Whether this is [`PipeRecvError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, PipeRecvError::Disconnected)
    }
}

impl fmt::Display for PipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeError::Setup(e) => write!(f, "pipe setup: {e}"),
            PipeError::InvalidSize {
                ring_size,
                max_message,
            } => write!(
                f,
                "invalid pipe size: ring of {ring_size} bytes for messages of {max_message}"
            ),
            PipeError::NotTransferable { reason } => {
                write!(f, "pipe end cannot be transferred: {reason}")
            }
        }
    }
}

impl fmt::Display for PipeSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeSendError::Disconnected => f.write_str("the other end of the pipe is gone"),
            PipeSendError::Timeout => f.write_str("timed out waiting on send"),
            PipeSendError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the maximum of {max}")
            }
            PipeSendError::NotWritable => f.write_str("connection is read-only"),
            PipeSendError::RoleTaken { pid } => {
                write!(f, "pipe end already in use by live process {pid}")
            }
            #[cfg(feature = "serde")]
            PipeSendError::Encode(e) => write!(f, "encoding a message: {e}"),
        }
    }
}

impl fmt::Display for PipeRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeRecvError::Disconnected => f.write_str("the other end of the pipe is gone"),
            PipeRecvError::Timeout => f.write_str("timed out waiting on receive"),
            PipeRecvError::WrongSize { expected, got } => {
                write!(f, "message of {got} bytes where {expected} were expected")
            }
            PipeRecvError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the message needs {needed} bytes")
            }
            PipeRecvError::NotReadable => f.write_str("connection is write-only"),
            PipeRecvError::RoleTaken { pid } => {
                write!(f, "pipe end already in use by live process {pid}")
            }
            PipeRecvError::Corrupt(c) => write!(f, "corrupt pipe: {c}"),
            #[cfg(feature = "serde")]
            PipeRecvError::Decode(e) => write!(f, "decoding a message: {e}"),
        }
    }
}

impl std::error::Error for PipeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipeError::Setup(e) => Some(e),
            _ => None,
        }
    }
}

impl std::error::Error for PipeSendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "serde")]
            PipeSendError::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl std::error::Error for PipeRecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipeRecvError::Corrupt(c) => Some(c),
            #[cfg(feature = "serde")]
            PipeRecvError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<QueueError> for PipeError {
    fn from(e: QueueError) -> Self {
        PipeError::Setup(e)
    }
}
