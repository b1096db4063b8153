//! A worker rank: it says HELLO, then serves chunks until the master says
//! STOP (or ABORT). Its one thread calls MPI and runs the chunks.
//!
//! Each chunk runs where it costs least. The rank times the items it runs
//! itself, per function: a chunk expected to take less than the inline
//! budget ([`Builder::inline_below`](super::Builder::inline_below)) runs in
//! the rank at once, with no trip through shared memory (the first chunk of
//! a function runs there until the budget is spent, which measures it); the
//! rest of a chunk goes to the rank's local pool as the bytes the master
//! sent, cut at item boundaries into pieces for its idle workers, and the
//! workers' encoded outcomes go back to the master as they are: the rank
//! decodes no result and encodes no item again. Without a local pool, the
//! rank runs every chunk itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mpi::point_to_point::{MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::master::Backoff;
use super::outbox::Outbox;
use super::runner::{Op, RankRunner};
use super::wire::{push_err, push_ok, tags, Hello, ResultHead, TaskHead};
use crate::pool::func::address_at;
use crate::pool::{Pool, TaskError};

/// The default inline budget: about the cost of a chunk's trip through the
/// local pool and back.
pub const DEFAULT_INLINE_BELOW: Duration = Duration::from_micros(100);

/// After this many chunks that a function's cost sends to the local pool,
/// the rank measures it again on the chunk's first items, and again after
/// twice as many each time it is still too slow (up to every
/// `MAX_REPROBE`): a costly item run in the rank holds the rank's other
/// chunks back.
const REPROBE: u32 = 8;
const MAX_REPROBE: u32 = 1024;

/// While its chunks run in the rank, the rank grants the master more
/// chunks in flight (see `wire`): as many as take this long together...
const QUEUED: Duration = Duration::from_millis(1);
/// ...and at most this many beyond its capacity.
const MAX_EXTRA: u32 = 256;

/// A RESULT message goes once it answers this many chunks (or holds
/// `REPLY_BYTES`, or its chunks took about a tenth of `QUEUED`), before the
/// rest of its TASK message has run: the master deals more while the rank
/// runs the rest (a costly chunk's outcomes go at once).
const REPLY_CHUNKS: u32 = 32;
const REPLY_BYTES: usize = 64 << 10;

/// The extra chunks in flight worth granting for chunks of `chunk_ns` run
/// in the rank.
fn extra_for(chunk_ns: f64) -> u32 {
    let n = QUEUED.as_nanos() as f64 / chunk_ns.max(1.0);
    (n as u32).min(MAX_EXTRA)
}

/// A chunk of one item expected to run in the rank is timed once in this
/// many (reading the clock costs as much as a trivial task).
const SAMPLE: u32 = 16;

/// What running a function's items in the rank costs.
struct Cost {
    /// Nanoseconds per item.
    ns: f64,
    /// The last sample.
    last: f64,
    /// Chunks sent to the local pool on this estimate...
    shipped: u32,
    /// ...and at which count the rank measures it again.
    probe_at: u32,
    /// Chunks of one item run in the rank untimed since the last sample.
    untimed: u32,
}

/// A chunk whose rest runs on the local pool.
struct Held {
    /// The RESULT message so far (the outcomes of the items run inline).
    out: Vec<u8>,
    /// Outcomes still to come from the local pool.
    waiting: u32,
    /// Items after those, which do not decode: they fail.
    undecodable: u32,
}

/// The rank's state while it serves.
struct Rank<'w> {
    world: &'w SimpleCommunicator,
    out: Outbox,
    pool: Option<Pool>,
    workers: usize,
    inline_below: Duration,
    /// The cost of each (rank runner, function)'s items, as measured when
    /// the rank ran them itself (a job or two at a time use the pool: a
    /// short list).
    cost: Vec<((u64, u64), Cost)>,
    /// Chunks on the local pool, by local job id.
    held: HashMap<u64, Held>,
    /// The local pool failed (FATAL sent): nothing more goes to it.
    broken: bool,
    /// The next RESULT message: outcomes of chunks answered since the last,
    /// and how many.
    reply: Vec<u8>,
    replies: u32,
}

impl Rank<'_> {
    fn send(&mut self, msg: Vec<u8>, tag: i32) {
        // A message too long for MPI fails its chunk's items instead.
        if let Err(e) = self.out.send(self.world, 0, tag, msg) {
            let _ = self.out.send(self.world, 0, tags::FATAL, e.into_bytes());
        }
    }

    fn fatal(&mut self, why: String) {
        if !self.broken {
            self.broken = true;
            self.send(why.into_bytes(), tags::FATAL);
        }
    }

    /// Sends the outcomes answered so far.
    fn flush_reply(&mut self) {
        self.replies = 0;
        if !self.reply.is_empty() {
            let msg = std::mem::take(&mut self.reply);
            self.send(msg, tags::RESULT);
        }
    }

    /// A chunk was answered in `reply`, granting `extra`: sends the reply
    /// if it is full, or its chunks took long enough (`extra` chunks take
    /// about `QUEUED`).
    fn answered(&mut self, extra: u32) {
        self.replies += 1;
        if self.replies >= REPLY_CHUNKS
            || self.replies.saturating_mul(10) >= extra
            || self.reply.len() >= REPLY_BYTES
        {
            self.flush_reply();
        }
    }

    /// Runs a chunk of a TASK: in the rank, on the local pool, or both.
    fn task(&mut self, head: &TaskHead, items: &[u8]) {
        // SAFETY: the master sent the offset of a `RankRunner` instance
        // (`mpi::Pool` takes it from a value of that type), and this rank
        // runs the master's executable (the fingerprint in HELLO matched,
        // else the master stopped at start), so the offset names that
        // function here.
        let runner: RankRunner =
            unsafe { std::mem::transmute::<usize, RankRunner>(address_at(head.runner)) };
        let mut out = std::mem::take(&mut self.reply);
        let at = ResultHead::start(head, &mut out);
        if self.pool.is_none() || self.broken {
            let t = Instant::now();
            runner(head.func, items, head.count, run_op(&mut out, None));
            let extra = extra_for(t.elapsed().as_nanos() as f64);
            ResultHead::set_grant(&mut out, at, extra);
            self.reply = out;
            self.answered(extra);
            return;
        }
        let key = (head.runner, head.func);
        let budget = self.inline_below;
        let ci = match self.cost.iter().position(|(k, _)| *k == key) {
            Some(i) => Some(i),
            None if budget.is_zero() => None,
            None => {
                // Not measured yet: run items until the budget is spent.
                let cost = Cost {
                    ns: f64::NAN,
                    last: f64::NAN,
                    shipped: 0,
                    probe_at: REPROBE,
                    untimed: 0,
                };
                self.cost.push((key, cost));
                Some(self.cost.len() - 1)
            }
        };
        // One item expected to fit runs untimed, but for a sample now and
        // then.
        if let Some(c) = ci.map(|i| &mut self.cost[i].1) {
            let fits = c.ns * f64::from(head.count) <= budget.as_nanos() as f64;
            if !budget.is_zero() && head.count == 1 && fits && c.untimed + 1 < SAMPLE {
                c.untimed += 1;
                runner(head.func, items, 1, run_op(&mut out, None));
                let extra = extra_for(c.ns);
                ResultHead::set_grant(&mut out, at, extra);
                self.reply = out;
                self.answered(extra);
                return;
            }
        }
        // (No cost entry: the budget is zero, nothing runs here.)
        let deadline = match ci.map(|i| &mut self.cost[i].1) {
            None => None,
            // Not measured yet: run items until the budget is spent.
            Some(c) if c.ns.is_nan() => Some(budget),
            Some(c) if c.ns * f64::from(head.count) > budget.as_nanos() as f64 => {
                // Too slow to run here; measured again now and then (a
                // sample taken while the rank was descheduled must not
                // send cheap tasks away for good).
                c.shipped = c.shipped.saturating_add(1);
                let probe = c.shipped >= c.probe_at;
                if probe {
                    c.probe_at = c.shipped.saturating_add(c.shipped.min(MAX_REPROBE));
                }
                probe.then_some(budget)
            }
            // Expected to fit: a misjudged chunk sends its rest on later.
            Some(c) => {
                (c.untimed, c.shipped, c.probe_at) = (0, 0, REPROBE);
                Some(budget * 4)
            }
        };
        let (done, used) = match (deadline, ci) {
            (Some(d), Some(i)) => {
                let t = Instant::now();
                let op = run_op(&mut out, Some(t + d));
                let (done, used) = runner(head.func, items, head.count, op);
                let ns = t.elapsed().as_nanos() as f64 / f64::from(done.max(1));
                let c = &mut self.cost[i].1;
                if c.ns.is_nan() {
                    (c.ns, c.last) = (ns, ns);
                }
                // Quick to fall, slow to rise, and only on two slow samples
                // in a row: one preempted run does not make a function
                // look slow.
                c.ns = if ns < c.ns {
                    ns
                } else {
                    0.75 * c.ns + 0.25 * ns.min(c.last)
                };
                c.last = ns;
                (done, used)
            }
            _ => (0, 0),
        };
        if done >= head.count {
            let cost = ci.map_or(0.0, |i| self.cost[i].1.ns);
            let extra = extra_for(cost * f64::from(head.count));
            ResultHead::set_grant(&mut out, at, extra);
            self.reply = out;
            self.answered(extra);
            return;
        }
        // The rest goes to the local pool (its result grants nothing: the
        // job's chunks are dealt by the capacity).
        let part = out.split_off(at);
        self.reply = out;
        self.ship(runner, head, &items[used..], head.count - done, part);
    }

    /// Gives the last `n` items of a chunk (`rest`, encoded) to the local
    /// pool, cut at item boundaries into two pieces per local worker (and
    /// never more bytes than a piece holds), so that the workers share
    /// even the last chunk of a job; a single item goes as it is.
    fn ship(&mut self, runner: RankRunner, head: &TaskHead, rest: &[u8], n: u32, mut out: Vec<u8>) {
        let Some(pool) = &self.pool else { return };
        let max = pool.max_piece_bytes();
        let parts = 2 * self.workers.max(1);
        let mut pieces = Vec::new();
        let mut undecodable = 0;
        if n == 1 {
            pieces.push((n, rest.to_vec()));
        } else {
            // `n` comes off the wire: a hint bounded by the bytes.
            let mut ends = Vec::with_capacity((n as usize).min(rest.len()));
            let (k, _) = runner(head.func, rest, n, Op::Ends { ends: &mut ends });
            undecodable = n - k;
            let per = (k as usize).div_ceil(parts).max(1);
            let (mut from, mut count) = (0usize, 0u32);
            let mut start = 0usize;
            for &end in &ends {
                if count > 0 && (count as usize == per || end - start > max) {
                    pieces.push((count, rest[start..from].to_vec()));
                    start = from;
                    count = 0;
                }
                from = end;
                count += 1;
            }
            if count > 0 {
                pieces.push((count, rest[start..from].to_vec()));
            }
        }
        let waiting = n - undecodable;
        if waiting == 0 {
            fail_undecodable(&mut out, undecodable);
            self.reply.extend_from_slice(&out);
            self.answered(0);
            return;
        }
        match pool.submit_encoded(head.local_runner, head.func, pieces) {
            Ok(job) => {
                self.held.insert(
                    job,
                    Held {
                        out,
                        waiting,
                        undecodable,
                    },
                );
            }
            Err(e) => self.fatal(format!("the local pool cannot run work: {e}")),
        }
    }

    /// Sends the chunks whose local jobs finished (waiting for one until
    /// `deadline`); whether any did.
    fn collect(&mut self, deadline: Instant) -> bool {
        let (Some(pool), false) = (&self.pool, self.held.is_empty() || self.broken) else {
            return false;
        };
        let jobs: Vec<u64> = self.held.keys().copied().collect();
        let held = &mut self.held;
        let r = pool.take_encoded(&jobs, Some(deadline), &mut |job, o| {
            if let Some(h) = held.get_mut(&job) {
                match o {
                    Ok(bytes) => push_ok(&mut h.out, bytes),
                    Err(e) => push_err(&mut h.out, &e),
                }
                h.waiting = h.waiting.saturating_sub(1);
            }
        });
        match r {
            Ok(0) => false,
            Ok(_) => {
                let done: Vec<u64> = jobs
                    .into_iter()
                    .filter(|j| self.held.get(j).is_some_and(|h| h.waiting == 0))
                    .collect();
                for j in done {
                    if let Some(mut h) = self.held.remove(&j) {
                        fail_undecodable(&mut h.out, h.undecodable);
                        self.reply.extend_from_slice(&h.out);
                    }
                }
                self.flush_reply();
                true
            }
            Err(e) => {
                self.fatal(format!("the local pool cannot run work: {e}"));
                true
            }
        }
    }
}

fn run_op(out: &mut Vec<u8>, deadline: Option<Instant>) -> Op<'_> {
    Op::Run { out, deadline }
}

/// Appends the outcomes of `n` items that do not decode.
fn fail_undecodable(out: &mut Vec<u8>, n: u32) {
    let e = TaskError::Codec("cannot decode the item".into());
    for _ in 0..n {
        push_err(out, &e);
    }
}

/// Serves the master until it stops this rank; the rank's exit code.
pub(crate) fn serve(
    world: &SimpleCommunicator,
    local: Result<Option<Pool>, String>,
    hello: Hello,
    inline_below: Duration,
) -> i32 {
    let (pool, hello) = match local {
        Ok(p) => (p, hello),
        Err(e) => (
            None,
            Hello {
                ok: false,
                text: e,
                ..hello
            },
        ),
    };
    let ok = hello.ok;
    // Items run in the rank keep the panic message with its location, as
    // in a local worker.
    crate::pool::func::capture_panics();
    let mut rank = Rank {
        world,
        out: Outbox::default(),
        workers: pool.as_ref().map_or(0, Pool::workers),
        pool,
        inline_below,
        cost: Vec::new(),
        held: HashMap::new(),
        broken: false,
        reply: Vec::new(),
        replies: 0,
    };
    rank.send(hello.encode(), tags::HELLO);
    let mut stopping = false;
    let mut backoff = Backoff::new();
    let master = world.process_at_rank(0);
    loop {
        let mut progressed = false;
        while let Some(probed) = master.immediate_matched_probe() {
            progressed = true;
            let (data, status) = probed.matched_receive_vec::<u8>();
            match status.tag() {
                tags::TASK => {
                    // Its chunks, answered together (those that ran here).
                    let mut rest = &data[..];
                    while !rest.is_empty() {
                        let Ok((head, items, next)) = TaskHead::read(rest) else {
                            rank.send(b"a task message does not parse".to_vec(), tags::FATAL);
                            break;
                        };
                        if ok {
                            rank.task(&head, items);
                        }
                        rest = next;
                    }
                    rank.flush_reply();
                }
                tags::STOP => stopping = true,
                tags::ABORT => {
                    // Drop what the local pool holds: its workers die with
                    // it (or with this process).
                    rank.flush_reply();
                    rank.send(Vec::new(), tags::BYE);
                    rank.out.flush();
                    return i32::from(!ok);
                }
                _ => {}
            }
        }
        if !rank.held.is_empty() && rank.collect(Instant::now()) {
            progressed = true;
        }
        if rank.out.progress() {
            progressed = true;
        }
        if stopping && (rank.held.is_empty() || rank.broken) {
            break;
        }
        if progressed {
            backoff.reset();
        } else if let Some(nap) = backoff.idle() {
            if rank.held.is_empty() || rank.broken {
                std::thread::sleep(nap);
            } else if rank.collect(Instant::now() + nap) {
                backoff.reset();
            }
        }
    }
    let code = match rank.pool.take() {
        Some(mut p) => {
            p.close();
            i32::from(p.join().is_err())
        }
        None => 0,
    };
    rank.flush_reply();
    rank.send(Vec::new(), tags::BYE);
    rank.out.flush();
    if ok {
        code
    } else {
        1
    }
}
