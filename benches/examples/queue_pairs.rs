//! The std channels against the core rings they wrap, across processes, in
//! alternated pairs (issue 13: "`Queue`, `spsc::channel` and `Pipe` add at
//! most 10% over their core ring"):
//!
//! `cargo run --release -p multiproc-benches --example queue_pairs -- [TRIALS] [MSGS]`
//!
//! Each trial streams `MSGS` (default 2^20) 8-byte messages from this
//! process to a child forked with [`multiproc::Process`], as the `ipc`
//! bench's `stream` harness does (the child signals ready, the clock runs
//! from the first send until the child has counted every message, and the
//! sum of the sequence numbers is checked). One round runs each pair back
//! to back, in alternating order from round to round:
//!
//! | pair | std (as `benches/src/transfer.rs` calls it) | core ring (as the `ipc` bench's `core_*` rows) |
//! |---|---|---|
//! | `queue` | `queue::channel::<[u8; 8]>(1024)`: `send_timeout`/`recv_timeout` | `MpmcRing<[u8; 8]>`, 1024 slots: `push_timeout`/`pop_timeout` |
//! | `qxfer` | the same `Queue` through `multiproc_benches::transfer` (`QueueTx`/`QueueRx`, `produce`/`consume`), as the `ipc` bench's `multiproc_queue` row | as `queue` |
//! | `spsc` | `spsc::channel::<[u8; 8]>(1024)`: `send_timeout`/`recv_timeout` | `SpscRing<[u8; 8]>`, 1024 slots: `push_timeout`/`pop_timeout` |
//! | `pipe` | `multiproc::pipe()` (default 4 MiB ring): `send_bytes`/`recv_bytes_into` | `ByteRing` of 4 MiB: `send_timeout`/`recv_into_timeout` |
//! | `pipe64k` | `Pipe::new().ring_size(64 KiB)`, otherwise as `pipe` | `ByteRing` of 64 KiB (the `ipc` bench's `core_bytering` rows) |
//!
//! It prints each trial's rates (M msg/s), then per pair the median rates
//! and the median of the per-round ratios std/core (1.00: no cost; the
//! issue asks at least 0.91).
//!
//! `MISSES=1` replaces each side's blocking call with a non-blocking one
//! first (`try_send`/`try_push`, `try_recv`/`try_pop`), counting a miss
//! when it finds the ring full (sender) or empty (receiver), then the
//! blocking call: misses per message tell the regime (0: the two sides
//! run apart; near 1: they meet on every message). This changes the loop
//! for both rows of a pair alike; the pipes have no non-blocking call and
//! count nothing (nor does `qxfer`). `ONLY=queue,spsc` runs those pairs only.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::raw::bytering::ByteRing;
use multiproc::raw::mpmc::MpmcRing;
use multiproc::raw::spsc::SpscRing;
use multiproc::shm::SharedMemory;
use multiproc::{queue, spsc, Pipe, Process, StartMethod};

/// Longest wait of a timed call: a dead peer fails the run, not hangs it.
const STALL: Duration = Duration::from_secs(30);
const CAP: u64 = 1024;
/// The ring of the `ipc` bench's `core_bytering` rows.
const BYTERING: u64 = 64 << 10;
/// The ring of each direction of a default `Pipe` (1 MiB messages).
const PIPE_RING: u64 = 4 << 20;

/// A control block shared with the forked child, one word per line.
#[derive(Clone)]
struct Ctl(Arc<SharedMemory>);

impl Ctl {
    fn new() -> Ctl {
        Ctl(Arc::new(SharedMemory::anonymous(8 * 128).expect("ctl")))
    }
    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < 8);
        // SAFETY: in bounds (checked) and 128-aligned (the mapping is
        // page-aligned); the mapping is zeroed at creation and only ever
        // accessed atomically at these offsets.
        unsafe { &*self.0.as_ptr().add(i * 128).cast::<AtomicU64>() }
    }
    fn ready(&self) -> &AtomicU64 {
        self.word(0)
    }
    fn done(&self) -> &AtomicU64 {
        self.word(1)
    }
    fn sum(&self) -> &AtomicU64 {
        self.word(2)
    }
    fn rx_miss(&self) -> &AtomicU64 {
        self.word(3)
    }
}

fn wait_for(w: &AtomicU64, child: &Process) {
    let start = Instant::now();
    while w.load(Ordering::Acquire) == 0 {
        assert!(start.elapsed() < STALL, "the child stalled");
        assert!(
            child.is_alive() || w.load(Ordering::Acquire) != 0,
            "the child died"
        );
        std::thread::yield_now();
    }
}

/// What one trial measured.
#[derive(Clone, Copy, Default)]
struct Trial {
    secs: f64,
    tx_miss: u64,
    rx_miss: u64,
}

/// Receives `n` messages in a forked child with `consume` (which returns
/// their sum and its misses); sends `0..n` with `produce` (which returns
/// its misses), timed.
fn stream<C, P>(n: u64, consume: C, produce: P) -> Trial
where
    C: FnOnce(u64) -> Result<(u64, u64), String> + Send + 'static,
    P: FnOnce(u64) -> u64,
{
    let ctl = Ctl::new();
    let c = ctl.clone();
    let child = Process::new(move || {
        c.ready().store(1, Ordering::Release);
        let (sum, miss) = consume(n)?;
        c.sum().store(sum, Ordering::Relaxed);
        c.rx_miss().store(miss, Ordering::Relaxed);
        // Release: pairs with the parent's Acquire in `wait_for`.
        c.done().store(1, Ordering::Release);
        Ok::<(), String>(())
    })
    .start_method(StartMethod::Fork)
    .start()
    .expect("fork");
    wait_for(ctl.ready(), &child);
    let start = Instant::now();
    let tx_miss = produce(n);
    wait_for(ctl.done(), &child);
    let secs = start.elapsed().as_secs_f64();
    let status = child.join().expect("join");
    assert!(status.success(), "the child ended with {status}");
    let want = if n % 2 == 0 {
        (n / 2).wrapping_mul(n.wrapping_sub(1))
    } else {
        n.wrapping_mul(n.wrapping_sub(1) / 2)
    };
    assert_eq!(ctl.sum().load(Ordering::Relaxed), want, "lost messages");
    Trial {
        secs,
        tx_miss,
        rx_miss: ctl.rx_miss().load(Ordering::Relaxed),
    }
}

fn seq(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().expect("8 bytes"))
}

/// The receiving loop: `n` times, with `probe` a non-blocking `try_recv`
/// first (a miss when it fails), then the blocking `recv`.
fn recv_loop<E: std::fmt::Display, F: std::fmt::Debug>(
    n: u64,
    probe: bool,
    mut try_recv: impl FnMut() -> Result<[u8; 8], F>,
    mut recv: impl FnMut() -> Result<[u8; 8], E>,
) -> Result<(u64, u64), String> {
    let (mut sum, mut miss) = (0u64, 0u64);
    for _ in 0..n {
        let m = match probe.then(&mut try_recv) {
            Some(Ok(m)) => m,
            Some(Err(_)) => {
                miss += 1;
                recv().map_err(|e| format!("recv: {e}"))?
            }
            None => recv().map_err(|e| format!("recv: {e}"))?,
        };
        sum = sum.wrapping_add(seq(&m));
    }
    Ok((sum, miss))
}

/// The sending loop: `0..n`, with `probe` a non-blocking `try_send` first
/// (a miss when it fails), then the blocking `send`; returns the misses.
fn send_loop<E: std::fmt::Debug, F>(
    n: u64,
    probe: bool,
    mut try_send: impl FnMut([u8; 8]) -> Result<(), F>,
    mut send: impl FnMut([u8; 8]) -> Result<(), E>,
) -> u64 {
    let mut miss = 0;
    for i in 0..n {
        let m = i.to_le_bytes();
        if probe {
            if try_send(m).is_ok() {
                continue;
            }
            miss += 1;
        }
        send(m).expect("send");
    }
    miss
}

fn std_queue(n: u64, probe: bool) -> Trial {
    let (tx, rx) = queue::channel::<[u8; 8]>(CAP).expect("queue");
    stream(
        n,
        move |n| recv_loop(n, probe, || rx.try_recv(), || rx.recv_timeout(STALL)),
        |n| send_loop(n, probe, |m| tx.try_send(m), |m| tx.send_timeout(m, STALL)),
    )
}

/// The `Queue` as the `ipc` bench's `multiproc_queue` row drives it:
/// through `multiproc_benches::transfer` (`QueueTx`/`QueueRx` behind the
/// `Source`/`Sink` traits, `produce`/`consume`).
fn xfer_queue(n: u64, _probe: bool) -> Trial {
    use multiproc_benches::transfer::{self, QueueRx, QueueTx};
    let (tx, rx) = queue::channel::<[u8; 8]>(CAP).expect("queue");
    let (mut tx, mut rx) = (QueueTx(tx), QueueRx::<[u8; 8]>(rx));
    stream(
        n,
        move |n| transfer::consume(&mut rx, Some(n)).map(|t| (t.sum, 0)),
        |n| {
            transfer::produce(&mut tx, n).expect("send");
            0
        },
    )
}

fn core_mpmc(n: u64, probe: bool) -> Trial {
    let size = MpmcRing::<[u8; 8]>::memory_size(CAP).expect("size");
    let shm = Arc::new(SharedMemory::anonymous(size).expect("shm"));
    let tx = MpmcRing::<[u8; 8]>::create(shm.region(), CAP).expect("ring");
    let child = Arc::clone(&shm);
    stream(
        n,
        move |n| {
            let rx = MpmcRing::<[u8; 8]>::attach(child.region()).map_err(|e| e.to_string())?;
            recv_loop(n, probe, || rx.try_pop(), || rx.pop_timeout(STALL))
        },
        |n| send_loop(n, probe, |m| tx.try_push(m), |m| tx.push_timeout(m, STALL)),
    )
}

fn std_spsc(n: u64, probe: bool) -> Trial {
    let (tx, rx) = spsc::channel::<[u8; 8]>(CAP).expect("spsc");
    let (tx, rx) = (std::cell::RefCell::new(tx), std::cell::RefCell::new(rx));
    stream(
        n,
        move |n| {
            recv_loop(
                n,
                probe,
                || rx.borrow_mut().try_recv(),
                || rx.borrow_mut().recv_timeout(STALL),
            )
        },
        |n| {
            send_loop(
                n,
                probe,
                |m| tx.borrow_mut().try_send(m),
                |m| tx.borrow_mut().send_timeout(m, STALL),
            )
        },
    )
}

fn core_spsc(n: u64, probe: bool) -> Trial {
    let size = SpscRing::<[u8; 8]>::memory_size(CAP).expect("size");
    let shm = Arc::new(SharedMemory::anonymous(size).expect("shm"));
    SpscRing::<[u8; 8]>::create(shm.region(), CAP).expect("ring");
    let ring = SpscRing::<[u8; 8]>::attach(shm.region()).expect("attach");
    let tx = std::cell::RefCell::new(ring.producer().expect("producer"));
    let child = Arc::clone(&shm);
    stream(
        n,
        move |n| {
            let ring = SpscRing::<[u8; 8]>::attach(child.region()).map_err(|e| e.to_string())?;
            let rx = std::cell::RefCell::new(ring.consumer().map_err(|e| e.to_string())?);
            recv_loop(
                n,
                probe,
                || rx.borrow_mut().try_pop(),
                || rx.borrow_mut().pop_timeout(STALL),
            )
        },
        |n| {
            send_loop(
                n,
                probe,
                |m| tx.borrow_mut().try_push(m),
                |m| tx.borrow_mut().push_timeout(m, STALL),
            )
        },
    )
}

fn std_pipe(n: u64, ring: Option<u64>) -> Trial {
    let mut b = Pipe::new();
    if let Some(r) = ring {
        b = b.ring_size(r).max_message(r / 2 - 64);
    }
    let (mut a, mut z) = b.open().expect("pipe");
    stream(
        n,
        move |n| {
            let mut buf = [0u8; 8];
            let mut sum = 0u64;
            for _ in 0..n {
                let got = z.recv_bytes_into(&mut buf).map_err(|e| e.to_string())?;
                if got != 8 {
                    return Err(format!("a message of {got} bytes"));
                }
                sum = sum.wrapping_add(seq(&buf));
            }
            Ok((sum, 0))
        },
        |n| {
            for i in 0..n {
                a.send_bytes(&i.to_le_bytes()).expect("send");
            }
            0
        },
    )
}

fn core_bytering(n: u64, size: u64) -> Trial {
    let mem = ByteRing::memory_size(size).expect("size");
    let shm = Arc::new(SharedMemory::anonymous(mem).expect("shm"));
    ByteRing::create(shm.region(), size, 8).expect("ring");
    let ring = ByteRing::attach(shm.region()).expect("attach");
    let mut tx = ring.sender().expect("sender");
    let child = Arc::clone(&shm);
    stream(
        n,
        move |n| {
            let ring = ByteRing::attach(child.region()).map_err(|e| e.to_string())?;
            let mut rx = ring.receiver().map_err(|e| e.to_string())?;
            let mut buf = [0u8; 8];
            let mut sum = 0u64;
            for _ in 0..n {
                let got = rx
                    .recv_into_timeout(&mut buf, STALL)
                    .map_err(|e| e.to_string())?;
                if got != 8 {
                    return Err(format!("a frame of {got} bytes"));
                }
                sum = sum.wrapping_add(seq(&buf));
            }
            Ok((sum, 0))
        },
        |n| {
            for i in 0..n {
                tx.send_timeout(&i.to_le_bytes(), STALL).expect("send");
            }
            0
        },
    )
}

/// In one process, `BATCH` (512) blocking sends then as many blocking
/// receives, `n` messages in all: nanoseconds per send + receive, the
/// instructions each layer runs per call without any cross-core traffic.
#[inline(never)]
fn single(n: u64, mut send: impl FnMut([u8; 8]), mut recv: impl FnMut() -> [u8; 8]) -> f64 {
    const BATCH: u64 = 512;
    let start = Instant::now();
    let mut sum = 0u64;
    let mut i = 0;
    while i < n {
        for k in 0..BATCH {
            send(std::hint::black_box((i + k).to_le_bytes()));
        }
        for _ in 0..BATCH {
            sum = sum.wrapping_add(seq(&std::hint::black_box(recv())));
        }
        i += BATCH;
    }
    std::hint::black_box(sum);
    start.elapsed().as_secs_f64() * 1e9 / i as f64
}

/// The single-process figures of each pair's two sides, std then core:
/// best of `rounds`, in ns per send + receive.
fn single_all(n: u64, rounds: usize) {
    let mut best = [f64::MAX; 6];
    for _ in 0..rounds {
        let (tx, rx) = queue::channel::<[u8; 8]>(CAP).expect("queue");
        let a = single(
            n,
            |m| tx.send_timeout(m, STALL).expect("send"),
            || rx.recv_timeout(STALL).expect("recv"),
        );
        let size = MpmcRing::<[u8; 8]>::memory_size(CAP).expect("size");
        let shm = SharedMemory::anonymous(size).expect("shm");
        let r = MpmcRing::<[u8; 8]>::create(shm.region(), CAP).expect("ring");
        let b = single(
            n,
            |m| r.push_timeout(m, STALL).expect("push"),
            || r.pop_timeout(STALL).expect("pop"),
        );
        let (tx, rx) = spsc::channel::<[u8; 8]>(CAP).expect("spsc");
        let (tx, rx) = (std::cell::RefCell::new(tx), std::cell::RefCell::new(rx));
        let c = single(
            n,
            |m| tx.borrow_mut().send_timeout(m, STALL).expect("send"),
            || rx.borrow_mut().recv_timeout(STALL).expect("recv"),
        );
        let size = SpscRing::<[u8; 8]>::memory_size(CAP).expect("size");
        let shm = SharedMemory::anonymous(size).expect("shm");
        SpscRing::<[u8; 8]>::create(shm.region(), CAP).expect("ring");
        let ring = SpscRing::<[u8; 8]>::attach(shm.region()).expect("attach");
        let (p, q) = ring.split().expect("split");
        let (p, q) = (std::cell::RefCell::new(p), std::cell::RefCell::new(q));
        let d = single(
            n,
            |m| p.borrow_mut().push_timeout(m, STALL).expect("push"),
            || q.borrow_mut().pop_timeout(STALL).expect("pop"),
        );
        let (a1, z1) = Pipe::new()
            .ring_size(BYTERING)
            .max_message(BYTERING / 2 - 64)
            .open()
            .expect("pipe");
        let (a1, z1) = (std::cell::RefCell::new(a1), std::cell::RefCell::new(z1));
        let e = single(
            n,
            |m| a1.borrow_mut().send_bytes(&m).expect("send"),
            || {
                let mut b = [0u8; 8];
                z1.borrow_mut().recv_bytes_into(&mut b).expect("recv");
                b
            },
        );
        let mem = ByteRing::memory_size(BYTERING).expect("size");
        let shm = SharedMemory::anonymous(mem).expect("shm");
        ByteRing::create(shm.region(), BYTERING, 8).expect("ring");
        let ring = ByteRing::attach(shm.region()).expect("attach");
        let (s, r) = (ring.sender().expect("tx"), ring.receiver().expect("rx"));
        let (s, r) = (std::cell::RefCell::new(s), std::cell::RefCell::new(r));
        let f = single(
            n,
            |m| s.borrow_mut().send_timeout(&m, STALL).expect("send"),
            || {
                let mut b = [0u8; 8];
                r.borrow_mut()
                    .recv_into_timeout(&mut b, STALL)
                    .expect("recv");
                b
            },
        );
        for (b, x) in best.iter_mut().zip([a, b, c, d, e, f]) {
            *b = b.min(x);
        }
    }
    println!(
        "one process, ns per send+recv (best of {rounds}): queue {:.2} / mpmc {:.2}  spsc {:.2} / core {:.2}  pipe64k {:.2} / bytering {:.2}",
        best[0], best[1], best[2], best[3], best[4], best[5]
    );
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// One pair: its name and its two contenders (std first).
type Pair = (&'static str, fn(u64, bool) -> Trial, fn(u64, bool) -> Trial);

fn main() {
    let trials: usize = std::env::args()
        .nth(1)
        .map_or(9, |s| s.parse().expect("TRIALS"));
    let n: u64 = std::env::args()
        .nth(2)
        .map_or(1 << 20, |s| s.parse().expect("MSGS"));
    let probe = std::env::var_os("MISSES").is_some();
    let only = std::env::var("ONLY").ok();
    single_all(n.min(1 << 20), trials);
    if std::env::var_os("ONLY_SINGLE").is_some() {
        return;
    }
    let pairs: Vec<Pair> = [
        (
            "queue",
            std_queue as fn(u64, bool) -> Trial,
            core_mpmc as fn(u64, bool) -> Trial,
        ),
        ("qxfer", xfer_queue, core_mpmc),
        ("spsc", std_spsc, core_spsc),
        (
            "pipe",
            |n, _| std_pipe(n, None),
            |n, _| core_bytering(n, PIPE_RING),
        ),
        (
            "pipe64k",
            |n, _| std_pipe(n, Some(BYTERING)),
            |n, _| core_bytering(n, BYTERING),
        ),
    ]
    .into_iter()
    .filter(|p| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == p.0))
    })
    .collect();
    let mut got: Vec<[Vec<Trial>; 2]> = vec![[Vec::new(), Vec::new()]; pairs.len()];
    let rate = |t: &Trial| n as f64 / t.secs / 1e6;
    for round in 0..trials {
        let mut line = format!("round {round:2}:");
        for (p, (name, std_f, core_f)) in pairs.iter().enumerate() {
            let (s, c) = if round % 2 == 0 {
                let s = std_f(n, probe);
                (s, core_f(n, probe))
            } else {
                let c = core_f(n, probe);
                (std_f(n, probe), c)
            };
            line += &format!(" {name} {:6.2}/{:6.2}", rate(&s), rate(&c));
            got[p][0].push(s);
            got[p][1].push(c);
        }
        println!("{line}  (M msg/s, std/core)");
    }
    println!(
        "{:8} {:>9} {:>9} {:>7}   {:>17} {:>17}",
        "pair", "std M/s", "core M/s", "ratio", "std miss tx/rx", "core miss tx/rx"
    );
    for (p, (name, _, _)) in pairs.iter().enumerate() {
        let [s, c] = &got[p];
        let ratios: Vec<f64> = s.iter().zip(c).map(|(s, c)| c.secs / s.secs).collect();
        let miss = |v: &[Trial], f: fn(&Trial) -> u64| {
            median(&v.iter().map(|t| f(t) as f64 / n as f64).collect::<Vec<_>>())
        };
        println!(
            "{name:8} {:9.2} {:9.2} {:7.2}   {:8.3}/{:8.3} {:8.3}/{:8.3}",
            median(&s.iter().map(rate).collect::<Vec<_>>()),
            median(&c.iter().map(rate).collect::<Vec<_>>()),
            median(&ratios),
            miss(s, |t| t.tx_miss),
            miss(s, |t| t.rx_miss),
            miss(c, |t| t.tx_miss),
            miss(c, |t| t.rx_miss),
        );
    }
}
