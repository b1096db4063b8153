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

pub mod shm;
mod sys;
