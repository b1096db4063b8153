//! What a lock call reports instead of a plain guard: poison and timeouts.

use core::fmt;

#[cfg(doc)]
use super::{Mutex, MutexGuard};
use super::{OWNER_DIED_BIT, PID_MASK};

/// Why a lock is poisoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoisonCause {
    /// Process `pid` died (was killed) while holding the lock: whatever it
    /// was writing may be half-written.
    OwnerDied {
        /// The dead owner's process id.
        pid: u32,
    },
    /// A holder panicked (reported by the std layer through
    /// [`MutexGuard::poison`]).
    Panicked,
}

impl PoisonCause {
    pub(super) fn from_word(p: u32) -> Option<PoisonCause> {
        match p {
            0 => None,
            p if p & OWNER_DIED_BIT != 0 => Some(PoisonCause::OwnerDied { pid: p & PID_MASK }),
            _ => Some(PoisonCause::Panicked),
        }
    }
}

impl fmt::Display for PoisonCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoisonCause::OwnerDied { pid } => {
                write!(f, "its holder (pid {pid}) died while holding it")
            }
            PoisonCause::Panicked => f.write_str("a holder panicked while holding it"),
        }
    }
}

/// The lock was acquired, but it is poisoned: the data may be inconsistent.
///
/// Holds what the operation produced (usually the guard), so the caller can
/// inspect and repair the data: [`into_inner`](Self::into_inner).
pub struct PoisonError<G> {
    pub(super) guard: G,
    pub(super) cause: PoisonCause,
}

impl<G> PoisonError<G> {
    /// A poison error carrying `guard`.
    pub fn new(guard: G, cause: PoisonCause) -> Self {
        Self { guard, cause }
    }

    /// Why the lock is poisoned.
    pub fn cause(&self) -> PoisonCause {
        self.cause
    }

    /// The guard (or value), to go on despite the poison.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard (or value).
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard (or value).
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// The same poison around another payload.
    pub fn map<U>(self, f: impl FnOnce(G) -> U) -> PoisonError<U> {
        PoisonError {
            guard: f(self.guard),
            cause: self.cause,
        }
    }
}

impl<G> fmt::Debug for PoisonError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoisonError")
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

impl<G> fmt::Display for PoisonError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "poisoned lock: {}", self.cause)
    }
}

impl<G> core::error::Error for PoisonError<G> {}

/// The result of a blocking lock: the guard, or the guard inside a
/// [`PoisonError`]. The same shape as `std::sync::LockResult`.
pub type LockResult<G> = Result<G, PoisonError<G>>;

/// Why [`Mutex::try_lock`] did not return a clean guard.
pub enum TryLockError<G> {
    /// Another holder has the lock.
    WouldBlock,
    /// Acquired, but poisoned.
    Poisoned(PoisonError<G>),
}

impl<G> TryLockError<G> {
    /// The same error around another payload.
    pub fn map<U>(self, f: impl FnOnce(G) -> U) -> TryLockError<U> {
        match self {
            TryLockError::WouldBlock => TryLockError::WouldBlock,
            TryLockError::Poisoned(p) => TryLockError::Poisoned(p.map(f)),
        }
    }
}

impl<G> From<PoisonError<G>> for TryLockError<G> {
    fn from(e: PoisonError<G>) -> Self {
        TryLockError::Poisoned(e)
    }
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::Poisoned(p) => f.debug_tuple("Poisoned").field(p).finish(),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("lock is held by another holder"),
            TryLockError::Poisoned(p) => fmt::Display::fmt(p, f),
        }
    }
}

impl<G> core::error::Error for TryLockError<G> {}

/// Why [`Mutex::lock_timeout`] did not return a clean guard.
pub enum LockTimeoutError<G> {
    /// The timeout passed with the lock still held by a live process.
    TimedOut,
    /// Acquired, but poisoned.
    Poisoned(PoisonError<G>),
}

impl<G> LockTimeoutError<G> {
    /// The same error around another payload.
    pub fn map<U>(self, f: impl FnOnce(G) -> U) -> LockTimeoutError<U> {
        match self {
            LockTimeoutError::TimedOut => LockTimeoutError::TimedOut,
            LockTimeoutError::Poisoned(p) => LockTimeoutError::Poisoned(p.map(f)),
        }
    }
}

impl<G> From<PoisonError<G>> for LockTimeoutError<G> {
    fn from(e: PoisonError<G>) -> Self {
        LockTimeoutError::Poisoned(e)
    }
}

impl<G> fmt::Debug for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::TimedOut => f.write_str("TimedOut"),
            LockTimeoutError::Poisoned(p) => f.debug_tuple("Poisoned").field(p).finish(),
        }
    }
}

impl<G> fmt::Display for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::TimedOut => f.write_str("timed out waiting for the lock"),
            LockTimeoutError::Poisoned(p) => fmt::Display::fmt(p, f),
        }
    }
}

impl<G> core::error::Error for LockTimeoutError<G> {}
