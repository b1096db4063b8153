//! What creating a big queue or pipe costs, in time and in memory (issue
//! 13: "Creating a ring or pipe costs O(1) in its capacity"):
//!
//! `cargo run --release -p multiproc-benches --example create_big -- [MIB] [ROUNDS]`
//!
//! For each structure, sized so that its segment is about `MIB` MiB
//! (default 1024):
//!
//! - `queue<[u8;64]>`: [`multiproc::queue::channel`], the capacity chosen
//!   from the core ring's `memory_size`;
//! - `bytes_channel`: [`multiproc::queue::bytes_channel`] with a ring of
//!   `MIB` MiB (a power of two), messages of up to 4 KiB;
//! - `pipe duplex`: [`multiproc::Pipe`] with two rings of `MIB / 2` MiB.
//!
//! it prints, as the median of `ROUNDS` (default 5):
//!
//! - `create`: the wall time of the creating call, and what the process's
//!   `VmRSS` (`/proc/self/status`), the segment's resident bytes (the `Rss`
//!   of the mappings of at least `MIB / 4` MiB in `/proc/self/smaps`) and
//!   the machine's `Shmem` (`/proc/meminfo`, shared with whatever else
//!   runs) grew by;
//! - `eager`: the same creation followed by writing every slot once
//!   (non-blocking sends until the structure is full), the cost an
//!   initialisation that wrote every slot would have had: the "before" of
//!   an O(1) creation.
//!
//! Needs about `MIB` MiB free in `/dev/shm` (`df -h /dev/shm`); a creation
//! that finds no room fails with its error, and a smaller `MIB` is the
//! fix.
use std::time::Instant;

use multiproc::raw::mpmc::MpmcRing;
use multiproc::{queue, Pipe};

/// A `kB` field of a `/proc` file of `Name:   123 kB` lines, in bytes.
fn kb_field(path: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string(path).expect("read /proc");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resident bytes of this process's mappings of at least `min` bytes (the
/// big segment; nothing else here is that large).
fn big_mappings_rss(min: u64) -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let (mut total, mut big) = (0u64, false);
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("Size:") {
            let kb: u64 = v
                .split_whitespace()
                .next()
                .map_or(0, |x| x.parse().unwrap_or(0));
            big = kb * 1024 >= min;
        } else if let Some(v) = l.strip_prefix("Rss:") {
            if big {
                let kb: u64 = v
                    .split_whitespace()
                    .next()
                    .map_or(0, |x| x.parse().unwrap_or(0));
                total += kb * 1024;
            }
        }
    }
    total
}

/// One reading of the three memory figures.
#[derive(Clone, Copy)]
struct Mem {
    rss: u64,
    seg: u64,
    shmem: u64,
}

fn mem(min: u64) -> Mem {
    Mem {
        rss: kb_field("/proc/self/status", "VmRSS"),
        seg: big_mappings_rss(min),
        shmem: kb_field("/proc/meminfo", "Shmem"),
    }
}

/// What one creation measured: seconds, and the growth of each figure.
#[derive(Clone, Copy, Default)]
struct Took {
    secs: f64,
    rss: f64,
    seg: f64,
    shmem: f64,
}

/// Times `make` (which creates the structure, fills it if `eager`, and
/// returns it alive), reads the memory figures, then drops it.
fn measure<T>(min: u64, make: impl FnOnce() -> T) -> Took {
    let before = mem(min);
    let start = Instant::now();
    let keep = make();
    let secs = start.elapsed().as_secs_f64();
    let after = mem(min);
    drop(keep);
    let grow = |a: u64, b: u64| a.saturating_sub(b) as f64;
    Took {
        secs,
        rss: grow(after.rss, before.rss),
        seg: grow(after.seg, before.seg),
        shmem: grow(after.shmem, before.shmem),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// A structure under test: its name, its segment size, and a creation
/// (with `true`: followed by a write of every slot).
type Case = (String, u64, Box<dyn Fn(bool) -> Box<dyn std::any::Any>>);

fn cases(mib: u64) -> Vec<Case> {
    let bytes = mib << 20;
    // Capacity of a [u8; 64] queue whose ring is about `bytes`.
    let per_slot = MpmcRing::<[u8; 64]>::memory_size(1 << 20).expect("size") as u64 >> 20;
    let cap = bytes / per_slot;
    let queue_size = MpmcRing::<[u8; 64]>::memory_size(cap).expect("size") as u64;
    let ring = bytes.next_power_of_two();
    let half = (bytes / 2).next_power_of_two();
    vec![
        (
            format!("queue<[u8;64]> cap {cap}"),
            queue_size,
            Box::new(move |eager| {
                let (tx, rx) = queue::channel::<[u8; 64]>(cap).expect("queue");
                if eager {
                    let mut n = 0u64;
                    while tx.try_send([n as u8; 64]).is_ok() {
                        n += 1;
                    }
                    assert_eq!(n, cap, "filled");
                }
                Box::new((tx, rx))
            }),
        ),
        (
            format!("bytes_channel ring {} MiB", ring >> 20),
            ring,
            Box::new(move |eager| {
                let (mut tx, rx) = queue::bytes_channel(ring, 4096).expect("bytes_channel");
                if eager {
                    let msg = vec![7u8; 4096 - 8];
                    while tx.send_timeout(&msg, std::time::Duration::ZERO).is_ok() {}
                }
                Box::new((tx, rx))
            }),
        ),
        (
            format!("pipe duplex 2 x {} MiB", half >> 20),
            2 * half,
            Box::new(move |eager| {
                let (mut a, mut b) = Pipe::new()
                    .ring_size(half)
                    .max_message(4096)
                    .open()
                    .expect("pipe");
                if eager {
                    let msg = vec![7u8; 4096 - 8];
                    for end in [&mut a, &mut b] {
                        while end
                            .send_bytes_timeout(&msg, std::time::Duration::ZERO)
                            .is_ok()
                        {}
                    }
                }
                Box::new((a, b))
            }),
        ),
    ]
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .map_or(1024, |s| s.parse().expect("MIB"));
    let rounds: usize = std::env::args()
        .nth(2)
        .map_or(5, |s| s.parse().expect("ROUNDS"));
    let min = (mib << 20) / 4;
    println!(
        "{:30} {:>9} | {:>10} {:>9} {:>9} {:>9} | {:>10} {:>9} {:>9} {:>9}",
        "structure",
        "segment",
        "create ms",
        "+RSS",
        "+seg res",
        "+Shmem",
        "eager ms",
        "+RSS",
        "+seg res",
        "+Shmem"
    );
    let mb = |b: f64| format!("{:.1}M", b / (1 << 20) as f64);
    for (name, size, make) in cases(mib) {
        let mut got = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, eager) in [false, true].into_iter().enumerate() {
                got[i].push(measure(min, || make(eager)));
            }
        }
        let m = |i: usize, f: fn(&Took) -> f64| median(got[i].iter().map(f).collect());
        println!(
            "{:30} {:>9} | {:10.2} {:>9} {:>9} {:>9} | {:10.2} {:>9} {:>9} {:>9}",
            name,
            mb(size as f64),
            m(0, |t| t.secs * 1e3),
            mb(m(0, |t| t.rss)),
            mb(m(0, |t| t.seg)),
            mb(m(0, |t| t.shmem)),
            m(1, |t| t.secs * 1e3),
            mb(m(1, |t| t.rss)),
            mb(m(1, |t| t.seg)),
            mb(m(1, |t| t.shmem)),
        );
    }
}
