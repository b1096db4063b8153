//! # multiproc
//!
//! Python's `multiprocessing` for Rust. This crate is the std layer: it owns
//! shared mappings and processes, and wraps the structures of
//! [`multiproc_core`] in owning handles.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

pub use multiproc_core as core;

pub mod process;
pub mod shm;
mod sys;

pub use process::{
    active_children, cpu_count, current_process, get_start_method, parent_process, register_entry,
    set_start_method, spawn, ExitStatus, JoinError, Process, ProcessError, StartMethod,
};

/// The init hook: call it first thing in `main`, after registering entry
/// points with [`register_entry`].
///
/// In a process started with [`StartMethod::Spawn`] it runs the requested
/// entry point and exits; in the fork server it serves requests and exits
/// with its client; in any other process it returns at once (it reads
/// `argv[1]`, nothing more).
pub fn init() {
    process::init();
}
