//! Why a send or a receive failed, and what corruption was found.

use core::fmt;

/// Why a frame could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No room for the frame (now, or before the timeout).
    Full,
    /// The message is longer than the ring's `max_frame`.
    TooLarge {
        /// The message length.
        len: u64,
        /// The ring's `max_frame`.
        max: u64,
    },
    /// The receiver released its role or died.
    Disconnected,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str("ring full"),
            SendError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the frame limit of {max}")
            }
            SendError::Disconnected => f.write_str("receiver disconnected"),
        }
    }
}

impl core::error::Error for SendError {}

/// Why no frame was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// No frame (now, or before the timeout).
    Empty,
    /// No frame, and the sender released its role or died.
    Disconnected,
    /// The next frame is longer than the buffer; it stays in the ring.
    BufferTooSmall {
        /// The frame's length.
        needed: u64,
    },
    /// The ring's shared state is impossible; it stays corrupt.
    Corrupt(Corruption),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("ring empty"),
            RecvError::Disconnected => f.write_str("sender disconnected"),
            RecvError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the frame needs {needed} bytes")
            }
            RecvError::Corrupt(c) => write!(f, "corrupt ring: {c}"),
        }
    }
}

impl core::error::Error for RecvError {}

/// What a receiver found wrong in a corrupt ring. Positions are byte
/// positions (as `head` and `tail`), not data offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// A frame header holds a length above `max_frame`.
    LengthTooLarge {
        /// Position of the header.
        pos: u64,
        /// The length found.
        len: u64,
        /// The ring's `max_frame`.
        max: u64,
    },
    /// A frame, or the frame a wrap marker promises, ends after the
    /// published tail.
    PastTail {
        /// Position of the header.
        pos: u64,
        /// Where the frame would end.
        end: u64,
        /// The published tail.
        tail: u64,
    },
    /// A frame runs past the end of the data instead of following a wrap
    /// marker.
    CrossesEnd {
        /// Position of the header.
        pos: u64,
        /// The length found.
        len: u64,
    },
    /// A wrap marker where the next frame would have fitted before the end.
    BadWrap {
        /// Position of the marker.
        pos: u64,
    },
    /// `tail - head` exceeds the capacity.
    Distance {
        /// Our head.
        head: u64,
        /// The published tail.
        tail: u64,
    },
    /// `head` or `tail` is not a multiple of 8.
    Misaligned {
        /// Our head.
        head: u64,
        /// The published tail.
        tail: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Corruption::LengthTooLarge { pos, len, max } => {
                write!(f, "frame at {pos} has length {len} above the limit {max}")
            }
            Corruption::PastTail { pos, end, tail } => {
                write!(f, "frame at {pos} ends at {end}, past the tail {tail}")
            }
            Corruption::CrossesEnd { pos, len } => {
                write!(
                    f,
                    "frame at {pos} of length {len} crosses the end of the buffer"
                )
            }
            Corruption::BadWrap { pos } => {
                write!(f, "wrap marker at {pos} where the next frame fits")
            }
            Corruption::Distance { head, tail } => {
                write!(f, "tail {tail} is more than a ring ahead of head {head}")
            }
            Corruption::Misaligned { head, tail } => {
                write!(f, "misaligned position (head {head}, tail {tail})")
            }
        }
    }
}

impl core::error::Error for Corruption {}
