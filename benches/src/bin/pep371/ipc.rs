//! The IPC figures, multiproc side: the API a user calls (`Queue`, the
//! byte queue, a one-way `Pipe`, the SPSC channel, `Mutex`), used by this
//! process and a child forked with [`multiproc::Process`]; each figure's
//! `what` names the call it measures. The transfer loops are the ones the
//! criterion `ipc` bench runs ([`multiproc_benches::transfer`]).
//!
//! | key | what moves | multiproc API | Python peer |
//! |---|---|---|---|
//! | `queue_8B`, `queue_64B` | `[u8; N]` messages, parent to child | `multiproc::Queue<[u8; N]>` (`queue::channel`), 1 024 slots | `Queue(maxsize=1024)` of `bytes` |
//! | `queue_4KiB`, `queue_1MiB` | byte messages, copied in and out | `queue::bytes_channel`, 4 MiB: `send`, `recv_into` | same |
//! | `queue_1MiB_zero_copy` | 1 MiB messages written in place (`send_with`) and read in place (`recv_with`): each side touches every byte once, nothing is copied | `queue::bytes_channel`, 4 MiB | `Queue`, 1 MiB (copies) |
//! | `pipe_8B`, `pipe_4KiB` | byte messages | one-way `Pipe`, 64 KiB ring (a Linux pipe's buffer): `send_bytes`, `recv_bytes_into` | `Pipe(duplex=False)`, `send_bytes` |
//! | `round_trip_p50/p99` | a `u64` to the child and back | two `spsc::channel::<u64>`, default waiting | two `Queue`s |
//! | `start_join_*` | `Process` start + join, median | fork: a closure; spawn, forkserver: an entry point | `Process` |
//! | `start_join_bare_fork` | the floor under the fork row: `fork`, `_exit(0)` in the child, `waitpid`, median | `libc` | `os.fork`, `os._exit`, `os.waitpid` |
//! | `locked_counter` | `*lock() += 1` by 2 processes at once | `multiproc::Mutex<u64>` | `Lock` + `Value('q', lock=False)` |
//!
//! Every message carries its sequence number in its first 8 bytes; the
//! consumer checks the count and the sum of what it received against what
//! the producer says it sent, and fails the figure on a mismatch. Streams
//! run for a fixed time (the producer stops at a deadline) rather than a
//! fixed count, so the run length does not depend on the machine's speed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::raw::value::AtomicValue;
use multiproc::shm::SharedMemory;
use multiproc::{Pipe, Process, StartMethod};
use multiproc_benches::transfer::{
    self, BytesInPlaceRx, BytesInPlaceTx, BytesRx, BytesTx, PipeRx, PipeTx, QueueRx, QueueTx, Sink,
    Source, SpscRx, SpscTx, Tally,
};

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
pub(crate) const FIGURES: [FigureSpec; 14] = [
    fig("queue_8B_msgs_per_s", "queue_8B_msgs_per_s", "queue 8 B", "multiproc::Queue<[u8; 8]>, 1024 slots", Unit::MsgsPerS),
    fig("queue_64B_msgs_per_s", "queue_64B_msgs_per_s", "queue 64 B", "multiproc::Queue<[u8; 64]>, 1024 slots", Unit::MsgsPerS),
    fig("queue_4KiB_msgs_per_s", "queue_4KiB_msgs_per_s", "queue 4 KiB", "queue::bytes_channel 4 MiB, send/recv_into", Unit::MsgsPerS),
    fig("queue_1MiB_msgs_per_s", "queue_1MiB_msgs_per_s", "queue 1 MiB", "queue::bytes_channel 4 MiB, send/recv_into", Unit::MsgsPerS),
    fig("queue_1MiB_zero_copy_msgs_per_s", "queue_1MiB_msgs_per_s", "queue 1 MiB zero-copy", "queue::bytes_channel 4 MiB, send_with/recv_with", Unit::MsgsPerS),
    fig("pipe_8B_msgs_per_s", "pipe_8B_msgs_per_s", "pipe 8 B", "Pipe one-way 64 KiB, send_bytes/recv_bytes_into", Unit::MsgsPerS),
    fig("pipe_4KiB_msgs_per_s", "pipe_4KiB_msgs_per_s", "pipe 4 KiB", "Pipe one-way 64 KiB, send_bytes/recv_bytes_into", Unit::MsgsPerS),
    fig("round_trip_p50_us", "round_trip_p50_us", "round trip p50", "two spsc::channel<u64>", Unit::Us),
    fig("round_trip_p99_us", "round_trip_p99_us", "round trip p99", "two spsc::channel<u64>", Unit::Us),
    fig("start_join_fork_us", "start_join_fork_us", "start+join fork", "Process::new(closure), median", Unit::Us),
    fig("start_join_bare_fork_us", "start_join_bare_fork_us", "bare fork+waitpid", "libc fork/_exit/waitpid: the fork row's floor", Unit::Us),
    fig("start_join_forkserver_us", "start_join_forkserver_us", "start+join forkserver", "Process::entry, median", Unit::Us),
    fig("start_join_spawn_us", "start_join_spawn_us", "start+join spawn", "Process::entry, median", Unit::Us),
    fig("locked_counter_incr_per_s", "locked_counter_incr_per_s", "locked counter, 2 procs", "multiproc::Mutex<u64>", Unit::IncrPerS),
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
pub(crate) const STEPS: usize = 13;

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
    put("queue_4KiB_msgs_per_s", queue_bytes(4 << 10, d));
    step("queue 1 MiB");
    put("queue_1MiB_msgs_per_s", queue_bytes(1 << 20, d));
    step("queue 1 MiB zero-copy");
    put(
        "queue_1MiB_zero_copy_msgs_per_s",
        queue_bytes_in_place(1 << 20, d),
    );
    step("pipe 8 B");
    put("pipe_8B_msgs_per_s", pipe_bytes(8, d));
    step("pipe 4 KiB");
    put("pipe_4KiB_msgs_per_s", pipe_bytes(4 << 10, d));
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
        if method == StartMethod::Fork {
            step("bare fork+waitpid");
            put("start_join_bare_fork_us", bare_fork(n));
        }
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

/// A one-way stream from this process to a forked child through a
/// multiproc channel, with [`transfer`]'s loops.
///
/// `rx` moves into the child, which says it is ready, receives until the
/// end of the stream and checks its tally against the count announced in
/// a shared word. This process then sends `0, 1, ...` through `tx` (in
/// batches of `batch` between two looks at the clock) until `dur` has
/// passed, announces the count, *then* drops `tx`, which ends the stream
/// (so the child, which reads the announced count after it saw the end,
/// reads the final count: the end of a stream is a Release that the
/// consumer's Acquire pairs with). The rate is messages per second from
/// the first send until the child has checked the tally and exited.
fn stream<T, R>(dur: Duration, mut tx: T, mut rx: R, batch: u64) -> Result<f64, String>
where
    T: Source,
    R: Sink + Send + 'static,
{
    let ready = Word::new()?;
    let sent = Word::new()?;
    let (child_ready, child_sent) = (ready.clone(), sent.clone());
    let child = fork(move || {
        child_ready.get().store(1);
        let got = transfer::consume(&mut rx, None)?;
        let want = Tally::of(child_sent.get().load());
        if got == want {
            Ok(())
        } else {
            Err(format!("received {got:?}, sent {want:?}"))
        }
    })?;
    ready.wait_at_least(1, &child)?;
    let start = Instant::now();
    let n = match transfer::produce_until(&mut tx, start + dur, batch) {
        Ok(n) => n,
        Err(e) => {
            let _ = child.kill();
            let _ = child.join();
            return Err(e);
        }
    };
    sent.get().store(n);
    // The last sender leaves: the child drains, then sees the end.
    drop(tx);
    join(&child)?;
    let el = start.elapsed().as_secs_f64();
    Ok(n as f64 / el)
}

/// Queue figure: `[u8; N]` messages through `multiproc::Queue` (1024
/// slots, MPMC, with peer tracking), the receiver moved into the child.
fn queue_pod<const N: usize>(dur: Duration) -> Result<f64, String> {
    let (tx, rx) =
        multiproc::queue::channel::<[u8; N]>(QUEUE_SLOTS).map_err(|e| format!("queue: {e}"))?;
    stream(dur, QueueTx(tx), QueueRx(rx), 256)
}

/// How many messages of `size` bytes the producer sends between two looks
/// at the clock.
fn batch(size: usize) -> u64 {
    (64 << 10) / size.max(1) as u64 + 1
}

/// Queue figure for byte messages of `size`: `queue::bytes_channel` of
/// 4 MiB; the producer copies a ready message in (`send`), the consumer
/// copies it out (`recv_into`).
fn queue_bytes(size: usize, dur: Duration) -> Result<f64, String> {
    let (tx, rx) = multiproc::queue::bytes_channel(QUEUE_BYTES, size as u64)
        .map_err(|e| format!("bytes_channel: {e}"))?;
    stream(
        dur,
        BytesTx::new(tx, size),
        BytesRx::new(rx, size),
        batch(size),
    )
}

/// Zero-copy figure: the producer writes each message in place
/// (`send_with`, every byte), the consumer reads it in place (`recv_with`,
/// every 8-byte word folded into a checksum). Neither side copies.
fn queue_bytes_in_place(size: usize, dur: Duration) -> Result<f64, String> {
    let (tx, rx) = multiproc::queue::bytes_channel(QUEUE_BYTES, size as u64)
        .map_err(|e| format!("bytes_channel: {e}"))?;
    stream(
        dur,
        BytesInPlaceTx::new(tx, size),
        BytesInPlaceRx::new(rx, size, true),
        batch(size),
    )
}

/// Pipe figure for byte messages of `size`: a one-way `Pipe` whose ring is
/// a Linux pipe's 64 KiB; `send_bytes`, `recv_bytes_into`.
fn pipe_bytes(size: usize, dur: Duration) -> Result<f64, String> {
    let (w, r) = Pipe::new()
        .duplex(false)
        .ring_size(PIPE_BYTES)
        .max_message(size as u64)
        .open()
        .map_err(|e| format!("pipe: {e}"))?;
    stream(dur, PipeTx::new(w, size), PipeRx::new(r, size), batch(size))
}

/// Round trip: a `u64` to the child through one `spsc::channel`, back
/// through another (default waiting: spin, then sleep), with [`transfer`]'s
/// `echo` and `trip`; after 100 warm-up trips, up to `n` samples (at most
/// `cap` of sampling). Returns (p50, p99) in microseconds.
fn round_trip(n: usize, cap: Duration) -> Result<(f64, f64), String> {
    const SLOTS: u64 = 64;
    let spsc = || {
        multiproc::spsc::channel::<u64>(SLOTS)
            .map(|(tx, rx)| (SpscTx(tx), SpscRx(rx)))
            .map_err(|e| format!("spsc: {e}"))
    };
    let ((mut tx, mut c_rx), (mut c_tx, mut rx)) = (spsc()?, spsc()?);
    let ready = Word::new()?;
    let c_ready = ready.clone();
    let child = fork(move || {
        c_ready.get().store(1);
        transfer::echo(&mut c_rx, &mut c_tx, None)
    })?;
    ready.wait_at_least(1, &child)?;
    let mut trip = |i: u64| -> Result<Duration, String> {
        let t = Instant::now();
        transfer::trip(&mut tx, &mut rx, i)?;
        Ok(t.elapsed())
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
    // The end of the stream: the child's echo returns.
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
    median_us(n, once)
}

/// The median of `n` samples of `once` (after one warm-up call), in
/// microseconds.
fn median_us(n: usize, once: impl Fn() -> Result<Duration, String>) -> Result<f64, String> {
    once()?;
    let mut samples = (0..n.max(1))
        .map(|_| once())
        .collect::<Result<Vec<_>, _>>()?;
    samples.sort_unstable();
    Ok(samples[samples.len() / 2].as_secs_f64() * 1e6)
}

/// Median time of a bare `fork` whose child calls `_exit(0)` at once, plus
/// the parent's `waitpid`, in microseconds: what no start method can beat
/// in this process (its page tables are copied either way), measured right
/// after the fork row so that both see the same process.
fn bare_fork(n: usize) -> Result<f64, String> {
    let once = || -> Result<Duration, String> {
        let t = Instant::now();
        // SAFETY: the child only calls `_exit`, which is async-signal-safe,
        // so it touches no lock another thread of the parent may hold.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ends the child at once, running no destructor or
            // atexit handler of the parent's state.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        Ok(t.elapsed())
    };
    median_us(n, once)
}

/// Locked counter: two forked children each do `*m.lock() += 1` on one
/// `multiproc::Mutex<u64>` as fast as they can, from a go signal until a stop signal
/// `dur` later. Increments per second, both together.
fn locked_counter(dur: Duration) -> Result<f64, String> {
    let m = multiproc::Mutex::<u64>::new(0).map_err(|e| format!("mutex: {e}"))?;
    let (ready, go, stop, done) = (Word::new()?, Word::new()?, Word::new()?, Word::new()?);
    let children = (0..2)
        .map(|_| {
            let (m, ready, go, stop, done) = (
                m.clone(),
                ready.clone(),
                go.clone(),
                stop.clone(),
                done.clone(),
            );
            fork(move || {
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
    fn figure_keys_are_unique() {
        let mut keys: Vec<_> = FIGURES.iter().map(|f| f.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), FIGURES.len());
    }
}
