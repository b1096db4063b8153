//! The error of a [`Connection`](super::Connection).

use std::fmt;

use multiproc_core::bytering::Corruption;

use crate::queue::QueueError;

/// Why a pipe could not be made, or a connection call failed.
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
    /// The other end is gone (dropped, closed, or its processes died) and
    /// nothing is left to receive; or, on send, nobody will ever read.
    Disconnected,
    /// The `_timeout` call gave up.
    Timeout,
    /// The message is longer than the pipe's maximum message.
    TooLarge {
        /// The message length.
        len: u64,
        /// The maximum message of the pipe.
        max: u64,
    },
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
    /// Sending on the read end of a one-way pipe.
    NotWritable,
    /// Receiving on the write end of a one-way pipe.
    NotReadable,
    /// The end's ring role is held by another live process (the end was
    /// used there before it was copied here by a plain `fork`, or a token
    /// was claimed twice).
    RoleTaken {
        /// The holder.
        pid: u32,
    },
    /// `to_token` on an end already used in this process (its ring roles
    /// are claimed here), or on a pipe made without a name.
    NotTransferable {
        /// Why.
        reason: &'static str,
    },
    /// The ring's shared state is impossible (a hostile or broken peer).
    Corrupt(Corruption),
    /// The message could not be encoded (`serde` feature).
    #[cfg(feature = "serde")]
    Encode(postcard::Error),
    /// The message could not be decoded (`serde` feature); it is consumed.
    #[cfg(feature = "serde")]
    Decode(postcard::Error),
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
            PipeError::Disconnected => f.write_str("the other end of the pipe is gone"),
            PipeError::Timeout => f.write_str("timed out"),
            PipeError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the maximum of {max}")
            }
            PipeError::WrongSize { expected, got } => {
                write!(f, "message of {got} bytes where {expected} were expected")
            }
            PipeError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the message needs {needed} bytes")
            }
            PipeError::NotWritable => f.write_str("connection is read-only"),
            PipeError::NotReadable => f.write_str("connection is write-only"),
            PipeError::RoleTaken { pid } => {
                write!(f, "pipe end already in use by live process {pid}")
            }
            PipeError::NotTransferable { reason } => {
                write!(f, "pipe end cannot be transferred: {reason}")
            }
            PipeError::Corrupt(c) => write!(f, "corrupt pipe: {c}"),
            #[cfg(feature = "serde")]
            PipeError::Encode(e) => write!(f, "encoding a message: {e}"),
            #[cfg(feature = "serde")]
            PipeError::Decode(e) => write!(f, "decoding a message: {e}"),
        }
    }
}

impl std::error::Error for PipeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipeError::Setup(e) => Some(e),
            PipeError::Corrupt(c) => Some(c),
            #[cfg(feature = "serde")]
            PipeError::Encode(e) | PipeError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<QueueError> for PipeError {
    fn from(e: QueueError) -> Self {
        PipeError::Setup(e)
    }
}
