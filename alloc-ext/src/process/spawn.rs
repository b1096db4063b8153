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
//! program; see [`prove_launch`](super::launch::prove_launch). Anything else (an outsider running the
//! program with those arguments, whatever descriptors it passes) makes
//! `init` return without side effects, and `main` goes on with its argv
//! unchanged.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::child::{self, Channel, ChildInner};
use super::exec::{cstr, exe, reap_failed, recv_frame};
use super::identity::{self, ChildIdent};
use super::launch::{answer_challenge, prove_launch};
use super::wire::{self, FrameBuf};
use super::{entry, flush_std_streams, run_guarded, start_err, ProcessError, StartMethod};
use crate::sys;

/// `argv[1]` of a spawned child.
pub(crate) const MARKER: &str = "--multiproc-spawn";
/// Protocol version, `argv[2]` (3: the `A` frame carries the auth key).
const VERSION: &str = "3";

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
