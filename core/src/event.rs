//! Process-shared event flag: Python's `multiprocessing.Event`.
//!
//! A [`RawEvent`] is two 32-bit words, embeddable in any shared structure;
//! an [`Event`] is one built in a region of its own ([`Kind::Event`]).
//!
//! ```text
//!  RawEvent (8 bytes, align 4)
//!  +-----------------------------------+-----------------+
//!  | state: Futex                      | waiters: u32    |
//!  |  bits 31..1: times set (wrapping) |  sleepers       |
//!  |  bit 0: SET                       |  (a hint)       |
//!  +-----------------------------------+-----------------+
//! ```
//!
//! | operation | `state` | system call |
//! |---|---|---|
//! | `set` | unset `g:0` -> `g+1:1` (Release); set: unchanged | wake all, only on `0 -> 1` with `waiters != 0` |
//! | `clear` | `g:1` -> `g:0` | never |
//! | `is_set` | load bit 0 (Acquire) | never |
//! | `wait` | returns once the word differs from the unset `g:0` it saw | only to sleep |
//!
//! The count of sets in the upper bits is what lets a waiter notice a
//! `set` that was followed by a `clear` before it got to run: the word it
//! sleeps on has changed, so `wait` returns `true`, as Python's
//! `threading.Event.wait` does when it was notified. (Only a waiter that
//! sleeps through exactly 2^31 set/clear pairs could miss them.)
//!
//! # Waking only sleepers
//!
//! ```text
//!  waiter (saw g:0)                    setter
//!  ----------------                    ------
//!  waiters += 1                        state: g:0 -> g+1:1   (Release CAS)
//!  fence(SeqCst)  -------- pairs ----- fence(SeqCst)
//!  futex_wait(state, g:0)              if waiters != 0: wake all
//!  waiters -= 1; re-check
//! ```
//!
//! Either the setter sees the waiter and wakes it, or the kernel's check of
//! `state` (atomic with going to sleep) sees the new word and the waiter does
//! not sleep.
//!
//! # Processes that die
//!
//! An event has no owner: a process killed while waiting leaves `waiters`
//! too high, so later sets make a wake system call they did not need. A
//! process that dies before it could `set` leaves waiters waiting up to
//! their timeouts ([`RawEvent::wait_timeout`]).

use core::ops::Deref;
use core::time::Duration;

use crate::region::{AttachError, ElemType, InitError, Kind, Parts, Region, ShmSafe, Spec};
use crate::sync::{fence, AtomicU32, Futex, Ordering, WaitOutcome};
use crate::time::Deadline;
use crate::wait::Spin;

/// Bit 0 of `state`: the flag.
const SET_BIT: u32 = 1;
/// One step of the set count in bits 31..1 of `state`.
const SET_COUNT_ONE: u32 = 2;

/// An event flag that may live in shared memory.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use multiproc_core::event::RawEvent;
///
/// let ev = RawEvent::new();
/// assert!(!ev.wait_timeout(Duration::from_millis(1)));
/// ev.set();
/// assert!(ev.is_set());
/// ev.wait(); // returns at once
/// ev.clear();
/// assert!(!ev.is_set());
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawEvent {
    /// Flag in bit 0, number of `0 -> 1` transitions above it; the futex
    /// word waiters sleep on.
    state: Futex,
    /// Waiters between announcing themselves and waking up. A hint: only
    /// "zero" matters (no wake system call needed).
    waiters: AtomicU32,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RawEvent, [u32; 2]);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(RawEvent, u32);

// SAFETY: repr(C) of two 32-bit atomics: valid for every bit pattern, no
// pointers, alignment 4; size and alignment pinned above.
unsafe impl ShmSafe for RawEvent {}

impl Default for RawEvent {
    fn default() -> Self {
        Self::new()
    }
}

impl RawEvent {
    /// An event that is not set.
    pub fn new() -> Self {
        Self {
            state: Futex::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// Whatever the caller did before `set` happens before whatever a waiter
    /// does after its `wait` (or `is_set`) saw the flag.
    pub fn set(&self) {
        // Relaxed: only a guess for the CAS below, which re-checks it.
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            let new = if old & SET_BIT != 0 {
                // Already set: write the same word back, so this `set` too
                // publishes what its caller did (an RMW, still Release).
                old
            } else {
                (old | SET_BIT).wrapping_add(SET_COUNT_ONE)
            };
            // Release: pairs with the Acquire loads in `is_set` and `wait`.
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        if old & SET_BIT == 0 {
            // SeqCst fence: pairs with the fence in `wait_slow`. Either we
            // see the waiter's increment, or its futex check sees our word.
            fence(Ordering::SeqCst);
            // Relaxed: ordered after the state update by the fence above.
            if self.waiters.load(Ordering::Relaxed) != 0 {
                self.state.wake_all();
            }
        }
        // A word that was already set had no sleepers to wake: they sleep
        // only on an unset word, and the `set` that changed it woke them.
    }

    /// Clears the flag. Waiters that start after this wait for the next
    /// [`set`](Self::set).
    pub fn clear(&self) {
        // Release: pairs with the Acquire loads in `is_set`/`wait`, so a
        // process that sees the flag down also sees what the clearer did
        // before (Python gives this through its internal lock).
        self.state.fetch_and(!SET_BIT, Ordering::Release);
    }

    /// Whether the flag is set now.
    #[inline]
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with the Release CAS in `set`.
        self.state.load(Ordering::Acquire) & SET_BIT != 0
    }

    /// Waits until the flag is set.
    ///
    /// A flag that never comes (its setter died) is waited for forever:
    /// where that can happen, prefer [`wait_timeout`](Self::wait_timeout).
    #[inline]
    pub fn wait(&self) {
        let woken = self.wait_inner(None);
        debug_assert!(woken);
    }

    /// Waits until the flag is set, at most `timeout`. Returns `true` if it
    /// was set during the call (even if cleared again since), `false` on
    /// time-out; like Python's `Event.wait(timeout)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use multiproc_core::event::RawEvent;
    ///
    /// let ev = RawEvent::new();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| ev.set());
    ///     assert!(ev.wait_timeout(Duration::from_secs(10)));
    /// });
    /// ```
    #[inline]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_inner(Some(Deadline::after(timeout)))
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline.
    #[inline]
    pub fn wait_deadline(&self, deadline: Deadline) -> bool {
        self.wait_inner(Some(deadline))
    }

    #[inline]
    fn wait_inner(&self, deadline: Option<Deadline>) -> bool {
        // Acquire: pairs with the Release CAS in `set`.
        let seen = self.state.load(Ordering::Acquire);
        if seen & SET_BIT != 0 {
            return true;
        }
        self.wait_slow(seen, deadline)
    }

    /// Waits for the word to differ from `seen` (an unset word): a `set`
    /// happened since, whatever came after it.
    #[cold]
    fn wait_slow(&self, seen: u32, deadline: Option<Deadline>) -> bool {
        let mut backoff = Spin::DEFAULT.start();
        while backoff.spin() {
            // Acquire: pairs with the Release CAS in `set`.
            if self.state.load(Ordering::Acquire) != seen {
                return true;
            }
        }
        loop {
            // Relaxed: ordered before the futex check by the fence below.
            self.waiters.fetch_add(1, Ordering::Relaxed);
            // SeqCst fence: pairs with the fence in `set`. Either the setter
            // sees our increment and wakes us, or the kernel's check of
            // `state` in `wait` sees the set and we do not sleep.
            fence(Ordering::SeqCst);
            let outcome = self.state.wait(seen, deadline);
            // Relaxed: a hint for setters; we re-check the word ourselves.
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            // Acquire: pairs with the Release CAS in `set`.
            if self.state.load(Ordering::Acquire) != seen {
                return true;
            }
            if outcome == WaitOutcome::TimedOut {
                return false;
            }
        }
    }
}

/// An event in a region of its own, shared between processes.
///
/// It dereferences to [`RawEvent`] for `set`, `wait` and the rest. It is a
/// handle (a reference into the region): `Copy`, `Send` and `Sync`.
///
/// # Examples
///
/// ```
/// use multiproc_core::event::Event;
/// use multiproc_core::region::Region;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 256]);
/// let mut mem = Box::new(Mem([0; 256]));
/// let region = Region::from_mut_slice(&mut mem.0);
///
/// let ready = Event::create(region).unwrap();
/// let seen_by_peer = Event::attach(region).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| seen_by_peer.wait());
///     ready.set();
/// });
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    raw: &'a RawEvent,
}

type EventParts<'a> = Parts<'a, RawEvent, u8>;

/// An event region has no elements: the header records no capacity.
fn elems_for(capacity: u64) -> Option<u64> {
    (capacity == 0).then_some(0)
}

impl<'a> Event<'a> {
    /// Bytes an event region needs (header included).
    pub fn memory_size() -> usize {
        crate::region::Layout::of::<RawEvent, u8>(0)
            .expect("a fixed layout fits")
            .total
    }

    /// Builds an unset event in `region`.
    ///
    /// # Errors
    ///
    /// As [`region`](crate::region) creation: too small, misaligned,
    /// already initialised.
    pub fn create(region: Region<'a>) -> Result<Self, InitError> {
        Self::create_tagged(region, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` that
    /// [`attach_tagged_timeout`](Self::attach_tagged_timeout) must match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, tag: u64) -> Result<Self, InitError> {
        let spec = Spec {
            kind: Kind::Event,
            elem: ElemType::of::<()>().tagged(tag),
            capacity: 0,
            count: 0,
        };
        let parts = EventParts::create(region, spec, RawEvent::new, |_| 0)?;
        Ok(Self { raw: parts.body })
    }

    crate::region::attach_fns!('a, "an event");

    /// As [`attach_timeout`](Self::attach_timeout), with a deadline.
    ///
    /// # Errors
    ///
    /// As [`attach_timeout`](Self::attach_timeout).
    pub fn attach_deadline(region: Region<'a>, deadline: Deadline) -> Result<Self, AttachError> {
        Self::open(region, 0, Some(deadline))
    }

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let parts = EventParts::open(
            region,
            Kind::Event,
            ElemType::of::<()>().tagged(tag),
            elems_for,
            deadline,
        )?;
        Ok(Self { raw: parts.body })
    }

    /// The event itself, for as long as the region lives.
    pub fn as_raw(&self) -> &'a RawEvent {
        self.raw
    }
}

impl Deref for Event<'_> {
    type Target = RawEvent;
    fn deref(&self) -> &RawEvent {
        self.raw
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::vec::Vec;

    use crate::test_util::{buf, bytes};

    #[test]
    fn set_clear_is_set() {
        let e = RawEvent::default();
        assert!(!e.is_set());
        e.clear();
        assert!(!e.is_set());
        e.set();
        assert!(e.is_set());
        let after_first = e.state.load(Ordering::Relaxed);
        e.set();
        assert!(e.is_set());
        assert_eq!(
            e.state.load(Ordering::Relaxed),
            after_first,
            "setting a set event counts no new set"
        );
        e.clear();
        assert!(!e.is_set());
        e.set();
        assert_eq!(e.state.load(Ordering::Relaxed), after_first + SET_COUNT_ONE);
    }

    #[test]
    fn set_count_wraps() {
        let e = RawEvent::new();
        e.state.store(u32::MAX - 1, Ordering::Relaxed); // count at max, unset
        e.set();
        assert!(e.is_set());
        assert_eq!(e.state.load(Ordering::Relaxed), SET_BIT);
    }

    #[test]
    fn wait_and_timeouts() {
        let e = RawEvent::new();
        assert!(!e.wait_timeout(Duration::ZERO));
        assert!(!e.wait_timeout(Duration::from_millis(5)));
        assert!(!e.wait_deadline(Deadline::after(Duration::from_millis(1))));
        assert_eq!(e.waiters.load(Ordering::Relaxed), 0);
        e.set();
        e.wait();
        assert!(e.wait_timeout(Duration::ZERO));
        assert!(e.wait_deadline(Deadline::after(Duration::ZERO)));
        e.clear();
        assert!(!e.wait_timeout(Duration::from_millis(1)));
    }

    #[test]
    fn set_wakes_every_waiter() {
        let e = Arc::new(RawEvent::new());
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let e = e.clone();
                thread::spawn(move || {
                    if i % 2 == 0 {
                        e.wait();
                        true
                    } else {
                        e.wait_timeout(Duration::from_secs(60))
                    }
                })
            })
            .collect();
        thread::sleep(std::time::Duration::from_millis(20));
        e.set();
        for h in hs {
            assert!(h.join().unwrap());
        }
        assert_eq!(e.waiters.load(Ordering::Relaxed), 0);
    }

    /// A set followed at once by a clear still releases a waiter that was
    /// asleep through both (it was set during its wait).
    #[test]
    fn pulse_releases_sleeper() {
        let e = Arc::new(RawEvent::new());
        let e2 = e.clone();
        let h = thread::spawn(move || e2.wait_timeout(Duration::from_secs(60)));
        // Pulse until the waiter is surely asleep; every pulse must count.
        while e.waiters.load(Ordering::Relaxed) == 0 && !h.is_finished() {
            thread::yield_now();
        }
        e.set();
        e.clear();
        assert!(h.join().unwrap());
        assert!(!e.is_set());
    }

    #[test]
    fn tagged_attach_needs_the_same_tag() {
        let mut b = buf(Event::memory_size());
        let r = Region::from_mut_slice(bytes(&mut b));
        let e = Event::create_tagged(r, 3).unwrap();
        Event::attach_tagged_timeout(r, 3, Duration::ZERO)
            .unwrap()
            .set();
        assert!(e.is_set());
        assert!(matches!(
            Event::attach_tagged_timeout(r, 4, Duration::ZERO),
            Err(AttachError::TypeMismatch { .. })
        ));
        assert!(matches!(
            Event::attach(r),
            Err(AttachError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn region_create_attach_and_errors() {
        let mut b = buf(256);
        let r = Region::from_mut_slice(bytes(&mut b));
        assert!(Event::memory_size() <= 256);
        assert_eq!(Event::attach(r).unwrap_err(), AttachError::NotReady);
        assert_eq!(
            Event::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
            AttachError::NotReady
        );
        let e = Event::create(r).unwrap();
        assert_eq!(Event::create(r).unwrap_err(), InitError::AlreadyInitialized);
        let f = Event::attach_timeout(r, Duration::from_millis(2)).unwrap();
        let g = Event::attach_deadline(r, Deadline::after(Duration::ZERO)).unwrap();
        e.set();
        assert!(f.is_set() && g.as_raw().is_set());

        let mut small = buf(128);
        assert!(matches!(
            Event::create(Region::from_mut_slice(bytes(&mut small))),
            Err(InitError::TooSmall { .. })
        ));
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// `set` wakes a waiter (no lost wake-up), which then sees what the
    /// setter wrote before setting.
    #[test]
    fn set_wakes_waiter_and_publishes() {
        loom::model(|| {
            let e = Arc::new(RawEvent::new());
            let data = Arc::new(UnsafeCell::new(0u32));
            let (e2, d2) = (e.clone(), data.clone());
            let t = thread::spawn(move || {
                // SAFETY: nobody reads `data` before the set below.
                d2.with_mut(|p| unsafe { *p = 7 });
                e2.set();
            });
            e.wait();
            // SAFETY: the write came before `set`, which our wait saw.
            assert_eq!(data.with(|p| unsafe { *p }), 7);
            t.join().unwrap();
        });
    }

    /// A set followed by a clear still releases a waiter that started
    /// waiting before them: it waits from the word it saw unset (0), as
    /// `wait` does after its first load.
    #[test]
    fn pulse_is_not_lost() {
        loom::model(|| {
            let e = Arc::new(RawEvent::new());
            let e2 = e.clone();
            let t = thread::spawn(move || {
                e2.set();
                e2.clear();
            });
            assert!(e.wait_slow(0, None));
            t.join().unwrap();
            assert!(!e.is_set());
        });
    }
}
