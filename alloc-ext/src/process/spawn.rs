//! The `spawn` start method: `posix_spawn` of the current executable, which
//! stops in [`crate::init`] and runs a registered entry point.
//!
//! ```text
//!  parent                                  child (same binary, fresh)
//!  socketpair (close-on-exec)
//!  posix_spawn(/proc/self/exe, MARKER ..)  main(): register_entry(..)
//!     child's end dup2'ed to fd 3/4        init(): sees MARKER
//!                                          [daemon] PDEATHSIG, getppid
//!  <------------------------- R (ready) or U (unknown entry)
//!  A (arguments) ------------------------->
//!  start() returns                         run entry under catch_unwind
//!                        <---------------- P (panic message), if any
//!  join: poll(pidfd), waitpid              flush, exit(code)
//! ```
//!
//! If the child closes the socket or says nothing before the handshake
//! timeout, it never reached `init`: the parent reaps (or kills and reaps)
//! it and reports [`ProcessError::InitHookMissing`].

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
/// Protocol version, `argv[2]`.
const VERSION: &str = "1";

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

/// The environment, as `KEY=VALUE` C strings (read through std, which
/// holds its environment lock meanwhile).
pub(crate) fn envp() -> Vec<CString> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect()
}

/// The descriptor number the child gets its end of the socket as: 3,
/// unless that is the source itself.
pub(crate) fn child_fd(src: BorrowedFd<'_>) -> RawFd {
    if src.as_raw_fd() == 3 {
        4
    } else {
        3
    }
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
    let (mine, theirs) = sys::socketpair(libc::SOCK_STREAM).map_err(start_err("socketpair"))?;
    let fd_no = child_fd(theirs.as_fd());
    let (path, argv0) = exe()?;
    let argv = vec![
        argv0,
        cstr(MARKER)?,
        cstr(VERSION)?,
        cstr(fd_no.to_string())?,
        cstr(ident.parent_pid.to_string())?,
        cstr(if ident.daemon { "1" } else { "0" })?,
        cstr(entry_name)?,
        cstr(ident.name.as_bytes())?,
        cstr(path_str(&ident.path))?,
    ];
    let pid = sys::spawn_exe(&path, &argv, &envp(), (theirs.as_fd(), fd_no))
        .map_err(start_err("posix_spawn"))?;
    drop(theirs);
    let pidfd = sys::pidfd_open(pid).ok().flatten();

    let deadline = Instant::now() + timeout;
    let mut frames = FrameBuf::default();
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
    let sent = sys::send_all(mine.as_fd(), &wire::header(wire::ARGS, args.len()))
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

/// Leaves a child whose start-up went wrong, with a message on stderr.
fn die(msg: &str) -> ! {
    eprintln!("multiproc spawn child: {msg}");
    std::process::exit(2)
}

/// The child side, called from [`crate::init`]; `args` is the rest of argv
/// after [`MARKER`].
pub(crate) fn child_main(mut args: std::env::ArgsOs) -> ! {
    let mut next = || {
        args.next()
            .and_then(|a| a.into_string().ok())
            .unwrap_or_else(|| die("malformed arguments"))
    };
    if next() != VERSION {
        die("protocol version mismatch");
    }
    let fd: RawFd = next().parse().unwrap_or_else(|_| die("bad descriptor"));
    let parent_pid: u32 = next().parse().unwrap_or_else(|_| die("bad parent pid"));
    let daemon = next() == "1";
    let entry_name = next();
    let name = next();
    let path = parse_path(&next()).unwrap_or_else(|| die("bad identity"));

    // SAFETY: F_GETFD only inspects the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        die("the parent's descriptor is missing");
    }
    // SAFETY: the parent passed this descriptor to us alone (checked open
    // above); nothing else in this fresh process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Keep it from leaking into processes this child execs.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };

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
    let args = match wire::parse_header(&h) {
        Some((wire::ARGS, len)) => {
            let mut a = vec![0u8; len];
            if stream.read_exact(&mut a).is_err() {
                std::process::exit(1);
            }
            a
        }
        _ => die("bad arguments frame"),
    };
    let (code, report) = run_guarded(move || (f(&args), None));
    if let Some(frame) = report {
        let _ = sys::send_all(stream.as_fd(), &frame);
    }
    flush_std_streams();
    std::process::exit(code)
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
