//! Thread-to-thread ring throughput: multiproc-core's SPSC and MPMC rings
//! against rtrb, crossbeam's ArrayQueue and crossbeam-channel, in one run.
//!
//! `cargo bench -p multiproc-benches --bench core_rings`
//!
//! One iteration moves a batch of 64 Ki messages from a producer thread to
//! a consumer thread through a 1024-slot queue (a sample spawns the two
//! threads once for all its iterations, so thread start-up is amortised);
//! criterion's throughput line gives messages/s. Both sides busy-poll the
//! non-blocking calls, so the figures need two idle cores.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use multiproc_benches::AlignedBuf;
use multiproc_core::mpmc::MpmcRing;
use multiproc_core::spsc::SpscRing;

const CAP: usize = 1024;
/// Messages per criterion iteration.
const BATCH: u64 = 1 << 16;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Msg64([u64; 8]);

trait MakeMsg: Pod + Send {
    fn make(i: u64) -> Self;
    fn key(&self) -> u64;
}
impl MakeMsg for u64 {
    fn make(i: u64) -> Self {
        i
    }
    fn key(&self) -> u64 {
        *self
    }
}
impl MakeMsg for Msg64 {
    fn make(i: u64) -> Self {
        Msg64([i; 8])
    }
    fn key(&self) -> u64 {
        self.0[7]
    }
}

/// Runs producer and consumer closures on two threads; returns the elapsed
/// time of the transfer.
fn pair(
    produce: impl FnOnce() + Send,
    consume: impl FnOnce() -> u64 + Send,
    iters: u64,
) -> Duration {
    thread::scope(|s| {
        let start = Instant::now();
        let c = s.spawn(consume);
        produce();
        let sum = c.join().unwrap();
        let el = start.elapsed();
        assert_eq!(sum, iters.wrapping_mul(iters.wrapping_sub(1)) / 2);
        el
    })
}

/// The sending half of a queue under test, as the busy-poll loop sees it.
trait TrySend<T>: Send {
    /// Sends `v`, or hands it back when the queue is full.
    fn try_send(&mut self, v: T) -> Result<(), T>;
}

/// The receiving half of a queue under test.
trait TryRecv<T>: Send {
    /// The oldest value, if any.
    fn try_recv(&mut self) -> Option<T>;
}

impl<T: Pod + Send> TrySend<T> for multiproc_core::spsc::Producer<'_, T> {
    fn try_send(&mut self, v: T) -> Result<(), T> {
        self.try_push(v).map_err(|e| e.into_inner())
    }
}
impl<T: Pod + Send> TryRecv<T> for multiproc_core::spsc::Consumer<'_, T> {
    fn try_recv(&mut self) -> Option<T> {
        self.try_pop().ok()
    }
}
impl<T: Pod + Send> TrySend<T> for &MpmcRing<'_, T> {
    fn try_send(&mut self, v: T) -> Result<(), T> {
        self.try_push(v).map_err(|e| e.into_inner())
    }
}
impl<T: Pod + Send> TryRecv<T> for &MpmcRing<'_, T> {
    fn try_recv(&mut self) -> Option<T> {
        self.try_pop().ok()
    }
}
impl<T: Send> TrySend<T> for rtrb::Producer<T> {
    fn try_send(&mut self, v: T) -> Result<(), T> {
        self.push(v).map_err(|rtrb::PushError::Full(x)| x)
    }
}
impl<T: Send> TryRecv<T> for rtrb::Consumer<T> {
    fn try_recv(&mut self) -> Option<T> {
        self.pop().ok()
    }
}
impl<T: Send> TrySend<T> for &crossbeam_queue::ArrayQueue<T> {
    fn try_send(&mut self, v: T) -> Result<(), T> {
        self.push(v)
    }
}
impl<T: Send> TryRecv<T> for &crossbeam_queue::ArrayQueue<T> {
    fn try_recv(&mut self) -> Option<T> {
        self.pop()
    }
}

/// Moves `iters` messages from `tx` to `rx`, both sides busy-polling the
/// non-blocking calls; returns the elapsed time.
fn spin_transfer<T: MakeMsg>(
    mut tx: impl TrySend<T>,
    mut rx: impl TryRecv<T>,
    iters: u64,
) -> Duration {
    pair(
        move || {
            for i in 0..iters {
                let mut v = T::make(i);
                while let Err(back) = tx.try_send(v) {
                    v = back;
                    std::hint::spin_loop();
                }
            }
        },
        move || {
            let mut sum = 0u64;
            let mut n = 0;
            while n < iters {
                if let Some(v) = rx.try_recv() {
                    sum = sum.wrapping_add(black_box(v).key());
                    n += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
            sum
        },
        iters,
    )
}

fn ours_spsc<T: MakeMsg>(iters: u64) -> Duration {
    let mut buf = AlignedBuf::new(SpscRing::<T>::memory_size(CAP as u64).unwrap());
    let ring = SpscRing::<T>::create(buf.region(), CAP as u64).unwrap();
    let (tx, rx) = ring.split().unwrap();
    spin_transfer(tx, rx, iters)
}

fn rtrb_spsc<T: MakeMsg>(iters: u64) -> Duration {
    let (tx, rx) = rtrb::RingBuffer::<T>::new(CAP);
    spin_transfer(tx, rx, iters)
}

fn ours_mpmc<T: MakeMsg>(iters: u64) -> Duration {
    let mut buf = AlignedBuf::new(MpmcRing::<T>::memory_size(CAP as u64).unwrap());
    let ring = MpmcRing::<T>::create(buf.region(), CAP as u64).unwrap();
    spin_transfer(&ring, &ring, iters)
}

fn array_queue<T: MakeMsg>(iters: u64) -> Duration {
    let q = crossbeam_queue::ArrayQueue::<T>::new(CAP);
    spin_transfer(&q, &q, iters)
}

fn channel<T: MakeMsg>(iters: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<T>(CAP);
    pair(
        move || {
            for i in 0..iters {
                tx.send(T::make(i)).unwrap();
            }
        },
        move || {
            let mut sum = 0u64;
            for _ in 0..iters {
                sum = sum.wrapping_add(black_box(rx.recv().unwrap()).key());
            }
            sum
        },
        iters,
    )
}

fn bench_size<T: MakeMsg>(c: &mut Criterion, label: &str) {
    let mut g = c.benchmark_group(format!("spsc_{label}"));
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function(BenchmarkId::from_parameter("multiproc"), |b| {
        b.iter_custom(|n| ours_spsc::<T>(n * BATCH))
    });
    g.bench_function(BenchmarkId::from_parameter("rtrb"), |b| {
        b.iter_custom(|n| rtrb_spsc::<T>(n * BATCH))
    });
    g.bench_function(BenchmarkId::from_parameter("ArrayQueue"), |b| {
        b.iter_custom(|n| array_queue::<T>(n * BATCH))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("mpmc_{label}"));
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function(BenchmarkId::from_parameter("multiproc"), |b| {
        b.iter_custom(|n| ours_mpmc::<T>(n * BATCH))
    });
    g.bench_function(BenchmarkId::from_parameter("ArrayQueue"), |b| {
        b.iter_custom(|n| array_queue::<T>(n * BATCH))
    });
    g.bench_function(BenchmarkId::from_parameter("crossbeam-channel"), |b| {
        b.iter_custom(|n| channel::<T>(n * BATCH))
    });
    g.finish();
}

fn rings(c: &mut Criterion) {
    bench_size::<u64>(c, "8B");
    bench_size::<Msg64>(c, "64B");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = rings
}
criterion_main!(benches);
