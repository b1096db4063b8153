//! The main job. For now: a ring between two forked processes, the heart of
//! what multiproc is for (it grows into the PEP 371 table).
//!
//! `cargo run --release -p multiproc-benches --bin pep371 [-- --quick]`

use std::time::{Duration, Instant};

use multiproc_core::region::Region;
use multiproc_core::spsc::SpscRing;

/// An anonymous shared mapping, inherited across fork.
struct Shm {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl Shm {
    fn new(len: usize) -> Shm {
        let len = len.next_multiple_of(4096);
        // SAFETY: anonymous shared mapping, result checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap failed");
        Shm {
            ptr: std::ptr::NonNull::new(p.cast()).unwrap(),
            len,
        }
    }

    fn region(&self) -> Region<'_> {
        // SAFETY: the mapping lives as long as `self` and is only used through
        // core structures.
        unsafe { Region::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Forks a child running `f`, which leaves with `_exit`.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `f` and `_exit`s; this program is single-
    // threaded at this point.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: leave without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// Messages per second through an SPSC ring from a child to this process.
fn spsc_throughput(n: u64) -> f64 {
    let shm = Shm::new(SpscRing::<u64>::memory_size(4096).unwrap());
    let ring = SpscRing::<u64>::create(shm.region(), 4096).unwrap();
    let start = Instant::now();
    let pid = fork_child(|| {
        let ring = SpscRing::<u64>::attach(shm.region()).unwrap();
        let mut tx = ring.producer().unwrap();
        for i in 0..n {
            tx.push(i).unwrap();
        }
        0
    });
    let mut rx = ring.consumer().unwrap();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(rx.pop().unwrap());
    }
    let el = start.elapsed();
    assert_eq!(wait_child(pid), 0);
    assert_eq!(sum, n * (n - 1) / 2);
    n as f64 / el.as_secs_f64()
}

/// Round trip through two rings (ping in one, pong in the other): median
/// and 99th percentile.
fn round_trip(n: usize) -> (Duration, Duration) {
    let size = SpscRing::<u64>::memory_size(64)
        .unwrap()
        .next_multiple_of(4096);
    let shm = Shm::new(2 * size);
    let (a, b) = {
        let r = shm.region();
        // SAFETY: two disjoint halves of the mapping, each page-aligned.
        unsafe {
            (
                Region::from_raw_parts(std::ptr::NonNull::new(r.as_ptr()).unwrap(), size),
                Region::from_raw_parts(std::ptr::NonNull::new(r.as_ptr().add(size)).unwrap(), size),
            )
        }
    };
    let ping = SpscRing::<u64>::create(a, 64).unwrap();
    let pong = SpscRing::<u64>::create(b, 64).unwrap();
    let pid = fork_child(|| {
        let mut rx = ping.consumer().unwrap();
        let mut tx = pong.producer().unwrap();
        while let Ok(v) = rx.pop() {
            tx.push(v).unwrap();
        }
        0
    });
    let mut tx = ping.producer().unwrap();
    let mut rx = pong.consumer().unwrap();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        tx.push(i).unwrap();
        assert_eq!(rx.pop().unwrap(), i);
        samples.push(t.elapsed());
    }
    drop(tx);
    assert_eq!(wait_child(pid), 0);
    samples.sort();
    (samples[n / 2], samples[n * 99 / 100])
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, rt) = if quick {
        (1_000_000, 10_000)
    } else {
        (20_000_000, 200_000)
    };
    println!("multiproc: shared-memory ring between two processes (fork)");
    let tput = spsc_throughput(n);
    println!(
        "  spsc 8 B throughput: {:>8.1} M msg/s ({n} messages)",
        tput / 1e6
    );
    let (p50, p99) = round_trip(rt);
    println!(
        "  round trip:          p50 {:>6.2} us, p99 {:>6.2} us ({rt} samples)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}
