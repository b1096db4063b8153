//! Process-shared counting semaphore: Python's `multiprocessing.Semaphore`
//! and `BoundedSemaphore`.
//!
//! A [`RawSemaphore`] is three 32-bit words, embeddable in any shared
//! structure; a [`Semaphore`] is one built in a region of its own
//! ([`Kind::Semaphore`]), found again by other processes with
//! [`Semaphore::attach`].
//!
//! ```text
//!  RawSemaphore (12 bytes, align 4)
//!  +-----------------+-----------------+-----------------+
//!  | count: Futex    | waiters: u32    | max: u32        |
//!  | units available | sleepers (hint) | u32::MAX: none  |
//!  +-----------------+-----------------+-----------------+
//! ```
//!
//! | operation | `count` | system call |
//! |---|---|---|
//! | `try_acquire` | CAS `c -> c - 1` when `c > 0` (Acquire) | never |
//! | `acquire` | as `try_acquire`, spin, then sleep while `c == 0` | only to sleep |
//! | `release_n(n)` | CAS `c -> c + n` unless over the limit (Release) | wake only if `waiters != 0` |
//!
//! # Waking only sleepers
//!
//! ```text
//!  acquirer (count was 0)              releaser
//!  ----------------------              --------
//!  waiters += 1                        count += n         (Release CAS)
//!  fence(SeqCst)  -------- pairs ----- fence(SeqCst)
//!  futex_wait(count, 0)                if waiters != 0: futex_wake
//!  waiters -= 1; retry
//! ```
//!
//! Either the releaser's `waiters` load sees the acquirer, and wakes it, or
//! the acquirer's futex check (which the kernel makes atomically with going
//! to sleep) sees the new count and returns at once. An uncontended
//! `release` is one CAS, one fence and one load.
//!
//! # Processes that die
//!
//! Units have no owner, as in Python: a process killed while it "holds" a
//! unit takes that unit with it, and nothing can tell. Acquirers that then
//! find the semaphore at zero wait like for any slow holder, up to their
//! timeouts: use [`RawSemaphore::acquire_timeout`] where a peer may die.
//!
//! A process killed while asleep in `acquire` leaves `waiters` too high:
//! later releases make a wake system call they did not need, nothing worse.
//! A process killed just after a release woke it, before it took the unit,
//! swallows that wake-up; so that the unit is not stranded while other
//! acquirers sleep, sleepers re-check the count every 100 ms.

use core::fmt;
use core::ops::Deref;
use core::time::Duration;

use crate::region::{AttachError, ElemType, InitError, Kind, Parts, Region, ShmSafe, Spec};
use crate::sync::{fence, AtomicU32, Futex, Ordering};
use crate::time::Deadline;
use crate::wait::Spin;

/// The largest count a semaphore may hold (`u32::MAX / 2`): a release that
/// would go past it fails with [`SemaphoreError::Overflow`].
pub const MAX_VALUE: u32 = u32::MAX / 2;

/// `max` of a semaphore without an upper bound.
const UNBOUNDED: u32 = u32::MAX;

/// How long a sleeping acquirer sleeps before it re-checks the count on its
/// own, so a wake-up swallowed by a process that died is not waited for
/// forever (see the module docs).
const RECHECK: Duration = Duration::from_millis(100);

/// A counting semaphore that may live in shared memory.
///
/// # Examples
///
/// ```
/// use multiproc_core::semaphore::RawSemaphore;
///
/// let sem = RawSemaphore::new(2);
/// assert!(sem.try_acquire());
/// assert!(sem.try_acquire());
/// assert!(!sem.try_acquire());
/// sem.release().unwrap();
/// assert_eq!(sem.value(), 1);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawSemaphore {
    /// Units available; the futex word acquirers sleep on while it is 0.
    count: Futex,
    /// Acquirers between announcing themselves and waking up. A hint: only
    /// "zero" matters (no wake system call needed).
    waiters: AtomicU32,
    /// The bound of a bounded semaphore (its initial value), or
    /// [`UNBOUNDED`]. Written once, before the semaphore is shared.
    max: AtomicU32,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RawSemaphore, [u32; 3]);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(RawSemaphore, u32);

// SAFETY: repr(C) of three 32-bit atomics: valid for every bit pattern, no
// pointers, alignment 4; size and alignment pinned above.
unsafe impl ShmSafe for RawSemaphore {}

impl RawSemaphore {
    /// A semaphore holding `initial` units, without an upper bound
    /// (Python's `Semaphore(initial)`).
    ///
    /// # Panics
    ///
    /// If `initial` exceeds [`MAX_VALUE`].
    pub fn new(initial: u32) -> Self {
        assert!(initial <= MAX_VALUE, "semaphore value above MAX_VALUE");
        Self::with_max(initial, UNBOUNDED)
    }

    /// A semaphore holding `initial` units that may never hold more
    /// (Python's `BoundedSemaphore(initial)`): a release past `initial`
    /// fails with [`SemaphoreError::Overflow`].
    ///
    /// # Panics
    ///
    /// If `initial` exceeds [`MAX_VALUE`].
    pub fn new_bounded(initial: u32) -> Self {
        assert!(initial <= MAX_VALUE, "semaphore value above MAX_VALUE");
        Self::with_max(initial, initial)
    }

    fn with_max(initial: u32, max: u32) -> Self {
        Self {
            count: Futex::new(initial),
            waiters: AtomicU32::new(0),
            max: AtomicU32::new(max),
        }
    }

    /// Takes a unit if one is available, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        // Relaxed: only a guess for the CAS below, which re-checks it.
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            if c == 0 {
                return false;
            }
            // Acquire: pairs with the Release CAS in `release_n`, so what a
            // releaser did before handing the unit back happens before what
            // the taker does with it (a semaphore of 1 used as a lock).
            match self
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
    }

    /// Takes a unit, waiting as long as it takes.
    ///
    /// A unit held by a process that died is never given back (see the
    /// module docs): where that can happen, prefer
    /// [`acquire_timeout`](Self::acquire_timeout).
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            let taken = self.acquire_slow(None);
            debug_assert!(taken);
        }
    }

    /// Takes a unit, waiting at most `timeout`. Returns whether it got one
    /// (Python's `acquire(timeout=...)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use multiproc_core::semaphore::RawSemaphore;
    ///
    /// let sem = RawSemaphore::new(0);
    /// assert!(!sem.acquire_timeout(Duration::from_millis(1)));
    /// sem.release().unwrap();
    /// assert!(sem.acquire_timeout(Duration::from_millis(1)));
    /// ```
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.try_acquire() || self.acquire_slow(Some(Deadline::after(timeout)))
    }

    /// Takes a unit, waiting until `deadline` at most. Returns whether it got
    /// one.
    #[inline]
    pub fn acquire_deadline(&self, deadline: Deadline) -> bool {
        self.try_acquire() || self.acquire_slow(Some(deadline))
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<Deadline>) -> bool {
        let mut backoff = Spin::DEFAULT.start();
        while backoff.spin() {
            if self.try_acquire() {
                return true;
            }
        }
        loop {
            // Relaxed: ordered before the futex check by the fence below.
            self.waiters.fetch_add(1, Ordering::Relaxed);
            // SeqCst fence: pairs with the fence in `release_n`. Either the
            // releaser's `waiters` load sees our increment, or the kernel's
            // check of `count` in `wait` sees the released units.
            fence(Ordering::SeqCst);
            let nap = Deadline::after(RECHECK).min(deadline);
            let _ = self.count.wait(0, Some(nap));
            // Relaxed: the count is only a hint for releasers; we re-check
            // the semaphore ourselves just below.
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if self.try_acquire() {
                return true;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return false;
            }
        }
    }

    /// Gives one unit back, waking one sleeping acquirer if there is one.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if a bounded semaphore already holds its
    /// initial value, or the count would pass [`MAX_VALUE`]. The count is
    /// then unchanged.
    #[inline]
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.release_n(1)
    }

    /// Gives `n` units back at once, waking sleeping acquirers if there are
    /// any. Releasing zero units does nothing.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if the count would pass the bound of a
    /// bounded semaphore, or [`MAX_VALUE`]. No unit is released then.
    pub fn release_n(&self, n: u32) -> Result<(), SemaphoreError> {
        if n == 0 {
            return Ok(());
        }
        let limit = self.limit();
        // Relaxed: only a guess for the CAS below, which re-checks it.
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            let new = match c.checked_add(n) {
                Some(v) if v <= limit => v,
                _ => return Err(SemaphoreError::Overflow),
            };
            // Release: pairs with the Acquire CAS in `try_acquire`.
            match self
                .count
                .compare_exchange_weak(c, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        // SeqCst fence: pairs with the fence in `acquire_slow` (see there).
        fence(Ordering::SeqCst);
        // Relaxed: ordered after the count update by the fence above.
        if self.waiters.load(Ordering::Relaxed) != 0 {
            if n == 1 {
                self.count.wake_one();
            } else {
                self.count.wake_all();
            }
        }
        Ok(())
    }

    /// The number of units available now (Python's `get_value()`). Other
    /// processes may change it at any moment: a diagnostic, not a promise.
    #[inline]
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot, nothing is read on the strength of it.
        self.count.load(Ordering::Relaxed)
    }

    /// The bound of a bounded semaphore (its initial value), `None` for an
    /// unbounded one.
    #[inline]
    pub fn max_value(&self) -> Option<u32> {
        // Relaxed: written once before the semaphore was shared (published
        // by the region's ready state, or by whatever handed it over).
        match self.max.load(Ordering::Relaxed) {
            UNBOUNDED => None,
            m => Some(m),
        }
    }

    /// Whether releases are bounded by the initial value
    /// (a `BoundedSemaphore`).
    #[inline]
    pub fn is_bounded(&self) -> bool {
        self.max_value().is_some()
    }

    /// The count a release may not pass. `max` comes from shared memory and
    /// may be anything: every value gives a valid (if odd) limit.
    #[inline]
    fn limit(&self) -> u32 {
        self.max_value().map_or(MAX_VALUE, |m| m.min(MAX_VALUE))
    }
}

/// Why a release failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// Released more often than acquired: a bounded semaphore would pass its
    /// initial value, or any semaphore [`MAX_VALUE`] (Python's
    /// `ValueError`).
    Overflow,
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemaphoreError::Overflow => f.write_str("semaphore released too many times"),
        }
    }
}

impl core::error::Error for SemaphoreError {}

/// A semaphore in a region of its own, shared between processes.
///
/// It dereferences to [`RawSemaphore`] for `acquire`, `release` and the
/// rest. It is a handle (a reference into the region): `Copy`, `Send` and
/// `Sync`.
///
/// # Examples
///
/// ```
/// use multiproc_core::region::Region;
/// use multiproc_core::semaphore::Semaphore;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 256]);
/// let mut mem = Box::new(Mem([0; 256]));
/// assert!(Semaphore::memory_size() <= 256);
/// let region = Region::from_mut_slice(&mut mem.0);
///
/// let sem = Semaphore::create_bounded(region, 1).unwrap();
/// // In another process: the same mapping, attached.
/// let other = Semaphore::attach(region).unwrap();
/// sem.acquire();
/// assert!(!other.try_acquire());
/// other.release().unwrap();
/// assert!(other.release().is_err()); // bounded at 1
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Semaphore<'a> {
    raw: &'a RawSemaphore,
}

type SemParts<'a> = Parts<'a, RawSemaphore, u8>;

/// A semaphore region has no elements: the header records no capacity.
fn elems_for(capacity: u64) -> Option<u64> {
    (capacity == 0).then_some(0)
}

impl<'a> Semaphore<'a> {
    /// Bytes a semaphore region needs (header included).
    pub fn memory_size() -> usize {
        crate::region::Layout::of::<RawSemaphore, u8>(0)
            .expect("a fixed layout fits")
            .total
    }

    /// Builds a semaphore holding `initial` units, unbounded, in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] if `initial` exceeds [`MAX_VALUE`];
    /// otherwise as [`region`](crate::region) creation: too small,
    /// misaligned, already initialised.
    pub fn create(region: Region<'a>, initial: u32) -> Result<Self, InitError> {
        Self::create_with(region, initial, UNBOUNDED, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` that
    /// [`attach_tagged_timeout`](Self::attach_tagged_timeout) must match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, initial: u32, tag: u64) -> Result<Self, InitError> {
        Self::create_with(region, initial, UNBOUNDED, tag)
    }

    /// Builds a bounded semaphore (Python's `BoundedSemaphore(initial)`) in
    /// `region`.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_bounded(region: Region<'a>, initial: u32) -> Result<Self, InitError> {
        Self::create_with(region, initial, initial, 0)
    }

    /// As [`create_bounded`](Self::create_bounded), recording a user `tag`
    /// that [`attach_tagged_timeout`](Self::attach_tagged_timeout) must
    /// match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_bounded_tagged(
        region: Region<'a>,
        initial: u32,
        tag: u64,
    ) -> Result<Self, InitError> {
        Self::create_with(region, initial, initial, tag)
    }

    fn create_with(
        region: Region<'a>,
        initial: u32,
        max: u32,
        tag: u64,
    ) -> Result<Self, InitError> {
        if initial > MAX_VALUE {
            return Err(InitError::InvalidCapacity {
                capacity: u64::from(initial),
            });
        }
        let spec = Spec {
            kind: Kind::Semaphore,
            elem: ElemType::of::<()>().tagged(tag),
            capacity: 0,
            count: 0,
        };
        let parts = SemParts::create(region, spec, || RawSemaphore::with_max(initial, max), |_| 0)?;
        Ok(Self { raw: parts.body })
    }

    crate::region::attach_fns!('a, "a semaphore");

    /// As [`attach_timeout`](Self::attach_timeout), with a deadline.
    ///
    /// # Errors
    ///
    /// As [`attach_timeout`](Self::attach_timeout).
    pub fn attach_deadline(region: Region<'a>, deadline: Deadline) -> Result<Self, AttachError> {
        Self::open(region, 0, Some(deadline))
    }

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let parts = SemParts::open(
            region,
            Kind::Semaphore,
            ElemType::of::<()>().tagged(tag),
            elems_for,
            deadline,
        )?;
        Ok(Self { raw: parts.body })
    }

    /// The semaphore itself, for as long as the region lives.
    pub fn as_raw(&self) -> &'a RawSemaphore {
        self.raw
    }
}

impl Deref for Semaphore<'_> {
    type Target = RawSemaphore;
    fn deref(&self) -> &RawSemaphore {
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
    fn counts_units() {
        let s = RawSemaphore::new(3);
        assert_eq!(s.value(), 3);
        assert!(!s.is_bounded());
        assert_eq!(s.max_value(), None);
        for left in (0..3).rev() {
            assert!(s.try_acquire());
            assert_eq!(s.value(), left);
        }
        assert!(!s.try_acquire());
        s.release_n(5).unwrap();
        assert_eq!(s.value(), 5);
        s.release_n(0).unwrap();
        assert_eq!(s.value(), 5);
        s.acquire();
        assert_eq!(s.value(), 4);
    }

    #[test]
    fn bounded_refuses_to_exceed_initial() {
        let s = RawSemaphore::new_bounded(2);
        assert!(s.is_bounded());
        assert_eq!(s.max_value(), Some(2));
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
        assert!(s.try_acquire());
        assert!(s.try_acquire());
        assert_eq!(s.release_n(3), Err(SemaphoreError::Overflow));
        assert_eq!(s.value(), 0, "a failed release_n releases nothing");
        s.release_n(2).unwrap();
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
        assert_eq!(s.value(), 2);

        let zero = RawSemaphore::new_bounded(0);
        assert_eq!(zero.release(), Err(SemaphoreError::Overflow));
    }

    #[test]
    fn unbounded_stops_at_max_value() {
        let s = RawSemaphore::new(MAX_VALUE - 1);
        s.release().unwrap();
        assert_eq!(s.value(), MAX_VALUE);
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
        assert_eq!(s.release_n(u32::MAX), Err(SemaphoreError::Overflow));
        assert_eq!(s.value(), MAX_VALUE);
    }

    #[test]
    #[should_panic(expected = "MAX_VALUE")]
    fn new_above_max_panics() {
        let _ = RawSemaphore::new(MAX_VALUE + 1);
    }

    #[test]
    fn garbage_max_still_gives_a_limit() {
        let s = RawSemaphore::new(0);
        s.max.store(7, Ordering::Relaxed);
        s.release_n(7).unwrap();
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
        s.max.store(u32::MAX - 1, Ordering::Relaxed);
        s.count.store(MAX_VALUE, Ordering::Relaxed);
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    }

    #[test]
    fn timeouts() {
        let s = RawSemaphore::new(0);
        assert!(!s.acquire_timeout(Duration::ZERO));
        assert!(!s.acquire_timeout(Duration::from_millis(5)));
        assert!(!s.acquire_deadline(Deadline::after(Duration::from_millis(1))));
        assert_eq!(s.waiters.load(Ordering::Relaxed), 0);
        s.release().unwrap();
        assert!(s.acquire_timeout(Duration::ZERO));
        s.release().unwrap();
        assert!(s.acquire_deadline(Deadline::after(Duration::ZERO)));
        assert_eq!(s.value(), 0);
    }

    #[test]
    fn release_wakes_a_sleeper() {
        let s = Arc::new(RawSemaphore::new(0));
        let got = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let (s, got) = (s.clone(), got.clone());
                thread::spawn(move || {
                    s.acquire();
                    got.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        // Let them sleep (not required for correctness), then feed them.
        thread::sleep(std::time::Duration::from_millis(20));
        s.release().unwrap();
        s.release_n(2).unwrap();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(got.load(Ordering::SeqCst), 3);
        assert_eq!(s.value(), 0);
        assert_eq!(s.waiters.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn never_more_than_k_inside() {
        const K: u32 = 2;
        const THREADS: usize = 6;
        const ROUNDS: usize = 2_000;
        let s = Arc::new(RawSemaphore::new_bounded(K));
        let inside = Arc::new(AtomicU32::new(0));
        let max_seen = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..THREADS)
            .map(|i| {
                let (s, inside, max_seen) = (s.clone(), inside.clone(), max_seen.clone());
                thread::spawn(move || {
                    for r in 0..ROUNDS {
                        if (i + r) % 3 == 0 {
                            while !s.acquire_timeout(Duration::from_micros(50)) {}
                        } else {
                            s.acquire();
                        }
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        let mut m = max_seen.load(Ordering::Relaxed);
                        while n > m {
                            match max_seen.compare_exchange(
                                m,
                                n,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            ) {
                                Ok(_) => break,
                                Err(now) => m = now,
                            }
                        }
                        if r % 64 == 0 {
                            thread::yield_now();
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        s.release().unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let m = max_seen.load(Ordering::SeqCst);
        assert!(m <= K, "{m} threads inside a semaphore of {K}");
        assert!(m >= 1);
        assert_eq!(s.value(), K);
    }

    #[test]
    fn region_create_attach_and_errors() {
        assert!(Semaphore::memory_size() <= 256);
        {
            let mut b = buf(2);
            let r = Region::from_mut_slice(bytes(&mut b));
            assert_eq!(Semaphore::attach(r).unwrap_err(), AttachError::NotReady);
            assert_eq!(
                Semaphore::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
                AttachError::NotReady
            );
            assert_eq!(
                Semaphore::create(r, MAX_VALUE + 1).unwrap_err(),
                InitError::InvalidCapacity {
                    capacity: u64::from(MAX_VALUE + 1)
                }
            );
            let s = Semaphore::create(r, 2).unwrap();
            assert!(!s.is_bounded());
            assert_eq!(
                Semaphore::create(r, 1).unwrap_err(),
                InitError::AlreadyInitialized
            );
            let t = Semaphore::attach_timeout(r, Duration::from_millis(2)).unwrap();
            let u = Semaphore::attach_deadline(r, Deadline::after(Duration::ZERO)).unwrap();
            assert!(t.try_acquire());
            assert!(s.as_raw().try_acquire());
            assert!(!u.try_acquire());
            u.release_n(2).unwrap();
            assert_eq!(s.value(), 2);
            // Wrong kind: an event is not a semaphore.
            assert!(matches!(
                crate::event::Event::attach(r),
                Err(AttachError::KindMismatch {
                    found: 6,
                    expected: Kind::Event
                })
            ));
        }
        {
            let mut b2 = buf(2);
            let r = Region::from_mut_slice(bytes(&mut b2));
            let s = Semaphore::create_bounded(r, 1).unwrap();
            let t = Semaphore::attach(r).unwrap();
            assert!(t.is_bounded());
            assert_eq!(t.max_value(), Some(1));
            assert_eq!(s.release(), Err(SemaphoreError::Overflow));
        }
        let mut small = buf(1);
        assert!(matches!(
            Semaphore::create(Region::from_mut_slice(bytes(&mut small)), 0),
            Err(InitError::TooSmall { .. })
        ));
    }

    #[test]
    fn tagged_attach_needs_the_same_tag() {
        let mut b = buf(Semaphore::memory_size().div_ceil(128));
        let r = Region::from_mut_slice(bytes(&mut b));
        let s = Semaphore::create_tagged(r, 1, 3).unwrap();
        let t = Semaphore::attach_tagged_timeout(r, 3, Duration::ZERO).unwrap();
        assert!(t.try_acquire() && !s.try_acquire());
        assert!(matches!(
            Semaphore::attach_tagged_timeout(r, 4, Duration::ZERO),
            Err(AttachError::TypeMismatch { .. })
        ));
        assert!(matches!(
            Semaphore::attach(r),
            Err(AttachError::TypeMismatch { .. })
        ));
        let mut b = buf(Semaphore::memory_size().div_ceil(128));
        let r = Region::from_mut_slice(bytes(&mut b));
        Semaphore::create_bounded_tagged(r, 2, 9).unwrap();
        let t = Semaphore::attach_tagged_timeout(r, 9, Duration::ZERO).unwrap();
        assert_eq!((t.is_bounded(), t.max_value()), (true, Some(2)));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            std::format!("{}", SemaphoreError::Overflow),
            "semaphore released too many times"
        );
        assert_eq!(std::format!("{:?}", SemaphoreError::Overflow), "Overflow");
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// Two permits, three threads: never more than two inside, and every
    /// thread gets through (no lost wake-up strands a sleeper).
    #[test]
    fn two_permits_three_threads() {
        loom::model(|| {
            let s = Arc::new(RawSemaphore::new(2));
            let inside = Arc::new(AtomicU32::new(0));
            let body = {
                let (s, inside) = (s.clone(), inside.clone());
                move || {
                    s.acquire();
                    let n = inside.fetch_add(1, Ordering::Relaxed) + 1;
                    assert!(n <= 2, "{n} inside a semaphore of 2");
                    inside.fetch_sub(1, Ordering::Relaxed);
                    s.release().unwrap();
                }
            };
            let a = thread::spawn(body.clone());
            let b = thread::spawn(body.clone());
            body();
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(s.value(), 2);
        });
    }

    /// Two acquirers on an empty semaphore, two single releases: each
    /// release wakes one sleeper (`wake_one`), and both get through.
    #[test]
    fn two_sleepers_two_single_releases() {
        loom::model(|| {
            let s = Arc::new(RawSemaphore::new(0));
            let spawn = |s: &Arc<RawSemaphore>| {
                let s = s.clone();
                thread::spawn(move || s.acquire())
            };
            let a = spawn(&s);
            let b = spawn(&s);
            s.release().unwrap();
            s.release().unwrap();
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(s.value(), 0);
        });
    }

    /// A sleeper waiting on an empty semaphore is woken by the release, and
    /// sees what the releaser wrote before releasing.
    #[test]
    fn release_wakes_sleeper_and_publishes() {
        loom::model(|| {
            let s = Arc::new(RawSemaphore::new(0));
            let data = Arc::new(UnsafeCell::new(0u32));
            let (s2, d2) = (s.clone(), data.clone());
            let t = thread::spawn(move || {
                // SAFETY: nobody reads `data` before the release below.
                d2.with_mut(|p| unsafe { *p = 42 });
                s2.release().unwrap();
            });
            s.acquire();
            // SAFETY: the writer finished before its release, which our
            // acquire synchronised with.
            assert_eq!(data.with(|p| unsafe { *p }), 42);
            t.join().unwrap();
        });
    }
}
