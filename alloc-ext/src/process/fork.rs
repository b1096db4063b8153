//! The `fork` start method.
//!
//! ```text
//!  parent                                   child
//!  pipe2(O_CLOEXEC|O_NONBLOCK)
//!  lock: fork server slot, registry,
//!        stdout, stderr
//!  fork() -----------------------------------> (copy of the locked state)
//!  unlock; pidfd_open; register              unlock (we hold them: sound)
//!                                            forget the fork-server
//!                                            connection; take identity
//!                                            [daemon] PDEATHSIG, getppid
//!                                            run job under catch_unwind
//!                                            report -> pipe (one write)
//!  join: poll(pidfd), waitpid                flush, _exit(code)
//!        read report
//! ```

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

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

    // SAFETY: the child below takes no lock that another thread may hold
    // (see above), runs the job under catch_unwind and leaves with _exit,
    // never returning into the caller's frames.
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
            crate::queue::after_fork_in_child(parent);
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
            // The parent's copy of what moved into the child: queue handles
            // hand their counts to the child as they drop. One that cannot
            // be counted there (a full peer table) must not run uncounted:
            // the child is killed and reaped, and the start fails.
            if let Err(e) = crate::queue::hand_over_to(pid, job) {
                let _ = inner.signal(libc::SIGKILL);
                let _ = inner.wait(None);
                return Err(ProcessError::PeerTableFull(e));
            }
            Ok(inner)
        }
    }
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
