//! The errors of the message and object queue handles.

use std::fmt;

/// Why a message (or object) was not sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum MessageSendError {
    /// The queue is full (`try_send`).
    Full,
    /// The queue stayed full until the timeout (`send_timeout`).
    Timeout,
    /// Every receiver is gone (dropped, or died), or the queue was closed.
    Disconnected,
    /// The message (or the object's encoding) is longer than the queue's
    /// `max_message`. Nothing was sent.
    TooLarge {
        /// Its length in bytes.
        len: u64,
        /// The queue's `max_message`.
        max: u64,
    },
    /// The object could not be encoded (`serde` feature). Nothing was sent.
    #[cfg(feature = "serde")]
    Encode(postcard::Error),
}

impl MessageSendError {
    /// Whether this is [`MessageSendError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, MessageSendError::Disconnected)
    }
}

impl fmt::Display for MessageSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageSendError::Full => f.write_str("sending on a full queue"),
            MessageSendError::Timeout => f.write_str("timed out waiting on send"),
            MessageSendError::Disconnected => f.write_str("sending on a disconnected queue"),
            MessageSendError::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes exceeds the queue's maximum of {max}"
            ),
            #[cfg(feature = "serde")]
            MessageSendError::Encode(e) => write!(f, "cannot encode the object: {e}"),
        }
    }
}

impl std::error::Error for MessageSendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "serde")]
            MessageSendError::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// Why no message (or object) was received.
#[derive(Debug)]
#[non_exhaustive]
pub enum MessageRecvError {
    /// Nothing to receive now (`try_recv`).
    Empty,
    /// Nothing arrived before the timeout (`recv_timeout`).
    Timeout,
    /// The queue is empty and every sender is gone (dropped, or died), or
    /// it was closed and drained: nothing to receive ever again.
    Disconnected,
    /// The buffer of a copying receive is shorter than the queue's
    /// `max_message`. Nothing was received.
    BufferTooSmall {
        /// The queue's `max_message`.
        needed: u64,
    },
    /// The queue's shared memory was overwritten by something other than
    /// this crate (a slot's length or sequence number is impossible). A
    /// message with an impossible length is consumed; others may follow.
    Corrupt(multiproc_core::msgqueue::RecvError),
    /// The message is not a valid encoding of the object type (`serde`
    /// feature). It is consumed.
    #[cfg(feature = "serde")]
    Decode(postcard::Error),
}

impl MessageRecvError {
    /// Whether this is [`MessageRecvError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, MessageRecvError::Disconnected)
    }
}

impl fmt::Display for MessageRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageRecvError::Empty => f.write_str("receiving on an empty queue"),
            MessageRecvError::Timeout => f.write_str("timed out waiting on receive"),
            MessageRecvError::Disconnected => {
                f.write_str("receiving on an empty and disconnected queue")
            }
            MessageRecvError::BufferTooSmall { needed } => write!(
                f,
                "receive buffer shorter than the queue's maximum message of {needed} bytes"
            ),
            MessageRecvError::Corrupt(e) => write!(f, "queue memory: {e}"),
            #[cfg(feature = "serde")]
            MessageRecvError::Decode(e) => write!(f, "cannot decode the object: {e}"),
        }
    }
}

impl std::error::Error for MessageRecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MessageRecvError::Corrupt(e) => Some(e),
            #[cfg(feature = "serde")]
            MessageRecvError::Decode(e) => Some(e),
            _ => None,
        }
    }
}
