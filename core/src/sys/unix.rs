//! Portable fallback for Unix systems without a futex: waits poll the word
//! with `sched_yield` and short sleeps, wakes are no-ops. Correct, but slower
//! and without the "no system call when uncontended" property of waking.
#![allow(clippy::disallowed_types)]

use core::sync::atomic::{AtomicU32, Ordering};

/// Waits until `*word != expected` or `deadline_ns` (as [`monotonic_ns`]
/// counts) passes; `true` if the deadline passed.
pub(crate) fn futex_wait(word: *const u32, expected: u32, deadline_ns: Option<u64>) -> bool {
    // SAFETY: `word` comes from a live `AtomicU32`.
    let atom = unsafe { AtomicU32::from_ptr(word.cast_mut()) };
    let mut sleep_us = 1u64;
    loop {
        if atom.load(Ordering::Acquire) != expected {
            return false;
        }
        if deadline_ns.is_some_and(|ns| monotonic_ns() >= ns) {
            return true;
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: (sleep_us * 1000) as _,
        };
        // SAFETY: `ts` is a valid timespec; the remainder pointer may be null.
        unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
        sleep_us = (sleep_us * 2).min(1000);
    }
}

pub(crate) fn futex_wake(_word: *const u32, _n: u32) {}

pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

pub(crate) fn yield_now() {
    // SAFETY: no preconditions.
    unsafe { libc::sched_yield() };
}

pub(crate) fn current_pid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() as u32 }
}

/// `kill(pid, 0)`: whether `pid` exists (a zombie does too: this platform
/// has no portable way to tell).
fn pid_exists(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || unsafe { *libc::__error() } == libc::EPERM
}

/// No portable way to read a process's start time: identities fall back to
/// the pid alone on this platform (documented in `identity`).
pub(crate) fn current_start_ticks() -> Option<u64> {
    None
}

pub(crate) fn pid_start_ticks(pid: u32) -> Option<Option<u64>> {
    pid_exists(pid).then_some(None)
}

pub(crate) fn pid_namespace() -> Option<u64> {
    None
}

/// No cache here: the identity word is computed each time.
pub(crate) fn cached_identity() -> u64 {
    0
}

pub(crate) fn cache_identity(_word: u64) {}

/// No atfork handler here: forks are not counted.
pub(crate) fn fork_generation() -> Option<u64> {
    None
}
