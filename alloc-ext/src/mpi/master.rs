//! Rank 0: the jobs' bookkeeping shared by the caller's handles and the
//! engine thread, and the engine, the only thread of the master that calls
//! MPI. It deals chunks to the worker ranks (at most `capacity` each at
//! once), files their results by item index, and wakes the callers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mpi::point_to_point::{MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::outbox::Outbox;
use super::wire::{read_outcomes, tags, RawOutcome, ResultHead, TaskHead, TASK_HEAD};
use super::RankInfo;
use crate::pool::PoolError;

/// A chunk waiting to be sent.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) job: u64,
    pub(crate) first: u64,
    pub(crate) count: u32,
    pub(crate) runner: u64,
    pub(crate) func: u64,
    pub(crate) local_runner: u64,
    /// The items, encoded back to back.
    pub(crate) items: Vec<u8>,
}

/// One call's items and outcomes.
#[derive(Debug, Default)]
pub(crate) struct Job {
    /// Items given so far.
    pub(crate) submitted: u64,
    /// Items whose outcome arrived.
    pub(crate) got: u64,
    /// Chunks given and not yet answered.
    pub(crate) chunks_out: u64,
    /// No more items will come.
    pub(crate) input_done: bool,
    /// Outcomes not yet taken, by item index.
    pub(crate) ready: BTreeMap<u64, RawOutcome>,
    /// An iterator takes the outcomes as they come: every result wakes
    /// it (other callers wake when the job has finished).
    pub(crate) streaming: bool,
}

impl Job {
    /// Every item given has its outcome.
    pub(crate) fn finished(&self) -> bool {
        self.input_done && self.got == self.submitted
    }
}

/// How the engine ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The ranks finish what they hold (after `join`: nothing).
    Graceful,
    /// The ranks drop what they hold.
    Abort,
}

/// What the handles and the engine share, under one lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) jobs: HashMap<u64, Job>,
    pending: VecDeque<Chunk>,
    next_job: u64,
    pub(crate) closed: bool,
    pub(crate) stop: Option<Stop>,
    /// The pool cannot run work any more (a rank's local pool failed, or
    /// a rank sent a message that does not parse).
    pub(crate) broken: Option<String>,
    /// The engine thread has ended.
    pub(crate) engine_gone: bool,
}

impl State {
    /// Registers a new job; its id.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`] after `close` or `terminate`.
    pub(crate) fn add_job(&mut self) -> Result<u64, PoolError> {
        if self.closed || self.stop.is_some() {
            return Err(PoolError::Closed);
        }
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, Job::default());
        Ok(id)
    }

    /// Queues chunks of job `id` (none if the job was dropped).
    pub(crate) fn add_chunks(&mut self, id: u64, chunks: Vec<Chunk>, input_done: bool) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        for c in chunks {
            job.submitted += u64::from(c.count);
            job.chunks_out += 1;
            self.pending.push_back(c);
        }
        job.input_done |= input_done;
    }

    /// Forgets job `id`: its queued chunks are dropped, late outcomes
    /// ignored.
    pub(crate) fn drop_job(&mut self, id: u64) {
        self.jobs.remove(&id);
        self.pending.retain(|c| c.job != id);
    }

    /// Whether any job still waits for outcomes.
    pub(crate) fn busy(&self) -> bool {
        self.jobs.values().any(|j| !j.finished())
    }

    /// Why a wait cannot succeed any more, if it cannot.
    pub(crate) fn hopeless(&self) -> Option<PoolError> {
        if let Some(msg) = &self.broken {
            return Some(PoolError::Broken(msg.clone()));
        }
        if self.stop == Some(Stop::Abort) || self.engine_gone {
            return Some(PoolError::Closed);
        }
        None
    }
}

/// The state, the callers' condition variable and the engine's.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    st: Mutex<State>,
    /// Callers wait here for outcomes.
    done: Condvar,
    /// The engine waits here for work.
    work: Condvar,
}

impl Shared {
    /// Locks the state (a panic while it was held cannot leave it
    /// inconsistent: every update is a few field writes).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the engine (new work, or a stop).
    pub(crate) fn poke(&self) {
        self.work.notify_all();
    }

    /// Waits until `f` returns `Some`, or `deadline`.
    ///
    /// # Errors
    ///
    /// [`PoolError::Timeout`] at the deadline.
    pub(crate) fn wait_for<T>(
        &self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, PoolError> {
        let mut st = self.lock();
        loop {
            if let Some(v) = f(&mut st) {
                return Ok(v);
            }
            st = match deadline {
                None => self.done.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(PoolError::Timeout);
                    }
                    self.done
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Spins briefly after the last event, then sleeps longer and longer (up
/// to 1 ms), so that an idle master or rank does not hold a core the local
/// workers need, while a stream of short tasks never waits for a sleep.
#[derive(Debug)]
pub(crate) struct Backoff {
    since: Instant,
    nap: Duration,
}

/// Spin this long after the last event.
const SPIN: Duration = Duration::from_micros(50);
/// Then yield the core until this long after it (on a loaded machine, a
/// reply can take that long while the peer waits for a core; a timed sleep
/// would add its wake-up latency to every one).
const YIELD: Duration = Duration::from_millis(1);
/// The longest sleep between two polls.
const MAX_NAP: Duration = Duration::from_millis(1);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            since: Instant::now(),
            nap: Duration::from_micros(20),
        }
    }

    /// Something happened.
    pub(crate) fn reset(&mut self) {
        self.since = Instant::now();
        self.nap = Duration::from_micros(20);
    }

    /// Nothing happened: how long to sleep before polling again (`None`:
    /// poll again at once).
    pub(crate) fn idle(&mut self) -> Option<Duration> {
        let idle = self.since.elapsed();
        if idle < SPIN {
            std::hint::spin_loop();
            None
        } else if idle < YIELD {
            std::thread::yield_now();
            None
        } else {
            let nap = self.nap;
            self.nap = (self.nap * 2).min(MAX_NAP);
            Some(nap)
        }
    }
}

/// Starts sending a chunk to `rank`.
fn send_chunk(
    world: &SimpleCommunicator,
    out: &mut Outbox,
    rank: i32,
    c: &Chunk,
) -> Result<(), String> {
    let mut msg = Vec::with_capacity(TASK_HEAD + c.items.len());
    TaskHead {
        job: c.job,
        chunk: 0,
        first: c.first,
        count: c.count,
        runner: c.runner,
        func: c.func,
        local_runner: c.local_runner,
    }
    .write(&mut msg);
    msg.extend_from_slice(&c.items);
    out.send(world, rank, tags::TASK, msg)
}

/// Files the outcomes of a RESULT message.
fn file_result(shared: &Shared, msg: &[u8]) -> Result<(), String> {
    let (head, body) = ResultHead::read(msg).map_err(|e| e.to_string())?;
    let outcomes = read_outcomes(body, head.count).map_err(|e| e.to_string())?;
    let mut st = shared.lock();
    let mut wake = false;
    if let Some(job) = st.jobs.get_mut(&head.job) {
        for (i, o) in outcomes.into_iter().enumerate() {
            job.ready.insert(head.first + i as u64, o);
        }
        job.got += u64::from(head.count);
        job.chunks_out = job.chunks_out.saturating_sub(1);
        // A waiter for the whole job would only wake to sleep again: a
        // thread switch per chunk.
        wake = job.streaming || job.finished();
    }
    drop(st);
    if wake {
        shared.done.notify_all();
    }
    Ok(())
}

/// The engine's loop, until every rank said BYE after a stop.
pub(crate) fn run(world: &SimpleCommunicator, shared: &Shared, ranks: &[RankInfo]) {
    let mut credits: Vec<u32> = ranks.iter().map(|r| r.capacity.max(1)).collect();
    let mut outstanding = 0usize;
    let mut stop_sent = false;
    let mut byes = 0usize;
    let mut backoff = Backoff::new();
    let mut out = Outbox::default();
    let mut to_send: Vec<(usize, Chunk)> = Vec::new();
    let mut next = 0usize;
    loop {
        let mut progressed = false;
        let mut stop_now = None;
        {
            let mut st = shared.lock();
            if !stop_sent {
                if let Some(stop) = st.stop {
                    stop_now = Some(stop);
                    if stop == Stop::Abort {
                        st.pending.clear();
                    }
                }
            }
            while !st.pending.is_empty() && stop_now.is_none() && !stop_sent {
                // The rank with the most free credits, ties in turn.
                let n = credits.len();
                let best = (0..n)
                    .map(|k| (next + k) % n)
                    .max_by_key(|&r| (credits[r], std::cmp::Reverse((r + n - next) % n)));
                let Some(r) = best.filter(|&r| credits[r] > 0) else {
                    break;
                };
                next = (r + 1) % n;
                credits[r] -= 1;
                if let Some(c) = st.pending.pop_front() {
                    to_send.push((r, c));
                }
            }
            if to_send.is_empty() && outstanding == 0 && stop_now.is_none() && !stop_sent {
                // Nothing sent and nothing to wait for: sleep until work.
                let _ = shared
                    .work
                    .wait_timeout(st, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner());
                backoff.reset();
                continue;
            }
        }
        for (r, c) in to_send.drain(..) {
            if let Err(e) = send_chunk(world, &mut out, ranks[r].rank, &c) {
                fail(shared, e);
            }
            outstanding += 1;
            progressed = true;
        }
        if let Some(stop) = stop_now {
            let tag = if stop == Stop::Abort {
                tags::ABORT
            } else {
                tags::STOP
            };
            for r in ranks {
                let _ = out.send(world, r.rank, tag, Vec::new());
            }
            stop_sent = true;
            progressed = true;
        }
        while let Some(probed) = world.any_process().immediate_matched_probe() {
            progressed = true;
            let (data, status) = probed.matched_receive_vec::<u8>();
            let src = status.source_rank();
            let Some(idx) = ranks.iter().position(|r| r.rank == src) else {
                continue;
            };
            match status.tag() {
                tags::RESULT => {
                    credits[idx] += 1;
                    outstanding = outstanding.saturating_sub(1);
                    if let Err(e) = file_result(shared, &data) {
                        fail(shared, format!("rank {src} sent a bad result: {e}"));
                    }
                }
                tags::FATAL => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    fail(shared, format!("rank {src}: {text}"));
                }
                tags::BYE => byes += 1,
                _ => {}
            }
        }
        if out.progress() {
            progressed = true;
        }
        if stop_sent && byes == ranks.len() {
            break;
        }
        if progressed {
            backoff.reset();
        } else if let Some(nap) = backoff.idle() {
            // Sleep unless a chunk can go out now: pending chunks that no
            // rank has a credit for wait for a result like everything
            // else (polling for it without a sleep took a core from the
            // ranks' workers on a node shared with the master).
            let st = shared.lock();
            let can_send = !st.pending.is_empty() && credits.iter().any(|&c| c > 0);
            if !can_send && (st.stop.is_none() || stop_sent) {
                let _ = shared
                    .work
                    .wait_timeout(st, nap)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// Marks the pool broken and stops the ranks.
fn fail(shared: &Shared, msg: String) {
    let mut st = shared.lock();
    st.broken.get_or_insert(msg);
    st.stop.get_or_insert(Stop::Abort);
    drop(st);
    shared.done.notify_all();
}

/// Marks the engine gone (at its end, whatever the reason) and wakes the
/// callers.
pub(crate) fn engine_gone(shared: &Shared) {
    shared.lock().engine_gone = true;
    shared.done.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_finish_when_every_item_is_back() {
        let mut st = State::default();
        let id = st.add_job().unwrap();
        let chunk = |first, count| Chunk {
            job: id,
            first,
            count,
            runner: 0,
            func: 0,
            local_runner: 0,
            items: Vec::new(),
        };
        st.add_chunks(id, vec![chunk(0, 2), chunk(2, 1)], false);
        assert!(st.busy());
        st.add_chunks(id, Vec::new(), true);
        let job = st.jobs.get_mut(&id).unwrap();
        assert_eq!((job.submitted, job.chunks_out), (3, 2));
        job.got = 3;
        assert!(job.finished() && !st.busy());
        st.closed = true;
        assert!(matches!(st.add_job(), Err(PoolError::Closed)));
        st.drop_job(id);
        assert!(st.pending.is_empty() && st.jobs.is_empty());
    }
}
