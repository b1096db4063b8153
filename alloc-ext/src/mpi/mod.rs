//! The [`Pool`](crate::pool::Pool) beyond one machine: the same calls
//! (`map`, `starmap`, `imap`, `imap_unordered`, `apply_async`, chunksize,
//! `close`/`join`) over MPI ranks, with a local shared-memory pool inside
//! each rank (feature `mpi`, over rsmpi and the system's MPI library).
//!
//! ```no_run
//! use multiproc::mpi::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Rank 0 gets the pool; every other rank serves tasks here and
//!     // exits when rank 0 closes the pool.
//!     let mut pool = Pool::new()?;
//!     assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
//!     let words = vec!["a".to_string(), "bcd".into()];
//!     assert_eq!(pool.map(|s: String| s.len(), words)?, vec![1, 3]);
//!     let sum: u64 = pool.imap_unordered(square, 0..100)?.map(Result::unwrap).sum();
//!     assert_eq!(sum, 328_350);
//!     pool.close();
//!     pool.join()?;
//!     Ok(())
//! }
//! ```
//!
//! Build with `--features mpi` and run it under the MPI launcher, on one
//! machine (`mpirun -np 3 --bind-to none ./prog`: a master and two worker
//! ranks) or on a cluster (`mpirun --hostfile hosts --map-by ppr:1:node
//! --bind-to none ./prog`, or `srun --ntasks-per-node=1 ./prog` under
//! Slurm). As root, OpenMPI also wants `--allow-run-as-root`.
//!
//! # Static mode, as `mpi4py.futures`
//!
//! Every rank runs the same program. [`Pool::new`] (or
//! [`Builder::build`]) returns the pool on rank 0 only, the *master*; on
//! every other rank it never returns: the rank serves the master's chunks
//! until the master closes the pool (or drops it), then the process exits
//! (code 0). So the code before `Pool::new` runs on every rank, and the
//! code after it on rank 0 alone. Python's `python -m mpi4py.futures
//! script.py` works the same way.
//!
//! The master must drop the pool (or `close` and `join` it) before it
//! exits: that ends MPI on every rank. Rank 0 runs no tasks; the pool
//! starts a thread on it that alone calls MPI (so the caller's threads can
//! all use the pool).
//!
//! # MPI plus shared memory
//!
//! One rank per node, as HPC codes do: a chunk crosses the network once,
//! to its rank, which runs it on a local [`pool::Pool`](crate::pool::Pool)
//! of worker processes over that node's cores (its items and results then
//! go through shared memory). The rank hands the chunk's bytes to the
//! local pool as they came (cut at item boundaries into two pieces per
//! local worker), and the workers' encoded results go back as they are:
//! only the local workers decode items and encode results. A chunk that
//! costs less than a trip through the local pool (measured: see
//! [`Builder::inline_below`]) runs in the rank itself instead, as
//! mpi4py's workers run every task. The rank holds up to
//! `local workers + 1` chunks at once, and more of a job whose chunks it
//! runs itself (as many as take about 1 ms, up to 256 more: it grants them
//! in its results); the chunks the master deals a rank at once travel in
//! one message, and so do the results of up to 32 chunks, so that a cheap
//! chunk costs a fraction of an MPI message. The master and the ranks
//! never block in MPI (OpenMPI's blocking calls spin on a core): they poll,
//! spin and yield for a moment after each message, then sleep up to 1 ms
//! between polls, leaving the node's cores to the local workers. By
//! default each worker rank takes the node's cores (the ones it may run on) divided by the worker ranks
//! on the node, so `mpirun -np 3` on one machine gives each of the two
//! worker ranks half of it. [`Builder::local_workers`] sets the number,
//! and `0` makes each rank run all its chunks itself, as mpi4py's workers
//! do.
//!
//! OpenMPI pins each rank to one core when it starts two ranks or fewer
//! (and to a socket otherwise): the local pool inherits the pinning. Pass
//! `--bind-to none` so that the local workers can use the whole node.
//!
//! # What a task may be
//!
//! As for the local pool: a plain `fn(T) -> R` (a named function or a
//! closure that captures nothing), named on the wire by its offset in the
//! executable, since every rank runs the same one (the ranks check that at
//! start, and the pool refuses to start if one runs another program), and
//! items and results of any serde type. A local worker that runs a chunk
//! gets it as the local pool's items do (see [`pool`](crate::pool)), so
//! [`Builder::max_message`] bounds one encoded item or result.
//!
//! # Faults
//!
//! - A task that panics fails alone ([`TaskError::Panicked`]).
//! - A local worker process that dies (`SIGKILL`, a segfault, the OOM
//!   killer) is its rank's local pool's business: the items of the chunk it
//!   ran fail with [`TaskError::WorkerLost`] (or run again, with
//!   [`Builder::lost_tasks`]), a new worker takes its place, the rank goes
//!   on.
//! - A task that runs in the rank itself (a cheap one, below
//!   [`Builder::inline_below`], or any without a local pool) and kills its
//!   process kills the rank, and so the job (below). For tasks that may
//!   crash their process, `inline_below(Duration::ZERO)` keeps every task
//!   in a local worker.
//! - A rank that dies ends the whole job. MPI is fail-stop: rsmpi runs
//!   with MPI's errors fatal, and `mpirun` (or `srun`) kills every other
//!   rank, with a message naming the dead rank ("mpirun noticed that
//!   process rank 1 with PID ... exited on signal 9 (Killed)"), about a
//!   second after the death, and exits non-zero. Nothing hangs. Work that
//!   must survive a lost node belongs to a job scheduler's retries, or to
//!   checkpoints, above this pool.
//!
//! # Python to multiproc
//!
//! | Python (`mpi4py.futures`) | multiproc |
//! |---|---|
//! | `MPIPoolExecutor()` under `python -m mpi4py.futures` | [`Pool::new()`](Pool::new), [`Pool::builder`] |
//! | `executor.map(f, it, chunksize=n)` | [`Pool::map`], [`pool.chunksize(n).map(..)`](Pool::chunksize), [`Pool::imap`] |
//! | `executor.starmap(f, it)` | [`Pool::starmap`], [`Pool::starmap3`] |
//! | `executor.submit(f, x)` → `Future` | [`Pool::apply_async`] → [`AsyncResult`] |
//! | `concurrent.futures.as_completed` | [`Pool::imap_unordered`] |
//! | `executor.shutdown(wait=True)` | [`Pool::close`] then [`Pool::join`] |

mod master;
mod outbox;
mod result;
mod runner;
// Compiled at the crate root (`crate::mpi_wire`) so that the fuzz targets
// reach it without MPI.
use crate::mpi_wire as wire;
mod worker;

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::result::{AsyncResult, Imap};
pub use self::worker::DEFAULT_INLINE_BELOW;
pub use crate::pool::{LostTasks, PoolError, TaskError};

use self::master::{Shared, Stop};
use self::result::{take_all, Encoder};
use self::runner::{fingerprint, Runners};
use self::wire::{tags, Hello};
use crate::pool::func::{offset_of, same_object_as_anchor};
use crate::pool::result::first_error;
use crate::process::StartMethod;

/// A call's chunks go to the engine this many at a time as they are
/// encoded.
const SUBMIT_BATCH: usize = 256;

/// Default chunks an [`Imap`] reads ahead beyond the ranks' capacity.
pub const DEFAULT_IMAP_BUFFER: usize = 32;

/// A worker rank, as it introduced itself to the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankInfo {
    /// Its rank in `MPI_COMM_WORLD`.
    pub rank: i32,
    /// Its process id (on its host).
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// Processes of its local pool (0: it runs tasks itself).
    pub local_workers: usize,
    /// Chunks it holds at once (more of a job whose chunks it runs itself:
    /// see the [module docs](self)).
    pub capacity: u32,
}

/// Settings of a [`Pool`]; from [`Pool::builder`]. Every rank must build
/// the pool with the same settings (they are read on each rank).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build`"]
pub struct Builder {
    local_workers: Option<usize>,
    local_method: Option<StartMethod>,
    initializer: Option<fn()>,
    lost: LostTasks,
    max_message: Option<u64>,
    imap_buffer: usize,
    inline_below: Duration,
}

impl Builder {
    /// Processes of each worker rank's local pool (default: the cores the
    /// rank may run on, divided by the worker ranks on its node). `0`: no
    /// local pool, the rank runs its chunks itself.
    pub fn local_workers(mut self, n: usize) -> Self {
        self.local_workers = Some(n);
        self
    }

    /// How the local pools start their workers. The default is `fork`
    /// when the launcher tells the rank its number before MPI starts
    /// (OpenMPI's `mpirun`, Slurm's `srun`, MPICH's Hydra: the local pool
    /// is then made before MPI makes its threads), else `spawn` (then
    /// `main` must call [`crate::init`] first).
    pub fn local_start_method(mut self, method: StartMethod) -> Self {
        self.local_method = Some(method);
        self
    }

    /// A function each local worker runs once before its first task (each
    /// worker rank, without a local pool).
    pub fn initializer(mut self, f: fn()) -> Self {
        self.initializer = Some(f);
        self
    }

    /// What happens to the items of a chunk whose local worker died
    /// (default [`LostTasks::Fail`]).
    pub fn lost_tasks(mut self, policy: LostTasks) -> Self {
        self.lost = policy;
        self
    }

    /// Local pools sized for items and results of `bytes` bytes encoded
    /// (see [`pool::Builder::max_message`](crate::pool::Builder::max_message)).
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// A worker rank with a local pool runs a chunk itself, rather than on
    /// the pool, when the chunk is expected to take less than this (by the
    /// rank's timing of the function's items; default
    /// [`DEFAULT_INLINE_BELOW`]). Such tasks then skip the trip through
    /// shared memory, but run in the rank: one that kills its process (a
    /// segfault, `abort`) kills the rank, and with it the job, where a
    /// local worker would have been replaced. `Duration::ZERO`: every task
    /// runs on the local pool.
    pub fn inline_below(mut self, budget: Duration) -> Self {
        self.inline_below = budget;
        self
    }

    /// Chunks an [`Imap`] reads ahead beyond the ranks' capacity (default
    /// [`DEFAULT_IMAP_BUFFER`]).
    pub fn imap_buffer(mut self, chunks: usize) -> Self {
        self.imap_buffer = chunks;
        self
    }

    /// Starts MPI and, on worker ranks, serves the master until it stops
    /// them, then exits the process; on rank 0, returns the pool once
    /// every worker rank is ready.
    ///
    /// # Errors
    ///
    /// On rank 0: [`PoolError::InvalidConfig`] if MPI was already
    /// initialized in this process, if the job has a single rank (run it
    /// under `mpirun -np 2` or more), or if a rank runs another executable;
    /// [`PoolError::Broken`] if a rank's local pool could not start (the
    /// message names the rank). The other ranks then exit with code 1.
    pub fn build(self) -> Result<Pool, PoolError> {
        let env_rank = launcher::rank();
        let local_n = self
            .local_workers
            .unwrap_or_else(launcher::default_local_workers);
        // A worker rank makes its local pool now, while this process has no
        // threads (MPI starts some): the `fork` start method can then fork
        // the pool's zygote.
        let early = match env_rank {
            Some(r) if r != 0 => Some(self.local_pool(local_n, StartMethod::Fork)),
            _ => None,
        };
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel::<Role>();
        let engine_shared = Arc::clone(&shared);
        let me = self.clone();
        let engine = std::thread::Builder::new()
            .name("multiproc-mpi".into())
            .spawn(move || me.engine(early, local_n, &engine_shared, &tx))?;
        match rx.recv() {
            Ok(Role::Master(ranks)) => {
                let workers = ranks.iter().map(|r| r.local_workers.max(1)).sum();
                let capacity: u64 = ranks.iter().map(|r| u64::from(r.capacity)).sum();
                Ok(Pool {
                    shared,
                    engine: Some(engine),
                    workers,
                    window: capacity + self.imap_buffer as u64,
                    ranks,
                })
            }
            Ok(Role::Worker) => {
                let code = engine.join().unwrap_or(1);
                std::process::exit(code);
            }
            Ok(Role::Failed(e)) => {
                let _ = engine.join();
                Err(e)
            }
            Err(_) => {
                let _ = engine.join();
                Err(PoolError::Broken("the MPI thread ended at start".into()))
            }
        }
    }

    /// The local pool of a worker rank (`None`: it runs chunks itself).
    fn local_pool(
        &self,
        n: usize,
        default_method: StartMethod,
    ) -> Result<Option<crate::pool::Pool>, String> {
        if n == 0 {
            if let Some(f) = self.initializer {
                f();
            }
            return Ok(None);
        }
        let mut b = crate::pool::Pool::builder()
            .workers(n)
            .lost_tasks(self.lost)
            .start_method(self.local_method.unwrap_or(default_method));
        if let Some(f) = self.initializer {
            b = b.initializer(f);
        }
        if let Some(m) = self.max_message {
            b = b.max_message(m);
        }
        b.build()
            .map(Some)
            .map_err(|e| format!("cannot start the local pool: {e}"))
    }

    /// The MPI thread: starts MPI, then serves (worker rank) or runs the
    /// engine (master); its return value is the worker rank's exit code.
    fn engine(
        self,
        early: Option<Result<Option<crate::pool::Pool>, String>>,
        local_n: usize,
        shared: &Shared,
        tx: &mpsc::Sender<Role>,
    ) -> i32 {
        let Some((universe, _threading)) = mpi::initialize_with_threading(Threading::Funneled)
        else {
            let _ = tx.send(Role::Failed(PoolError::InvalidConfig(
                "MPI is already initialized in this process".into(),
            )));
            return 1;
        };
        let world = universe.world();
        let rank = world.rank();
        if rank != 0 {
            let local = early.unwrap_or_else(|| self.local_pool(local_n, StartMethod::Spawn));
            let workers = match &local {
                Ok(Some(p)) => p.workers(),
                _ => 0,
            };
            let hello = Hello {
                capacity: if workers == 0 { 2 } else { workers as u32 + 1 },
                local_workers: workers as u32,
                pid: std::process::id(),
                fingerprint: fingerprint(),
                text: launcher::host_name(),
                ok: true,
            };
            let _ = tx.send(Role::Worker);
            return worker::serve(&world, local, hello, self.inline_below);
        }
        drop(early);
        match greet(&world) {
            Ok(ranks) => {
                let _ = tx.send(Role::Master(ranks.clone()));
                master::run(&world, shared, &ranks);
            }
            Err(e) => {
                let _ = tx.send(Role::Failed(e));
            }
        }
        master::engine_gone(shared);
        0
    }
}

/// What the MPI thread tells the constructor.
enum Role {
    Master(Vec<RankInfo>),
    Worker,
    Failed(PoolError),
}

/// Rank 0 at start: every worker rank's HELLO, checked.
fn greet(world: &SimpleCommunicator) -> Result<Vec<RankInfo>, PoolError> {
    let size = world.size();
    if size < 2 {
        return Err(PoolError::InvalidConfig(
            "the MPI job has no worker rank: run it under `mpirun -np 2` (or more)".into(),
        ));
    }
    let mine = fingerprint();
    let mut ranks = Vec::new();
    let mut refusal = None;
    for _ in 1..size {
        let (data, status) = world
            .any_process()
            .matched_probe_with_tag(tags::HELLO)
            .matched_receive_vec::<u8>();
        let rank = status.source_rank();
        let problem = match Hello::decode(&data) {
            Ok(h) if !h.ok => Some(PoolError::Broken(format!("rank {rank}: {}", h.text))),
            Ok(h) if h.fingerprint != mine => Some(PoolError::InvalidConfig(format!(
                "rank {rank} (on {}) runs another executable than rank 0: every rank must run the same program",
                h.text
            ))),
            Ok(h) => {
                ranks.push(RankInfo {
                    rank,
                    pid: h.pid,
                    host: h.text,
                    local_workers: h.local_workers as usize,
                    capacity: h.capacity.max(1),
                });
                None
            }
            Err(e) => Some(PoolError::Broken(format!("rank {rank}: {e}"))),
        };
        if refusal.is_none() {
            refusal = problem;
        }
    }
    ranks.sort_by_key(|r| r.rank);
    let Some(e) = refusal else {
        return Ok(ranks);
    };
    for r in 1..size {
        world
            .process_at_rank(r)
            .send_with_tag(&[0u8; 0][..], tags::ABORT);
    }
    for _ in 1..size {
        let _ = world
            .any_process()
            .matched_probe_with_tag(tags::BYE)
            .matched_receive_vec::<u8>();
    }
    Err(e)
}

/// What the launcher tells a rank before MPI starts.
mod launcher {
    fn env_u32(names: &[&str]) -> Option<u32> {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok()?.trim().parse().ok())
    }

    /// This process's rank, from the launcher's environment (OpenMPI,
    /// PMIx, MPICH's Hydra, Slurm).
    pub(super) fn rank() -> Option<u32> {
        env_u32(&[
            "OMPI_COMM_WORLD_RANK",
            "PMIX_RANK",
            "PMI_RANK",
            "SLURM_PROCID",
        ])
    }

    /// The default size of a worker rank's local pool: its cores, divided
    /// by the worker ranks on its node (the master counts as none; it is
    /// taken to be on the node whose ranks start at 0, as the launchers
    /// place ranks by default).
    pub(super) fn default_local_workers() -> usize {
        let cpus = crate::cpu_count();
        let Some(here) = env_u32(&[
            "OMPI_COMM_WORLD_LOCAL_SIZE",
            "MPI_LOCALNRANKS",
            "PMI_LOCAL_SIZE",
        ]) else {
            return cpus;
        };
        let local_rank = env_u32(&[
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "MPI_LOCALRANKID",
            "SLURM_LOCALID",
        ]);
        let master_here = matches!((rank(), local_rank), (Some(r), Some(l)) if r == l);
        let workers_here = (here as usize)
            .saturating_sub(usize::from(master_here))
            .max(1);
        (cpus / workers_here).max(1)
    }

    /// This host's name.
    pub(super) fn host_name() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
    }
}

/// A pool over MPI ranks, on rank 0. See the [module docs](self).
pub struct Pool {
    shared: Arc<Shared>,
    engine: Option<JoinHandle<i32>>,
    ranks: Vec<RankInfo>,
    /// Local workers over all ranks (a rank without a pool counts as one).
    workers: usize,
    /// Chunks an `Imap` keeps in flight.
    window: u64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("ranks", &self.ranks)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// Calls with a given `chunksize`; from [`Pool::chunksize`].
#[derive(Debug, Clone, Copy)]
pub struct Calls<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
}

impl Pool {
    /// The pool with the default settings (see [`Builder::build`]: on
    /// worker ranks this never returns).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new() -> Result<Pool, PoolError> {
        Self::builder().build()
    }

    /// A builder for the pool's settings.
    pub fn builder() -> Builder {
        Builder {
            local_workers: None,
            local_method: None,
            initializer: None,
            lost: LostTasks::Fail,
            max_message: None,
            imap_buffer: DEFAULT_IMAP_BUFFER,
            inline_below: DEFAULT_INLINE_BELOW,
        }
    }

    /// The worker ranks, by rank.
    pub fn ranks(&self) -> &[RankInfo] {
        &self.ranks
    }

    /// Worker processes over all ranks (a rank without a local pool counts
    /// as one).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The calls of this pool with `chunksize` items per chunk (a chunk is
    /// what crosses MPI at once): `pool.chunksize(64).map(f, items)`.
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

    /// Applies `f` to every item, on the ranks; the results in input
    /// order. Reads the whole input first. Chunks of
    /// `ceil(n / (4 × workers))` items, as Python.
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

    /// `f(item)` on a rank, waiting for the result.
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

    /// `f(item)` on a rank, without waiting (mpi4py's `submit`).
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Broken`].
    pub fn apply_async<T, R>(&self, f: fn(T) -> R, item: T) -> Result<AsyncResult<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let id = self.submit(Runners::map::<T, R>(), f as usize, std::iter::once(item), 1)?;
        Ok(AsyncResult::for_apply(Arc::clone(&self.shared), id))
    }

    /// Takes no more work; [`join`](Self::join) then waits for the work
    /// already given.
    pub fn close(&self) {
        self.shared.lock().closed = true;
    }

    /// Stops at once: the ranks drop the chunks they hold (their local
    /// workers are killed) and exit; unfinished calls fail with
    /// [`PoolError::Closed`]. Returns when every rank has left.
    pub fn terminate(&mut self) {
        self.stop(Stop::Abort);
    }

    /// Waits for the work given before [`close`](Self::close), then for
    /// every rank to leave (they exit; MPI ends in this process too, so no
    /// other pool can be made in it).
    ///
    /// # Errors
    ///
    /// [`PoolError::NotClosed`] without `close` first;
    /// [`PoolError::Broken`] if the pool failed.
    pub fn join(&mut self) -> Result<(), PoolError> {
        {
            let st = self.shared.lock();
            if !st.closed && st.stop.is_none() {
                return Err(PoolError::NotClosed);
            }
        }
        let broken = self
            .shared
            .wait_for(None, |st| {
                if let Some(m) = &st.broken {
                    return Some(Some(m.clone()));
                }
                (!st.busy() || st.engine_gone).then_some(None)
            })
            .unwrap_or(None);
        self.stop(Stop::Graceful);
        match broken {
            Some(m) => Err(PoolError::Broken(m)),
            None => Ok(()),
        }
    }

    fn stop(&mut self, how: Stop) {
        self.shared.lock().stop.get_or_insert(how);
        self.shared.poke();
        if let Some(h) = self.engine.take() {
            let _ = h.join();
        }
    }

    /// Adds a job of `items`, all read now; returns its id.
    fn submit<T: Serialize>(
        &self,
        runner: Runners,
        f: usize,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<u64, PoolError> {
        let id = self.new_job(f)?;
        let mut enc = self.encoder(id, runner, f, chunksize);
        let mut input = items.into_iter();
        let mut chunks = Vec::new();
        loop {
            match enc.next_chunk(&mut input) {
                Ok((c, end)) => {
                    chunks.extend(c);
                    if end {
                        break;
                    }
                    // The engine deals the first chunks while the rest are
                    // encoded.
                    if chunks.len() >= SUBMIT_BATCH {
                        self.shared
                            .lock()
                            .add_chunks(id, std::mem::take(&mut chunks), false);
                        self.shared.poke();
                    }
                }
                Err(e) => {
                    self.shared.lock().drop_job(id);
                    return Err(e);
                }
            }
        }
        self.shared.lock().add_chunks(id, chunks, true);
        self.shared.poke();
        Ok(id)
    }

    fn new_job(&self, f: usize) -> Result<u64, PoolError> {
        if !same_object_as_anchor(f) {
            return Err(PoolError::InvalidConfig(
                "the function is not in the main executable (the other ranks cannot find it)"
                    .into(),
            ));
        }
        self.shared.lock().add_job()
    }

    fn encoder(&self, job: u64, runner: Runners, f: usize, chunksize: usize) -> Encoder {
        Encoder {
            job,
            runner: offset_of(runner.rank as usize),
            func: offset_of(f),
            local_runner: offset_of(runner.local as usize),
            chunksize,
            next_item: 0,
        }
    }

    /// Waits for job `id` and takes its outcomes.
    fn collect<R: DeserializeOwned>(
        &self,
        id: u64,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        let r = self.shared.wait_for(None, |st| match st.jobs.get(&id) {
            Some(j) if j.finished() => Some(Ok(take_all::<R>(st, id))),
            Some(_) => st.hopeless().map(Err),
            None => Some(Err(PoolError::Closed)),
        })?;
        if r.is_err() {
            self.shared.lock().drop_job(id);
        }
        r
    }
}

impl Calls<'_> {
    fn map_chunksize(&self, n: usize) -> usize {
        self.chunksize
            .unwrap_or_else(|| n.div_ceil(4 * self.pool.workers.max(1)).max(1))
    }

    fn run_all<T: Serialize, R: DeserializeOwned>(
        &self,
        runner: Runners,
        f: usize,
        items: Vec<T>,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        let cs = self.map_chunksize(items.len());
        let id = self.pool.submit(runner, f, items, cs)?;
        self.pool.collect::<R>(id)
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
        self.run_all(Runners::map::<T, R>(), f as usize, items)
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
        let id = self
            .pool
            .submit(Runners::map::<T, R>(), f as usize, items, cs)?;
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
        first_error(self.run_all(Runners::star2::<A, B, R>(), f as usize, items)?)
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
        first_error(self.run_all(Runners::star3::<A, B, C, R>(), f as usize, items)?)
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
        let id = self.pool.new_job(f as usize)?;
        if let Some(job) = self.pool.shared.lock().jobs.get_mut(&id) {
            job.streaming = true;
        }
        let enc = self.pool.encoder(
            id,
            Runners::map::<T, R>(),
            f as usize,
            self.chunksize.unwrap_or(1),
        );
        Ok(Imap::new(
            Arc::clone(&self.pool.shared),
            enc,
            items.into_iter(),
            self.pool.window,
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
    /// Stops the ranks as [`terminate`](Pool::terminate) does, and ends
    /// MPI.
    fn drop(&mut self) {
        self.stop(Stop::Abort);
    }
}

const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Pool>();
};
