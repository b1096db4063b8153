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

/// Every this many chunks that a function's cost sends to the local pool,
/// the rank measures it again on the chunk's first items.
const REPROBE: u32 = 8;

/// What running a function's items in the rank costs.
struct Cost {
    /// Nanoseconds per item.
    ns: f64,
    /// The last sample.
    last: f64,
    /// Chunks sent to the local pool on this estimate.
    shipped: u32,
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
    /// the rank ran them itself.
    cost: HashMap<(u64, u64), Cost>,
    /// Chunks on the local pool, by local job id.
    held: HashMap<u64, Held>,
    /// The local pool failed (FATAL sent): nothing more goes to it.
    broken: bool,
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

    /// Runs a TASK: in the rank, on the local pool, or both.
    fn task(&mut self, head: &TaskHead, items: &[u8]) {
        // SAFETY: the master sent the offset of a `RankRunner` instance
        // (`mpi::Pool` takes it from a value of that type), and this rank
        // runs the master's executable (the fingerprint in HELLO matched,
        // else the master stopped at start), so the offset names that
        // function here.
        let runner: RankRunner =
            unsafe { std::mem::transmute::<usize, RankRunner>(address_at(head.runner)) };
        let mut out = ResultHead::start(head);
        if self.pool.is_none() || self.broken {
            runner(head.func, items, head.count, run_op(&mut out, None));
            self.send(out, tags::RESULT);
            return;
        }
        let key = (head.runner, head.func);
        let budget = self.inline_below;
        let deadline = match self.cost.get_mut(&key) {
            _ if budget.is_zero() => None,
            Some(c) if c.ns * f64::from(head.count) > budget.as_nanos() as f64 => {
                // Too slow to run here; measured again now and then (a
                // sample taken while the rank was descheduled must not
                // send cheap tasks away for good).
                c.shipped += 1;
                (c.shipped % REPROBE == 0).then_some(budget)
            }
            // Expected to fit: a misjudged chunk sends its rest on later.
            Some(_) => Some(budget * 4),
            // Not measured yet: run items until the budget is spent.
            None => Some(budget),
        };
        let (done, used) = match deadline {
            Some(d) => {
                let t = Instant::now();
                let op = run_op(&mut out, Some(t + d));
                let (done, used) = runner(head.func, items, head.count, op);
                let ns = t.elapsed().as_nanos() as f64 / f64::from(done.max(1));
                let c = self.cost.entry(key).or_insert(Cost {
                    ns,
                    last: ns,
                    shipped: 0,
                });
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
            None => (0, 0),
        };
        if done >= head.count {
            self.send(out, tags::RESULT);
            return;
        }
        self.ship(runner, head, &items[used..], head.count - done, out);
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
            let mut ends = Vec::with_capacity(n as usize);
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
            self.send(out, tags::RESULT);
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
                        self.send(h.out, tags::RESULT);
                    }
                }
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
        cost: HashMap::new(),
        held: HashMap::new(),
        broken: false,
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
                    let Ok((head, items)) = TaskHead::read(&data) else {
                        rank.send(b"a task message does not parse".to_vec(), tags::FATAL);
                        continue;
                    };
                    if ok {
                        rank.task(&head, items);
                    }
                }
                tags::STOP => stopping = true,
                tags::ABORT => {
                    // Drop what the local pool holds: its workers die with
                    // it (or with this process).
                    rank.send(Vec::new(), tags::BYE);
                    rank.out.flush();
                    return i32::from(!ok);
                }
                _ => {}
            }
        }
        if rank.collect(Instant::now()) {
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
    rank.send(Vec::new(), tags::BYE);
    rank.out.flush();
    if ok {
        code
    } else {
        1
    }
}
