//! The fork start method's worker factory: a single-threaded child forked
//! when the pool is made, which forks every worker (the first ones and
//! the replacements) and reports their deaths.
//!
//! ```text
//!  owner (any number of threads)          zygote (one thread, forever)
//!  Pool::new: fork the zygote ----------> poll(socket, owner pidfd, worker pidfds)
//!  watcher: START w  -------------------> fork -> worker w (PDEATHSIG: zygote)
//!           <-------------------------- STARTED w pid
//!           <-------------------------- DIED w pid exitcode   (worker pidfd readable)
//!           KILL w  --------------------> SIGKILL worker w
//!  SHUTDOWN, or die  -------------------> SIGKILL every worker, reap, exit
//! ```
//!
//! Forking from the owner itself would fork a process with the pool's
//! threads (and maybe the user's) in it, whose locks the child would
//! inherit held; the zygote has one thread, so every fork it makes is the
//! safe single-threaded kind, and a replacement costs one fork, not an
//! exec. Workers die with the zygote (parent-death signal from a
//! single-threaded parent, which cannot exit "early" by a thread ending),
//! and the zygote dies with the owner (it polls the owner's pidfd): a
//! SIGKILLed owner leaves no worker behind.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::error::PoolError;
use super::layout::{MemView, PoolMem};
use super::worker::{worker_main, WorkerSpec};
use crate::process::Process;
use crate::sys;

const START: u8 = 1;
const KILL: u8 = 2;
const STARTED: u8 = 3;
const DIED: u8 = 4;
const START_FAILED: u8 = 5;
const SHUTDOWN: u8 = 6;

/// A message from the zygote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Worker `index` runs as `pid`.
    Started { index: u32, pid: u32 },
    /// The fork for worker `index` failed.
    StartFailed { index: u32, errno: i32 },
    /// Worker `index` (`pid`) ended: its exit code, or minus its signal.
    Died { index: u32, pid: u32, exitcode: i32 },
}

impl Report {
    pub(crate) fn encode(self) -> [u8; 13] {
        let (k, a, b, c) = match self {
            Report::Started { index, pid } => (STARTED, index, pid, 0),
            Report::StartFailed { index, errno } => (START_FAILED, index, 0, errno),
            Report::Died {
                index,
                pid,
                exitcode,
            } => (DIED, index, pid, exitcode),
        };
        let mut out = [0u8; 13];
        out[0] = k;
        out[1..5].copy_from_slice(&a.to_le_bytes());
        out[5..9].copy_from_slice(&b.to_le_bytes());
        out[9..13].copy_from_slice(&c.to_le_bytes());
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 13 {
            return None;
        }
        let a = u32::from_le_bytes(b[1..5].try_into().ok()?);
        let p = u32::from_le_bytes(b[5..9].try_into().ok()?);
        let c = i32::from_le_bytes(b[9..13].try_into().ok()?);
        match b[0] {
            STARTED => Some(Report::Started { index: a, pid: p }),
            START_FAILED => Some(Report::StartFailed { index: a, errno: c }),
            DIED => Some(Report::Died {
                index: a,
                pid: p,
                exitcode: c,
            }),
            _ => None,
        }
    }
}

/// The owner's handle on its zygote.
#[derive(Debug)]
pub(crate) struct Zygote {
    process: Process,
    sock: OwnedFd,
}

/// What every worker of the pool shares (its index is per request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Common {
    pub(crate) initializer: Option<u64>,
    pub(crate) max_tasks: u64,
}

impl Zygote {
    /// Forks the zygote.
    ///
    /// # Safety
    ///
    /// With `allow_threads`, as
    /// [`Builder::allow_fork_with_threads`](crate::process::Builder::allow_fork_with_threads):
    /// no other thread of this process holds a lock the zygote's workers
    /// (the initializer, the task functions) could need.
    pub(crate) unsafe fn start(
        mem: &PoolMem,
        common: Common,
        allow_threads: bool,
    ) -> Result<Self, PoolError> {
        let (ours, theirs) = sys::socketpair(libc::SOCK_SEQPACKET)?;
        let view = mem.view();
        let owner = sys::getpid();
        let ours_raw = ours.as_raw_fd();
        // The closure takes descriptor numbers, not `OwnedFd`s: what moves
        // into a fork child is forgotten in the parent (never dropped
        // twice), so an `OwnedFd` moved in would stay open here.
        let theirs_raw = theirs.as_raw_fd();
        let mut b = Process::new(move || {
            // The owner's end is not ours to use; close our copy.
            sys::close_raw(ours_raw);
            // SAFETY: `theirs_raw` is the zygote's end of the socket pair,
            // inherited across the fork and owned by nothing else here.
            let theirs = unsafe { OwnedFd::from_raw_fd(theirs_raw) };
            zygote_main(&theirs, view, owner, common)
        })
        .name("PoolZygote");
        if allow_threads {
            // SAFETY: forwarded to our caller.
            b = unsafe { b.allow_fork_with_threads() };
        }
        let started = b.start();
        // The child has its copy; ours closes here, started or not.
        drop(theirs);
        let process = started?;
        Ok(Self {
            process,
            sock: ours,
        })
    }

    /// The socket the watcher polls for [`Report`]s.
    pub(crate) fn socket(&self) -> &OwnedFd {
        &self.sock
    }

    /// Asks for worker `index`; the answer comes as a [`Report`].
    pub(crate) fn request_start(&self, index: u32) -> std::io::Result<()> {
        let mut m = [0u8; 5];
        m[0] = START;
        m[1..5].copy_from_slice(&index.to_le_bytes());
        sys::send_with_fd(self.sock.as_fd(), &m, None).map(|_| ())
    }

    /// Asks for worker `index` to be killed (its ring was corrupt).
    pub(crate) fn request_kill(&self, index: u32) -> std::io::Result<()> {
        let mut m = [0u8; 5];
        m[0] = KILL;
        m[1..5].copy_from_slice(&index.to_le_bytes());
        sys::send_with_fd(self.sock.as_fd(), &m, None).map(|_| ())
    }

    /// Reads one report; `Ok(None)` if none is waiting, `Err` once the
    /// zygote is gone.
    pub(crate) fn try_report(&self) -> Result<Option<Report>, ()> {
        let mut buf = [0u8; 32];
        match sys::recv_with_fd(self.sock.as_fd(), &mut buf, true) {
            Ok(None) => Ok(None),
            Ok(Some((0, _))) | Err(_) => Err(()),
            Ok(Some((n, _))) => Report::decode(&buf[..n]).map(Some).ok_or(()),
        }
    }

    /// Ends the zygote and its workers: asks it to leave (it kills and
    /// reaps every worker and exits), closes the socket, reaps it.
    ///
    /// The request, not only the socket's end: a zygote forked later for
    /// another pool of this process holds a copy of our end of the socket
    /// (a fork copies every descriptor), so the end of the stream may
    /// never come.
    pub(crate) fn shut_down(self) {
        let mut m = [0u8; 5];
        m[0] = SHUTDOWN;
        let _ = sys::send_with_fd(self.sock.as_fd(), &m, None);
        drop(self.sock);
        if self.process.join_timeout(Duration::from_secs(5)).is_err() {
            let _ = self.process.kill();
            let _ = self.process.join();
        }
    }
}

struct Live {
    index: u32,
    pid: u32,
    pidfd: OwnedFd,
}

fn send(sock: &OwnedFd, r: Report) -> bool {
    sys::send_with_fd(sock.as_fd(), &r.encode(), None).is_ok()
}

/// The zygote's loop. Returns (its exit code) when the owner closes the
/// socket or dies.
fn zygote_main(sock: &OwnedFd, view: MemView, owner: u32, common: Common) -> i32 {
    let owner_fd = match sys::pidfd_open(owner) {
        Ok(Some(fd)) => fd,
        _ => return 1,
    };
    // The pidfd names the owner only if it is still our parent.
    if sys::getppid() != owner {
        return 0;
    }
    let me = sys::getpid();
    let mut live: Vec<Live> = Vec::new();
    loop {
        let mut fds = vec![sock.as_raw_fd(), owner_fd.as_raw_fd()];
        fds.extend(live.iter().map(|l| l.pidfd.as_raw_fd()));
        let Ok(ready) = sys::poll_many(&fds, None) else {
            break;
        };
        if ready[1] {
            break;
        }
        // Deaths first, so a report of a death precedes a restart's.
        let dead: Vec<usize> = (0..live.len()).filter(|&i| ready[2 + i]).collect();
        let mut gone = false;
        for &i in dead.iter().rev() {
            let l = live.remove(i);
            let exitcode = match sys::wait_blocking(l.pid) {
                Ok(sys::WaitStatus::Exited(c)) => c,
                Ok(sys::WaitStatus::Signaled(sig)) => -sig,
                Err(_) => i32::MIN,
            };
            gone |= !send(
                sock,
                Report::Died {
                    index: l.index,
                    pid: l.pid,
                    exitcode,
                },
            );
        }
        if gone {
            break;
        }
        if !ready[0] {
            continue;
        }
        let mut buf = [0u8; 16];
        let n = match sys::recv_with_fd(sock.as_fd(), &mut buf, true) {
            Ok(Some((0, _))) | Err(_) => break,
            Ok(None) => continue,
            Ok(Some((n, _))) => n,
        };
        if n != 5 {
            continue;
        }
        let index = u32::from_le_bytes(buf[1..5].try_into().expect("4 bytes"));
        match buf[0] {
            START => match start_worker(sock, &owner_fd, &live, view, index, common, me) {
                Ok((pid, pidfd)) => {
                    live.push(Live { index, pid, pidfd });
                    if !send(sock, Report::Started { index, pid }) {
                        break;
                    }
                }
                Err(errno) => {
                    if !send(sock, Report::StartFailed { index, errno }) {
                        break;
                    }
                }
            },
            KILL => {
                for l in live.iter().filter(|l| l.index == index) {
                    let _ = sys::pidfd_send_signal(l.pidfd.as_fd(), libc::SIGKILL);
                }
            }
            SHUTDOWN => break,
            _ => {}
        }
    }
    for l in &live {
        let _ = sys::pidfd_send_signal(l.pidfd.as_fd(), libc::SIGKILL);
    }
    for l in &live {
        let _ = sys::wait_blocking(l.pid);
    }
    0
}

fn start_worker(
    sock: &OwnedFd,
    owner_fd: &OwnedFd,
    live: &[Live],
    view: MemView,
    index: u32,
    common: Common,
    me: u32,
) -> Result<(u32, OwnedFd), i32> {
    // SAFETY: this process has one thread (it runs only this loop since
    // its fork), so no other thread holds a lock at the fork; the child
    // leaves with `exit_immediately`, never returning into our frames.
    match unsafe { sys::fork() } {
        Err(e) => Err(e.raw_os_error().unwrap_or(0)),
        Ok(sys::Forked::Child) => {
            sys::close_raw(sock.as_raw_fd());
            sys::close_raw(owner_fd.as_raw_fd());
            for l in live {
                sys::close_raw(l.pidfd.as_raw_fd());
            }
            let _ = sys::set_parent_death_signal(libc::SIGKILL);
            if sys::getppid() != me {
                sys::exit_immediately(0);
            }
            // SAFETY: we are a fork child of the zygote, itself a fork
            // child of the owner made while the owner's `PoolMem` lived; the
            // mapping is inherited and never unmapped here.
            let mem = unsafe { PoolMem::inherited(view) };
            let code = worker_main(
                &mem,
                WorkerSpec {
                    index,
                    initializer: common.initializer,
                    max_tasks: common.max_tasks,
                },
            );
            crate::process::flush_std_streams();
            sys::exit_immediately(code)
        }
        Ok(sys::Forked::Parent(pid)) => {
            // Not reaped before we wait for it: the pidfd names this child.
            match sys::pidfd_open(pid) {
                Ok(Some(fd)) => Ok((pid, fd)),
                _ => {
                    let _ = sys::kill(pid, libc::SIGKILL);
                    let _ = sys::wait_blocking(pid);
                    Err(libc::ENOSYS)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for r in [
            Report::Started { index: 3, pid: 99 },
            Report::StartFailed {
                index: 1,
                errno: 11,
            },
            Report::Died {
                index: 0,
                pid: 5,
                exitcode: -9,
            },
        ] {
            assert_eq!(Report::decode(&r.encode()), Some(r));
        }
        assert_eq!(Report::decode(&[9; 13]), None);
        assert_eq!(Report::decode(&[STARTED; 12]), None);
    }
}
