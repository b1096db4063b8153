//! The `spawn` start method: the current executable run again, which
//! stops in [`crate::init`] and runs a registered entry point.
//!
//! ```text
//!  parent                                  child (same binary, fresh)
//!  socketpair (close-on-exec)
//!  fork, exec(/proc/self/exe, MARKER ..)   main(): register_entry(..)
//!    child's end kept at its number,       init(): sees MARKER, checks
//!    every other fd > 2 closed at exec       fd, getppid, SO_PEERCRED, exe
//!  <------------------------- C nonce (16 random bytes)
//!  K nonce (kernel stamps our pid) ------->  sender pid == parent? nonce?
//!                                          [daemon] PDEATHSIG, getppid
//!  <------------------------- R (ready) or U (unknown entry)
//!  A (auth key, arguments) --------------->  set_authkey(key)
//!  start() returns                         run entry under catch_unwind
//!                        <---------------- P (panic message), if any
//!  join: poll(pidfd), waitpid              flush, exit(code)
//! ```
//!
//! If the child closes the socket or says nothing before the handshake
//! timeout, it never reached `init` (or refused the launch): the parent
//! reaps (or kills and reaps) it and reports
//! [`ProcessError::InitHookMissing`].
//!
//! # Descriptors
//!
//! The child holds 0, 1, 2 and its end of the socket, nothing else of the
//! parent's: every other descriptor, close-on-exec or not, is closed at the
//! `exec` ([`sys::spawn_exe`]), as Python's spawn does. The fork server is
//! launched the same way.
//!
//! # Who may launch
//!
//! `init` acts on `--multiproc-spawn` (or `--multiproc-forkserver`) only
//! when the launch proves that it comes from a parent running this very
//! program; see [`prove_launch`]. Anything else (an outsider running the
//! program with those arguments, whatever descriptors it passes) makes
//! `init` return without side effects, and `main` goes on with its argv
//! unchanged.

use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::child::{self, Channel, ChildInner};
use super::identity::{self, ChildIdent};
use super::wire::{self, FrameBuf};
use super::{
    entry, flush_std_streams, run_guarded, start_err, ExitStatus, ProcessError, StartMethod,
};
use crate::sys;

/// `argv[1]` of a spawned child.
pub(crate) const MARKER: &str = "--multiproc-spawn";
/// Protocol version, `argv[2]` (3: the `A` frame carries the auth key).
const VERSION: &str = "3";

/// How long a launched child waits for its parent's proof (`K`) before it
/// gives the launch up. The parent answers at once; this only bounds a
/// silent peer.
const PROOF_TIMEOUT: Duration = Duration::from_secs(30);

/// The executable to run again, and `argv[0]` to give it.
pub(crate) fn exe() -> Result<(CString, CString), ProcessError> {
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("multiproc-child"));
    let argv0 = CString::new(argv0.as_bytes()).unwrap_or_else(|_| c"multiproc-child".to_owned());
    #[cfg(target_os = "linux")]
    let path = c"/proc/self/exe".to_owned();
    #[cfg(not(target_os = "linux"))]
    let path = {
        let p = std::env::current_exe().map_err(start_err("current_exe"))?;
        CString::new(p.as_os_str().as_bytes()).map_err(|_| ProcessError::Io {
            op: "current_exe",
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })?
    };
    Ok((path, argv0))
}

pub(crate) fn cstr(s: impl Into<Vec<u8>>) -> Result<CString, ProcessError> {
    CString::new(s).map_err(|_| ProcessError::Io {
        op: "argv",
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

/// A child's identity path as its argv carries it: `1:4:2` (empty for a
/// child of the main process).
pub(crate) fn path_str(path: &[u32]) -> String {
    let parts: Vec<String> = path.iter().map(u32::to_string).collect();
    parts.join(":")
}

/// Decodes what [`path_str`] made, and only that: decimal numbers without
/// sign or leading zeros (`u32::from_str` alone would take `+1` and `01`),
/// so a path decodes to the one that encodes to the same text.
pub(crate) fn parse_path(s: &str) -> Option<Vec<u32>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(':')
        .map(|p| {
            let canonical =
                p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'));
            canonical.then(|| p.parse().ok()).flatten()
        })
        .collect()
}

/// A frame received with [`recv_frame`]: tag, payload, and the descriptor
/// that came with it, if any.
pub(crate) type Received = (u8, Vec<u8>, Option<OwnedFd>);

/// Waits for one frame on `sock` until `deadline`: `Ok(None)` at end of
/// stream, `Err(true)` at the deadline, `Err(false)` on garbage or error.
pub(crate) fn recv_frame(
    sock: BorrowedFd<'_>,
    frames: &mut FrameBuf,
    deadline: Instant,
) -> Result<Option<Received>, bool> {
    let mut got_fd = None;
    loop {
        match frames.next_frame() {
            Ok(Some((tag, payload))) => return Ok(Some((tag, payload, got_fd))),
            Ok(None) => {}
            Err(_) => return Err(false),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(true);
        }
        if !sys::poll_readable(sock, Some(deadline - now)).map_err(|_| false)? {
            continue;
        }
        let mut buf = [0u8; 8192];
        match sys::recv_with_fd(sock, &mut buf, true) {
            Ok(None) => {}
            Ok(Some((0, _))) => return Ok(None),
            Ok(Some((n, fd))) => {
                frames.extend(&buf[..n]);
                if fd.is_some() {
                    got_fd = fd;
                }
            }
            Err(_) => return Err(false),
        }
    }
}

/// Reaps a child that failed the handshake (killing it first if it is
/// still running) and says why.
pub(crate) fn reap_failed(pid: u32, kill: bool) -> Option<ExitStatus> {
    if kill {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    sys::wait_blocking(pid).ok().map(ExitStatus)
}

pub(crate) fn start(
    entry_name: &str,
    args: &[u8],
    ident: ChildIdent,
    timeout: Duration,
) -> Result<Arc<ChildInner>, ProcessError> {
    if entry::lookup(entry_name).is_none() {
        return Err(ProcessError::UnknownEntry {
            name: entry_name.to_owned(),
        });
    }
    // Checked before anything starts: the child would refuse the frame.
    let len = 4usize
        .saturating_add(crate::connection::authkey().len())
        .saturating_add(args.len());
    if len > wire::MAX_FRAME {
        return Err(ProcessError::ArgumentsTooLarge {
            len,
            max: wire::MAX_FRAME,
        });
    }
    let (mine, theirs) = sys::socketpair(libc::SOCK_STREAM).map_err(start_err("socketpair"))?;
    let (path, argv0) = exe()?;
    let argv = vec![
        argv0,
        cstr(MARKER)?,
        cstr(VERSION)?,
        cstr(theirs.as_raw_fd().to_string())?,
        cstr(ident.parent_pid.to_string())?,
        cstr(if ident.daemon { "1" } else { "0" })?,
        cstr(entry_name)?,
        cstr(ident.name.as_bytes())?,
        cstr(path_str(&ident.path))?,
    ];
    let pid = sys::spawn_exe(&path, &argv, theirs.as_fd()).map_err(start_err("spawn"))?;
    drop(theirs);
    let pidfd = sys::pidfd_open(pid).ok().flatten();

    let deadline = Instant::now() + timeout;
    let mut frames = FrameBuf::default();
    match answer_challenge(mine.as_fd(), &mut frames, deadline) {
        Ok(()) => {}
        Err(timed_out) => {
            let status = reap_failed(pid, true);
            return Err(ProcessError::InitHookMissing {
                status: if timed_out { None } else { status },
            });
        }
    }
    match recv_frame(mine.as_fd(), &mut frames, deadline) {
        Ok(Some((wire::READY, _, _))) => {}
        Ok(Some((wire::UNKNOWN_ENTRY, _, _))) => {
            reap_failed(pid, false);
            return Err(ProcessError::UnknownEntry {
                name: entry_name.to_owned(),
            });
        }
        Ok(None) | Ok(Some(_)) | Err(false) => {
            let status = reap_failed(pid, true);
            return Err(ProcessError::InitHookMissing { status });
        }
        Err(true) => {
            reap_failed(pid, true);
            return Err(ProcessError::InitHookMissing { status: None });
        }
    }
    // The child inherits the key the parent has now, as Python's spawn
    // passes `authkey` in its preparation data.
    let key = wire::job_prefix(&crate::connection::authkey());
    let sent = sys::send_all(
        mine.as_fd(),
        &wire::header(wire::ARGS, key.len() + args.len()),
    )
    .and_then(|()| sys::send_all(mine.as_fd(), &key))
    .and_then(|()| sys::send_all(mine.as_fd(), args));
    if let Err(e) = sent {
        reap_failed(pid, true);
        return Err(ProcessError::Io {
            op: "send arguments",
            source: e,
        });
    }
    let inner = Arc::new(ChildInner::new(
        pid,
        &ident,
        pidfd,
        Channel::Local {
            reports: mine,
            is_socket: true,
        },
    ));
    child::register(&inner);
    Ok(inner)
}

/// The parent's half of the launch proof: waits for the child's `C`
/// challenge and sends its bytes back in a `K` frame from this process,
/// which the kernel stamps with this process's pid. `Err(true)` at the
/// deadline, `Err(false)` on anything else than a challenge.
pub(crate) fn answer_challenge(
    sock: BorrowedFd<'_>,
    frames: &mut FrameBuf,
    deadline: Instant,
) -> Result<(), bool> {
    match recv_frame(sock, frames, deadline) {
        Ok(Some((wire::CHALLENGE, p, _))) => {
            let nonce = wire::parse_nonce(&p).ok_or(false)?;
            sys::send_all(sock, &wire::frame(wire::PROOF, &nonce)).map_err(|_| false)
        }
        Err(true) => Err(true),
        _ => Err(false),
    }
}

/// Why [`prove_launch`] refused a launch (kept for tests and debugging;
/// `init` says nothing and returns).
pub(crate) type Refusal = &'static str;

/// Decides whether the launch that put `fd` in this process (and the
/// claimed `parent_pid` in its argv) comes from a parent that runs this
/// very program, and only then takes `fd` over (close-on-exec).
///
/// A launch is proven when all of these hold, checked in this order:
///
/// 1. `fd` is above the standard streams, open, and a Unix stream socket;
/// 2. `parent_pid` is this process's parent (`getppid`), and the kernel's
///    record of who made the socket pair (`SO_PEERCRED`) names it too;
/// 3. that parent runs the same executable file as this process (device
///    and inode of `/proc/<pid>/exe`, read through the kernel);
/// 4. a challenge of 16 bytes from `getrandom(2)` is sent over `fd`, and
///    the same bytes come back in data that the kernel attests (with
///    `SCM_CREDENTIALS`, after `SO_PASSCRED`) was sent by the parent
///    process itself, after the challenge;
/// 5. steps 2 and 3 still hold.
///
/// Why an outsider cannot pass: whoever runs the program is its parent and
/// may choose argv and every descriptor, so argv and the socket's contents
/// prove nothing alone. The kernel's facts do: the answer must be sent by
/// the parent process (3 and 4), while it runs this program (3, before the
/// challenge and after the answer, so it runs the program throughout: an
/// outsider that execs the program after forking the child no longer runs
/// its own code then), and this program answers a challenge only on a
/// socket it made for a child it just started. An outsider that runs its
/// own code as the parent fails 3; one that execs the program fails 4, as
/// only the program could answer and it does not; one whose helper
/// answers fails 4 (the helper's pid is stamped). Passing needs the
/// privilege to forge credentials (`CAP_SYS_ADMIN`) or to trace the parent,
/// which already gives control of the program.
///
/// Until the launch is proven, nothing is changed but the challenge written
/// to `fd` (after 1 to 3 passed) and `SO_PASSCRED` meanwhile (restored); `fd`
/// is never closed. A legitimate parent whose `/proc/<pid>/exe` the child
/// may not read (a non-dumpable, e.g. set-user-ID, program) cannot start
/// children with `Spawn` or `Forkserver`; neither can any parent on a
/// system other than Linux, which has no kernel-attested sender.
pub(crate) fn prove_launch(fd: RawFd, parent_pid: u32) -> Result<OwnedFd, Refusal> {
    if fd <= 2 {
        return Err("the descriptor is a standard stream");
    }
    // SAFETY: F_GETFD only inspects the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err("the descriptor is not open");
    }
    // SAFETY: `fd` is open (checked above); the borrow lives only in this
    // function, which closes nothing and hands `fd` out only once proven.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    if !sys::is_unix_stream(sock) {
        return Err("the descriptor is not a Unix stream socket");
    }
    let parent_runs_us = || {
        parent_pid != 0
            && sys::getppid() == parent_pid
            && sys::runs_same_executable(parent_pid).unwrap_or(false)
    };
    if sys::getppid() != parent_pid || sys::peer_pid(sock).ok() != Some(parent_pid) {
        return Err("the socket was not made by the parent");
    }
    if !parent_runs_us() {
        return Err("the parent does not run this program");
    }
    let mut nonce = [0u8; wire::NONCE_LEN];
    sys::fill_random(&mut nonce).map_err(|_| "no random bytes")?;
    let prev = sys::set_pass_credentials(sock, true).map_err(|_| "SO_PASSCRED")?;
    let answered = challenge(sock, parent_pid, &nonce);
    let _ = sys::set_pass_credentials(sock, prev);
    answered?;
    if !parent_runs_us() {
        return Err("the parent does not run this program");
    }
    // SAFETY: the launch is proven: the parent placed this descriptor for
    // this process alone, and nothing else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Keep it from leaking into processes this one execs.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(sock)
}

/// Step 4 of [`prove_launch`]: sends `nonce` and waits (at most
/// [`PROOF_TIMEOUT`]) for a `K` frame carrying it, all of whose bytes the
/// kernel says `parent_pid` sent. Reads no byte past that frame.
fn challenge(sock: BorrowedFd<'_>, parent_pid: u32, nonce: &[u8]) -> Result<(), Refusal> {
    sys::send_all(sock, &wire::frame(wire::CHALLENGE, nonce)).map_err(|_| "challenge not sent")?;
    let want = wire::frame(wire::PROOF, nonce);
    let mut got = Vec::with_capacity(want.len());
    let deadline = Instant::now() + PROOF_TIMEOUT;
    let mut buf = [0u8; wire::HEADER + wire::NONCE_LEN];
    while got.len() < want.len() {
        let now = Instant::now();
        if now >= deadline {
            return Err("no proof in time");
        }
        if !sys::poll_readable(sock, Some(deadline - now)).map_err(|_| "poll")? {
            continue;
        }
        let room = want.len() - got.len();
        match sys::recv_with_sender(sock, &mut buf[..room]) {
            Ok(None) => {}
            Ok(Some((0, _))) => return Err("closed before the proof"),
            Ok(Some((n, sender))) => {
                if sender != Some(parent_pid) {
                    return Err("the proof was sent by another process");
                }
                got.extend_from_slice(&buf[..n]);
            }
            Err(_) => return Err("recvmsg"),
        }
    }
    if got == want {
        Ok(())
    } else {
        Err("wrong proof")
    }
}

/// What a spawned child's argv says (after [`MARKER`]).
struct Launch {
    fd: RawFd,
    parent_pid: u32,
    daemon: bool,
    entry_name: String,
    name: String,
    path: Vec<u32>,
}

impl Launch {
    fn parse(mut args: std::env::ArgsOs) -> Option<Self> {
        let mut next = || args.next().and_then(|a| a.into_string().ok());
        if next()? != VERSION {
            return None;
        }
        let fd = next()?.parse().ok()?;
        let parent_pid = next()?.parse().ok()?;
        let daemon = match next()?.as_str() {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let entry_name = next()?;
        let name = next()?;
        let path = parse_path(&next()?)?;
        if next().is_some() {
            return None;
        }
        Some(Self {
            fd,
            parent_pid,
            daemon,
            entry_name,
            name,
            path,
        })
    }
}

/// The child side, called from [`crate::init`]; `args` is the rest of argv
/// after [`MARKER`]. Returns (having changed nothing) unless the launch is
/// well-formed and proven ([`prove_launch`]); otherwise runs the entry
/// point and exits.
pub(crate) fn child_main(args: std::env::ArgsOs) {
    let Some(launch) = Launch::parse(args) else {
        return;
    };
    let Ok(sock) = prove_launch(launch.fd, launch.parent_pid) else {
        return;
    };
    run_child(launch, sock)
}

fn run_child(launch: Launch, sock: OwnedFd) -> ! {
    let Launch {
        parent_pid,
        daemon,
        entry_name,
        name,
        path,
        ..
    } = launch;
    if daemon {
        let _ = sys::set_parent_death_signal(libc::SIGKILL);
        if sys::getppid() != parent_pid {
            // The parent died before the signal was armed.
            std::process::exit(1);
        }
    }
    identity::set_child(&ChildIdent {
        name,
        daemon,
        method: StartMethod::Spawn,
        path,
        parent_pid,
    });

    let Some(f) = entry::lookup(&entry_name) else {
        let _ = sys::send_all(
            sock.as_fd(),
            &wire::frame(wire::UNKNOWN_ENTRY, entry_name.as_bytes()),
        );
        std::process::exit(2);
    };
    if sys::send_all(sock.as_fd(), &wire::frame(wire::READY, b"")).is_err() {
        std::process::exit(1);
    }
    let mut stream = UnixStream::from(sock);
    let mut h = [0u8; wire::HEADER];
    if stream.read_exact(&mut h).is_err() {
        std::process::exit(1);
    }
    let job = match wire::parse_header(&h) {
        Some((wire::ARGS, len)) => {
            let mut a = vec![0u8; len];
            if stream.read_exact(&mut a).is_err() {
                std::process::exit(1);
            }
            a
        }
        _ => bad_job(),
    };
    let Some((key, args)) = wire::decode_job(&job) else {
        bad_job()
    };
    crate::connection::set_authkey(key);
    let args = args.to_vec();
    drop(job);
    let (code, report) = run_guarded(move || (f(&args), None));
    if let Some(frame) = report {
        let _ = sys::send_all(stream.as_fd(), &frame);
    }
    flush_std_streams();
    std::process::exit(code)
}

#[cold]
fn bad_job() -> ! {
    eprintln!("multiproc spawn child: bad arguments frame");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for p in [vec![], vec![0], vec![1, 4, 2], vec![u32::MAX, 10]] {
            assert_eq!(parse_path(&path_str(&p)), Some(p));
        }
    }

    #[test]
    fn only_canonical_paths_parse() {
        // `u32::from_str` takes a sign and leading zeros: the path would
        // not encode back to the same argv.
        for bad in [
            "+1",
            "01",
            "1:+2",
            "1:00",
            "1::2",
            ":",
            "1:",
            " 1",
            "-1",
            "4294967296",
            "x",
        ] {
            assert_eq!(parse_path(bad), None, "{bad:?}");
        }
        assert_eq!(parse_path("0:10:7"), Some(vec![0, 10, 7]));
    }
}
