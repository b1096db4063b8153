//! Chunks already encoded, for the MPI pool's worker ranks (feature
//! `mpi`): a rank hands the bytes it got from the master to its local pool
//! as they are (the worker decodes them), and takes the encoded outcomes
//! back as they are (the master decodes them), so nothing is decoded and
//! encoded again in between.

use std::time::Instant;

use super::error::{PoolError, TaskError};
use super::result::{chunk_outcomes, hopeless};
use super::state::ctl;
use super::state::{Chunk, Job};
use super::Pool;

pub(crate) use super::result::EncodedOutcome;

impl Pool {
    /// The most bytes the items of one piece given to
    /// [`submit_encoded`](Self::submit_encoded) may take.
    pub(crate) fn max_piece_bytes(&self) -> usize {
        self.shared.max_payload()
    }

    /// Adds a background job of pre-encoded pieces: `(count, items)`, the
    /// items back to back as the pool's encoder writes them, each piece
    /// run as one chunk with the runner and function at these offsets
    /// (`func::offset_of` of a `Runner` instance and of its `fn`). A piece
    /// larger than [`max_piece_bytes`](Self::max_piece_bytes) cannot be
    /// sent: its items fail with [`TaskError::ItemTooLarge`]. Returns the
    /// job's id, for [`take_encoded`](Self::take_encoded).
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Broken`].
    pub(crate) fn submit_encoded(
        &self,
        runner: u64,
        func: u64,
        pieces: Vec<(u32, Vec<u8>)>,
    ) -> Result<u64, PoolError> {
        let max = self.shared.max_payload();
        let mut chunks = Vec::with_capacity(pieces.len());
        let mut first = 0u64;
        for (count, items) in pieces {
            if items.len() > max {
                for i in 0..u64::from(count) {
                    let error = TaskError::ItemTooLarge {
                        len: items.len(),
                        max,
                    };
                    chunks.push(Chunk::failed(first + i, error));
                }
            } else {
                chunks.push(Chunk::new(first, count, items));
            }
            first += u64::from(count);
        }
        let mut st = self.shared.lock();
        let id = st.add_job(Job::new(runner, func, true))?;
        st.add_chunks(id, chunks, true);
        st.pump(&self.shared.mem);
        drop(st);
        self.poke(ctl::POKE);
        Ok(id)
    }

    /// Waits until one of `jobs` has finished, or `deadline`; hands every
    /// finished one's outcomes, in item order, to `each(job, outcome)`
    /// (`Ok`: the result, encoded), and forgets that job. Returns how many
    /// jobs were taken (0 at the deadline).
    ///
    /// # Errors
    ///
    /// When the pool cannot run work any more ([`PoolError::Broken`], or
    /// terminated).
    pub(crate) fn take_encoded(
        &self,
        jobs: &[u64],
        deadline: Option<Instant>,
        each: &mut dyn FnMut(u64, EncodedOutcome<'_>),
    ) -> Result<usize, PoolError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let max_result = self.shared.max_result();
        let r = self.shared.wait_for(deadline, |st| {
            let mut taken = 0;
            for &id in jobs {
                if !st.jobs.get(&id).is_some_and(Job::finished) {
                    continue;
                }
                let Some(job) = st.jobs.remove(&id) else {
                    continue;
                };
                taken += 1;
                for c in &job.chunks {
                    chunk_outcomes(c, max_result, &mut |o| each(id, o));
                }
            }
            if taken > 0 {
                return Some(Ok(taken));
            }
            hopeless(st).map(Err)
        });
        match r {
            Ok(r) => r,
            Err(PoolError::Timeout) => Ok(0),
            Err(e) => Err(e),
        }
    }
}
