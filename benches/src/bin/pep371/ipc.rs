//! The IPC figures, multiproc side: `multiproc-core` structures built in
//! [`SharedMemory::anonymous`] mappings, used by this process and a child
//! forked with [`multiproc::Process`] (the std layer's `Queue` and `Pipe`
//! do not exist yet, so each figure names the structure it measures).
//!
//! | key | what moves | multiproc structure | Python peer |
//! |---|---|---|---|
//! | `queue_8B`, `queue_64B` | `[u8; N]` messages, parent to child | `multiproc::Queue<[u8; N]>` (an `MpmcRing`), 1 024 slots | `Queue(maxsize=1024)` of `bytes` |
//! | `queue_4KiB`, `queue_1MiB` | byte messages, copied in and out | `ByteRing`, 4 MiB | same |
//! | `queue_1MiB_zero_copy` | 1 MiB frames written in place (`reserve`) and read in place (`read`): each side touches every byte once, nothing is copied | `ByteRing`, 4 MiB | `Queue`, 1 MiB (copies) |
//! | `pipe_8B` | `[u8; 8]` | `SpscRing<[u8; 8]>`, 8 192 slots (64 KiB, a Linux pipe's buffer) | `Pipe(duplex=False)`, `send_bytes` |
//! | `pipe_4KiB` | 4 KiB frames, copied | `ByteRing`, 64 KiB | same |
//! | `round_trip_p50/p99` | a `u64` to the child and back | two `SpscRing<u64>` | two `Queue`s |
//! | `start_join_*` | `Process` start + join, median | fork: a closure; spawn, forkserver: an entry point | `Process` |
//! | `locked_counter` | `*lock() += 1` by 2 processes at once | `mutex::Mutex<u64>` | `Lock` + `Value('q', lock=False)` |
//!
//! Every message carries its sequence number in its first 8 bytes; the
//! consumer checks the count and the sum of what it received against what
//! the producer says it sent, and fails the figure on a mismatch. Streams
//! run for a fixed time (the producer stops at a deadline) rather than a
//! fixed count, so the run length does not depend on the machine's speed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::raw::bytering::{ByteRing, RecvError};
use multiproc::raw::mutex::Mutex;
use multiproc::raw::spsc::{PopError, SpscRing};
use multiproc::raw::value::AtomicValue;
use multiproc::queue::RecvTimeoutError;
use multiproc::shm::SharedMemory;
use multiproc::{Process, StartMethod};

use crate::progress::Progress;

/// The entry point that spawn and forkserver children run.
pub(crate) const NOOP_ENTRY: &str = "pep371-noop";

/// The no-op entry point ([`NOOP_ENTRY`]).
pub(crate) fn noop_entry(_args: &[u8]) -> i32 {
    0
}

/// How long a blocked operation waits before the figure is failed: a peer
/// that died or hung never hangs the run.
const STALL: Duration = Duration::from_secs(10);

/// Queue capacity in messages, as the Python script's `Queue(maxsize=1024)`.
const QUEUE_SLOTS: u64 = 1024;
/// Byte ring for queued 4 KiB and 1 MiB messages.
const QUEUE_BYTES: u64 = 4 << 20;
/// Pipe buffer: a Linux pipe's 64 KiB.
const PIPE_BYTES: u64 = 64 << 10;

/// How much work each figure does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// How long each throughput stream and the locked counter run.
    pub(crate) stream: Duration,
    /// Round trips to sample (at most; see `round_trip_cap`).
    pub(crate) round_trips: usize,
    /// Longest time spent sampling round trips.
    pub(crate) round_trip_cap: Duration,
    /// Start + join samples for fork, forkserver and spawn.
    pub(crate) starts: [usize; 3],
}

impl Budget {
    pub(crate) fn new(quick: bool) -> Budget {
        if quick {
            Budget {
                stream: Duration::from_millis(150),
                round_trips: 10_000,
                round_trip_cap: Duration::from_millis(300),
                starts: [50, 25, 10],
            }
        } else {
            Budget {
                stream: Duration::from_secs(1),
                round_trips: 200_000,
                round_trip_cap: Duration::from_secs(3),
                starts: [200, 100, 20],
            }
        }
    }
}

/// What a figure measures, and how to print it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FigureSpec {
    /// Key in the JSON output (and in the Python script's).
    pub(crate) key: &'static str,
    /// The Python figure it is compared with.
    pub(crate) python_key: &'static str,
    /// Short name.
    pub(crate) label: &'static str,
    /// What multiproc uses for it.
    pub(crate) what: &'static str,
    /// Unit of the value.
    pub(crate) unit: Unit,
}

/// The unit of a figure, which also says which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Unit {
    /// Messages per second: higher is better.
    MsgsPerS,
    /// Increments per second: higher is better.
    IncrPerS,
    /// Pool tasks per second: higher is better.
    TasksPerS,
    /// Microseconds: lower is better.
    Us,
}

impl Unit {
    pub(crate) fn higher_is_better(self) -> bool {
        !matches!(self, Unit::Us)
    }
}

/// Every IPC figure, in the order they are measured and printed.
#[rustfmt::skip]
pub(crate) const FIGURES: [FigureSpec; 13] = [
    fig("queue_8B_msgs_per_s", "queue_8B_msgs_per_s", "queue 8 B", "multiproc::Queue<[u8; 8]>, 1024 slots", Unit::MsgsPerS),
    fig("queue_64B_msgs_per_s", "queue_64B_msgs_per_s", "queue 64 B", "multiproc::Queue<[u8; 64]>, 1024 slots", Unit::MsgsPerS),
    fig("queue_4KiB_msgs_per_s", "queue_4KiB_msgs_per_s", "queue 4 KiB", "ByteRing 4 MiB, copy in/out", Unit::MsgsPerS),
    fig("queue_1MiB_msgs_per_s", "queue_1MiB_msgs_per_s", "queue 1 MiB", "ByteRing 4 MiB, copy in/out", Unit::MsgsPerS),
    fig("queue_1MiB_zero_copy_msgs_per_s", "queue_1MiB_msgs_per_s", "queue 1 MiB zero-copy", "ByteRing 4 MiB, reserve/read in place", Unit::MsgsPerS),
    fig("pipe_8B_msgs_per_s", "pipe_8B_msgs_per_s", "pipe 8 B", "SpscRing<[u8; 8]>, 64 KiB", Unit::MsgsPerS),
    fig("pipe_4KiB_msgs_per_s", "pipe_4KiB_msgs_per_s", "pipe 4 KiB", "ByteRing 64 KiB, copy in/out", Unit::MsgsPerS),
    fig("round_trip_p50_us", "round_trip_p50_us", "round trip p50", "two SpscRing<u64>", Unit::Us),
    fig("round_trip_p99_us", "round_trip_p99_us", "round trip p99", "two SpscRing<u64>", Unit::Us),
    fig("start_join_fork_us", "start_join_fork_us", "start+join fork", "Process::new(closure), median", Unit::Us),
    fig("start_join_forkserver_us", "start_join_forkserver_us", "start+join forkserver", "Process::entry, median", Unit::Us),
    fig("start_join_spawn_us", "start_join_spawn_us", "start+join spawn", "Process::entry, median", Unit::Us),
    fig("locked_counter_incr_per_s", "locked_counter_incr_per_s", "locked counter, 2 procs", "mutex::Mutex<u64>", Unit::IncrPerS),
];

const fn fig(
    key: &'static str,
    python_key: &'static str,
    label: &'static str,
    what: &'static str,
    unit: Unit,
) -> FigureSpec {
    FigureSpec {
        key,
        python_key,
        label,
        what,
        unit,
    }
}

/// One measured figure.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) spec: FigureSpec,
    /// The value, or why it could not be measured.
    pub(crate) value: Result<f64, String>,
}

/// Steps [`run_all`] reports to the progress line.
pub(crate) const STEPS: usize = 12;

/// Measures every figure, reporting each step to `progress`.
pub(crate) fn run_all(budget: &Budget, progress: &mut Progress) -> Vec<Measured> {
    let d = budget.stream;
    let mut out: Vec<Measured> = Vec::new();
    let mut put = |key: &str, value: Result<f64, String>| {
        let spec = *FIGURES.iter().find(|f| f.key == key).expect("known key");
        out.push(Measured { spec, value });
    };
    let mut step = |label: &str| progress.step(&format!("multiproc ipc: {label}"));

    step("queue 8 B");
    put("queue_8B_msgs_per_s", queue_pod::<8>(d));
    step("queue 64 B");
    put("queue_64B_msgs_per_s", queue_pod::<64>(d));
    step("queue 4 KiB");
    put("queue_4KiB_msgs_per_s", frames(QUEUE_BYTES, 4 << 10, d));
    step("queue 1 MiB");
    put("queue_1MiB_msgs_per_s", frames(QUEUE_BYTES, 1 << 20, d));
    step("queue 1 MiB zero-copy");
    put(
        "queue_1MiB_zero_copy_msgs_per_s",
        frames_in_place(QUEUE_BYTES, 1 << 20, d),
    );
    step("pipe 8 B");
    put("pipe_8B_msgs_per_s", pipe_pod(d));
    step("pipe 4 KiB");
    put("pipe_4KiB_msgs_per_s", frames(PIPE_BYTES, 4 << 10, d));
    step("round trip");
    match round_trip(budget.round_trips, budget.round_trip_cap) {
        Ok((p50, p99)) => {
            put("round_trip_p50_us", Ok(p50));
            put("round_trip_p99_us", Ok(p99));
        }
        Err(e) => {
            put("round_trip_p50_us", Err(e.clone()));
            put("round_trip_p99_us", Err(e));
        }
    }
    let methods = [
        (StartMethod::Fork, "start_join_fork_us"),
        (StartMethod::Forkserver, "start_join_forkserver_us"),
        (StartMethod::Spawn, "start_join_spawn_us"),
    ];
    for ((method, key), n) in methods.into_iter().zip(budget.starts) {
        step(&format!("start+join {method}"));
        put(key, start_join(method, n));
    }
    step("locked counter");
    put("locked_counter_incr_per_s", locked_counter(d));
    out
}

// --- shared control words ----------------------------------------------------

/// A `u64` in its own anonymous shared mapping, seen by forked children.
#[derive(Clone)]
struct Word(Arc<SharedMemory>);

impl Word {
    fn new() -> Result<Word, String> {
        let shm = segment(AtomicValue::<u64>::memory_size().ok_or("AtomicValue size")?)?;
        AtomicValue::<u64>::create(shm.region(), 0).map_err(|e| format!("AtomicValue: {e}"))?;
        Ok(Word(shm))
    }

    fn get(&self) -> AtomicValue<'_, u64> {
        // The creator published it before any clone of `self` existed.
        AtomicValue::attach(self.0.region()).expect("the word was created")
    }

    /// Waits until the word is at least `v`, or fails after `STALL` or when
    /// `child` ended.
    fn wait_at_least(&self, v: u64, child: &Process) -> Result<(), String> {
        let word = self.get();
        let start = Instant::now();
        let mut polls = 0u32;
        while word.load() < v {
            polls += 1;
            if polls % 1024 == 0 {
                if !child.is_alive() {
                    return Err(child_error(child));
                }
                if start.elapsed() > STALL {
                    let _ = child.kill();
                    return Err("the child did not get ready in time".into());
                }
            }
            std::thread::yield_now();
        }
        Ok(())
    }
}

fn segment(size: usize) -> Result<Arc<SharedMemory>, String> {
    SharedMemory::anonymous(size)
        .map(Arc::new)
        .map_err(|e| format!("shared memory: {e}"))
}

fn child_error(child: &Process) -> String {
    match child.join() {
        Ok(s) => format!("the child ended early ({s})"),
        Err(e) => format!("the child failed: {e}"),
    }
}

fn fork<F>(f: F) -> Result<Process, String>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    Process::new(f)
        .start_method(StartMethod::Fork)
        .start()
        .map_err(|e| format!("starting the child: {e}"))
}

fn join(child: &Process) -> Result<(), String> {
    match child.join() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("the child ended with {s}")),
        Err(e) => Err(format!("the child failed: {e}")),
    }
}

/// What a stream's consumer checks: the number of messages and the wrapping
/// sum of their sequence numbers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    count: u64,
    sum: u64,
}

impl Tally {
    fn add(&mut self, seq: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(seq);
    }

    /// What a producer that sent `0..count` sent.
    fn of(count: u64) -> Tally {
        let sum = if count % 2 == 0 {
            (count / 2).wrapping_mul(count.wrapping_sub(1))
        } else {
            count.wrapping_mul(count.wrapping_sub(1) / 2)
        };
        Tally { count, sum }
    }
}

/// A one-way stream from this process to a forked child.
///
/// `consume` runs in the child: it attaches to the structure in the segment,
/// calls `ready` once it holds its role, receives until the end of the
/// stream and returns its tally. `produce` runs here once the child is
/// ready: it sends `0, 1, ...` until the deadline, calls `announce` with
/// the number sent, *then* ends the stream (so the child, which reads the
/// announced count after it saw the end, reads the final count: the end of
/// a stream is a Release that the consumer's Acquire pairs with), and
/// returns the count. The rate is messages per second from the start of
/// `produce` until the child has checked the tally and exited.
fn stream<C, P>(
    seg: Arc<SharedMemory>,
    dur: Duration,
    consume: C,
    produce: P,
) -> Result<f64, String>
where
    C: FnOnce(&SharedMemory, &dyn Fn()) -> Result<Tally, String> + Send + 'static,
    P: FnOnce(&SharedMemory, Instant, &dyn Fn(u64)) -> Result<u64, String>,
{
    let ready = Word::new()?;
    let sent = Word::new()?;
    let (child_seg, child_ready, child_sent) = (Arc::clone(&seg), ready.clone(), sent.clone());
    let child = fork(move || {
        let got = consume(&child_seg, &|| child_ready.get().store(1))?;
        let want = Tally::of(child_sent.get().load());
        if got == want {
            Ok(())
        } else {
            Err(format!("received {got:?}, sent {want:?}"))
        }
    })?;
    ready.wait_at_least(1, &child)?;
    let start = Instant::now();
    let n = match produce(&seg, start + dur, &|n| sent.get().store(n)) {
        Ok(n) => n,
        Err(e) => {
            let _ = child.kill();
            let _ = child.join();
            return Err(e);
        }
    };
    join(&child)?;
    let el = start.elapsed().as_secs_f64();
    Ok(n as f64 / el)
}

/// Queue figure: `[u8; N]` messages through `multiproc::Queue` (an
/// `MpmcRing` of 1024 slots in its own segment, with peer tracking), the
/// receiver moved into the forked child.
fn queue_pod<const N: usize>(dur: Duration) -> Result<f64, String> {
    type Msg<const N: usize> = [u8; N];
    let (tx, rx) =
        multiproc::queue::channel::<Msg<N>>(QUEUE_SLOTS).map_err(|e| format!("queue: {e}"))?;
    // The stream's own segment is unused here: the queue owns its memory.
    stream(
        segment(4096)?,
        dur,
        move |_, ready| {
            ready();
            let mut t = Tally::default();
            loop {
                match rx.recv_timeout(STALL) {
                    Ok(m) => t.add(seq_of(&m)),
                    Err(RecvTimeoutError::Disconnected) => return Ok(t),
                    Err(e) => return Err(format!("recv: {e}")),
                }
            }
        },
        move |_, deadline, announce| {
            let mut i = 0u64;
            loop {
                for _ in 0..256 {
                    let mut m = [0u8; N];
                    m[..8].copy_from_slice(&i.to_le_bytes());
                    tx.send_timeout(m, STALL)
                        .map_err(|e| format!("send: {e}"))?;
                    i += 1;
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            announce(i);
            // The last sender leaves: the child drains, then sees Disconnected.
            drop(tx);
            Ok(i)
        },
    )
}

fn seq_of(m: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&m[..8]);
    u64::from_le_bytes(b)
}

/// Pipe figure: `[u8; 8]` through an `SpscRing` of 8192 slots (64 KiB).
fn pipe_pod(dur: Duration) -> Result<f64, String> {
    const SLOTS: u64 = PIPE_BYTES / 8;
    type Msg = [u8; 8];
    let seg = segment(SpscRing::<Msg>::memory_size(SLOTS).ok_or("ring size")?)?;
    SpscRing::<Msg>::create(seg.region(), SLOTS).map_err(|e| format!("ring: {e}"))?;
    stream(
        seg,
        dur,
        |seg, ready| {
            let ring = SpscRing::<Msg>::attach(seg.region()).map_err(|e| e.to_string())?;
            let mut rx = ring.consumer().map_err(|e| e.to_string())?;
            ready();
            let mut t = Tally::default();
            loop {
                match rx.pop_timeout(STALL) {
                    Ok(m) => t.add(u64::from_le_bytes(m)),
                    Err(PopError::Disconnected) => return Ok(t),
                    Err(e) => return Err(format!("pop: {e}")),
                }
            }
        },
        |seg, deadline, announce| {
            let ring = SpscRing::<Msg>::attach(seg.region()).map_err(|e| e.to_string())?;
            let mut tx = ring.producer().map_err(|e| e.to_string())?;
            let mut i = 0u64;
            loop {
                for _ in 0..256 {
                    tx.push_timeout(i.to_le_bytes(), STALL)
                        .map_err(|e| format!("push: {e}"))?;
                    i += 1;
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            announce(i);
            drop(tx);
            Ok(i)
        },
    )
}

/// A byte ring of `capacity` bytes in a fresh segment, for frames of up to
/// `max` bytes.
fn byte_ring(capacity: u64, max: usize) -> Result<Arc<SharedMemory>, String> {
    let seg = segment(ByteRing::memory_size(capacity).ok_or("ring size")?)?;
    ByteRing::create(seg.region(), capacity, max as u64).map_err(|e| format!("ring: {e}"))?;
    Ok(seg)
}

/// How many messages of `size` bytes the producer sends between two looks
/// at the clock.
fn batch(size: usize) -> u64 {
    (64 << 10) / size.max(1) as u64 + 1
}

/// Queue or pipe figure for byte messages of `size`: the producer copies a
/// ready message in (`send`), the consumer copies it out (`recv_into`).
fn frames(capacity: u64, size: usize, dur: Duration) -> Result<f64, String> {
    let seg = byte_ring(capacity, size)?;
    stream(
        seg,
        dur,
        move |seg, ready| {
            let ring = ByteRing::attach(seg.region()).map_err(|e| e.to_string())?;
            let mut rx = ring.receiver().map_err(|e| e.to_string())?;
            ready();
            let mut buf = vec![0u8; size];
            let mut t = Tally::default();
            loop {
                match rx.recv_into_timeout(&mut buf, STALL) {
                    Ok(n) if n == size => t.add(seq_of(&buf)),
                    Ok(n) => return Err(format!("a frame of {n} bytes, not {size}")),
                    Err(RecvError::Disconnected) => return Ok(t),
                    Err(e) => return Err(format!("recv: {e}")),
                }
            }
        },
        |seg, deadline, announce| {
            let ring = ByteRing::attach(seg.region()).map_err(|e| e.to_string())?;
            let mut tx = ring.sender().map_err(|e| e.to_string())?;
            let mut msg = vec![b'x'; size];
            let mut i = 0u64;
            loop {
                for _ in 0..batch(size) {
                    msg[..8].copy_from_slice(&i.to_le_bytes());
                    tx.send_timeout(&msg, STALL)
                        .map_err(|e| format!("send: {e}"))?;
                    i += 1;
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            announce(i);
            drop(tx);
            Ok(i)
        },
    )
}

/// Zero-copy figure: the producer writes each frame in place (`reserve`,
/// every byte, then `commit`), the consumer reads it in place (`read`,
/// every 8-byte word folded into a checksum). Neither side copies.
fn frames_in_place(capacity: u64, size: usize, dur: Duration) -> Result<f64, String> {
    let seg = byte_ring(capacity, size)?;
    stream(
        seg,
        dur,
        move |seg, ready| {
            let ring = ByteRing::attach(seg.region()).map_err(|e| e.to_string())?;
            let mut rx = ring.receiver().map_err(|e| e.to_string())?;
            ready();
            let mut t = Tally::default();
            loop {
                match rx.read_timeout(STALL) {
                    Ok(frame) => {
                        if frame.len() != size {
                            return Err(format!("a frame of {} bytes, not {size}", frame.len()));
                        }
                        let seq = seq_of(&frame);
                        if frame[size - 1] != seq as u8 {
                            return Err(format!("frame {seq} was not written in full"));
                        }
                        black_box(fold_words(&frame));
                        t.add(seq);
                    }
                    Err(RecvError::Disconnected) => return Ok(t),
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        },
        |seg, deadline, announce| {
            let ring = ByteRing::attach(seg.region()).map_err(|e| e.to_string())?;
            let mut tx = ring.sender().map_err(|e| e.to_string())?;
            let mut i = 0u64;
            loop {
                for _ in 0..batch(size) {
                    let mut w = tx
                        .reserve_timeout(size, STALL)
                        .map_err(|e| format!("reserve: {e}"))?;
                    w.fill(i as u8);
                    w[..8].copy_from_slice(&i.to_le_bytes());
                    w.commit();
                    i += 1;
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            announce(i);
            drop(tx);
            Ok(i)
        },
    )
}

/// Reads every 8-byte word of `bytes` (a stand-in for a consumer that uses
/// the message where it lies).
fn fold_words(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .fold(0, u64::wrapping_add)
}

/// Round trip: a `u64` to the child through one `SpscRing`, back through
/// another; after 100 warm-up trips, up to `n` samples (at most `cap` of
/// sampling). Returns (p50, p99) in microseconds.
fn round_trip(n: usize, cap: Duration) -> Result<(f64, f64), String> {
    const SLOTS: u64 = 64;
    let size = SpscRing::<u64>::memory_size(SLOTS).ok_or("ring size")?;
    let (ping, pong) = (segment(size)?, segment(size)?);
    SpscRing::<u64>::create(ping.region(), SLOTS).map_err(|e| format!("ring: {e}"))?;
    SpscRing::<u64>::create(pong.region(), SLOTS).map_err(|e| format!("ring: {e}"))?;
    let ready = Word::new()?;
    let (c_ping, c_pong, c_ready) = (Arc::clone(&ping), Arc::clone(&pong), ready.clone());
    let child = fork(move || {
        let ping = SpscRing::<u64>::attach(c_ping.region()).map_err(|e| e.to_string())?;
        let pong = SpscRing::<u64>::attach(c_pong.region()).map_err(|e| e.to_string())?;
        let mut rx = ping.consumer().map_err(|e| e.to_string())?;
        let mut tx = pong.producer().map_err(|e| e.to_string())?;
        c_ready.get().store(1);
        loop {
            match rx.pop_timeout(STALL) {
                Ok(v) => tx
                    .push_timeout(v, STALL)
                    .map_err(|e| format!("push: {e}"))?,
                Err(PopError::Disconnected) => return Ok(()),
                Err(e) => return Err(format!("pop: {e}")),
            }
        }
    })?;
    ready.wait_at_least(1, &child)?;
    let ping = SpscRing::<u64>::attach(ping.region()).map_err(|e| e.to_string())?;
    let pong = SpscRing::<u64>::attach(pong.region()).map_err(|e| e.to_string())?;
    let mut tx = ping.producer().map_err(|e| e.to_string())?;
    let mut rx = pong.consumer().map_err(|e| e.to_string())?;
    let mut trip = |i: u64| -> Result<Duration, String> {
        let t = Instant::now();
        tx.push_timeout(i, STALL)
            .map_err(|e| format!("push: {e}"))?;
        match rx.pop_timeout(STALL) {
            Ok(v) if v == i => Ok(t.elapsed()),
            Ok(v) => Err(format!("sent {i}, got {v} back")),
            Err(e) => Err(format!("pop: {e}")),
        }
    };
    let result = (|| {
        for i in 0..100 {
            trip(i)?;
        }
        let mut samples = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n as u64 {
            samples.push(trip(i)?);
            if i % 1024 == 0 && start.elapsed() > cap {
                break;
            }
        }
        Ok(samples)
    })();
    drop(tx);
    drop(rx);
    let mut samples = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.join();
            return Err(e);
        }
    };
    join(&child)?;
    samples.sort_unstable();
    let at = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
    Ok((at(50).as_secs_f64() * 1e6, at(99).as_secs_f64() * 1e6))
}

/// Median start + join time of a no-op child, in microseconds, over `n`
/// samples after one warm-up start (which also starts the fork server).
fn start_join(method: StartMethod, n: usize) -> Result<f64, String> {
    let once = || -> Result<Duration, String> {
        let t = Instant::now();
        let p = match method {
            StartMethod::Fork => Process::new(|| ()),
            _ => Process::entry(NOOP_ENTRY, Vec::new()),
        }
        .start_method(method)
        .start()
        .map_err(|e| format!("start: {e}"))?;
        join(&p)?;
        Ok(t.elapsed())
    };
    once()?;
    let mut samples = (0..n.max(1))
        .map(|_| once())
        .collect::<Result<Vec<_>, _>>()?;
    samples.sort_unstable();
    Ok(samples[samples.len() / 2].as_secs_f64() * 1e6)
}

/// Locked counter: two forked children each do `*m.lock() += 1` on one
/// `Mutex<u64>` as fast as they can, from a go signal until a stop signal
/// `dur` later. Increments per second, both together.
fn locked_counter(dur: Duration) -> Result<f64, String> {
    let seg = segment(Mutex::<u64>::memory_size().ok_or("mutex size")?)?;
    Mutex::<u64>::create(seg.region(), 0).map_err(|e| format!("mutex: {e}"))?;
    let (ready, go, stop, done) = (Word::new()?, Word::new()?, Word::new()?, Word::new()?);
    let children = (0..2)
        .map(|_| {
            let (seg, ready, go, stop, done) = (
                Arc::clone(&seg),
                ready.clone(),
                go.clone(),
                stop.clone(),
                done.clone(),
            );
            fork(move || {
                let m = Mutex::<u64>::attach(seg.region()).map_err(|e| e.to_string())?;
                let (go, stop) = (go.get(), stop.get());
                ready.get().fetch_add(1);
                let start = Instant::now();
                while go.load() == 0 {
                    if start.elapsed() > STALL {
                        return Err("no go signal".into());
                    }
                    std::hint::spin_loop();
                }
                let mut mine = 0u64;
                while stop.load() == 0 {
                    for _ in 0..64 {
                        *m.lock().map_err(|_| "the mutex is poisoned")? += 1;
                    }
                    mine += 64;
                }
                done.get().fetch_add(mine);
                Ok(())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let waited = children.iter().try_for_each(|c| ready.wait_at_least(2, c));
    if let Err(e) = waited {
        children.iter().for_each(|c| drop(c.kill()));
        return Err(e);
    }
    go.get().store(1);
    let start = Instant::now();
    std::thread::sleep(dur);
    stop.get().store(1);
    let el = start.elapsed().as_secs_f64();
    for c in &children {
        join(c)?;
    }
    let m = Mutex::<u64>::attach(seg.region()).map_err(|e| e.to_string())?;
    let total = *m.lock().map_err(|_| "the mutex is poisoned")?;
    let counted = done.get().load();
    if total != counted {
        return Err(format!(
            "the counter says {total}, the children counted {counted}"
        ));
    }
    Ok(total as f64 / el)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_of_matches_a_loop() {
        for n in [0u64, 1, 2, 3, 10, 1001] {
            let mut t = Tally::default();
            (0..n).for_each(|i| t.add(i));
            assert_eq!(Tally::of(n), t, "n = {n}");
        }
    }

    #[test]
    fn figure_keys_are_unique() {
        let mut keys: Vec<_> = FIGURES.iter().map(|f| f.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), FIGURES.len());
    }
}
