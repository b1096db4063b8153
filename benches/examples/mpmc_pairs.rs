//! `MpmcRing` against crossbeam's `ArrayQueue`, 8 B and 64 B messages, in
//! a form that survives a loaded machine better than criterion's means:
//!
//! `cargo run --release -p multiproc-benches --example mpmc_pairs -- [ROUNDS] [MSGS]`
//!
//! 1. Single thread (push `BATCH` values, default 512, then pop them):
//!    nanoseconds per push + pop, best of `ROUNDS`: the cost of the
//!    instructions, `lock`ed ones included, without cache-line traffic.
//! 2. Thread to thread as `core_rings` (both sides busy-poll the
//!    non-blocking calls, 1024 slots), the rings alternated in each round:
//!    the median of the per-round ratios, the median and best rates, and
//!    the failed polls (Full or Empty) per message, which tell the regime
//!    (0: the sides run apart in the ring; several: they ping-pong on the
//!    same slots). `ArrayQueue::pop` waits inside for a push in flight
//!    where ours reports Empty, so compare misses only within one ring.
//!
//! `ONLY_SINGLE=1` stops after 1; `ALIGNED=1` runs 2 for 64 B only, with
//! the message also aligned to 64 (each value in a line of its own);
//! `SIDES=k` runs 2 with k producer and k consumer threads (the taken
//! count is one shared atomic: a cost both rings pay alike).
use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use multiproc_benches::AlignedBuf;
use multiproc_core::mpmc::MpmcRing;

const CAP: usize = 1024;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Msg64([u64; 8]);

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Msg64A([u64; 8]);
impl M for Msg64A {
    fn make(i: u64) -> Self {
        Msg64A([i; 8])
    }
    fn key(&self) -> u64 {
        self.0[7]
    }
}

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

fn run<T: M>(
    push: impl Fn(T) -> Result<(), T> + Send + Sync,
    pop: impl Fn() -> Option<T> + Send + Sync,
    n: u64,
) -> (Duration, u64, u64) {
    let sides: u64 = std::env::var("SIDES").map_or(1, |s| s.parse().unwrap());
    if sides > 1 {
        return run_many(&push, &pop, n, sides);
    }
    thread::scope(|s| {
        let start = Instant::now();
        let c = s.spawn(|| {
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

/// `run` with `sides` producer threads and as many consumers, each
/// producer pushing `n / sides` messages (keys from disjoint ranges).
fn run_many<T: M>(
    push: &(impl Fn(T) -> Result<(), T> + Sync),
    pop: &(impl Fn() -> Option<T> + Sync),
    n: u64,
    sides: u64,
) -> (Duration, u64, u64) {
    let per = n / sides;
    let total = per * sides;
    let taken = std::sync::atomic::AtomicU64::new(0);
    thread::scope(|s| {
        let start = Instant::now();
        let consumers: Vec<_> = (0..sides)
            .map(|_| {
                let taken = &taken;
                s.spawn(move || {
                    let (mut sum, mut miss) = (0u64, 0u64);
                    while taken.load(std::sync::atomic::Ordering::Relaxed) < total {
                        if let Some(v) = pop() {
                            sum = sum.wrapping_add(black_box(v).key());
                            taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        } else {
                            miss += 1;
                            std::hint::spin_loop();
                        }
                    }
                    (sum, miss)
                })
            })
            .collect();
        let producers: Vec<_> = (0..sides)
            .map(|p| {
                s.spawn(move || {
                    let mut miss = 0u64;
                    for i in p * per..(p + 1) * per {
                        let mut v = T::make(i);
                        while let Err(b) = push(v) {
                            v = b;
                            miss += 1;
                            std::hint::spin_loop();
                        }
                    }
                    miss
                })
            })
            .collect();
        let pmiss: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
        let (mut sum, mut cmiss) = (0u64, 0u64);
        for h in consumers {
            let (s, m) = h.join().unwrap();
            sum = sum.wrapping_add(s);
            cmiss += m;
        }
        let el = start.elapsed();
        assert_eq!(sum, total.wrapping_mul(total - 1) / 2);
        (el, pmiss, cmiss)
    })
}

fn ours<T: M>(n: u64) -> (Duration, u64, u64) {
    let mut buf = AlignedBuf::new(MpmcRing::<T>::memory_size(CAP as u64).unwrap());
    let r = MpmcRing::<T>::create(buf.region(), CAP as u64).unwrap();
    run::<T>(
        |v| r.try_push(v).map_err(|e| e.into_inner()),
        || r.try_pop().ok(),
        n,
    )
}

fn aq<T: M>(n: u64) -> (Duration, u64, u64) {
    let q = crossbeam_queue::ArrayQueue::<T>::new(CAP);
    run::<T>(|v| q.push(v), || q.pop(), n)
}

fn single<T: M>(
    push: impl Fn(T) -> Result<(), T>,
    pop: impl Fn() -> Option<T>,
    n: u64,
) -> Duration {
    let start = Instant::now();
    let mut sum = 0u64;
    let mut i = 0;
    while i < n {
        let bsz: u64 = std::env::var("BATCH").map_or(512, |s| s.parse().unwrap());
        for k in 0..bsz {
            if push(T::make(i + k)).is_err() {
                panic!()
            }
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
    let mut buf = AlignedBuf::new(MpmcRing::<T>::memory_size(CAP as u64).unwrap());
    let r = MpmcRing::<T>::create(buf.region(), CAP as u64).unwrap();
    single::<T>(
        |v| r.try_push(v).map_err(|e| e.into_inner()),
        || r.try_pop().ok(),
        n,
    )
}

#[inline(never)]
fn single_aq<T: M>(n: u64) -> Duration {
    let q = crossbeam_queue::ArrayQueue::<T>::new(CAP);
    single::<T>(|v| q.push(v), || q.pop(), n)
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
    // Single thread: push 512 then pop 512, ns per push+pop, best of rounds.
    let mut st = [f64::MAX; 4];
    for _ in 0..rounds {
        let r = [
            single_ours::<u64>(n),
            single_aq::<u64>(n),
            single_ours::<Msg64>(n),
            single_aq::<Msg64>(n),
        ];
        for i in 0..4 {
            st[i] = st[i].min(r[i].as_secs_f64() * 1e9 / n as f64);
        }
    }
    println!(
        "single-thread ns/(push+pop): ours_8B {:.2} aq_8B {:.2} ours_64B {:.2} aq_64B {:.2}",
        st[0], st[1], st[2], st[3]
    );
    if std::env::var_os("ONLY_SINGLE").is_some() {
        return;
    }
    if std::env::var_os("ALIGNED").is_some() {
        let mut r = vec![Vec::new(); 4];
        for k in 0..rounds {
            let (a, b, c, d) = if k % 2 == 0 {
                (
                    ours::<Msg64>(n),
                    aq::<Msg64>(n),
                    ours::<Msg64A>(n),
                    aq::<Msg64A>(n),
                )
            } else {
                let d = aq::<Msg64A>(n);
                let c = ours::<Msg64A>(n);
                let b = aq::<Msg64>(n);
                let a = ours::<Msg64>(n);
                (a, b, c, d)
            };
            for (i, x) in [a, b, c, d].iter().enumerate() {
                r[i].push(n as f64 / x.0.as_secs_f64() / 1e6);
            }
        }
        for (i, nm) in ["ours_64B", "aq_64B", "ours_64A", "aq_64A"]
            .iter()
            .enumerate()
        {
            println!("{nm:9} median {:7.2} M msg/s", median(&mut r[i].clone()));
        }
        return;
    }
    let mut rate = vec![Vec::new(); 4];
    let mut ratio = vec![Vec::new(); 2];
    let mut miss = vec![Vec::new(); 4];
    for k in 0..rounds {
        let (a8, b8, a64, b64);
        if k % 2 == 0 {
            a8 = ours::<u64>(n);
            b8 = aq::<u64>(n);
            a64 = ours::<Msg64>(n);
            b64 = aq::<Msg64>(n);
        } else {
            b64 = aq::<Msg64>(n);
            a64 = ours::<Msg64>(n);
            b8 = aq::<u64>(n);
            a8 = ours::<u64>(n);
        }
        for (i, r) in [a8, b8, a64, b64].iter().enumerate() {
            rate[i].push(n as f64 / r.0.as_secs_f64() / 1e6);
            miss[i].push((r.1 + r.2) as f64 / n as f64);
        }
        ratio[0].push(b8.0.as_secs_f64() / a8.0.as_secs_f64());
        ratio[1].push(b64.0.as_secs_f64() / a64.0.as_secs_f64());
    }
    let names = ["ours_8B", "aq_8B", "ours_64B", "aq_64B"];
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
        "median per-pair ratio (ours/aq speed) 8B {:.2}  64B {:.2}",
        median(&mut ratio[0]),
        median(&mut ratio[1])
    );
}
