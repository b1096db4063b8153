//! Hygiene of the spawn and fork-server start methods and of named shared
//! memory, against what another process or user can do:
//!
//! - a descriptor of the parent without close-on-exec does not reach a
//!   spawned child, the fork server, or a fork-server worker;
//! - an outsider that runs this program with `--multiproc-spawn ...` or
//!   `--multiproc-forkserver ...` and plays the parent over its own socket
//!   (a Python script that answers every frame as the parent would) cannot
//!   make `init()` run an entry point: `init()` returns and `main` goes on
//!   with its argv unchanged;
//! - `open_or_create` refuses a segment that another user pre-created with
//!   mode 0666, and one of this user with a mode wider than asked.
//!
//! A custom harness (`harness = false`): children re-run this binary,
//! whose `main` registers the entry points and calls `multiproc::init()`
//! first. Every test runs under a watchdog.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc::shm::{SharedMemory, ShmError, ShmOptions};
use multiproc::{Process, StartMethod};
use multiproc_tests::process_support::{run_tests, Test};

const WATCHDOG: Duration = Duration::from_secs(120);

/// Exit code of this binary when `init()` returned on a `--multiproc-*`
/// command line and `main` went on.
const MAIN_WENT_ON: i32 = 77;
/// Exit code of the outsider's entry point, had it run.
const ENTRY_RAN: i32 = 42;

/// `argv[1]` of the role that creates a segment as another user.
const ROLE_CREATE_SEGMENT: &str = "--hygiene-create-segment";

// ---------------------------------------------------------------------------
// 1. Descriptors without close-on-exec.

/// `(st_dev, st_ino)` of an open descriptor.
fn file_id(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: stat is plain data; a valid out-pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor number with a valid out-pointer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// The open descriptors of this process that refer to the file `id`.
fn fds_referring_to(id: (u64, u64)) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Ok(e) = e else { continue };
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if file_id(fd) == Some(id) {
            out.push(fd);
        }
    }
    out
}

/// Entry point: exits 0 if no descriptor refers to the file whose
/// `(dev, ino)` are the arguments, 1 if one does.
fn entry_no_leak(args: &[u8]) -> i32 {
    let Some((dev, ino)) = multiproc::process::args_as::<[u64; 2]>(args).map(|a| (a[0], a[1]))
    else {
        return 9;
    };
    let leaked = fds_referring_to((dev, ino));
    if leaked.is_empty() {
        0
    } else {
        eprintln!("leaked descriptors: {leaked:?}");
        1
    }
}

/// A file opened without `O_CLOEXEC` (and unlinked, so only the
/// descriptor reaches it) is in no spawned child and no fork-server
/// worker; the fork server is started after the file is opened.
fn parent_fd_without_cloexec_does_not_leak() {
    let path = std::env::temp_dir().join(format!("spawn-hygiene-{}", std::process::id()));
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; no O_CLOEXEC on purpose.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
    };
    assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    std::fs::remove_file(&path).unwrap();
    // Away from the low numbers a child's own descriptors take.
    // SAFETY: F_DUPFD (without close-on-exec) and close on our descriptor.
    let fd = unsafe {
        let high = libc::fcntl(fd, libc::F_DUPFD, 64);
        libc::close(fd);
        high
    };
    assert!(fd >= 64, "F_DUPFD: {}", std::io::Error::last_os_error());
    // SAFETY: F_GETFD on our descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert_eq!(flags & libc::FD_CLOEXEC, 0);
    let id = file_id(fd).unwrap();
    assert_eq!(fds_referring_to(id), vec![fd], "the test's own view");
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        let p = Process::entry_pod("hygiene_no_leak", &[id.0, id.1])
            .start_method(method)
            .start()
            .unwrap();
        let st = p.join_timeout(WATCHDOG).expect("join (child hung?)");
        assert_eq!(
            st.code(),
            Some(0),
            "{method:?}: the parent's descriptor reached the child"
        );
    }
    // SAFETY: closing our descriptor.
    unsafe { libc::close(fd) };
}

// ---------------------------------------------------------------------------
// 2. The outsider's launch.

/// Entry point: what an outsider would like to run. Creates the file named
/// by the arguments and exits with [`ENTRY_RAN`].
fn entry_outsider(args: &[u8]) -> i32 {
    if let Ok(path) = std::str::from_utf8(args) {
        let _ = std::fs::write(path, b"ran");
    }
    ENTRY_RAN
}

/// Plays the parent over its own socket pair, as well as an outsider who
/// read the source can: answers a challenge by echoing it, sends the
/// arguments after `R` (spawn) or a worker request with a socket attached
/// (fork server). Prints the launched program's exit code.
const OUTSIDER: &str = r#"
import array, os, socket, struct, subprocess, sys
exe, method, version, marker = sys.argv[1:5]
a, b = socket.socketpair()
fd = b.fileno()
os.set_inheritable(fd, True)
if method == "spawn":
    argv = [exe, "--multiproc-spawn", version, str(fd), str(os.getpid()), "0",
            "hygiene_outsider", "Process-1", ""]
else:
    argv = [exe, "--multiproc-forkserver", version, str(fd), str(os.getpid())]
p = subprocess.Popen(argv, pass_fds=[fd])
b.close()
a.settimeout(30)

def frame(tag, payload):
    return tag + struct.pack("<I", len(payload)) + payload

def put(bs):
    return struct.pack("<I", len(bs)) + bs

buf = b""
worker = None
try:
    while True:
        while len(buf) >= 5:
            tag, n = buf[:1], struct.unpack("<I", buf[1:5])[0]
            if len(buf) < 5 + n:
                break
            payload, buf = buf[5:5 + n], buf[5 + n:]
            if tag == b"C":
                a.sendall(frame(b"K", payload))
            elif tag == b"R" and method == "spawn":
                a.sendall(frame(b"A", put(b"outsider key") + marker.encode()))
            elif tag == b"R":
                req = (bytes([0]) + struct.pack("<I", os.getpid()) + put(b"hygiene_outsider")
                       + put(b"Process-1") + struct.pack("<I", 0) + put(b"outsider key")
                       + put(marker.encode()))
                w, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                a.sendmsg([b"Q" + struct.pack("<I", len(req))],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))])
                a.sendall(req)
                theirs.close()
                w.settimeout(30)
                try:
                    while True:
                        m = w.recv(4096)
                        if not m or m[:1] == b"S":
                            break
                except OSError:
                    pass
                raise EOFError
        data = a.recv(4096)
        if not data:
            break
        buf += data
except (OSError, EOFError):
    pass
a.close()
print("exit=%d" % p.wait(timeout=60), flush=True)
"#;

/// Runs the outsider script against this binary; the launched program's
/// exit code.
fn run_outsider(method: &str, version: &str, marker: &std::path::Path) -> i32 {
    let exe = std::env::current_exe().unwrap();
    let out = match Command::new("python3")
        .arg("-c")
        .arg(OUTSIDER)
        .arg(&exe)
        .arg(method)
        .arg(version)
        .arg(marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("python3 is required by this test and could not be run ({e})"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let code = text
        .lines()
        .find_map(|l| l.strip_prefix("exit="))
        .and_then(|c| c.trim().parse().ok());
    match code {
        Some(c) => c,
        None => panic!("outsider script failed: {:?}, stdout {text:?}", out.status),
    }
}

/// An outsider's launch, with the current protocol version and the one
/// before it, for spawn and the fork server: the entry point never runs,
/// and the program's `main` goes on (it exits with [`MAIN_WENT_ON`]).
fn outsider_launch_does_not_run_entry() {
    for method in ["spawn", "forkserver"] {
        for version in ["2", "3"] {
            let marker = std::env::temp_dir().join(format!(
                "spawn-hygiene-marker-{}-{method}-{version}",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&marker);
            let code = run_outsider(method, version, &marker);
            let ran = marker.exists();
            let _ = std::fs::remove_file(&marker);
            assert!(
                !ran,
                "{method} v{version}: the outsider made the entry point run"
            );
            assert_eq!(
                code, MAIN_WENT_ON,
                "{method} v{version}: init() did not return to main"
            );
        }
    }
}

/// Plays the parent's side over `sock` (frames of tag, u32 LE length,
/// payload): echoes a challenge, answers `R` with the arguments `marker`;
/// until end of stream.
fn play_parent(mut sock: UnixStream, marker: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 5 {
            let n = u32::from_le_bytes(buf[1..5].try_into().unwrap()) as usize;
            if buf.len() < 5 + n {
                break;
            }
            let tag = buf[0];
            let payload: Vec<u8> = buf[5..5 + n].to_vec();
            buf.drain(..5 + n);
            let reply = match tag {
                b'C' => (b'K', payload),
                // Job payload: an empty auth key, then the arguments.
                b'R' => (b'A', [&[0u8; 4][..], marker.as_bytes()].concat()),
                _ => continue,
            };
            let mut f = vec![reply.0];
            f.extend_from_slice(&(reply.1.len() as u32).to_le_bytes());
            f.extend_from_slice(&reply.1);
            if sock.write_all(&f).is_err() {
                return;
            }
        }
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// This binary launched as a spawn child by this process (which runs the
/// same program and made the socket pair, so every check before the
/// challenge passes), with the parent's side played by `answer_from`.
/// Returns the child's exit code and whether the entry point ran.
fn launch_self(answer_from_helper: bool) -> (i32, bool) {
    let marker = std::env::temp_dir().join(format!(
        "spawn-hygiene-self-{}-{answer_from_helper}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&marker);
    let (a, b) = UnixStream::pair().unwrap();
    // Only `b` crosses the exec (std made both close-on-exec).
    let b_fd = b.as_raw_fd();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--multiproc-spawn",
        "3",
        &b_fd.to_string(),
        &std::process::id().to_string(),
        "0",
        "hygiene_outsider",
        "Process-1",
        "",
    ]);
    // SAFETY: fcntl only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::fcntl(b_fd, libc::F_SETFD, 0);
            Ok(())
        })
    };
    let mut child = cmd.spawn().unwrap();
    drop(b);
    let marker_s = marker.to_str().unwrap().to_owned();
    if answer_from_helper {
        // Another process (same program, same user) holds the parent's end
        // and answers; this process, the child's parent, stays silent.
        let helper = multiproc_tests::fork(move || {
            play_parent(a, &marker_s);
            0
        });
        let st = child.wait().unwrap();
        drop(helper);
        let ran = marker.exists();
        let _ = std::fs::remove_file(&marker);
        (st.code().unwrap_or(-1), ran)
    } else {
        play_parent(a, &marker_s);
        let st = child.wait().unwrap();
        let ran = marker.exists();
        let _ = std::fs::remove_file(&marker);
        (st.code().unwrap_or(-1), ran)
    }
}

/// The challenge is what stops a launch whose passive checks pass: when
/// the answer comes from a process other than the child's parent (though
/// it runs the same program and knows the protocol), `init()` returns to
/// `main`; the same launch answered by the parent itself runs the entry
/// point (the control).
fn answer_from_another_process_is_refused() {
    assert_eq!(launch_self(true), (MAIN_WENT_ON, false), "helper answered");
    assert_eq!(launch_self(false), (ENTRY_RAN, true), "parent answered");
}

// ---------------------------------------------------------------------------
// 3. Segments planted by someone else.

fn unique_name(tag: &str) -> String {
    format!("/spawn-hygiene-{tag}-{}", std::process::id())
}

/// Runs this binary as uid/gid 12345 to create `name` with mode 0666.
fn create_as_other_user(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let st = Command::new("setpriv")
        .args(["--reuid", "12345", "--regid", "12345", "--clear-groups"])
        .arg(&exe)
        .arg(ROLE_CREATE_SEGMENT)
        .arg(name)
        .status()
        .expect("setpriv");
    assert!(st.success(), "creating the segment as uid 12345: {st:?}");
}

/// The role: creates `name` with mode 0666, left in place.
fn role_create_segment(name: &str) -> i32 {
    match ShmOptions::new()
        .size(4096)
        .mode(0o666)
        .persist(true)
        .create(name)
    {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("create {name}: {e}");
            1
        }
    }
}

/// Another user's segment of mode 0666 and this user's segment of mode
/// 0666 are refused by `open_or_create` (mode 0600) with typed errors and
/// left in place; `open` still opens them (as Python's `SharedMemory`
/// would); a segment of this user and mode opens.
fn planted_segments_are_refused_by_open_or_create() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let name = unique_name("foreign");
        let _ = SharedMemory::unlink_name(&name);
        create_as_other_user(&name);
        let meta = std::fs::metadata(format!("/dev/shm{name}")).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (12345, 0o666));
        match SharedMemory::open_or_create(&name, 4096) {
            Err(ShmError::ForeignOwner { uid: 12345, .. }) => {}
            other => panic!("a foreign segment was not refused: {other:?}"),
        }
        assert!(
            std::fs::metadata(format!("/dev/shm{name}")).is_ok(),
            "someone else's segment was unlinked"
        );
        let opened = SharedMemory::open(&name).expect("plain open still works");
        assert!(!opened.is_owner());
        drop(opened);
        SharedMemory::unlink_name(&name).unwrap();
    } else {
        println!("(not root: the other-user half is skipped)");
    }

    let name = unique_name("wide");
    let _ = SharedMemory::unlink_name(&name);
    let wide = ShmOptions::new()
        .size(4096)
        .mode(0o666)
        .persist(true)
        .create(&name)
        .unwrap();
    match SharedMemory::open_or_create(&name, 4096) {
        Err(ShmError::ModeTooWide {
            mode: 0o666,
            requested: 0o600,
            ..
        }) => {}
        other => panic!("a wide-mode segment was not refused: {other:?}"),
    }
    // Asking for that mode accepts it.
    let same = ShmOptions::new()
        .size(4096)
        .mode(0o666)
        .open_or_create(&name)
        .unwrap();
    assert!(!same.is_owner());
    drop(same);
    drop(wide);
    SharedMemory::unlink_name(&name).unwrap();

    // This user's segment of the mode asked for opens.
    let name = unique_name("mine");
    let _ = SharedMemory::unlink_name(&name);
    let a = SharedMemory::open_or_create(&name, 4096).unwrap();
    let b = SharedMemory::open_or_create(&name, 4096).unwrap();
    assert!(a.is_owner() && !b.is_owner());
}

// ---------------------------------------------------------------------------

fn main() {
    multiproc::register_entry("hygiene_no_leak", entry_no_leak).unwrap();
    multiproc::register_entry("hygiene_outsider", entry_outsider).unwrap();
    multiproc::init();

    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // init() returned on a launch it refused: main goes on, with the
        // command line as it was.
        Some(a) if a.starts_with("--multiproc-") => std::process::exit(MAIN_WENT_ON),
        Some(ROLE_CREATE_SEGMENT) => {
            std::process::exit(role_create_segment(args.get(2).map_or("", |s| s)))
        }
        _ => {}
    }
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            parent_fd_without_cloexec_does_not_leak,
            outsider_launch_does_not_run_entry,
            answer_from_another_process_is_refused,
            planted_segments_are_refused_by_open_or_create,
        ],
        WATCHDOG,
    );
}
