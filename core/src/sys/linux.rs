//! Linux: `futex(2)` on shared (not private) words, `CLOCK_MONOTONIC`, and
//! `/proc` for liveness.
// The cached pid below is process-local state, never shared memory, and loom
// does not model it: the facade rule does not apply here.
#![allow(clippy::disallowed_types)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `futex(FUTEX_WAIT_BITSET)` with an absolute `CLOCK_MONOTONIC` deadline
/// (`deadline_ns`, as [`monotonic_ns`] counts). Returns `true` if the
/// deadline passed, `false` if woken, interrupted, or the value had already
/// changed (the caller re-checks).
///
/// Deliberately without `FUTEX_PRIVATE_FLAG`: the word may be mapped by other
/// processes, at other addresses, and the kernel must key it by the page.
pub(crate) fn futex_wait(word: *const u32, expected: u32, deadline_ns: Option<u64>) -> bool {
    let ts;
    let ts_ptr = match deadline_ns {
        None => core::ptr::null(),
        Some(ns) => {
            if monotonic_ns() >= ns {
                return true;
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
    // Otherwise 0: woken; EAGAIN: the value had changed; EINTR: a signal.
    r == -1 && errno() == libc::ETIMEDOUT
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
/// A `pthread_atfork` child handler clears the caches (pid, start time and
/// pid namespace), so a child made with `fork(2)` (through libc) sees its
/// own. The handler is registered *before* anything is cached
/// ([`ATFORK_DONE`]): a value cached while another thread is still
/// registering it could survive a fork into the child, which would then
/// write its parent's identity into lock words. Until registration is
/// complete, every call asks the kernel. A child made by a raw `clone`
/// system call that bypasses libc would keep the parent's values: don't.
static PID: AtomicU32 = AtomicU32::new(0);
/// This process's start time in clock ticks since boot, plus one (0: not
/// cached yet).
static START: AtomicU64 = AtomicU64::new(0);
/// The inode of this process's pid namespace (0: not cached yet).
static PIDNS: AtomicU64 = AtomicU64::new(0);
/// This process's packed identity word (`crate::identity`), 0: not cached.
static IDENT: AtomicU64 = AtomicU64::new(0);
/// How many `fork`s lie between the first process that registered the
/// atfork handler and this one: the handler adds one in every child.
static FORKS: AtomicU64 = AtomicU64::new(0);
/// Registration of the atfork handler: not started, in progress, done.
static ATFORK: AtomicU32 = AtomicU32::new(ATFORK_NONE);
const ATFORK_NONE: u32 = 0;
const ATFORK_BUSY: u32 = 1;
const ATFORK_DONE: u32 = 2;

extern "C" fn clear_caches_after_fork() {
    PID.store(0, Ordering::Relaxed);
    START.store(0, Ordering::Relaxed);
    PIDNS.store(0, Ordering::Relaxed);
    IDENT.store(0, Ordering::Relaxed);
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Whether values may be cached: true once the atfork handler that clears
/// them is registered (registering it on first call).
fn may_cache() -> bool {
    match ATFORK.compare_exchange(
        ATFORK_NONE,
        ATFORK_BUSY,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            // SAFETY: the handler is a plain `extern "C" fn()` that only
            // stores to static atomics: async-signal-safe, as a fork child
            // handler must be.
            let r = unsafe { libc::pthread_atfork(None, None, Some(clear_caches_after_fork)) };
            // Release: pairs with the Acquire above and below; a thread that
            // sees DONE caches only after the handler exists.
            ATFORK.store(
                if r == 0 { ATFORK_DONE } else { ATFORK_NONE },
                Ordering::Release,
            );
            r == 0
        }
        Err(state) => state == ATFORK_DONE,
    }
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
    let cache = may_cache();
    // SAFETY: getpid has no preconditions.
    let p = unsafe { libc::getpid() } as u32;
    if cache {
        PID.store(p, Ordering::Relaxed);
    }
    p
}

/// This process's identity word as cached by [`cache_identity`] (0: none
/// yet): one load on the fast paths that record an owner.
#[inline]
pub(crate) fn cached_identity() -> u64 {
    IDENT.load(Ordering::Relaxed)
}

/// Caches this process's identity word (cleared in a fork child, like the
/// pid), once the atfork handler that clears it is registered.
pub(crate) fn cache_identity(word: u64) {
    if may_cache() {
        IDENT.store(word, Ordering::Relaxed);
    }
}

/// This process's fork generation (see [`FORKS`]), or `None` if the
/// atfork handler that counts forks could not be registered.
pub(crate) fn fork_generation() -> Option<u64> {
    // Relaxed: the counter is this process's own, written only by the
    // atfork handler in the child before any of its code runs.
    may_cache().then(|| FORKS.load(Ordering::Relaxed))
}

/// This process's start time (field 22 of `/proc/self/stat`, clock ticks
/// since boot), cached like the pid; `None` without a readable `/proc`.
pub(crate) fn current_start_ticks() -> Option<u64> {
    let s = START.load(Ordering::Relaxed);
    if s != 0 {
        return Some(s - 1);
    }
    let cache = may_cache();
    let ticks = read_stat(b"self", 4).ok()?.start?;
    if cache {
        START.store(ticks + 1, Ordering::Relaxed);
    }
    Some(ticks)
}

/// The start time of process `pid` in clock ticks since boot, or `None` if
/// no such process runs (it does not exist, or is a zombie), as one read of
/// `/proc/<pid>/stat`. `Some(None)` means it runs but its start time could
/// not be read (no `/proc`: the `kill(pid, 0)` probe answered).
pub(crate) fn pid_start_ticks(pid: u32) -> Option<Option<u64>> {
    if pid == 0 || pid > i32::MAX as u32 {
        return None;
    }
    let mut digits = [0u8; 10];
    let n = write_decimal(&mut digits, pid);
    match read_stat(&digits[..n], n) {
        Ok(stat) => match stat.state {
            Some(b'Z' | b'X' | b'x') => None,
            Some(_) => Some(stat.start),
            None => kill_probe(pid).then_some(None),
        },
        Err(StatError::Gone) => None,
        Err(StatError::Unreadable) => kill_probe(pid).then_some(None),
    }
}

/// The inode number of this process's pid namespace (`/proc/self/ns/pid`),
/// cached; `None` where it cannot be read.
pub(crate) fn pid_namespace() -> Option<u64> {
    let v = PIDNS.load(Ordering::Relaxed);
    if v != 0 {
        return Some(v);
    }
    let cache = may_cache();
    // SAFETY: an all-zero `stat` is a valid out-buffer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: the path is NUL-terminated; `st` is a valid out-pointer.
    let r = unsafe { libc::stat(c"/proc/self/ns/pid".as_ptr(), &mut st) };
    if r != 0 || st.st_ino == 0 {
        return None;
    }
    let ino = st.st_ino as u64;
    if cache {
        PIDNS.store(ino, Ordering::Relaxed);
    }
    Some(ino)
}

/// What [`read_stat`] found.
struct Stat {
    /// The state letter, if the line could be parsed.
    state: Option<u8>,
    /// Field 22, the start time in clock ticks since boot.
    start: Option<u64>,
}

enum StatError {
    /// No such process (or it went away between open and read).
    Gone,
    /// `/proc` could not be read for another reason.
    Unreadable,
}

/// Reads `/proc/<name>/stat` (`name` is `self` or decimal digits, `len`
/// bytes of it) with one open, read and close.
fn read_stat(name: &[u8], len: usize) -> Result<Stat, StatError> {
    let mut path = [0u8; 32];
    let prefix = b"/proc/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut n = prefix.len();
    path[n..n + len].copy_from_slice(&name[..len]);
    n += len;
    path[n..n + 5].copy_from_slice(b"/stat");
    n += 5;
    path[n] = 0;

    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(match errno() {
            libc::ENOENT | libc::ESRCH => StatError::Gone,
            _ => StatError::Unreadable,
        });
    }
    let mut buf = [0u8; 512];
    // SAFETY: `buf` is writable for its length; `fd` is open.
    let len = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` is ours to close.
    unsafe { libc::close(fd) };
    if len <= 0 {
        // The process went away between open and read.
        return Err(StatError::Gone);
    }
    let stat = &buf[..len as usize];
    Ok(Stat {
        state: stat_state(stat),
        start: stat_start(stat),
    })
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

/// Field 22 of a `/proc/<pid>/stat` line (start time, clock ticks since
/// boot): the 20th field after the command name's closing `)`.
fn stat_start(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let field = stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(19)?;
    let mut v: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
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
    fn parses_start_time_field_22() {
        // Fields 3 (state) to 22 (start time) after the command name.
        let line =
            b"77 (a) b (c)) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(stat_start(line), Some(123456));
        assert_eq!(stat_start(b"77 (short) S 1 2"), None);
        assert_eq!(
            stat_start(b"77 (x) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12a4"),
            None
        );
    }

    #[test]
    fn own_start_time_matches_proc_and_is_stable() {
        let mine = current_start_ticks().unwrap();
        assert_eq!(pid_start_ticks(current_pid()), Some(Some(mine)));
        assert_eq!(current_start_ticks(), Some(mine));
        assert_eq!(pid_start_ticks(0), None);
        assert_eq!(pid_start_ticks((1 << 22) + 7), None);
        assert!(pid_namespace().is_some());
    }

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
        assert!(pid_start_ticks(current_pid()).is_some());
        assert!(pid_start_ticks(0).is_none());
        assert!(pid_start_ticks(u32::MAX).is_none());
        // pid_max is at most 2^22 on Linux.
        assert!(pid_start_ticks((1 << 22) + 7).is_none());
    }

    #[test]
    fn cached_pid_matches_getpid() {
        // SAFETY: no preconditions.
        assert_eq!(current_pid(), unsafe { libc::getpid() } as u32);
    }

    #[test]
    fn futex_times_out_and_sees_changed_value() {
        let w = AtomicU32::new(5);
        let d = monotonic_ns() + 1_000_000;
        assert!(futex_wait(w.as_ptr(), 5, Some(d)), "times out");
        assert!(!futex_wait(w.as_ptr(), 6, None), "the value differs");
    }
}
