//! # multiproc-core
//!
//! The part of [multiproc](https://docs.rs/multiproc) that lives *inside*
//! shared memory: `#![no_std]`, no allocator, no files, no processes. Each
//! structure is built in a [`Region`](region::Region) (a pointer and a length,
//! typically a shared mapping that several processes map at different
//! addresses) and found again there by another process, which validates the
//! [`RegionHeader`](region::RegionHeader) before trusting a byte of it.
//!
//! | module | what | Python counterpart |
//! |---|---|---|
//! | [`region`] | header, validation, [`ShmSafe`](region::ShmSafe) | — |
//! | [`spsc`] | bounded single-producer single-consumer ring of `T: Pod` | `Pipe` (one way) |
//! | [`mpmc`] | bounded multi-producer multi-consumer ring of `T: Pod` | `Queue` |
//! | [`msgqueue`] | bounded multi-producer multi-consumer queue of variable-size byte messages | `Queue` (of any picklable object) |
//! | [`bytering`] | ring of length-prefixed byte frames | `Connection.send_bytes` |
//! | [`claim_gate`] | a consumer claims numbered items in order, the producer takes back the unclaimed ones (the pool's revocable queue) | — |
//! | [`wait`] | eventcount over a shared futex, adaptive spin | — |
//! | [`mutex`] | robust process-shared mutex, poisoned when its holder dies | `Lock` |
//! | [`condvar`], [`semaphore`], [`event`], [`barrier`] | the other synchronisation primitives | `Condition`, `Semaphore`, `Event`, `Barrier` |
//! | [`identity`] | process identity (pid plus start time) and liveness that a reused pid cannot pass | — |
//! | [`peers`] | per-process handle counts of a queue, with liveness | — |
//! | [`value`] | `Value<T>`, `AtomicValue<T>`, `Array<T>` | `Value`, `Array` |
//!
//! Every blocking call has a `*_timeout` (or deadline) variant. Every atomic
//! goes through one facade (`sync`), so the algorithms are model-checked
//! with loom under `--cfg multiproc_loom`.
//!
//! # Example
//!
//! A ring between two threads; between processes, the region would be a
//! shared mapping and the consumer would `attach` to it.
//!
//! ```
//! use multiproc_core::region::Region;
//! use multiproc_core::spsc::SpscRing;
//!
//! #[repr(C, align(128))]
//! struct Mem([u8; 4096]);
//! let mut mem = Box::new(Mem([0; 4096]));
//! let region = Region::from_mut_slice(&mut mem.0);
//!
//! let ring = SpscRing::<u64>::create(region, 16).unwrap();
//! let (mut tx, mut rx) = ring.split().unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(move || for i in 0..100u64 { tx.push(i).unwrap(); });
//!     for i in 0..100u64 { assert_eq!(rx.pop().unwrap(), i); }
//! });
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
// Under loom, platform code and time-based paths are unused by design.
#![cfg_attr(multiproc_loom, allow(dead_code, unused_imports))]

#[cfg(any(test, multiproc_loom))]
extern crate std;

#[cfg(all(test, not(multiproc_loom)))]
mod attach_tests;
pub(crate) mod sync;
mod sys;

pub mod barrier;
mod bell;
pub mod bytering;
pub mod claim_gate;
pub mod condvar;
pub mod event;
pub mod identity;
pub mod mpmc;
pub mod msgqueue;
pub mod mutex;
pub mod peers;
pub mod region;
mod ring;
pub mod role;
pub mod semaphore;
pub mod spsc;
#[cfg(test)]
mod test_util;
pub mod time;
pub mod value;
pub mod wait;

pub use sync::WaitOutcome;
