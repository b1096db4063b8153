//! Process identity that a reused pid cannot pass.
//!
//! A bare pid does not name a process for long: Linux hands pids out
//! cyclically up to `pid_max` (32768 on many machines), so a lock owner
//! killed with `SIGKILL` can have its pid reused by an unrelated process
//! within milliseconds, and "is pid 4242 alive?" then answers for the wrong
//! process. An [`Identity`] is the pid **plus the process's start time**
//! (field 22 of `/proc/<pid>/stat`, in clock ticks since boot). A later
//! process with the same pid started later, so it fails the comparison,
//! as long as the two starts fall in different clock ticks (10 ms at the
//! usual 100 Hz). Pids are handed out cyclically, so for two processes
//! with one pid to start within one tick, the first must start, exit, be
//! reaped, and the whole pid space be used up in between: not by chance,
//! only on purpose (`ns_last_pid`, `clone3` with `set_tid`; tests that
//! arrange a reuse wait two ticks first). (The same pair is systemd's
//! `pidref` without the pidfd.)
//!
//! # The identity word
//!
//! An identity packs into one `u64`, so it can be written with the same
//! atomic store or compare-and-swap that takes a lock or a slot:
//!
//! ```text
//!  63 62 61                                   22 21                0
//! +-----+---------------------------------------+------------------+
//! | 0 0 |  start time, clock ticks (40 bits)    |  pid (22 bits)   |
//! +-----+---------------------------------------+------------------+
//! ```
//!
//! - Linux pids are below 2<sup>22</sup> (`PID_MAX_LIMIT`); 40 bits of
//!   ticks at the usual 100 Hz last 348 years of uptime.
//! - The two top bits are always zero, free for the users of the word
//!   (a role word keeps its `CLOSED` and `HANDED` marks there).
//! - `0` is "nobody".
//! - Where the start time cannot be read (no `/proc`), the start field is
//!   all ones ([`Identity::start_ticks`] is `None`) and the identity falls
//!   back to the pid alone, with the reuse limit of a bare pid.
//!
//! # Liveness
//!
//! [`Identity::is_alive`] is one read of `/proc/<pid>/stat`: the process is
//! alive if that pid runs, is not a zombie, and started at the recorded
//! tick. A reused pid fails the last test; a zombie (killed, not yet
//! reaped) fails the second, so a dead lock holder is noticed before its
//! parent reaps it.
//!
//! # Pid namespaces
//!
//! A pid means nothing in another pid namespace: the same process has
//! another pid there, and `/proc/<pid>` names another process or none. So
//! a region records the pid namespace of its creator
//! ([`pid_namespace`]), and attaching from another namespace is refused
//! with a typed error rather than trusting pids across it.
//!
//! Under loom, a thread stands in for a process: its identity is a
//! per-thread number, alive until the thread declares itself dead.

use core::fmt;

use crate::sync;

/// Bits of the pid in an identity word.
pub const PID_BITS: u32 = 22;
/// Bits of the start time in an identity word.
pub const START_BITS: u32 = 40;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
const START_MASK: u64 = (1 << START_BITS) - 1;
/// The start field of an identity whose start time is unknown.
const START_UNKNOWN: u64 = START_MASK;
/// Every bit an identity word may use; the others are zero.
pub const IDENTITY_MASK: u64 = (1 << (PID_BITS + START_BITS)) - 1;

/// A process: its pid plus its start time, packed into a `u64`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity(u64);

impl Identity {
    /// This process's identity (cached; refreshed in a child after `fork`).
    /// Under loom, the calling thread's.
    #[inline]
    pub fn current() -> Self {
        Self(sync::current_identity())
    }

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

    /// Whether this process still runs: its pid runs, is not a zombie, and
    /// started at the recorded time (so a reused pid is dead here). One
    /// read of `/proc/<pid>/stat`: for slow paths only.
    ///
    /// Without a start time on either side (no `/proc`), only whether the
    /// pid runs.
    #[inline]
    pub fn is_alive(self) -> bool {
        sync::identity_alive(self.0)
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

/// Whether a process with exactly this identity word runs (see
/// [`Identity::is_alive`]); `false` for a word naming nobody.
pub fn word_alive(word: u64) -> bool {
    Identity::from_word(word).is_some_and(Identity::is_alive)
}

/// The identity of the process `pid` now holds, if one runs there (not a
/// zombie); for tests and diagnostics.
pub fn of_pid(pid: u32) -> Option<Identity> {
    match crate::sys::pid_start_ticks(pid)? {
        Some(t) => Identity::new(pid, Some(t & START_MASK)),
        None => Identity::new(pid, None),
    }
}

/// The inode number of this process's pid namespace, or `None` if it
/// cannot be read (no `/proc`). Two processes with the same number see the
/// same pids. Under loom, always `Some(1)`.
pub fn pid_namespace() -> Option<u64> {
    sync::pid_namespace()
}

/// A number that changes in every child made by `fork(2)` (through libc):
/// a value recorded in a process equals the current one only in that same
/// process, never in a fork child or grandchild. It costs one load, where
/// telling a child by its [`Identity`] reads `/proc` once in the child.
/// `None` where forks cannot be counted (the `pthread_atfork` handler that
/// counts them could not be registered, or the platform has none). Under
/// loom, always `Some(0)`.
pub fn fork_generation() -> Option<u64> {
    #[cfg(not(multiproc_loom))]
    return crate::sys::fork_generation();
    #[cfg(multiproc_loom)]
    Some(0)
}

/// Whether this platform and process can tell a reused pid from its
/// earlier owner (the start time of processes is readable).
pub fn reuse_proof() -> bool {
    Identity::current().start_ticks().is_some()
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

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks() {
        let id = Identity::new(4242, Some(123_456)).unwrap();
        assert_eq!(id.pid(), 4242);
        assert_eq!(id.start_ticks(), Some(123_456));
        assert_eq!(Identity::from_word(id.to_word()), Some(id));
        assert_eq!(id.to_word() & !IDENTITY_MASK, 0);
        assert_eq!(Identity::from_word(id.to_word() | 3 << 62), Some(id));
        assert_eq!(Identity::new(0, Some(1)), None);
        assert_eq!(Identity::new(1 << 22, Some(1)), None);
        assert_eq!(Identity::from_word(0), None);
        let unknown = Identity::new(7, None).unwrap();
        assert_eq!(unknown.start_ticks(), None);
    }

    #[test]
    fn self_is_alive_and_a_reused_pid_is_not() {
        let me = Identity::current();
        assert!(me.is_alive());
        assert_eq!(of_pid(me.pid()), Some(me));
        // The same pid with another start time: a process that had this pid
        // before (or will after) is not this one.
        let t = me.start_ticks().unwrap();
        let earlier = Identity::new(me.pid(), Some(t.wrapping_sub(1) & START_MASK)).unwrap();
        let later = Identity::new(me.pid(), Some(t + 1)).unwrap();
        assert!(!earlier.is_alive());
        assert!(!later.is_alive());
        assert!(!word_alive(0));
        assert!(reuse_proof());
        assert!(pid_namespace().is_some());
    }

    #[test]
    fn a_fork_child_has_its_own_identity_not_the_cached_parents() {
        let parent = Identity::current();
        // SAFETY: the child only reads /proc, compares and `_exit`s; the
        // test harness's other threads take no lock it needs here (no
        // allocation, no stdio).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let me = Identity::current();
            // SAFETY: getpid has no preconditions.
            let real = unsafe { libc::getpid() } as u32;
            let ok = me.pid() == real && me != parent && of_pid(real) == Some(me);
            // SAFETY: leaves the forked child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: `pid` is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(Identity::current(), parent);
    }

    #[test]
    fn fork_generation_differs_in_a_child_and_a_grandchild() {
        let parent = fork_generation().expect("the atfork handler registers");
        assert_eq!(fork_generation(), Some(parent));
        // SAFETY: the child only forks, waits and `_exit`s (no allocation,
        // no lock), as does the grandchild.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let child = fork_generation();
            let mut ok = child.is_some_and(|g| g != parent);
            // SAFETY: as above.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let grand = fork_generation();
                let fine = grand.is_some_and(|g| g != parent && Some(g) != child);
                // SAFETY: leaves the forked grandchild at once.
                unsafe { libc::_exit(if fine { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: `pid` is our child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            ok &= pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            ok &= fork_generation() == child;
            // SAFETY: leaves the forked child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: `pid` is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(fork_generation(), Some(parent));
    }

    #[test]
    fn a_killed_child_is_dead_as_a_zombie_and_once_reaped() {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid out-array of two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only calls `read` and `_exit`, both
        // async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: blocks until the parent kills us; `b` is writable.
            unsafe { libc::read(fds[0], (&mut b as *mut u8).cast(), 1) };
            // SAFETY: leaves the forked child at once.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0);
        let child = of_pid(pid as u32).expect("a blocked child runs");
        assert!(child.is_alive());
        assert_ne!(child, Identity::current());
        // SAFETY: `pid` is our child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Killed, not reaped: a zombie, dead here.
        while child.is_alive() {
            std::thread::yield_now();
        }
        let mut status = 0;
        // SAFETY: `pid` is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(!child.is_alive());
        // SAFETY: both descriptors are ours.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
