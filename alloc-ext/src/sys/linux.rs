//! Linux: pidfds, the parent-death signal, the affinity mask, `/dev/shm`,
//! space reservation (`fallocate`) and sealed memfds.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_retry};

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

/// Marks every descriptor in `first..=last` close-on-exec:
/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)` (Linux 5.11), else one
/// `fcntl` per number below the descriptor limit. Async-signal-safe (only
/// system calls), for use between `fork` and `exec`.
pub(crate) fn cloexec_range(first: RawFd, last: RawFd) {
    if first > last || first < 0 {
        return;
    }
    // SAFETY: close_range takes two descriptor numbers and flags; with
    // CLOSE_RANGE_CLOEXEC it only sets a flag on open descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return;
    }
    // ENOSYS (before 5.9) or EINVAL (the flag, before 5.11).
    super::cloexec_range_by_fcntl(first, last);
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`, blocking
/// until it is seeded).
pub(crate) fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is valid for `rest.len()` writable bytes.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        got += r as usize;
    }
    Ok(())
}

fn getsockopt_int(sock: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid out-pointer and its length.
    cvt(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// Whether `sock` is a Unix-domain stream socket.
pub(crate) fn is_unix_stream(sock: BorrowedFd<'_>) -> bool {
    getsockopt_int(sock, libc::SO_DOMAIN).is_ok_and(|d| d == libc::AF_UNIX)
        && getsockopt_int(sock, libc::SO_TYPE).is_ok_and(|t| t == libc::SOCK_STREAM)
}

/// The pid the kernel recorded for the peer of a Unix socket
/// (`SO_PEERCRED`): for a `socketpair`, the process that created the pair.
pub(crate) fn peer_pid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: ucred is plain data; all-zero is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid out-pointer and its length.
    cvt(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred.pid as u32)
}

/// Whether process `pid` runs the same executable file as this process
/// (same device and inode behind `/proc/<pid>/exe` and `/proc/self/exe`).
/// Fails when `/proc/<pid>/exe` may not be read (another user, or a
/// non-dumpable process).
pub(crate) fn runs_same_executable(pid: u32) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let mine = std::fs::metadata("/proc/self/exe")?;
    let theirs = std::fs::metadata(format!("/proc/{pid}/exe"))?;
    Ok((mine.dev(), mine.ino()) == (theirs.dev(), theirs.ino()))
}

/// Sets `SO_PASSCRED` on `sock` (the kernel then attaches the sender's
/// pid to every message received); returns the previous setting.
pub(crate) fn set_pass_credentials(sock: BorrowedFd<'_>, on: bool) -> io::Result<bool> {
    let prev = getsockopt_int(sock, libc::SO_PASSCRED)? != 0;
    let v = libc::c_int::from(on);
    // SAFETY: a valid pointer to an int option and its length.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(prev)
}

/// Receives what is available from a stream socket with `SO_PASSCRED` set
/// (without blocking), with the pid of the process that sent it as the
/// kernel attests it: `Ok(None)` when nothing is available, a length of 0
/// at end of stream. The kernel never merges data of different senders in
/// one read. Descriptors sent along are closed.
pub(crate) fn recv_with_sender(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<Option<(usize, Option<u32>)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for credentials and a few stray descriptors, aligned.
    let mut cbuf = [0u64; 16];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let n = loop {
        // SAFETY: `msg` describes live buffers of the stated sizes.
        let r = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    };
    let mut sender = None;
    // SAFETY: the kernel filled `msg_controllen` bytes of `cbuf` with
    // well-formed control messages; the CMSG_* macros walk them in bounds,
    // and each payload is read unaligned at its stated size.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
            if (*c).cmsg_level == libc::SOL_SOCKET {
                if (*c).cmsg_type == libc::SCM_CREDENTIALS
                    && bytes >= std::mem::size_of::<libc::ucred>()
                {
                    let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                    sender = Some(cred.pid as u32);
                } else if (*c).cmsg_type == libc::SCM_RIGHTS {
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        // Each received descriptor is new and ours: close it.
                        drop(OwnedFd::from_raw_fd(std::ptr::read_unaligned(
                            data.cast::<RawFd>().add(i),
                        )));
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some((n, sender)))
}

/// Allocates the blocks of bytes `0..len` of `fd` (`fallocate(fd, 0, 0,
/// len)`), so that writing any of them later cannot fail for lack of room:
/// on tmpfs (`/dev/shm`) this takes the pages now (counted in the size of
/// the mount and in the system's `Shmem`), and fails at once with
/// `ENOSPC` when they do not fit. `EINTR` (a signal during a large
/// allocation, which the kernel has undone) is retried.
pub(crate) fn reserve(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: fallocate on a descriptor we hold, with plain integers.
    cvt_retry(|| unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len) }).map(drop)
}

/// A memfd of `len` zero bytes sealed against shrinking and growing (and
/// against further seal changes), close-on-exec: the backing of anonymous
/// segments. Whoever gets hold of the descriptor or the mapping's file
/// (`/proc/<pid>/map_files`) cannot truncate the pages from under the
/// processes that map it (`ftruncate` fails with `EPERM`).
///
/// `Ok(None)` on a kernel without sealable memfds (before 3.17): the caller
/// falls back to `MAP_SHARED | MAP_ANONYMOUS`.
///
/// A memfd's pages are charged as they are touched, unlike a shared
/// anonymous mapping, which is charged when mapped; so that an absurd size
/// still fails here as it would there (the kernel's default heuristic), a
/// size above the machine's memory plus swap is refused with `ENOMEM`.
pub(crate) fn sealed_memfd(len: usize) -> io::Result<Option<OwnedFd>> {
    if len as u128 > total_memory() {
        return Err(io::Error::from_raw_os_error(libc::ENOMEM));
    }
    // SAFETY: a NUL-terminated name and flags; returns a new descriptor or -1.
    let r = unsafe {
        libc::memfd_create(
            c"multiproc".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: memfd_create returned a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(r) };
    let size = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: ftruncate on the descriptor we own.
    cvt_retry(|| unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
    // SAFETY: fcntl(F_ADD_SEALS) on the descriptor we own, with seal bits.
    cvt(unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_ADD_SEALS,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        )
    })?;
    Ok(Some(fd))
}

/// RAM plus swap, in bytes (`u128::MAX` if unknown).
fn total_memory() -> u128 {
    // SAFETY: sysinfo is plain data; all-zero is a valid value.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::sysinfo(&mut si) } != 0 {
        return u128::MAX;
    }
    (u128::from(si.totalram) + u128::from(si.totalswap)) * u128::from(si.mem_unit.max(1))
}
