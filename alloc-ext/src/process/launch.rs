//! The proof that a re-run of this program was launched by its parent
//! running this very program, and the parent's half of it: the check
//! `init` makes before it acts on `--multiproc-spawn` or
//! `--multiproc-forkserver` (see [`prove_launch`]).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::exec::recv_frame;
use super::wire::{self, FrameBuf};
use crate::sys;

/// How long a launched child waits for its parent's proof (`K`) before it
/// gives the launch up. The parent answers at once; this only bounds a
/// silent peer.
const PROOF_TIMEOUT: Duration = Duration::from_secs(30);

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
