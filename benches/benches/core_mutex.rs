//! Uncontended lock + unlock: multiproc-core's robust process-shared mutex
//! against `std::sync::Mutex` and `parking_lot::Mutex`, in one run.
//!
//! `cargo bench -p multiproc-benches --bench core_mutex`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use multiproc_benches::AlignedBuf;
use multiproc_core::mutex::Mutex;

fn mutex(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_uncontended");
    let mut buf = AlignedBuf::new(Mutex::<u64>::memory_size().unwrap());
    let ours = Mutex::<u64>::create(buf.region(), 0).unwrap();
    g.bench_function("multiproc", |b| {
        b.iter(|| {
            let mut g = ours.lock().unwrap();
            *g = black_box(*g + 1);
        })
    });
    let std_m = std::sync::Mutex::new(0u64);
    g.bench_function("std", |b| {
        b.iter(|| {
            let mut g = std_m.lock().unwrap();
            *g = black_box(*g + 1);
        })
    });
    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| {
        b.iter(|| {
            let mut g = pl.lock();
            *g = black_box(*g + 1);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = mutex
}
criterion_main!(benches);
