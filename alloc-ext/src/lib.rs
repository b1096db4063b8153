//! # multiproc
//!
//! Python's `multiprocessing` for Rust. This crate is the std layer: it owns
//! shared mappings and processes, and wraps the structures of
//! [`multiproc_core`] in owning handles.
//!
//! | module | what | Python counterpart |
//! |---|---|---|
//! | [`shm`] | anonymous and named shared memory, typed regions, leaked-segment cleanup | `multiprocessing.shared_memory.SharedMemory` |
//! | [`queue`], [`spsc`] | MPMC `Queue` (`Sender`/`Receiver`), `SimpleQueue`, `JoinableQueue`, SPSC channel, MPMC queues of byte messages ([`queue::message_channel`]) and of any serde type (`queue::object_channel`, `serde` feature), surviving killed peers | `Queue` (of any picklable object), `SimpleQueue`, `JoinableQueue` |
//! | [`sync`] | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, `Value`, `AtomicValue`, `Array`, robust against killed holders | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, `Value`, `Array` |
//! | [`pipe`](mod@pipe) | duplex and one-way [`Pipe`] of byte messages and `Pod` values; SPSC byte-message queue ([`queue::bytes_channel`]) | `Pipe`, `Connection` |
//! | [`connection`] | authenticated message connections over Unix and TCP sockets, wire-compatible with Python (both handshake generations) | `connection.Listener`, `connection.Client` |
//! | [`manager`] | a server process of shared queues, dicts, lists, values, locks, events, and their proxies; Python clients can connect | `Manager`, `BaseManager`, `SyncManager` |
//! | [`pool`] | [`Pool`]: `map`, `imap`, `imap_unordered`, `starmap`, `apply_async` over worker processes, serde items, a dead worker fails only its task | `Pool` |
//! | `mpi` (feature `mpi`) | `mpi::Pool`: the pool's calls over MPI ranks (`mpirun`, `srun`), a local shared-memory pool inside each rank | `mpi4py.futures.MPIPoolExecutor` |
//! | [`process`] | [`Process`] with the `fork`, `spawn` and `forkserver` start methods | `Process`, `set_start_method`, `current_process`, `parent_process`, `active_children`, `cpu_count` |
//!
//! # Example
//!
//! A child process writes into a named segment its parent created:
//!
//! ```
//! use multiproc::shm::SharedMemory;
//!
//! let mut shm = SharedMemory::create_unique(4096)?;
//! let name = shm.name().unwrap().to_owned();
//! let child = multiproc::spawn(move || -> Result<(), multiproc::shm::ShmError> {
//!     SharedMemory::open(&name)?.write_at(0, b"hello from the child")
//! })?;
//! child.join()?;
//! let mut buf = [0u8; 20];
//! shm.read_at(0, &mut buf)?;
//! assert_eq!(&buf, b"hello from the child");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Programs that use the `spawn` or `forkserver` start methods call
//! [`init`] first thing in `main`, after registering their entry points;
//! see [`process`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

/// The `no_std` core, [`multiproc_core`]: the structures that live inside a
/// shared region (rings, locks, values, the region header), for use over
/// memory mapped by hand. Named `raw` rather than `core`, which would
/// shadow the `core` crate for code that writes `use multiproc::*`.
pub use multiproc_core as raw;

mod at_fork;
pub mod connection;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod manager;
#[cfg(feature = "mpi")]
pub mod mpi;
/// The MPI pool's message layout (`mpi::wire`): plain bytes, built without
/// MPI too, for the fuzz targets.
#[cfg(any(feature = "mpi", feature = "fuzzing", test))]
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
#[path = "mpi/wire.rs"]
mod mpi_wire;
pub mod pipe;
#[cfg(feature = "serde")]
mod plain;
#[cfg(feature = "serde")]
pub mod pool;
pub mod process;
pub mod queue;
mod segment;
pub mod shm;
pub mod sync;
mod sys;

pub use pipe::{pipe, pipe_oneway, Connection, Pipe, PipeError, PipeRecvError, PipeSendError};
pub use queue::spsc;
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use sync::{
    Array, AtomicValue, Barrier, BoundedSemaphore, Condition, Event, Lock, Mutex, RLock, Semaphore,
    Value,
};

#[cfg(feature = "serde")]
pub use plain::Plain;
#[cfg(feature = "serde")]
pub use pool::Pool;
pub use process::{
    active_children, cpu_count, current_process, get_start_method, parent_process, register_entry,
    set_start_method, spawn, ExitStatus, Inherit, JoinError, Process, ProcessError, StartMethod,
};

/// The init hook: call it first thing in `main`, after registering entry
/// points with [`register_entry`].
///
/// In a process started with [`StartMethod::Spawn`] it runs the requested
/// entry point and exits; in the fork server it serves requests and exits
/// with its client; in any other process it returns at once (it reads
/// `argv[1]`, nothing more).
///
/// It acts on `--multiproc-spawn ...` or `--multiproc-forkserver ...` only
/// when the launch proves that it comes from a parent process running this
/// same program (on Linux: the kernel's record of the parent, of its
/// executable, and of who answered a random challenge over the socket it
/// passed). Anyone else who runs the program with those arguments cannot
/// make it run an entry point: `init` then returns without touching
/// anything but that socket, and `main` goes on with its command line
/// unchanged (`std::env::args` still starts with the `--multiproc-*`
/// argument). A child's descriptors are limited to 0, 1, 2 and its socket:
/// nothing else of the parent's reaches it, close-on-exec or not.
pub fn init() {
    #[cfg(feature = "serde")]
    pool::register_worker_entry();
    process::init();
}

#[cfg(test)]
mod tests {
    /// `use multiproc::*` leaves `core` naming the language's crate: no
    /// item of the crate root is called `core`.
    #[test]
    fn glob_import_keeps_core() {
        #[allow(unused_imports)]
        use crate::*;
        assert_eq!(core::mem::size_of::<u16>(), 2);
    }
}
