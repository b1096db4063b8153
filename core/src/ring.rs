//! What the rings share: their errors, the index line, the nap and the
//! liveness slice.
//!
//! [`spsc`](crate::spsc), [`mpmc`](crate::mpmc), [`msgqueue`](crate::msgqueue)
//! and [`bytering`](crate::bytering) build on these; none of them reaches
//! into another ring for them. The errors are public through the rings'
//! modules (`spsc::PushError` and `mpmc::PushError` are the same type).

use core::fmt;
use core::mem::align_of;
use core::time::Duration;

use crate::region::ShmSafe;
use crate::sync::AtomicU64;
use crate::time::Deadline;
use crate::wait::{EventCount, WaitKey};

/// The longest nap of a blocked call: a blocked handle checks that its
/// peer (or a slot's owner) is alive at least this often.
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(20);

/// Why a push did not happen; the value is handed back.
///
/// # Examples
///
/// ```
/// use multiproc_core::spsc::PushError;
/// let e = PushError::Full(7u32);
/// assert_eq!(format!("{e:?}"), "Full(..)");
/// assert_eq!(e.to_string(), "ring is full");
/// assert_eq!(e.into_inner(), 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring is full (for a timed push: it stayed full until the
    /// deadline).
    Full(T),
    /// The other side is gone (SPSC: the consumer released its role or
    /// died) or the ring is closed (MPMC).
    Disconnected(T),
    /// The shared indices are impossible: the memory was overwritten by
    /// something other than this ring's code. Nothing was written.
    Corrupt(T),
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(v) | PushError::Disconnected(v) | PushError::Corrupt(v) => v,
        }
    }

    /// Whether this is [`PushError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full(_))
    }

    /// Whether this is [`PushError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, PushError::Disconnected(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Disconnected(_) => "Disconnected(..)",
            PushError::Corrupt(_) => "Corrupt(..)",
        })
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "ring is full",
            PushError::Disconnected(_) => "ring is disconnected",
            PushError::Corrupt(_) => "ring indices are corrupt",
        })
    }
}

impl<T> core::error::Error for PushError<T> {}

/// Why a pop returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// The ring is empty (for a timed pop: it stayed empty until the
    /// deadline).
    Empty,
    /// The ring is empty and will stay so: the producer is gone (SPSC) or
    /// the ring is closed (MPMC). Everything published was popped first.
    Disconnected,
    /// The shared indices are impossible: the memory was overwritten by
    /// something other than this ring's code. Nothing was read.
    Corrupt,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PopError::Empty => "ring is empty",
            PopError::Disconnected => "ring is disconnected",
            PopError::Corrupt => "ring indices are corrupt",
        })
    }
}

impl core::error::Error for PopError {}

/// A 64-bit index alone on a 128-byte line, so the side that writes it does
/// not slow down the side that writes the other one.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct IndexLine {
    pub(crate) pos: AtomicU64,
}

impl IndexLine {
    pub(crate) fn new(v: u64) -> Self {
        Self {
            pos: AtomicU64::new(v),
        }
    }
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(IndexLine, [u8; 128]);
static_assertions::const_assert_eq!(align_of::<IndexLine>(), 128);

// SAFETY: repr(C) over one atomic u64 (valid for every bit pattern, no
// pointers), padded to 128 bytes; size and alignment pinned above.
unsafe impl ShmSafe for IndexLine {}

/// Sleeps on `ec` until `until` or a notification: a nap that ends on its
/// own if nobody notifies.
///
/// Under loom the clock is frozen and the wait ends only by a notification;
/// the model's notifiers are exact (see [`Bell::ring`]), so that is what
/// it checks.
pub(crate) fn nap(ec: &EventCount, key: WaitKey, until: Deadline) {
    let _ = ec.wait(key, Some(until));
}
