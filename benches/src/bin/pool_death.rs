//! How long a `Pool` takes to report a task whose worker was SIGKILLed:
//! from the `kill` to the caller holding the `WorkerLost` result, over 200
//! kills; prints p50, p99 and the maximum (issue 14's target: p99 under
//! 5 ms).
//!
//! `cargo run --release -p multiproc-benches --bin pool_death`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc::pool::{Pool, TaskError};
use multiproc::shm::SharedMemory;

/// A cell in shared memory (inherited by the pool's fork workers): the pid
/// of the worker running item 0.
static CELL: OnceLock<SharedMemory> = OnceLock::new();

fn cell() -> &'static AtomicU64 {
    let shm = CELL.get().expect("set before the pool starts");
    // SAFETY: the mapping is 4096 zero-filled, page-aligned bytes that
    // live as long as the process (a static); an AtomicU64 is valid for
    // any bits.
    unsafe { &*shm.as_ptr().cast::<AtomicU64>() }
}

fn hang(x: u64) -> u64 {
    if x == 0 {
        cell().store(u64::from(std::process::id()), Ordering::Release);
        std::thread::sleep(Duration::from_secs(600));
    }
    x
}

fn main() {
    multiproc::init();
    CELL.set(SharedMemory::anonymous(4096).expect("shared cell"))
        .expect("set once");
    let pool = Pool::new(2).expect("pool");
    let runs = 200;
    let mut lat = Vec::with_capacity(runs);
    for _ in 0..runs {
        cell().store(0, Ordering::Release);
        let latency = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let r = pool.chunksize(1).map_results(hang, 0..1u64);
                (r, Instant::now())
            });
            while cell().load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            let victim = cell().load(Ordering::Acquire) as i32;
            let killed = Instant::now();
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(victim, libc::SIGKILL) };
            let (r, done) = h.join().expect("caller thread");
            assert!(matches!(
                r.expect("map")[0],
                Err(TaskError::WorkerLost { .. })
            ));
            done.duration_since(killed)
        });
        lat.push(latency);
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!(
        "pool: SIGKILL of a worker to its task's WorkerLost result, {runs} kills: p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        lat[lat.len() - 1]
    );
}
