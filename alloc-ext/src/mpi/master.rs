//! Rank 0: the jobs' bookkeeping shared by the caller's handles and the
//! engine thread, and the engine, the only thread of the master that calls
//! MPI. It deals chunks to the worker ranks (at most `capacity` each at
//! once, plus what the rank granted for the chunk's job: see `wire`), all
//! the chunks a rank gets at once in one message, files their results by
//! item index, and wakes the callers.

use std::collections::{HashMap, VecDeque};
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
    pub(crate) ready: Outcomes,
    /// An iterator takes the outcomes as they come: every result wakes
    /// it (other callers wake when the job has finished).
    pub(crate) streaming: bool,
    /// Chunks of this job each rank (by index) takes at once beyond its
    /// capacity, as it last granted (see `wire`).
    pub(crate) extra: Vec<u32>,
}

/// A job's outcomes by item index: a window over the items from the first
/// not yet taken, each waiting, ready or taken (items come back about in
/// order, so it stays short for an iterator; a search tree cost the engine
/// a fifth of its time per item).
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    /// Index of the window's first item (every item before it was taken).
    base: u64,
    slots: VecDeque<Slot>,
    /// Ready slots.
    ready: usize,
}

#[derive(Debug)]
enum Slot {
    Waiting,
    Ready(RawOutcome),
    Taken,
}

impl Outcomes {
    /// Files item `i`'s outcome (a second one for the same item is
    /// dropped).
    pub(crate) fn insert(&mut self, i: u64, o: RawOutcome) {
        let Some(k) = i
            .checked_sub(self.base)
            .and_then(|k| usize::try_from(k).ok())
        else {
            return;
        };
        if k >= self.slots.len() {
            self.slots.resize_with(k + 1, || Slot::Waiting);
        }
        if matches!(self.slots[k], Slot::Waiting) {
            self.slots[k] = Slot::Ready(o);
            self.ready += 1;
        }
    }

    /// Takes item `i`'s outcome, if it is ready.
    pub(crate) fn remove(&mut self, i: u64) -> Option<RawOutcome> {
        let k = usize::try_from(i.checked_sub(self.base)?).ok()?;
        let slot = self.slots.get_mut(k)?;
        if !matches!(slot, Slot::Ready(_)) {
            return None;
        }
        let Slot::Ready(o) = std::mem::replace(slot, Slot::Taken) else {
            return None;
        };
        self.ready -= 1;
        while matches!(self.slots.front(), Some(Slot::Taken)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(o)
    }

    /// Takes the ready outcome of the lowest index.
    pub(crate) fn pop_first(&mut self) -> Option<RawOutcome> {
        if self.ready == 0 {
            return None;
        }
        let k = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Ready(_)))?;
        self.remove(self.base + k as u64)
    }

    /// Every ready outcome, in item order.
    pub(crate) fn into_values(self) -> impl Iterator<Item = RawOutcome> {
        self.slots.into_iter().filter_map(|s| match s {
            Slot::Ready(o) => Some(o),
            _ => None,
        })
    }
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
    /// Idle polls since the last event, before the clock is read.
    polls: u32,
    /// When the clock was first read after the last event.
    since: Option<Instant>,
    nap: Duration,
}

/// Idle polls after an event before the clock is read at all (a stream of
/// short tasks then reads no clock between them).
const POLLS: u32 = 64;

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
            polls: 0,
            since: None,
            nap: Duration::from_micros(20),
        }
    }

    /// Something happened.
    pub(crate) fn reset(&mut self) {
        self.polls = 0;
        self.since = None;
        self.nap = Duration::from_micros(20);
    }

    /// Nothing happened: how long to sleep before polling again (`None`:
    /// poll again at once).
    pub(crate) fn idle(&mut self) -> Option<Duration> {
        if self.polls < POLLS {
            self.polls += 1;
            std::hint::spin_loop();
            return None;
        }
        let idle = self.since.get_or_insert_with(Instant::now).elapsed();
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

/// A TASK message grows up to this many bytes (or one chunk) before it
/// goes.
const BATCH_BYTES: usize = 1 << 20;

/// Appends a chunk to a TASK message.
fn push_chunk(msg: &mut Vec<u8>, c: &Chunk) -> Result<(), String> {
    let len = u32::try_from(c.items.len())
        .map_err(|_| format!("a chunk of {} bytes is too long", c.items.len()))?;
    msg.reserve(TASK_HEAD + c.items.len());
    TaskHead {
        job: c.job,
        chunk: 0,
        first: c.first,
        count: c.count,
        len,
        runner: c.runner,
        func: c.func,
        local_runner: c.local_runner,
    }
    .write(msg);
    msg.extend_from_slice(&c.items);
    Ok(())
}

/// Files the outcomes of a RESULT message (one or more chunks') from the
/// rank of index `idx` of `n`; how many chunks it answered.
fn file_result(shared: &Shared, idx: usize, n: usize, mut msg: &[u8]) -> Result<usize, String> {
    let mut parsed = Vec::new();
    while !msg.is_empty() {
        let (head, body) = ResultHead::read(msg).map_err(|e| e.to_string())?;
        let (outcomes, rest) = read_outcomes(body, head.count).map_err(|e| e.to_string())?;
        parsed.push((head, outcomes));
        msg = rest;
    }
    let chunks = parsed.len();
    let mut st = shared.lock();
    let mut wake = false;
    let mut bad = None;
    for (head, outcomes) in parsed {
        if let Some(job) = st.jobs.get_mut(&head.job) {
            if head.first.saturating_add(u64::from(head.count)) > job.submitted {
                bad = Some(format!(
                    "outcomes of items {}.. of job {}, which has {} items",
                    head.first, head.job, job.submitted
                ));
                continue;
            }
            job.extra.resize(n, 0);
            job.extra[idx] = head.grant;
            for (i, o) in outcomes.into_iter().enumerate() {
                job.ready.insert(head.first + i as u64, o);
            }
            job.got += u64::from(head.count);
            job.chunks_out = job.chunks_out.saturating_sub(1);
            // A waiter for the whole job would only wake to sleep again: a
            // thread switch per chunk.
            wake |= job.streaming || job.finished();
        }
    }
    drop(st);
    if wake {
        shared.done.notify_all();
    }
    match bad {
        Some(e) => Err(e),
        None => Ok(chunks),
    }
}

/// The rank (by index) to deal the next pending chunk to: the one with the
/// most room for a chunk of its job, ties in turn from `next`; `None` if
/// nothing is pending or no rank has room.
fn pick(st: &State, ranks: &[RankInfo], inflight: &[i64], next: usize) -> Option<usize> {
    let c = st.pending.front()?;
    let extra = st.jobs.get(&c.job).map_or(&[][..], |j| &j.extra[..]);
    pick_for(extra, ranks, inflight, next)
}

/// [`pick`] for a chunk of a job with these grants.
fn pick_for(extra: &[u32], ranks: &[RankInfo], inflight: &[i64], next: usize) -> Option<usize> {
    let n = ranks.len();
    let room = |r: usize| {
        let extra = extra.get(r).copied().unwrap_or(0);
        i64::from(ranks[r].capacity.max(1)) + i64::from(extra) - inflight[r]
    };
    (0..n)
        .map(|k| (next + k) % n)
        .max_by_key(|&r| (room(r), std::cmp::Reverse((r + n - next) % n)))
        .filter(|&r| room(r) > 0)
}

/// The engine's loop, until every rank said BYE after a stop.
pub(crate) fn run(world: &SimpleCommunicator, shared: &Shared, ranks: &[RankInfo]) {
    // Chunks each rank holds.
    let mut inflight: Vec<i64> = vec![0; ranks.len()];
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
            // The grants of the front chunk's job (looked up once per job).
            let mut grants: Option<(u64, Vec<u32>)> = None;
            while stop_now.is_none() && !stop_sent {
                let Some(job) = st.pending.front().map(|c| c.job) else {
                    break;
                };
                if grants.as_ref().is_none_or(|(j, _)| *j != job) {
                    let extra = st.jobs.get(&job).map(|j| j.extra.clone());
                    grants = Some((job, extra.unwrap_or_default()));
                }
                let extra = grants.as_ref().map_or(&[][..], |(_, e)| &e[..]);
                let Some(r) = pick_for(extra, ranks, &inflight, next) else {
                    break;
                };
                next = (r + 1) % ranks.len();
                inflight[r] += 1;
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
        // One message per rank (or per BATCH_BYTES) for what it was dealt.
        let mut msgs: Vec<Vec<u8>> = vec![Vec::new(); ranks.len()];
        for (r, c) in to_send.drain(..) {
            if !msgs[r].is_empty() && msgs[r].len() + c.items.len() > BATCH_BYTES {
                let msg = std::mem::take(&mut msgs[r]);
                if let Err(e) = out.send(world, ranks[r].rank, tags::TASK, msg) {
                    fail(shared, e);
                }
            }
            if let Err(e) = push_chunk(&mut msgs[r], &c) {
                fail(shared, e);
            }
            outstanding += 1;
            progressed = true;
        }
        for (r, msg) in msgs.into_iter().enumerate() {
            if !msg.is_empty() {
                if let Err(e) = out.send(world, ranks[r].rank, tags::TASK, msg) {
                    fail(shared, e);
                }
            }
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
                tags::RESULT => match file_result(shared, idx, ranks.len(), &data) {
                    Ok(chunks) => {
                        inflight[idx] -= chunks as i64;
                        outstanding = outstanding.saturating_sub(chunks);
                    }
                    Err(e) => fail(shared, format!("rank {src} sent a bad result: {e}")),
                },
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
            let can_send = pick(&st, ranks, &inflight, next).is_some();
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

    #[test]
    fn ranks_are_dealt_by_capacity_plus_the_jobs_grant() {
        let rank = |rank, capacity| RankInfo {
            rank,
            pid: 0,
            host: String::new(),
            local_workers: 2,
            capacity,
        };
        let ranks = [rank(1, 3), rank(2, 3)];
        // The most room first, ties in turn from `next`.
        assert_eq!(pick_for(&[], &ranks, &[0, 0], 0), Some(0));
        assert_eq!(pick_for(&[], &ranks, &[0, 0], 1), Some(1));
        assert_eq!(pick_for(&[], &ranks, &[1, 0], 0), Some(1));
        assert_eq!(pick_for(&[], &ranks, &[3, 3], 0), None);
        // A grant of the job's opens room at that rank alone.
        assert_eq!(pick_for(&[0, 5], &ranks, &[3, 3], 0), Some(1));
        assert_eq!(pick_for(&[0, 5], &ranks, &[3, 8], 0), None);
        // A job's grant does not reach another job's chunks.
        let mut st = State::default();
        let cheap = st.add_job().unwrap();
        let costly = st.add_job().unwrap();
        st.jobs.get_mut(&cheap).unwrap().extra = vec![5, 5];
        let chunk = |job| Chunk {
            job,
            first: 0,
            count: 1,
            runner: 0,
            func: 0,
            local_runner: 0,
            items: Vec::new(),
        };
        st.add_chunks(costly, vec![chunk(costly)], true);
        assert_eq!(pick(&st, &ranks, &[3, 3], 0), None);
        st.drop_job(costly);
        st.add_chunks(cheap, vec![chunk(cheap)], true);
        assert_eq!(pick(&st, &ranks, &[3, 3], 0), Some(0));
    }

    #[test]
    fn outcomes_by_index() {
        let ok = |v: u8| -> RawOutcome { Ok(vec![v]) };
        let mut o = Outcomes::default();
        o.insert(2, ok(2));
        o.insert(0, ok(0));
        o.insert(0, ok(9));
        assert_eq!(o.remove(1), None);
        assert_eq!(o.pop_first(), Some(ok(0)));
        assert_eq!(o.remove(0), None);
        o.insert(0, ok(7));
        o.insert(1, ok(1));
        o.insert(4, ok(4));
        assert_eq!(o.remove(2), Some(ok(2)));
        assert_eq!(o.remove(1), Some(ok(1)));
        assert_eq!((o.base, o.slots.len()), (3, 2));
        o.insert(3, ok(3));
        assert_eq!(o.into_values().collect::<Vec<_>>(), vec![ok(3), ok(4)]);
    }
}
