//! Processes with a thread-like surface, as Python's
//! `multiprocessing.Process`.
//!
//! ```
//! use multiproc::process::Process;
//!
//! let p = Process::new(|| println!("hello from a child"))
//!     .name("greeter")
//!     .start()?;
//! let status = p.join()?;
//! assert_eq!(status.exitcode(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Start methods
//!
//! | method | what runs in the child | the child's memory | multi-threaded parent | cost (2 vCPU VM) |
//! |---|---|---|---|---|
//! | [`Fork`](StartMethod::Fork) | a closure, or an entry point | a copy of the parent's | refused, see below | a `fork` |
//! | [`Spawn`](StartMethod::Spawn) | an entry point ([`register_entry`]) | fresh: the binary is run again up to [`init`](crate::init) | safe (`posix_spawn`) | an `exec` |
//! | [`Forkserver`](StartMethod::Forkserver) | an entry point | a copy of a fresh, single-threaded server | safe | a `fork` of a small process plus two socket hops |
//!
//! The default is `Fork`, as in Python 3.11 on Linux; [`set_start_method`]
//! changes it and [`Builder::start_method`] overrides it per process. A
//! closure cannot cross an `exec` or a socket, so a closure with `Spawn` or
//! `Forkserver` is refused with [`ProcessError::ClosureNeedsFork`].
//!
//! ## Entry points and the init hook
//!
//! `Spawn` and `Forkserver` run the current executable again. Its `main`
//! registers the entry points and calls [`init`](crate::init) before
//! anything else (before starting threads, parsing arguments, or printing):
//!
//! ```no_run
//! fn work(args: &[u8]) -> i32 {
//!     println!("child got {} bytes", args.len());
//!     0
//! }
//!
//! fn main() {
//!     multiproc::register_entry("work", work).unwrap();
//!     multiproc::init(); // in a child: runs the entry point and exits
//!
//!     let p = multiproc::Process::entry("work", b"data".to_vec())
//!         .start_method(multiproc::StartMethod::Spawn)
//!         .start()
//!         .unwrap();
//!     p.join().unwrap();
//! }
//! ```
//!
//! A child that never reaches `init` (it was forgotten, or `main` exits or
//! blocks first) is detected by a handshake: `start` fails with
//! [`ProcessError::InitHookMissing`] instead of hanging.
//!
//! ## The fork server
//!
//! The first `Forkserver` start runs the executable again as the server (so
//! it is single-threaded and clean, whatever the parent has become: it may
//! be started at any time, from any thread). The server stops in `init`,
//! then forks one worker per request, received over a Unix socket pair.
//! The server is the real parent of the workers: it reaps them and relays
//! each exit status (and any panic message) to the client, which holds a
//! pidfd of the worker to signal it without pid-reuse races. The server
//! exits when its client does; daemon workers die with it. The first
//! `Forkserver` start pays for that `exec` (about as much as one `Spawn`);
//! workers see the environment and working directory the client had then,
//! as Python's forkserver children do.
//!
//! # `Fork` needs a single-threaded parent
//!
//! `fork` copies the whole address space but only the calling thread. A
//! lock held by another thread at that moment stays locked forever in the
//! child, and the data it guards may be half-updated: POSIX allows such a
//! child only async-signal-safe calls until it execs. A closure can do
//! anything (allocate, print, lock), so a `Fork` start checks that the
//! calling thread is the only one of the process and otherwise returns
//! [`ProcessError::ForkWithThreads`] (Python 3.12 warns there, and 3.14
//! moved its default start method from `fork` to `forkserver` for it):
//!
//! * from a multi-threaded program, use [`StartMethod::Spawn`] or
//!   [`StartMethod::Forkserver`] with a registered entry point: both are
//!   safe at any time;
//! * or start the children before the threads (workers made first thing
//!   in `main`);
//! * or, knowing what the other threads hold, opt in with the `unsafe`
//!   [`Builder::allow_fork_with_threads`], whose `# Safety` says what the
//!   child may then do.
//!
//! The check costs one `stat` of `/proc/self/task` (about 2.5 us beside a
//! fork's tens to hundreds): single-threaded programs keep the fast path.
//! This crate starts no thread of its own, and holds its own locks and
//! Rust's stdout and stderr locks across the fork, so `println!` and later
//! process starts work in the child.
//!
//! Values moved into a `Fork` closure exist twice after the fork: the
//! child runs the closure and drops them; the parent forgets its copy, so
//! no destructor of a value given to the child ever runs in the parent (a
//! lock guard could not unlock, a role handle could not free its role
//! there, a [`SharedMemory`](crate::shm::SharedMemory) could not unlink its
//! name, a temporary directory could not be removed under the child). What
//! those values own on the heap stays allocated in the parent: Rust cannot
//! free it without running their destructors. Queue and pipe handles move
//! their counts to the child when it first touches them; until then they
//! count as the parent's (a child killed before it touched a handle leaves
//! that count with the parent until the parent exits).
//!
//! # Exit codes, panics, daemons
//!
//! * A closure returning `()` exits with 0, `i32` with that code,
//!   `Result<(), E>` with 0 or 1 (the error's text reaches
//!   [`Process::join`] as [`JoinError::Failed`]). An entry point's return
//!   value is the exit code.
//! * A panic in the child exits with 101 and [`Process::join`] returns
//!   [`JoinError::Panicked`] with the message (cut to about 4 KiB). With
//!   `panic = "abort"` the child dies of `SIGABRT` instead, without message.
//! * [`Process::exitcode`] follows Python: `None` while running, the exit
//!   code, or the negated signal number (`-9` after [`Process::kill`]).
//! * A daemon child does not outlive its parent: it gets
//!   `PR_SET_PDEATHSIG(SIGKILL)` (checked against a parent that already
//!   died), and dropping its [`Process`] kills and reaps it. Linux sends the
//!   signal when the *thread* that started the child exits: start daemons
//!   from a thread that lives as long as they should.
//! * Dropping the [`Process`] of a running non-daemon child detaches it:
//!   it keeps running, and is reaped (no zombie is left behind for long) by
//!   the next process start or [`active_children`] call of this process.
//!   Join children you care about.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::sys::{self, WaitStatus};

mod child;
mod entry;
mod exec;
pub(crate) mod fork;
mod forkserver;
mod identity;
mod inherit;
mod launch;
pub(crate) mod spawn;
pub(crate) mod wire;

pub use entry::{args_as, register_entry, EntryFn, RegisterError, MAX_ENTRY_NAME};
pub use identity::{current_process, parent_process, CurrentProcess, ParentProcess};
pub use inherit::Inherit;

use child::ChildInner;

/// How a child process is started. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StartMethod {
    /// `fork`: the child is a copy of the parent and runs a closure.
    Fork,
    /// Re-executes the current binary, which runs a registered entry point.
    Spawn,
    /// A single-threaded server process forks the child on request.
    Forkserver,
}

impl StartMethod {
    fn to_u8(self) -> u8 {
        match self {
            StartMethod::Fork => 0,
            StartMethod::Spawn => 1,
            StartMethod::Forkserver => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => StartMethod::Spawn,
            2 => StartMethod::Forkserver,
            _ => StartMethod::Fork,
        }
    }

    /// Python's name for it: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// Sets the start method of processes that do not choose one.
pub fn set_start_method(method: StartMethod) {
    // Relaxed: a plain setting, read independently by each start.
    DEFAULT_METHOD.store(method.to_u8(), Ordering::Relaxed);
}

/// The start method of processes that do not choose one (`Fork` unless
/// [`set_start_method`] said otherwise).
pub fn get_start_method() -> StartMethod {
    StartMethod::from_u8(DEFAULT_METHOD.load(Ordering::Relaxed))
}

/// What a child closure may return; decides its exit code.
///
/// | returned | exit code | [`Process::join`] |
/// |---|---|---|
/// | `()` | 0 | `Ok` |
/// | `i32` | that value (the kernel keeps its low 8 bits) | `Ok` |
/// | `Ok(())` | 0 | `Ok` |
/// | `Err(e)` | 1 | [`JoinError::Failed`] with `e.to_string()` |
pub trait ChildResult {
    /// The exit code, and the message of a failure.
    fn into_exit(self) -> (i32, Option<String>);
}

impl ChildResult for () {
    fn into_exit(self) -> (i32, Option<String>) {
        (0, None)
    }
}

impl ChildResult for i32 {
    fn into_exit(self) -> (i32, Option<String>) {
        (self, None)
    }
}

impl<E: fmt::Display> ChildResult for Result<(), E> {
    fn into_exit(self) -> (i32, Option<String>) {
        match self {
            Ok(()) => (0, None),
            Err(e) => (FAILURE_EXIT_CODE, Some(e.to_string())),
        }
    }
}

/// How a child ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus(WaitStatus);

impl ExitStatus {
    /// The exit code, if it exited (rather than being killed).
    pub fn code(self) -> Option<i32> {
        match self.0 {
            WaitStatus::Exited(c) => Some(c),
            WaitStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(self) -> Option<i32> {
        match self.0 {
            WaitStatus::Exited(_) => None,
            WaitStatus::Signaled(s) => Some(s),
        }
    }

    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self.0 == WaitStatus::Exited(0)
    }

    /// Python's `Process.exitcode`: the exit code, or minus the signal
    /// number.
    pub fn exitcode(self) -> i32 {
        match self.0 {
            WaitStatus::Exited(c) => c,
            WaitStatus::Signaled(s) => -s,
        }
    }
}

impl fmt::Debug for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            WaitStatus::Exited(c) => write!(f, "ExitStatus(code {c})"),
            WaitStatus::Signaled(s) => write!(f, "ExitStatus(signal {s})"),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            WaitStatus::Exited(c) => write!(f, "exit code {c}"),
            WaitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Why a process could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcessError {
    /// A closure was given with a start method that re-executes the
    /// binary; register an entry point and use [`Process::entry`].
    ClosureNeedsFork {
        /// The method asked for.
        method: StartMethod,
    },
    /// No entry point of this name is registered (in the parent, or in the
    /// re-executed child).
    UnknownEntry {
        /// The name asked for.
        name: String,
    },
    /// The re-executed binary did not reach [`crate::init`]: it exited, or
    /// did not answer within the handshake timeout (then it is killed).
    InitHookMissing {
        /// How the child ended (`None`: it was still running at the
        /// timeout and was killed).
        status: Option<ExitStatus>,
    },
    /// A `Fork` start from a process that runs other threads than the
    /// caller: the child could find a lock held forever by a thread that
    /// does not exist there, so it may only make async-signal-safe calls,
    /// and a closure cannot promise that. Use [`StartMethod::Spawn`] or
    /// [`StartMethod::Forkserver`] with an entry point, start the children
    /// before the threads, or see
    /// [`Builder::allow_fork_with_threads`] (`unsafe`).
    ForkWithThreads {
        /// The threads the process runs (`None`: unknown, as without
        /// `/proc`).
        threads: Option<usize>,
    },
    /// The arguments of an entry point (with the auth key that travels
    /// with them) do not fit one launch frame: refused before any process
    /// is started.
    ArgumentsTooLarge {
        /// Bytes the frame would carry.
        len: usize,
        /// The largest frame.
        max: usize,
    },
    /// The fork server refused the request or is gone.
    Forkserver {
        /// What happened.
        reason: String,
    },
    /// A system call failed.
    Io {
        /// Which one.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::ClosureNeedsFork { method } => write!(
                f,
                "a closure cannot be started with the {method} start method (it needs fork); register an entry point"
            ),
            ProcessError::UnknownEntry { name } => {
                write!(f, "no entry point named {name:?} is registered")
            }
            ProcessError::InitHookMissing { status } => {
                f.write_str("the child never reached multiproc::init() (call it first thing in main)")?;
                match status {
                    Some(s) => write!(f, "; it ended with {s}"),
                    None => f.write_str("; it did not answer in time and was killed"),
                }
            }
            ProcessError::ForkWithThreads { threads } => {
                match threads {
                    Some(n) => write!(f, "cannot fork: the process runs {n} threads")?,
                    None => f.write_str("cannot fork: the number of threads of the process is unknown")?,
                }
                f.write_str(
                    " (a forked child of a multi-threaded process may only make async-signal-safe calls); use the spawn or forkserver start method",
                )
            }
            ProcessError::ArgumentsTooLarge { len, max } => {
                write!(f, "entry point arguments of {len} bytes exceed the {max}-byte launch frame")
            }
            ProcessError::Forkserver { reason } => write!(f, "fork server: {reason}"),
            ProcessError::Io { op, source } => write!(f, "{op}: {source}"),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn start_err(op: &'static str) -> impl FnOnce(io::Error) -> ProcessError {
    move |source| ProcessError::Io { op, source }
}

/// Why [`Process::join`] (or [`Process::join_timeout`]) did not return a
/// plain exit status.
#[derive(Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The child panicked.
    Panicked {
        /// The panic message.
        message: String,
        /// How it ended (exit code 101).
        status: ExitStatus,
    },
    /// The child's closure returned `Err`.
    Failed {
        /// The error's text.
        message: String,
        /// How it ended (exit code 1).
        status: ExitStatus,
    },
    /// The child ended but its status was lost: it was reaped by someone
    /// else (`SIGCHLD` ignored, or a `waitpid(-1)` elsewhere), or its fork
    /// server died.
    StatusUnavailable {
        /// Why.
        reason: &'static str,
    },
    /// A system call failed.
    Io {
        /// Which one.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// [`Process::join_timeout`]: the child was still running when the
    /// time ran out (it is neither killed nor reaped: join again later).
    Timeout,
}

impl JoinError {
    /// The exit status, when the child ended and it is known.
    pub fn status(&self) -> Option<ExitStatus> {
        match self {
            JoinError::Panicked { status, .. } | JoinError::Failed { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked { message, status } => {
                write!(f, "child panicked ({status}): {message}")
            }
            JoinError::Failed { message, status } => {
                write!(f, "child failed ({status}): {message}")
            }
            JoinError::StatusUnavailable { reason } => {
                write!(f, "child exit status unavailable: {reason}")
            }
            JoinError::Io { op, source } => write!(f, "{op}: {source}"),
            JoinError::Timeout => f.write_str("timed out waiting for the child to end"),
        }
    }
}

impl std::error::Error for JoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JoinError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

type BoxedJob = Box<dyn FnOnce() -> (i32, Option<String>) + Send + 'static>;

enum Target {
    Closure(BoxedJob),
    Entry { name: String, args: Vec<u8> },
}

/// A process not started yet: set its name, daemon flag and start method,
/// then [`start`](Self::start) it. Made by [`Process::new`] or
/// [`Process::entry`].
///
/// Starting consumes the builder and joining needs the started
/// [`Process`], so Python's "started twice" and "join before start" errors
/// cannot happen:
///
/// ```compile_fail
/// let b = multiproc::Process::new(|| ());
/// let p = b.start().unwrap();
/// b.start(); // error: use of moved value
/// ```
///
/// ```compile_fail
/// let b = multiproc::Process::new(|| ());
/// b.join(); // error: no method `join` on a builder
/// ```
#[must_use = "a process builder does nothing until started"]
pub struct Builder {
    target: Target,
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    handshake_timeout: Duration,
    fork_with_threads: bool,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Closure(_) => "closure".to_owned(),
            Target::Entry { name, args } => format!("entry {name:?} ({} bytes)", args.len()),
        };
        f.debug_struct("Builder")
            .field("target", &target)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .field("fork_with_threads", &self.fork_with_threads)
            .finish()
    }
}

/// Default time a re-executed child (or the fork server) has to reach
/// [`crate::init`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl Builder {
    fn with(target: Target) -> Self {
        Self {
            target,
            name: None,
            daemon: false,
            method: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            fork_with_threads: false,
        }
    }

    /// The process's name (default `Process-N`, `Process-N:M` in a child).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the child is a daemon: killed when its parent dies or drops
    /// its [`Process`]. Default `false`.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The start method, overriding [`get_start_method`].
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// How long a re-executed child or the fork server may take to reach
    /// [`crate::init`] (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Lets a `Fork` start go ahead while the process runs other threads,
    /// which [`start`](Self::start) otherwise refuses with
    /// [`ProcessError::ForkWithThreads`]. No effect on other start methods.
    ///
    /// # Safety
    ///
    /// In the child, until it exits, the job (the closure or entry point
    /// and everything it calls, destructors included) must not take a lock
    /// that another thread of the parent may hold at the fork: only the
    /// forking thread exists in the child, so such a lock is held forever
    /// there, and a structure it guards may be half-updated. That includes
    /// locks inside `std` and C libraries: the environment lock (`env::var`
    /// while a thread may `set_var`), `std::sync` locks the other threads
    /// use, loggers, the dynamic loader (first calls into a lazily bound
    /// library), locks of C libraries. What stays sound: anything the other
    /// threads never hold a lock for (their own data), this crate's queues,
    /// pipes and locks (process-shared, with dead-holder detection), memory
    /// allocation and `println!`/`eprintln!` (glibc's `malloc` and this
    /// crate's hold of Rust's stdout and stderr locks across the fork make
    /// them fork-safe), plain computation, system calls. POSIX only
    /// promises async-signal-safe functions; the list above is what glibc
    /// on Linux gives beyond that.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// let worker = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
    /// // SAFETY: the child only computes; the other thread holds no lock.
    /// let p = unsafe { Process::new(|| (1..=10u64).sum::<u64>() as i32 - 55).allow_fork_with_threads() }
    ///     .start()?;
    /// assert!(p.join()?.success());
    /// worker.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn allow_fork_with_threads(mut self) -> Self {
        self.fork_with_threads = true;
        self
    }

    /// Starts the process.
    ///
    /// # Errors
    ///
    /// [`ProcessError::ForkWithThreads`] for a `Fork` start while other
    /// threads run (unless [allowed](Self::allow_fork_with_threads));
    /// [`ProcessError::ClosureNeedsFork`] for a closure with another method
    /// than `Fork`; [`ProcessError::UnknownEntry`];
    /// [`ProcessError::InitHookMissing`] when a re-executed child does not
    /// reach [`crate::init`]; [`ProcessError::Forkserver`];
    /// [`ProcessError::Io`] when the system refuses (out of processes,
    /// descriptors or memory).
    pub fn start(self) -> Result<Process, ProcessError> {
        let method = self.method.unwrap_or_else(get_start_method);
        if method == StartMethod::Fork && !self.fork_with_threads {
            fork::check_threads()?;
        }
        sweep();
        let ident = identity::next_child(self.name, self.daemon, method);
        let inner = match (self.target, method) {
            (Target::Closure(job), StartMethod::Fork) => {
                fork::start(fork::Job::Closure(job), ident)?
            }
            (Target::Closure(_), method) => return Err(ProcessError::ClosureNeedsFork { method }),
            (Target::Entry { name, args }, StartMethod::Fork) => {
                let f = entry::lookup(&name).ok_or(ProcessError::UnknownEntry { name })?;
                fork::start(fork::Job::Entry(f, args), ident)?
            }
            (Target::Entry { name, args }, StartMethod::Spawn) => {
                spawn::start(&name, &args, ident, self.handshake_timeout)?
            }
            (Target::Entry { name, args }, StartMethod::Forkserver) => {
                forkserver::start(&name, args, ident, self.handshake_timeout)?
            }
        };
        Ok(Process { inner })
    }
}

/// A started child process. See the [module docs](self).
///
/// All methods take `&self`: one thread may [`join`](Self::join) while
/// another [`terminate`](Self::terminate)s. Signals go through a pidfd
/// where the kernel has them, so they never reach a process that reused
/// the child's pid.
pub struct Process {
    inner: Arc<ChildInner>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.inner.pid)
            .field("name", &self.inner.name)
            .field("daemon", &self.inner.daemon)
            .field("method", &self.inner.method)
            .finish()
    }
}

impl Process {
    /// A process that runs `f` in a forked child.
    ///
    /// `f` returns `()`, an exit code (`i32`), or `Result<(), E>`; see
    /// [`ChildResult`]. What `f` captured moves to the child: it is dropped
    /// there, never in this process (see the [module docs](self)). The
    /// start needs a single-threaded process
    /// ([`ProcessError::ForkWithThreads`]).
    #[allow(clippy::new_ret_no_self)]
    pub fn new<F, R>(f: F) -> Builder
    where
        F: FnOnce() -> R + Send + 'static,
        R: ChildResult,
    {
        Builder::with(Target::Closure(Box::new(move || f().into_exit())))
    }

    /// A process that runs `f(args)` in a forked child, where `args` holds
    /// the queue and pipe handles the child needs.
    ///
    /// As [`new`](Self::new), except for how the handles in `args` are
    /// counted: the child counts them in its own name before `f` runs, so a
    /// child killed at any moment after its start takes their count with
    /// it, and the other side sees `Disconnected` when they were the last.
    /// A handle that `f` captured instead is counted under this process
    /// until the child first uses it (see [`Inherit`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Process, Queue};
    ///
    /// # multiproc::init();
    /// let (tx, rx) = Queue::<u64>::new(16).channel()?;
    /// let offset = 10;
    /// let child = Process::with((tx.clone(), tx), move |(a, b)| {
    ///     a.send(offset).unwrap();
    ///     b.send(offset + 1).unwrap();
    /// })
    /// .start()?;
    /// child.join()?;
    /// assert_eq!(rx.recv()? + rx.recv()?, 21);
    /// assert!(rx.recv().is_err(), "both senders went with the child");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with<A, F, R>(args: A, f: F) -> Builder
    where
        A: Inherit + Send + 'static,
        F: FnOnce(A) -> R + Send + 'static,
        R: ChildResult,
    {
        Builder::with(Target::Closure(Box::new(move || {
            // Runs in the child only, first thing: the handles are counted
            // here before anything else can happen to this process.
            args.inherit();
            f(args).into_exit()
        })))
    }

    /// A process that runs the entry point registered as `name` (with
    /// [`register_entry`]) with `args`.
    pub fn entry(name: impl Into<String>, args: impl Into<Vec<u8>>) -> Builder {
        Builder::with(Target::Entry {
            name: name.into(),
            args: args.into(),
        })
    }

    /// Like [`entry`](Self::entry) with a plain-data value as the argument;
    /// the entry point reads it back with [`args_as`].
    pub fn entry_pod<T: bytemuck::Pod>(name: impl Into<String>, value: &T) -> Builder {
        Self::entry(name, bytemuck::bytes_of(value).to_vec())
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The child's pidfd (Linux), readable once the child has ended: what
    /// the pool's death watch polls.
    pub(crate) fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.pidfd()
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.inner.daemon
    }

    /// How the child was started.
    pub fn start_method(&self) -> StartMethod {
        self.inner.method
    }

    /// Waits for the child to end and reaps it. May be called again: it
    /// then returns the same result at once.
    ///
    /// # Errors
    ///
    /// [`JoinError::Panicked`] or [`JoinError::Failed`] (carrying the
    /// message and status), [`JoinError::StatusUnavailable`],
    /// [`JoinError::Io`].
    pub fn join(&self) -> Result<ExitStatus, JoinError> {
        match self.inner.wait(None)? {
            Some(s) => self.inner.outcome(s),
            None => Err(JoinError::StatusUnavailable {
                reason: "wait returned without a status",
            }),
        }
    }

    /// Like [`join`](Self::join), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinError::Timeout`] if the child is still running then; as
    /// [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<ExitStatus, JoinError> {
        let deadline = Instant::now().checked_add(timeout);
        match self.inner.wait(Some(deadline))? {
            Some(s) => self.inner.outcome(s),
            None => Err(JoinError::Timeout),
        }
    }

    /// Whether the child is still running (reaps it if it has ended).
    pub fn is_alive(&self) -> bool {
        matches!(self.inner.poll(), Ok(None))
    }

    /// Python's `exitcode`: `None` while running, the exit code once it
    /// exited, or minus the signal number if a signal killed it.
    pub fn exitcode(&self) -> Option<i32> {
        match self.inner.poll() {
            Ok(Some(s)) => Some(ExitStatus(s).exitcode()),
            _ => None,
        }
    }

    /// Sends `SIGTERM`. Does nothing if the child has already been reaped.
    ///
    /// # Errors
    ///
    /// [`io::Error`] from the kernel (`EPERM`).
    pub fn terminate(&self) -> io::Result<()> {
        self.inner.signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL`. Does nothing if the child has already been reaped.
    ///
    /// # Errors
    ///
    /// [`io::Error`] from the kernel (`EPERM`).
    pub fn kill(&self) -> io::Result<()> {
        self.inner.signal(libc::SIGKILL)
    }

    /// Sends `signal`. Does nothing if the child has already been reaped.
    ///
    /// # Errors
    ///
    /// [`io::Error`] from the kernel (`EINVAL`, `EPERM`).
    pub fn send_signal(&self, signal: i32) -> io::Result<()> {
        self.inner.signal(signal)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.inner.on_handle_drop();
        // A reaped child leaves the registry now, and with it its pidfd and
        // report channel, rather than at the next start's sweep.
        if matches!(self.inner.poll(), Ok(Some(_))) {
            child::forget_reaped(&self.inner);
        }
    }
}

/// Starts `f` in a forked child: `Process::new(f).start()`.
///
/// # Errors
///
/// As [`Builder::start`].
pub fn spawn<F, R>(f: F) -> Result<Process, ProcessError>
where
    F: FnOnce() -> R + Send + 'static,
    R: ChildResult,
{
    Process::new(f).start()
}

/// A child of this process that is still running; see [`active_children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveChild {
    /// Its pid.
    pub pid: u32,
    /// Its name.
    pub name: String,
    /// Whether it is a daemon.
    pub daemon: bool,
    /// How it was started.
    pub start_method: StartMethod,
}

/// The children this process started that are still running, including
/// detached ones (whose [`Process`] was dropped). As Python's, it reaps
/// the children that have ended.
pub fn active_children() -> Vec<ActiveChild> {
    sweep();
    child::registry()
        .iter()
        .map(|c| ActiveChild {
            pid: c.pid,
            name: c.name.clone(),
            daemon: c.daemon,
            start_method: c.method,
        })
        .collect()
}

/// The number of CPUs this process may run on (its affinity mask, as
/// `os.process_cpu_count()` in Python 3.13), at least 1.
pub fn cpu_count() -> usize {
    sys::cpu_count()
}

/// Reaps the children that have ended and forgets them, and those of the
/// parent this process was forked from; and reaps a fork server that died.
fn sweep() {
    child::sweep();
    forkserver::reap_if_dead();
}

/// Locks a mutex of this module, ignoring poisoning: the data they guard
/// stays consistent across a panic (each update is a single step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The init hook: call it first thing in `main`. In a process started with
/// `Spawn`, it runs the entry point and exits; in the fork server, it
/// serves and exits; otherwise it returns at once.
pub(crate) fn init() {
    let mut args = std::env::args_os();
    let _argv0 = args.next();
    match args.next() {
        Some(a) if a == spawn::MARKER => spawn::child_main(args),
        Some(a) if a == forkserver::MARKER => forkserver::server_main(args),
        _ => {}
    }
}

/// Exit code of a child that panicked (as a Rust program's).
pub const PANIC_EXIT_CODE: i32 = 101;

/// Exit code of a child whose closure returned `Err`.
pub const FAILURE_EXIT_CODE: i32 = 1;

/// The panic message of a payload from `catch_unwind`.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Runs a child's job under `catch_unwind`: the exit code and the report
/// frame to send, if any.
fn run_guarded(job: impl FnOnce() -> (i32, Option<String>)) -> (i32, Option<Vec<u8>>) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
        Ok((code, None)) => (code, None),
        Ok((code, Some(msg))) => (code, Some(wire::report(wire::FAILED, &msg))),
        Err(payload) => {
            let msg = panic_message(&*payload);
            // Dropping the payload could run arbitrary code (and panic
            // again); the process is about to exit anyway.
            std::mem::forget(payload);
            (PANIC_EXIT_CODE, Some(wire::report(wire::PANICKED, &msg)))
        }
    }
}

/// Flushes Rust's stdout and stderr before a child leaves with `_exit`.
pub(crate) fn flush_std_streams() {
    use std::io::Write;
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
}
