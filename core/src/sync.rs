//! The one place that names atomics, cells, spin hints and futex calls.
//!
//! Every algorithm in this crate reaches shared memory through the types in
//! this module. A normal build maps them onto `core::sync::atomic` and the
//! platform futex in [`crate::sys`]; a build with `--cfg multiproc_loom` maps
//! them onto [loom](https://docs.rs/loom) so the same code is model-checked,
//! with threads standing in for processes.
//!
//! The wrappers are `#[repr(transparent)]` over the real atomics, so a shared
//! layout has the same size and alignment as if it named the atomics itself.
//! `clippy.toml` forbids the raw types everywhere else.
//!
//! # The futex model under loom
//!
//! [`Futex::wait`] is modelled with a loom `Mutex` and `Condvar` held inside
//! the [`Futex`]: the value check and going to sleep happen under the mutex,
//! and [`Futex::wake_one`]/[`Futex::wake_all`] take the same mutex before
//! notifying. That is exactly the atomicity the kernel gives (its hash-bucket
//! lock), so a lost wake-up shows up as a loom deadlock. The clock is frozen
//! under loom: a timed wait never times out unless its deadline is already
//! past, so models must not rely on time-outs to make progress.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub(crate) use core::sync::atomic::Ordering;

#[cfg(not(multiproc_loom))]
use core::sync::atomic as imp;
#[cfg(multiproc_loom)]
use loom::sync::atomic as imp;

use crate::time::Deadline;

macro_rules! atomic_wrapper {
    ($(#[$m:meta])* $name:ident, $int:ty) => {
        $(#[$m])*
        #[repr(transparent)]
        #[derive(Debug)]
        pub(crate) struct $name(imp::$name);

        #[allow(dead_code)]
        impl $name {
            /// A new atomic holding `v`.
            #[inline]
            pub(crate) fn new(v: $int) -> Self {
                Self(imp::$name::new(v))
            }
            /// Loads the value.
            #[inline]
            pub(crate) fn load(&self, order: Ordering) -> $int {
                self.0.load(order)
            }
            /// Stores `v`.
            #[inline]
            pub(crate) fn store(&self, v: $int, order: Ordering) {
                self.0.store(v, order)
            }
            /// Swaps in `v`, returning the old value.
            #[inline]
            pub(crate) fn swap(&self, v: $int, order: Ordering) -> $int {
                self.0.swap(v, order)
            }
            /// Strong compare-and-exchange.
            #[inline]
            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.0.compare_exchange(current, new, success, failure)
            }
            /// Weak compare-and-exchange (may fail spuriously).
            #[inline]
            pub(crate) fn compare_exchange_weak(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.0.compare_exchange_weak(current, new, success, failure)
            }
            /// Wrapping add, returning the old value.
            #[inline]
            pub(crate) fn fetch_add(&self, v: $int, order: Ordering) -> $int {
                self.0.fetch_add(v, order)
            }
            /// Wrapping subtract, returning the old value.
            #[inline]
            pub(crate) fn fetch_sub(&self, v: $int, order: Ordering) -> $int {
                self.0.fetch_sub(v, order)
            }
            /// Bitwise or, returning the old value.
            #[inline]
            pub(crate) fn fetch_or(&self, v: $int, order: Ordering) -> $int {
                self.0.fetch_or(v, order)
            }
            /// Bitwise and, returning the old value.
            #[inline]
            pub(crate) fn fetch_and(&self, v: $int, order: Ordering) -> $int {
                self.0.fetch_and(v, order)
            }
        }
    };
}

atomic_wrapper!(
    /// A 32-bit atomic that may live in shared memory.
    AtomicU32,
    u32
);
atomic_wrapper!(
    /// A 64-bit atomic that may live in shared memory. Indices and sizes in
    /// shared layouts are always 64-bit, so 32- and 64-bit processes agree.
    AtomicU64,
    u64
);

/// A memory fence.
#[inline]
pub(crate) fn fence(order: Ordering) {
    imp::fence(order)
}

/// A hint that the caller is spinning. Under loom it yields, so the model
/// checker can run the thread it waits for.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(multiproc_loom))]
    core::hint::spin_loop();
    #[cfg(multiproc_loom)]
    loom::thread::yield_now();
}

/// Gives up the CPU to other threads (`sched_yield`). Under loom it yields to
/// the model checker.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(multiproc_loom))]
    crate::sys::yield_now();
    #[cfg(multiproc_loom)]
    loom::thread::yield_now();
}

/// An `UnsafeCell` with loom's `with`/`with_mut` shape in both builds, so
/// loom can check every access to slot memory for data races.
#[cfg(not(multiproc_loom))]
#[repr(transparent)]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(multiproc_loom))]
#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    /// A cell holding `v`.
    #[inline]
    pub(crate) const fn new(v: T) -> Self {
        Self(core::cell::UnsafeCell::new(v))
    }
    /// Runs `f` with a const pointer to the contents.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    /// Runs `f` with a mut pointer to the contents.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
    /// The raw pointer to the contents, for guards that hand out `&T`/`&mut T`
    /// for longer than one closure. Loom cannot track such accesses.
    #[inline]
    pub(crate) fn get(&self) -> *mut T {
        self.0.get()
    }
}

#[cfg(multiproc_loom)]
pub(crate) use loom_cell::UnsafeCell;

#[cfg(multiproc_loom)]
mod loom_cell {
    /// loom's cell, plus `get` for long-lived guards (not race-tracked).
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

    #[allow(dead_code)]
    impl<T> UnsafeCell<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::cell::UnsafeCell::new(v))
        }
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            self.0.with(f)
        }
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            self.0.with_mut(f)
        }
        pub(crate) fn get(&self) -> *mut T {
            // SAFETY: the pointer escapes loom's tracking; callers document
            // why their access cannot race (they hold the slot's ownership).
            self.0.with_mut(|p| p)
        }
    }
}

/// What a futex wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken, interrupted, or the value had already changed: re-check.
    Woken,
    /// The deadline passed.
    TimedOut,
}

/// A 32-bit futex word that may live in shared memory.
///
/// Waits and wakes are process-shared (never `FUTEX_PRIVATE_FLAG`), so a
/// process can sleep on a word that another process changes and wakes.
#[cfg(not(multiproc_loom))]
#[repr(transparent)]
#[derive(Debug)]
pub(crate) struct Futex(AtomicU32);

#[cfg(multiproc_loom)]
#[derive(Debug)]
pub(crate) struct Futex(AtomicU32, loom::sync::Mutex<()>, loom::sync::Condvar);

impl core::ops::Deref for Futex {
    type Target = AtomicU32;
    #[inline]
    fn deref(&self) -> &AtomicU32 {
        &self.0
    }
}

#[allow(dead_code)]
impl Futex {
    /// A futex word holding `v`.
    pub(crate) fn new(v: u32) -> Self {
        #[cfg(not(multiproc_loom))]
        return Self(AtomicU32::new(v));
        #[cfg(multiproc_loom)]
        return Self(
            AtomicU32::new(v),
            loom::sync::Mutex::new(()),
            loom::sync::Condvar::new(),
        );
    }

    /// Sleeps while the word equals `expected`, until woken or `deadline`.
    ///
    /// Returns at once when the word differs. Spurious returns are allowed:
    /// callers loop and re-check their condition.
    #[inline]
    pub(crate) fn wait(&self, expected: u32, deadline: Option<Deadline>) -> WaitOutcome {
        #[cfg(not(multiproc_loom))]
        {
            let deadline_ns = deadline.map(Deadline::as_monotonic_nanos);
            if crate::sys::futex_wait(self.0 .0.as_ptr(), expected, deadline_ns) {
                WaitOutcome::TimedOut
            } else {
                WaitOutcome::Woken
            }
        }
        #[cfg(multiproc_loom)]
        {
            if deadline.is_some_and(|d| d.has_passed()) {
                return WaitOutcome::TimedOut;
            }
            let guard = self.1.lock().unwrap();
            if self.0.load(Ordering::SeqCst) != expected {
                return WaitOutcome::Woken;
            }
            drop(self.2.wait(guard).unwrap());
            WaitOutcome::Woken
        }
    }

    /// Wakes at most one process sleeping on this word.
    #[inline]
    pub(crate) fn wake_one(&self) {
        #[cfg(not(multiproc_loom))]
        crate::sys::futex_wake(self.0 .0.as_ptr(), 1);
        #[cfg(multiproc_loom)]
        {
            let _guard = self.1.lock().unwrap();
            self.2.notify_one();
        }
    }

    /// Wakes every process sleeping on this word.
    #[inline]
    pub(crate) fn wake_all(&self) {
        #[cfg(not(multiproc_loom))]
        crate::sys::futex_wake(self.0 .0.as_ptr(), i32::MAX as u32);
        #[cfg(multiproc_loom)]
        {
            let _guard = self.1.lock().unwrap();
            self.2.notify_all();
        }
    }
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(AtomicU64, u64);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(AtomicU64, u64);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(Futex, u32);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(UnsafeCell<u64>, u64);

/// The identity this process (or, under loom, this thread) puts in lock words.
#[inline]
pub(crate) fn current_pid() -> u32 {
    #[cfg(not(multiproc_loom))]
    return crate::sys::current_pid();
    #[cfg(multiproc_loom)]
    return (loom_identity::get() & LOOM_PID_MASK) as u32;
}

/// The identity word ([`crate::identity`]) of this process, or under loom
/// of this thread (its per-thread id with start time 1, or 2 once it took
/// a dead thread's pid over with `loom_reuse_pid`).
#[inline]
pub(crate) fn current_identity() -> u64 {
    #[cfg(not(multiproc_loom))]
    return crate::identity::word::current_word();
    #[cfg(multiproc_loom)]
    return loom_identity::get();
}

/// Whether the process with this identity word runs: the one liveness test
/// of both crates (the std layer asks it through
/// [`Identity::is_alive`](crate::identity::Identity::is_alive)). Pid and
/// start time must both match, and a zombie is dead (it will never release
/// anything); a word without a start time ([`pid_alive`]) is judged by its
/// pid. See [`crate::identity`].
///
/// Under loom: a word with a start time is alive unless it is that of the
/// thread that died (a reused pid's new word is alive, the dead thread's
/// word is not); a word without one is alive unless its pid is the dead
/// thread's and no other thread took that pid over with
/// [`loom_reuse_pid`].
#[inline]
pub(crate) fn identity_alive(word: u64) -> bool {
    #[cfg(not(multiproc_loom))]
    return crate::identity::word::alive_word(word);
    #[cfg(multiproc_loom)]
    {
        let Some(id) = crate::identity::word::Identity::from_word(word) else {
            return false;
        };
        // SeqCst: the model's stand-in for the kernel's view of a death
        // (a death happens before any process observes it); simplest to
        // reason about, and it is not the code under test.
        let dead = LOOM_DEAD.load(Ordering::SeqCst);
        if id.start_ticks().is_none() {
            let pid = u64::from(id.pid());
            pid != dead & LOOM_PID_MASK || u64::from(LOOM_REUSED.load(Ordering::SeqCst)) == pid
        } else {
            dead != id.to_word()
        }
    }
}

/// This process's pid namespace ([`crate::identity::pid_namespace`]);
/// under loom, always 1.
#[inline]
pub(crate) fn pid_namespace() -> Option<u64> {
    #[cfg(not(multiproc_loom))]
    return crate::sys::pid_namespace();
    #[cfg(multiproc_loom)]
    Some(1)
}

/// Whether process `pid` runs, for callers that recorded only a pid (a
/// futex word, a slot's `seq`): [`identity_alive`] of the pid without a
/// start time, so a zombie counts as dead. Under loom a thread is alive
/// unless it declared itself dead with [`loom_die`] (at most one per model
/// run), and a dead thread's pid runs again once another thread took it
/// over with [`loom_reuse_pid`]; real deaths are tested with real processes
/// and `kill -9`.
#[inline]
pub(crate) fn pid_alive(pid: u32) -> bool {
    identity_alive(crate::identity::word::pid_word(pid))
}

#[cfg(multiproc_loom)]
const LOOM_PID_MASK: u64 = (1 << crate::identity::word::PID_BITS) - 1;

#[cfg(multiproc_loom)]
mod loom_identity {
    use core::cell::Cell;

    loom::thread_local! {
        /// This thread's identity word: a fresh pid (below 2^22), start 1.
        static ID: Cell<u64> = Cell::new({
            static NEXT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            u64::from(n % ((1 << crate::identity::word::PID_BITS) - 2) + 1)
                | 1 << crate::identity::word::PID_BITS
        });
    }

    pub(super) fn get() -> u64 {
        ID.with(Cell::get)
    }

    #[cfg(test)]
    pub(super) fn set(word: u64) {
        ID.with(|c| c.set(word));
    }
}

#[cfg(multiproc_loom)]
loom::lazy_static! {
    /// The identity word of the thread that declared itself dead, or 0.
    static ref LOOM_DEAD: AtomicU64 = AtomicU64::new(0);
    /// The dead thread's pid once another thread reused it, or 0.
    static ref LOOM_REUSED: AtomicU32 = AtomicU32::new(0);
}

/// Under loom: the calling thread counts as a dead process from now on (as
/// if killed with `SIGKILL`); it must not touch shared state after this.
#[cfg(all(test, multiproc_loom))]
pub(crate) fn loom_die() {
    LOOM_DEAD.store(current_identity(), Ordering::SeqCst);
}

/// Under loom: the calling thread becomes a new process that got the pid
/// of the thread that died ([`loom_die`], which must have happened before:
/// join the dead thread first), with another start time. Its old pid is
/// simply never used again in the model.
#[cfg(all(test, multiproc_loom))]
pub(crate) fn loom_reuse_pid() {
    let dead = LOOM_DEAD.load(Ordering::SeqCst);
    assert!(dead != 0, "loom_reuse_pid needs a thread that died first");
    let pid = dead & LOOM_PID_MASK;
    loom_identity::set(pid | 2 << crate::identity::word::PID_BITS);
    LOOM_REUSED.store(pid as u32, Ordering::SeqCst);
}

#[cfg(multiproc_loom)]
loom::thread_local! {
    /// Set by [`loom_header_prebuilt`] in a creating thread.
    static LOOM_HEADER_PREBUILT: core::cell::Cell<bool> = core::cell::Cell::new(false);
}

/// Under loom: whether this thread's region `create` finds the header's
/// atomics built already (by the model, before attachers started), so it
/// must not build them again under their feet. Real builds never build
/// them: zeroed memory already is an uninit header.
#[cfg(multiproc_loom)]
pub(crate) fn loom_header_is_prebuilt() -> bool {
    LOOM_HEADER_PREBUILT.with(core::cell::Cell::get)
}

/// Under loom: the calling thread creates regions whose header the model
/// built before it started attachers ([`loom_header_is_prebuilt`]).
#[cfg(all(test, multiproc_loom))]
pub(crate) fn loom_header_prebuilt() {
    LOOM_HEADER_PREBUILT.with(|c| c.set(true));
}
