//! The owner's bookkeeping: jobs and their chunks, which worker holds
//! which chunk, dispatch, results, and what a worker's death means.
//!
//! Everything here runs under the pool's one mutex, in whichever thread
//! *pumps*: a caller waiting for its results, or the watcher thread (on a
//! death, and for asynchronous jobs nobody waits on). A pump drains every
//! result ring, then hands pending chunks to workers.
//!
//! # Balancing
//!
//! The owner keeps at most `depth` chunks queued per worker, and sends
//! each pending chunk to the worker holding the fewest. `depth` follows
//! the chunks' cost: it is about [`QUEUED_WORK`] divided by the worker's
//! recent time per chunk, between 2 and [`MAX_DEPTH`]. Trivial chunks get
//! deep queues (the owner wakes rarely, a worker never waits for it);
//! chunks of milliseconds get two (one running, one ready), so that no
//! worker sits on a backlog while another is idle: at the end of a map,
//! the workers finish within about one chunk of each other, as with a
//! shared queue.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc_core::bytering::{FrameReceiver, FrameSender, RecvError, SendError};

use super::error::{PoolError, TaskError};
use super::layout::{
    next_outcome, read_head, Dir, Geometry, PoolMem, ResultHead, TaskHead, OUTCOME_HEAD, TASK_HEAD,
};
use super::LostTasks;

/// The work a worker's queue should hold, in time.
pub(crate) const QUEUED_WORK: Duration = Duration::from_micros(500);
/// Most chunks queued to one worker.
pub(crate) const MAX_DEPTH: usize = 4096;
const FIRST_DEPTH: usize = 8;
/// How long a worker's current chunk runs before an idle worker may take
/// the chunks queued behind it.
pub(crate) const STEAL_AFTER: Duration = Duration::from_millis(1);

/// Chunk `chunk` of job `job`.
pub(crate) type ChunkId = (u64, u64);

/// Requests on the control pipe from the owner ([`Shared::poke`]) to the
/// watcher.
pub(crate) mod ctl {
    /// Something changed (a job was added, the pool closed): look again.
    pub(crate) const POKE: u8 = 1;
    /// Kill every worker and leave.
    pub(crate) const TERMINATE: u8 = 2;
}

/// The owner's side of the pool, shared by the handle, its results and
/// the watcher thread.
pub(crate) struct Shared {
    /// Declared before `mem`: the rings in it borrow the mapping.
    state: Mutex<State>,
    pub(crate) mem: PoolMem,
    /// The watcher's control pipe (its write end), while the watcher
    /// runs: the pool's requests, and a pump's report of a worker to kill.
    ctl: Mutex<Option<std::os::fd::OwnedFd>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("mem", &self.mem).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// No worker, none being started.
    Empty,
    /// A start was requested.
    Starting,
    /// A worker runs (`pid`).
    Running,
}

pub(crate) struct Slot {
    tx: Option<FrameSender<'static>>,
    rx: Option<FrameReceiver<'static>>,
    pub(crate) state: SlotState,
    pub(crate) pid: u32,
    /// Chunks sent and not answered, with their frame numbers (the
    /// worker's claim-gate numbering).
    inflight: VecDeque<(ChunkId, u32)>,
    /// Frames sent to this worker.
    sent: u32,
    completed: u64,
    depth: usize,
    ewma_ns: f64,
    busy_since: Option<Instant>,
    /// The ring sent garbage: the worker is being killed.
    poisoned: bool,
}

impl Slot {
    fn new() -> Self {
        Self {
            tx: None,
            rx: None,
            state: SlotState::Empty,
            pid: 0,
            inflight: VecDeque::new(),
            sent: 0,
            completed: 0,
            depth: FIRST_DEPTH,
            ewma_ns: 0.0,
            busy_since: None,
            poisoned: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkStatus {
    Pending,
    Dispatched(usize),
    Done,
}

pub(crate) struct Chunk {
    /// Index of its first item in the input (diagnostics and tests).
    #[allow(dead_code)]
    pub(crate) first_item: u64,
    pub(crate) count: u32,
    input: Vec<u8>,
    pub(crate) status: ChunkStatus,
    attempts: u32,
    /// Outcomes received (a prefix of the chunk).
    pub(crate) got: u32,
    /// The outcomes, `[tag | len u32 | bytes]` each.
    pub(crate) blob: Vec<u8>,
    /// Why the items past `got` have no outcome.
    pub(crate) failed: Option<TaskError>,
    /// Its items were handed to the caller (iterators).
    pub(crate) consumed: bool,
}

impl Chunk {
    /// A chunk to run.
    pub(crate) fn new(first_item: u64, count: u32, input: Vec<u8>) -> Self {
        Self {
            first_item,
            count,
            input,
            status: ChunkStatus::Pending,
            attempts: 0,
            got: 0,
            blob: Vec::new(),
            failed: None,
            consumed: false,
        }
    }

    /// A chunk of one item that failed before it could be sent.
    pub(crate) fn failed(first_item: u64, error: TaskError) -> Self {
        Self {
            status: ChunkStatus::Done,
            failed: Some(error),
            ..Self::new(first_item, 1, Vec::new())
        }
    }
}

pub(crate) struct Job {
    runner: u64,
    func: u64,
    /// Chunks from `base` on (earlier ones were consumed and dropped).
    pub(crate) chunks: VecDeque<Chunk>,
    pub(crate) base: u64,
    /// Every chunk of the input has been added.
    pub(crate) input_done: bool,
    /// Chunks finished (ever).
    pub(crate) done: u64,
    /// Finished chunks not yet consumed, in finishing order.
    pub(crate) ready: VecDeque<u64>,
    /// An asynchronous job: the watcher pumps for it while nobody waits.
    pub(crate) background: bool,
}

impl Job {
    pub(crate) fn new(runner: u64, func: u64, background: bool) -> Self {
        Self {
            runner,
            func,
            chunks: VecDeque::new(),
            base: 0,
            input_done: false,
            done: 0,
            ready: VecDeque::new(),
            background,
        }
    }

    pub(crate) fn chunk(&self, id: u64) -> Option<&Chunk> {
        id.checked_sub(self.base)
            .and_then(|i| self.chunks.get(usize::try_from(i).ok()?))
    }

    fn chunk_mut(&mut self, id: u64) -> Option<&mut Chunk> {
        id.checked_sub(self.base)
            .and_then(|i| self.chunks.get_mut(usize::try_from(i).ok()?))
    }

    /// Chunks added so far.
    pub(crate) fn len(&self) -> u64 {
        self.base + self.chunks.len() as u64
    }

    /// Every chunk added is finished, and no more will be.
    pub(crate) fn finished(&self) -> bool {
        self.input_done && self.done == self.len()
    }

    /// Drops consumed chunks from the front.
    pub(crate) fn trim(&mut self) {
        while self.chunks.front().is_some_and(|c| c.consumed) {
            self.chunks.pop_front();
            self.base += 1;
        }
    }

    fn finish(&mut self, id: u64) {
        if let Some(c) = self.chunk_mut(id) {
            c.status = ChunkStatus::Done;
            c.input = Vec::new();
            self.done += 1;
            self.ready.push_back(id);
        }
    }
}

pub(crate) struct State {
    pub(crate) slots: Vec<Slot>,
    pending: VecDeque<ChunkId>,
    pub(crate) jobs: HashMap<u64, Job>,
    next_job: u64,
    pub(crate) closed: bool,
    pub(crate) terminated: bool,
    pub(crate) broken: Option<String>,
    /// Threads inside [`Shared::wait_for`].
    pub(crate) waiters: usize,
    /// A pump found a ring with garbage: the watcher must kill its worker.
    poison_notice: bool,
    lost: LostTasks,
    geo: Geometry,
}

impl State {
    /// Adds a job; its chunks follow with [`add_chunks`](Self::add_chunks).
    pub(crate) fn add_job(&mut self, job: Job) -> Result<u64, PoolError> {
        self.usable()?;
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, job);
        Ok(id)
    }

    /// Whether new work can be accepted.
    pub(crate) fn usable(&self) -> Result<(), PoolError> {
        if self.terminated || self.closed {
            return Err(PoolError::Closed);
        }
        if let Some(msg) = &self.broken {
            return Err(PoolError::Broken(msg.clone()));
        }
        Ok(())
    }

    /// Appends chunks to job `id` and queues those still to run.
    pub(crate) fn add_chunks(&mut self, id: u64, chunks: Vec<Chunk>, input_done: bool) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        for c in chunks {
            let cid = job.len();
            let done = c.status == ChunkStatus::Done;
            job.chunks.push_back(c);
            if done {
                job.done += 1;
                job.ready.push_back(cid);
            } else {
                self.pending.push_back((id, cid));
            }
        }
        job.input_done |= input_done;
    }

    /// Forgets job `id` (its handle was dropped); chunks already sent run
    /// to their end, their results are dropped.
    pub(crate) fn drop_job(&mut self, id: u64) {
        self.jobs.remove(&id);
    }

    /// Whether the watcher should pump: a background job is unfinished
    /// and nobody waits.
    pub(crate) fn unattended(&self) -> bool {
        self.waiters == 0 && self.jobs.values().any(|j| j.background && !j.finished())
    }

    /// Whether anything at all is unfinished.
    pub(crate) fn busy(&self) -> bool {
        self.jobs.values().any(|j| !j.finished())
    }

    /// Drains every result ring and dispatches; true if anything moved.
    pub(crate) fn pump(&mut self, mem: &PoolMem) -> bool {
        let mut moved = false;
        for w in 0..self.slots.len() {
            moved |= self.drain(w);
        }
        moved |= self.dispatch(mem);
        moved
    }

    /// Reads worker `w`'s result frames.
    fn drain(&mut self, w: usize) -> bool {
        let Some(mut rx) = self.slots[w].rx.take() else {
            return false;
        };
        let mut moved = false;
        while !self.slots[w].poisoned {
            let frame = match rx.try_read() {
                Ok(f) => f,
                Err(RecvError::Empty | RecvError::Disconnected) => break,
                Err(_) => {
                    self.slots[w].poisoned = true;
                    self.poison_notice = true;
                    break;
                }
            };
            moved = true;
            if !on_frame(&mut self.slots[w], &mut self.jobs, &frame) {
                self.slots[w].poisoned = true;
                self.poison_notice = true;
            }
        }
        self.slots[w].rx = Some(rx);
        moved
    }

    /// Hands pending chunks to workers; true if any was sent.
    fn dispatch(&mut self, mem: &PoolMem) -> bool {
        let mut moved = false;
        let mut full = vec![false; self.slots.len()];
        while let Some(&(job_id, cid)) = self.pending.front() {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                self.pending.pop_front();
                continue;
            };
            let (runner, func) = (job.runner, job.func);
            let Some(chunk) = job.chunk_mut(cid) else {
                self.pending.pop_front();
                continue;
            };
            if chunk.status != ChunkStatus::Pending {
                self.pending.pop_front();
                continue;
            }
            let pick = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    s.state == SlotState::Running
                        && !s.poisoned
                        && !full[*i]
                        && s.tx.is_some()
                        && s.inflight.len() < s.depth
                })
                .min_by_key(|(_, s)| s.inflight.len())
                .map(|(i, _)| i);
            let Some(w) = pick else {
                break;
            };
            let slot = &mut self.slots[w];
            let tx = slot.tx.as_mut().expect("filtered on tx");
            let head = TaskHead {
                job: job_id,
                chunk: cid,
                runner,
                func,
                count: chunk.count,
                _reserved: 0,
            };
            match tx.try_reserve(TASK_HEAD + chunk.input.len()) {
                Ok(mut frame) => {
                    frame[..TASK_HEAD].copy_from_slice(bytemuck::bytes_of(&head));
                    frame[TASK_HEAD..].copy_from_slice(&chunk.input);
                    frame.commit();
                }
                Err(SendError::Full) => {
                    full[w] = true;
                    continue;
                }
                Err(SendError::Disconnected) => {
                    // The worker is gone; the watcher will say so.
                    full[w] = true;
                    continue;
                }
                Err(SendError::TooLarge { len, .. }) => {
                    // Chunks are cut to fit; only a bug gets here.
                    chunk.failed = Some(TaskError::ItemTooLarge {
                        len: len as usize,
                        max: self.geo.max_frame as usize - TASK_HEAD,
                    });
                    job.finish(cid);
                    self.pending.pop_front();
                    continue;
                }
            }
            chunk.status = ChunkStatus::Dispatched(w);
            if slot.inflight.is_empty() {
                slot.busy_since = Some(Instant::now());
            }
            slot.inflight.push_back(((job_id, cid), slot.sent));
            slot.sent = slot.sent.wrapping_add(1);
            self.pending.pop_front();
            moved = true;
        }
        if self.pending.is_empty() && self.steal(mem) {
            moved |= self.dispatch(mem);
        }
        moved
    }

    /// Takes back the chunks queued behind a long-running one, when another
    /// worker is idle; true if any was taken back (they are pending again).
    fn steal(&mut self, mem: &PoolMem) -> bool {
        let idle = self.slots.iter().any(|s| {
            s.state == SlotState::Running && !s.poisoned && s.tx.is_some() && s.inflight.is_empty()
        });
        if !idle {
            return false;
        }
        let now = Instant::now();
        let mut taken = Vec::new();
        for (w, slot) in self.slots.iter_mut().enumerate() {
            let stuck = slot.inflight.len() >= 2
                && slot
                    .busy_since
                    .is_some_and(|t| now.duration_since(t) >= STEAL_AFTER);
            if !stuck {
                continue;
            }
            let Some(first) = mem.row(w).gate.revoke(slot.sent) else {
                continue;
            };
            // Frames numbered `first` and above will be skipped by the
            // worker: they are ours again.
            while slot
                .inflight
                .back()
                .is_some_and(|&(_, n)| n.wrapping_sub(first) as i32 >= 0)
            {
                let (id, _) = slot.inflight.pop_back().expect("checked");
                taken.push(id);
            }
        }
        let any = !taken.is_empty();
        for (job_id, cid) in taken {
            if let Some(c) = self.jobs.get_mut(&job_id).and_then(|j| j.chunk_mut(cid)) {
                c.status = ChunkStatus::Pending;
                self.pending.push_front((job_id, cid));
            }
        }
        any
    }

    /// Workers whose rings sent garbage, to be killed.
    pub(crate) fn poisoned(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&w| self.slots[w].poisoned && self.slots[w].state == SlotState::Running)
            .collect()
    }

    /// Worker `w` ended (`exitcode` as Python's, if known). Drains what it
    /// sent, fails or requeues what it held, and empties its rings for the
    /// next worker.
    pub(crate) fn on_death(&mut self, mem: &PoolMem, w: usize, exitcode: Option<i32>) {
        if self.slots[w].state != SlotState::Running {
            return;
        }
        self.drain(w);
        let claimed = mem.row(w).gate.claimed();
        let slot = &mut self.slots[w];
        let pid = slot.pid;
        let held: Vec<((u64, u64), u32)> = slot.inflight.drain(..).collect();
        let mut requeue = Vec::new();
        for &((job_id, cid), n) in &held {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            let Some(chunk) = job.chunk_mut(cid) else {
                continue;
            };
            chunk.status = ChunkStatus::Pending;
            // Claimed and unanswered: it was running (a worker runs one
            // chunk at a time, so at most one is). Unclaimed: never ran.
            if n.wrapping_sub(claimed) as i32 <= -1 {
                chunk.attempts += 1;
                let retry = !self.terminated
                    && matches!(self.lost, LostTasks::Retry(r) if chunk.attempts <= r);
                if !retry {
                    chunk.failed = Some(if self.terminated {
                        TaskError::Terminated
                    } else {
                        TaskError::WorkerLost { pid, exitcode }
                    });
                    job.finish(cid);
                    continue;
                }
            }
            requeue.push((job_id, cid));
        }
        for id in requeue.into_iter().rev() {
            self.pending.push_front(id);
        }
        self.vacate(mem, w);
    }

    /// Drops this process's handles on worker `w`'s rings and makes them
    /// empty for a new worker.
    pub(crate) fn vacate(&mut self, mem: &PoolMem, w: usize) {
        let slot = &mut self.slots[w];
        slot.tx = None;
        slot.rx = None;
        slot.state = SlotState::Empty;
        slot.pid = 0;
        slot.inflight.clear();
        slot.sent = 0;
        slot.completed = 0;
        slot.busy_since = None;
        slot.poisoned = false;
        slot.depth = FIRST_DEPTH;
        slot.ewma_ns = 0.0;
        let row = mem.row(w);
        row.gate.reset();
        row.holding.store(0, std::sync::atomic::Ordering::Relaxed);
        row.identity.store(0, std::sync::atomic::Ordering::Relaxed);
        for dir in [Dir::Task, Dir::Result] {
            // SAFETY: the worker is dead (or was never started), and the
            // handles of this process on the rings were dropped above.
            if let Err(e) = unsafe { mem.reset_ring(w, dir) } {
                self.broken = Some(format!("cannot reset a ring: {e}"));
            }
        }
    }

    /// Takes this process's roles on worker `w`'s (empty) rings before a
    /// worker is started there.
    pub(crate) fn prepare_start(&mut self, mem: &PoolMem, w: usize) -> Result<(), PoolError> {
        let tx = mem.ring(w, Dir::Task)?.sender();
        let rx = mem.ring(w, Dir::Result)?.receiver();
        match (tx, rx) {
            (Ok(tx), Ok(rx)) => {
                let slot = &mut self.slots[w];
                slot.tx = Some(tx);
                slot.rx = Some(rx);
                slot.state = SlotState::Starting;
                Ok(())
            }
            _ => Err(PoolError::InvalidConfig("a pool ring is taken".into())),
        }
    }

    /// The worker for slot `w` runs as `pid`.
    pub(crate) fn started(&mut self, w: usize, pid: u32) {
        let slot = &mut self.slots[w];
        if slot.state == SlotState::Starting {
            slot.state = SlotState::Running;
            slot.pid = pid;
        }
    }

    /// The start of slot `w`'s worker failed.
    pub(crate) fn start_failed(&mut self, mem: &PoolMem, w: usize, why: String) {
        self.slots[w].state = SlotState::Running;
        self.on_death(mem, w, None);
        if self.slots.iter().all(|s| s.state == SlotState::Empty) {
            self.broken = Some(why);
        }
    }

    /// Stops sending work: drops the task senders, so that each worker
    /// leaves once its queue is empty (close, then join).
    pub(crate) fn release_workers(&mut self) {
        for s in &mut self.slots {
            s.tx = None;
        }
    }

    /// Whether every slot is empty (all workers gone).
    pub(crate) fn all_gone(&self) -> bool {
        self.slots.iter().all(|s| s.state == SlotState::Empty)
    }
}

/// Applies one result frame from `slot`'s worker; false if it is
/// malformed (the worker is then killed).
fn on_frame(slot: &mut Slot, jobs: &mut HashMap<u64, Job>, frame: &[u8]) -> bool {
    let Some((head, mut body)) = read_head::<ResultHead>(frame) else {
        return false;
    };
    let Some(&((job_id, cid), _)) = slot.inflight.front() else {
        return false;
    };
    if head.job != job_id || head.chunk != cid || head.last > 1 {
        return false;
    }
    let mut chunk = jobs
        .get_mut(&job_id)
        .and_then(|j| j.chunk_mut(cid))
        .filter(|c| matches!(c.status, ChunkStatus::Dispatched(_)));
    if let Some(c) = &chunk {
        if u64::from(head.first) + u64::from(head.count) > u64::from(c.count) {
            return false;
        }
    }
    for i in 0..head.count {
        let Some((o, rest)) = next_outcome(body) else {
            return false;
        };
        body = rest;
        if let Some(c) = chunk.as_deref_mut() {
            // A retried chunk sends its first outcomes again: keep one.
            if head.first + i == c.got {
                c.blob.push(o.tag);
                c.blob
                    .extend_from_slice(&(o.bytes.len() as u32).to_le_bytes());
                c.blob.extend_from_slice(o.bytes);
                c.got += 1;
            } else if head.first + i > c.got {
                return false;
            }
        }
    }
    if !body.is_empty() {
        return false;
    }
    if head.last == 1 {
        slot.inflight.pop_front();
        slot.completed += 1;
        let now = Instant::now();
        // The worker's own measure of the chunk: the owner's clock would
        // count the time it took to look.
        let sample = f64::from(head.run_ns.max(1));
        slot.ewma_ns = if slot.completed == 1 {
            sample
        } else {
            0.8 * slot.ewma_ns + 0.2 * sample
        };
        let want = QUEUED_WORK.as_nanos() as f64 / slot.ewma_ns;
        slot.depth = (want as usize).clamp(2, MAX_DEPTH);
        slot.busy_since = (!slot.inflight.is_empty()).then_some(now);
        if let Some(job) = jobs.get_mut(&job_id) {
            if let Some(c) = job.chunk_mut(cid) {
                if c.got < c.count {
                    c.failed = Some(TaskError::Codec(
                        "the worker sent fewer outcomes than items".into(),
                    ));
                }
            }
            job.finish(cid);
        }
    }
    true
}

impl Shared {
    pub(crate) fn new(mem: PoolMem, lost: LostTasks, ctl: std::os::fd::OwnedFd) -> Self {
        let geo = mem.geometry();
        Self {
            ctl: Mutex::new(Some(ctl)),
            state: Mutex::new(State {
                slots: (0..geo.workers).map(|_| Slot::new()).collect(),
                pending: VecDeque::new(),
                jobs: HashMap::new(),
                next_job: 1,
                closed: false,
                terminated: false,
                broken: None,
                waiters: 0,
                poison_notice: false,
                lost,
                geo,
            }),
            mem,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `what` to the watcher (a byte of [`ctl`]), if it
    /// still runs.
    pub(crate) fn poke(&self, what: u8) {
        use std::os::fd::AsFd;
        let ctl = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fd) = ctl.as_ref() {
            let _ = crate::sys::write_all(fd.as_fd(), &[what]);
        }
    }

    /// Closes the control pipe (the watcher has left).
    pub(crate) fn close_ctl(&self) {
        *self.ctl.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Pumps, and wakes the watcher if the pump found a worker to kill.
    fn pump_and_report(&self, st: &mut State) -> bool {
        let moved = st.pump(&self.mem);
        if std::mem::take(&mut st.poison_notice) {
            self.poke(ctl::POKE);
        }
        moved
    }

    /// Wakes every thread waiting for results.
    pub(crate) fn ring_doorbell(&self) {
        self.mem.control().doorbell.0.notify_all();
    }

    /// The largest encoded item a chunk may carry.
    pub(crate) fn max_payload(&self) -> usize {
        self.mem.geometry().max_frame as usize - TASK_HEAD
    }

    /// The largest encoded result a worker can send.
    pub(crate) fn max_result(&self) -> usize {
        self.mem.geometry().max_frame as usize - super::layout::RESULT_HEAD - OUTCOME_HEAD
    }

    /// Pumps until `check` returns `Some`, or `deadline` passes: spins a
    /// little while results flow, then sleeps on the doorbell.
    pub(crate) fn wait_for<X>(
        &self,
        deadline: Option<Instant>,
        mut check: impl FnMut(&mut State) -> Option<X>,
    ) -> Result<X, PoolError> {
        const SPIN: Duration = Duration::from_micros(50);
        let doorbell = &self.mem.control().doorbell.0;
        let mut st = self.lock();
        st.waiters += 1;
        let mut idle_since = Instant::now();
        let out = loop {
            if self.pump_and_report(&mut st) {
                idle_since = Instant::now();
            }
            if let Some(x) = check(&mut st) {
                break Ok(x);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Err(PoolError::Timeout);
            }
            if idle_since.elapsed() < SPIN {
                drop(st);
                std::hint::spin_loop();
                std::thread::yield_now();
                st = self.lock();
                continue;
            }
            let key = doorbell.prepare_wait();
            self.pump_and_report(&mut st);
            if let Some(x) = check(&mut st) {
                doorbell.cancel_wait(key);
                break Ok(x);
            }
            drop(st);
            let d = deadline.map(|d| {
                multiproc_core::time::Deadline::after(d.saturating_duration_since(Instant::now()))
            });
            doorbell.wait(key, d);
            st = self.lock();
            idle_since = Instant::now();
        };
        st.waiters -= 1;
        out
    }
}

/// For the fuzz target `pool_frames` (see `pool::fuzz`): feeds `frames` as
/// worker 0's result frames for one dispatched chunk of `count` items
/// (job 1, chunk 0), as the owner does. Returns whether every frame was
/// accepted, and the chunk once it finished (`None` while it has not).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fuzz_feed_result_frames(frames: &[&[u8]], count: u32) -> (bool, Option<Chunk>) {
    let mut slot = Slot::new();
    slot.state = SlotState::Running;
    slot.inflight.push_back(((1, 0), 0));
    let mut job = Job::new(0, 0, false);
    let mut chunk = Chunk::new(0, count, Vec::new());
    chunk.status = ChunkStatus::Dispatched(0);
    job.chunks.push_back(chunk);
    job.input_done = true;
    let mut jobs = HashMap::new();
    jobs.insert(1u64, job);
    let mut accepted = true;
    for f in frames {
        if !on_frame(&mut slot, &mut jobs, f) {
            accepted = false;
            break;
        }
    }
    let mut job = jobs.remove(&1).expect("job 1");
    let c = job.chunk(0).expect("one chunk");
    assert!(c.got <= c.count, "more outcomes than items");
    if !job.finished() {
        return (accepted, None);
    }
    (accepted, job.chunks.pop_front())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_trims_consumed_chunks_and_finds_by_id() {
        let mut j = Job::new(0, 0, false);
        for i in 0..4 {
            j.chunks.push_back(Chunk::new(i, 1, vec![]));
        }
        j.chunks[0].consumed = true;
        j.chunks[1].consumed = true;
        j.trim();
        assert_eq!(j.base, 2);
        assert_eq!(j.chunk(3).map(|c| c.first_item), Some(3));
        assert!(j.chunk(1).is_none());
        assert_eq!(j.len(), 4);
    }
}
