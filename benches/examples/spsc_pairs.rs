//! The core `SpscRing` against rtrb, 8 B and 64 B messages, in the form of
//! `mpmc_pairs` (which survives this VM's bimodal criterion groups):
//!
//! `cargo run --release -p multiproc-benches --example spsc_pairs -- [ROUNDS] [MSGS]`
//!
//! 1. Single thread (push `BATCH` values, default 512, then pop them):
//!    nanoseconds per push + pop, best of `ROUNDS`: the instructions'
//!    cost without cache-line traffic.
//! 2. Thread to thread as `core_rings` (both sides busy-poll the
//!    non-blocking calls, 1024 slots), the rings alternated in each round:
//!    the median of the per-round ratios, the median and best rates, and
//!    the failed polls (Full or Empty) per message.
//!
//! `ONLY_SINGLE=1` stops after 1.
use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use multiproc_benches::AlignedBuf;
use multiproc_core::spsc::SpscRing;

const CAP: usize = 1024;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Msg64([u64; 8]);

trait M: Pod + Send {
    fn make(i: u64) -> Self;
    fn key(&self) -> u64;
}
impl M for u64 {
    fn make(i: u64) -> Self {
        i
    }
    fn key(&self) -> u64 {
        *self
    }
}
impl M for Msg64 {
    fn make(i: u64) -> Self {
        Msg64([i; 8])
    }
    fn key(&self) -> u64 {
        self.0[7]
    }
}

/// `n` messages from this thread to a consumer thread; elapsed time and
/// the failed pushes and pops.
fn run<T: M>(
    mut push: impl FnMut(T) -> Result<(), T>,
    mut pop: impl FnMut() -> Option<T> + Send,
    n: u64,
) -> (Duration, u64, u64) {
    thread::scope(|s| {
        let start = Instant::now();
        let c = s.spawn(move || {
            let (mut sum, mut k, mut miss) = (0u64, 0, 0u64);
            while k < n {
                if let Some(v) = pop() {
                    sum = sum.wrapping_add(black_box(v).key());
                    k += 1;
                } else {
                    miss += 1;
                    std::hint::spin_loop();
                }
            }
            (sum, miss)
        });
        let mut pmiss = 0u64;
        for i in 0..n {
            let mut v = T::make(i);
            while let Err(b) = push(v) {
                v = b;
                pmiss += 1;
                std::hint::spin_loop();
            }
        }
        let (sum, cmiss) = c.join().unwrap();
        let el = start.elapsed();
        assert_eq!(sum, n.wrapping_mul(n - 1) / 2);
        (el, pmiss, cmiss)
    })
}

fn ours<T: M>(n: u64) -> (Duration, u64, u64) {
    let mut buf = AlignedBuf::new(SpscRing::<T>::memory_size(CAP as u64).unwrap());
    let r = SpscRing::<T>::create(buf.region(), CAP as u64).unwrap();
    let (mut tx, mut rx) = r.split().unwrap();
    run::<T>(
        |v| tx.try_push(v).map_err(|e| e.into_inner()),
        move || rx.try_pop().ok(),
        n,
    )
}

fn theirs<T: M>(n: u64) -> (Duration, u64, u64) {
    let (mut tx, mut rx) = rtrb::RingBuffer::<T>::new(CAP);
    run::<T>(
        |v| tx.push(v).map_err(|rtrb::PushError::Full(v)| v),
        move || rx.pop().ok(),
        n,
    )
}

fn single<T: M>(
    mut push: impl FnMut(T) -> Result<(), T>,
    mut pop: impl FnMut() -> Option<T>,
    n: u64,
) -> Duration {
    let bsz: u64 = std::env::var("BATCH").map_or(512, |s| s.parse().unwrap());
    let start = Instant::now();
    let mut sum = 0u64;
    let mut i = 0;
    while i < n {
        for k in 0..bsz {
            assert!(push(T::make(i + k)).is_ok(), "full");
        }
        for _ in 0..bsz {
            sum = sum.wrapping_add(black_box(pop().unwrap()).key());
        }
        i += bsz;
    }
    black_box(sum);
    start.elapsed()
}

#[inline(never)]
fn single_ours<T: M>(n: u64) -> Duration {
    let mut buf = AlignedBuf::new(SpscRing::<T>::memory_size(CAP as u64).unwrap());
    let r = SpscRing::<T>::create(buf.region(), CAP as u64).unwrap();
    let (mut tx, mut rx) = r.split().unwrap();
    single::<T>(
        |v| tx.try_push(v).map_err(|e| e.into_inner()),
        || rx.try_pop().ok(),
        n,
    )
}

#[inline(never)]
fn single_theirs<T: M>(n: u64) -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::<T>::new(CAP);
    single::<T>(
        |v| tx.push(v).map_err(|rtrb::PushError::Full(v)| v),
        || rx.pop().ok(),
        n,
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(15, |s| s.parse().unwrap());
    let n: u64 = std::env::args()
        .nth(2)
        .map_or(1 << 20, |s| s.parse().unwrap());
    let mut st = [f64::MAX; 4];
    for _ in 0..rounds {
        let r = [
            single_ours::<u64>(n),
            single_theirs::<u64>(n),
            single_ours::<Msg64>(n),
            single_theirs::<Msg64>(n),
        ];
        for i in 0..4 {
            st[i] = st[i].min(r[i].as_secs_f64() * 1e9 / n as f64);
        }
    }
    println!(
        "single-thread ns/(push+pop): ours_8B {:.2} rtrb_8B {:.2} ours_64B {:.2} rtrb_64B {:.2}",
        st[0], st[1], st[2], st[3]
    );
    if std::env::var_os("ONLY_SINGLE").is_some() {
        return;
    }
    let mut rate = vec![Vec::new(); 4];
    let mut ratio = vec![Vec::new(); 2];
    let mut miss = vec![Vec::new(); 4];
    for k in 0..rounds {
        let (a8, b8, a64, b64);
        if k % 2 == 0 {
            a8 = ours::<u64>(n);
            b8 = theirs::<u64>(n);
            a64 = ours::<Msg64>(n);
            b64 = theirs::<Msg64>(n);
        } else {
            b64 = theirs::<Msg64>(n);
            a64 = ours::<Msg64>(n);
            b8 = theirs::<u64>(n);
            a8 = ours::<u64>(n);
        }
        for (i, r) in [a8, b8, a64, b64].iter().enumerate() {
            rate[i].push(n as f64 / r.0.as_secs_f64() / 1e6);
            miss[i].push((r.1 + r.2) as f64 / n as f64);
        }
        ratio[0].push(b8.0.as_secs_f64() / a8.0.as_secs_f64());
        ratio[1].push(b64.0.as_secs_f64() / a64.0.as_secs_f64());
    }
    let names = ["ours_8B", "rtrb_8B", "ours_64B", "rtrb_64B"];
    for i in 0..4 {
        println!(
            "{:9} median {:7.2} M msg/s  best {:7.2}  misses/msg median {:6.2}",
            names[i],
            median(&mut rate[i].clone()),
            rate[i].iter().cloned().fold(0.0, f64::max),
            median(&mut miss[i])
        );
    }
    println!(
        "median per-pair ratio (ours/rtrb speed) 8B {:.2}  64B {:.2}",
        median(&mut ratio[0]),
        median(&mut ratio[1])
    );
}
