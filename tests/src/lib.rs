//! Helpers for multi-process tests: anonymous shared mappings, forked
//! children with a watchdog, and child exit status.
//!
//! Tests run under `cargo nextest` (one process per test), so forking from a
//! test is safe; the child only touches shared memory and leaves with
//! `_exit`, never returning into the test harness.
#![allow(clippy::missing_panics_doc)]

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_core::region::Region;

/// An anonymous `MAP_SHARED` mapping: inherited by forked children, who see
/// the same physical pages (at the same address, since fork copies the map).
#[derive(Debug)]
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; all access goes through core's
// structures (atomics and slot protocols) or explicit raw reads.
unsafe impl Send for SharedMap {}
// SAFETY: as for Send.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` zeroed bytes (rounded up to a page).
    pub fn new(len: usize) -> Self {
        let len = len.max(1).next_multiple_of(4096);
        // SAFETY: an anonymous shared mapping with no address hint; the result
        // is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
        Self {
            ptr: NonNull::new(p.cast()).expect("mmap returned null"),
            len,
        }
    }

    /// The mapping as a core region (page-aligned, so 128-aligned).
    pub fn region(&self) -> Region<'_> {
        // SAFETY: the mapping is valid for `len` bytes while `self` lives, and
        // this process only touches it through core structures.
        unsafe { Region::from_raw_parts(self.ptr, self.len) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// A forked child. Dropping it kills and reaps it, so a failing test never
/// leaves a child behind.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    reaped: Option<Exit>,
}

/// Forks a child that runs `f` and exits with its return value (101 if it
/// panics). The child never returns into the caller.
pub fn fork(f: impl FnOnce() -> i32) -> Child {
    // SAFETY: fork has no preconditions; the child branch below only runs `f`
    // and leaves with `_exit`, so it never unwinds into the parent's frames.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit skips atexit handlers and destructors that belong to
        // the parent's state.
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: None }
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: i32) {
        if self.reaped.is_none() {
            // SAFETY: kill on our own unreaped child.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// `kill -9` the child and reap it.
    pub fn kill9(&mut self) -> Exit {
        self.signal(libc::SIGKILL);
        self.wait_timeout(Duration::from_secs(10))
            .expect("SIGKILLed child did not exit")
    }

    fn try_wait(&mut self) -> Option<Exit> {
        if let Some(e) = self.reaped {
            return Some(e);
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            let e = if libc::WIFSIGNALED(status) {
                Exit::Signal(libc::WTERMSIG(status))
            } else {
                Exit::Code(libc::WEXITSTATUS(status))
            };
            self.reaped = Some(e);
            return Some(e);
        }
        None
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Exit> {
        let end = Instant::now() + timeout;
        let mut nap = Duration::from_micros(50);
        loop {
            if let Some(e) = self.try_wait() {
                return Some(e);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        }
    }

    /// Waits for the child with a watchdog: if it has not exited within
    /// `timeout`, it is killed and the test fails.
    pub fn join(mut self, timeout: Duration) -> Exit {
        match self.wait_timeout(timeout) {
            Some(e) => e,
            None => {
                self.kill9();
                panic!(
                    "child {} did not finish within {timeout:?} (deadlock?)",
                    self.pid
                );
            }
        }
    }

    /// Like [`join`](Self::join) and asserts a zero exit code.
    pub fn join_ok(self, timeout: Duration) {
        let pid = self.pid;
        let e = self.join(timeout);
        assert_eq!(e, Exit::Code(0), "child {pid} failed");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.wait_timeout(Duration::from_secs(5));
        }
    }
}

/// A simple checksum of a message sequence (order-sensitive).
pub fn checksum(acc: u64, v: u64) -> u64 {
    (acc ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(5)
}

// ---------------------------------------------------------------------------
// Support for the `multiproc` std layer's tests (process starts, zombies,
// a libtest-compatible harness for test binaries that need `main`).
pub mod process_support;

/// A few `u64` cells in a shared mapping (inherited across fork), for
/// handshakes between a test and its children.
#[derive(Debug)]
pub struct Cells(SharedMap);

impl Cells {
    /// How long [`wait_for`](Self::wait_for) waits before it fails.
    pub const LIMIT: Duration = Duration::from_secs(120);

    /// 512 cells, all 0.
    pub fn new() -> Self {
        Cells(SharedMap::new(4096))
    }

    /// As [`new`](Self::new), leaked: for closures that must be `'static`.
    pub fn leaked() -> &'static Self {
        Box::leak(Box::new(Self::new()))
    }

    /// Cell `i` (below 512).
    pub fn get(&self, i: usize) -> &AtomicU64 {
        assert!(i < 512);
        // SAFETY: 4096 zeroed, page-aligned bytes; cell i is 8-aligned and
        // inside; AtomicU64 is valid for every bit pattern.
        unsafe { &*self.0.as_ptr().cast::<AtomicU64>().add(i) }
    }

    /// The cells' first byte (for a child that finds them again at the same
    /// address after `exec`-less `spawn`, or maps them itself).
    pub fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// Waits until cell `i` holds at least `v`; panics after [`LIMIT`](Self::LIMIT).
    pub fn wait_for(&self, i: usize, v: u64) {
        let end = Instant::now() + Self::LIMIT;
        while self.get(i).load(Ordering::Acquire) < v {
            assert!(Instant::now() < end, "handshake {i} timed out");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Default for Cells {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts `sleep 20` so that it gets pid `want`, by writing `want - 1` to
/// `/proc/sys/kernel/ns_last_pid` (root) right before; retries while other
/// processes of the machine take the pid first. `None` if that never
/// worked (or the file cannot be written). The caller kills and reaps it.
///
/// Tests that reuse pids run in parallel (nextest): they take turns
/// through an exclusive `flock` on one file in the temporary directory
/// (the same one `tests/identity.rs` takes), and put `ns_last_pid` back
/// where allocation stood, so that the processes started meanwhile do not
/// go on to take recently freed pids (another test's victim).
pub fn spawn_with_pid(want: u32) -> Option<std::process::Child> {
    use std::os::fd::AsRawFd;
    const LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("multiproc-tests-ns_last_pid.lock"))
        .ok()?;
    // SAFETY: `lock` is an open descriptor for the duration of the call;
    // flock touches no memory of ours. Released when `lock` closes (the
    // descriptor is close-on-exec: `sleep` does not keep it).
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return None;
    }
    let last_pid =
        || -> Option<u32> { std::fs::read_to_string(LAST_PID).ok()?.trim().parse().ok() };
    let before = last_pid()?;
    for _ in 0..200 {
        std::fs::write(LAST_PID, (want - 1).to_string()).ok()?;
        let mut c = std::process::Command::new("sleep")
            .arg("20")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        if c.id() == want {
            if last_pid().is_some_and(|now| now < before) {
                let _ = std::fs::write(LAST_PID, before.to_string());
            }
            return Some(c);
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    None
}

/// Joins a `multiproc::Process` within `timeout`; panics unless it exited
/// with success.
pub fn join_process_ok(p: &multiproc::Process, timeout: Duration) {
    let st = p.join_timeout(timeout).expect("join (child hung?)");
    assert!(st.success(), "child failed: {st:?}");
}
