//! Linux: pidfds, the parent-death signal, the affinity mask, `/dev/shm`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// Longest shm name, leading `/` included: a file name in `/dev/shm`
/// (`NAME_MAX` = 255) plus the slash.
pub(crate) const SHM_NAME_MAX: usize = 256;

/// `send` flag: report `EPIPE` instead of raising `SIGPIPE`.
pub(crate) const SEND_NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;

/// `recvmsg` flag that makes received descriptors close-on-exec.
pub(crate) const RECV_CLOEXEC: libc::c_int = libc::MSG_CMSG_CLOEXEC;

/// `pidfd_open(pid)`: a descriptor that becomes readable when the process
/// ends and that signals exactly that process even after its pid is reused.
/// `Ok(None)` on kernels without pidfds (before 5.3), so callers poll.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<Option<OwnedFd>> {
    // SAFETY: the raw system call takes two integers and returns a new
    // descriptor or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: the call returned a new descriptor nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
}

/// `pidfd_send_signal(pidfd, sig)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: the raw system call takes a descriptor, a signal number, a
    // null siginfo pointer (meaning "as kill(2) would") and zero flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `prctl(PR_SET_PDEATHSIG, sig)`: the kernel sends `sig` to this process
/// when the *thread* that created it exits.
pub(crate) fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) }).map(drop)
}

/// CPUs this process may run on (its affinity mask), at least 1.
pub(crate) fn cpu_count() -> usize {
    // SAFETY: cpu_set_t is plain data; all-zero is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if r == 0 {
        // SAFETY: `set` is a valid, initialised cpu_set_t.
        let n = unsafe { libc::CPU_COUNT(&set) };
        if n > 0 {
            return n as usize;
        }
    }
    // More CPUs than a cpu_set_t holds (1024), or a failure: ask std, which
    // also honours the mask with a larger set.
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Names (with their leading `/`) of the shm objects in `/dev/shm`.
pub(crate) fn list_shm_names() -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/dev/shm")? {
        let e = e?;
        if let Some(name) = e.file_name().to_str() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                out.push(format!("/{name}"));
            }
        }
    }
    Ok(out)
}

/// `pipe2(O_CLOEXEC | extra)`: (read end, write end).
pub(crate) fn pipe_cloexec(extra: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: a valid out-array of two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | extra) })?;
    // SAFETY: pipe2 returned two new descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `socketpair(AF_UNIX, kind | SOCK_CLOEXEC)`.
pub(crate) fn socketpair_cloexec(kind: libc::c_int, fds: &mut [RawFd; 2]) -> io::Result<()> {
    // SAFETY: a valid out-array of two descriptors.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })
    .map(drop)
}
