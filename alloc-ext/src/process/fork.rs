//! The `fork` start method.
//!
//! ```text
//!  parent                                   child
//!  [unless allowed] count threads: 1, or
//!        refuse (ForkWithThreads)
//!  pipe2(O_CLOEXEC|O_NONBLOCK)
//!  lock: fork server slot, registry,
//!        stdout, stderr
//!  fork() -----------------------------------> (copy of the locked state)
//!  unlock; pidfd_open; register              unlock (we hold them: sound)
//!  forget the job (no destructor runs)       forget the fork-server
//!                                            connection; take identity
//!                                            [daemon] PDEATHSIG, getppid
//!                                            run job under catch_unwind
//!                                            report -> pipe (one write)
//!  join: poll(pidfd), waitpid                flush, _exit(code)
//!        read report
//! ```
//!
//! # Why the child may run a closure: the single-thread rule
//!
//! A forked child holds a copy of every lock of the parent, in the state
//! it was in at the fork, with only the forking thread alive to release
//! it. POSIX therefore allows a child of a multi-threaded process only
//! async-signal-safe calls until it execs; a closure may allocate, print,
//! lock, so running it there would be undefined behaviour reachable from
//! safe code. So a fork start first counts the threads of the process
//! (one `stat` of `/proc/self/task`, about 2.5 us, whose link count is two
//! plus the threads), and refuses with [`ProcessError::ForkWithThreads`]
//! unless this thread is the only one: then no other thread exists to hold
//! a lock at the fork, or to start one before it (only this thread could).
//! The locks this crate itself needs in the child are taken by this thread
//! across the fork anyway (below). A caller that knows what its other
//! threads hold may opt in with the `unsafe`
//! [`Builder::allow_fork_with_threads`](super::Builder::allow_fork_with_threads);
//! the safe ways to start children from a multi-threaded process are
//! `Spawn` and `Forkserver` (whose server is single-threaded and forks
//! with `sys::fork` directly, not through here).
//!
//! # The job's two copies
//!
//! After the fork the job (the closure and every value it captured) exists
//! twice. The child's copy is the job: it runs and drops it. The parent's
//! copy is forgotten, never dropped: a destructor there would act on shared
//! state the child still uses (a lock guard that unlocks, a role handle that
//! frees its role, a `flock` released for both, a named segment unlinked,
//! a temporary directory removed). Rust cannot free a value's memory without
//! running its destructor, so whatever the captured values own on the heap
//! stays allocated in the parent: leaked, once per start, the only sound
//! choice. (The job's own box is freed: it holds no destructor of its own.)
//! The counts of queue and pipe handles that moved into the child move to
//! it when the child first touches them (see `segment::handle`, run from
//! the `at_fork` hooks).

use std::alloc::{dealloc, Layout};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::child::{self, Channel, ChildInner};
use super::identity::{self, ChildIdent};
use super::{
    flush_std_streams, forkserver, run_guarded, start_err, BoxedJob, EntryFn, ProcessError,
};
use crate::sys::{self, Forked};

/// What a forked child runs.
pub(crate) enum Job {
    Closure(BoxedJob),
    Entry(EntryFn, Vec<u8>),
}

impl Job {
    fn run(self) -> (i32, Option<String>) {
        match self {
            Job::Closure(f) => f(),
            Job::Entry(f, args) => (f(&args), None),
        }
    }
}

pub(crate) fn start(job: Job, ident: ChildIdent) -> Result<Arc<ChildInner>, ProcessError> {
    let (reports, report_w) = sys::pipe_cloexec(libc::O_NONBLOCK).map_err(start_err("pipe2"))?;
    let parent = sys::getpid();
    // Taken before the fork: the child's caches are cleared by it.
    let parent_identity = multiproc_core::identity::Identity::current().to_word();
    let prepared = identity::prepare(&ident);

    // Take every lock the child may need, so that none is held by another
    // thread at the fork (the child inherits them held by *this* thread,
    // and releases them). Order: server slot, registry, stdout, stderr.
    let server = forkserver::lock_slot();
    let mut registry = child::registry();
    let mut out = io::stdout().lock();
    let err = io::stderr().lock();
    // Output buffered so far must not be written twice.
    let _ = out.flush();

    // SAFETY: `Builder::start` checked that this thread is the only one of
    // the process (`check_threads`), so no other thread holds a lock at the
    // fork, and the child may run any code; or its caller took on, through
    // the `unsafe` `allow_fork_with_threads`, that the job only does what is
    // sound then. The locks this crate uses in the child are held by this
    // thread across the fork (above) and released in both. The child runs
    // the job under catch_unwind and leaves with _exit, never returning into
    // the caller's frames; the parent never drops its copy of the job.
    match unsafe { sys::fork() } {
        Err(e) => Err(ProcessError::Io {
            op: "fork",
            source: e,
        }),
        Ok(Forked::Child) => {
            drop(err);
            drop(out);
            // The parent's children stay in this copy of the registry, but
            // their owner pid is the parent's: they are ignored here, and
            // dropped by this child's first sweep. (Clearing them now would
            // write to heap pages shared with the parent: a copy-on-write
            // fault on both sides per page.)
            drop(registry);
            forkserver::forget_in_child(server);
            drop(reports);
            identity::install(prepared);
            crate::at_fork::run_in_child(parent_identity);
            child_main(job, report_w, ident.daemon, parent)
        }
        Ok(Forked::Parent(pid)) => {
            drop(err);
            drop(out);
            drop(server);
            drop(report_w);
            drop(prepared);
            // The child cannot be reaped before this (we reap it), so the
            // pid is still the child's.
            let pidfd = sys::pidfd_open(pid).ok().flatten();
            let inner = Arc::new(ChildInner::new(
                pid,
                &ident,
                pidfd,
                Channel::Local {
                    reports,
                    is_socket: false,
                },
            ));
            registry.push(Arc::clone(&inner));
            drop(registry);
            forget_in_parent(job);
            Ok(inner)
        }
    }
}

/// The parent's copy of a job that moved into a forked child: forgotten,
/// so that none of its destructors runs here (see the module docs). Only
/// the box that holds the closure is freed; what the captured values own
/// stays allocated.
fn forget_in_parent(job: Job) {
    match job {
        Job::Closure(f) => {
            let layout = Layout::for_value(&*f);
            let raw = Box::into_raw(f);
            if layout.size() != 0 {
                // SAFETY: `raw` comes from a `Box` of the global allocator
                // with this layout (`Layout::for_value`, as `Box` frees it);
                // its contents are never dropped nor used again here (the
                // child has its own copy).
                unsafe { dealloc(raw.cast::<u8>(), layout) };
            }
        }
        // Plain bytes: nothing outside this process to act on.
        Job::Entry(_, args) => drop(args),
    }
}

/// How long a fork start waits for threads that just ended (a joined
/// thread leaves the kernel's count a little after `join` returns) before
/// it refuses.
const THREAD_EXIT_GRACE: Duration = Duration::from_millis(20);

/// Checks that the calling thread is the only one of the process, the
/// condition under which a forked child may run arbitrary code.
///
/// # Errors
///
/// [`ProcessError::ForkWithThreads`] with the number of threads (`None`
/// if it cannot be read).
pub(crate) fn check_threads() -> Result<(), ProcessError> {
    check_threads_besides(|| 0)
}

/// As [`check_threads`], allowing `known()` more threads: threads of this
/// crate known to hold no lock a child could need while they run (the
/// pools' watchers, which sleep in `poll` and take only their own pool's
/// lock, which no child touches).
pub(crate) fn check_threads_besides(known: impl Fn() -> usize) -> Result<(), ProcessError> {
    let alone = |n: Option<usize>| n.is_some_and(|n| n <= 1 + known());
    let mut threads = thread_count();
    if alone(threads) {
        return Ok(());
    }
    let end = Instant::now() + THREAD_EXIT_GRACE;
    let mut nap = Duration::from_micros(20);
    while threads.is_some_and(|n| n > 1) && Instant::now() < end {
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(2));
        threads = thread_count();
        if alone(threads) {
            return Ok(());
        }
    }
    Err(ProcessError::ForkWithThreads { threads })
}

/// The number of threads of this process, or `None` if unknown.
#[cfg(target_os = "linux")]
fn thread_count() -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    // procfs gives /proc/<pid>/task a link count of 2 plus the number of
    // threads: one `stat`, no directory read.
    let links = std::fs::metadata("/proc/self/task").ok()?.nlink();
    if links > 2 {
        return usize::try_from(links - 2).ok();
    }
    // A procfs that does not count (some emulations): list the directory.
    let n = std::fs::read_dir("/proc/self/task").ok()?.count();
    (n > 0).then_some(n)
}

/// The number of threads of this process, or `None` if unknown.
#[cfg(not(target_os = "linux"))]
fn thread_count() -> Option<usize> {
    None
}

fn child_main(job: Job, report_w: OwnedFd, daemon: bool, parent: u32) -> ! {
    if daemon {
        // Dies with the parent; if the parent died before this line, the
        // signal will never come: leave now.
        let _ = sys::set_parent_death_signal(libc::SIGKILL);
        if sys::getppid() != parent {
            sys::exit_immediately(1);
        }
    }
    let (code, report) = run_guarded(move || job.run());
    if let Some(frame) = report {
        // At most PIPE_BUF bytes into a pipe nobody else writes: one atomic
        // write that cannot block.
        let _ = sys::write_all(report_w.as_fd(), &frame);
    }
    flush_std_streams();
    sys::exit_immediately(code)
}
