//! The errors of the timed waits of the handles without a guard
//! ([`Event`](super::Event), [`Semaphore`](super::Semaphore),
//! [`BoundedSemaphore`](super::BoundedSemaphore)): a wait that runs out is
//! an `Err`, as `lock_timeout`'s [`LockTimeoutError::TimedOut`] is.
//!
//! [`LockTimeoutError::TimedOut`]: super::LockTimeoutError::TimedOut

use std::fmt;

use multiproc_core::semaphore::OwnerDied;

/// A timed wait ran out before what it waited for happened
/// ([`Event::wait_timeout`](super::Event::wait_timeout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for TimedOut {}

/// Why [`Semaphore::acquire_timeout`](super::Semaphore::acquire_timeout)
/// returned without a plain unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireTimeoutError {
    /// No unit came free before the timeout: nothing is acquired.
    TimedOut,
    /// The unit taken is one a process held when it died: it **is**
    /// acquired, as a poisoned lock is locked (release it as any other).
    OwnerDied(OwnerDied),
}

impl fmt::Display for AcquireTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireTimeoutError::TimedOut => f.write_str("timed out waiting for a semaphore unit"),
            AcquireTimeoutError::OwnerDied(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for AcquireTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireTimeoutError::OwnerDied(e) => Some(e),
            AcquireTimeoutError::TimedOut => None,
        }
    }
}

impl From<OwnerDied> for AcquireTimeoutError {
    fn from(e: OwnerDied) -> Self {
        AcquireTimeoutError::OwnerDied(e)
    }
}
