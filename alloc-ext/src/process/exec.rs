//! Running this program again, and talking to it: the executable and
//! argv of a re-run (the `spawn` child and the fork server), the frames
//! read from its socket, and the reaping of a re-run that failed its
//! handshake. Shared by [`spawn`](super::spawn) and
//! [`forkserver`](super::forkserver).

use std::ffi::{CString, OsString};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

#[cfg(not(target_os = "linux"))]
use super::start_err;
use super::wire::FrameBuf;
use super::{ExitStatus, ProcessError};
use crate::sys;

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
