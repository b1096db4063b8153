//! Portable fallback for Unix systems other than Linux: no pidfds (waiting
//! polls `waitpid` with backoff), no parent-death signal (daemon children
//! rely on kill-on-drop only), no listing of shm objects.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// Longest portable shm name, leading `/` included (macOS allows 31).
pub(crate) const SHM_NAME_MAX: usize = 31;

/// No portable `MSG_NOSIGNAL` (macOS lacks it): a write to a closed peer
/// raises `SIGPIPE`, which the Rust runtime ignores by default in binaries.
pub(crate) const SEND_NOSIGNAL: libc::c_int = 0;

/// No `MSG_CMSG_CLOEXEC` here: received descriptors are marked afterwards.
pub(crate) const RECV_CLOEXEC: libc::c_int = 0;

/// No pidfds: callers fall back to polling.
pub(crate) fn pidfd_open(_pid: u32) -> io::Result<Option<OwnedFd>> {
    Ok(None)
}

/// Never called: [`pidfd_open`] hands out no pidfds here.
pub(crate) fn pidfd_send_signal(_pidfd: BorrowedFd<'_>, _sig: i32) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// No parent-death signal on this system.
pub(crate) fn set_parent_death_signal(_sig: i32) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// CPUs available to this process, at least 1.
pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Shm objects cannot be listed portably.
pub(crate) fn list_shm_names() -> io::Result<Vec<String>> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we just created.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// `pipe` then `fcntl(FD_CLOEXEC | extra)` (not atomic with respect to a
/// concurrent fork in another thread, unlike Linux's `pipe2`).
pub(crate) fn pipe_cloexec(extra: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: a valid out-array of two descriptors.
    cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    // SAFETY: pipe returned two new descriptors nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [r.as_raw_fd(), w.as_raw_fd()] {
        set_cloexec(fd)?;
        if extra & libc::O_NONBLOCK != 0 {
            // SAFETY: fcntl on a descriptor we own.
            let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
            // SAFETY: as above.
            cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
        }
    }
    Ok((r, w))
}

/// `socketpair(AF_UNIX, kind)` then close-on-exec on both ends.
pub(crate) fn socketpair_cloexec(kind: libc::c_int, fds: &mut [RawFd; 2]) -> io::Result<()> {
    // SAFETY: a valid out-array of two descriptors.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
    for &fd in fds.iter() {
        if let Err(e) = set_cloexec(fd) {
            // SAFETY: closing the descriptors we just created.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Marks every descriptor in `first..=last` close-on-exec, one `fcntl`
/// per number below the descriptor limit. Async-signal-safe.
pub(crate) fn cloexec_range(first: RawFd, last: RawFd) {
    super::cloexec_range_by_fcntl(first, last);
}

/// No portable kernel-attested sender of a message here: the launch of a
/// spawn child or fork server cannot be proven, so it is refused (see
/// `process::launch::prove_launch`).
pub(crate) fn fill_random(_buf: &mut [u8]) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// See [`fill_random`]: a launch is never proven here.
pub(crate) fn is_unix_stream(_sock: BorrowedFd<'_>) -> bool {
    false
}

/// See [`fill_random`].
pub(crate) fn peer_pid(_sock: BorrowedFd<'_>) -> io::Result<u32> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// See [`fill_random`].
pub(crate) fn runs_same_executable(_pid: u32) -> io::Result<bool> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// See [`fill_random`].
pub(crate) fn set_pass_credentials(_sock: BorrowedFd<'_>, _on: bool) -> io::Result<bool> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// See [`fill_random`].
pub(crate) fn recv_with_sender(
    _sock: BorrowedFd<'_>,
    _buf: &mut [u8],
) -> io::Result<Option<(usize, Option<u32>)>> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// No portable way to reserve the blocks of a shm object (macOS has no
/// `posix_fallocate`): nothing is reserved, and a write past the room left
/// raises `SIGBUS` as it always has there.
pub(crate) fn reserve(_fd: BorrowedFd<'_>, _len: u64) -> io::Result<()> {
    Ok(())
}

/// No memfds: anonymous segments are `MAP_SHARED | MAP_ANONYMOUS` mappings,
/// which no descriptor names.
pub(crate) fn sealed_memfd(_len: usize) -> io::Result<Option<OwnedFd>> {
    Ok(None)
}
