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

pub(crate) mod word;

use crate::sync;

use word::START_MASK;
pub use word::{Identity, IDENTITY_MASK, PID_BITS, START_BITS};

impl Identity {
    /// This process's identity (cached; refreshed in a child after `fork`).
    /// Under loom, the calling thread's.
    #[inline]
    pub fn current() -> Self {
        Self(sync::current_identity())
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

#[cfg(all(test, not(multiproc_loom)))]
mod tests;
