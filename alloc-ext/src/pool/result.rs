//! What a caller holds while a job runs: [`AsyncResult`] and the
//! [`Imap`] iterator, and the decoding of outcomes into typed results.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::chunking::Encoder;
use super::error::{PoolError, TaskError};
use super::layout::{next_outcome, tag};
use super::state::{Chunk, Shared, State};

/// Decodes the outcomes of a finished chunk, appending one result per item.
pub(crate) fn decode_chunk<R: DeserializeOwned>(
    c: &Chunk,
    max_result: usize,
    out: &mut impl Extend<Result<R, TaskError>>,
) {
    chunk_outcomes(c, max_result, &mut |o| {
        out.extend(Some(o.and_then(|bytes| {
            postcard::from_bytes::<R>(bytes)
                .map_err(|e| TaskError::Codec(format!("cannot decode the result: {e}")))
        })));
    });
}

/// One item's outcome as a worker sent it: the result, encoded, or why
/// there is none.
pub(crate) type EncodedOutcome<'b> = Result<&'b [u8], TaskError>;

/// The outcomes of a finished chunk, one per item, each result still
/// encoded (its postcard bytes) or the item's error.
pub(crate) fn chunk_outcomes(
    c: &Chunk,
    max_result: usize,
    each: &mut dyn FnMut(EncodedOutcome<'_>),
) {
    let mut body = &c.blob[..];
    for _ in 0..c.got {
        let Some((o, rest)) = next_outcome(body) else {
            // Validated when it arrived; unreachable, but never a panic.
            each(Err(TaskError::Codec("truncated outcome".into())));
            continue;
        };
        body = rest;
        let text = || String::from_utf8_lossy(o.bytes).into_owned();
        each(match o.tag {
            tag::OK => Ok(o.bytes),
            tag::PANICKED => Err(TaskError::Panicked(text())),
            tag::TOO_LARGE => Err(TaskError::ResultTooLarge {
                len: o
                    .bytes
                    .try_into()
                    .map(u64::from_le_bytes)
                    .unwrap_or(u64::MAX) as usize,
                max: max_result,
            }),
            _ => Err(TaskError::Codec(text())),
        });
    }
    for _ in c.got..c.count {
        each(Err(c.failed.clone().unwrap_or(TaskError::Terminated)));
    }
}

/// Why a wait cannot succeed any more, if it cannot.
pub(crate) fn hopeless(st: &State) -> Option<PoolError> {
    if st.terminated {
        return Some(PoolError::Task {
            index: 0,
            error: TaskError::Terminated,
        });
    }
    match &st.broken {
        Some(msg) if st.all_gone() => Some(PoolError::Broken(msg.clone())),
        _ => None,
    }
}

/// Every item's outcome of finished job `id`, in input order; removes
/// the job.
pub(crate) fn take_all<R: DeserializeOwned>(
    st: &mut State,
    id: u64,
    max_result: usize,
) -> Vec<Result<R, TaskError>> {
    let mut out = Vec::new();
    if let Some(job) = st.jobs.remove(&id) {
        for c in &job.chunks {
            decode_chunk(c, max_result, &mut out);
        }
    }
    out
}

/// The first failure of a job's outcomes as a [`PoolError`], else the
/// values.
pub(crate) fn first_error<R>(all: Vec<Result<R, TaskError>>) -> Result<Vec<R>, PoolError> {
    let mut out = Vec::with_capacity(all.len());
    for (i, r) in all.into_iter().enumerate() {
        match r {
            Ok(v) => out.push(v),
            Err(error) => {
                return Err(PoolError::Task {
                    index: i as u64,
                    error,
                })
            }
        }
    }
    Ok(out)
}

/// The result of an asynchronous call ([`Pool::map_async`](super::Pool::map_async),
/// [`Pool::apply_async`](super::Pool::apply_async)), as Python's
/// `AsyncResult`. The job runs whether or not anyone waits; dropping the
/// handle abandons the job's results (its tasks already sent still run).
#[must_use = "dropping an AsyncResult abandons its job"]
pub struct AsyncResult<T> {
    shared: Arc<Shared>,
    job: u64,
    /// Takes the finished job out of the state as a `T`.
    finish: fn(&mut State, u64, usize) -> Result<T, PoolError>,
    taken: bool,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .field("taken", &self.taken)
            .finish()
    }
}

fn finish_map<R: DeserializeOwned>(
    st: &mut State,
    id: u64,
    max_result: usize,
) -> Result<Vec<R>, PoolError> {
    first_error(take_all::<R>(st, id, max_result))
}

fn finish_apply<R: DeserializeOwned>(
    st: &mut State,
    id: u64,
    max_result: usize,
) -> Result<R, PoolError> {
    first_error(take_all::<R>(st, id, max_result))?
        .pop()
        .ok_or(PoolError::Task {
            index: 0,
            error: TaskError::Terminated,
        })
}

impl<R: DeserializeOwned> AsyncResult<Vec<R>> {
    pub(crate) fn for_map(shared: Arc<Shared>, job: u64) -> Self {
        Self {
            shared,
            job,
            finish: finish_map::<R>,
            taken: false,
        }
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    pub(crate) fn for_apply(shared: Arc<Shared>, job: u64) -> Self {
        Self {
            shared,
            job,
            finish: finish_apply::<R>,
            taken: false,
        }
    }
}

impl<T> AsyncResult<T> {
    /// Whether the job has finished (Python's `ready()`).
    pub fn ready(&self) -> bool {
        let mut st = self.shared.lock();
        st.pump(&self.shared.mem);
        st.jobs.get(&self.job).is_none_or(|j| j.finished())
    }

    /// Whether the job finished and every task succeeded (Python's
    /// `successful()`); `None` while it runs.
    pub fn successful(&self) -> Option<bool> {
        let mut st = self.shared.lock();
        st.pump(&self.shared.mem);
        let job = st.jobs.get(&self.job)?;
        if !job.finished() {
            return None;
        }
        Some(job.chunks.iter().all(|c| {
            c.failed.is_none() && {
                let mut body = &c.blob[..];
                (0..c.got).all(|_| match next_outcome(body) {
                    Some((o, rest)) => {
                        body = rest;
                        o.tag == tag::OK
                    }
                    None => false,
                })
            }
        }))
    }

    /// Waits for the job to finish.
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// Waits at most `timeout`; whether the job has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout)).is_ok()
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<(), PoolError> {
        let id = self.job;
        self.shared
            .wait_for(deadline, |st| match st.jobs.get(&id) {
                None => Some(Ok(())),
                Some(j) if j.finished() => Some(Ok(())),
                Some(_) => hopeless(st).map(Err),
            })?
    }

    /// Waits for the job and returns its result (Python's `get()`).
    ///
    /// # Errors
    ///
    /// [`PoolError::Task`] for the first task that failed (its index and
    /// [`TaskError`]); [`PoolError::Broken`] if no worker can run it.
    pub fn get(mut self) -> Result<T, PoolError> {
        self.get_until(None)
    }

    /// As [`get`](Self::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`PoolError::Timeout`]: the job goes on,
    /// and this handle can wait again. Once a result was returned, a
    /// further call returns [`PoolError::Closed`].
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T, PoolError> {
        self.get_until(Instant::now().checked_add(timeout))
    }

    fn get_until(&mut self, deadline: Option<Instant>) -> Result<T, PoolError> {
        if self.taken {
            return Err(PoolError::Closed);
        }
        let id = self.job;
        let max = self.shared.max_result();
        let finish = self.finish;
        let r = self
            .shared
            .wait_for(deadline, |st| match st.jobs.get(&id) {
                Some(j) if j.finished() => Some(finish(st, id, max)),
                Some(_) => hopeless(st).map(Err),
                None => Some(Err(PoolError::Closed)),
            })?;
        self.taken = true;
        r
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        if !self.taken {
            self.shared.lock().drop_job(self.job);
        }
    }
}

/// The iterator of [`Pool::imap`](super::Pool::imap) and
/// [`Pool::imap_unordered`](super::Pool::imap_unordered): one
/// `Result<R, TaskError>` per input item, in input order (`imap`) or as
/// they finish (`imap_unordered`).
///
/// It reads its input lazily: at most `(workers + imap_buffer) ×
/// chunksize` items ahead of what it has yielded, so an endless input
/// works. A failed item does not end the iteration. Dropping it abandons
/// the rest of the job.
#[must_use = "an Imap does nothing unless iterated"]
pub struct Imap<T, R, I> {
    shared: Arc<Shared>,
    job: u64,
    input: Option<I>,
    encoder: Encoder,
    window: u64,
    ordered: bool,
    /// Ordered: the next chunk to yield.
    cursor: u64,
    consumed: u64,
    buffer: VecDeque<Result<R, TaskError>>,
    failed: Option<PoolError>,
    ended: bool,
    _t: PhantomData<fn(T) -> R>,
}

impl<T, R, I> fmt::Debug for Imap<T, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("job", &self.job)
            .field("ordered", &self.ordered)
            .field("consumed_chunks", &self.consumed)
            .finish()
    }
}

impl<T, R, I> Imap<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        job: u64,
        input: I,
        encoder: Encoder,
        window: u64,
        ordered: bool,
    ) -> Self {
        Self {
            shared,
            job,
            input: Some(input),
            encoder,
            window: window.max(1),
            ordered,
            cursor: 0,
            consumed: 0,
            buffer: VecDeque::new(),
            failed: None,
            ended: false,
            _t: PhantomData,
        }
    }

    /// Reads input chunks while the window has room.
    fn feed(&mut self, added: u64) {
        let mut added = added;
        while added.saturating_sub(self.consumed) < self.window {
            let Some(input) = self.input.as_mut() else {
                break;
            };
            let (chunks, exhausted) = self.encoder.next_chunks(input);
            added += chunks.len() as u64;
            if exhausted {
                self.input = None;
            }
            self.shared
                .lock()
                .add_chunks(self.job, chunks, self.input.is_none());
        }
    }
}

impl<T, R, I> Iterator for Imap<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(r);
            }
            if self.ended {
                return None;
            }
            if let Some(e) = self.failed.take() {
                self.input = None;
                self.ended = true;
                return Some(Err(match e {
                    PoolError::Task { error, .. } => error,
                    other => TaskError::Codec(other.to_string()),
                }));
            }
            let added = self.shared.lock().jobs.get(&self.job)?.len();
            self.feed(added);
            let id = self.job;
            let (ordered, cursor, window, consumed) =
                (self.ordered, self.cursor, self.window, self.consumed);
            let feeding = self.input.is_some();
            let max = self.shared.max_result();
            let mut got: Vec<Result<R, TaskError>> = Vec::new();
            let r = self.shared.wait_for(None, |st| {
                if let Some(e) = hopeless(st) {
                    return Some(Err(e));
                }
                let Some(job) = st.jobs.get_mut(&id) else {
                    return Some(Ok(None));
                };
                let take = if ordered {
                    job.chunk(cursor)
                        .is_some_and(|c| c.status == super::state::ChunkStatus::Done)
                        .then_some(cursor)
                } else {
                    job.ready.pop_front()
                };
                if let Some(cid) = take {
                    if let Some(c) = job.chunk(cid) {
                        decode_chunk(c, max, &mut got);
                    }
                    if ordered {
                        job.ready.retain(|&x| x != cid);
                    }
                    let base = job.base;
                    if let Some(c) = job.chunks.get_mut((cid - base) as usize) {
                        c.consumed = true;
                        c.blob = Vec::new();
                    }
                    job.trim();
                    return Some(Ok(Some(())));
                }
                if job.finished() && !feeding {
                    return Some(Ok(None));
                }
                // Room to read more input: go back and feed.
                if feeding && job.len().saturating_sub(consumed) < window {
                    return Some(Ok(Some(())));
                }
                None
            });
            match r.and_then(|x| x) {
                Err(e) => {
                    self.failed = Some(e);
                }
                Ok(None) => {
                    self.shared.lock().drop_job(id);
                    self.ended = true;
                    return None;
                }
                Ok(Some(())) => {
                    if !got.is_empty() {
                        self.consumed += 1;
                        if self.ordered {
                            self.cursor += 1;
                        }
                    }
                    self.buffer.extend(got);
                }
            }
        }
    }
}

impl<T, R, I> Drop for Imap<T, R, I> {
    fn drop(&mut self) {
        self.shared.lock().drop_job(self.job);
    }
}
