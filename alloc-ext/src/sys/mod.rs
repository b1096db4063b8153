//! Platform code of the std layer: shared mappings, `shm_open`, fork, exec,
//! waiting for children, signals and file-descriptor passing.
//!
//! The POSIX calls every Unix has live in this file; what only some systems
//! have (pidfds, the parent-death signal, the CPU affinity mask, listing
//! `/dev/shm`) lives in one file per OS, chosen once below:
//!
//! | function | Linux (`linux.rs`) | other Unix (`unix.rs`) |
//! |---|---|---|
//! | [`pidfd_open`] | `pidfd_open(2)` | `Ok(None)`: callers fall back to polling `waitpid` |
//! | [`pidfd_send_signal`] | `pidfd_send_signal(2)` | unreachable (no pidfds) |
//! | [`set_parent_death_signal`] | `prctl(PR_SET_PDEATHSIG)` | `Unsupported` |
//! | [`cpu_count`] | `sched_getaffinity` | `available_parallelism` |
//! | [`list_shm_names`] | reads `/dev/shm` | `Unsupported` |
//! | [`pipe_cloexec`] | `pipe2(O_CLOEXEC)` | `pipe` + `fcntl` |
//! | [`cloexec_range`] | `close_range(CLOSE_RANGE_CLOEXEC)`, else `fcntl` per fd | `fcntl` per fd |
//! | [`fill_random`], [`is_unix_stream`], [`peer_pid`], [`runs_same_executable`], [`set_pass_credentials`], [`recv_with_sender`] | `getrandom`, `SO_DOMAIN`/`SO_TYPE`, `SO_PEERCRED`, `/proc/<pid>/exe`, `SO_PASSCRED`, `SCM_CREDENTIALS` | `Unsupported`: a spawn or fork-server launch is never proven |
//! | [`reserve`] | `fallocate` | nothing (no portable call) |
//! | [`sealed_memfd`] | `memfd_create` + `F_ADD_SEALS` | `Ok(None)`: `MAP_ANONYMOUS` |
//!
//! Every function returns `io::Result` and takes owned or borrowed file
//! descriptors, so the callers hold no raw fd longer than a call.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "unix.rs")]
mod imp;

pub(crate) use imp::{
    cloexec_range, cpu_count, fill_random, is_unix_stream, list_shm_names, peer_pid, pidfd_open,
    pidfd_send_signal, pipe_cloexec, recv_with_sender, reserve, runs_same_executable, sealed_memfd,
    set_parent_death_signal, set_pass_credentials, RECV_CLOEXEC, SEND_NOSIGNAL, SHM_NAME_MAX,
};

/// Turns a `-1` return into the thread's `errno`.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Like [`cvt`], retrying on `EINTR`.
pub(crate) fn cvt_retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// This process's id.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// The parent's process id.
pub(crate) fn getppid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() as u32 }
}

// Liveness of other processes is `multiproc_core::identity` (pid plus start
// time; a zombie is dead), the one test both crates use: there is no
// `kill(pid, 0)` probe here, which would take a zombie or a reused pid for
// the process it asks about.

/// `flock(fd, op)`, retrying on `EINTR`; `op` is `LOCK_SH`, `LOCK_EX` or
/// `LOCK_UN`, maybe with `LOCK_NB` (then a held lock is `WouldBlock`).
pub(crate) fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor for the call; flock takes no
    // pointers.
    cvt_retry(|| unsafe { libc::flock(fd.as_raw_fd(), op) }).map(drop)
}

/// `shm_open(name, flags, mode)`; the descriptor is close-on-exec.
pub(crate) fn shm_open(name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let fd = cvt_retry(|| {
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        unsafe { libc::shm_open(name.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) }
    })?;
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// A shared read-write mapping of a whole object, unmapped on drop.
///
/// The object behind a descriptor (a named segment, a memfd) is mapped
/// through memmap2's [`MmapRaw`](memmap2::MmapRaw), a reviewed wrapper of
/// `mmap(MAP_SHARED)` and `munmap`. Anonymous memory where no memfd exists
/// (a kernel before 3.17, other Unix) is mapped here by hand: memmap2's
/// `map_anon` maps `MAP_PRIVATE`, which a forked child would get as a
/// copy-on-write copy, not as the same memory.
#[derive(Debug)]
pub(crate) struct Mapping(MappingKind);

#[derive(Debug)]
enum MappingKind {
    Fd(memmap2::MmapRaw),
    /// `mmap(MAP_SHARED | MAP_ANONYMOUS)` of `len` bytes at `ptr`.
    Anon {
        ptr: NonNull<u8>,
        len: usize,
    },
}

// SAFETY: the handle owns its mapping, nothing in it is tied to a thread
// (memmap2's `MmapRaw` is itself `Send`), and the `Anon` mapping is
// unmapped once, by the owner's drop. The memory is reached only through
// the raw pointer of `ptr`, whose users justify each access (in this
// crate: `&mut` copies, and `Region`s whose structures use atomics).
unsafe impl Send for Mapping {}
// SAFETY: `&self` only reads the pointer and length (see `Send`).
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of the object behind `fd`, read-write and
    /// shared.
    pub(crate) fn of_fd(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        memmap2::MmapOptions::new()
            .len(len)
            .map_raw(fd.as_raw_fd())
            .map(|m| Mapping(MappingKind::Fd(m)))
    }

    /// `len` bytes of anonymous memory, read-write and shared with children
    /// forked afterwards.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: no address hint, a fresh mapping; the kernel validates
        // `len`; the result is checked for MAP_FAILED.
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
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping(MappingKind::Anon { ptr, len }))
    }

    /// The first byte of the mapping (page-aligned).
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        match &self.0 {
            MappingKind::Fd(m) => NonNull::new(m.as_mut_ptr()).expect("a mapping is not at null"),
            MappingKind::Anon { ptr, .. } => *ptr,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let MappingKind::Anon { ptr, len } = self.0 {
            // SAFETY: exactly the mapping `anonymous` made, unmapped once;
            // its owner (`&mut self`) holds no borrow of it any more.
            unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
        }
        // `Fd`: memmap2's `MmapRaw` unmaps itself.
    }
}

/// The outcome of [`fork`].
pub(crate) enum Forked {
    /// In the child.
    Child,
    /// In the parent, with the child's pid.
    Parent(u32),
}

/// `fork()`.
///
/// # Safety
///
/// In the child, only the calling thread exists: the caller must run only
/// code that cannot block on a lock another thread of the parent held at
/// the time of the fork, and must leave the child with [`exit_immediately`]
/// (or `exec`) rather than returning into frames that belong to the parent.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; the
    // caller upholds the child-side rules above.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid as u32)
    })
}

/// `_exit(code)`: leaves at once, without atexit handlers or destructors.
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// A raw wait status decoded: exit code or terminating signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WaitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl WaitStatus {
    fn from_raw(status: libc::c_int) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(WaitStatus::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(WaitStatus::Signaled(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

/// `waitpid(pid, WNOHANG)`: `Some` once the child has ended and is reaped.
pub(crate) fn try_wait(pid: u32) -> io::Result<Option<WaitStatus>> {
    let mut status = 0;
    // SAFETY: a valid out-pointer; `pid` is a child of this process.
    let r = cvt_retry(|| unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) })?;
    Ok(if r == 0 {
        None
    } else {
        // Stopped or continued children are not reported without WUNTRACED,
        // so any other status is an exit.
        WaitStatus::from_raw(status)
    })
}

/// `waitpid(pid, 0)`: blocks until the child ends, and reaps it.
pub(crate) fn wait_blocking(pid: u32) -> io::Result<WaitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: a valid out-pointer; `pid` is a child of this process.
        cvt_retry(|| unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) })?;
        if let Some(s) = WaitStatus::from_raw(status) {
            return Ok(s);
        }
    }
}

/// `kill(pid, sig)`.
pub(crate) fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Waits until `fd` is readable (or hung up), at most `timeout` (`None`:
/// forever). Returns whether it is.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let ms = match timeout {
        None => -1,
        // Round up, so a short positive wait does not spin with 0.
        Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = cvt(unsafe { libc::poll(&mut p, 1, ms) });
    match n {
        Ok(n) => Ok(n > 0),
        // A signal cut the wait short: the caller re-checks and waits again.
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// `poll` over several descriptors for readability; returns which are
/// readable (or hung up). `None`: forever.
pub(crate) fn poll_many(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_millis()).unwrap_or(i32::MAX),
    };
    // SAFETY: `p` is a valid array of `p.len()` pollfds.
    let r = cvt(unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) });
    match r {
        Ok(_) => Ok(p.iter().map(|p| p.revents != 0).collect()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(vec![false; fds.len()]),
        Err(e) => Err(e),
    }
}

/// `close(fd)` on a descriptor this process may not own any more in Rust
/// terms (used in a freshly forked child to drop inherited descriptors).
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: closing a descriptor has no memory-safety effect; the callers
    // make sure no live Rust object in this process uses `fd` afterwards.
    unsafe { libc::close(fd) };
}

/// `read` once, retrying on `EINTR`; `Ok(None)` when it would block.
pub(crate) fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` writable bytes.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(Some(r as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Writes all of `buf` to a socket without raising `SIGPIPE` if the peer is
/// gone (`EPIPE` is returned instead).
pub(crate) fn send_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let r = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                SEND_NOSIGNAL,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

/// Writes all of `buf` to a pipe or socket with plain `write`.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

/// A Unix socket pair of `kind` (`SOCK_STREAM` or `SOCK_SEQPACKET`), both
/// ends close-on-exec.
pub(crate) fn socketpair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    imp::socketpair_cloexec(kind, &mut fds)?;
    // SAFETY: socketpair returned two new descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `data` as one message on a socket, with `fd` attached as
/// `SCM_RIGHTS` when given. Never raises `SIGPIPE`.
pub(crate) fn send_with_fd(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // Room for one descriptor, aligned for cmsghdr.
    let mut cbuf = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        debug_assert!(space <= std::mem::size_of_val(&cbuf));
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points to `space` zeroed, aligned bytes, so the
        // first header fits; we fill it in and copy the descriptor into its
        // data, which CMSG_LEN sizes for exactly one RawFd.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `msg` points to live buffers described above.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, SEND_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message (or part of a stream) into `buf`, with at most one
/// attached descriptor, close-on-exec. `Ok(None)` when it would block
/// (with `nonblocking`); `Ok(Some((0, None)))` at end of stream.
pub(crate) fn recv_with_fd(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> io::Result<Option<(usize, Option<OwnedFd>)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let flags = RECV_CLOEXEC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    let n = loop {
        // SAFETY: `msg` describes live buffers of the stated sizes.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
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
    let mut got = None;
    // SAFETY: the kernel filled `msg_controllen` bytes of `cbuf` with
    // well-formed control messages; the CMSG_* macros walk them in bounds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
                let count = bytes / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    // Each received descriptor is new and ours; keep the
                    // first, close any extra a confused peer sent.
                    let owned = OwnedFd::from_raw_fd(fd);
                    if got.is_none() {
                        got = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some((n, got)))
}

/// Runs `path` with `argv` (`argv[0]` first) in a new process that holds
/// `keep` (at the same descriptor number, close-on-exec cleared) and, of
/// this process's other descriptors, only 0, 1 and 2: every other one is
/// closed at the `exec`, close-on-exec or not (as Python's spawn does). The
/// environment is this process's; the signal mask is emptied and `SIGPIPE`
/// set back to its default action (by std).
///
/// Built on `std::process::Command` with a `pre_exec` hook, so std does
/// the `fork`, the `exec` and the report of an `exec` failure; between them
/// the hook makes only `fcntl` and `close_range` calls, which are
/// async-signal-safe: safe in a multi-threaded parent.
pub(crate) fn spawn_exe(path: &CStr, argv: &[CString], keep: BorrowedFd<'_>) -> io::Result<u32> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;

    let os = |c: &CStr| OsStr::from_bytes(c.to_bytes()).to_owned();
    let (argv0, rest) = argv
        .split_first()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let keep = keep.as_raw_fd();
    let mut cmd = std::process::Command::new(os(path));
    cmd.arg0(os(argv0)).args(rest.iter().map(|a| os(a)));
    // SAFETY: the hook runs in the forked child before `exec`; it makes
    // only fcntl and close_range system calls (async-signal-safe), touches
    // no lock and allocates nothing (the closure captures one integer).
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: F_SETFD on a descriptor number; no memory is involved.
            cvt(libc::fcntl(keep, libc::F_SETFD, 0))?;
            cloexec_range(3, keep - 1);
            cloexec_range((keep + 1).max(3), RawFd::MAX);
            Ok(())
        })
    };
    let child = cmd.spawn()?;
    // Dropping `Child` neither waits nor kills: the caller reaps the pid.
    Ok(child.id())
}

/// The fallback of [`cloexec_range`]: `fcntl(FD_CLOEXEC)` on each number
/// in `first..=last` below the soft descriptor limit (a descriptor opened
/// before the limit was lowered is missed). Only system calls:
/// async-signal-safe.
pub(crate) fn cloexec_range_by_fcntl(first: RawFd, last: RawFd) {
    // SAFETY: rlimit is plain data; all-zero is valid.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    let limit = if known && lim.rlim_cur != libc::RLIM_INFINITY {
        RawFd::try_from(lim.rlim_cur).unwrap_or(RawFd::MAX)
    } else {
        // Unknown or unlimited: Linux's default ceiling (`fs.nr_open`).
        1 << 20
    };
    let mut fd = first.max(0);
    while fd <= last && fd < limit {
        // SAFETY: F_SETFD on a descriptor number (EBADF if not open).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        fd += 1;
    }
}

/// Reads what is available from a socket without blocking: `Ok(None)`
/// when nothing is, `Ok(Some(0))` at end of stream.
pub(crate) fn recv_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` writable bytes.
        let r = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            return Ok(Some(r as usize));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            _ if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    /// A child forked after the mapping writes a byte; the parent sees it.
    fn shared_across_fork(map: &Mapping) {
        let p = map.ptr().as_ptr();
        // SAFETY: the child only writes into the mapping and `_exit`s
        // (async-signal-safe work: the test harness may have threads).
        match unsafe { fork() }.expect("fork") {
            Forked::Child => {
                // SAFETY: `p` is the first byte of a live 4096-byte mapping.
                unsafe {
                    p.write_volatile(42);
                    libc::_exit(0)
                }
            }
            Forked::Parent(pid) => {
                wait_blocking(pid).expect("reap the child");
                // SAFETY: as above; the child has exited.
                assert_eq!(unsafe { p.read_volatile() }, 42);
            }
        }
    }

    #[test]
    fn anonymous_mapping_is_shared_across_fork() {
        shared_across_fork(&Mapping::anonymous(4096).unwrap());
    }

    #[test]
    fn memfd_mapping_is_shared_across_fork() {
        let Some(fd) = sealed_memfd(4096).unwrap() else {
            return; // no memfds here: `anonymous` serves instead
        };
        shared_across_fork(&Mapping::of_fd(fd.as_fd(), 4096).unwrap());
    }
}
