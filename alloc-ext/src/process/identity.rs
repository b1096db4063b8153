//! Who this process is: its name, daemon flag, start method and parent, as
//! Python's `current_process()` and `parent_process()` report them.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use super::StartMethod;
use crate::sys;

/// The identity a child is started with (computed in the parent).
#[derive(Debug, Clone)]
pub(crate) struct ChildIdent {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) method: StartMethod,
    /// Python's `_identity`: `[3]` for `Process-3`, `[3, 1]` for its first
    /// child.
    pub(crate) path: Vec<u32>,
    /// The process that starts it.
    pub(crate) parent_pid: u32,
}

#[derive(Debug)]
struct Identity {
    name: String,
    daemon: bool,
    method: Option<StartMethod>,
    path: Vec<u32>,
    parent_pid: Option<u32>,
    /// The parent's identity word (pid plus start time), taken while it
    /// surely ran: `None` in the main process, or if it had exited already.
    parent: Option<u64>,
}

/// Null: the main process. Otherwise a leaked `Identity`, set once per
/// process (a forked child replaces the pointer it inherited).
static IDENTITY: AtomicPtr<Identity> = AtomicPtr::new(std::ptr::null_mut());
/// The process `IDENTITY` was set in: a forked child inherits the pointer
/// and must not take its parent's identity for its own.
static IDENTITY_PID: AtomicU32 = AtomicU32::new(0);
/// Children started so far, for default names.
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn current() -> Option<&'static Identity> {
    // Acquire: pairs with the Release store of IDENTITY_PID in `install`,
    // so the pointer stored before it, and the Identity, are visible.
    if IDENTITY_PID.load(Ordering::Acquire) != sys::getpid() {
        return None;
    }
    let p = IDENTITY.load(Ordering::Relaxed);
    // SAFETY: a non-null pointer was made by Box::into_raw in `install`
    // and is never freed.
    unsafe { p.as_ref() }
}

/// A child's identity, allocated in the parent before `fork` so that the
/// child only stores a pointer (it writes no heap page, each of which would
/// cost it and the parent a copy-on-write fault).
#[derive(Debug)]
pub(crate) struct Prepared(Box<Identity>);

/// Builds the identity record of a child about to start.
pub(crate) fn prepare(ident: &ChildIdent) -> Prepared {
    Prepared(Box::new(Identity {
        name: ident.name.clone(),
        daemon: ident.daemon,
        method: Some(ident.method),
        path: ident.path.clone(),
        parent_pid: Some(ident.parent_pid),
        parent: parent_identity(ident.parent_pid),
    }))
}

/// The identity of `parent_pid`: this process's own when it is the one
/// preparing its child (fork: no system call), else read from `/proc`
/// (spawn and forkserver: the child asks about its parent, which is
/// waiting for it).
fn parent_identity(parent_pid: u32) -> Option<u64> {
    let me = multiproc_core::identity::Identity::current();
    if me.pid() == parent_pid {
        return Some(me.to_word());
    }
    multiproc_core::identity::of_pid(parent_pid).map(|id| id.to_word())
}

/// Records this process's identity as a child (in a forked child, right
/// after the fork; in a re-executed one, in `init`).
pub(crate) fn install(id: Prepared) {
    // Relaxed: no other thread exists yet in a fresh child.
    COUNTER.store(0, Ordering::Relaxed);
    // The old pointer (the parent's identity, inherited by fork) is leaked
    // on purpose: another thread of the parent might have been reading it.
    IDENTITY.store(Box::into_raw(id.0), Ordering::Relaxed);
    // Release: pairs with the Acquire in `current`.
    IDENTITY_PID.store(sys::getpid(), Ordering::Release);
}

/// [`prepare`] then [`install`].
pub(crate) fn set_child(ident: &ChildIdent) {
    install(prepare(ident));
}

/// The identity of the next child this process starts.
pub(crate) fn next_child(name: Option<String>, daemon: bool, method: StartMethod) -> ChildIdent {
    // Relaxed: only uniqueness of the counter matters.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let mut path = current().map_or_else(Vec::new, |id| id.path.clone());
    path.push(n);
    let name = name.unwrap_or_else(|| {
        let parts: Vec<String> = path.iter().map(u32::to_string).collect();
        format!("Process-{}", parts.join(":"))
    });
    ChildIdent {
        name,
        daemon,
        method,
        path,
        parent_pid: sys::getpid(),
    }
}

/// This process, as [`current_process`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    /// Its pid.
    pub pid: u32,
    /// `"MainProcess"`, or the name it was started with.
    pub name: String,
    /// Whether it was started as a daemon.
    pub daemon: bool,
    /// How it was started (`None` for the main process).
    pub start_method: Option<StartMethod>,
}

/// This process: its pid, name (`"MainProcess"` unless it was started by
/// this crate), daemon flag and start method.
pub fn current_process() -> CurrentProcess {
    match current() {
        Some(id) => CurrentProcess {
            pid: sys::getpid(),
            name: id.name.clone(),
            daemon: id.daemon,
            start_method: id.method,
        },
        None => CurrentProcess {
            pid: sys::getpid(),
            name: "MainProcess".to_owned(),
            daemon: false,
            start_method: None,
        },
    }
}

/// The process that started this one; see [`parent_process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentProcess {
    /// Its pid.
    pub pid: u32,
    /// Its identity word (pid plus start time), if it was known.
    ident: Option<u64>,
}

impl ParentProcess {
    /// Whether it still runs. It is dead once it exited, even before it is
    /// reaped (a zombie), and a process that reuses its pid afterwards is
    /// not taken for it (its start time differs). As Python, which asks the
    /// parent's sentinel.
    pub fn is_alive(&self) -> bool {
        match self.ident {
            Some(word) => multiproc_core::identity::word_alive(word),
            // The parent had exited when this process looked it up.
            None => false,
        }
    }
}

/// The process that started this one with this crate, or `None` in the
/// main process (as Python). For a `Forkserver` child it is the process
/// that asked for it, not the server.
pub fn parent_process() -> Option<ParentProcess> {
    current().and_then(|id| {
        id.parent_pid.map(|pid| ParentProcess {
            pid,
            ident: id.parent,
        })
    })
}
