//! The single-thread cost of a [`MsgQueue`] send + receive (8 B and 64 B
//! messages, copied in and out), next to an [`MpmcRing`] of `u64` as a
//! peer measured in the same run (its ratio survives a loaded machine
//! better than the absolute figures):
//!
//! `cargo run --release -p multiproc-benches --example msgqueue_single -- [ROUNDS] [MSGS]`
//!
//! Each round sends `BATCH` messages (default 512) into a 1024-slot queue,
//! then receives them, until `MSGS` have gone through; the figure is the
//! best round's nanoseconds per send + receive.
use std::hint::black_box;
use std::time::{Duration, Instant};

use multiproc_benches::AlignedBuf;
use multiproc_core::mpmc::MpmcRing;
use multiproc_core::msgqueue::MsgQueue;

const CAP: u64 = 1024;
const MAX: u64 = 64;

fn batch() -> u64 {
    std::env::var("BATCH").map_or(512, |s| s.parse().unwrap())
}

#[inline(never)]
fn queue(n: u64, len: usize) -> Duration {
    let mut buf = AlignedBuf::new(MsgQueue::memory_size(CAP, MAX).unwrap());
    let q = MsgQueue::create(buf.region(), CAP, MAX).unwrap();
    let bsz = batch();
    let mut msg = [0u8; MAX as usize];
    let mut out = [0u8; MAX as usize];
    let mut sum = 0u64;
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        for k in 0..bsz {
            msg[0] = (i + k) as u8;
            q.try_send(black_box(&msg[..len])).unwrap();
        }
        for _ in 0..bsz {
            let got = q.try_recv_into(&mut out).unwrap();
            sum = sum.wrapping_add(got as u64 + u64::from(black_box(out[0])));
        }
        i += bsz;
    }
    black_box(sum);
    start.elapsed()
}

#[inline(never)]
fn ring(n: u64) -> Duration {
    let mut buf = AlignedBuf::new(MpmcRing::<u64>::memory_size(CAP).unwrap());
    let r = MpmcRing::<u64>::create(buf.region(), CAP).unwrap();
    let bsz = batch();
    let mut sum = 0u64;
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        for k in 0..bsz {
            r.try_push(black_box(i + k)).unwrap();
        }
        for _ in 0..bsz {
            sum = sum.wrapping_add(black_box(r.try_pop().unwrap()));
        }
        i += bsz;
    }
    black_box(sum);
    start.elapsed()
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(15, |s| s.parse().unwrap());
    let n: u64 = std::env::args()
        .nth(2)
        .map_or(1 << 20, |s| s.parse().unwrap());
    let mut best = [f64::MAX; 3];
    for _ in 0..rounds {
        let r = [queue(n, 8), queue(n, 64), ring(n)];
        for (b, d) in best.iter_mut().zip(r) {
            *b = b.min(d.as_secs_f64() * 1e9 / n as f64);
        }
    }
    println!(
        "single-thread ns/(send+recv): msgqueue_8B {:.2} msgqueue_64B {:.2} mpmc_u64 {:.2}",
        best[0], best[1], best[2]
    );
}
