//! Cross-process IPC: multiproc's queues, pipes and locks against their
//! peers, side by side in one run (issue 5's "Benchmarks").
//!
//! `cargo bench -p multiproc-benches --bench ipc`
//!
//! Every figure moves data between this process and a child forked with
//! [`multiproc::Process`] (the fork start method). One criterion iteration
//! is one message (or one round trip, or one increment); each sample forks
//! a fresh child, which signals ready through a shared control block
//! before the clock starts. Every message carries its sequence number in
//! its first 8 bytes; the receiving side counts the messages and sums the
//! sequence numbers, and the bench panics on a mismatch, so no figure can
//! come from lost or duplicated messages. multiproc's channels go through
//! the transfer loops the main job uses too (`multiproc_benches::transfer`).
//!
//! | group | contenders |
//! |---|---|
//! | `queue_8B`, `queue_64B` | `multiproc::Queue<[u8; N]>` (MPMC), `multiproc::spsc` channel, ipc-channel bytes, Unix socket pair, hand-rolled spinning ring |
//! | `queue_4KiB` | `multiproc::queue::bytes_channel` (copy in, copy out), ipc-channel, Unix socket, ring |
//! | `queue_1MiB` | byte queue copy, byte queue zero-copy (`send_with`/`recv_with`), ipc-channel, Unix socket, ring (one copy in), memcpy in one process |
//! | `pipe_8B`, `pipe_4KiB` | `multiproc::pipe()` (`send_bytes`/`recv_bytes_into`), Unix socket, ring |
//! | `round_trip` | spsc channel default waiting, core SPSC ring with `Spin::NONE`, `Pipe` default waiting, core byte ring with `Spin::NONE`, `Queue` with `Spin::NONE`, spinning ring, bare futex, Unix socket, ipc-channel; p50/p99 printed to stderr |
//! | `locked_counter` | `multiproc::Mutex<u64>`, `multiproc::Value<u64>`, process-shared pthread mutex |
//! | `queue_scaling_8B` | `multiproc::Queue<[u8; 8]>` with 1, 2, 4, 8 producer and as many consumer processes |
//! | `queue_idle` | 64 processes blocked on an empty `Queue`: their CPU share and wake-ups/s, printed in the summary |
//!
//! At the end the bench prints a summary of its own figures and, when
//! `python3` is present, the output of `python/pep371.py --only ipc
//! --quick` (Python's multiprocessing). `IPC_BENCH_SKIP_PYTHON=1` skips
//! the Python run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkGroup, Criterion, Throughput};
use multiproc::raw::bytering::ByteRing;
use multiproc::raw::mpmc::MpmcRing;
use multiproc::raw::spsc::SpscRing;
use multiproc::raw::wait::Spin;
use multiproc::shm::SharedMemory;
use multiproc::{Process, StartMethod};
use multiproc_benches::transfer::{
    self, put_seq, seq_of, BytesInPlaceRx, BytesInPlaceTx, BytesRx, BytesTx, PipeRx, PipeTx,
    QueueRx, QueueTx, Sink, Source, SpscRx, SpscTx, Tally, STALL,
};

// --- shared mappings -----------------------------------------------------------

/// An anonymous `MAP_SHARED` mapping: forked children see the same bytes.
struct Map {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access to it goes
// through atomics or through the ring protocol below.
unsafe impl Send for Map {}
// SAFETY: as above.
unsafe impl Sync for Map {}

impl Map {
    fn new(len: usize) -> Arc<Map> {
        // SAFETY: a fresh anonymous mapping; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap of {len} bytes failed");
        Arc::new(Map {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The `AtomicU64` at byte offset `off` (8-aligned, in bounds).
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: in bounds and aligned (checked); the mapping is zeroed
        // at creation and only ever accessed atomically at this offset.
        unsafe { &*self.ptr.add(off).cast::<AtomicU64>() }
    }

    /// The `AtomicU32` at byte offset `off` (4-aligned, in bounds).
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.len);
        // SAFETY: as in `u64_at`.
        unsafe { &*self.ptr.add(off).cast::<AtomicU32>() }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The control block a sample shares with its child(ren): each word on
/// its own 128-byte line.
struct Ctl(Arc<Map>);

impl Clone for Ctl {
    fn clone(&self) -> Self {
        Ctl(Arc::clone(&self.0))
    }
}

impl Ctl {
    fn new() -> Ctl {
        Ctl(Map::new(8 * 128))
    }
    fn ready(&self) -> &AtomicU64 {
        self.0.u64_at(0)
    }
    fn go(&self) -> &AtomicU64 {
        self.0.u64_at(128)
    }
    fn done(&self) -> &AtomicU64 {
        self.0.u64_at(256)
    }
    fn count(&self) -> &AtomicU64 {
        self.0.u64_at(384)
    }
    fn sum(&self) -> &AtomicU64 {
        self.0.u64_at(512)
    }
    /// Producers that finished (the scaling groups).
    fn sent(&self) -> &AtomicU64 {
        self.0.u64_at(640)
    }
}

/// Forks a child running `f`; a child returning `Err` exits unsuccessfully.
fn fork(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Process {
    Process::new(f)
        .start_method(StartMethod::Fork)
        .start()
        .expect("fork a child")
}

fn join(child: &Process) {
    match child.join() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("the child ended with {s}"),
        Err(e) => panic!("the child failed: {e}"),
    }
}

/// Waits until `word >= v`; panics after `STALL` or when every child in
/// `children` ended without getting there.
fn wait_for(word: &AtomicU64, v: u64, children: &[&Process]) {
    let start = Instant::now();
    let mut polls = 0u32;
    while word.load(Ordering::Acquire) < v {
        polls = polls.wrapping_add(1);
        if polls % 4096 == 0 {
            if word.load(Ordering::Acquire) >= v {
                break;
            }
            // A child that ended must have succeeded (`join` panics
            // otherwise); if all ended and the word is still short, they
            // never will get there.
            let ended: Vec<_> = children.iter().filter(|c| !c.is_alive()).collect();
            ended.iter().for_each(|c| join(c));
            if ended.len() == children.len() && word.load(Ordering::Acquire) < v {
                panic!("the children ended before the signal");
            }
            if start.elapsed() > STALL {
                children.iter().for_each(|c| drop(c.kill()));
                panic!("a child stalled");
            }
        }
        std::thread::yield_now();
    }
}

// --- figures collected for the closing summary ---------------------------------

/// Per contender: total iterations and total time over every sample.
static TOTALS: StdMutex<BTreeMap<String, (u64, Duration)>> = StdMutex::new(BTreeMap::new());

fn record(name: &str, iters: u64, el: Duration) {
    let mut t = TOTALS.lock().unwrap();
    let e = t.entry(name.to_string()).or_default();
    e.0 += iters;
    e.1 += el;
}

/// Per round-trip contender: (p50, p99) in microseconds.
static LATENCIES: StdMutex<Vec<(String, f64, f64)>> = StdMutex::new(Vec::new());

// --- the stream harness ----------------------------------------------------------

/// One throughput sample: forks a consumer that takes exactly `n` messages
/// (`consume` returns their tally), times `produce` sending `0..n` until
/// the consumer says it has all of them, then checks the tally.
fn stream(
    n: u64,
    consume: impl FnOnce(u64) -> Result<Tally, String> + Send + 'static,
    produce: impl FnOnce(u64),
) -> Duration {
    let ctl = Ctl::new();
    let c = ctl.clone();
    let child = fork(move || {
        c.ready().store(1, Ordering::Release);
        let t = consume(n)?;
        c.count().store(t.count, Ordering::Relaxed);
        c.sum().store(t.sum, Ordering::Relaxed);
        // Release: pairs with the parent's Acquire in `wait_for`, which
        // then reads count and sum.
        c.done().store(1, Ordering::Release);
        Ok(())
    });
    wait_for(ctl.ready(), 1, &[&child]);
    let start = Instant::now();
    produce(n);
    wait_for(ctl.done(), 1, &[&child]);
    let el = start.elapsed();
    join(&child);
    let got = Tally {
        count: ctl.count().load(Ordering::Relaxed),
        sum: ctl.sum().load(Ordering::Relaxed),
    };
    assert_eq!(got, Tally::of(n), "messages lost or duplicated");
    el
}

/// Registers one throughput contender in `g`.
fn contender(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    group: &str,
    name: &str,
    f: impl Fn(u64) -> Duration,
) {
    let key = format!("{group}/{name}");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let el = f(iters);
            record(&key, iters, el);
            el
        })
    });
}

// --- the hand-rolled ring --------------------------------------------------------

/// A busy-spin SPSC ring of fixed-size slots in a shared mapping: head and
/// tail `u64`s on separate 128-byte lines, Release/Acquire, no waiting.
/// The practical ceiling for any shared-memory queue.
struct Ring {
    map: Arc<Map>,
    slot: usize,
    cap: u64,
}

const HEAD: usize = 0;
const TAIL: usize = 128;
const DATA: usize = 256;

impl Ring {
    fn new(slot: usize, cap: u64) -> Ring {
        Ring {
            map: Map::new(DATA + slot * cap as usize),
            slot,
            cap,
        }
    }

    fn share(&self) -> Ring {
        Ring {
            map: Arc::clone(&self.map),
            slot: self.slot,
            cap: self.cap,
        }
    }

    fn slot_ptr(&self, i: u64) -> *mut u8 {
        // SAFETY: `i % cap < cap`, so the slot lies inside the mapping.
        unsafe { self.map.ptr.add(DATA + (i % self.cap) as usize * self.slot) }
    }

    /// The producing side; only one process pushes.
    fn producer(self) -> RingTx {
        RingTx {
            ring: self,
            head: 0,
            tail: 0,
        }
    }

    /// The consuming side; only one process pops.
    fn consumer(self) -> RingRx {
        RingRx {
            ring: self,
            head: 0,
            tail: 0,
        }
    }
}

/// One busy-wait step. After 2^16 fruitless spins (far beyond any
/// steady-state wait) it yields the CPU once, so that on an oversubscribed
/// 2-vCPU machine a spinner does not burn the peer's whole time slice; an
/// uncontended run never gets there. It never sleeps.
fn relax(spins: &mut u32) {
    *spins += 1;
    if *spins % (1 << 16) == 0 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

struct RingTx {
    ring: Ring,
    /// Our head (only we write it).
    head: u64,
    /// Last tail seen.
    tail: u64,
}

impl RingTx {
    /// Spins until a slot is free, lets `f` fill it, publishes it.
    fn push(&mut self, f: impl FnOnce(&mut [u8])) {
        let mut spins = 0u32;
        while self.head - self.tail == self.ring.cap {
            // Acquire: pairs with the consumer's Release of `TAIL`, so its
            // reads of the slot finished before we overwrite it.
            self.tail = self.ring.map.u64_at(TAIL).load(Ordering::Acquire);
            relax(&mut spins);
        }
        // SAFETY: the slot is ours until we publish `head + 1` (the
        // consumer does not read it before then, the check above says it
        // is done with the previous lap).
        let slot = unsafe {
            std::slice::from_raw_parts_mut(self.ring.slot_ptr(self.head), self.ring.slot)
        };
        f(slot);
        self.head += 1;
        // Release: pairs with the consumer's Acquire of `HEAD`.
        self.ring
            .map
            .u64_at(HEAD)
            .store(self.head, Ordering::Release);
    }
}

struct RingRx {
    ring: Ring,
    head: u64,
    /// Our tail (only we write it).
    tail: u64,
}

impl RingRx {
    /// Spins until a slot is full, lets `f` read it, frees it.
    fn pop<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> R {
        let mut spins = 0u32;
        while self.head == self.tail {
            // Acquire: pairs with the producer's Release of `HEAD`.
            self.head = self.ring.map.u64_at(HEAD).load(Ordering::Acquire);
            relax(&mut spins);
        }
        // SAFETY: the producer published this slot and does not touch it
        // again before we publish `tail + 1`.
        let slot =
            unsafe { std::slice::from_raw_parts(self.ring.slot_ptr(self.tail), self.ring.slot) };
        let r = f(slot);
        self.tail += 1;
        // Release: pairs with the producer's Acquire of `TAIL`.
        self.ring
            .map
            .u64_at(TAIL)
            .store(self.tail, Ordering::Release);
        r
    }
}

/// Ring stream: `size`-byte messages through `cap` slots. The producer
/// writes each message into its slot (one copy of a ready message), the
/// consumer reads the sequence number (and the last byte) in place.
fn ring_stream(size: usize, cap: u64, n: u64) -> Duration {
    let ring = Ring::new(size, cap);
    let rx = ring.share();
    let mut tx = ring.producer();
    let mut msg = vec![7u8; size];
    stream(
        n,
        move |n| {
            let mut rx = rx.consumer();
            let mut t = Tally::default();
            for _ in 0..n {
                let (seq, last) = rx.pop(|s| (seq_of(s), s[s.len() - 1]));
                if size > 8 && last != 7 {
                    return Err("a torn message".into());
                }
                t.add(seq);
            }
            Ok(t)
        },
        |n| {
            for i in 0..n {
                put_seq(&mut msg, i);
                tx.push(|s| s.copy_from_slice(&msg));
            }
        },
    )
}

// --- the Unix socket pair --------------------------------------------------------

/// Unix socket stream: frames of a 4-byte length then the payload, one
/// `write_all` per frame; the reader uses a 64 KiB `BufReader` and
/// `read_exact`.
fn unix_stream(size: usize, n: u64) -> Duration {
    let (mut a, b) = UnixStream::pair().expect("socket pair");
    let mut frame = vec![0u8; 4 + size];
    frame[..4].copy_from_slice(&(size as u32).to_le_bytes());
    stream(
        n,
        move |n| {
            let mut r = BufReader::with_capacity(64 << 10, b);
            let mut buf = vec![0u8; size];
            let mut t = Tally::default();
            for _ in 0..n {
                let mut len = [0u8; 4];
                r.read_exact(&mut len).map_err(|e| e.to_string())?;
                let len = u32::from_le_bytes(len) as usize;
                if len != size {
                    return Err(format!("a frame of {len} bytes"));
                }
                r.read_exact(&mut buf).map_err(|e| e.to_string())?;
                t.add(seq_of(&buf));
            }
            Ok(t)
        },
        |n| {
            for i in 0..n {
                put_seq(&mut frame[4..], i);
                a.write_all(&frame).expect("socket write");
            }
        },
    )
}

// --- ipc-channel -----------------------------------------------------------------

/// ipc-channel's byte channel (its fastest path: no serialisation).
fn ipc_channel_stream(size: usize, n: u64) -> Duration {
    let (tx, rx) = ipc_channel::ipc::bytes_channel().expect("ipc-channel");
    let mut msg = vec![0u8; size];
    stream(
        n,
        move |n| {
            let mut t = Tally::default();
            for _ in 0..n {
                let m = rx.recv().map_err(|e| format!("{e:?}"))?;
                if m.len() != size {
                    return Err(format!("a message of {} bytes", m.len()));
                }
                t.add(seq_of(&m));
            }
            Ok(t)
        },
        |n| {
            for i in 0..n {
                put_seq(&mut msg, i);
                tx.send(&msg).expect("ipc-channel send");
            }
        },
    )
}

// --- multiproc -------------------------------------------------------------------

/// The ring of every pipe row (`multiproc_pipe`, `multiproc_core_bytering`,
/// `spin_ring`): 64 KiB, a Linux pipe's buffer.
const PIPE_RING: u64 = 64 << 10;

/// One throughput sample of a multiproc channel ([`transfer`]'s loops):
/// `rx` goes to the forked consumer, which takes `n` messages; this process
/// sends `0..n` through `tx`.
fn channel_stream(n: u64, mut tx: impl Source, mut rx: impl Sink + Send + 'static) -> Duration {
    stream(
        n,
        move |n| transfer::consume(&mut rx, Some(n)),
        |n| transfer::produce(&mut tx, n).expect("send"),
    )
}

fn mp_queue<const N: usize>(n: u64) -> Duration {
    let (tx, rx) = multiproc::queue::channel::<[u8; N]>(1024).expect("queue");
    channel_stream(n, QueueTx(tx), QueueRx(rx))
}

fn mp_spsc<const N: usize>(n: u64) -> Duration {
    let (tx, rx) = multiproc::spsc::channel::<[u8; N]>(1024).expect("spsc");
    channel_stream(n, SpscTx(tx), SpscRx(rx))
}

/// The core MPMC ring `Queue` wraps, used bare across processes (one
/// producer, one consumer, default waiting): what the std layer's handle
/// counting, fork hand-over and error mapping cost shows as the gap
/// between this row and `multiproc_queue`.
fn core_mpmc<const N: usize>(n: u64) -> Duration {
    let size = MpmcRing::<[u8; N]>::memory_size(1024).expect("size");
    let shm = Arc::new(SharedMemory::anonymous(size).expect("shm"));
    let tx = MpmcRing::<[u8; N]>::create(shm.region(), 1024).expect("ring");
    let child = Arc::clone(&shm);
    stream(
        n,
        move |n| {
            let rx = MpmcRing::<[u8; N]>::attach(child.region()).map_err(|e| e.to_string())?;
            let mut t = Tally::default();
            for _ in 0..n {
                let m = rx.pop_timeout(STALL).map_err(|e| format!("pop: {e}"))?;
                t.add(seq_of(&m));
            }
            Ok(t)
        },
        |n| {
            for i in 0..n {
                let mut m = [0u8; N];
                put_seq(&mut m, i);
                tx.push_timeout(m, STALL).expect("push");
            }
        },
    )
}

/// The core byte ring a `Pipe` direction wraps, used bare across processes
/// (`send_timeout` of a ready message, `recv_into_timeout` a buffer, as the
/// pipe rows): the gap to `multiproc_pipe` is what `Connection` adds.
fn core_bytering(size: usize, n: u64) -> Duration {
    const RING: u64 = PIPE_RING;
    let mem = ByteRing::memory_size(RING).expect("size");
    let shm = Arc::new(SharedMemory::anonymous(mem).expect("shm"));
    ByteRing::create(shm.region(), RING, size as u64).expect("ring");
    let child = Arc::clone(&shm);
    let ring = ByteRing::attach(shm.region()).expect("attach");
    let mut tx = ring.sender().expect("sender");
    let mut msg = vec![7u8; size];
    stream(
        n,
        move |n| {
            let ring = ByteRing::attach(child.region()).map_err(|e| e.to_string())?;
            let mut rx = ring.receiver().map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; size];
            let mut t = Tally::default();
            for _ in 0..n {
                let got = rx
                    .recv_into_timeout(&mut buf, STALL)
                    .map_err(|e| format!("recv: {e}"))?;
                if got != size {
                    return Err(format!("a frame of {got} bytes, not {size}"));
                }
                t.add(seq_of(&buf));
            }
            Ok(t)
        },
        |n| {
            for i in 0..n {
                put_seq(&mut msg, i);
                tx.send_timeout(&msg, STALL).expect("send");
            }
        },
    )
}

/// Byte queue, copying: `send` of a ready message, `recv_into` a buffer.
fn mp_bytes_copy(size: usize, ring: u64, n: u64) -> Duration {
    let (tx, rx) = multiproc::queue::bytes_channel(ring, size as u64).expect("bytes");
    channel_stream(n, BytesTx::new(tx, size), BytesRx::new(rx, size))
}

/// Byte queue, zero-copy: the producer writes every byte in place
/// (`send_with`), the consumer reads the sequence number and the last byte
/// in place (`recv_with`), like the ring.
fn mp_bytes_zero_copy(size: usize, ring: u64, n: u64) -> Duration {
    let (tx, rx) = multiproc::queue::bytes_channel(ring, size as u64).expect("bytes");
    channel_stream(
        n,
        BytesInPlaceTx::new(tx, size),
        BytesInPlaceRx::new(rx, size, false),
    )
}

/// Pipe: one direction of a duplex `multiproc::pipe()`, `send_bytes` and
/// `recv_bytes_into`.
fn mp_pipe(size: usize, n: u64) -> Duration {
    // The ring size of `core_bytering` and `spin_ring` (a Linux pipe's
    // buffer), so that the rows differ only in the layers above the ring
    // (`pipe()`'s default, 4 MiB for 1 MiB messages, ran 1.3-1.6x faster
    // than a 64 KiB ring in alternated pairs: `queue_pairs`).
    let (a, b) = multiproc::Pipe::new()
        .max_message(size as u64)
        .ring_size(PIPE_RING)
        .open()
        .expect("pipe");
    channel_stream(n, PipeTx::new(a, size), PipeRx::new(b, size))
}

// --- throughput groups -----------------------------------------------------------

fn configure(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .throughput(Throughput::Elements(1));
}

fn queue_small<const N: usize>(c: &mut Criterion) {
    let name = format!("queue_{N}B");
    let mut g = c.benchmark_group(&name);
    configure(&mut g);
    contender(&mut g, &name, "multiproc_queue", mp_queue::<N>);
    contender(&mut g, &name, "multiproc_core_mpmc", core_mpmc::<N>);
    contender(&mut g, &name, "multiproc_spsc", mp_spsc::<N>);
    contender(&mut g, &name, "ipc_channel", |n| ipc_channel_stream(N, n));
    contender(&mut g, &name, "unix_socket", |n| unix_stream(N, n));
    contender(&mut g, &name, "spin_ring", |n| ring_stream(N, 1024, n));
    g.finish();
}

fn queue_8b(c: &mut Criterion) {
    queue_small::<8>(c);
}

fn queue_64b(c: &mut Criterion) {
    queue_small::<64>(c);
}

fn queue_4kib(c: &mut Criterion) {
    const N: usize = 4 << 10;
    let name = "queue_4KiB";
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    contender(&mut g, name, "multiproc_bytes", |n| {
        mp_bytes_copy(N, 4 << 20, n)
    });
    contender(&mut g, name, "ipc_channel", |n| ipc_channel_stream(N, n));
    contender(&mut g, name, "unix_socket", |n| unix_stream(N, n));
    contender(&mut g, name, "spin_ring", |n| ring_stream(N, 1024, n));
    g.finish();
}

/// memcpy of 1 MiB between two buffers of this process: the physical
/// ceiling for any copy.
fn memcpy_1mib(n: u64) -> Duration {
    let src = vec![7u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    let start = Instant::now();
    for i in 0..n {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst)[0] = i as u8;
    }
    start.elapsed()
}

fn queue_1mib(c: &mut Criterion) {
    const N: usize = 1 << 20;
    let name = "queue_1MiB";
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    contender(&mut g, name, "multiproc_bytes_copy", |n| {
        mp_bytes_copy(N, 4 << 20, n)
    });
    contender(&mut g, name, "multiproc_bytes_zero_copy", |n| {
        mp_bytes_zero_copy(N, 4 << 20, n)
    });
    contender(&mut g, name, "ipc_channel", |n| ipc_channel_stream(N, n));
    contender(&mut g, name, "unix_socket", |n| unix_stream(N, n));
    contender(&mut g, name, "spin_ring", |n| ring_stream(N, 4, n));
    contender(&mut g, name, "memcpy", memcpy_1mib);
    g.finish();
}

fn pipes(c: &mut Criterion) {
    for (name, size) in [("pipe_8B", 8usize), ("pipe_4KiB", 4 << 10)] {
        let mut g = c.benchmark_group(name);
        configure(&mut g);
        contender(&mut g, name, "multiproc_pipe", |n| mp_pipe(size, n));
        contender(&mut g, name, "multiproc_core_bytering", |n| {
            core_bytering(size, n)
        });
        contender(&mut g, name, "unix_socket", |n| unix_stream(size, n));
        // A 64 KiB ring, a Linux pipe's buffer.
        contender(&mut g, name, "spin_ring", |n| {
            ring_stream(size, PIPE_RING / size as u64, n)
        });
        g.finish();
    }
}

// --- round trips -----------------------------------------------------------------

/// Runs `n` round trips: forks a child running `echo`, then times each
/// `trip(i)` (which must return `i`), recording every sample in `samples`.
fn round_trips(
    n: u64,
    echo: impl FnOnce(u64) -> Result<(), String> + Send + 'static,
    mut trip: impl FnMut(u64) -> u64,
    samples: &RefCell<Vec<Duration>>,
) -> Duration {
    let ctl = Ctl::new();
    let c = ctl.clone();
    let child = fork(move || {
        c.ready().store(1, Ordering::Release);
        echo(n)?;
        c.done().store(1, Ordering::Release);
        Ok(())
    });
    wait_for(ctl.ready(), 1, &[&child]);
    let mut s = samples.borrow_mut();
    let mut total = Duration::ZERO;
    for i in 0..n {
        let t = Instant::now();
        let back = trip(i);
        let el = t.elapsed();
        assert_eq!(back, i, "a round trip came back wrong");
        total += el;
        s.push(el);
    }
    wait_for(ctl.done(), 1, &[&child]);
    join(&child);
    total
}

/// Round trips through two multiproc channels ([`transfer`]'s `echo` and
/// `trip`): `ping` carries each message to the forked child, `pong` back.
fn channel_round_trips<T, R>(
    n: u64,
    (mut ptx, mut prx): (T, R),
    (mut ctx, mut crx): (T, R),
    s: &RefCell<Vec<Duration>>,
) -> Duration
where
    T: Source + Send + 'static,
    R: Sink + Send + 'static,
{
    round_trips(
        n,
        move |n| transfer::echo(&mut prx, &mut ctx, Some(n)),
        |i| {
            transfer::trip(&mut ptx, &mut crx, i).expect("round trip");
            i
        },
        s,
    )
}

fn rt_spsc_default(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    let spsc = || {
        let (tx, rx) = multiproc::spsc::channel::<u64>(64).expect("spsc");
        (SpscTx(tx), SpscRx(rx))
    };
    channel_round_trips(n, spsc(), spsc(), s)
}

fn rt_queue_sleep(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    let q = || {
        let (tx, rx) = multiproc::Queue::<u64>::new(64)
            .spin(Spin::NONE)
            .channel()
            .expect("queue");
        (QueueTx(tx), QueueRx(rx))
    };
    channel_round_trips(n, q(), q(), s)
}

/// The core SPSC ring (what `multiproc::spsc` wraps) with `Spin::NONE` set
/// on its handles: every wait sleeps at once.
fn rt_core_spsc_sleep(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    let size = SpscRing::<u64>::memory_size(64).expect("size");
    let (ping, pong) = (
        Arc::new(SharedMemory::anonymous(size).expect("shm")),
        Arc::new(SharedMemory::anonymous(size).expect("shm")),
    );
    SpscRing::<u64>::create(ping.region(), 64).expect("ring");
    SpscRing::<u64>::create(pong.region(), 64).expect("ring");
    let (cping, cpong) = (Arc::clone(&ping), Arc::clone(&pong));
    let pr = SpscRing::<u64>::attach(ping.region()).expect("attach");
    let qr = SpscRing::<u64>::attach(pong.region()).expect("attach");
    let mut tx = pr.producer().expect("producer");
    let mut rx = qr.consumer().expect("consumer");
    tx.set_spin(Spin::NONE);
    rx.set_spin(Spin::NONE);
    round_trips(
        n,
        move |n| {
            let pr = SpscRing::<u64>::attach(cping.region()).map_err(|e| e.to_string())?;
            let qr = SpscRing::<u64>::attach(cpong.region()).map_err(|e| e.to_string())?;
            let mut rx = pr.consumer().map_err(|e| e.to_string())?;
            let mut tx = qr.producer().map_err(|e| e.to_string())?;
            rx.set_spin(Spin::NONE);
            tx.set_spin(Spin::NONE);
            for _ in 0..n {
                let v = rx.pop_timeout(STALL).map_err(|e| e.to_string())?;
                tx.push_timeout(v, STALL).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
        |i| {
            tx.push_timeout(i, STALL).expect("push");
            rx.pop_timeout(STALL).expect("pop")
        },
        s,
    )
}

/// Two one-way pipes (`send_bytes`/`recv_bytes_into` of 8-byte messages)
/// with their default waiting.
fn rt_pipe_default(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    let pipe = || {
        let (r, w) = multiproc::pipe_oneway().expect("pipe");
        (PipeTx::new(w, 8), PipeRx::new(r, 8))
    };
    channel_round_trips(n, pipe(), pipe(), s)
}

/// The core byte ring (what `Pipe` and the Pool's rings are built on) with
/// `Spin::NONE` set on its handles: every wait sleeps at once.
fn rt_core_bytering_sleep(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    const CAP: u64 = 4096;
    let size = ByteRing::memory_size(CAP).expect("size");
    let (ping, pong) = (
        Arc::new(SharedMemory::anonymous(size).expect("shm")),
        Arc::new(SharedMemory::anonymous(size).expect("shm")),
    );
    ByteRing::create(ping.region(), CAP, 8).expect("ring");
    ByteRing::create(pong.region(), CAP, 8).expect("ring");
    let (cping, cpong) = (Arc::clone(&ping), Arc::clone(&pong));
    let pr = ByteRing::attach(ping.region()).expect("attach");
    let qr = ByteRing::attach(pong.region()).expect("attach");
    let mut tx = pr.sender().expect("sender");
    let mut rx = qr.receiver().expect("receiver");
    tx.set_spin(Spin::NONE);
    rx.set_spin(Spin::NONE);
    round_trips(
        n,
        move |n| {
            let pr = ByteRing::attach(cping.region()).map_err(|e| e.to_string())?;
            let qr = ByteRing::attach(cpong.region()).map_err(|e| e.to_string())?;
            let mut rx = pr.receiver().map_err(|e| e.to_string())?;
            let mut tx = qr.sender().map_err(|e| e.to_string())?;
            rx.set_spin(Spin::NONE);
            tx.set_spin(Spin::NONE);
            let mut buf = [0u8; 8];
            for _ in 0..n {
                rx.recv_into_timeout(&mut buf, STALL)
                    .map_err(|e| e.to_string())?;
                tx.send_timeout(&buf, STALL).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
        |i| {
            tx.send_timeout(&i.to_le_bytes(), STALL).expect("send");
            let mut buf = [0u8; 8];
            rx.recv_into_timeout(&mut buf, STALL).expect("recv");
            u64::from_le_bytes(buf)
        },
        s,
    )
}

fn rt_ring(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    let (ping, pong) = (Ring::new(8, 64), Ring::new(8, 64));
    let (cping, cpong) = (ping.share(), pong.share());
    let mut tx = ping.producer();
    let mut rx = pong.consumer();
    round_trips(
        n,
        move |n| {
            let (mut rx, mut tx) = (cping.consumer(), cpong.producer());
            for _ in 0..n {
                let v = rx.pop(seq_of);
                tx.push(|s| put_seq(s, v));
            }
            Ok(())
        },
        |i| {
            tx.push(|s| put_seq(s, i));
            rx.pop(seq_of)
        },
        s,
    )
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT on a valid, aligned u32 in a shared mapping
    // (no PRIVATE flag: the waker is another process); a null timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE of one waiter on a valid u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

/// Bare futex ping-pong: two u32 words, each side stores, wakes, and waits
/// with FUTEX_WAIT at once (no spin): the floor for any sleeping wait.
fn rt_futex(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    let map = Map::new(256);
    let cmap = Arc::clone(&map);
    let (ping, pong) = (map.u32_at(0), map.u32_at(128));
    round_trips(
        n,
        move |n| {
            let (ping, pong) = (cmap.u32_at(0), cmap.u32_at(128));
            for i in 0..n {
                let want = (i as u32).wrapping_add(1);
                loop {
                    let v = ping.load(Ordering::Acquire);
                    if v == want {
                        break;
                    }
                    futex_wait(ping, v);
                }
                pong.store(want, Ordering::Release);
                futex_wake(pong);
            }
            Ok(())
        },
        |i| {
            let want = (i as u32).wrapping_add(1);
            ping.store(want, Ordering::Release);
            futex_wake(ping);
            loop {
                let v = pong.load(Ordering::Acquire);
                if v == want {
                    return i;
                }
                futex_wait(pong, v);
            }
        },
        s,
    )
}

fn rt_unix(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    let (mut a, mut b) = UnixStream::pair().expect("socket pair");
    round_trips(
        n,
        move |n| {
            let mut frame = [0u8; 12];
            for _ in 0..n {
                b.read_exact(&mut frame).map_err(|e| e.to_string())?;
                b.write_all(&frame).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
        |i| {
            let mut frame = [0u8; 12];
            frame[..4].copy_from_slice(&8u32.to_le_bytes());
            put_seq(&mut frame[4..], i);
            a.write_all(&frame).expect("write");
            a.read_exact(&mut frame).expect("read");
            seq_of(&frame[4..])
        },
        s,
    )
}

fn rt_ipc_channel(n: u64, s: &RefCell<Vec<Duration>>) -> Duration {
    let (ptx, prx) = ipc_channel::ipc::bytes_channel().expect("ipc-channel");
    let (ctx, crx) = ipc_channel::ipc::bytes_channel().expect("ipc-channel");
    round_trips(
        n,
        move |n| {
            for _ in 0..n {
                let m = prx.recv().map_err(|e| format!("{e:?}"))?;
                ctx.send(&m).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
        |i| {
            ptx.send(&i.to_le_bytes()).expect("send");
            seq_of(&crx.recv().expect("recv"))
        },
        s,
    )
}

fn round_trip(c: &mut Criterion) {
    type Rt = fn(u64, &RefCell<Vec<Duration>>) -> Duration;
    let contenders: [(&str, Rt); 9] = [
        ("multiproc_spsc_default", rt_spsc_default),
        ("multiproc_core_spsc_spin_none", rt_core_spsc_sleep),
        ("multiproc_pipe_default", rt_pipe_default),
        ("multiproc_core_bytering_spin_none", rt_core_bytering_sleep),
        ("multiproc_queue_spin_none", rt_queue_sleep),
        ("spin_ring", rt_ring),
        ("bare_futex", rt_futex),
        ("unix_socket", rt_unix),
        ("ipc_channel", rt_ipc_channel),
    ];
    let mut g = c.benchmark_group("round_trip");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .throughput(Throughput::Elements(1));
    for (name, f) in contenders {
        let samples = RefCell::new(Vec::new());
        let key = format!("round_trip/{name}");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let el = f(iters, &samples);
                record(&key, iters, el);
                el
            })
        });
        let mut s = samples.into_inner();
        if s.is_empty() {
            continue; // filtered out
        }
        s.sort_unstable();
        let at = |q: usize| s[(s.len() * q / 100).min(s.len() - 1)].as_secs_f64() * 1e6;
        let (p50, p99) = (at(50), at(99));
        eprintln!(
            "ipc round_trip {name}: p50 {p50:.2} us, p99 {p99:.2} us ({} trips)",
            s.len()
        );
        LATENCIES.lock().unwrap().push((name.to_string(), p50, p99));
    }
    g.finish();
}

// --- scaling -----------------------------------------------------------------------

/// The sequence number that tells a scaling consumer to stop.
const STOP: u64 = u64::MAX;

/// `Queue<[u8; 8]>` (capacity 1024) with `p` producer and `p` consumer
/// processes: producer `k` sends its share of `0..n` from a common go
/// signal; once all have sent, the parent sends one stop message per
/// consumer. Timed from the go signal until every consumer has stopped;
/// the consumers' tallies together must be exactly `0..n`.
fn mp_queue_scaling(p: u64, n: u64) -> Duration {
    let (tx, rx) = multiproc::queue::channel::<[u8; 8]>(1024).expect("queue");
    let ctl = Ctl::new();
    let per = n.div_ceil(p);
    let mut kids = Vec::new();
    for _ in 0..p {
        let (rx, c) = (rx.clone(), ctl.clone());
        kids.push(fork(move || {
            c.ready().fetch_add(1, Ordering::Release);
            let mut t = Tally::default();
            loop {
                let m = rx.recv_timeout(STALL).map_err(|e| e.to_string())?;
                match seq_of(&m) {
                    STOP => break,
                    seq => t.add(seq),
                }
            }
            c.count().fetch_add(t.count, Ordering::Relaxed);
            c.sum().fetch_add(t.sum, Ordering::Relaxed);
            // Release: pairs with the parent's Acquire in `wait_for`.
            c.done().fetch_add(1, Ordering::Release);
            Ok(())
        }));
    }
    for k in 0..p {
        let (tx, c) = (tx.clone(), ctl.clone());
        let range = (k * per).min(n)..((k + 1) * per).min(n);
        kids.push(fork(move || {
            c.ready().fetch_add(1, Ordering::Release);
            while c.go().load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            for i in range {
                let mut m = [0u8; 8];
                put_seq(&mut m, i);
                tx.send_timeout(m, STALL).map_err(|e| e.to_string())?;
            }
            c.sent().fetch_add(1, Ordering::Release);
            Ok(())
        }));
    }
    drop(rx);
    let refs: Vec<&Process> = kids.iter().collect();
    wait_for(ctl.ready(), 2 * p, &refs);
    let start = Instant::now();
    ctl.go().store(1, Ordering::Release);
    wait_for(ctl.sent(), p, &refs);
    for _ in 0..p {
        tx.send_timeout(STOP.to_le_bytes(), STALL).expect("stop");
    }
    wait_for(ctl.done(), p, &refs);
    let el = start.elapsed();
    kids.iter().for_each(join);
    let got = Tally {
        count: ctl.count().load(Ordering::Relaxed),
        sum: ctl.sum().load(Ordering::Relaxed),
    };
    assert_eq!(got, Tally::of(n), "messages lost or duplicated");
    el
}

/// How throughput grows with processes: `Queue` with 1, 2, 4 and 8
/// producers and as many consumers (so 2 to 16 processes on however many
/// CPUs the machine has).
fn queue_scaling(c: &mut Criterion) {
    let name = "queue_scaling_8B";
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    for p in [1u64, 2, 4, 8] {
        contender(&mut g, name, &format!("{p}p_{p}c"), |n| {
            mp_queue_scaling(p, n)
        });
    }
    g.finish();
}

/// Processes blocked on the idle queue.
const IDLE_PEERS: usize = 64;

/// Per idle window: (window, CPU time of all peers, their voluntary
/// context switches), summed over every sample.
static IDLE: StdMutex<(Duration, Duration, u64)> =
    StdMutex::new((Duration::ZERO, Duration::ZERO, 0));

/// CPU time (nanosecond-exact, from the scheduler's accounting) and
/// voluntary context switches of `pid` so far, from procfs.
fn proc_usage(pid: u32) -> (Duration, u64) {
    let on_cpu_ns = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let vcs = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (Duration::from_nanos(on_cpu_ns), vcs)
}

/// The idle cost of a queue: `IDLE_PEERS` processes blocked in
/// `recv_timeout` on an empty `Queue` (default spin, then sleep). One
/// iteration is 100 ms of idle time; the CPU time and wake-ups of all
/// peers over the window are summed for the summary.
fn mp_queue_idle(n: u64) -> Duration {
    let (tx, rx) = multiproc::queue::channel::<[u8; 8]>(64).expect("queue");
    let ctl = Ctl::new();
    let kids: Vec<Process> = (0..IDLE_PEERS)
        .map(|_| {
            let (rx, c) = (rx.clone(), ctl.clone());
            fork(move || {
                c.ready().fetch_add(1, Ordering::Release);
                let m = rx.recv_timeout(STALL).map_err(|e| e.to_string())?;
                (seq_of(&m) == STOP)
                    .then_some(())
                    .ok_or_else(|| "not a stop message".to_string())
            })
        })
        .collect();
    drop(rx);
    let refs: Vec<&Process> = kids.iter().collect();
    wait_for(ctl.ready(), IDLE_PEERS as u64, &refs);
    // Past every spin phase: all asleep.
    std::thread::sleep(Duration::from_millis(50));
    let usage = |kids: &[Process]| {
        kids.iter().fold((Duration::ZERO, 0), |(t, v), k| {
            let (kt, kv) = proc_usage(k.pid());
            (t + kt, v + kv)
        })
    };
    let before = usage(&kids);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(100) * n as u32);
    let window = start.elapsed();
    let after = usage(&kids);
    for _ in 0..IDLE_PEERS {
        tx.send_timeout(STOP.to_le_bytes(), STALL).expect("stop");
    }
    kids.iter().for_each(join);
    let mut idle = IDLE.lock().unwrap();
    idle.0 += window;
    idle.1 += after.0.saturating_sub(before.0);
    idle.2 += after.1.saturating_sub(before.1);
    window
}

fn queue_idle(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_idle");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    g.bench_function(format!("{IDLE_PEERS}_blocked_receivers"), |b| {
        b.iter_custom(mp_queue_idle)
    });
    g.finish();
}

// --- locked counter --------------------------------------------------------------

/// Two forked children each do `n` increments of one shared counter
/// through `inc`, from a common go signal; returns half the elapsed time
/// (criterion counts `n` iterations; 2n increments happened). `check`
/// returns the counter at the end, which must be 2n.
fn two_incrementers(
    n: u64,
    inc: impl Fn() -> Result<(), String> + Send + Clone + 'static,
    check: impl FnOnce() -> u64,
) -> Duration {
    let ctl = Ctl::new();
    let children: Vec<Process> = (0..2)
        .map(|_| {
            let (c, inc) = (ctl.clone(), inc.clone());
            fork(move || {
                c.ready().fetch_add(1, Ordering::AcqRel);
                let start = Instant::now();
                while c.go().load(Ordering::Acquire) == 0 {
                    if start.elapsed() > STALL {
                        return Err("no go signal".into());
                    }
                    std::hint::spin_loop();
                }
                for _ in 0..n {
                    inc()?;
                }
                c.done().fetch_add(1, Ordering::AcqRel);
                Ok(())
            })
        })
        .collect();
    let refs: Vec<&Process> = children.iter().collect();
    wait_for(ctl.ready(), 2, &refs);
    let start = Instant::now();
    ctl.go().store(1, Ordering::Release);
    wait_for(ctl.done(), 2, &refs);
    let el = start.elapsed();
    children.iter().for_each(join);
    assert_eq!(check(), 2 * n, "increments lost");
    el / 2
}

fn lc_mutex(n: u64) -> Duration {
    let m = multiproc::Mutex::<u64>::new(0).expect("mutex");
    let m2 = m.clone();
    two_incrementers(
        n,
        move || {
            *m2.lock().map_err(|_| "poisoned")? += 1;
            Ok(())
        },
        move || *m.lock().expect("lock"),
    )
}

fn lc_value(n: u64) -> Duration {
    let v = multiproc::Value::<u64>::new(0).expect("value");
    let v2 = v.clone();
    two_incrementers(
        n,
        move || v2.update(|x| *x += 1).map_err(|_| "poisoned".to_string()),
        move || v.get().expect("get"),
    )
}

/// A process-shared pthread mutex and its counter in one shared mapping.
fn lc_pthread(n: u64) -> Duration {
    let size = std::mem::size_of::<libc::pthread_mutex_t>();
    let map = Map::new(256);
    let mutex = map.ptr.cast::<libc::pthread_mutex_t>();
    let counter_off = size.next_multiple_of(64);
    // SAFETY: `mutex` points at zeroed, suitably aligned shared memory
    // (mmap is page-aligned) that nothing else uses yet; the attribute is
    // initialised before use and destroyed after.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
        assert_eq!(
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
            0
        );
        assert_eq!(libc::pthread_mutex_init(mutex, &attr), 0);
        libc::pthread_mutexattr_destroy(&mut attr);
    }
    let m2 = Arc::clone(&map);
    two_incrementers(
        n,
        move || {
            let mutex = m2.ptr.cast::<libc::pthread_mutex_t>();
            // SAFETY: an initialised process-shared mutex; the counter is
            // only touched while it is held.
            unsafe {
                if libc::pthread_mutex_lock(mutex) != 0 {
                    return Err("pthread_mutex_lock".into());
                }
                *m2.ptr.add(counter_off).cast::<u64>() += 1;
                libc::pthread_mutex_unlock(mutex);
            }
            Ok(())
        },
        || {
            // SAFETY: both children exited; nobody else touches it.
            unsafe { *map.ptr.add(counter_off).cast::<u64>() }
        },
    )
}

fn locked_counter(c: &mut Criterion) {
    let name = "locked_counter";
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    contender(&mut g, name, "multiproc_mutex", lc_mutex);
    contender(&mut g, name, "multiproc_value", lc_value);
    contender(&mut g, name, "pthread_shared_mutex", lc_pthread);
    g.finish();
}

// --- summary and Python ----------------------------------------------------------

fn summary() {
    let totals = TOTALS.lock().unwrap();
    if totals.is_empty() && IDLE.lock().unwrap().0.is_zero() {
        return;
    }
    eprintln!("\n=== ipc summary (all samples: total iterations / total time) ===");
    for (key, (iters, el)) in totals.iter() {
        let rate = *iters as f64 / el.as_secs_f64().max(1e-12);
        let extra = if key.starts_with("queue_1MiB") {
            format!(" ({:.2} GB/s)", rate * (1 << 20) as f64 / 1e9)
        } else if key.starts_with("round_trip") {
            format!(" (mean {:.2} us)", 1e6 / rate)
        } else {
            String::new()
        };
        eprintln!("ipc {key}: {rate:.0} /s{extra}");
    }
    for (name, p50, p99) in LATENCIES.lock().unwrap().iter() {
        eprintln!("ipc round_trip {name}: p50 {p50:.2} us, p99 {p99:.2} us");
    }
    let (window, cpu, wakes) = *IDLE.lock().unwrap();
    if !window.is_zero() {
        let secs = window.as_secs_f64();
        eprintln!(
            "ipc queue_idle {IDLE_PEERS} blocked receivers: {:.3}% of one CPU, {:.0} wake-ups/s (over {secs:.1} s)",
            100.0 * cpu.as_secs_f64() / secs,
            wakes as f64 / secs
        );
    }
}

fn python() {
    if std::env::var_os("IPC_BENCH_SKIP_PYTHON").is_some() {
        eprintln!("python multiprocessing: skipped (IPC_BENCH_SKIP_PYTHON set)");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/pep371.py");
    match std::process::Command::new("python3")
        .args([script, "--only", "ipc", "--quick"])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            eprintln!("=== python multiprocessing (pep371.py --only ipc --quick) ===");
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => print_python(&v),
                Err(_) => eprintln!("python: {}", text.trim()),
            }
        }
        Ok(out) => eprintln!(
            "python multiprocessing: skipped (pep371.py failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("python multiprocessing: skipped (no python3: {e})"),
    }
}

/// Prints every numeric leaf of the script's JSON as `python <path>: <v>`.
fn print_python(v: &serde_json::Value) {
    fn walk(prefix: &str, v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, x);
                }
            }
            serde_json::Value::Number(n) => eprintln!("python {prefix}: {n}"),
            serde_json::Value::String(s) => eprintln!("python {prefix}: {s}"),
            _ => {}
        }
    }
    walk("", v);
}

criterion_group!(
    benches,
    queue_8b,
    queue_64b,
    queue_4kib,
    queue_1mib,
    pipes,
    round_trip,
    locked_counter,
    queue_scaling,
    queue_idle
);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
    // Only when benchmarks ran (not `--list`, not a filtered-out run).
    if !TOTALS.lock().unwrap().is_empty() {
        python();
    }
}
