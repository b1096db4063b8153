//! Platform code for the core: futex, clock, process identity and liveness.
//!
//! One implementation is chosen here; a port to another OS adds one file.
//! Every function takes plain integers and raw pointers, never atomics, so
//! the loom facade in [`crate::sync`] stays the only file that names them.

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(all(unix, not(target_os = "linux")), path = "unix.rs")]
mod imp;

#[allow(unused_imports)]
pub(crate) use imp::{
    cache_identity, cached_identity, current_pid, current_start_ticks, fork_generation, futex_wait,
    futex_wake, monotonic_ns, pid_namespace, pid_start_ticks, yield_now,
};
