//! The Pool over MPI against its peers, in one run (see
//! `benches/mpi/run.sh`, which launches it): trivial `map` tasks per second
//! (chunksize 1, 64, and the default) and the wall time of 256 PEP 371
//! prime sums, for
//!
//! - `pool`: `multiproc::mpi::Pool` with its local pools (the default:
//!   cheap chunks run in the ranks, measured, the others on the local
//!   pools);
//! - `pool-inline`: the same with `local_workers(0)` (ranks run tasks
//!   themselves, as mpi4py's workers);
//! - `bare`: a bare rsmpi master/worker loop (the practical limit: plain
//!   `u64` vectors, blocking sends, two chunks in flight per worker);
//! - `local`: the local `multiproc::pool::Pool` on this machine's cores
//!   (run without mpirun).
//!
//! Each line printed by rank 0 is `<mode> <measure> <value> <unit>`.
//! After the mode, `primes [rounds]` or `trivial1 [rounds]` runs only
//! the primes maps, or the trivial map at chunksize 1 (`bare`: with one
//! and two chunks in flight), that many times: for profiles, and for
//! `benches/mpi/cpu.py`.

use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, Source};
use mpi::topology::Communicator;
use multiproc_benches::{crunch_primes, PRIME_LIMIT, PRIME_SUM};

const PRIME_TASKS: u64 = 256;

fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}

fn primes(_: u64) -> u64 {
    crunch_primes(std::hint::black_box(PRIME_LIMIT))
}

fn rate(mode: &str, what: &str, n: u64, t: Duration) {
    println!("{mode} {what} {:.0} tasks/s", n as f64 / t.as_secs_f64());
}

fn wall(mode: &str, what: &str, t: Duration) {
    println!("{mode} {what} {:.0} ms", t.as_secs_f64() * 1e3);
}

/// Which measures to take: all, or one kind for profiles (`primes
/// [rounds]` or `trivial1 [rounds]` after the mode: that many rounds of
/// the two primes maps, or of the trivial map with chunksize 1).
fn only() -> Option<(String, u32)> {
    let mut args = std::env::args().skip(2);
    let what = args.next()?;
    Some((what, args.next().and_then(|r| r.parse().ok()).unwrap_or(1)))
}

/// The same measures through the pool-like `map(f, items, chunksize)`.
fn measures<E: std::fmt::Debug>(
    mode: &str,
    n1: u64,
    map: impl Fn(fn(u64) -> u64, Vec<u64>, Option<usize>) -> Result<Vec<u64>, E>,
) {
    let run = |f, n: u64, cs| {
        let items: Vec<u64> = (0..n).collect();
        let t = Instant::now();
        let r = map(f, items, cs).expect("map");
        let t = t.elapsed();
        assert_eq!(r.len() as u64, n);
        (r, t)
    };
    // Warm-up.
    let _ = run(trivial, 1000, Some(1));
    match only() {
        Some((what, rounds)) if what == "primes" => {
            for _ in 0..rounds {
                let (r, t) = run(primes, PRIME_TASKS, None);
                assert!(r.iter().all(|&s| s == PRIME_SUM));
                wall(mode, "primes256/chunksize=default", t);
                let (_, t) = run(primes, PRIME_TASKS, Some(1));
                wall(mode, "primes256/chunksize=1", t);
            }
            return;
        }
        Some((what, rounds)) if what == "trivial1" => {
            for _ in 0..rounds {
                let (_, t) = run(trivial, n1, Some(1));
                rate(mode, "trivial/chunksize=1", n1, t);
            }
            return;
        }
        _ => {}
    }
    let (r, t) = run(trivial, n1, Some(1));
    assert_eq!(r[7], 8);
    rate(mode, "trivial/chunksize=1", n1, t);
    let (_, t) = run(trivial, 1_000_000, Some(64));
    rate(mode, "trivial/chunksize=64", 1_000_000, t);
    let (_, t) = run(trivial, 1_000_000, None);
    rate(mode, "trivial/chunksize=default", 1_000_000, t);
    let (r, t) = run(primes, PRIME_TASKS, None);
    assert!(r.iter().all(|&s| s == PRIME_SUM));
    wall(mode, "primes256/chunksize=default", t);
    let (_, t) = run(primes, PRIME_TASKS, Some(1));
    wall(mode, "primes256/chunksize=1", t);
}

fn pool(inline: bool) {
    let mut b = multiproc::mpi::Pool::builder();
    if inline {
        b = b.local_workers(0);
    }
    let mut pool = b.build().expect("mpi pool");
    let mode = if inline { "pool-inline" } else { "pool" };
    println!(
        "{mode} ranks {} local-workers {}",
        pool.ranks().len(),
        pool.workers()
    );
    let n1 = 300_000;
    measures(mode, n1, |f, items, cs| match cs {
        Some(c) => pool.chunksize(c).map(f, items),
        None => pool.map(f, items),
    });
    pool.close();
    pool.join().expect("join");
}

fn local() {
    let pool = multiproc::pool::Pool::new(multiproc::cpu_count()).expect("local pool");
    println!("local workers {}", pool.workers());
    measures("local", 20_000, |f, items, cs| match cs {
        Some(c) => pool.chunksize(c).map(f, items),
        None => pool.map(f, items),
    });
}

const STOP: i32 = 2;
const WORK: i32 = 1;

/// The bare rsmpi loop: chunks of `u64` in, `u64` out, `inflight` per
/// worker; returns the results' count.
fn bare_round(world: &mpi::topology::SimpleCommunicator, f: u64, n: u64, cs: u64, inflight: usize) {
    let size = world.size();
    let mut next = 0u64;
    let mut out = 0u64;
    let chunk = |next: &mut u64| -> Option<Vec<u64>> {
        if *next >= n {
            return None;
        }
        let end = (*next + cs).min(n);
        let mut v: Vec<u64> = (*next..end).collect();
        v.push(f);
        *next = end;
        Some(v)
    };
    let mut busy = 0;
    for r in 1..size {
        for _ in 0..inflight {
            if let Some(v) = chunk(&mut next) {
                world.process_at_rank(r).send_with_tag(&v[..], WORK);
                busy += 1;
            }
        }
    }
    while busy > 0 {
        let (v, st) = world.any_process().receive_vec::<u64>();
        out += v.len() as u64;
        busy -= 1;
        if let Some(c) = chunk(&mut next) {
            world
                .process_at_rank(st.source_rank())
                .send_with_tag(&c[..], WORK);
            busy += 1;
        }
    }
    assert_eq!(out, n);
}

fn bare() {
    let universe = mpi::initialize().expect("mpi");
    let world = universe.world();
    if world.rank() != 0 {
        loop {
            let (mut v, st) = world.process_at_rank(0).receive_vec::<u64>();
            if st.tag() == STOP {
                return;
            }
            let f = v.pop().unwrap_or(0);
            let r: Vec<u64> = v
                .iter()
                .map(|&x| if f == 1 { primes(x) } else { trivial(x) })
                .collect();
            world.process_at_rank(0).send(&r[..]);
        }
    }
    let mode = "bare";
    let time = |f, n, cs, inflight| {
        let t = Instant::now();
        bare_round(&world, f, n, cs, inflight);
        t.elapsed()
    };
    let _ = time(0, 10_000, 1, 2);
    if let Some((_, rounds)) = only().filter(|(w, _)| w == "trivial1") {
        for _ in 0..rounds {
            rate(mode, "trivial/chunksize=1", 300_000, time(0, 300_000, 1, 1));
            let t = time(0, 300_000, 1, 2);
            rate(mode, "trivial/chunksize=1,2-in-flight", 300_000, t);
        }
        for r in 1..world.size() {
            world.process_at_rank(r).send_with_tag(&[0u64][..], STOP);
        }
        return;
    }
    rate(mode, "trivial/chunksize=1", 300_000, time(0, 300_000, 1, 1));
    rate(
        mode,
        "trivial/chunksize=1,2-in-flight",
        300_000,
        time(0, 300_000, 1, 2),
    );
    rate(
        mode,
        "trivial/chunksize=64",
        1_000_000,
        time(0, 1_000_000, 64, 2),
    );
    wall(mode, "primes256/chunksize=1", time(1, PRIME_TASKS, 1, 1));
    for r in 1..world.size() {
        world.process_at_rank(r).send_with_tag(&[0u64][..], STOP);
    }
}

fn main() {
    multiproc::init();
    match std::env::args().nth(1).as_deref() {
        Some("pool") => pool(false),
        Some("pool-inline") => pool(true),
        Some("bare") => bare(),
        Some("local") => local(),
        _ => eprintln!("usage: mpi_pool pool|pool-inline|bare|local [primes|trivial1 [rounds]] (pool and bare under mpirun)"),
    }
}
