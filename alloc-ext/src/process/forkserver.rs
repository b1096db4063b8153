//! The `forkserver` start method.
//!
//! ```text
//!  client (this program)            server (this binary, run again,     worker
//!                                   stopped in init(); single thread)
//!  first use: fork+exec --------->  init(): sees MARKER
//!  <----------------------------- C nonce, over the control socket
//!  K nonce ---------------------->  proven? (see launch::prove_launch)
//!  <----------------------------- R (ready)
//!  per process:
//!  socketpair(SEQPACKET) a|b
//!  Q request + fd b ------------->  look up entry; fork() ------------> close server fds
//!    (with the client's auth key)                                      set_authkey(request's)
//!  <------------------ I pid + pidfd (over a)                          [daemon] PDEATHSIG
//!  start() returns                                                     run entry
//!                                   <- (pidfd readable)    P report -> (over b, to client)
//!                                   waitpid                            _exit(code)
//!  <------------------ S status (over a), then b closes
//! ```
//!
//! The server is the real parent of every worker: it reaps them and relays
//! their status; the client signals a worker through the pidfd it was sent,
//! so a reused pid is never hit. Because the server is a fresh process that
//! runs nothing but `main` up to `init`, it is single-threaded and holds no
//! lock of the client whatever the client has become: it may be started
//! lazily, from any thread. The server exits when the client's process
//! does (its pidfd becomes readable, or the control socket reaches end of
//! stream); daemon workers then die of their parent-death signal, other
//! workers run on (re-parented to init).
//!
//! # Who may ask for a worker
//!
//! The server has no address: it is reached only through the control
//! socket pair its client made and passed at launch (the client's end is
//! close-on-exec and closed in the client's forked children), and it
//! serves only once the launch is proven as a spawn child's is
//! ([`prove_launch`]: the client is its parent, runs the same program and
//! answers a random challenge from its own pid). Run by an outsider with
//! `--multiproc-forkserver ...`, `init` returns and `main` goes on.
//!
//! # Descriptors
//!
//! The server is launched as a spawn child is: it holds 0, 1, 2 and the
//! control socket of the client's descriptors, nothing else. A worker
//! closes the server's own descriptors (control socket, the client's
//! pidfd, the other workers' sockets and pidfds) right after the fork, so
//! it holds 0, 1, 2, its own socket, and what the server's `main` opened
//! before `init` (as a spawn child would have).
//!
//! The server ignores `SIGINT` (a Ctrl-C in the terminal must not take it
//! down under a client that handles the signal); workers restore it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::child::{self, Channel, ChildInner};
use super::exec::{cstr, exe, reap_failed, recv_frame};
use super::identity::{self, ChildIdent};
use super::launch::{answer_challenge, prove_launch};
use super::wire::{self, FrameBuf, Request};
use super::{
    entry, flush_std_streams, lock, run_guarded, start_err, EntryFn, ProcessError, StartMethod,
};
use crate::sys::{self, Forked};

/// `argv[1]` of the fork server.
pub(crate) const MARKER: &str = "--multiproc-forkserver";
/// Protocol version, `argv[2]` (3: a `Q` request carries the client's auth key).
const VERSION: &str = "3";

const REFUSED_UNKNOWN: u8 = 1;
const REFUSED_FORK: u8 = 2;
const REFUSED_MALFORMED: u8 = 3;

/// The client's connection to its server.
#[derive(Debug)]
pub(crate) struct Server {
    owner_pid: u32,
    pid: u32,
    ctl: Mutex<OwnedFd>,
    ctl_raw: RawFd,
    /// Requests to it failed, or it exited: start a new one.
    dead: AtomicBool,
    /// Its exit was collected (its pid may belong to another process now).
    reaped: AtomicBool,
}

static SLOT: Mutex<Option<Arc<Server>>> = Mutex::new(None);

/// Locks the server slot (the fork path holds it across `fork`).
pub(crate) fn lock_slot() -> MutexGuard<'static, Option<Arc<Server>>> {
    lock(&SLOT)
}

/// In a freshly forked child: drops the inherited connection without
/// running destructors that other (frozen) threads' copies could share.
pub(crate) fn forget_in_child(mut slot: MutexGuard<'static, Option<Arc<Server>>>) {
    if let Some(s) = slot.take() {
        // Close our copy of the client end, so the server sees its client
        // go when the parent does, not when this child does.
        sys::close_raw(s.ctl_raw);
        // Never dropped: the descriptor is closed above, and other Arcs
        // live only on the stacks of threads that do not exist here.
        std::mem::forget(s);
    }
}

fn connect(timeout: Duration) -> Result<Arc<Server>, ProcessError> {
    let mut slot = lock_slot();
    if let Some(s) = slot.as_ref() {
        // Relaxed: a hint set by a failed request; a stale read only costs
        // one more failed request.
        if s.owner_pid == sys::getpid() && !s.dead.load(Ordering::Relaxed) {
            return Ok(Arc::clone(s));
        }
    }
    if let Some(old) = slot.take() {
        // Relaxed: `reaped` is only written under the slot lock, held here.
        if old.owner_pid == sys::getpid() && !old.reaped.load(Ordering::Relaxed) {
            reap_failed(old.pid, true);
        }
    }
    let (mine, theirs) = sys::socketpair(libc::SOCK_STREAM).map_err(start_err("socketpair"))?;
    let (path, argv0) = exe()?;
    let argv = vec![
        argv0,
        cstr(MARKER)?,
        cstr(VERSION)?,
        cstr(theirs.as_raw_fd().to_string())?,
        cstr(sys::getpid().to_string())?,
    ];
    let pid = sys::spawn_exe(&path, &argv, theirs.as_fd()).map_err(start_err("spawn"))?;
    drop(theirs);
    let mut frames = FrameBuf::default();
    let deadline = Instant::now() + timeout;
    if let Err(timed_out) = answer_challenge(mine.as_fd(), &mut frames, deadline) {
        let status = reap_failed(pid, true);
        return Err(ProcessError::InitHookMissing {
            status: if timed_out { None } else { status },
        });
    }
    match recv_frame(mine.as_fd(), &mut frames, deadline) {
        Ok(Some((wire::READY, _, _))) => {}
        Err(true) => {
            reap_failed(pid, true);
            return Err(ProcessError::InitHookMissing { status: None });
        }
        _ => {
            let status = reap_failed(pid, true);
            return Err(ProcessError::InitHookMissing { status });
        }
    }
    let server = Arc::new(Server {
        owner_pid: sys::getpid(),
        pid,
        ctl_raw: mine.as_raw_fd(),
        ctl: Mutex::new(mine),
        dead: AtomicBool::new(false),
        reaped: AtomicBool::new(false),
    });
    *slot = Some(Arc::clone(&server));
    Ok(server)
}

fn gone(server: &Server, what: &str) -> ProcessError {
    // Relaxed: see `connect`.
    server.dead.store(true, Ordering::Relaxed);
    ProcessError::Forkserver {
        reason: format!("the fork server is gone ({what})"),
    }
}

pub(crate) fn start(
    entry_name: &str,
    args: Vec<u8>,
    ident: ChildIdent,
    timeout: Duration,
) -> Result<Arc<ChildInner>, ProcessError> {
    if entry::lookup(entry_name).is_none() {
        return Err(ProcessError::UnknownEntry {
            name: entry_name.to_owned(),
        });
    }
    // The request holds the arguments and the key, and more: refuse what
    // cannot fit before copying it into one (and the exact size below).
    let key = crate::connection::authkey();
    let at_least = args.len().saturating_add(key.len());
    if at_least > wire::MAX_FRAME {
        return Err(ProcessError::ArgumentsTooLarge {
            len: at_least,
            max: wire::MAX_FRAME,
        });
    }
    let (mine, theirs) = sys::socketpair(libc::SOCK_SEQPACKET).map_err(start_err("socketpair"))?;
    let req = Request {
        daemon: ident.daemon,
        parent_pid: ident.parent_pid,
        entry: entry_name.to_owned(),
        name: ident.name.clone(),
        ident: ident.path.clone(),
        // The key the client has now: the server's own may differ, and
        // `set_authkey` may change the client's between two starts.
        authkey: key,
        args,
    }
    .encode();
    // Checked before the server sees it: it would refuse the frame.
    if req.len() > wire::MAX_FRAME {
        return Err(ProcessError::ArgumentsTooLarge {
            len: req.len(),
            max: wire::MAX_FRAME,
        });
    }
    // A server that died (killed, say) is noticed when the request cannot
    // be written: it then never saw the request, so one retry with a new
    // server cannot run the entry point twice.
    let mut retried = false;
    let server = loop {
        let server = connect(timeout)?;
        match send_request(&server, &req, theirs.as_fd()) {
            Ok(()) => break server,
            Err(what) => {
                let err = gone(&server, &what);
                if retried {
                    return Err(err);
                }
                retried = true;
            }
        }
    };
    drop(theirs);
    let mut frames = FrameBuf::default();
    let (pid, pidfd) = match recv_frame(mine.as_fd(), &mut frames, Instant::now() + timeout) {
        Ok(Some((wire::STARTED, p, pidfd))) => match <[u8; 4]>::try_from(p.as_slice()) {
            Ok(b) => (u32::from_le_bytes(b), pidfd),
            Err(_) => return Err(gone(&server, "malformed answer")),
        },
        Ok(Some((wire::REFUSED, p, _))) => {
            let text = String::from_utf8_lossy(p.get(1..).unwrap_or_default()).into_owned();
            return Err(match p.first() {
                Some(&REFUSED_UNKNOWN) => ProcessError::UnknownEntry {
                    name: entry_name.to_owned(),
                },
                _ => ProcessError::Forkserver { reason: text },
            });
        }
        Ok(_) => return Err(gone(&server, "connection closed")),
        Err(true) => {
            return Err(ProcessError::Forkserver {
                reason: "no answer from the fork server in time".to_owned(),
            })
        }
        Err(false) => return Err(gone(&server, "malformed answer")),
    };
    let inner = Arc::new(ChildInner::new(
        pid,
        &ident,
        pidfd,
        Channel::Server { sock: mine },
    ));
    child::register(&inner);
    Ok(inner)
}

/// Writes one request, with the worker's socket attached.
fn send_request(server: &Server, req: &[u8], sock: BorrowedFd<'_>) -> Result<(), String> {
    let ctl = lock(&server.ctl);
    let h = wire::header(wire::REQUEST, req.len());
    match sys::send_with_fd(ctl.as_fd(), &h, Some(sock)) {
        Ok(n) if n == h.len() => {}
        Ok(_) => return Err("short write".to_owned()),
        Err(e) => return Err(e.to_string()),
    }
    sys::send_all(ctl.as_fd(), req).map_err(|e| e.to_string())
}

/// Reaps the server if it has died, so it is not left a zombie; the next
/// `Forkserver` start then runs a new one.
pub(crate) fn reap_if_dead() {
    let slot = lock_slot();
    if let Some(s) = slot.as_ref() {
        // Relaxed: `reaped` is only accessed under the slot lock.
        if s.owner_pid == sys::getpid()
            && !s.reaped.load(Ordering::Relaxed)
            && !matches!(sys::try_wait(s.pid), Ok(None))
        {
            s.reaped.store(true, Ordering::Relaxed);
            // Relaxed: see `connect`.
            s.dead.store(true, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------
// Server side.

struct Worker {
    pid: u32,
    pidfd: Option<OwnedFd>,
    sock: OwnedFd,
}

fn refuse(sock: &OwnedFd, code: u8, text: &str) {
    let mut p = vec![code];
    p.extend_from_slice(text.as_bytes());
    let _ = sys::send_with_fd(sock.as_fd(), &wire::frame(wire::REFUSED, &p), None);
}

/// Reads exactly `buf.len()` bytes from a blocking descriptor.
fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match sys::read_some(fd, &mut buf[got..]) {
            Ok(Some(0)) | Err(_) => return false,
            Ok(Some(n)) => got += n,
            Ok(None) => {
                let _ = sys::poll_readable(fd, None);
            }
        }
    }
    true
}

/// Reads one request and the descriptor sent with it; `None` when the
/// client is gone or sent garbage (the server then exits).
fn read_request(ctl: &OwnedFd) -> Option<(Vec<u8>, OwnedFd)> {
    let mut h = [0u8; wire::HEADER];
    let (n, fd) = sys::recv_with_fd(ctl.as_fd(), &mut h, false).ok()??;
    if n == 0 || !read_exact(ctl.as_fd(), &mut h[n..]) {
        return None;
    }
    let (tag, len) = wire::parse_header(&h)?;
    if tag != wire::REQUEST {
        return None;
    }
    let mut payload = vec![0u8; len];
    if !read_exact(ctl.as_fd(), &mut payload) {
        return None;
    }
    Some((payload, fd?))
}

/// The server, called from [`crate::init`]; `args` is the rest of argv
/// after [`MARKER`]. Returns (having changed nothing) unless the launch is
/// well-formed and proven ([`prove_launch`]); otherwise serves, then exits.
pub(crate) fn server_main(mut args: std::env::ArgsOs) {
    let mut next = || args.next().and_then(|a| a.into_string().ok());
    if next().as_deref() != Some(VERSION) {
        return;
    }
    let Some(fd) = next().and_then(|a| a.parse::<RawFd>().ok()) else {
        return;
    };
    let Some(client) = next().and_then(|a| a.parse::<u32>().ok()) else {
        return;
    };
    if next().is_some() {
        return;
    }
    let Ok(ctl) = prove_launch(fd, client) else {
        return;
    };
    serve(ctl, client)
}

fn serve(ctl: OwnedFd, client: u32) -> ! {
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let client_pidfd = sys::pidfd_open(client).ok().flatten();
    if sys::getppid() != client
        || sys::send_all(ctl.as_fd(), &wire::frame(wire::READY, b"")).is_err()
    {
        std::process::exit(0);
    }
    let server_pid = sys::getpid();
    let mut workers: Vec<Worker> = Vec::new();
    loop {
        let mut fds = vec![ctl.as_raw_fd()];
        if let Some(c) = &client_pidfd {
            fds.push(c.as_raw_fd());
        }
        let base = fds.len();
        fds.extend(
            workers
                .iter()
                .filter_map(|w| w.pidfd.as_ref().map(|p| p.as_raw_fd())),
        );
        // Workers without a pidfd (old kernels) are polled every 20 ms.
        let timeout = workers
            .iter()
            .any(|w| w.pidfd.is_none())
            .then_some(Duration::from_millis(20));
        let Ok(ready) = sys::poll_many(&fds, timeout) else {
            break;
        };
        let is_ready = |i: usize| ready.get(i).copied().unwrap_or(false);
        if client_pidfd.is_some() && is_ready(1) {
            break;
        }
        let mut k = base;
        workers.retain(|w| {
            let check = match &w.pidfd {
                Some(_) => {
                    k += 1;
                    is_ready(k - 1)
                }
                None => true,
            };
            if !check {
                return true;
            }
            match sys::try_wait(w.pid) {
                Ok(None) => true,
                Ok(Some(st)) => {
                    let f = wire::frame(wire::STATUS, &wire::encode_status(st));
                    let _ = sys::send_with_fd(w.sock.as_fd(), &f, None);
                    false
                }
                Err(_) => false,
            }
        });
        if is_ready(0) {
            let Some((payload, sock)) = read_request(&ctl) else {
                break;
            };
            handle(
                &payload,
                sock,
                &ctl,
                client_pidfd.as_ref(),
                &mut workers,
                server_pid,
            );
        }
    }
    // The client is gone. Daemon workers die of their parent-death signal
    // as we exit; the others run on.
    std::process::exit(0)
}

fn handle(
    payload: &[u8],
    sock: OwnedFd,
    ctl: &OwnedFd,
    client_pidfd: Option<&OwnedFd>,
    workers: &mut Vec<Worker>,
    server_pid: u32,
) {
    let Some(req) = Request::decode(payload) else {
        refuse(&sock, REFUSED_MALFORMED, "malformed request");
        return;
    };
    let Some(f) = entry::lookup(&req.entry) else {
        refuse(&sock, REFUSED_UNKNOWN, &req.entry);
        return;
    };
    // SAFETY: this process is single-threaded (it runs nothing but `main`
    // up to `init`, then this loop), so no lock is held by another thread;
    // the child leaves through `worker_main`, which never returns.
    match unsafe { sys::fork() } {
        Err(e) => refuse(&sock, REFUSED_FORK, &format!("fork: {e}")),
        Ok(Forked::Child) => {
            // Close the server's descriptors; the Rust objects owning them
            // are never dropped here, since the worker leaves with _exit.
            sys::close_raw(ctl.as_raw_fd());
            if let Some(c) = client_pidfd {
                sys::close_raw(c.as_raw_fd());
            }
            for w in workers.iter() {
                sys::close_raw(w.sock.as_raw_fd());
                if let Some(p) = &w.pidfd {
                    sys::close_raw(p.as_raw_fd());
                }
            }
            worker_main(f, req, sock, server_pid)
        }
        Ok(Forked::Parent(pid)) => {
            let pidfd = sys::pidfd_open(pid).ok().flatten();
            let f = wire::frame(wire::STARTED, &pid.to_le_bytes());
            let _ = sys::send_with_fd(sock.as_fd(), &f, pidfd.as_ref().map(|p| p.as_fd()));
            workers.push(Worker { pid, pidfd, sock });
        }
    }
}

fn worker_main(f: EntryFn, req: Request, sock: OwnedFd, server_pid: u32) -> ! {
    // SAFETY: restoring the default disposition installs no handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    if req.daemon {
        let _ = sys::set_parent_death_signal(libc::SIGKILL);
        if sys::getppid() != server_pid {
            sys::exit_immediately(1);
        }
    }
    identity::set_child(&ChildIdent {
        name: req.name,
        daemon: req.daemon,
        method: StartMethod::Forkserver,
        path: req.ident,
        parent_pid: req.parent_pid,
    });
    crate::connection::set_authkey(&req.authkey);
    let args = req.args;
    let (code, report) = run_guarded(move || (f(&args), None));
    if let Some(frame) = report {
        let _ = sys::send_with_fd(sock.as_fd(), &frame, None);
    }
    flush_std_streams();
    sys::exit_immediately(code)
}
