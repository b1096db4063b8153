//! The identity word: a pid and a start time packed into a `u64`, and the
//! real build's answers about it (this process's word, a word's liveness).
//! Below the loom switch in [`crate::sync`]: nothing here names it.

use core::fmt;

/// Bits of the pid in an identity word.
pub const PID_BITS: u32 = 22;
/// Bits of the start time in an identity word.
pub const START_BITS: u32 = 40;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
pub(super) const START_MASK: u64 = (1 << START_BITS) - 1;
/// The start field of an identity whose start time is unknown.
const START_UNKNOWN: u64 = START_MASK;
/// Every bit an identity word may use; the others are zero.
pub const IDENTITY_MASK: u64 = (1 << (PID_BITS + START_BITS)) - 1;

/// A process: its pid plus its start time, packed into a `u64`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity(pub(super) u64);

impl Identity {
    /// Packs a pid and a start time (clock ticks since boot; `None` if
    /// unknown). Returns `None` for pid 0 or a pid of 2<sup>22</sup> or
    /// more, which no Linux process has.
    pub fn new(pid: u32, start_ticks: Option<u64>) -> Option<Self> {
        let pid = u64::from(pid);
        if pid == 0 || pid > PID_MASK {
            return None;
        }
        let start = match start_ticks {
            Some(t) => t.min(START_MASK - 1),
            None => START_UNKNOWN,
        };
        Some(Self(pid | start << PID_BITS))
    }

    /// The identity held in `word` (bits outside [`IDENTITY_MASK`] are
    /// ignored), or `None` if it names nobody.
    #[inline]
    pub fn from_word(word: u64) -> Option<Self> {
        let w = word & IDENTITY_MASK;
        (w & PID_MASK != 0).then_some(Self(w))
    }

    /// The packed word: never 0, the two top bits clear.
    #[inline]
    pub fn to_word(self) -> u64 {
        self.0
    }

    /// The pid.
    #[inline]
    pub fn pid(self) -> u32 {
        (self.0 & PID_MASK) as u32
    }

    /// The start time in clock ticks since boot (its low 40 bits), if it
    /// was known when the identity was taken.
    pub fn start_ticks(self) -> Option<u64> {
        match self.0 >> PID_BITS {
            START_UNKNOWN => None,
            t => Some(t),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start_ticks() {
            Some(t) => write!(f, "Identity(pid {} started at tick {t})", self.pid()),
            None => write!(f, "Identity(pid {})", self.pid()),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pid())
    }
}

/// Under the real build: identity word of this process.
#[cfg(not(multiproc_loom))]
#[inline]
pub(crate) fn current_word() -> u64 {
    let w = crate::sys::cached_identity();
    if w != 0 {
        return w;
    }
    current_word_slow()
}

#[cfg(not(multiproc_loom))]
#[cold]
fn current_word_slow() -> u64 {
    let pid = crate::sys::current_pid();
    let start = crate::sys::current_start_ticks().map(|t| t & START_MASK);
    let w = Identity::new(pid, start).map_or(0, Identity::to_word);
    if w != 0 {
        crate::sys::cache_identity(w);
    }
    w
}

/// The identity word of `pid` without a start time (the pid alone decides
/// its liveness), or 0 for a pid no identity holds (0, or 2^22 and more).
pub(crate) fn pid_word(pid: u32) -> u64 {
    Identity::new(pid, None).map_or(0, Identity::to_word)
}

/// Under the real build: liveness of an identity word, the one test behind
/// [`Identity::is_alive`], [`word_alive`] and every liveness check of the
/// crate (through `sync::identity_alive`, where loom hooks in).
#[cfg(not(multiproc_loom))]
pub(crate) fn alive_word(word: u64) -> bool {
    let Some(id) = Identity::from_word(word) else {
        return false;
    };
    match crate::sys::pid_start_ticks(id.pid()) {
        None => false,
        // No start time on one side: the pid alone decides.
        Some(None) => true,
        Some(Some(t)) => match id.start_ticks() {
            None => true,
            Some(recorded) => t & START_MASK == recorded,
        },
    }
}
