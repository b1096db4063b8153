//! Deadlines on the monotonic clock, usable without `std`.

use core::time::Duration;

/// A point on the monotonic clock (`CLOCK_MONOTONIC`), by which a blocking
/// call gives up.
///
/// The clock is the same in every process on the machine, so a deadline may
/// be computed in one process and honoured in another. Under
/// `--cfg multiproc_loom` the clock is frozen at zero.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use multiproc_core::time::Deadline;
///
/// let d = Deadline::after(Duration::from_secs(5));
/// assert!(!d.has_passed());
/// assert!(Deadline::after(Duration::ZERO).has_passed());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at_ns: u64,
}

impl Deadline {
    /// The deadline `timeout` from now. Saturates far in the future.
    #[inline]
    pub fn after(timeout: Duration) -> Self {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Self {
            at_ns: now_ns().saturating_add(ns),
        }
    }

    /// The deadline at `ns` nanoseconds on the monotonic clock.
    #[inline]
    pub const fn from_monotonic_nanos(ns: u64) -> Self {
        Self { at_ns: ns }
    }

    /// Nanoseconds on the monotonic clock.
    #[inline]
    pub const fn as_monotonic_nanos(self) -> u64 {
        self.at_ns
    }

    /// Whether the deadline is reached.
    #[inline]
    pub fn has_passed(self) -> bool {
        now_ns() >= self.at_ns
    }

    /// Time left until the deadline (zero if passed).
    #[inline]
    pub fn remaining(self) -> Duration {
        Duration::from_nanos(self.at_ns.saturating_sub(now_ns()))
    }

    /// The earlier of `self` and `other`.
    #[inline]
    #[must_use]
    pub fn min(self, other: Option<Deadline>) -> Deadline {
        match other {
            Some(o) if o.at_ns < self.at_ns => o,
            _ => self,
        }
    }
}

/// Nanoseconds on the monotonic clock (zero under loom).
#[inline]
pub fn now_ns() -> u64 {
    #[cfg(not(multiproc_loom))]
    return crate::sys::monotonic_ns();
    #[cfg(multiproc_loom)]
    return 0;
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn after_saturates() {
        let d = Deadline::after(Duration::MAX);
        assert_eq!(d.as_monotonic_nanos(), u64::MAX);
        assert!(!d.has_passed());
    }

    #[test]
    fn min_picks_earlier() {
        let a = Deadline::from_monotonic_nanos(10);
        let b = Deadline::from_monotonic_nanos(5);
        assert_eq!(a.min(Some(b)), b);
        assert_eq!(b.min(Some(a)), b);
        assert_eq!(a.min(None), a);
    }

    #[test]
    fn clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert!(Deadline::from_monotonic_nanos(a).has_passed());
    }
}
