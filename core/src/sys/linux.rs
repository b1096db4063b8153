//! Linux: `futex(2)` on shared (not private) words, `CLOCK_MONOTONIC`, and
//! `/proc` for liveness.
// The cached pid below is process-local state, never shared memory, and loom
// does not model it: the facade rule does not apply here.
#![allow(clippy::disallowed_types)]

use core::sync::atomic::{AtomicU32, Ordering};

use crate::sync::WaitOutcome;
use crate::time::Deadline;

/// `futex(FUTEX_WAIT_BITSET)` with an absolute `CLOCK_MONOTONIC` deadline.
///
/// Deliberately without `FUTEX_PRIVATE_FLAG`: the word may be mapped by other
/// processes, at other addresses, and the kernel must key it by the page.
pub(crate) fn futex_wait(
    word: *const u32,
    expected: u32,
    deadline: Option<Deadline>,
) -> WaitOutcome {
    let ts;
    let ts_ptr = match deadline {
        None => core::ptr::null(),
        Some(d) => {
            let ns = d.as_monotonic_nanos();
            if monotonic_ns() >= ns {
                return WaitOutcome::TimedOut;
            }
            ts = libc::timespec {
                tv_sec: (ns / 1_000_000_000).min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as _,
            };
            &ts as *const libc::timespec
        }
    };
    // SAFETY: `word` points to a live, 4-byte aligned u32 (it comes from an
    // `AtomicU32`); the kernel only reads it. `ts_ptr` is null or points to a
    // timespec that outlives the call. The bitset argument must be non-zero.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            core::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if r == -1 && errno() == libc::ETIMEDOUT {
        WaitOutcome::TimedOut
    } else {
        // 0: woken; EAGAIN: the value had changed; EINTR: a signal.
        WaitOutcome::Woken
    }
}

/// `futex(FUTEX_WAKE)`: wakes up to `n` sleepers on `word`, in any process.
pub(crate) fn futex_wake(word: *const u32, n: u32) {
    // SAFETY: `word` points to a live, aligned u32; FUTEX_WAKE does not
    // dereference it beyond keying the wait queue.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE,
            n.min(i32::MAX as u32) as libc::c_int,
        );
    }
}

fn errno() -> libc::c_int {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Nanoseconds on `CLOCK_MONOTONIC` (served by the vDSO: no system call).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `sched_yield(2)`.
pub(crate) fn yield_now() {
    // SAFETY: no preconditions.
    unsafe { libc::sched_yield() };
}

/// This process's id, cached: `getpid` is a real system call on current
/// glibc, and lock fast paths write the pid into the lock word.
///
/// A `pthread_atfork` child handler clears the cache, so a child made with
/// `fork(2)` (through libc) sees its own pid. A child made by a raw `clone`
/// system call that bypasses libc would keep the parent's pid: don't.
static PID: AtomicU32 = AtomicU32::new(0);
static ATFORK: AtomicU32 = AtomicU32::new(0);

extern "C" fn clear_pid_after_fork() {
    PID.store(0, Ordering::Relaxed);
}

#[inline]
pub(crate) fn current_pid() -> u32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    current_pid_slow()
}

#[cold]
fn current_pid_slow() -> u32 {
    if ATFORK.swap(1, Ordering::AcqRel) == 0 {
        // SAFETY: the handler is a plain `extern "C" fn()` that only stores to
        // a static atomic: async-signal-safe, as a fork child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(clear_pid_after_fork)) };
    }
    // SAFETY: getpid has no preconditions.
    let p = unsafe { libc::getpid() } as u32;
    PID.store(p, Ordering::Relaxed);
    p
}

/// Whether `pid` names a running process. A zombie (dead but not reaped) is
/// dead here: it will never unlock anything.
///
/// Reads the state letter from `/proc/<pid>/stat`; without `/proc`, falls
/// back to `kill(pid, 0)`, which cannot tell zombies apart.
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    let mut path = [0u8; 32];
    let prefix = b"/proc/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut n = prefix.len() + write_decimal(&mut path[prefix.len()..], pid);
    path[n..n + 5].copy_from_slice(b"/stat");
    n += 5;
    path[n] = 0;

    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return match errno() {
            libc::ENOENT | libc::ESRCH => false,
            _ => kill_probe(pid),
        };
    }
    let mut buf = [0u8; 512];
    // SAFETY: `buf` is writable for its length; `fd` is open.
    let len = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` is ours to close.
    unsafe { libc::close(fd) };
    if len <= 0 {
        // The process went away between open and read.
        return false;
    }
    match stat_state(&buf[..len as usize]) {
        Some(b'Z' | b'X' | b'x') => false,
        Some(_) => true,
        None => kill_probe(pid),
    }
}

fn kill_probe(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || errno() == libc::EPERM
}

/// The state letter of a `/proc/<pid>/stat` line: the first non-blank byte
/// after the last `)` (the command name may itself hold `)`).
fn stat_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat[close + 1..].iter().copied().find(|b| *b != b' ')
}

/// Writes `v` in decimal at the start of `out`, returning the length.
fn write_decimal(out: &mut [u8], mut v: u32) -> usize {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = &tmp[i..];
    out[..digits.len()].copy_from_slice(digits);
    digits.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_state_after_last_paren() {
        assert_eq!(stat_state(b"12 (a) b) S 1 2"), Some(b'S'));
        assert_eq!(stat_state(b"12 (zomb) Z 1"), Some(b'Z'));
        assert_eq!(stat_state(b"garbage"), None);
    }

    #[test]
    fn decimal() {
        let mut b = [0u8; 10];
        assert_eq!(write_decimal(&mut b, 0), 1);
        assert_eq!(&b[..1], b"0");
        assert_eq!(write_decimal(&mut b, u32::MAX), 10);
        assert_eq!(&b[..10], b"4294967295");
    }

    #[test]
    fn self_is_alive_and_nonsense_is_dead() {
        assert!(pid_alive(current_pid()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        // pid_max is at most 2^22 on Linux.
        assert!(!pid_alive((1 << 22) + 7));
    }

    #[test]
    fn cached_pid_matches_getpid() {
        // SAFETY: no preconditions.
        assert_eq!(current_pid(), unsafe { libc::getpid() } as u32);
    }

    #[test]
    fn futex_times_out_and_sees_changed_value() {
        let w = AtomicU32::new(5);
        let d = Deadline::from_monotonic_nanos(monotonic_ns() + 1_000_000);
        assert_eq!(futex_wait(w.as_ptr(), 5, Some(d)), WaitOutcome::TimedOut);
        assert_eq!(futex_wait(w.as_ptr(), 6, None), WaitOutcome::Woken);
    }
}
