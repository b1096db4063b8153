//! Segments that do not fit: typed errors, never `SIGBUS`, nothing left
//! behind; and what a segment costs before it is used.
//!
//! The `/dev/shm` tests re-run themselves (this test binary, the same test
//! name) inside a private mount namespace with a 64 MiB tmpfs on
//! `/dev/shm`:
//!
//! ```text
//! unshare -m --propagation private sh -c \
//!     'mount -t tmpfs -o size=64m tmpfs /dev/shm && exec <this test> <name> --exact'
//! ```
//!
//! The inner run (it sees `MULTIPROC_SHM_LIMITS_INNER`) makes the structure
//! and checks the error and that the small `/dev/shm` is empty afterwards;
//! the outer run checks that the inner one exited cleanly (a `SIGBUS` is a
//! failure with the signal named). They need root (`unshare -m`); where
//! `unshare` cannot run they print why and pass.
//!
//! These tests fork, so they run under cargo-nextest, one process per test.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use multiproc::pipe::{Pipe, PipeError};
use multiproc::queue::{Queue, QueueError};
use multiproc::shm::{SharedMemory, ShmError};
use multiproc::sync::{Array, SyncError};

/// Set in the inner run (inside the namespace with the small `/dev/shm`).
const INNER: &str = "MULTIPROC_SHM_LIMITS_INNER";
const TMPFS_SIZE: u64 = 64 << 20;

/// Runs the test `name` of this binary again inside a private mount
/// namespace with a 64 MiB `/dev/shm`, and fails if that run fails (or is
/// killed, by `SIGBUS` say). Returns `false` in the inner run itself, where
/// the caller does the work.
fn in_small_dev_shm(name: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        // The inner run: a watchdog turns a hang into a failure.
        multiproc_tests::process_support::watchdog(Duration::from_secs(120));
        let st = nix_statvfs_dev_shm();
        assert_eq!(st, TMPFS_SIZE, "inner run without the small /dev/shm");
        return false;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        println!("skipped: unshare(1) is not installed");
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs -o size={TMPFS_SIZE} tmpfs /dev/shm && exec \"$0\" {name} --exact --nocapture"
    );
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .output()
        .unwrap();
    if !probe.status.success() {
        println!(
            "skipped: unshare -m failed (not root?): {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return true;
    }
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(&exe)
        .env(INNER, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if let Some(sig) = out.status.signal() {
        panic!("the inner run was killed by signal {sig} (SIGBUS is 7)");
    }
    assert!(out.status.success(), "the inner run failed: {}", out.status);
    assert!(
        stdout.contains("1 passed"),
        "the inner run did not run the test"
    );
    true
}

/// Size of the file system mounted on `/dev/shm`, in bytes.
fn nix_statvfs_dev_shm() -> u64 {
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    let r = unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) };
    assert_eq!(r, 0, "statvfs /dev/shm");
    st.f_blocks * st.f_frsize
}

/// What `/dev/shm` holds (names).
fn dev_shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Blocks used in `/dev/shm`, in bytes.
fn dev_shm_used() -> u64 {
    // SAFETY: as in `nix_statvfs_dev_shm`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) };
    assert_eq!(r, 0);
    (st.f_blocks - st.f_bfree) * st.f_frsize
}

fn assert_no_space(e: &ShmError, requested_at_least: u64) {
    match e {
        ShmError::NoSpace {
            requested,
            available,
        } => {
            assert!(*requested >= requested_at_least, "{e}");
            if let Some(free) = available {
                assert!(*free <= TMPFS_SIZE, "{e}");
            }
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

fn assert_nothing_left() {
    assert_eq!(dev_shm_entries(), Vec::<String>::new(), "names left behind");
    assert_eq!(dev_shm_used(), 0, "pages left allocated in /dev/shm");
}

#[test]
fn raw_segment_larger_than_dev_shm_is_no_space() {
    if in_small_dev_shm("raw_segment_larger_than_dev_shm_is_no_space") {
        return;
    }
    let e = SharedMemory::create_unique(64 << 30).unwrap_err();
    assert_no_space(&e, 64 << 30);
    println!("raw 64 GiB: {e}");
    let e = SharedMemory::create("/mp-limits-raw", 65 << 20).unwrap_err();
    assert_no_space(&e, 65 << 20);
    assert_nothing_left();
}

#[test]
fn named_queue_larger_than_dev_shm_is_no_space() {
    if in_small_dev_shm("named_queue_larger_than_dev_shm_is_no_space") {
        return;
    }
    let e = Queue::<u64>::new(1 << 32)
        .unique_name()
        .channel()
        .unwrap_err();
    match &e {
        QueueError::Shm(s) => assert_no_space(s, 64 << 30),
        other => panic!("expected Shm(NoSpace), got {other:?}"),
    }
    println!("queue of 2^32 u64: {e}");
    assert_nothing_left();
}

#[test]
fn pipe_with_huge_max_message_is_no_space() {
    if in_small_dev_shm("pipe_with_huge_max_message_is_no_space") {
        return;
    }
    let e = Pipe::new()
        .max_message(1 << 40)
        .unique_name()
        .open()
        .unwrap_err();
    match &e {
        PipeError::Setup(QueueError::Shm(s)) => assert_no_space(s, 1 << 41),
        other => panic!("expected Setup(Shm(NoSpace)), got {other:?}"),
    }
    println!("pipe of 1 TiB messages: {e}");
    assert_nothing_left();
}

#[test]
fn named_array_larger_than_dev_shm_is_no_space() {
    if in_small_dev_shm("named_array_larger_than_dev_shm_is_no_space") {
        return;
    }
    let e = Array::<u64>::named("/mp-limits-array", 1 << 30, 0).unwrap_err();
    match &e {
        SyncError::Shm(s) => assert_no_space(s, 8 << 30),
        other => panic!("expected Shm(NoSpace), got {other:?}"),
    }
    println!("array of 2^30 u64: {e}");
    assert_nothing_left();
}

/// A queue that fits is reserved whole at creation: a second one that does
/// not fit beside it is refused, and the first can then be filled to its
/// last slot (without the reservation, the second would be made and one of
/// them would die of SIGBUS once both were used).
#[test]
fn a_queue_that_fits_is_reserved_whole() {
    if in_small_dev_shm("a_queue_that_fits_is_reserved_whole") {
        return;
    }
    // 2^21 slots of 16 bytes: 32 MiB (plus headers).
    let (tx, rx) = Queue::<u64>::new(1 << 21).unique_name().channel().unwrap();
    let used = dev_shm_used();
    assert!(used >= 32 << 20, "only {used} bytes reserved");
    let e = Queue::<u64>::new(1 << 21)
        .unique_name()
        .channel()
        .unwrap_err();
    match &e {
        QueueError::Shm(s) => assert_no_space(s, 32 << 20),
        other => panic!("expected Shm(NoSpace), got {other:?}"),
    }
    for i in 0..1u64 << 21 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(rx.try_recv(), Ok(0));
    drop((tx, rx));
    assert_nothing_left();
}

/// An anonymous segment beyond the machine's memory plus swap is refused
/// at once (it does not live in `/dev/shm`, whose size does not bound it).
#[test]
fn anonymous_segment_beyond_memory_is_no_space() {
    let e = SharedMemory::anonymous(1 << 46).unwrap_err();
    assert_no_space(&e, 1 << 46);
    let e = Queue::<u64>::new(1 << 32).channel().unwrap_err();
    // 64 GiB: beyond this machine's memory unless it has more; then it is
    // made (lazily, at almost no cost) and that is fine too.
    println!("anonymous queue of 2^32 u64: {e}");
}

/// The mapping of an anonymous segment, reached through
/// `/proc/self/map_files` (as root can), cannot be truncated: every user
/// would die of SIGBUS.
#[test]
fn anonymous_segment_cannot_be_truncated() {
    let mut shm = SharedMemory::anonymous(1 << 20).unwrap();
    let start = shm.as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let range = maps
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .find(|r| r.starts_with(&format!("{start:x}-")))
        .expect("the mapping in /proc/self/maps")
        .to_owned();
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/map_files/{range}"))
    {
        Ok(f) => f,
        Err(e) => {
            println!("skipped: cannot open /proc/self/map_files (needs CAP_SYS_ADMIN): {e}");
            return;
        }
    };
    assert_eq!(file.metadata().unwrap().len(), 1 << 20);
    let e = file.set_len(4096).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    let e = file.set_len(2 << 20).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    // Still whole and usable.
    shm.write_at((1 << 20) - 1, &[1]).unwrap();
}

/// VmRSS of this process, in bytes.
fn vm_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Creating a large anonymous queue touches its header only: the slots'
/// pages become resident as messages reach them.
#[test]
fn large_anonymous_queue_costs_nothing_until_used() {
    for (what, cap) in [("256 MiB", 1u64 << 24), ("1 GiB", 1u64 << 26)] {
        let before = vm_rss();
        let t = std::time::Instant::now();
        let (tx, rx) = Queue::<u64>::new(cap).channel().unwrap();
        let made = t.elapsed();
        let after = vm_rss();
        println!(
            "anonymous queue of {what} ({cap} u64 slots): created in {made:?}, VmRSS +{} KiB",
            after.saturating_sub(before) >> 10
        );
        assert!(
            after.saturating_sub(before) < 4 << 20,
            "{what}: VmRSS grew by {} bytes at creation",
            after - before
        );
        // Used, it works like any queue, across laps of the first slots.
        for lap in 0..3u64 {
            for i in 0..1000 {
                tx.try_send(lap * 1000 + i).unwrap();
            }
            for i in 0..1000 {
                assert_eq!(rx.try_recv(), Ok(lap * 1000 + i));
            }
        }
    }
}
