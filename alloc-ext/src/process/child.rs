//! The parent's side of a started child: waiting, reaping, signalling, and
//! the registry of this process's children.
//!
//! | channel | who reaps | how `wait` sleeps | where reports come from |
//! |---|---|---|---|
//! | [`Channel::Local`] (fork, spawn) | this process, `waitpid` under the state lock | `poll` on the pidfd, else `waitpid(WNOHANG)` with backoff | the report pipe or socket, read after reaping |
//! | [`Channel::Server`] (forkserver) | the fork server | `poll` on the per-child socket | that socket: reports, then the status |
//!
//! Reaping happens only under the state lock and signals are sent only
//! under it, so a signal never reaches a reaped (hence maybe reused) pid.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::wire::{self, FrameBuf};
use super::{lock, ExitStatus, JoinError, StartMethod, FAILURE_EXIT_CODE, PANIC_EXIT_CODE};
use crate::sys::{self, WaitStatus};

/// How the parent learns about the child.
#[derive(Debug)]
pub(crate) enum Channel {
    /// Our own child; `reports` is the read end of its report pipe (fork,
    /// opened non-blocking) or its socket (spawn).
    Local { reports: OwnedFd, is_socket: bool },
    /// A fork-server worker; the server sends its reports and status here.
    Server { sock: OwnedFd },
}

/// A message the child sent before ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    Panicked(String),
    Failed(String),
}

#[derive(Debug, Default)]
struct State {
    status: Option<WaitStatus>,
    report: Option<Report>,
    frames: FrameBuf,
    /// Set when the status can never be known (reaped elsewhere, server
    /// gone).
    lost: Option<&'static str>,
}

/// A started child, shared by its [`super::Process`] handle and the
/// registry.
#[derive(Debug)]
pub(crate) struct ChildInner {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) method: StartMethod,
    /// The process that started the child: only it may reap or signal.
    owner_pid: u32,
    pidfd: Option<OwnedFd>,
    channel: Channel,
    state: Mutex<State>,
}

impl ChildInner {
    pub(crate) fn new(
        pid: u32,
        ident: &super::identity::ChildIdent,
        pidfd: Option<OwnedFd>,
        channel: Channel,
    ) -> Self {
        Self {
            pid,
            name: ident.name.clone(),
            daemon: ident.daemon,
            method: ident.method,
            owner_pid: sys::getpid(),
            pidfd,
            channel,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The child's pidfd (Linux), readable once the child has ended.
    pub(crate) fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// Checks once, without blocking, whether the child has ended.
    pub(crate) fn poll(&self) -> Result<Option<WaitStatus>, JoinError> {
        // Before locking: in a forked child, another (vanished) thread of
        // the parent may have held the lock at the fork.
        self.check_owner()?;
        let mut st = self.state();
        self.poll_locked(&mut st)
    }

    fn check_owner(&self) -> Result<(), JoinError> {
        if self.owner_pid == sys::getpid() {
            Ok(())
        } else {
            Err(JoinError::StatusUnavailable {
                reason: "the child belongs to another process (this one was forked)",
            })
        }
    }

    fn poll_locked(&self, st: &mut State) -> Result<Option<WaitStatus>, JoinError> {
        if let Some(s) = st.status {
            return Ok(Some(s));
        }
        if let Some(reason) = st.lost {
            return Err(JoinError::StatusUnavailable { reason });
        }
        match &self.channel {
            Channel::Local { reports, is_socket } => match sys::try_wait(self.pid) {
                Ok(Some(s)) => {
                    st.status = Some(s);
                    // A child sends a report only before exiting with one of
                    // these codes: spare the read otherwise.
                    if s == WaitStatus::Exited(PANIC_EXIT_CODE)
                        || s == WaitStatus::Exited(FAILURE_EXIT_CODE)
                    {
                        drain(reports, *is_socket, st);
                    }
                    Ok(Some(s))
                }
                Ok(None) => Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    let reason = "reaped by someone else (is SIGCHLD ignored?)";
                    st.lost = Some(reason);
                    Err(JoinError::StatusUnavailable { reason })
                }
                Err(source) => Err(JoinError::Io {
                    op: "waitpid",
                    source,
                }),
            },
            Channel::Server { sock } => {
                let eof = drain(sock, true, st);
                if let Some(s) = st.status {
                    return Ok(Some(s));
                }
                if eof {
                    let reason = "the fork server exited before reporting";
                    st.lost = Some(reason);
                    return Err(JoinError::StatusUnavailable { reason });
                }
                Ok(None)
            }
        }
    }

    /// Waits until the child ends or `deadline` passes (`None`: forever;
    /// `Some(None)`: a deadline too far to represent, also forever).
    pub(crate) fn wait(
        &self,
        deadline: Option<Option<Instant>>,
    ) -> Result<Option<WaitStatus>, JoinError> {
        let deadline = deadline.flatten();
        let mut nap = Duration::from_micros(50);
        loop {
            if let Some(s) = self.poll()? {
                return Ok(Some(s));
            }
            let remaining = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    Some(d - now)
                }
            };
            // Sleep without holding the state lock, so `terminate` from
            // another thread is not blocked.
            let fd = match (&self.channel, &self.pidfd) {
                (Channel::Server { sock }, _) => Some(sock.as_fd()),
                (Channel::Local { .. }, Some(p)) => Some(p.as_fd()),
                (Channel::Local { .. }, None) => None,
            };
            match fd {
                Some(fd) => {
                    sys::poll_readable(fd, remaining)
                        .map_err(|source| JoinError::Io { op: "poll", source })?;
                }
                None => {
                    // No pidfd (old kernel, other Unix): back off from 50 us
                    // to 10 ms between waitpid checks.
                    std::thread::sleep(remaining.map_or(nap, |r| r.min(nap)));
                    nap = (nap * 2).min(Duration::from_millis(10));
                }
            }
        }
    }

    /// The result of `join` once the child has ended with `s`.
    pub(crate) fn outcome(&self, s: WaitStatus) -> Result<ExitStatus, JoinError> {
        self.check_owner()?;
        let status = ExitStatus(s);
        match &self.state().report {
            None => Ok(status),
            Some(Report::Panicked(m)) => Err(JoinError::Panicked {
                message: m.clone(),
                status,
            }),
            Some(Report::Failed(m)) => Err(JoinError::Failed {
                message: m.clone(),
                status,
            }),
        }
    }

    /// Sends `sig` unless the child is known to have ended.
    pub(crate) fn signal(&self, sig: i32) -> std::io::Result<()> {
        if self.owner_pid != sys::getpid() {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        let mut st = self.state();
        if !matches!(self.poll_locked(&mut st), Ok(None)) {
            return Ok(());
        }
        let r = match &self.pidfd {
            Some(fd) => sys::pidfd_send_signal(fd.as_fd(), sig),
            // Our own unreaped child (reaping happens under this lock), or
            // a server worker without pidfd (other Unix: a small pid-reuse
            // window remains there).
            None => sys::kill(self.pid, sig),
        };
        match r {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// The [`super::Process`] handle is dropped.
    pub(crate) fn on_handle_drop(&self) {
        if self.owner_pid != sys::getpid() {
            // An inherited copy in a forked child: not ours to touch.
            return;
        }
        match self.poll() {
            Ok(None) if self.daemon => {
                let _ = self.signal(libc::SIGKILL);
                // SIGKILL is not refused to our own child, but one stuck in
                // the kernel may take a while to go: wait a bounded time,
                // then leave it to a later sweep rather than hang.
                let _ = self.wait(Some(Instant::now().checked_add(Duration::from_secs(5))));
            }
            // Still running, not a daemon: detached; stays in the registry
            // to be reaped by a later sweep.
            _ => {}
        }
    }
}

/// Reads whatever the child (or server) has sent, without blocking, into
/// `st`. Returns whether the other end is closed.
fn drain(fd: &OwnedFd, is_socket: bool, st: &mut State) -> bool {
    let mut buf = [0u8; 8192];
    let mut eof = false;
    loop {
        let r = if is_socket {
            sys::recv_nonblocking(fd.as_fd(), &mut buf)
        } else {
            sys::read_some(fd.as_fd(), &mut buf)
        };
        match r {
            Ok(Some(0)) => {
                eof = true;
                break;
            }
            Ok(Some(n)) => st.frames.extend(&buf[..n]),
            Ok(None) => break,
            Err(_) => {
                eof = true;
                break;
            }
        }
    }
    while let Ok(Some((tag, payload))) = st.frames.next_frame() {
        let text = || String::from_utf8_lossy(&payload).into_owned();
        match tag {
            wire::PANICKED => st.report = Some(Report::Panicked(text())),
            wire::FAILED => st.report = Some(Report::Failed(text())),
            wire::STATUS => {
                if let Some(s) = wire::decode_status(&payload) {
                    st.status = Some(s);
                }
            }
            // Anything else (a late `I`): ignored.
            _ => {}
        }
    }
    eof
}

static REGISTRY: Mutex<Vec<Arc<ChildInner>>> = Mutex::new(Vec::new());

/// The registry of children started by this process and not yet seen to
/// have ended.
pub(crate) fn registry() -> MutexGuard<'static, Vec<Arc<ChildInner>>> {
    lock(&REGISTRY)
}

/// Adds a started child.
pub(crate) fn register(c: &Arc<ChildInner>) {
    registry().push(Arc::clone(c));
}

/// Removes `c`, a reaped child, from the registry.
pub(crate) fn forget_reaped(c: &Arc<ChildInner>) {
    registry().retain(|r| !Arc::ptr_eq(r, c));
}

/// Reaps the children that have ended and forgets them, and those of the
/// parent this process was forked from.
pub(crate) fn sweep() {
    // `poll` refuses the parent's children before touching their locks.
    registry().retain(|c| matches!(c.poll(), Ok(None)));
}
