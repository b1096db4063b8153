//! A pool of worker processes: Python's `multiprocessing.Pool` (`map`,
//! `imap`, `imap_unordered`, `starmap`, `apply`, `apply_async`,
//! `map_async`), for items and results of any serde type, that never hangs
//! when a worker dies.
//!
//! ```
//! use multiproc::pool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
//! // Any serde type, and non-capturing closures.
//! let lens = pool.map(|s: String| s.len(), vec!["a".to_string(), "bcd".into()])?;
//! assert_eq!(lens, vec![1, 3]);
//! let sum: u64 = pool.imap_unordered(square, 0..100)?.map(Result::unwrap).sum();
//! assert_eq!(sum, 328_350);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a task may be
//!
//! The function is a plain `fn(T) -> R`: a named function, or a closure
//! that captures nothing (it coerces to one). It crosses to the workers
//! as an address, not as data (see [`func`](self) in the source): under
//! `fork` the address is the same in the worker; under `spawn` and
//! `forkserver` the worker runs the same executable, in which the
//! function sits at the same offset (the pool checks that it belongs to
//! the main executable, not to a shared library, and refuses it
//! otherwise). A closure that captures state cannot cross like this: give
//! a worker state through [`Builder::initializer`] (run once per worker,
//! e.g. to fill a `static`), or pass it with every item (a tuple, with
//! [`starmap`](Pool::starmap)).
//!
//! Items and results are any `T: Serialize + DeserializeOwned`, encoded
//! with postcard: a `u64` takes 1 to 10 bytes, a `String` its length plus
//! one or two. A `Pod` value wrapped in [`Plain`](crate::Plain) crosses as
//! its bytes, copied at once (and arrays longer than serde's 32 work). One encoded item or result may take at most
//! [`Builder::max_message`] bytes (by default about 512 KiB); a larger
//! one fails with [`TaskError::ItemTooLarge`] or
//! [`TaskError::ResultTooLarge`], alone.
//!
//! # Results, Rust style
//!
//! `map` returns `Result<Vec<R>, PoolError>`: all the values in input
//! order, or the first failed item's [`PoolError::Task`] (its index and
//! [`TaskError`]), as `collect::<Result<Vec<_>, _>>()` would, and as
//! Python's `map` raises the first exception. [`Pool::map_results`]
//! returns every item's `Result<R, TaskError>` instead, for callers that
//! keep the good results of a partly failed job; the iterators of `imap`
//! and `imap_unordered` yield one `Result<R, TaskError>` per item, and go
//! on after a failure.
//!
//! # When a worker dies
//!
//! A worker that panics fails only the item it was running
//! ([`TaskError::Panicked`], with the message). A worker that dies
//! (`SIGKILL`, the OOM killer, a segfault, `abort`) fails only the chunk it
//! was running: its items not yet answered get [`TaskError::WorkerLost`]
//! (or run again, with [`LostTasks::Retry`]); the chunks queued to it run
//! on other workers; a new worker takes its place. The death is seen at
//! once (the watcher thread polls each worker's pidfd, or the zygote's
//! report of it), not by a timeout. Nothing in the pool's shared memory is
//! a lock: a worker killed in the middle of reading a task or writing a
//! result holds nothing that another process waits for. See `layout` in
//! the source for why each worker has its own pair of rings.
//!
//! # Start methods
//!
//! - `fork` (the default on Linux, as Python's): the pool forks, when it
//!   is made, one *zygote* process, single-threaded, that forks every
//!   worker (the first ones and the replacements) and reports their
//!   deaths. It needs the calling process to have no threads other than
//!   other pools' watchers (else [`ProcessError::ForkWithThreads`](crate::process::ProcessError::ForkWithThreads)
//!   through [`PoolError::Start`]; use `spawn`, `forkserver`, or the
//!   `unsafe` [`Builder::allow_fork_with_threads`]). As with any fork,
//!   workers hold what the process held when the pool was made: its
//!   memory (a `static` set before then is seen by every worker) and its
//!   open descriptors (a listening socket stays open in the workers until
//!   the pool ends: make the pool first, or use `spawn`).
//! - `spawn` and `forkserver`: each worker is a
//!   [`Process::entry`](crate::Process::entry) of the same executable,
//!   which must call [`crate::init`] first thing in `main`. The pool's
//!   segment is then a named one (`/dev/shm/mp-...`), unlinked when the
//!   pool ends ([`crate::shm::cleanup_leaked`] removes it if the owner
//!   was killed).
//!
//! Workers die with the pool: dropping it kills them, and so does the
//! death of the owner process, even by `SIGKILL` (the zygote watches the
//! owner's pidfd; a worker sees its task ring's owner gone; spawned
//! workers get a parent-death signal).
//!
//! # Python to multiproc
//!
//! | Python | multiproc |
//! |---|---|
//! | `Pool(4)` | [`Pool::new(4)`](Pool::new), [`Pool::builder`] |
//! | `Pool(initializer=f, maxtasksperchild=n)` | [`Builder::initializer`], [`Builder::max_tasks_per_child`] |
//! | `map(f, it, chunksize)` | [`Pool::map`], [`pool.chunksize(n).map(..)`](Pool::chunksize) |
//! | `map_async`, `apply_async` | [`Pool::map_async`], [`Pool::apply_async`] → [`AsyncResult`] |
//! | `imap`, `imap_unordered` | [`Pool::imap`], [`Pool::imap_unordered`] → [`Imap`] |
//! | `starmap` | [`Pool::starmap`] (pairs), [`Pool::starmap3`] (triples) |
//! | `apply` | [`Pool::apply`] |
//! | `close`, `join`, `terminate` | [`Pool::close`], [`Pool::join`], [`Pool::terminate`] (and `Drop`) |

mod chunking;
#[cfg(feature = "mpi")]
mod encoded;
mod error;
pub(crate) mod func;
mod layout;
pub(crate) mod result;
mod state;
mod watcher;
mod worker;
mod zygote;

/// Entry points for the fuzz targets (`crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::error::{PoolError, TaskError};
pub use self::layout::MAX_WORKERS;
pub use self::result::{AsyncResult, Imap};

use self::chunking::{default_chunksize, Encoder};
use self::func::{offset_of, Runner};
use self::layout::{Geometry, PoolMem};
use self::result::{first_error, hopeless, take_all};
use self::state::ctl;
use self::state::{Chunk, Job, Shared, SlotState};
use self::watcher::{Starter, Watcher};
use self::zygote::{Common, Zygote};
use crate::process::{get_start_method, StartMethod};
use crate::sys;

pub(crate) use self::worker::register_entry as register_worker_entry;

/// Default bytes of each of a worker's two rings.
pub const DEFAULT_RING_SIZE: u64 = 1 << 20;

/// Default chunks an [`Imap`] reads ahead beyond one per worker.
pub const DEFAULT_IMAP_BUFFER: usize = 32;

/// Watcher threads alive in this process (they may be present at a fork).
static WATCHERS: AtomicUsize = AtomicUsize::new(0);

/// What happens to the tasks of a chunk whose worker died while running
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LostTasks {
    /// They fail with [`TaskError::WorkerLost`] (the default).
    #[default]
    Fail,
    /// The chunk runs again on another worker, up to this many more times;
    /// then its items fail. Its function may so run more than once for an
    /// item: use it for functions that may.
    Retry(u32),
}

/// A pool of worker processes. See the [module docs](self).
pub struct Pool {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
    workers: usize,
    /// Functions must belong to the main executable (spawn, forkserver).
    same_object: bool,
    imap_buffer: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`Pool`]; from [`Pool::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build`"]
pub struct Builder {
    workers: Option<usize>,
    method: Option<StartMethod>,
    initializer: Option<fn()>,
    max_tasks: u64,
    ring_size: u64,
    lost: LostTasks,
    imap_buffer: usize,
    fork_with_threads: bool,
}

impl Builder {
    /// Number of workers (default [`cpu_count`](crate::cpu_count)).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// How workers start (default: [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// A function each worker runs once before its first task (Python's
    /// `initializer`); a plain `fn()`, as task functions. If it panics, the
    /// worker exits and is replaced (with a fresh run of the initializer).
    pub fn initializer(mut self, f: fn()) -> Self {
        self.initializer = Some(f);
        self
    }

    /// Chunks a worker runs before it is replaced by a fresh one (Python's
    /// `maxtasksperchild`; 0: no limit, the default).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = n;
        self
    }

    /// Bytes of each of a worker's two rings (a power of two, at least 1024;
    /// default [`DEFAULT_RING_SIZE`]). An encoded chunk or result frame may
    /// take half of it. Memory is taken page by page as used.
    pub fn ring_size(mut self, bytes: u64) -> Self {
        self.ring_size = bytes;
        self
    }

    /// Rings big enough for items and results of `bytes` bytes encoded.
    pub fn max_message(mut self, bytes: u64) -> Self {
        let need = (bytes + 128) * 2;
        self.ring_size = need.next_power_of_two().max(1024);
        self
    }

    /// What happens to a dead worker's running chunk (default
    /// [`LostTasks::Fail`]).
    pub fn lost_tasks(mut self, policy: LostTasks) -> Self {
        self.lost = policy;
        self
    }

    /// Chunks an [`Imap`] reads ahead beyond one per worker (default
    /// [`DEFAULT_IMAP_BUFFER`]).
    pub fn imap_buffer(mut self, chunks: usize) -> Self {
        self.imap_buffer = chunks;
        self
    }

    /// Lets the `fork` start method fork the zygote from a process with
    /// other threads.
    ///
    /// # Safety
    ///
    /// As [`process::Builder::allow_fork_with_threads`](crate::process::Builder::allow_fork_with_threads):
    /// no other thread holds, at the time of [`build`](Self::build), a lock
    /// that the initializer or a task function might take in a worker.
    pub unsafe fn allow_fork_with_threads(mut self) -> Self {
        self.fork_with_threads = true;
        self
    }

    /// Starts the workers.
    ///
    /// Returns once every worker runs (or the first start failed).
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidConfig`], [`PoolError::Shm`],
    /// [`PoolError::Start`] (e.g. `ForkWithThreads`),
    /// [`PoolError::Broken`] if no worker could start.
    pub fn build(self) -> Result<Pool, PoolError> {
        let workers = self.workers.unwrap_or_else(crate::cpu_count);
        let geo = Geometry::new(workers, self.ring_size)?;
        let method = self.method.unwrap_or_else(get_start_method);
        let same_object = method != StartMethod::Fork;
        if let Some(f) = self.initializer {
            if same_object && !func::same_object_as_anchor(f as usize) {
                return Err(not_in_executable());
            }
        }
        let common = Common {
            initializer: self.initializer.map(|f| offset_of(f as usize)),
            max_tasks: self.max_tasks,
        };
        let mem = PoolMem::create(geo, same_object)?;
        let (ctl_r, ctl_w) = sys::pipe_cloexec(0)?;
        let shared = Arc::new(Shared::new(mem, self.lost, ctl_w));
        let starter = if method == StartMethod::Fork {
            let known = || WATCHERS.load(Ordering::SeqCst);
            let allow = if self.fork_with_threads {
                true
            } else {
                crate::process::fork::check_threads_besides(known)?;
                // Only watcher threads besides this one: they hold no lock
                // a worker needs (see `check_threads_besides`).
                known() > 0
            };
            // SAFETY: either the caller vouched for its threads
            // (`allow_fork_with_threads`), or the only other threads are
            // pool watchers, which sleep in `poll` or hold their own pool's
            // lock only; the fork path takes the crate's global locks
            // itself around the fork.
            Starter::Fork(unsafe { Zygote::start(&shared.mem, common, allow)? })
        } else {
            Starter::Spawn {
                method,
                procs: (0..workers).map(|_| None).collect(),
            }
        };
        let w = Watcher {
            shared: Arc::clone(&shared),
            starter,
            common,
            ctl: ctl_r,
        };
        WATCHERS.fetch_add(1, Ordering::SeqCst);
        let handle = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || {
                w.run();
                WATCHERS.fetch_sub(1, Ordering::SeqCst);
            })
            .inspect_err(|_| {
                WATCHERS.fetch_sub(1, Ordering::SeqCst);
            })?;
        let pool = Pool {
            shared,
            watcher: Some(handle),
            workers,
            same_object,
            imap_buffer: self.imap_buffer,
        };
        pool.shared.wait_for(None, |st| {
            if let Some(msg) = &st.broken {
                return Some(Err(PoolError::Broken(msg.clone())));
            }
            st.slots
                .iter()
                .all(|s| s.state == SlotState::Running)
                .then_some(Ok(()))
        })??;
        Ok(pool)
    }
}

fn not_in_executable() -> PoolError {
    PoolError::InvalidConfig(
        "the function is not in the main executable (spawn and forkserver workers cannot find it)"
            .into(),
    )
}

/// Calls with a given `chunksize`; from [`Pool::chunksize`].
#[derive(Debug, Clone, Copy)]
pub struct Calls<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
}

impl Pool {
    /// A pool of `workers` processes with the default settings.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(workers: usize) -> Result<Pool, PoolError> {
        Self::builder().workers(workers).build()
    }

    /// A builder for a pool's settings.
    pub fn builder() -> Builder {
        Builder {
            workers: None,
            method: None,
            initializer: None,
            max_tasks: 0,
            ring_size: DEFAULT_RING_SIZE,
            lost: LostTasks::Fail,
            imap_buffer: DEFAULT_IMAP_BUFFER,
            fork_with_threads: false,
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The process ids of the workers running now (a replaced worker's
    /// successor has a new one).
    pub fn worker_pids(&self) -> Vec<u32> {
        let st = self.shared.lock();
        st.slots
            .iter()
            .filter(|s| s.state == SlotState::Running)
            .map(|s| s.pid)
            .collect()
    }

    /// The calls of this pool with `chunksize` items per chunk (Python's
    /// `chunksize=` argument): `pool.chunksize(64).map(f, items)`.
    pub fn chunksize(&self, chunksize: usize) -> Calls<'_> {
        Calls {
            pool: self,
            chunksize: Some(chunksize.max(1)),
        }
    }

    fn calls(&self) -> Calls<'_> {
        Calls {
            pool: self,
            chunksize: None,
        }
    }

    /// Applies `f` to every item, in parallel; the results in input order.
    /// Reads the whole input first. Chunks of `ceil(n / (4 × workers))`
    /// items, as Python.
    ///
    /// # Errors
    ///
    /// The first failed item's [`PoolError::Task`]; [`PoolError::Closed`],
    /// [`PoolError::Broken`].
    pub fn map<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.calls().map(f, items)
    }

    /// As [`map`](Self::map), with every item's outcome.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Broken`] (task failures are in
    /// the vector).
    pub fn map_results<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.calls().map_results(f, items)
    }

    /// As [`map`](Self::map), without waiting.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Broken`].
    pub fn map_async<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.calls().map_async(f, items)
    }

    /// `f(a, b)` for every pair (Python's `starmap`).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.calls().starmap(f, items)
    }

    /// `f(a, b, c)` for every triple.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap3<A, B, C, R>(
        &self,
        f: fn(A, B, C) -> R,
        items: impl IntoIterator<Item = (A, B, C)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.calls().starmap3(f, items)
    }

    /// Applies `f` to the items lazily, yielding results in input order
    /// (chunks of 1 item, as Python).
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Broken`].
    pub fn imap<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        self.calls().imap(f, items)
    }

    /// As [`imap`](Self::imap), yielding results as they finish.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Broken`].
    pub fn imap_unordered<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        self.calls().imap_unordered(f, items)
    }

    /// `f(item)` in a worker, waiting for the result.
    ///
    /// # Errors
    ///
    /// [`PoolError::Task`] if it failed; [`PoolError::Closed`],
    /// [`PoolError::Broken`].
    pub fn apply<T, R>(&self, f: fn(T) -> R, item: T) -> Result<R, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, item)?.get()
    }

    /// `f(item)` in a worker, without waiting.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Broken`].
    pub fn apply_async<T, R>(&self, f: fn(T) -> R, item: T) -> Result<AsyncResult<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let id = self.submit(
            func::run_map::<T, R> as Runner,
            f as usize,
            &mut std::iter::once(item),
            1,
            true,
        )?;
        Ok(AsyncResult::for_apply(Arc::clone(&self.shared), id))
    }

    /// Takes no more work; [`join`](Self::join) then waits for the
    /// work already given.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.poke(ctl::POKE);
    }

    /// Stops at once: kills the workers; unfinished tasks fail with
    /// [`TaskError::Terminated`]. Returns when every worker is gone.
    pub fn terminate(&mut self) {
        {
            let mut st = self.shared.lock();
            st.terminated = true;
        }
        self.poke(ctl::TERMINATE);
        self.shared.ring_doorbell();
        if let Some(h) = self.watcher.take() {
            let _ = h.join();
        }
        self.shared.close_ctl();
    }

    /// Waits for the work given before [`close`](Self::close), then for
    /// the workers to leave.
    ///
    /// # Errors
    ///
    /// [`PoolError::NotClosed`] without `close` (or `terminate`) first.
    pub fn join(&mut self) -> Result<(), PoolError> {
        {
            let st = self.shared.lock();
            if !st.closed && !st.terminated {
                return Err(PoolError::NotClosed);
            }
        }
        self.shared.wait_for(None, |st| {
            (!st.busy() || st.terminated || hopeless(st).is_some()).then_some(())
        })?;
        self.shared.lock().release_workers();
        self.poke(ctl::POKE);
        if let Some(h) = self.watcher.take() {
            let _ = h.join();
        }
        self.shared.close_ctl();
        Ok(())
    }

    fn poke(&self, what: u8) {
        self.shared.poke(what);
    }

    /// Adds a job of `items`, all read now; returns its id.
    fn submit<T: Serialize>(
        &self,
        runner: Runner,
        f: usize,
        items: &mut impl Iterator<Item = T>,
        chunksize: usize,
        background: bool,
    ) -> Result<u64, PoolError> {
        if self.same_object && !func::same_object_as_anchor(f) {
            return Err(not_in_executable());
        }
        let chunks = Encoder::new(chunksize, self.shared.max_payload()).all(items);
        self.add(runner, f, chunks, true, background)
    }

    fn add(
        &self,
        runner: Runner,
        f: usize,
        chunks: Vec<Chunk>,
        input_done: bool,
        background: bool,
    ) -> Result<u64, PoolError> {
        let mut st = self.shared.lock();
        let id = st.add_job(Job::new(
            offset_of(runner as usize),
            offset_of(f),
            background,
        ))?;
        st.add_chunks(id, chunks, input_done);
        st.pump(&self.shared.mem);
        drop(st);
        if background {
            self.poke(ctl::POKE);
        }
        Ok(id)
    }

    /// Waits for job `id` and takes its outcomes.
    fn collect<R: DeserializeOwned>(
        &self,
        id: u64,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        let max = self.shared.max_result();
        self.shared.wait_for(None, |st| match st.jobs.get(&id) {
            Some(j) if j.finished() => Some(Ok(take_all::<R>(st, id, max))),
            Some(_) => hopeless(st).map(Err),
            None => Some(Err(PoolError::Closed)),
        })?
    }
}

impl Calls<'_> {
    fn map_chunksize(&self, n: usize) -> usize {
        self.chunksize
            .unwrap_or_else(|| default_chunksize(n, self.pool.workers))
    }

    fn run_all<T: Serialize, R: DeserializeOwned>(
        &self,
        runner: Runner,
        f: usize,
        items: Vec<T>,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        let cs = self.map_chunksize(items.len());
        let id = self
            .pool
            .submit(runner, f, &mut items.into_iter(), cs, false)?;
        let r = self.pool.collect::<R>(id);
        if r.is_err() {
            self.pool.shared.lock().drop_job(id);
        }
        r
    }

    /// [`Pool::map`] with this chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    pub fn map<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        first_error(self.map_results(f, items)?)
    }

    /// [`Pool::map_results`] with this chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_results`].
    pub fn map_results<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items: Vec<T> = items.into_iter().collect();
        self.run_all(func::run_map::<T, R>, f as usize, items)
    }

    /// [`Pool::map_async`] with this chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async`].
    pub fn map_async<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items: Vec<T> = items.into_iter().collect();
        let cs = self.map_chunksize(items.len());
        let id = self.pool.submit(
            func::run_map::<T, R>,
            f as usize,
            &mut items.into_iter(),
            cs,
            true,
        )?;
        Ok(AsyncResult::for_map(Arc::clone(&self.pool.shared), id))
    }

    /// [`Pool::starmap`] with this chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items: Vec<(A, B)> = items.into_iter().collect();
        first_error(self.run_all(func::run_star2::<A, B, R>, f as usize, items)?)
    }

    /// [`Pool::starmap3`] with this chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    pub fn starmap3<A, B, C, R>(
        &self,
        f: fn(A, B, C) -> R,
        items: impl IntoIterator<Item = (A, B, C)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items: Vec<(A, B, C)> = items.into_iter().collect();
        first_error(self.run_all(func::run_star3::<A, B, C, R>, f as usize, items)?)
    }

    fn imap_with<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
        ordered: bool,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        if self.pool.same_object && !func::same_object_as_anchor(f as usize) {
            return Err(not_in_executable());
        }
        let id = self
            .pool
            .add(func::run_map::<T, R>, f as usize, Vec::new(), false, false)?;
        let encoder = Encoder::new(self.chunksize.unwrap_or(1), self.pool.shared.max_payload());
        let window = (self.pool.workers + self.pool.imap_buffer) as u64;
        Ok(Imap::new(
            Arc::clone(&self.pool.shared),
            id,
            items.into_iter(),
            encoder,
            window,
            ordered,
        ))
    }

    /// [`Pool::imap`] with this chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        self.imap_with(f, items, true)
    }

    /// [`Pool::imap_unordered`] with this chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap_unordered`].
    pub fn imap_unordered<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        self.imap_with(f, items, false)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.watcher.is_some() {
            self.terminate();
        }
    }
}

const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Pool>();
};
