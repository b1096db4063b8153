//! What a caller of the MPI pool holds while a job runs: [`AsyncResult`]
//! and the [`Imap`] iterator, and the encoding of items into chunks and the
//! decoding of outcomes into typed results.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::master::{Chunk, Shared, State};
use super::wire::RawOutcome;
use crate::pool::result::first_error;
use crate::pool::{PoolError, TaskError};

/// Cuts items into chunks of up to `chunksize`, encoded back to back.
#[derive(Debug)]
pub(crate) struct Encoder {
    pub(crate) job: u64,
    pub(crate) runner: u64,
    pub(crate) func: u64,
    pub(crate) local_runner: u64,
    pub(crate) chunksize: usize,
    pub(crate) next_item: u64,
}

impl Encoder {
    /// The next chunk of up to `chunksize` items (`None` when the input is
    /// exhausted), and whether the input ended. An item that cannot be
    /// encoded is an error for the whole call.
    pub(crate) fn next_chunk<T: Serialize>(
        &mut self,
        input: &mut impl Iterator<Item = T>,
    ) -> Result<(Option<Chunk>, bool), PoolError> {
        let mut items = Vec::new();
        let mut count = 0u32;
        let mut exhausted = false;
        while (count as usize) < self.chunksize {
            let Some(item) = input.next() else {
                exhausted = true;
                break;
            };
            items = postcard::to_extend(&item, items).map_err(|e| PoolError::Task {
                index: self.next_item + u64::from(count),
                error: TaskError::Codec(format!("cannot encode the item: {e}")),
            })?;
            count += 1;
        }
        let chunk = (count > 0).then_some(Chunk {
            job: self.job,
            first: self.next_item,
            count,
            runner: self.runner,
            func: self.func,
            local_runner: self.local_runner,
            items,
        });
        self.next_item += u64::from(count);
        Ok((chunk, exhausted))
    }
}

/// Decodes one outcome.
pub(crate) fn decode<R: DeserializeOwned>(o: RawOutcome) -> Result<R, TaskError> {
    let bytes = o?;
    postcard::from_bytes::<R>(&bytes)
        .map_err(|e| TaskError::Codec(format!("cannot decode the result: {e}")))
}

/// Takes the outcomes of finished job `id` out of the state, in order.
pub(crate) fn take_all<R: DeserializeOwned>(st: &mut State, id: u64) -> Vec<Result<R, TaskError>> {
    let Some(job) = st.jobs.remove(&id) else {
        return Vec::new();
    };
    job.ready.into_values().map(decode::<R>).collect()
}

/// The result of an asynchronous call ([`Pool::map_async`](super::Pool::map_async),
/// [`Pool::apply_async`](super::Pool::apply_async)), as Python's
/// `AsyncResult` (and mpi4py's `Future`). The job runs whether or not
/// anyone waits; dropping the handle abandons its results.
#[must_use = "dropping an AsyncResult abandons its job"]
pub struct AsyncResult<T> {
    shared: Arc<Shared>,
    job: u64,
    finish: fn(Vec<RawOutcome>) -> Result<T, PoolError>,
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

fn finish_map<R: DeserializeOwned>(all: Vec<RawOutcome>) -> Result<Vec<R>, PoolError> {
    first_error(all.into_iter().map(decode::<R>).collect())
}

fn finish_apply<R: DeserializeOwned>(all: Vec<RawOutcome>) -> Result<R, PoolError> {
    finish_map::<R>(all)?.pop().ok_or(PoolError::Task {
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
        let st = self.shared.lock();
        st.jobs.get(&self.job).is_none_or(|j| j.finished())
    }

    /// Waits for the job to finish, or for the pool to fail.
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
                Some(_) => st.hopeless().map(Err),
            })?
    }

    /// Waits for the job and returns its result (Python's `get()`).
    ///
    /// # Errors
    ///
    /// [`PoolError::Task`] for the first task that failed;
    /// [`PoolError::Broken`] or [`PoolError::Closed`] if the pool stopped
    /// before the job ended.
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
        let all = self
            .shared
            .wait_for(deadline, |st| match st.jobs.get(&id) {
                Some(j) if j.finished() => st
                    .jobs
                    .remove(&id)
                    .map(|j| Ok(j.ready.into_values().collect::<Vec<_>>())),
                Some(_) => st.hopeless().map(Err),
                None => Some(Err(PoolError::Closed)),
            })??;
        self.taken = true;
        (self.finish)(all)
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
/// `Result<R, TaskError>` per item, reading the input lazily (a window of
/// chunks in flight). Dropping it abandons the rest of the job.
pub struct Imap<T, R, I> {
    shared: Arc<Shared>,
    job: u64,
    input: I,
    encoder: Encoder,
    window: u64,
    ordered: bool,
    next_index: u64,
    exhausted: bool,
    /// The pool stopped: the iteration ended with an error.
    failed: bool,
    _types: PhantomData<fn(T) -> R>,
}

impl<T, R, I> fmt::Debug for Imap<T, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("job", &self.job)
            .field("ordered", &self.ordered)
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl<T, R, I> Imap<T, R, I> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        encoder: Encoder,
        input: I,
        window: u64,
        ordered: bool,
    ) -> Self {
        Self {
            shared,
            job: encoder.job,
            input,
            encoder,
            window: window.max(1),
            ordered,
            next_index: 0,
            exhausted: false,
            failed: false,
            _types: PhantomData,
        }
    }
}

impl<T, R, I> Imap<T, R, I>
where
    T: Serialize,
    I: Iterator<Item = T>,
{
    /// Keeps `window` chunks in flight.
    fn top_up(&mut self) -> Result<(), PoolError> {
        if self.exhausted {
            return Ok(());
        }
        let room = {
            let st = self.shared.lock();
            let Some(job) = st.jobs.get(&self.job) else {
                return Ok(());
            };
            self.window.saturating_sub(job.chunks_out)
        };
        let mut chunks = Vec::new();
        for _ in 0..room {
            let (c, end) = self.encoder.next_chunk(&mut self.input)?;
            chunks.extend(c);
            if end {
                self.exhausted = true;
                break;
            }
        }
        if !chunks.is_empty() || self.exhausted {
            self.shared
                .lock()
                .add_chunks(self.job, chunks, self.exhausted);
            self.shared.poke();
        }
        Ok(())
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
        if self.failed {
            return None;
        }
        if let Err(e) = self.top_up() {
            // An item that cannot be encoded ends the iteration with it.
            self.failed = true;
            self.shared.lock().drop_job(self.job);
            return Some(Err(match e {
                PoolError::Task { error, .. } => error,
                other => TaskError::Codec(other.to_string()),
            }));
        }
        let id = self.job;
        let ordered = self.ordered;
        let want = self.next_index;
        let got = self.shared.wait_for(None, |st| {
            let hopeless = st.hopeless();
            let job = st.jobs.get_mut(&id)?;
            let taken = if ordered {
                job.ready.remove(want)
            } else {
                job.ready.pop_first()
            };
            match taken {
                Some(o) => Some(Some(Ok(o))),
                None if job.finished() => Some(None),
                None if job.chunks_out == 0 => Some(None),
                None => hopeless.map(|e| Some(Err(e))),
            }
        });
        match got {
            Ok(Some(Ok(o))) => {
                self.next_index += 1;
                Some(decode::<R>(o))
            }
            Ok(Some(Err(_))) | Err(_) => {
                // The pool stopped (terminated, or broken): the rest of
                // the items cannot come.
                self.failed = true;
                Some(Err(TaskError::Terminated))
            }
            Ok(None) => None,
        }
    }
}

impl<T, R, I> Drop for Imap<T, R, I> {
    fn drop(&mut self) {
        self.shared.lock().drop_job(self.job);
    }
}
